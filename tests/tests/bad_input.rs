//! Bad input gets a clear, one-line error and leaves nothing behind.
use std::process::Command;

use lb::dataplane::DataplaneError;
use lb_tests::{Netns, TempDir, lb_bin, require_root};

const GOOD: &str = r#"
[agent]
interfaces = ["eth0"]
source_v4 = "198.18.0.2"

[[vip]]
name = "web"
address = "198.19.0.100:80"

[[vip.backend]]
address = "198.18.0.11"
"#;

fn lb(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(lb_bin()).args(args).output().expect("run lb");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `lb run --config f` inside `ns`: exit code and stderr.
fn run_in(ns: &Netns, f: &std::path::Path) -> (i32, String) {
    let lbp = lb_bin();
    let (lbp, f) = (lbp.to_str().unwrap(), f.to_str().unwrap());
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.name, lbp, "run", "--config", f])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn error_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.starts_with("lb: ")).collect()
}

#[test]
fn check_accepts_a_good_config() {
    let tmp = TempDir::new("check");
    let f = tmp.path("lb.toml");
    std::fs::write(&f, GOOD).unwrap();
    let (code, out, err) = lb(&["check", "--config", f.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ok: 1 VIP(s), 1 backend(s)"), "{out}");
}

#[test]
fn check_and_run_name_file_line_and_field() {
    let tmp = TempDir::new("badcfg");
    let f = tmp.path("bad.toml");
    std::fs::write(&f, GOOD.replace("198.19.0.100:80", "198.19.0.100:http")).unwrap();
    let path = f.to_str().unwrap();
    for cmd in ["check", "run"] {
        let (code, _, err) = lb(&[cmd, "--config", path]);
        assert_eq!(code, 2, "lb {cmd}: {err}");
        assert_eq!(
            error_lines(&err),
            [format!(
                "lb: {path}:8: vip.address: \"198.19.0.100:http\" is not ADDRESS:PORT (IPv6 as [ADDRESS]:PORT)"
            )],
            "lb {cmd}: {err}"
        );
    }
}

#[test]
fn a_missing_config_file_is_one_line() {
    let (code, _, err) = lb(&["check", "--config", "/nonexistent/lb.toml"]);
    assert_eq!(code, 2);
    assert_eq!(error_lines(&err).len(), 1, "{err}");
    assert!(
        err.contains("/nonexistent/lb.toml") && err.contains("cannot read"),
        "{err}"
    );
}

#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn an_unknown_interface_is_one_line() {
    require_root();
    let ns = Netns::new("noif");
    let tmp = TempDir::new("noif");
    let f = tmp.path("lb.toml");
    std::fs::write(&f, GOOD.replace("eth0", "eth9")).unwrap();
    ns.sh("sysctl -qw net.ipv4.conf.all.forwarding=1");
    let (code, err) = run_in(&ns, &f);
    assert_eq!(code, 1, "{err}");
    let lines = error_lines(&err);
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains("eth9"), "{err}");
}

#[test]
#[ignore = "needs root (to drop to nobody): run through `cargo xtask test`"]
fn without_privilege_run_and_decap_say_so_in_one_line() {
    require_root();
    let tmp = TempDir::new("nopriv");
    let f = tmp.path("lb.toml");
    std::fs::write(&f, GOOD).unwrap();
    std::fs::set_permissions(&tmp.0, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let lbp = lb_bin();
    for args in [
        vec!["run", "--config", f.to_str().unwrap()],
        vec!["decap", "--interface", "lo"],
    ] {
        let out = Command::new("setpriv")
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
            .arg(&lbp)
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        let lines = error_lines(&err);
        assert_eq!(lines.len(), 1, "{err}");
        // No capability at all: every one the agent needs is named.
        assert!(
            lines[0].contains("lacks CAP_BPF and CAP_NET_ADMIN and CAP_PERFMON"),
            "{err}"
        );
    }
}

#[test]
#[ignore = "needs root to load BPF: run through `cargo xtask test`"]
fn a_verifier_rejection_gives_the_reason_and_the_log_tail() {
    require_root();
    let err = match lb_tests::test_object::load(lb_tests::test_object::programs::REJECT) {
        Ok(_) => panic!("the verifier accepted a program that reads the packet unchecked"),
        Err(e) => e,
    };
    let DataplaneError::Verifier {
        program,
        reason,
        tail,
    } = &err
    else {
        panic!("not a verifier error: {err}")
    };
    assert_eq!(program, lb_tests::test_object::programs::REJECT);
    assert!(reason.contains("packet"), "{reason}");
    assert!(!reason.contains('\n'), "{reason}");
    assert!(
        tail.lines().count() >= 2 && tail.lines().count() <= 12,
        "{tail}"
    );
    let shown = err.to_string();
    let first = shown.lines().next().unwrap();
    assert!(
        first.starts_with("the kernel's verifier rejected xdp_reject: ")
            && first.contains(reason.as_str()),
        "{shown}"
    );
}

#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn a_failed_start_leaves_nothing_attached() {
    require_root();
    let ns = Netns::new("fail");
    // eth0 takes native XDP (veth); a bridge (br9) cannot (no driver support), so the start fails
    // after eth0 is attached.
    ns.sh(
        "ip link add eth0 type veth peer name peer0 && ip link set eth0 up && ip link set peer0 up \
         && ip addr add 198.18.0.2/24 dev eth0 && ip link add br9 type bridge && ip link set br9 up \
         && sysctl -qw net.ipv4.conf.all.forwarding=1 \
         && ip neigh add 198.18.0.11 lladdr 02:00:00:00:00:11 dev eth0 nud permanent",
    );
    let tmp = TempDir::new("fail");
    let f = tmp.path("lb.toml");
    let sock = tmp.path("lb.sock");
    let cfg = GOOD.replace(
        r#"interfaces = ["eth0"]"#,
        &format!(
            "interfaces = [\"eth0\", \"br9\"]\nsocket = \"{}\"",
            sock.display()
        ),
    );
    std::fs::write(&f, cfg).unwrap();
    let (code, err) = run_in(&ns, &f);
    assert_eq!(code, 1, "{err}");
    let lines = error_lines(&err);
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains("br9") && lines[0].contains("native"),
        "{err}"
    );
    let links = ns.sh("ip -j link show");
    let v: serde_json::Value = serde_json::from_str(&links).unwrap();
    for l in v.as_array().unwrap() {
        assert!(l.get("xdp").is_none(), "left attached: {l}");
    }
    assert!(!sock.exists(), "control socket left behind");
}
