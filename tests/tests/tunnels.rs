//! `forwarding = "gue"` (IPv4 and IPv6) and IPv4 VIPs over IPv6 backends (`ipip` and `gue`):
//! TCP and UDP through the balancer to backends that run `lb decap` (no tunnel module on
//! these kernels), their health probed the clients' way (through the same tunnel); and the
//! spread a backend's NIC sees: 256 GUE flows from 200 and more UDP source ports, read from a
//! capture on the backend's switch port.
use std::{
    collections::{HashMap, HashSet},
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use lb_tests::{
    TempDir,
    lab::{self, BACKENDS4, BACKENDS6, OneArm, VIP4, VIP6, status, wait_for},
    life::all_ok,
    traffic,
};

/// One VIP of the test: its name, address, protocol, forwarding mode and backends.
struct Mode {
    name: &'static str,
    addr: SocketAddr,
    udp: bool,
    forwarding: &'static str,
    backends: &'static [&'static str; 3],
}

fn modes() -> Vec<Mode> {
    let at = |s: String| -> SocketAddr { s.parse().unwrap() };
    let mode = |name, addr, udp, forwarding, backends| Mode {
        name,
        addr,
        udp,
        forwarding,
        backends,
    };
    vec![
        mode("gue4", at(format!("{VIP4}:80")), false, "gue", &BACKENDS4),
        mode("gue6", at(format!("[{VIP6}]:83")), false, "gue", &BACKENDS6),
        mode("gue4u", at(format!("{VIP4}:53")), true, "gue", &BACKENDS4),
        mode("gue6u", at(format!("[{VIP6}]:56")), true, "gue", &BACKENDS6),
        mode(
            "ipip46",
            at(format!("{VIP4}:81")),
            false,
            "ipip",
            &BACKENDS6,
        ),
        mode(
            "ipip46u",
            at(format!("{VIP4}:54")),
            true,
            "ipip",
            &BACKENDS6,
        ),
        mode("gue46", at(format!("{VIP4}:82")), false, "gue", &BACKENDS6),
        mode("gue46u", at(format!("{VIP4}:55")), true, "gue", &BACKENDS6),
    ]
}

fn config(tmp: &TempDir, modes: &[Mode]) -> String {
    let mut cfg = format!(
        "[agent]\ninterfaces = [\"eth0\"]\nsocket = \"{}\"\nsource_v4 = \"198.18.0.2\"\nsource_v6 = \"fd00:18::2\"\n",
        tmp.path("lb.sock").display()
    );
    for m in modes {
        let health = if m.udp {
            "kind = \"udp\"\nsend = \"ping\"\nexpect = \"be\""
        } else {
            "kind = \"tcp\""
        };
        cfg += &format!(
            "\n[[vip]]\nname = \"{}\"\naddress = \"{}\"\nprotocol = \"{}\"\nforwarding = \"{}\"\n\n\
             [vip.health]\n{health}\ninterval = \"300ms\"\ntimeout = \"250ms\"\nrise = 2\nfall = 3\n",
            m.name,
            m.addr,
            if m.udp { "udp" } else { "tcp" },
            m.forwarding
        );
        for b in m.backends.iter() {
            cfg += &format!("\n[[vip.backend]]\naddress = \"{b}\"\n");
        }
    }
    cfg
}

#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn gue_and_ipv4_over_ipv6_carry_tcp_and_udp() {
    // One at a time: the other test reads a capture, which drops packets on a busy machine.
    let _alone = lb_tests::alone();
    let topo = OneArm::with_backends(3);
    let tmp = TempDir::new("tunnels");
    let modes = modes();
    let mut servers = Vec::new();
    let _decaps: Vec<_> = topo
        .backends
        .iter()
        .map(|b| lab::backend_host(b, "eth0", &tmp))
        .collect();
    for (i, b) in topo.backends.iter().enumerate() {
        let name = format!("be{i}");
        for m in &modes {
            servers.push(if m.udp {
                traffic::udp_server(b, m.addr, &name)
            } else {
                traffic::tcp_server(b, m.addr, &name)
            });
        }
    }
    let (_agent, _) = lab::start_agent(&topo.lb, &config(&tmp, &modes), &tmp);
    let socket = tmp.path("lb.sock");
    // Up only once probes through each VIP's own tunnel passed (a backend starts up with a
    // new agent, and falls after three failed probes: one lost on the busy veth is no fall).
    wait_for(
        Duration::from_secs(5),
        "every backend live and probed in every VIP",
        || {
            status(&socket).vips.iter().all(|v| {
                v.live == 3
                    && v.backends
                        .iter()
                        .all(|b| b.last_probe_ms.is_some() && b.last_error.is_none())
            })
        },
    );
    for m in &modes {
        let t = if m.udp {
            let t = traffic::udp_requests(&topo.client, m.addr, 100);
            assert!(t.failed.is_empty(), "{}: {:?}", m.name, t.failed);
            assert_eq!(t.by_server.values().sum::<u32>(), 100, "{}", m.name);
            t
        } else {
            let t = traffic::tcp_connects(&topo.client, m.addr, 300);
            all_ok(&t, 300);
            t
        };
        assert_eq!(t.by_server.len(), 3, "{}: {:?}", m.name, t.by_server);
    }
    // Only XDP moved the packets, and every backend stayed healthy through its tunnel.
    assert_eq!(lab::kernel_forward_drops(&topo.lb), 0);
    for v in status(&socket).vips {
        for b in &v.backends {
            assert_eq!(b.health, "up", "{} {b:?}", v.name);
        }
    }
    let st = lab::stats(&socket);
    assert!(st.outcome("tx") >= 4 * 300 + 4 * 100, "{:?}", st.outcomes);
}

