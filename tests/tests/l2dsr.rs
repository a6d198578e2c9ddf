//! `forwarding = "l2dsr"`: backends that run nothing of ours (no XDP program, no decap), only
//! the kernel with the VIPs on their loopback, serve TCP and UDP through the balancer, IPv4
//! and IPv6, their health probed the clients' way; a backend behind a router is refused.
use std::net::SocketAddr;

use lb_tests::{
    TempDir,
    lab::{self, BACKENDS4, BACKENDS6, OneArm, VIP4, VIP6, status, wait_for},
    life::all_ok,
    traffic,
};

#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn backends_running_only_the_kernel_serve_through_l2dsr() {
    let topo = OneArm::with_backends(3);
    let tmp = TempDir::new("l2dsr");
    let (web4, web6): (SocketAddr, SocketAddr) = (
        format!("{VIP4}:80").parse().unwrap(),
        format!("[{VIP6}]:81").parse().unwrap(),
    );
    let (dns4, dns6): (SocketAddr, SocketAddr) = (
        format!("{VIP4}:53").parse().unwrap(),
        format!("[{VIP6}]:53").parse().unwrap(),
    );
    // The backend guide's setup for l2dsr, and nothing of lb's.
    let mut servers = Vec::new();
    for (i, b) in topo.backends.iter().enumerate() {
        b.sh(&format!(
            "ip addr add {VIP4}/32 dev lo && ip addr add {VIP6}/128 dev lo nodad \
             && sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2"
        ));
        let name = format!("be{i}");
        servers.push(traffic::tcp_server(b, web4, &name));
        servers.push(traffic::tcp_server(b, web6, &name));
        servers.push(traffic::udp_server(b, dns4, &name));
        servers.push(traffic::udp_server(b, dns6, &name));
    }
    // A fourth backend, behind a router (be0): not on a connected subnet.
    topo.lb.sh("ip route add 198.18.5.0/24 via 198.18.0.11");
    let mut cfg = format!(
        "[agent]\ninterfaces = [\"eth0\"]\nsocket = \"{}\"\nsource_v4 = \"198.18.0.2\"\nsource_v6 = \"fd00:18::2\"\n",
        tmp.path("lb.sock").display()
    );
    for (name, addr, proto, backends, health) in [
        ("web", web4, "tcp", &BACKENDS4, "kind = \"tcp\""),
        ("web6", web6, "tcp", &BACKENDS6, "kind = \"tcp\""),
        (
            "dns",
            dns4,
            "udp",
            &BACKENDS4,
            "kind = \"udp\"\nsend = \"ping\"\nexpect = \"be\"",
        ),
        (
            "dns6",
            dns6,
            "udp",
            &BACKENDS6,
            "kind = \"udp\"\nsend = \"ping\"\nexpect = \"be\"",
        ),
    ] {
        cfg += &format!(
            "\n[[vip]]\nname = \"{name}\"\naddress = \"{addr}\"\nprotocol = \"{proto}\"\nforwarding = \"l2dsr\"\n\n\
             [vip.health]\n{health}\ninterval = \"200ms\"\ntimeout = \"300ms\"\nrise = 2\nfall = 2\n"
        );
        for b in backends.iter() {
            cfg += &format!("\n[[vip.backend]]\naddress = \"{b}\"\n");
        }
        if name == "web" {
            cfg += "\n[[vip.backend]]\naddress = \"198.18.5.5\"\n";
        }
    }
    let (_agent, _) = lab::start_agent(&topo.lb, &cfg, &tmp);
    let socket = tmp.path("lb.sock");
    // Up, and probed the clients' way at least once (a backend starts up with a new agent).
    wait_for(
        std::time::Duration::from_secs(5),
        "three backends live and probed in every VIP",
        || {
            status(&socket).vips.iter().all(|v| {
                v.live == 3
                    && v.backends
                        .iter()
                        .filter(|b| b.address != "198.18.5.5")
                        .all(|b| b.last_probe_ms.is_some() && b.last_error.is_none())
            })
        },
    );
    // The backend behind a router is refused, and says why.
    let s = status(&socket);
    let far = s.vips[0]
        .backends
        .iter()
        .find(|b| b.address == "198.18.5.5")
        .expect("the far backend");
    assert_eq!(far.down_reason.as_deref(), Some("refused"), "{far:?}");
    assert!(!far.in_ring, "{far:?}");
    let why = far.last_error.clone().unwrap_or_default();
    assert!(why.contains("not on a connected subnet"), "{why}");
    // The health checks went the clients' way and passed.
    for v in &s.vips {
        for b in v.backends.iter().filter(|b| b.address != "198.18.5.5") {
            assert_eq!(b.health, "up", "{} {b:?}", v.name);
            assert!(b.last_probe_ms.is_some(), "{} {b:?}", v.name);
        }
    }
    for vip in [web4, web6] {
        let t = traffic::tcp_connects(&topo.client, vip, 300);
        all_ok(&t, 300);
        assert_eq!(t.by_server.len(), 3, "{vip}: {:?}", t.by_server);
    }
    for vip in [dns4, dns6] {
        let t = traffic::udp_requests(&topo.client, vip, 100);
        assert!(t.failed.is_empty(), "{vip}: {:?}", t.failed);
        assert_eq!(t.by_server.values().sum::<u32>(), 100, "{vip}");
        assert_eq!(t.by_server.len(), 3, "{vip}: {:?}", t.by_server);
    }
    // Only XDP moved the packets; the backends run no program at all.
    assert_eq!(lab::kernel_forward_drops(&topo.lb), 0);
    for b in &topo.backends {
        let link = b.sh("ip -d link show eth0");
        assert!(!link.contains("xdp"), "{link}");
    }
    let st = lab::stats(&socket);
    assert!(st.outcome("tx") >= 800, "{:?}", st.outcomes);
}
