//! End to end: real TCP and UDP through the balancer, between network namespaces. In the
//! balancer's namespace nftables drops every forwarded packet, so whatever arrives was moved
//! by XDP; the tests also check the program's own counters.
use std::net::SocketAddr;

use lb_tests::{
    Netns, TempDir,
    lab::{self, BACKENDS4, BACKENDS6, Lab, OneArm, VIP4, VIP6},
    traffic,
};

fn config(interfaces: &str, socket: &std::path::Path, vips: &str) -> String {
    format!(
        r#"
[agent]
interfaces = [{interfaces}]
socket = "{}"
source_v4 = "198.18.0.2"
source_v6 = "fd00:18::2"
{vips}
"#,
        socket.display()
    )
}

fn vip(name: &str, addr: &str, proto: &str, backends: &[&str]) -> String {
    let mut s =
        format!("\n[[vip]]\nname = \"{name}\"\naddress = \"{addr}\"\nprotocol = \"{proto}\"\n");
    for b in backends {
        s += &format!("\n[[vip.backend]]\naddress = \"{b}\"\n");
    }
    s
}

/// Every backend got between `lo` and `hi` percent of `n` answers, and none failed.
fn assert_spread(t: &traffic::Tally, n: u32, lo: f64, hi: f64) {
    assert!(
        t.failed.is_empty(),
        "{} of {n} failed: {:?}",
        t.failed.len(),
        &t.failed[..t.failed.len().min(5)]
    );
    assert_eq!(t.ok(), n, "{t:?}");
    assert_eq!(t.by_server.len(), 3, "not every backend answered: {t:?}");
    for (who, k) in &t.by_server {
        let pct = 100.0 * *k as f64 / n as f64;
        assert!(
            (lo..=hi).contains(&pct),
            "{who} got {pct:.1}% of {n}: {t:?}"
        );
    }
}

#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn one_arm_tcp_v4_spreads_300_connections() {
    let topo = OneArm::new();
    let tmp = TempDir::new("onearm");
    let sock = tmp.path("lb.sock");
    let cfg = config(
        r#""eth0""#,
        &sock,
        &vip("web", &format!("{VIP4}:80"), "tcp", &BACKENDS4),
    );
    let vip_addr: SocketAddr = format!("{VIP4}:80").parse().unwrap();
    let _serving = lab::serve(&topo.backends, vip_addr, false, &tmp, |i| format!("be{i}"));
    let (_agent, _) = lab::start_agent(&topo.lb, &cfg, &tmp);

    // The agent resolved every backend's next hop before the first packet, and asked the
    // kernel to keep it resolved.
    let neigh = topo.lb.sh("ip neigh show dev eth0");
    for b in BACKENDS4 {
        assert!(
            neigh
                .lines()
                .any(|l| l.starts_with(&format!("{b} ")) && l.contains("managed")),
            "{b}: {neigh}"
        );
    }

    let t = traffic::tcp_connects(&topo.client, vip_addr, 300);
    assert_spread(&t, 300, 20.0, 47.0);

    let s = lab::stats(&sock);
    // Every connection's SYN, ACK(s) and FIN went through XDP_TX: at least 3 packets each.
    assert!(s.outcome("tx") >= 900, "{s:?}");
    assert_eq!(s.outcome("aborted"), 0, "{s:?}");
    let web = &s.vips[0];
    assert!(web.packets >= 900, "{web:?}");
    assert_eq!(
        web.backends.iter().map(|b| b.packets).sum::<u64>(),
        s.outcome("tx"),
        "{s:?}"
    );
    assert!(web.backends.iter().all(|b| b.packets > 0), "{web:?}");
    assert_eq!(
        lab::kernel_forward_drops(&topo.lb),
        0,
        "the kernel forwarded (and dropped) VIP traffic"
    );
}

