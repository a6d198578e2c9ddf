//! Hitless restart: the agent stopped and started three times under load.
use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use lb_tests::{
    lab::{self, status},
    life::*,
    traffic::{self, LongLived},
};

/// The id of the XDP program attached to `ns`'s eth0, if any.
fn xdp_prog_id(ns: &lb_tests::Netns) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_str(&ns.sh("ip -j link show dev eth0")).unwrap();
    v[0]["xdp"]["prog"]["id"].as_u64()
}

#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn three_restarts_drop_no_connection() {
    let mut s = Setup::new(3, 3);
    let mut long = LongLived::open(&s.topo.client, vip_addr(), 6);
    let stop = Arc::new(AtomicBool::new(false));
    let background = traffic::background_connects(&s.topo.client, vip_addr(), stop.clone());
    let cfg = std::fs::read_to_string(&s.config).unwrap();
    let mut progs = vec![xdp_prog_id(&s.topo.lb).expect("xdp_lb attached")];
    let flows_before = lab::stats(&s.socket).flows;
    assert!(flows_before.entries >= 6, "{flows_before:?}");
    for round in 0..3 {
        let st = s.agent.stop().expect("agent exit");
        assert!(st.success(), "round {round}: {}", s.agent.log_text());
        // The agent is gone; the pinned data path goes on.
        assert_eq!(
            xdp_prog_id(&s.topo.lb),
            progs.last().copied(),
            "round {round}: detached"
        );
        assert_eq!(
            long.exchange(),
            Vec::<String>::new(),
            "round {round}, agent down"
        );
        (s.agent, _) = lab::start_agent(&s.topo.lb, &cfg, &s.tmp);
        assert!(
            s.agent.log_text().contains("adopted the pinned data path"),
            "{}",
            s.agent.log_text()
        );
        progs.push(xdp_prog_id(&s.topo.lb).expect("attached after restart"));
        assert_eq!(
            long.exchange(),
            Vec::<String>::new(),
            "round {round}, agent back"
        );
    }
    stop.store(true, Ordering::Relaxed);
    let t = background.join().unwrap();
    assert!(
        t.failed.is_empty(),
        "{} of {} connections failed: {:?}",
        t.failed.len(),
        t.ok() + t.failed.len() as u32,
        t.failed
    );
    assert!(t.ok() >= 20, "too few connections to prove anything: {t:?}");
    assert_eq!(t.by_server.len(), 3, "{t:?}");
    // Each start loaded its program and swapped it into the same link: four programs, one
    // after the other, never a gap.
    progs.dedup();
    assert_eq!(progs.len(), 4, "{progs:?}");
    // The state survived: health, counters and the flow table carry over.
    let st = status(&s.socket);
    assert_eq!(st.vips[0].live, 3, "{st:?}");
    let stats = lab::stats(&s.socket);
    assert!(stats.outcome("tx") > 0);
    assert!(
        stats.flows.entries >= flows_before.entries,
        "flow table lost: {flows_before:?} -> {:?}",
        stats.flows
    );
    assert!(
        stats.flows.inserted > flows_before.inserted,
        "{:?}",
        stats.flows
    );
}
