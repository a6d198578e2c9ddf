//! What parts of the balancer cost per packet: the program with a part and without it,
//! measured in alternating calls.
use lb::dataplane::{Options, nix_ifindex};
use lb_common::{Counter, PROTO_TCP, program_names};
use lb_tests::{
    fixture::{self, Pkt},
    test_object::programs,
};

use crate::{
    Opts,
    per_packet::{as_the_agent_runs, count, spread, timed},
};

/// The [`Cost`] of the per-CPU counters.
pub const COUNTERS: &str = "counters";
/// The [`Cost`] of the capture hook where no capture runs.
pub const HOOK: &str = "capture hook, no capture running";
/// The [`Cost`] of finding a new flow's VIP in the VIP index rather than the hash map (the
/// same program, the index turned off: it then asks the hash map).
pub const VIP_LOOKUP: &str = "VIP lookup (the VIP hash map; against the VIP index)";
/// The [`Cost`] of the flow lookup: lb's flow cache and table against one fixed array entry.
pub const LOOKUP: &str =
    "flow lookup (hash, flow-cache entry, backend check; against one array entry)";

/// What parts of the program cost per packet: the program with a part and without it (the test
/// object's variants, or a load-time constant the verifier removes the code of). The counters are in
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
        let hooked = Options {
            capture_hook: true,
            ..base.clone()
        };
        let hit = Pkt::new("198.19.0.100", 80, PROTO_TCP)
            .sport(41000)
            .established()
            .build();
        let other = Pkt::new("198.18.0.2", 80, PROTO_TCP).build();
        // A SYN: `xdp_lb_bench_new` gives every run a new source, a new flow each.
        let syn = Pkt::new("198.19.0.100", 80, PROTO_TCP).build();
        let mut out = Vec::new();
        let hit_path = ("flow-table hit, IPv4 TCP", &hit, fixture::XDP_TX);
        let pass_path = ("non-VIP packet (pass)", &other, fixture::XDP_PASS);
        let new_path = ("new flow, IPv4 TCP, the table full", &syn, fixture::XDP_TX);
        // Each part: the program (and options) with it, and without it. The counters and the
        // lookup are measured against the test object's variants, the capture hook by
        // loading the same program with it (a load-time constant).
        let (bench, uncounted, fixed, new) = (
            programs::LB_BENCH,
            programs::LB_BENCH_UNCOUNTED,
            programs::LB_BENCH_FIXED_FLOW,
            programs::LB_BENCH_NEW,
        );
        for (name, path, with, without) in [
            (COUNTERS, hit_path, (bench, &base), (uncounted, &base)),
            (COUNTERS, pass_path, (bench, &base), (uncounted, &base)),
            (HOOK, hit_path, (bench, &hooked), (bench, &base)),
            (
                HOOK,
                pass_path,
                (program_names::LB, &hooked),
                (program_names::LB, &base),
            ),
            (LOOKUP, hit_path, (bench, &base), (fixed, &base)),
            (VIP_LOOKUP, new_path, (new, &base), (new, &base)),
        ] {
            let (path, frame, action) = path;
            // The VIP lookup's "with" is the hash map: the index turned off in `a`.
            let mut a = as_the_agent_runs(with.0, with.1);
            let mut b = as_the_agent_runs(without.0, without.1);
            if name == VIP_LOOKUP {
                a.set_vip_index_live(false).expect("the index off");
                assert!(b.vip_index_live().expect("the index"));
                // Both tables full, so that every run of either evicts.
                for dp in [&mut a, &mut b] {
                    let (_, r) = timed(dp, ifindex, frame, 4 * base.flows);
                    assert_eq!(r, action, "{name}: filling the table");
                }
            }
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
            let filled = if name == VIP_LOOKUP {
                4 * base.flows as u64
            } else {
                0
            };
            assert_eq!(
                count(&a, counter),
                runs + filled,
                "{name}, {path}: runs off the path"
            );
            let b_counts = without.0 != uncounted;
            let b_counted = if b_counts { runs + filled } else { 0 };
            assert_eq!(count(&b, counter), b_counted, "{name}, {path}: counters");
            if action == fixture::XDP_TX && b_counts && name != VIP_LOOKUP {
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
        out
    })
}