#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn one_arm_tcp_v6() {
    let topo = OneArm::new();
    let tmp = TempDir::new("v6");
    let sock = tmp.path("lb.sock");
    let cfg = config(
        r#""eth0""#,
        &sock,
        &vip("web6", &format!("[{VIP6}]:80"), "tcp", &BACKENDS6),
    );
    let vip_addr: SocketAddr = format!("[{VIP6}]:80").parse().unwrap();
    let _serving = lab::serve(&topo.backends, vip_addr, false, &tmp, |i| format!("be{i}"));
    let (_agent, _) = lab::start_agent(&topo.lb, &cfg, &tmp);

    let t = traffic::tcp_connects(&topo.client, vip_addr, 150);
    assert_spread(&t, 150, 15.0, 55.0);
    let s = lab::stats(&sock);
    assert!(s.outcome("tx") >= 450, "{s:?}");
    assert_eq!(lab::kernel_forward_drops(&topo.lb), 0);
}

#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn one_arm_udp_request_response() {
    let topo = OneArm::new();
    let tmp = TempDir::new("udp");
    let sock = tmp.path("lb.sock");
    let cfg = config(
        r#""eth0""#,
        &sock,
        &vip("dns", &format!("{VIP4}:53"), "udp", &BACKENDS4),
    );
    let vip_addr: SocketAddr = format!("{VIP4}:53").parse().unwrap();
    let _serving = lab::serve(&topo.backends, vip_addr, true, &tmp, |i| format!("be{i}"));
    let (mut agent, _) = lab::start_agent(&topo.lb, &cfg, &tmp);

    let t = traffic::udp_requests(&topo.client, vip_addr, 150);
    assert_spread(&t, 150, 15.0, 55.0);
    let s = lab::stats(&sock);
    // One datagram per request, each forwarded once.
    assert_eq!(s.vips[0].packets, 150, "{s:?}");
    assert_eq!(s.outcome("tx"), 150, "{s:?}");
    assert_eq!(lab::kernel_forward_drops(&topo.lb), 0);

    // SIGTERM: a clean exit; the socket goes, the pinned data path stays and forwards.
    let status = agent.stop().expect("agent exit status");
    assert!(status.success(), "{status}: {}", agent.log_text());
    assert!(!sock.exists(), "control socket left behind");
    let xdp_attached = || topo.lb.sh("ip -j link show dev eth0").contains("\"xdp\"");
    assert!(xdp_attached(), "stopping the agent detached the data path");
    let t = traffic::udp_requests(&topo.client, vip_addr, 30);
    assert_eq!(t.ok(), 30, "no forwarding without the agent: {t:?}");
    // `lb detach` removes it; then the VIP is unreachable (the kernel does not forward).
    let cfg_path = tmp.path("lb.toml");
    let (code, out, err) = lab::cli(&["detach", "--config", cfg_path.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("detached"), "{out}");
    assert!(!xdp_attached(), "lb detach left xdp_lb attached");
    let t = traffic::udp_requests(&topo.client, vip_addr, 1);
    assert_eq!(t.ok(), 0, "{t:?}");
}

/// Two-arm: clients on one side, backends on the other, the balancer between them with one
/// interface in each: the encapsulated packet leaves by another interface (devmap redirect).
/// Backends answer the client directly through a router (direct server return).
#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn two_arm_tcp_redirects_between_interfaces() {
    let mut lab = Lab::new();
    lab.bridge("front");
    lab.bridge("back");
    let client = Netns::new("cl");
    lab.plug(&client, "eth0", "front", &["198.18.0.1/24"]);
    client.sh(&format!(
        "ip route add {VIP4}/32 via 198.18.0.2 && ip route add 198.18.1.0/24 via 198.18.0.254"
    ));
    let router = Netns::new("rt");
    lab.plug(&router, "eth0", "front", &["198.18.0.254/24"]);
    lab.plug(&router, "eth1", "back", &["198.18.1.254/24"]);
    router.sh("sysctl -qw net.ipv4.ip_forward=1");
    let lbns = Netns::new("lb");
    lab.plug(&lbns, "eth0", "front", &["198.18.0.2/24"]);
    lab.plug(&lbns, "eth1", "back", &["198.18.1.2/24"]);
    lab::balancer_host(&lbns);
    let addrs = ["198.18.1.11", "198.18.1.12", "198.18.1.13"];
    let backends: Vec<Netns> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let b = Netns::new(&format!("be{i}"));
            lab.plug(&b, "eth0", "back", &[&format!("{a}/24")]);
            b.sh("ip route add default via 198.18.1.254");
            b
        })
        .collect();

    let tmp = TempDir::new("twoarm");
    let sock = tmp.path("lb.sock");
    let cfg = config(
        r#""eth0", "eth1""#,
        &sock,
        &vip("web", &format!("{VIP4}:80"), "tcp", &addrs),
    );
    let vip_addr: SocketAddr = format!("{VIP4}:80").parse().unwrap();
    let _serving = lab::serve(&backends, vip_addr, false, &tmp, |i| format!("be{i}"));
    let (_agent, _) = lab::start_agent(&lbns, &cfg, &tmp);

    let t = traffic::tcp_connects(&client, vip_addr, 150);
    assert_spread(&t, 150, 15.0, 55.0);
    let s = lab::stats(&sock);
    assert!(s.outcome("redirect") >= 450, "{s:?}");
    assert_eq!(s.outcome("tx"), 0, "{s:?}");
    assert_eq!(lab::kernel_forward_drops(&lbns), 0);
}

