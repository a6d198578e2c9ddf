//! Flow state, drain, health checks, runtime changes and reloads, with real sockets through
//! the balancer.
use std::time::Duration;

use lb_tests::{
    lab::{self, backend4, cli_ok, status, wait_for},
    life::*,
    traffic::{self, LongLived},
};

#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn adding_backends_keeps_established_connections() {
    let s = Setup::new(5, 3);
    let mut long = LongLived::open(&s.topo.client, vip_addr(), 50);
    assert_eq!(long.by_server().len(), 3, "{:?}", long.by_server());
    assert_eq!(long.exchange(), Vec::<String>::new());
    for i in [3, 4] {
        cli_ok(&s.socket, &["backend", "add", "--vip", "web", &backend4(i)]);
        // Streaming goes on while the ring changes.
        assert_eq!(long.exchange(), Vec::<String>::new());
    }
    let rise = Duration::from_millis(INTERVAL_MS * RISE as u64 + 1500);
    wait_for(rise, "the new backends in the ring", || {
        status(&s.socket).vips[0].live == 5
    });
    assert_eq!(
        long.exchange(),
        Vec::<String>::new(),
        "an established connection moved or broke"
    );
    let t = s.connects(200);
    all_ok(&t, 200);
    assert_eq!(
        t.by_server.len(),
        5,
        "new connections must reach all five: {t:?}"
    );
    assert_eq!(long.exchange(), Vec::<String>::new());
}

#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn drain_keeps_established_and_takes_no_new() {
    let s = Setup::new(3, 3);
    let mut long = LongLived::open(&s.topo.client, vip_addr(), 30);
    assert!(
        long.by_server().contains_key("be0"),
        "{:?}",
        long.by_server()
    );
    let out = cli_ok(
        &s.socket,
        &["backend", "drain", "--vip", "web", &backend4(0)],
    );
    assert!(out.contains("draining"), "{out}");
    assert_eq!(
        long.exchange(),
        Vec::<String>::new(),
        "drain broke established connections"
    );
    let t = s.connects(90);
    all_ok(&t, 90);
    assert!(
        !t.by_server.contains_key("be0"),
        "a new connection reached the drained backend: {t:?}"
    );
    assert_eq!(long.exchange(), Vec::<String>::new());
    cli_ok(
        &s.socket,
        &["backend", "undrain", "--vip", "web", &backend4(0)],
    );
    let t = s.connects(90);
    all_ok(&t, 90);
    assert!(
        t.by_server.contains_key("be0"),
        "undrained backend got nothing: {t:?}"
    );
}

#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn a_dead_backend_is_taken_out_and_brought_back() {
    let mut s = Setup::new(3, 3);
    all_ok(&s.connects(30), 30);
    s.kill(1);
    let fall = Duration::from_millis(INTERVAL_MS * FALL as u64 + 1000);
    wait_for(fall, "be1 down", || {
        s.backend(&backend4(1)).health == "down"
    });
    let t = s.connects(60);
    all_ok(&t, 60);
    assert!(!t.by_server.contains_key("be1"), "{t:?}");
    let b = s.backend(&backend4(1));
    assert!(
        b.last_error.as_deref().unwrap_or("").contains("connect"),
        "{b:?}"
    );

    s.revive(1);
    let rise = Duration::from_millis(INTERVAL_MS * RISE as u64 + 1000);
    wait_for(rise, "be1 up", || s.backend(&backend4(1)).health == "up");
    let t = s.connects(90);
    all_ok(&t, 90);
    assert!(t.by_server.contains_key("be1"), "{t:?}");
}

