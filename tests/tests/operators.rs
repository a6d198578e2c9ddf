//! What an operator installs besides the binary, checked by the tools their system runs:
//! systemd's own verifier accepts the units, `man` renders every page, and bash completes
//! `lb backend ` with its subcommands.
use std::{path::Path, process::Command, time::Duration};

use lb_tests::{TempDir, lb_bin};

const PACKAGING: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../packaging");

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Writes lb's manual pages into `dir/man8`.
fn manpages(dir: &Path) {
    let (ok, text) = run(Command::new(lb_bin()).arg("manpages").arg(dir.join("man8")));
    assert!(ok, "{text}");
}

/// `systemd-analyze verify` over a root holding the system's units, the commands where the
/// units run them and the units themselves (the decap template as an instance): it must say
/// nothing at all (a bad setting is only a warning, and a warning fails this test too). The
/// units' man pages are found through MANPATH.
#[test]
fn systemd_accepts_the_units() {
    let tmp = TempDir::new("units");
    let root = tmp.path("root");
    let units = root.join("etc/systemd/system");
    std::fs::create_dir_all(root.join("usr/lib/systemd")).unwrap();
    std::fs::create_dir_all(root.join("usr/sbin")).unwrap();
    std::fs::create_dir_all(&units).unwrap();
    let (ok, text) = run(Command::new("cp")
        .args(["-a", "/usr/lib/systemd/system"])
        .arg(root.join("usr/lib/systemd")));
    assert!(ok, "{text}");
    std::fs::copy(lb_bin(), root.join("usr/sbin/lb")).unwrap();
    // What the units run besides lb.
    std::fs::create_dir_all(root.join("bin")).unwrap();
    for tool in ["sh", "kill"] {
        std::fs::copy(format!("/bin/{tool}"), root.join("bin").join(tool)).unwrap();
    }
    std::fs::copy(format!("{PACKAGING}/lb.service"), units.join("lb.service")).unwrap();
    std::fs::copy(
        format!("{PACKAGING}/lb-decap@.service"),
        units.join("lb-decap@.service"),
    )
    .unwrap();
    std::fs::copy(
        format!("{PACKAGING}/lb-decap@.service"),
        units.join("lb-decap@eth0.service"),
    )
    .unwrap();
    let man = tmp.path("man");
    manpages(&man);
    for unit in ["lb.service", "lb-decap@eth0.service"] {
        let (ok, text) = run(Command::new("systemd-analyze")
            .arg("verify")
            .arg(format!("--root={}", root.display()))
            .arg(units.join(unit))
            .env("MANPATH", &man));
        assert!(ok && text.trim().is_empty(), "{unit}: {text}");
    }
    // The check has teeth: a setting systemd does not know is reported.
    let bad = std::fs::read_to_string(units.join("lb.service"))
        .unwrap()
        .replace("Type=notify", "Type=notifyy");
    std::fs::write(units.join("lb-bad.service"), bad).unwrap();
    let (_, text) = run(Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .arg(units.join("lb-bad.service"))
        .env("MANPATH", &man));
    assert!(text.contains("notifyy"), "{text}");
}