/// Fragmented UDP through a VIP that takes fragments: the client's datagrams are larger than
/// its link's MTU, so its kernel sends each in fragments; the balancer sends every fragment
/// of a datagram to one backend (by source, destination and protocol), whose kernel
/// reassembles it whole. The client's link has the smaller MTU, so a fragment with the outer
/// header still fits the balancer's.
#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn fragmented_udp_arrives_whole_at_one_backend() {
    let topo = OneArm::new();
    topo.client.sh("ip link set eth0 mtu 1400");
    let tmp = TempDir::new("frag");
    let sock = tmp.path("lb.sock");
    let cfg = config(
        r#""eth0""#,
        &sock,
        &vip("dns", &format!("{VIP4}:53"), "udp", &BACKENDS4).replacen(
            "protocol = \"udp\"\n",
            "protocol = \"udp\"\nfragments = true\n",
            1,
        ),
    );
    let vip_addr: SocketAddr = format!("{VIP4}:53").parse().unwrap();
    let _decaps: Vec<_> = topo
        .backends
        .iter()
        .map(|b| lab::backend_host(b, "eth0", &tmp))
        .collect();
    let _servers: Vec<_> = topo
        .backends
        .iter()
        .enumerate()
        .map(|(i, b)| traffic::udp_size_server(b, vip_addr, &format!("be{i}")))
        .collect();
    let (_agent, _) = lab::start_agent(&topo.lb, &cfg, &tmp);

    // 20 datagrams of 4000 bytes (three fragments each at MTU 1400), from one socket.
    const N: usize = 20;
    const SIZE: usize = 4000;
    let replies: Vec<String> = topo.client.run(|| {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        s.connect(vip_addr).unwrap();
        (0..N)
            .map(|i| {
                s.send(&vec![i as u8; SIZE]).unwrap();
                let mut buf = [0u8; 100];
                match s.recv(&mut buf) {
                    Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
                    Err(e) => format!("#{i}: {e}"),
                }
            })
            .collect()
    });
    let first = replies[0].clone();
    assert!(first.ends_with(&format!(" {SIZE}")), "{replies:?}");
    assert!(
        replies.iter().all(|r| *r == first),
        "every datagram whole, at one backend: {replies:?}"
    );
    let s = lab::stats(&sock);
    assert!(
        s.outcome("tx") >= 3 * N as u64,
        "fragments not forwarded by XDP: {s:?}"
    );
    assert_eq!(s.outcome("pass_fragment"), 0, "{s:?}");
    assert_eq!(lab::kernel_forward_drops(&topo.lb), 0);
}

