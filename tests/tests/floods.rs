//! Floods of new flows against a running agent: at least 2 million SYNs (or one-datagram UDP
//! flows) from random sources, more than 30 times the flow table's 65,536 entries, while a
//! backend is added and another drained. The established connections (and UDP sessions) keep
//! their backends; new legitimate ones mostly get through.
use std::{
    net::{SocketAddr, UdpSocket},
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use lb_common::{GEN_SYN_FLOOD, GEN_UDP_FLOOD};
use lb_tests::{
    flood::Flood,
    lab::{self, VIP4, backend4, cli_ok, wait_for},
    life::*,
    traffic::{self, LongLived},
};

/// The flood's frames the balancer must have taken as new flows.
const FLOOD: u64 = 2_000_000;
/// Frames per burst of the generator, and bursts at most (frames a full veth queue drops
/// never reach the balancer, so the test sends until it has counted `FLOOD`).
const BURST: u32 = 250_000;
const BURSTS_MAX: u32 = 40;

fn two_interfaces(c: String) -> String {
    c.replace(
        "interfaces = [\"eth0\"]",
        "interfaces = [\"eth0\", \"flood0\"]",
    )
}

/// Floods while `during` runs (once the first burst is in), until the balancer has recorded
/// `FLOOD` new flows; returns what `during` returned.
fn flooding<T>(s: &Setup, flood: &mut Flood, during: impl FnOnce() -> T) -> T {
    let socket = s.socket.clone();
    let inserted = || lab::stats(&socket).flows.inserted;
    let start = inserted();
    let bursts = AtomicU32::new(0);
    let began = std::time::Instant::now();
    let out = std::thread::scope(|scope| {
        let sender = scope.spawn(|| {
            while bursts.load(Ordering::Relaxed) < BURSTS_MAX && inserted() - start < FLOOD {
                flood.send(BURST);
                bursts.fetch_add(1, Ordering::Relaxed);
            }
        });
        wait_for(Duration::from_secs(30), "the flood's first burst", || {
            bursts.load(Ordering::Relaxed) > 0
        });
        let out = during();
        sender.join().expect("the flood");
        out
    });
    let taken = inserted() - start;
    let sent = bursts.load(Ordering::Relaxed) as u64 * BURST as u64;
    eprintln!(
        "flood: {sent} frames sent, {taken} new flows recorded by the balancer, in {:?}",
        began.elapsed()
    );
    assert!(
        taken >= FLOOD,
        "the balancer recorded only {taken} of the flood's flows"
    );
    out
}

#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn a_syn_flood_and_a_ring_change_move_no_established_connection() {
    let mut flood = None;
    let s = Setup::custom(
        5,
        3,
        |topo| {
            flood = Some(Flood::wire(
                &topo.lb,
                GEN_SYN_FLOOD,
                VIP4.parse().unwrap(),
                80,
            ))
        },
        two_interfaces,
    );
    let mut flood = flood.expect("wired");
    let mut long = LongLived::open(&s.topo.client, vip_addr(), 20);
    assert_eq!(long.exchange(), Vec::<String>::new());
    let capacity = lab::stats(&s.socket).flows.capacity as u64;
    assert!(
        FLOOD >= 10 * capacity,
        "the flood must be ten times the table"
    );
    let during = flooding(&s, &mut flood, || {
        cli_ok(&s.socket, &["backend", "add", "--vip", "web", &backend4(3)]);
        cli_ok(
            &s.socket,
            &["backend", "drain", "--vip", "web", &backend4(0)],
        );
        wait_for(Duration::from_secs(5), "be3 in the ring", || {
            s.backend(&backend4(3)).in_ring
        });
        // New legitimate connections while the flood goes on.
        s.connects(100)
    });
    assert_eq!(
        long.exchange(),
        Vec::<String>::new(),
        "an established connection moved or broke"
    );
    let ok = during.ok();
    eprintln!(
        "new connections during the flood: {ok} of 100 ({:?})",
        during.by_server
    );
    assert!(
        ok >= 90,
        "{ok} of 100 new connections during the flood: {during:?}"
    );
    assert!(
        during.by_server.contains_key("be3") && !during.by_server.contains_key("be0"),
        "the ring did not change during the flood: {during:?}"
    );
}

