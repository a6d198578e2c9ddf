//! Day-two operations on a running agent: a weight changed in place, where flows go and when
//! a drain is done, the service manager's notifications, and the agent without root.
use std::time::Duration;

use lb_tests::{lab, traffic};

/// `lb backend set --weight` in place: a 1:1 spread becomes 1:3 on the wire, the backend
/// stays in the ring without a new `rise` wait, established connections keep their backends,
/// and `lb config` shows the weight in a file `lb check` accepts.
#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn a_weight_set_in_place_moves_the_spread_and_nothing_else() {
    let topo = lab::OneArm::with_backends(2);
    let tmp = lb_tests::TempDir::new("weight");
    let sock = tmp.path("lb.sock");
    let vip: std::net::SocketAddr = format!("{}:80", lab::VIP4).parse().unwrap();
    let _serving = lab::serve(&topo.backends, vip, false, &tmp, |i| format!("be{i}"));
    let _health: Vec<std::net::TcpListener> = topo
        .backends
        .iter()
        .enumerate()
        .map(|(i, ns)| {
            ns.run(|| std::net::TcpListener::bind((lab::backend4(i).as_str(), 8081)).unwrap())
        })
        .collect();
    let mut cfg = format!(
        "[agent]\ninterfaces = [\"eth0\"]\nsocket = \"{}\"\nsource_v4 = \"198.18.0.2\"\n\n\
         [[vip]]\nname = \"web\"\naddress = \"{vip}\"\n\
         [vip.health]\nkind = \"tcp\"\nvia = \"direct\"\nport = 8081\ninterval = \"200ms\"\nrise = 10\n",
        sock.display()
    );
    for i in 0..2 {
        cfg += &format!("\n[[vip.backend]]\naddress = \"{}\"\n", lab::backend4(i));
    }
    let (_agent, _) = lab::start_agent(&topo.lb, &cfg, &tmp);
    let mut long = traffic::LongLived::open(&topo.client, vip, 20);
    let be1 = lab::backend4(1);
    lab::cli_ok(
        &sock,
        &["backend", "set", "--vip", "web", &be1, "--weight", "300"],
    );
    let b = lab::status(&sock).vips[0].backends[1].clone();
    assert_eq!(
        (b.weight, b.in_ring, b.health.as_str()),
        (300, true, "up"),
        "{b:?}"
    );
    let t = traffic::tcp_connects(&topo.client, vip, 1000);
    assert!(t.failed.is_empty(), "{t:?}");
    let share = t.by_server.get("be1").copied().unwrap_or(0) as f64 / 1000.0;
    assert!(
        (0.70..=0.80).contains(&share),
        "be1 took {share} of new connections, want 0.75"
    );
    let moved = long.exchange();
    assert!(moved.is_empty(), "{moved:?}");
    let effective = lab::cli_ok(&sock, &["config"]);
    let parsed = lb::config::parse("lb config", &effective).expect("lb config parses");
    assert_eq!(parsed.vips[0].backends[1].weight, 300, "{effective}");
}

/// With `NOTIFY_SOCKET` set (as systemd sets it for `Type=notify-reload`): READY=1 arrives
/// once the program is attached, RELOADING=1 (with MONOTONIC_USEC) and READY=1 again around a
/// SIGHUP, STOPPING=1 at the end.
#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn the_service_manager_hears_ready_reloading_and_stopping() {
    let topo = lab::OneArm::new();
    let tmp = lb_tests::TempDir::new("notify");
    let sock = tmp.path("lb.sock");
    let notify = tmp.path("notify.sock");
    let listener = std::os::unix::net::UnixDatagram::bind(&notify).unwrap();
    listener
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let env = format!("NOTIFY_SOCKET={}", notify.display());
    let (mut agent, _) =
        lab::start_agent_under(&topo.lb, &lab::dns_config(&sock), &tmp, &["env", &env], &[]);
    let next = || {
        let mut buf = [0u8; 512];
        let n = listener.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let ready = next();
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    // By READY=1 the program is attached.
    let link = topo.lb.sh("ip -d link show eth0");
    assert!(link.contains("xdp"), "{link}");
    unsafe { libc::kill(agent.child.id() as i32, libc::SIGHUP) };
    let reloading = next();
    assert!(
        reloading.lines().any(|l| l == "RELOADING=1"),
        "{reloading:?}"
    );
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading:?}");
    assert!(next().lines().any(|l| l == "READY=1"));
    agent.stop();
    assert!(next().lines().any(|l| l == "STOPPING=1"));
}

