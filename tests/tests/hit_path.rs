//! Flows keep their backends while the hit path reads them from the flow cache: 200 long-lived
//! TCP connections, while 65,536 other flows cycle through the balancer (the generator's UDP
//! flows, each seen again every 65,536 frames: more flows than the cache has entries, so they
//! keep pushing each other and the connections' entries out of it) and backends are added to
//! and removed from both VIPs. No long-lived connection moves; the agent's gauge of the cache
//! shows it answering for tens of thousands of flows meanwhile.
use std::{
    io::{Read, Write},
    sync::atomic::{AtomicBool, AtomicU32, Ordering},
    time::{Duration, Instant},
};

use lb_common::GEN_CYCLE_64K;
use lb_tests::{
    flood::Flood,
    lab::{self, VIP4, backend4, cli_ok, wait_for},
    life::*,
    traffic::LongLived,
};

/// Frames per burst: four rounds of the cycle.
const BURST: u32 = 4 * 65_536;
/// Bursts at most, and for how long at most, whatever the test's steps take.
const BURSTS_MAX: u32 = 60;
const FLOOD_MAX: Duration = Duration::from_secs(90);

const METRICS: &str = "127.0.0.1:9109";

/// `lb_flow_cache_entries` as the agent's metrics endpoint says it now, if it says it yet.
fn cache_gauge(s: &Setup) -> Option<f64> {
    let body = s.topo.lb.run(|| {
        let mut c = std::net::TcpStream::connect(METRICS).expect("connect to the metrics port");
        write!(
            c,
            "GET /metrics HTTP/1.1\r\nHost: lb\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut r = String::new();
        c.read_to_string(&mut r).unwrap();
        r
    });
    body.lines()
        .find_map(|l| l.strip_prefix("lb_flow_cache_entries "))
        .map(|v| v.trim().parse().expect("a number"))
}

fn in_ring(s: &Setup, vip: &str, addr: &str) -> bool {
    lab::status(&s.socket)
        .vips
        .iter()
        .find(|v| v.name == vip)
        .is_some_and(|v| v.backends.iter().any(|b| b.address == addr && b.in_ring))
}

#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn backends_come_and_go_under_200_long_lived_connections_while_65536_flows_cycle() {
    let mut flood = None;
    let s = Setup::custom(
        6,
        3,
        |topo| {
            flood = Some(Flood::wire(
                &topo.lb,
                GEN_CYCLE_64K,
                VIP4.parse().unwrap(),
                53,
            ))
        },
        |c| {
            let mut c = c
                .replace(
                    "interfaces = [\"eth0\"]",
                    "interfaces = [\"eth0\", \"flood0\"]",
                )
                .replace("flow_table_size = 65536", "flow_table_size = 262144")
                .replace("[agent]\n", &format!("[agent]\nmetrics = \"{METRICS}\"\n"));
            c += &format!(
                "\n[[vip]]\nname = \"dns\"\naddress = \"{VIP4}:53\"\nprotocol = \"udp\"\nudp_idle = \"5m\"\n"
            );
            for i in 0..3 {
                c += &format!("\n[[vip.backend]]\naddress = \"{}\"\n", backend4(i));
            }
            c
        },
    );
    let mut flood = flood.expect("wired");
    let mut long = LongLived::open(&s.topo.client, vip_addr(), 200);
    assert_eq!(long.exchange(), Vec::<String>::new());
    eprintln!("long-lived connections per backend: {:?}", long.by_server());
    let before = lab::stats(&s.socket).flows;
    let bursts = AtomicU32::new(0);
    let stop = AtomicBool::new(false);
    let began = Instant::now();
    std::thread::scope(|scope| {
        let sender = scope.spawn(|| {
            while !stop.load(Ordering::Relaxed)
                && bursts.load(Ordering::Relaxed) < BURSTS_MAX
                && began.elapsed() < FLOOD_MAX
            {
                flood.send(BURST);
                bursts.fetch_add(1, Ordering::Relaxed);
            }
        });
        // Two rounds of the cycle in: every cycling flow is established.
        wait_for(Duration::from_secs(30), "the first burst", || {
            bursts.load(Ordering::Relaxed) > 0
        });
        let mut changes = Vec::new();
        for (vip, add, del) in [
            ("web", 3, None),
            ("dns", 3, None),
            ("web", 4, Some(3)),
            ("dns", 4, Some(3)),
        ] {
            cli_ok(&s.socket, &["backend", "add", "--vip", vip, &backend4(add)]);
            wait_for(
                Duration::from_secs(10),
                "the new backend in the ring",
                || in_ring(&s, vip, &backend4(add)),
            );
            if let Some(d) = del {
                cli_ok(&s.socket, &["backend", "del", "--vip", vip, &backend4(d)]);
                wait_for(
                    Duration::from_secs(10),
                    "the backend out of the ring",
                    || !in_ring(&s, vip, &backend4(d)),
                );
            }
            changes.push(long.exchange());
        }
        // The agent counts the cache every few seconds: while the flows cycle, it answers for
        // tens of thousands of them (65,536 flows over 65,536 entries: a slot's first flow of
        // each second keeps it, some 63% of the slots).
        let mut seen = 0.0;
        wait_for(Duration::from_secs(20), "the cache gauge", || {
            seen = cache_gauge(&s).unwrap_or(0.0);
            seen >= 20_000.0
        });
        eprintln!("lb_flow_cache_entries {seen}");
        stop.store(true, Ordering::Relaxed);
        sender.join().expect("the cycling flows");
        for (i, bad) in changes.into_iter().enumerate() {
            assert_eq!(
                bad,
                Vec::<String>::new(),
                "after change {i}: a connection moved"
            );
        }
    });
    let after = lab::stats(&s.socket).flows;
    let sent = bursts.load(Ordering::Relaxed) as u64 * BURST as u64;
    eprintln!(
        "cycling: {sent} frames in {:?}; table {} -> {} entries, {} hits, {} inserted, {} unrecorded",
        began.elapsed(),
        before.entries,
        after.entries,
        after.hits - before.hits,
        after.inserted - before.inserted,
        after.unrecorded - before.unrecorded
    );
    assert_eq!(long.exchange(), Vec::<String>::new(), "a connection moved");
    // The cycle went round: its flows were recorded and then hit, again and again.
    assert!(
        after.entries >= 50_000 && after.inserted - before.inserted >= 50_000,
        "the cycling flows were not recorded: {before:?} -> {after:?}"
    );
    assert!(
        after.hits - before.hits >= 100_000,
        "the cycling flows were not hits: {before:?} -> {after:?}"
    );
}
