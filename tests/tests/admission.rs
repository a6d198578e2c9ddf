//! What a running agent admits, through real sockets: an ACL added at runtime, the per-source
//! new-flow limit, and traffic to a VIP address that no VIP balances.
use std::{
    collections::VecDeque,
    io::Write,
    net::{SocketAddr, SocketAddrV4, TcpStream},
    os::fd::{FromRawFd, OwnedFd},
    time::{Duration, Instant},
};

use lb_tests::{
    Netns,
    lab::{self, VIP4, wait_for},
    life::*,
    traffic,
};

/// A second client, 198.18.0.5, on the topology's bridge.
fn second_client(s: &mut Setup) -> Netns {
    let ns = Netns::new("cl2");
    s.topo.lab.plug(&ns, "eth0", "br0", &["198.18.0.5/24"]);
    ns.sh(&format!("ip route add {VIP4}/32 via 198.18.0.2"));
    ns
}

/// Writes `extra` into the agent's config file and has it reload (SIGHUP).
fn reload_with(s: &Setup, edit: impl FnOnce(String) -> String) {
    let text = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(&s.config, edit(text)).unwrap();
    // Safety: a signal to our own child.
    unsafe { libc::kill(s.agent.child.id() as i32, libc::SIGHUP) };
}

/// An ACL added at runtime: the denied client's established connection is cut within a
/// second (its packets dropped and counted), its new connections fail, and another client's
/// connections go on.
#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn a_deny_added_at_runtime_cuts_established_connections_within_a_second() {
    // One at a time: the new-flow limit's test measures a rate.
    let _alone = lb_tests::alone();
    let mut s = Setup::new(3, 3);
    let other = second_client(&mut s);
    let mut long = traffic::LongLived::open(&s.topo.client, vip_addr(), 3);
    assert_eq!(long.exchange(), Vec::<String>::new());
    let mut kept = traffic::LongLived::open(&other, vip_addr(), 3);
    let before = lab::stats(&s.socket).outcome("drop_acl");
    reload_with(&s, |t| t + "\n[vip.acl]\ndeny = [\"198.18.0.1\"]\n");
    let took = wait_for(
        Duration::from_secs(1),
        "the denied connection's packets dropped",
        || {
            for (_, c) in &mut long.conns {
                let _ = c.write_all(b"ping\n");
            }
            lab::stats(&s.socket).outcome("drop_acl") > before
        },
    );
    eprintln!("established connection cut {took:?} after the reload was asked");
    let t = traffic::tcp_connects(&s.topo.client, vip_addr(), 3);
    assert_eq!(t.ok(), 0, "a denied client connected: {t:?}");
    assert_eq!(
        kept.exchange(),
        Vec::<String>::new(),
        "an allowed client was cut"
    );
    let t = traffic::tcp_connects(&other, vip_addr(), 10);
    assert_eq!(t.ok(), 10, "{t:?}");
    // Allowed again: new connections go through.
    reload_with(&s, |t| t.replace("deny = [\"198.18.0.1\"]", "deny = []"));
    wait_for(Duration::from_secs(2), "the client allowed again", || {
        traffic::tcp_connects(&s.topo.client, vip_addr(), 1).ok() == 1
    });
}

/// Connection attempts from `ns` to the IPv4 `addr`, one every `every`, each given 20 ms to
/// connect, for `window`: how many connected, and how long it took. The attempts are paced by
/// the clock, not by their outcomes: threads that each wait out their own timeout drift into
/// lockstep, and a limit without a burst then admits one flow per clump of SYNs, not per interval.
fn attempts(ns: &Netns, addr: SocketAddrV4, every: Duration, window: Duration) -> (u32, Duration) {
    ns.run(|| {
        let start = Instant::now();
        let mut pending: VecDeque<(Instant, TcpStream)> = VecDeque::new();
        let mut open = Vec::new();
        let mut ok = 0;
        let mut settle = |pending: &mut VecDeque<(Instant, TcpStream)>, all: bool| {
            while let Some((at, _)) = pending.front() {
                if !all && at.elapsed() < Duration::from_millis(20) {
                    break;
                }
                let (_, c) = pending.pop_front().unwrap();
                if c.peer_addr().is_ok() {
                    ok += 1;
                    open.push(c);
                }
            }
        };
        let mut next = start;
        while start.elapsed() < window {
            pending.push_back((Instant::now(), connect_nonblocking(addr)));
            settle(&mut pending, false);
            next += every;
            if let Some(d) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(d);
            }
        }
        let took = start.elapsed();
        std::thread::sleep(Duration::from_millis(20));
        settle(&mut pending, true);
        (ok, took)
    })
}