#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn all_down_is_loud_then_recovers() {
    let mut s = Setup::new(3, 3);
    for i in 0..3 {
        s.kill(i);
    }
    let fall = Duration::from_millis(INTERVAL_MS * FALL as u64 + 1000);
    wait_for(fall, "all down", || status(&s.socket).vips[0].all_down);
    let (code, human, _) = lab::cli(&["status", "--socket", s.socket.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(human.contains("ALL BACKENDS DOWN"), "{human}");
    let t = traffic::tcp_connects(&s.topo.client, vip_addr(), 2);
    assert_eq!(t.ok(), 0, "{t:?}");
    let drops = lab::stats(&s.socket).outcome("drop_no_backend");
    assert!(drops > 0, "drops not counted");

    s.revive(2);
    let rise = Duration::from_millis(INTERVAL_MS * RISE as u64 + 1000);
    wait_for(rise, "be2 back", || status(&s.socket).vips[0].live == 1);
    let t = s.connects(30);
    all_ok(&t, 30);
    assert_eq!(t.by_server.keys().collect::<Vec<_>>(), ["be2"], "{t:?}");
    let st = status(&s.socket);
    assert!(!st.vips[0].all_down);
    assert_eq!(
        st.vips[0]
            .backends
            .iter()
            .filter(|b| b.in_ring)
            .map(|b| b.address.clone())
            .collect::<Vec<_>>(),
        [backend4(2)]
    );
}

#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn cli_changes_apply_and_survive_a_restart() {
    let mut s = Setup::new(3, 3);
    cli_ok(&s.socket, &["backend", "del", "--vip", "web", &backend4(2)]);
    cli_ok(
        &s.socket,
        &["backend", "drain", "--vip", "web", &backend4(1)],
    );
    cli_ok(
        &s.socket,
        &[
            "vip",
            "add",
            "alt",
            "--address",
            "198.19.0.101:80",
            "--health",
            "none",
            "--backend",
            &backend4(2),
        ],
    );
    let check = |s: &Setup| {
        let t = s.connects(45);
        all_ok(&t, 45);
        assert_eq!(t.by_server.keys().collect::<Vec<_>>(), ["be0"], "{t:?}");
        let st = status(&s.socket);
        let names: Vec<&str> = st.vips.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["web", "alt"]);
        let web: Vec<(String, bool)> = st.vips[0]
            .backends
            .iter()
            .map(|b| (b.address.clone(), b.drain))
            .collect();
        assert_eq!(web, [(backend4(0), false), (backend4(1), true)]);
    };
    check(&s);
    // Refused changes say why and change nothing.
    let (code, _, err) = lab::cli(&[
        "backend",
        "add",
        "--vip",
        "web",
        "fd00::1",
        "--socket",
        s.socket.to_str().unwrap(),
    ]);
    // Refused: exit 2, as for a refused file.
    assert_eq!(code, 2, "{err}");
    // (An IPv6 backend of an IPv4 VIP is IPv4 in IPv6, which needs an IPv6 outer source.)
    assert!(err.contains("needs agent.source_v6"), "{err}");
    let (code, _, err) = lab::cli(&["vip", "del", "nope", "--socket", s.socket.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no VIP named"), "{err}");
    // The refusal of a VIP names the user's own input, not a line of text rendered for it.
    let (code, _, err) = lab::cli(&[
        "vip",
        "add",
        "api",
        "--address",
        "198.19.0.7:80",
        "--backend",
        "127.0.0.1",
        "--socket",
        s.socket.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("vip.backend.address: 127.0.0.1") && err.contains("loopback"),
        "{err}"
    );
    assert!(!err.contains("vip add:"), "{err}");

    let st = s.agent.stop().expect("agent exit");
    assert!(st.success());
    let cfg = std::fs::read_to_string(&s.config).unwrap();
    (s.agent, _) = lab::start_agent(&s.topo.lb, &cfg, &s.tmp);
    check(&s);
}

#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn an_invalid_reload_is_refused_and_a_valid_one_applies() {
    let s = Setup::new(3, 3);
    let good = std::fs::read_to_string(&s.config).unwrap();
    let bad = good.replace("protocol = \"tcp\"", "protocol = \"sctp\"");
    let line = bad.lines().position(|l| l.contains("sctp")).unwrap() + 1;
    std::fs::write(&s.config, &bad).unwrap();
    unsafe { libc::kill(s.agent.child.id() as i32, libc::SIGHUP) };
    wait_for(Duration::from_secs(5), "the reload refused", || {
        status(&s.socket).reload_error.is_some()
    });
    let st = status(&s.socket);
    let e = st.reload_error.clone().unwrap();
    assert!(e.contains(&format!("lb.toml:{line}: vip.protocol")), "{e}");
    assert_eq!(st.reloads, 0);
    let t = s.connects(60);
    all_ok(&t, 60);
    assert_eq!(t.by_server.len(), 3, "{t:?}");

    // A valid file, noticed on disk without a signal: one backend fewer.
    let fewer = good.replacen(
        &format!("\n[[vip.backend]]\naddress = \"{}\"\n", backend4(2)),
        "",
        1,
    );
    std::fs::write(&s.config, fewer).unwrap();
    wait_for(Duration::from_secs(5), "the reload applied", || {
        status(&s.socket).reloads == 1
    });
    let st = status(&s.socket);
    assert_eq!(st.reload_error, None);
    assert_eq!(st.vips[0].backends.len(), 2);
    let t = s.connects(60);
    all_ok(&t, 60);
    assert!(!t.by_server.contains_key("be2"), "{t:?}");
}

#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn the_control_socket_refuses_other_users() {
    let s = Setup::new(1, 1);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&s.socket).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    // Let nobody reach the folder, so that only the socket's own mode stands in the way.
    std::fs::set_permissions(
        &s.tmp.0,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .arg(lb_tests::lb_bin())
        .args(["status", "--socket", s.socket.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("Permission denied"), "{err}");
}