/// Every manual page renders with `man -l`, and names its command.
#[test]
fn every_manual_page_renders() {
    let tmp = TempDir::new("man");
    manpages(&tmp.0);
    let pages: Vec<_> = std::fs::read_dir(tmp.path("man8"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(pages.len() >= 20, "{pages:?}");
    for page in &pages {
        let name = page.file_stem().unwrap().to_string_lossy().into_owned();
        let (ok, text) = run(Command::new("man")
            .args(["-l", "-P", "cat"])
            .arg(page)
            .env("MANWIDTH", "100"));
        assert!(ok, "{name}: {text}");
        assert!(text.contains(&name), "{name} does not name itself:\n{text}");
    }
}

/// bash completes `lb backend ` with the backend subcommands (through clap's completion
/// function, which calls compgen), and zsh and fish scripts are produced.
#[test]
fn bash_completes_subcommands() {
    let script = format!(
        "source <({} completions bash)\nCOMP_WORDS=(lb backend '')\nCOMP_CWORD=2\nCOMP_LINE='lb backend '\nCOMP_POINT=${{#COMP_LINE}}\n_lb lb '' backend\necho \"${{COMPREPLY[@]}}\"",
        lb_bin().display()
    );
    let (ok, text) = run(Command::new("bash").args(["-c", &script]));
    assert!(ok, "{text}");
    let offered: Vec<&str> = text.split_whitespace().collect();
    for sub in ["list", "add", "del", "drain", "undrain", "set"] {
        assert!(offered.contains(&sub), "{sub} not offered: {offered:?}");
    }
    for shell in ["zsh", "fish"] {
        let (ok, text) = run(Command::new(lb_bin()).args(["completions", shell]));
        assert!(
            ok && text.contains("backend") && text.contains("drain"),
            "{shell}: {text}"
        );
    }
}

/// The default configuration the package installs is one `lb check` accepts.
#[test]
fn the_default_configuration_checks() {
    let (ok, text) = run(Command::new(lb_bin())
        .args(["check", "--config"])
        .arg(format!("{PACKAGING}/lb.toml")));
    assert!(ok && text.contains("ok"), "{text}");
}

/// `cargo xtask package` (from the binary under test): lintian reports no error and no
/// warning; the package holds the binary, both units, the config as a conffile, every manual
/// page, the three completions, the copyright with its licenses and the changelog; systemd
/// verifies the units as installed from it and man renders its pages.
#[test]
fn the_package_passes_debians_own_checks() {
    let tmp = TempDir::new("deb");
    let xtask = lb_bin().with_file_name("xtask");
    let (ok, text) = run(Command::new(&xtask)
        .args(["package", "--binary"])
        .arg(lb_bin())
        .arg("--out")
        .arg(&tmp.0));
    assert!(ok, "{text}");
    let deb = text.lines().last().unwrap().trim().to_string();
    assert!(deb.ends_with(".deb") && deb.contains("lb-xdp_"), "{text}");
    let (ok, text) = run(Command::new("lintian")
        .args(["--fail-on", "error,warning"])
        .arg(&deb));
    assert!(ok, "lintian: {text}");
    let (ok, listing) = run(Command::new("dpkg-deb").arg("-c").arg(&deb));
    assert!(ok, "{listing}");
    for path in [
        "./usr/sbin/lb",
        "./lib/systemd/system/lb.service",
        "./lib/systemd/system/lb-decap@.service",
        "./etc/lb/lb.toml",
        "./usr/share/man/man8/lb.8.gz",
        "./usr/share/man/man8/lb-run.8.gz",
        "./usr/share/man/man8/lb-backend-set.8.gz",
        "./usr/share/bash-completion/completions/lb",
        "./usr/share/zsh/vendor-completions/_lb",
        "./usr/share/fish/vendor_completions.d/lb.fish",
        "./usr/share/doc/lb-xdp/copyright",
        "./usr/share/doc/lb-xdp/changelog.gz",
    ] {
        assert!(
            listing.lines().any(|l| l.ends_with(path)),
            "{path} not in:\n{listing}"
        );
    }
    let (ok, conffiles) = run(Command::new("dpkg-deb").args(["-f", &deb, "Package"]));
    assert!(ok && conffiles.trim() == "lb-xdp", "{conffiles}");
    let x = tmp.path("x");
    let (ok, text) = run(Command::new("dpkg-deb").arg("-R").arg(&deb).arg(&x));
    assert!(ok, "{text}");
    let conffiles = std::fs::read_to_string(x.join("DEBIAN/conffiles")).unwrap();
    assert_eq!(conffiles, "/etc/lb/lb.toml\n");
    let copyright = std::fs::read_to_string(x.join("usr/share/doc/lb-xdp/copyright")).unwrap();
    for license in ["License: MIT", "License: Apache-2.0", "License: GPL-2"] {
        assert!(copyright.contains(license), "{license}:\n{copyright}");
    }
    let pages: Vec<_> = std::fs::read_dir(x.join("usr/share/man/man8"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(pages.len() >= 20);
    for page in &pages {
        let (ok, text) = run(Command::new("man").args(["-l", "-P", "cat"]).arg(page));
        assert!(ok && text.contains("lb"), "{}: {text}", page.display());
    }
}

/// The monitoring kit under docs/monitoring: promtool accepts the alert rules, and every
/// metric the rules and the dashboard name is one the agent exports (read from the agent's
/// own exposition, so a renamed metric fails here rather than leaving a panel empty).
#[test]
fn the_monitoring_kit_names_only_metrics_the_agent_exports() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/monitoring");
    let rules = format!("{dir}/lb.rules.yml");
    let out = std::process::Command::new("promtool")
        .args(["check", "rules", &rules])
        .output()
        .expect("run promtool (cargo xtask setup installs Debian's prometheus)");
    assert!(out.status.success(), "{out:?}");
    // Every family, with one VIP and backend so that labelled families have series too.
    let vips = [lb::stats::VipStats {
        name: "web".into(),
        address: "198.19.0.1:80".into(),
        protocol: "tcp".into(),
        forwarding: "ipip".into(),
        packets: 1,
        bytes: 1,
        pps: 0.0,
        bps: 0.0,
        new_flows: 1,
        backends: vec![lb::stats::BackendStats {
            address: "198.18.0.11".into(),
            weight: 1,
            packets: 1,
            bytes: 1,
            pps: 0.0,
            bps: 0.0,
            new_flows: 1,
            share: 100.0,
            health: "up".into(),
            drain: false,
            in_ring: true,
            active_flows: Some(1),
            syn_retries: 1,
            down_reason: Some("active".into()),
            ejections: 1,
        }],
    }];
    let times = lb::metrics::HealthTimes::default();
    let be: std::net::IpAddr = "198.18.0.11".parse().unwrap();
    times.observe("web", be, true, Duration::from_millis(1));
    times.local_fault("web", be);
    let outcomes = [lb::stats::Outcome {
        name: "drop_no_backend".into(),
        packets: 1,
        bytes: 1,
        pps: 0.0,
    }];
    let text = lb::metrics::render(&lb::metrics::Snapshot {
        outcomes: &outcomes,
        vips: &vips,
        health_times: &times,
        flows_inserted: 0,
        flow_hits: 0,
        flows_unrecorded: 0,
        flow_entries: Some(0),
        flow_cached: Some(0),
        flow_capacity: 1,
        ring_builds: 0,
        ring_writes: 0,
        reloads: 0,
        reload_failures: 0,
        last_reload: std::time::UNIX_EPOCH,
        listeners: [
            ("control", Default::default()),
            ("metrics", Default::default()),
        ],
        interfaces: vec![("eth0".into(), true)],
    });
    let exported: std::collections::BTreeSet<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap())
        .collect();
    let mut used = std::collections::BTreeSet::new();
    for file in ["lb.rules.yml", "lb.dashboard.json"] {
        let body = std::fs::read_to_string(format!("{dir}/{file}")).unwrap();
        for (i, _) in body.match_indices("lb_") {
            let name: String = body[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // Not a metric: the dashboard's uid, a group name.
            if name.len() > 3
                && body[..i].ends_with(|c: char| !c.is_ascii_alphanumeric() && c != '-')
            {
                used.insert((file, name));
            }
        }
    }
    assert!(used.len() > 15, "{used:?}");
    for (file, name) in &used {
        assert!(
            exported.contains(name.as_str()),
            "{file} names {name}, which the agent does not export"
        );
    }
}
