//! Health through the clients' path: probes sent to VIP:port through the tunnel fail for a
//! backend without the VIP on its loopback or without its decapsulation, where a probe to the
//! backend's own address passes; and passive health ejects backends whose clients repeat
//! their SYNs, never more than the VIP's share, for longer each time.
use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use lb::{
    config::{Health, HealthKind, Via},
    health::Target,
    status::BackendStatus,
};
use lb_tests::{
    Netns, TempDir,
    lab::{self, BACKENDS4, BACKENDS6, OneArm, VIP4, VIP6, status, wait_for},
    life::all_ok,
    traffic,
};

const INTERVAL_MS: u64 = 200;
const FALL: u64 = 2;
const RISE: u64 = 2;

fn vip4() -> SocketAddr {
    format!("{VIP4}:80").parse().unwrap()
}

fn vip6() -> SocketAddr {
    format!("[{VIP6}]:81").parse().unwrap()
}

/// The agent's config: "web" (IPv4, port 80) and "web6" (IPv6, port 81) over `n` backends,
/// TCP probes through the tunnel (the default), `extra` appended to each VIP.
fn config(tmp: &TempDir, n: usize, extra: &str) -> String {
    let mut s = format!(
        "[agent]\ninterfaces = [\"eth0\"]\nsocket = \"{}\"\nsource_v4 = \"198.18.0.2\"\nsource_v6 = \"fd00:18::2\"\nflow_table_size = 65536\n",
        tmp.path("lb.sock").display()
    );
    for (name, addr, backends) in [
        ("web", vip4(), &BACKENDS4[..]),
        ("web6", vip6(), &BACKENDS6[..]),
    ] {
        s += &format!(
            "\n[[vip]]\nname = \"{name}\"\naddress = \"{addr}\"\nprotocol = \"tcp\"\n\n\
             [vip.health]\nkind = \"tcp\"\ninterval = \"{INTERVAL_MS}ms\"\ntimeout = \"300ms\"\n\
             rise = {RISE}\nfall = {FALL}\ndamping = false\n{extra}"
        );
        for i in 0..n {
            let b = backends
                .get(i)
                .map(|b| b.to_string())
                .unwrap_or_else(|| match addr {
                    SocketAddr::V4(_) => lab::backend4(i),
                    SocketAddr::V6(_) => format!("fd00:18::{}", 11 + i),
                });
            s += &format!("\n[[vip.backend]]\naddress = \"{b}\"\n");
        }
    }
    s
}

fn backend(socket: &std::path::Path, vip: &str, addr: &str) -> BackendStatus {
    let s = status(socket);
    let v = s.vips.iter().find(|v| v.name == vip).expect("the VIP");
    v.backends
        .iter()
        .find(|b| b.address == addr)
        .cloned()
        .unwrap_or_else(|| panic!("{addr} not in {v:?}"))
}

/// A probe made as the agent makes it, from inside `ns`, straight to `target`.
fn direct_probe(ns: &Netns, target: SocketAddr) -> Result<(), String> {
    let h = Health {
        kind: HealthKind::Tcp,
        via: Via::Direct,
        timeout: Duration::from_secs(2),
        ..Health::default()
    };
    lb_tests::probe_from(ns, h, &Target::direct(target))
}