/// The frames of a pcap file (the classic format tcpdump writes with `-w`).
fn pcap_frames(bytes: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let caplen = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        at += 16;
        if at + caplen > bytes.len() {
            break;
        }
        out.push(&bytes[at..at + caplen]);
        at += caplen;
    }
    out
}

/// GUE frames in a capture: for each inner flow (its source address and port), the outer UDP
/// source ports it arrived with.
fn gue_flows(frames: &[&[u8]]) -> HashMap<(IpAddr, u16), HashSet<u16>> {
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};
    let mut flows: HashMap<(IpAddr, u16), HashSet<u16>> = HashMap::new();
    for f in frames {
        let Ok(outer) = SlicedPacket::from_ethernet(f) else {
            continue;
        };
        let (Some(NetSlice::Ipv4(_)), Some(TransportSlice::Udp(udp))) =
            (&outer.net, &outer.transport)
        else {
            continue;
        };
        if udp.destination_port() != 6080 {
            continue;
        }
        let Ok(inner) = SlicedPacket::from_ip(udp.payload()) else {
            continue;
        };
        let src = match &inner.net {
            Some(NetSlice::Ipv4(ip)) => IpAddr::from(ip.header().source_addr()),
            _ => continue,
        };
        if let Some(TransportSlice::Tcp(tcp)) = inner.transport {
            flows
                .entry((src, tcp.source_port()))
                .or_default()
                .insert(udp.source_port());
        }
    }
    flows
}

#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn a_backend_receives_its_gue_flows_from_many_source_ports() {
    let _alone = lb_tests::alone();
    let topo = OneArm::with_backends(1);
    let tmp = TempDir::new("gue-rss");
    let _decap = lab::backend_host(&topo.backends[0], "eth0", &tmp);
    let vip: SocketAddr = format!("{VIP4}:80").parse().unwrap();
    let _server = traffic::tcp_server(&topo.backends[0], vip, "be0");
    let cfg = format!(
        "[agent]\ninterfaces = [\"eth0\"]\nsocket = \"{}\"\nsource_v4 = \"198.18.0.2\"\n\n\
         [[vip]]\nname = \"web\"\naddress = \"{vip}\"\nprotocol = \"tcp\"\nforwarding = \"gue\"\n\n\
         [vip.health]\nkind = \"tcp\"\ninterval = \"200ms\"\ntimeout = \"300ms\"\n\n\
         [[vip.backend]]\naddress = \"{}\"\n",
        tmp.path("lb.sock").display(),
        BACKENDS4[0]
    );
    let (_agent, _) = lab::start_agent(&topo.lb, &cfg, &tmp);
    let socket = tmp.path("lb.sock");
    wait_for(Duration::from_secs(5), "the backend live", || {
        status(&socket).vips[0].live == 1
    });
    let pcap = tmp.path("be0.pcap");
    // The switch's ports: the client's p1, the balancer's p2, the backend's p3 (the backend's
    // own capture would see the packet decapsulated: XDP runs first).
    let mut capture = topo.lab.switch.spawn(
        &[
            "sh",
            "-c",
            &format!(
                "exec tcpdump -i p3 -nn -U --immediate-mode -w {} udp port 6080 2>&1",
                pcap.display()
            ),
        ],
        tmp.path("tcpdump.log"),
    );
    capture.wait_for("tcpdump: listening", Duration::from_secs(10));
    let client: IpAddr = "198.18.0.1".parse().unwrap();
    let probe: IpAddr = "198.18.0.2".parse().unwrap();
    let read = || gue_flows(&pcap_frames(&std::fs::read(&pcap).unwrap_or_default()));
    // The capture is live once it holds a health probe, in GUE from the agent's own source:
    // the probes go the clients' way (and a capture's first packets may be lost while its
    // filter goes in).
    wait_for(
        Duration::from_secs(5),
        "a health probe in the capture",
        || read().keys().any(|k| k.0 == probe),
    );
    // Open at once, so that no two share a client port.
    let open = traffic::LongLived::open(&topo.client, vip, 256);
    assert_eq!(open.conns.len(), 256);
    let mut flows = HashMap::new();
    wait_for(Duration::from_secs(10), "256 flows in the capture", || {
        flows = read();
        flows.keys().filter(|k| k.0 == client).count() >= 256
    });
    capture.stop();
    flows.retain(|k, _| k.0 == client);
    assert!(
        flows.values().all(|p| p.len() == 1),
        "a flow came from two source ports"
    );
    let ports: HashSet<&u16> = flows.values().flatten().collect();
    eprintln!(
        "{} flows from {} UDP source ports",
        flows.len(),
        ports.len()
    );
    assert!(ports.len() >= 200, "{} distinct source ports", ports.len());
    assert!(ports.iter().all(|p| **p >= 49152), "{ports:?}");
}