/// The encapsulated path is 20 (IPv6: 40) bytes narrower than the client's: the client's
/// full-size segments do not fit once encapsulated. The balancer answers each with "too big"
/// and the MTU that fits; the client lowers its path MTU, resends, and a large upload through
/// the VIP completes, in IPv4 and IPv6.
#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn a_large_upload_completes_through_packet_too_big() {
    use std::io::{Read, Write};
    let topo = OneArm::new();
    let tmp = TempDir::new("ptb");
    let sock = tmp.path("lb.sock");
    let cfg = config(
        r#""eth0""#,
        &sock,
        &(vip("web", &format!("{VIP4}:80"), "tcp", &BACKENDS4)
            + &vip("web6", &format!("[{VIP6}]:8080"), "tcp", &BACKENDS6)),
    );
    let v4: SocketAddr = format!("{VIP4}:80").parse().unwrap();
    let v6: SocketAddr = format!("[{VIP6}]:8080").parse().unwrap();
    let _serving4 = lab::serve(&topo.backends, v4, false, &tmp, |i| format!("be{i}"));
    let _servers6: Vec<_> = topo
        .backends
        .iter()
        .enumerate()
        .map(|(i, b)| traffic::tcp_server(b, v6, &format!("be{i}")))
        .collect();
    let (_agent, _) = lab::start_agent(&topo.lb, &cfg, &tmp);

    const UPLOAD: usize = 300_000;
    for vip_addr in [v4, v6] {
        let result: std::io::Result<(String, String)> = topo.client.run(|| {
            let mut s =
                std::net::TcpStream::connect_timeout(&vip_addr, std::time::Duration::from_secs(5))?;
            s.set_read_timeout(Some(std::time::Duration::from_secs(15)))?;
            let line = |s: &mut std::net::TcpStream| -> std::io::Result<String> {
                let mut l = Vec::new();
                let mut b = [0u8; 1];
                while s.read(&mut b)? == 1 && b[0] != b'\n' {
                    l.push(b[0]);
                }
                Ok(String::from_utf8_lossy(&l).into_owned())
            };
            let hello = line(&mut s)?;
            // The server answers each newline with its name: one answer once all arrived.
            let mut data = vec![b'x'; UPLOAD];
            data.push(b'\n');
            s.write_all(&data)?;
            Ok((hello, line(&mut s)?))
        });
        let (hello, answer) = result.unwrap_or_else(|e| panic!("{vip_addr}: {e}"));
        assert!(hello.starts_with("be"), "{vip_addr}: {hello:?}");
        assert_eq!(answer, hello, "{vip_addr}: the upload did not complete");
    }
    let s = lab::stats(&sock);
    assert!(
        s.outcome("icmp_too_big") >= 2,
        "no packet-too-big sent: {s:?}"
    );
    assert!(s.outcome("tx") > 2 * (UPLOAD as u64 / 1500), "{s:?}");
    assert_eq!(lab::kernel_forward_drops(&topo.lb), 0);
    // The client learned the narrower path.
    let pmtu = topo.client.sh(&format!("ip route get {VIP4}"));
    assert!(pmtu.contains("mtu 1480"), "{pmtu}");
}

/// `answer_echo`: the client's pings to the VIPs are answered by the program (the balancer's
/// kernel holds no VIP address, and nftables drops what it would forward).
#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn pings_to_vips_are_answered_when_asked() {
    let topo = OneArm::new();
    let tmp = TempDir::new("ping");
    let sock = tmp.path("lb.sock");
    let cfg = config(
        r#""eth0""#,
        &sock,
        &(vip("web", &format!("{VIP4}:80"), "tcp", &BACKENDS4)
            + "\n[vip.health]\nkind = \"none\"\n"
            + &vip("web6", &format!("[{VIP6}]:80"), "tcp", &BACKENDS6)
            + "\n[vip.health]\nkind = \"none\"\n"),
    )
    .replacen("[agent]\n", "[agent]\nanswer_echo = true\n", 1);
    let (_agent, _) = lab::start_agent(&topo.lb, &cfg, &tmp);
    for vip in [VIP4, VIP6] {
        let out = topo.client.sh(&format!("ping -c 3 -i 0.2 -W 2 {vip}"));
        assert!(out.contains("3 received"), "{vip}: {out}");
    }
    let s = lab::stats(&sock);
    assert_eq!(s.outcome("icmp_echo"), 6, "{s:?}");
}