/// A backend without the VIP on its loopback (be1) and one whose `lb decap` is stopped (be2):
/// their probes to their own addresses pass, their probes through the tunnel fail, and they go
/// down within interval × fall; every client connection through the VIPs then succeeds.
/// Mended, each is up after `rise` passes. IPv4 and IPv6.
#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn a_backend_the_clients_cannot_reach_fails_its_tunnel_probe() {
    let topo = OneArm::with_backends(3);
    let tmp = TempDir::new("hpath");
    let mut decaps: Vec<Option<lb_tests::Proc>> = topo
        .backends
        .iter()
        .map(|b| Some(lab::backend_host(b, "eth0", &tmp)))
        .collect();
    let _servers: Vec<_> = topo
        .backends
        .iter()
        .enumerate()
        .flat_map(|(i, b)| {
            [
                traffic::tcp_server(b, vip4(), &format!("be{i}")),
                traffic::tcp_server(b, vip6(), &format!("be{i}")),
            ]
        })
        .collect();
    let (_agent, _) = lab::start_agent(&topo.lb, &config(&tmp, 3, ""), &tmp);
    let socket = tmp.path("lb.sock");
    let all = [("web", &BACKENDS4), ("web6", &BACKENDS6)];
    wait_for(Duration::from_secs(3), "every backend up", || {
        all.iter()
            .all(|(v, bs)| bs.iter().all(|b| backend(&socket, v, b).health == "up"))
    });

    // be1 loses the VIPs from its loopback; be2's decapsulation stops.
    topo.backends[1].sh(&format!(
        "ip addr del {VIP4}/32 dev lo && ip addr del {VIP6}/128 dev lo"
    ));
    decaps[2] = None;
    let broken = Instant::now();
    // The services still answer on the backends' own addresses.
    for b in [1, 2] {
        for addr in [BACKENDS4[b], BACKENDS6[b]] {
            let port = if addr.contains(':') { 81 } else { 80 };
            let target = SocketAddr::new(addr.parse().unwrap(), port);
            assert_eq!(direct_probe(&topo.lb, target), Ok(()), "direct to {target}");
        }
    }
    // interval × fall, with a probe's timeout and a status read to spare.
    let bound = Duration::from_millis(INTERVAL_MS * FALL + 300 + 700);
    wait_for(bound, "be1 and be2 down through the tunnel", || {
        all.iter().all(|(v, bs)| {
            [1, 2]
                .iter()
                .all(|&i| backend(&socket, v, bs[i]).health == "down")
        })
    });
    let took = broken.elapsed();
    for (v, bs) in all {
        for i in [1, 2] {
            let b = backend(&socket, v, bs[i]);
            assert_eq!(b.down_reason.as_deref(), Some("active"), "{b:?}");
            let e = b.last_error.unwrap_or_default();
            assert!(e.contains("through the tunnel"), "{v} {}: {e}", bs[i]);
        }
        assert_eq!(backend(&socket, v, bs[0]).health, "up");
    }
    eprintln!("down through the tunnel {took:?} after the break");
    // Every client connection goes to the one backend that serves the VIPs.
    for vip in [vip4(), vip6()] {
        let t = traffic::tcp_connects(&topo.client, vip, 100);
        all_ok(&t, 100);
        assert_eq!(t.by_server.keys().collect::<Vec<_>>(), ["be0"], "{vip}");
    }
    assert_eq!(lab::kernel_forward_drops(&topo.lb), 0);

    // Mended: both up after `rise` passes.
    topo.backends[1].sh(&format!(
        "ip addr add {VIP4}/32 dev lo && ip addr add {VIP6}/128 dev lo nodad"
    ));
    decaps[2] = Some(lab::start_decap(&topo.backends[2], "eth0", &tmp));
    let bound = Duration::from_millis(INTERVAL_MS * (RISE + 1) + 1000);
    wait_for(bound, "be1 and be2 up again", || {
        all.iter()
            .all(|(v, bs)| bs.iter().all(|b| backend(&socket, v, b).health == "up"))
    });
    for vip in [vip4(), vip6()] {
        let t = traffic::tcp_connects(&topo.client, vip, 60);
        all_ok(&t, 60);
        assert_eq!(t.by_server.len(), 3, "{vip}: {:?}", t.by_server);
    }
}