/// The agent as a user that is not root, with only the capabilities the packaged unit gives
/// it (set with setpriv, as systemd's AmbientCapabilities would): it attaches and forwards;
/// without CAP_BPF it says that CAP_BPF is missing, and nothing else.
#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn the_agent_runs_as_a_user_with_only_its_capabilities() {
    let topo = lab::OneArm::new();
    let tmp = lb_tests::TempDir::new("caps");
    // What the unit's StateDirectory and RuntimeDirectory would give the user: its own.
    let (state, run) = (tmp.path("state"), tmp.path("run"));
    let pins = tmp.pin_dir();
    for d in [&state, &run, &pins] {
        std::fs::create_dir_all(d).unwrap();
        lb_tests::sh(&format!(
            "chown nobody:nogroup {} && chmod 700 {}",
            d.display(),
            d.display()
        ));
    }
    lb_tests::sh(&format!("chmod 755 {}", tmp.0.display()));
    let sock = run.join("lb.sock");
    let vip: std::net::SocketAddr = format!("{}:53", lab::VIP4).parse().unwrap();
    let _serving = lab::serve(&topo.backends, vip, true, &tmp, |i| format!("be{i}"));
    let cfg = lab::dns_config(&sock);
    let caps = lb::agent::CAPABILITIES
        .iter()
        .map(|c| format!("+{}", c.to_lowercase().trim_start_matches("cap_")))
        .collect::<Vec<_>>()
        .join(",");
    let setpriv = |caps: &str| -> Vec<String> {
        vec![
            "setpriv".into(),
            "--reuid=nobody".into(),
            "--regid=nogroup".into(),
            "--clear-groups".into(),
            format!("--inh-caps=-all,{caps}"),
            format!("--ambient-caps=-all,{caps}"),
            format!("--bounding-set=-all,{caps}"),
        ]
    };
    let wrapper = setpriv(&caps);
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let (agent, cfg_path) = lab::start_agent_under(&topo.lb, &cfg, &tmp, &wrapper, &[]);
    let uid = std::fs::read_to_string(format!("/proc/{}/status", agent.child.id())).unwrap();
    assert!(
        uid.lines()
            .any(|l| l.starts_with("Uid:") && !l.contains("\t0\t")),
        "{uid}"
    );
    let t = traffic::udp_requests(&topo.client, vip, 30);
    assert_eq!(t.ok(), 30, "{t:?}");
    assert_eq!(lab::kernel_forward_drops(&topo.lb), 0);
    drop(agent);
    // One capability short: refused, naming it.
    let fewer: Vec<&str> = lb::agent::CAPABILITIES
        .iter()
        .filter(|c| **c != "CAP_BPF")
        .copied()
        .collect();
    let fewer = fewer
        .iter()
        .map(|c| format!("+{}", c.to_lowercase().trim_start_matches("cap_")))
        .collect::<Vec<_>>()
        .join(",");
    let mut cmd = setpriv(&fewer);
    cmd.extend([
        lb_tests::lb_bin().display().to_string(),
        "run".into(),
        "--config".into(),
        cfg_path.display().to_string(),
    ]);
    let mut p = topo.lb.spawn(
        &cmd.iter().map(String::as_str).collect::<Vec<_>>(),
        tmp.path("fewer.log"),
    );
    let status = p.child.wait().unwrap();
    let log = p.log_text();
    assert!(!status.success(), "{log}");
    assert!(log.contains("lacks CAP_BPF:"), "{log}");
    assert_eq!(
        log.matches("lacks").count(),
        1,
        "only CAP_BPF is missing: {log}"
    );
}

/// `lb flows --from` names the backend each live connection is on. Each backend's active
/// flows (seen within `agent.flow_active`) are in `lb status` and the metrics: a drained
/// backend keeps its established connections and shows them, and once they close its count
/// reaches 0 (`drained: no active flows`).
#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn a_drained_backend_shows_when_its_last_flow_is_gone() {
    let topo = lab::OneArm::with_backends(2);
    let tmp = lb_tests::TempDir::new("active");
    let sock = tmp.path("lb.sock");
    let vip: std::net::SocketAddr = format!("{}:80", lab::VIP4).parse().unwrap();
    let _serving = lab::serve(&topo.backends, vip, false, &tmp, |i| format!("be{i}"));
    let mut cfg = format!(
        "[agent]\ninterfaces = [\"eth0\"]\nsocket = \"{}\"\nsource_v4 = \"198.18.0.2\"\nflow_active = \"2s\"\n\n\
         [[vip]]\nname = \"web\"\naddress = \"{vip}\"\n[vip.health]\nkind = \"none\"\n",
        sock.display()
    );
    for i in 0..2 {
        cfg += &format!("\n[[vip.backend]]\naddress = \"{}\"\n", lab::backend4(i));
    }
    let (_agent, _) = lab::start_agent(&topo.lb, &cfg, &tmp);
    let mut long = traffic::LongLived::open(&topo.client, vip, 20);
    let on_be0 = long.by_server().get("be0").copied().unwrap_or(0) as u64;
    assert!(on_be0 > 0, "{:?}", long.by_server());
    // `lb flows --from`: where each live connection goes, as the flow table holds it.
    for (name, conn) in &long.conns {
        let client = conn.local_addr().unwrap().to_string();
        let i: usize = name.trim_start_matches("be").parse().unwrap();
        let out = lab::cli_ok(
            &sock,
            &["flows", "--vip", "web", "--from", &client, "--json"],
        );
        let flows: Vec<lb::api::FlowView> = serde_json::from_str(&out).unwrap();
        assert_eq!(flows.len(), 1, "{client}: {out}");
        assert_eq!(flows[0].backend, lab::backend4(i), "{client}: {out}");
    }
    let all: Vec<lb::api::FlowView> =
        serde_json::from_str(&lab::cli_ok(&sock, &["flows", "--vip", "web", "--json"])).unwrap();
    assert!(all.len() >= 20, "{all:?}");
    let human = lab::cli_ok(&sock, &["flows", "--vip", "web", "--limit", "3"]);
    assert_eq!(
        human.lines().count(),
        4,
        "a header and three flows:\n{human}"
    );
    lab::cli_ok(
        &sock,
        &["backend", "drain", "--vip", "web", &lab::backend4(0)],
    );
    let be0 = |s: &lb::status::Status| s.vips[0].backends[0].clone();
    // Established and talking: counted on the drained backend.
    lab::wait_for(Duration::from_secs(15), "be0's flows counted", || {
        assert!(long.exchange().is_empty());
        be0(&lab::status(&sock)).active_flows == Some(on_be0)
    });
    drop(long);
    lab::wait_for(
        Duration::from_secs(15),
        "be0's active flows to reach 0",
        || be0(&lab::status(&sock)).active_flows == Some(0),
    );
    let human = lab::cli_ok(&sock, &["status"]);
    assert!(human.contains("drained: no active flows"), "{human}");
}