/// A TCP socket whose SYN to `addr` is on its way.
fn connect_nonblocking(addr: SocketAddrV4) -> TcpStream {
    // Safety: plain socket calls on a descriptor this function owns.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let c = TcpStream::from(OwnedFd::from_raw_fd(fd));
        let sa = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: addr.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*addr.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        let r = libc::connect(
            fd,
            (&sa as *const libc::sockaddr_in).cast(),
            std::mem::size_of_val(&sa) as libc::socklen_t,
        );
        let e = std::io::Error::last_os_error();
        assert!(
            r == 0 || e.raw_os_error() == Some(libc::EINPROGRESS),
            "connect: {e}"
        );
        c
    }
}

/// A limit of 100 new flows a second (burst 1): a client trying two thousand connections a
/// second gets 100 ± 20% a second through, and another client at the same time all of its own.
#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn a_source_over_its_new_flow_limit_gets_the_limit_through() {
    // One at a time: the new-flow limit's test measures a rate.
    let _alone = lb_tests::alone();
    let mut s = Setup::custom(
        3,
        3,
        |_| {},
        |c| c + "\n[vip.limits]\nnew_flows_per_source = 100\nburst = 1\n",
    );
    let other = second_client(&mut s);
    let (before, inserted) = {
        let st = lab::stats(&s.socket);
        (st.outcome("drop_limit"), st.flows.inserted)
    };
    let ((ok, took), others) = std::thread::scope(|sc| {
        let flood = sc.spawn(|| {
            attempts(
                &s.topo.client,
                SocketAddrV4::new(VIP4.parse().unwrap(), 80),
                Duration::from_micros(500),
                Duration::from_secs(2),
            )
        });
        let t = traffic::tcp_connects(&other, vip_addr(), 20);
        (flood.join().unwrap(), t)
    });
    let want = 100.0 * took.as_secs_f64() + 1.0;
    let st = lab::stats(&s.socket);
    let dropped = st.outcome("drop_limit") - before;
    // The flows the balancer let through: new entries, less the other client's.
    let through = st.flows.inserted - inserted - 20;
    eprintln!(
        "{through} new flows through in {took:?} (the limit: {want:.0}), {dropped} SYNs dropped, \
         {ok} connections completed within the client's 20 ms"
    );
    assert!(
        (through as f64 - want).abs() <= 0.2 * want,
        "{through} new flows in {took:?}, want {want:.0} ± 20%"
    );
    assert!(dropped > 3 * through, "only {dropped} SYNs over the limit");
    assert!(ok > 0 && ok as u64 <= through);
    assert_eq!(others.ok(), 20, "the other client was limited: {others:?}");
}

/// `agent.unbalanced`: to the VIP's address on a port no VIP has, "drop" drops and counts in
/// the balancer; "pass" hands the packets to the kernel (whose forward chain then drops them).
#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn unbalanced_traffic_is_dropped_or_passed_as_configured() {
    // One at a time: the new-flow limit's test measures a rate.
    let _alone = lb_tests::alone();
    let s = Setup::custom(
        3,
        3,
        |_| {},
        |c| c.replacen("[agent]\n", "[agent]\nunbalanced = \"drop\"\n", 1),
    );
    // A route on the balancer host for the VIP's address: a kernel handed the packets
    // forwards them (here into the forward chain that drops and counts).
    s.topo
        .lb
        .sh(&format!("ip route add {VIP4}/32 via 198.18.0.11"));
    let port81: SocketAddr = format!("{VIP4}:81").parse().unwrap();
    let try81 = || {
        s.topo
            .client
            .run(|| TcpStream::connect_timeout(&port81, Duration::from_millis(300)).is_ok())
    };
    let (kernel, dropped) = (
        lab::kernel_forward_drops(&s.topo.lb),
        lab::stats(&s.socket).outcome("drop_unbalanced"),
    );
    assert!(!try81());
    assert!(lab::stats(&s.socket).outcome("drop_unbalanced") > dropped);
    assert_eq!(
        lab::kernel_forward_drops(&s.topo.lb),
        kernel,
        "the kernel saw them"
    );
    // The VIP itself is balanced as ever.
    assert_eq!(s.connects(5).ok(), 5);
    reload_with(&s, |t| {
        t.replace("unbalanced = \"drop\"", "unbalanced = \"pass\"")
    });
    let dropped = lab::stats(&s.socket).outcome("drop_unbalanced");
    wait_for(
        Duration::from_secs(2),
        "port 81 passed to the kernel",
        || !try81() && lab::kernel_forward_drops(&s.topo.lb) > kernel,
    );
    assert_eq!(lab::stats(&s.socket).outcome("drop_unbalanced"), dropped);
}
