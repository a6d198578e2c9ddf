//! The flow table's own eviction order, through BPF_PROG_TEST_RUN on the real loaded `xdp_lb`
//! with a table of one set (four slots), so that every flow competes for the same slots.
use std::time::{Duration, Instant};

use lb::dataplane::{self, Dataplane, nix_ifindex};
use lb_common::{FLOW_STAMP_NS, FLOW_WAYS, PROTO_TCP, program_names};
use lb_tests::fixture::*;

/// A full set gives up the flow seen least recently: a flow with a packet after the others
/// came stays, the oldest untouched one goes, and a flow written within the same tick of the
/// clock as others still leaves in the order it came.
#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn a_full_set_evicts_the_flow_seen_least_recently() {
    let env = env();
    env.ns.run(|| {
        let mut dp = Dataplane::load_sized(dataplane::OBJECT, program_names::LB, FLOW_WAYS)
            .expect("load xdp_lb");
        program(&mut dp);
        let ifindex = nix_ifindex("eth0").unwrap();
        let tcp = |p: u16| Pkt::new("198.19.0.100", 80, PROTO_TCP).sport(p);
        let send = |dp: &mut Dataplane, p: Pkt| {
            let (action, _) = test_run(dp, ifindex, &p.build());
            assert_eq!(action, XDP_TX);
        };
        // Flows 0-3 fill the one set, in this order.
        for p in 0..4 {
            send(&mut dp, tcp(p));
        }
        // Flow 0 is seen again once the coarse clock the program stamps with has moved
        // FLOW_STAMP_NS past the stamps of all four (at most 4 ns past the clock's reading when
        // they were written): its packet then writes a new stamp, and its slot is the newest.
        let written = dataplane::coarse_now();
        let t = Instant::now();
        while dataplane::coarse_now() <= written + 4 + FLOW_STAMP_NS {
            assert!(
                t.elapsed() < Duration::from_secs(1),
                "the coarse clock stands still"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        send(&mut dp, tcp(0).established());
        // Flow 4 takes the slot of flow 1, the oldest; flow 5 that of flow 2.
        send(&mut dp, tcp(4));
        send(&mut dp, tcp(5));
        let before = dp.flow_counters().unwrap();
        for p in [0, 3, 4, 5] {
            send(&mut dp, tcp(p).established());
        }
        let after = dp.flow_counters().unwrap();
        assert_eq!(
            (after.0 - before.0, after.1 - before.1),
            (0, 4),
            "flows 0, 3, 4 and 5 must all be held (inserts, hits): {before:?} -> {after:?}"
        );
        // Flows 1 and 2 are gone: their packets are new to the table again, and find its set
        // full of established flows (the four above, promoted by their second packets), so
        // they are not recorded.
        let unrecorded = dp.flow_table().unwrap().unrecorded;
        for p in [1, 2] {
            send(&mut dp, tcp(p).established());
        }
        let last = dp.flow_counters().unwrap();
        assert_eq!(
            (last.0 - after.0, last.1 - after.1),
            (0, 0),
            "flows 1 and 2 must have been evicted: {after:?} -> {last:?}"
        );
        let f = dp.flow_table().unwrap();
        assert_eq!((f.capacity, f.entries), (FLOW_WAYS, 4), "{f:?}");
        assert_eq!(f.unrecorded, unrecorded + 2, "{f:?}");
    });
}
