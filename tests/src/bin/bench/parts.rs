//! What parts of the balancer cost per packet: the same object loaded with a part and without
//! it, measured in alternating calls.
use lb::dataplane::{Options, nix_ifindex};
use lb_common::{Counter, PROTO_TCP, program_names};
use lb_tests::fixture::{self, Pkt};

use crate::{
    Opts,
    per_packet::{as_the_agent_runs, count, spread, timed},
};

/// The [`Cost`] of the per-CPU counters.
pub const COUNTERS: &str = "counters";
/// The [`Cost`] of the flow-table lookup: lb's table against one fixed array entry.
pub const LOOKUP: &str = "flow-table lookup (hash, set, key compare; against one array entry)";

/// What parts of the program cost per packet: the same object loaded with a part and without it
/// (load-time constants: the verifier removes the code they switch off). The counters are in
/// the program the agent runs; the capture hook is only in the one it swaps in for a capture
/// (here with no capture running, as a packet its filter leaves out pays).
pub struct Cost {
    pub name: &'static str,
    pub path: &'static str,
    /// ns/packet, medians over calls.
    pub with_ns: f64,
    pub without_ns: f64,
    /// Median over calls of (with − without), each pair back to back.
    pub delta_ns: f64,
}

pub fn parts_cost(o: &Opts) -> Vec<Cost> {
    let env = fixture::env();
    env.ns.run(|| {
        let ifindex = nix_ifindex("eth0").expect("eth0");
        // Small flow tables: each load has its own, and two 1M-entry tables placed differently
        // in memory differ in cache and TLB misses by more than what is measured here.
        let base = Options {
            flows: 4096,
            ..Options::default()
        };
        let no_counters = Options {
            counters: false,
            ..base.clone()
        };
        let hooked = Options {
            capture_hook: true,
            ..base.clone()
        };
        let fixed_flow = Options {
            bench_fixed_flow: true,
            ..base.clone()
        };
        let hit = Pkt::new("198.19.0.100", 80, PROTO_TCP)
            .sport(41000)
            .established()
            .build();
        let other = Pkt::new("198.18.0.2", 80, PROTO_TCP).build();
        let mut out = Vec::new();
        let running = base;
        let hit_path = (
            "flow-table hit, IPv4 TCP",
            program_names::LB_BENCH,
            &hit,
            fixture::XDP_TX,
        );
        let pass_path = (
            "non-VIP packet (pass)",
            program_names::LB,
            &other,
            fixture::XDP_PASS,
        );
        for (name, with, without, paths) in [
            (COUNTERS, &running, &no_counters, vec![hit_path, pass_path]),
            (
                "capture hook, no capture running",
                &hooked,
                &running,
                vec![hit_path, pass_path],
            ),
            (LOOKUP, &running, &fixed_flow, vec![hit_path]),
        ] {
            for (path, program, frame, action) in paths {
                let mut a = as_the_agent_runs(program, with);
                let mut b = as_the_agent_runs(program, without);
                let (mut with, mut wo, mut delta) = (Vec::new(), Vec::new(), Vec::new());
                // Each pair back to back; the first call of each records the hit's flow. The
                // differences are small next to the drift: three times the usual calls.
                let pairs = 3 * o.runs + 1;
                for _ in 0..pairs {
                    let (t_a, r_a) = timed(&mut a, ifindex, frame, o.repeat);
                    let (t_b, r_b) = timed(&mut b, ifindex, frame, o.repeat);
                    assert_eq!((r_a, r_b), (action, action), "{name}, {path}: verdicts");
                    with.push(t_a);
                    wo.push(t_b);
                    delta.push(t_a - t_b);
                }
                let counter = if action == fixture::XDP_TX {
                    Counter::Tx
                } else {
                    Counter::PassNotVip
                };
                // The full program counted every run; the one without counters none.
                let runs = o.repeat as u64 * pairs as u64;
                assert_eq!(
                    count(&a, counter),
                    runs,
                    "{name}, {path}: runs off the path"
                );
                let b_counted = if without.counters { runs } else { 0 };
                assert_eq!(count(&b, counter), b_counted, "{name}, {path}: counters");
                if action == fixture::XDP_TX && without.counters {
                    // Both sides took the hit path (the first run records the flow), not a
                    // re-pick on every run.
                    for dp in [&a, &b] {
                        let hits = dp.flow_counters().expect("flow counters").1;
                        assert!(hits >= runs - 1, "{name}, {path}: {hits} flow-table hits");
                    }
                }
                out.push(Cost {
                    name,
                    path,
                    with_ns: spread(with).median,
                    without_ns: spread(wo).median,
                    delta_ns: spread(delta).median,
                });
            }
        }
        out
    })
}