/// 20 UDP sessions, each one socket (one 5-tuple) asking the VIP and told which backend
/// answered.
struct Sessions(Vec<(String, UdpSocket)>);

impl Sessions {
    fn open(s: &Setup, vip: SocketAddr, n: usize) -> Self {
        Sessions(s.topo.client.run(|| {
            (0..n)
                .map(|i| {
                    let sock = UdpSocket::bind("0.0.0.0:0").expect("bind");
                    sock.set_read_timeout(Some(Duration::from_millis(500)))
                        .unwrap();
                    sock.connect(vip).expect("connect");
                    let name = ask(&sock).unwrap_or_else(|| panic!("session #{i}: no answer"));
                    (name, sock)
                })
                .collect()
        }))
    }

    /// The sessions answered by another backend than at first, or not at all.
    fn moved(&self) -> Vec<String> {
        let mut bad = Vec::new();
        for (i, (name, sock)) in self.0.iter().enumerate() {
            match ask(sock) {
                Some(n) if n == *name => {}
                other => bad.push(format!("#{i}: first {name:?}, now {other:?}")),
            }
        }
        bad
    }
}

/// One request, retried on silence (a datagram lost is not a session moved).
fn ask(sock: &UdpSocket) -> Option<String> {
    let mut buf = [0u8; 256];
    for _ in 0..5 {
        if sock.send(b"ping").is_ok()
            && let Ok(n) = sock.recv(&mut buf)
        {
            return Some(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    None
}

#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn a_udp_flood_and_a_ring_change_move_no_session() {
    let mut flood = None;
    let dns = format!("{VIP4}:53");
    let s = Setup::custom(
        5,
        3,
        |topo| {
            flood = Some(Flood::wire(
                &topo.lb,
                GEN_UDP_FLOOD,
                VIP4.parse().unwrap(),
                53,
            ))
        },
        |c| {
            let mut c = two_interfaces(c);
            // Sessions idle longer than udp_idle may move by design; the flood (up to 40
            // bursts on a slow run) must not outlast that, so the VIP keeps them 5 minutes.
            c += &format!(
                "\n[[vip]]\nname = \"dns\"\naddress = \"{VIP4}:53\"\nprotocol = \"udp\"\nudp_idle = \"5m\"\n"
            );
            for i in 0..3 {
                c += &format!("\n[[vip.backend]]\naddress = \"{}\"\n", backend4(i));
            }
            c
        },
    );
    let _servers: Vec<traffic::Server> = (0..5)
        .map(|i| traffic::udp_server(&s.topo.backends[i], dns.parse().unwrap(), &format!("be{i}")))
        .collect();
    let mut flood = flood.expect("wired");
    let sessions = Sessions::open(&s, dns.parse().unwrap(), 20);
    assert_eq!(sessions.moved(), Vec::<String>::new());
    let during = flooding(&s, &mut flood, || {
        cli_ok(&s.socket, &["backend", "add", "--vip", "dns", &backend4(3)]);
        cli_ok(
            &s.socket,
            &["backend", "drain", "--vip", "dns", &backend4(0)],
        );
        wait_for(Duration::from_secs(5), "be3 in the ring", || {
            lab::status(&s.socket)
                .vips
                .iter()
                .find(|v| v.name == "dns")
                .is_some_and(|v| {
                    v.backends
                        .iter()
                        .any(|b| b.address == backend4(3) && b.in_ring)
                })
        });
        traffic::udp_requests(&s.topo.client, dns.parse().unwrap(), 100)
    });
    assert_eq!(sessions.moved(), Vec::<String>::new(), "a session moved");
    let ok = during.ok();
    eprintln!(
        "new UDP requests during the flood: {ok} of 100 ({:?})",
        during.by_server
    );
    assert!(
        ok >= 90,
        "{ok} of 100 requests during the flood: {during:?}"
    );
    assert!(
        during.by_server.contains_key("be3") && !during.by_server.contains_key("be0"),
        "the ring did not change during the flood: {during:?}"
    );
}
