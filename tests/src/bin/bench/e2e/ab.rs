//! `bench --only e2e-ab`, for working on the data path, never in the report: this build's
//! balancer against another build's object (`LB_AB_OBJECT`, as for `--only ab`) on the wire,
//! in the IPv4 one-arm topology. Each side is the agent's own setup with that object's
//! `xdp_lb` swapped onto its link (as `lb capture` swaps its program in), so the two differ
//! in nothing else. Every round measures both, in an order that alternates, each with one
//! burst for the rate and one with the kernel timing the program; the median of the
//! per-round differences of the program's time is the number to read. Where the per-packet
//! `ab` sees a path whose data stays in the cache, this sees the table's misses and the colder
//! caches between packets. This build against itself measured −2 ns; runs of one comparison
//! have spread over some 30 ns here (+9, +20, +38 for one change), so read a difference
//! below that from one run as noise.
use std::fmt::Write as _;

use lb::dataplane::Options;
use lb_tests::test_object::OBJECT;

use super::{OneArmLab, V4, burst, modes::agent_swapped, prog_stats, sizes};
use crate::per_packet::spread;

pub fn measure(quick: bool) -> String {
    match crate::ab::other_object() {
        Some((path, other)) => against(quick, &path, &other),
        None => "e2e-ab: set LB_AB_OBJECT to another build's lb-ebpf-test object\n".into(),
    }
}

/// This build's object against `other`, called `label` in the output.
pub fn against(quick: bool, label: &str, other: &[u8]) -> String {
    let (n, runs) = sizes(quick);
    let rounds = if quick { 1 } else { 3 * runs };
    let mut lab = OneArmLab::new(&V4);
    let sides: [&[u8]; 2] = [OBJECT, other];
    let mut rate = [Vec::new(), Vec::new()];
    let mut ns = [Vec::new(), Vec::new()];
    let mut diff = Vec::new();
    let stats_was = lb_tests::sh("sysctl -n kernel.bpf_stats_enabled");
    for round in 0..rounds {
        let mut this_round = [0.0; 2];
        for k in 0..2 {
            let side = (k + round) % 2;
            let up = agent_swapped(
                &lab.lb_ns,
                &lab.cfg,
                &lab.tmp,
                sides[side],
                lb_tests::test_object::programs::LB,
                Options::default(),
            );
            let r = burst(&lab.gen_ns, &mut lab.generator, &lab.sink, n, &V4);
            assert!(
                r > 0.0,
                "nothing came back to the sink: the harness is broken"
            );
            rate[side].push(r);
            lb_tests::sh("sysctl -qw kernel.bpf_stats_enabled=1");
            let before = prog_stats(&lab.lb_ns, "l0");
            burst(&lab.gen_ns, &mut lab.generator, &lab.sink, n, &V4);
            let after = prog_stats(&lab.lb_ns, "l0");
            lb_tests::sh(&format!(
                "sysctl -qw kernel.bpf_stats_enabled={}",
                stats_was.trim()
            ));
            let (Some((t0, c0)), Some((t1, c1))) = (before, after) else {
                panic!("no program statistics: the harness is broken");
            };
            assert!(c1 > c0, "the program did not run: the harness is broken");
            this_round[side] = (t1 - t0) as f64 / (c1 - c0) as f64;
            ns[side].push(this_round[side]);
            drop(up);
        }
        diff.push(this_round[0] - this_round[1]);
    }
    super::modes::detach(&lab.tmp);
    let mut out = format!(
        "this build against {label} on the wire (IPv4, one arm), {rounds} rounds of a burst of {n} per side\n\n| side | Mpps (median) | program ns/packet (median) |\n|---|---|---|\n"
    );
    let [ra, rb] = rate;
    let [na, nb] = ns;
    for (name, r, p) in [("this build", ra, na), ("other", rb, nb)] {
        let _ = writeln!(
            out,
            "| {name} | {:.2} | {:.0} |",
            spread(r).median,
            spread(p).median
        );
    }
    let _ = writeln!(
        out,
        "\nthis − other, program time per packet (median of rounds): {:+.0} ns",
        spread(diff).median
    );
    out
}