/// Connects from `ns` to `vip` on many threads until `stop` (or 40 s), each attempt waiting
/// up to 2.5 s: long enough for a client's SYN to be sent again (after 1 s).
fn clients(ns: &Netns, vip: SocketAddr, stop: Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<()>> {
    (0..32)
        .map(|_| {
            let path = format!("/run/netns/{}", ns.name);
            let stop = stop.clone();
            std::thread::spawn(move || {
                let f = std::fs::File::open(&path).expect("open netns");
                let rc =
                    unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns");
                let end = Instant::now() + Duration::from_secs(40);
                while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                    let _ = std::net::TcpStream::connect_timeout(&vip, Duration::from_millis(2500));
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        })
        .collect()
}

/// Two backends of four drop the clients' SYNs (nftables on the backend; the balancer's
/// probes still pass): passive health ejects one of them within a bound, never both
/// (`max_ejection_percent = 25`), never a good one, and an ejection repeated lasts longer.
#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn passive_health_ejects_backends_whose_clients_repeat_their_syns() {
    let topo = OneArm::with_backends(4);
    let tmp = TempDir::new("outlier");
    let serving = lab::serve(&topo.backends, vip4(), false, &tmp, |i| format!("be{i}"));
    let outlier = "\n[vip.outlier]\ninterval = \"1s\"\nmin_flows = 2\nretry_percent = 25\n\
                   base_ejection_time = \"2s\"\nmax_ejection_time = \"20s\"\nmax_ejection_percent = 25\n";
    let cfg = config(&tmp, 4, outlier);
    // Only the IPv4 VIP: the IPv6 one's servers are not running here.
    let cfg = cfg[..cfg.find("\n[[vip]]\nname = \"web6\"").unwrap()].to_string();
    let (_agent, _) = lab::start_agent(&topo.lb, &cfg, &tmp);
    let socket = tmp.path("lb.sock");
    for i in [1, 2] {
        topo.backends[i].sh(
            "nft add table inet synblock && nft add chain inet synblock in '{ type filter hook input priority 0; }' \
             && nft add rule inet synblock in ip saddr 198.18.0.1 tcp flags syn drop",
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let load = clients(&topo.client, vip4(), stop.clone());
    let ejected = |s: &lb::status::Status| -> Vec<BackendStatus> {
        s.vips[0]
            .backends
            .iter()
            .filter(|b| b.health == "ejected")
            .cloned()
            .collect()
    };
    // Within: an interval to count from, a SYN's first repetition (1 s), an interval to judge.
    let bound = Duration::from_secs(5);
    wait_for(bound, "a backend ejected", || {
        !ejected(&status(&socket)).is_empty()
    });
    eprintln!(
        "first ejection {:?} after the load began",
        started.elapsed()
    );
    let mut grown = None;
    let end = Instant::now() + Duration::from_secs(20);
    while Instant::now() < end && grown.is_none() {
        let s = status(&socket);
        let out = ejected(&s);
        assert!(out.len() <= 1, "more than 25% ejected: {out:?}");
        for b in &out {
            assert!(
                [BACKENDS4[1], BACKENDS4[2]].contains(&b.address.as_str()),
                "a good backend ejected: {b:?}"
            );
            assert_eq!(b.down_reason.as_deref(), Some("passive"), "{b:?}");
            if b.ejections >= 2 && b.ejected_s.is_some_and(|s| s >= 3) {
                grown = Some(b.clone());
            }
        }
        // The probes through the tunnel pass all along: passive health alone ejects.
        for b in &s.vips[0].backends {
            assert!(b.last_error.is_none(), "{b:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().unwrap();
    }
    let b = grown.expect("a second ejection of one backend, longer than the first (2 s)");
    eprintln!("ejected again: {b:?}");
    let m = lab::stats(&socket);
    let retries: u64 = m.vips[0].backends.iter().map(|b| b.syn_retries).sum();
    assert!(retries > 0, "{m:?}");
    for i in [0, 3] {
        assert_eq!(
            m.vips[0].backends[i].syn_retries, 0,
            "{:?}",
            m.vips[0].backends[i]
        );
    }
    drop(serving);
}
