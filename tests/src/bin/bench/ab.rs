//! `bench --only ab`, for working on the data path, never in the report: this build's balancer
//! against another build's (`LB_AB_OBJECT`, a path to its test object, e.g. a copy of
//! `target/release/build/lb-userspace-*/out/lb-ebpf-test` kept from before a change; builds
//! before the test object had its own, held every program in `lb-ebpf`), on the IPv4
//! and IPv6 TCP hits, a new flow into a full table and the non-VIP pass, in calls that
//! alternate between the two (and which goes first), so that the machine's drift moves both
//! alike. The median of
//! the per-pair differences is the number to read: on this machine it tells a hit's 2–3 ns
//! apart, where two runs of the per-packet section differ by more than that. New flows read
//! wider (each side's table lies elsewhere in memory): two copies of one object differed by
//! 8 ns there. `--quick` (CI) runs it on this build against itself, to prove that it works.
use std::fmt::Write as _;

use lb::dataplane::{Options, nix_ifindex};
use lb_common::PROTO_TCP;
use lb_tests::{
    fixture::{self, Pkt},
    test_object::{OBJECT, programs},
};

use crate::{
    Opts,
    per_packet::{programmed, spread, timed},
};

pub fn measure(o: &Opts) -> String {
    match other_object() {
        Some((path, other)) => against(o, &path, &other),
        None => "ab: set LB_AB_OBJECT to another build's lb-ebpf-test object\n".into(),
    }
}

/// The object `LB_AB_OBJECT` names, with its path; `None` where it is not set.
pub fn other_object() -> Option<(String, Vec<u8>)> {
    let path = std::env::var("LB_AB_OBJECT").ok()?;
    let other = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    Some((path, other))
}

/// This build's object against `other`, called `label` in the output.
pub fn against(o: &Opts, label: &str, other: &[u8]) -> String {
    let opts = Options {
        flows: 4096,
        ..Options::default()
    };
    let env = fixture::env();
    env.ns.run(|| {
        let ifindex = nix_ifindex("eth0").expect("eth0");
        let hit = Pkt::new("198.19.0.100", 80, PROTO_TCP)
            .sport(41000)
            .established()
            .build();
        let hit_v6 = Pkt::new("fd00:19::100", 80, PROTO_TCP)
            .sport(41000)
            .established()
            .build();
        let pass = Pkt::new("198.18.0.2", 80, PROTO_TCP).build();
        let new_flow = Pkt::new("198.19.0.100", 80, PROTO_TCP).build();
        let mut out = format!(
            "this build against {label}, {} pairs of calls of {} runs\n\n| path | this build (median) | other | this − other (median of pairs) |\n|---|---|---|---|\n",
            6 * o.runs + 1,
            o.repeat
        );
        for (name, program, frame, action) in [
            ("hit, IPv4 TCP", programs::LB_BENCH, &hit, fixture::XDP_TX),
            ("hit, IPv6 TCP", programs::LB_BENCH, &hit_v6, fixture::XDP_TX),
            // A table of 4096 slots is full after the first call: every later run evicts.
            (
                "new flow, the table full",
                programs::LB_BENCH_NEW,
                &new_flow,
                fixture::XDP_TX,
            ),
            ("non-VIP pass", programs::LB, &pass, fixture::XDP_PASS),
        ] {
            let mut a = programmed(OBJECT, program, &opts);
            let mut b = programmed(other, program, &opts);
            let (mut ta, mut tb, mut d) = (Vec::new(), Vec::new(), Vec::new());
            for i in 0..(6 * o.runs + 1) {
                // Alternate which side goes first, too.
                let (x, rx, y, ry) = if i % 2 == 0 {
                    let (x, rx) = timed(&mut a, ifindex, frame, o.repeat);
                    let (y, ry) = timed(&mut b, ifindex, frame, o.repeat);
                    (x, rx, y, ry)
                } else {
                    let (y, ry) = timed(&mut b, ifindex, frame, o.repeat);
                    let (x, rx) = timed(&mut a, ifindex, frame, o.repeat);
                    (x, rx, y, ry)
                };
                assert_eq!((rx, ry), (action, action), "{name}: verdicts");
                ta.push(x);
                tb.push(y);
                d.push(x - y);
            }
            let (a, b, d) = (spread(ta).median, spread(tb).median, spread(d).median);
            let _ = writeln!(out, "| {name} | {a:.1} ns | {b:.1} ns | {d:+.1} ns |");
        }
        out
    })
}
