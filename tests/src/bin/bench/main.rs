//! `cargo xtask bench [--quick]`: the numbers, each next to a baseline measured in the same
//! run, written to BENCHMARKS.md (`--quick`: fewer repetitions, written to
//! target/bench-quick.md, for CI: it fails on a broken harness, never on a slow machine).
use std::{fmt::Write as _, time::Instant};

mod ab;
mod conn;
mod control;
mod e2e;
mod maglev_bench;
mod parts;
mod per_packet;
mod summary;

use maglev_bench::maglev_rows;
use per_packet::per_packet;

#[derive(Clone, Copy)]
pub struct Opts {
    pub quick: bool,
    /// Repetitions per BPF_PROG_TEST_RUN call.
    pub repeat: u32,
    /// Calls per case (the report gives min/median/max).
    pub runs: usize,
}

/// `--quick` and `--only SECTIONS`; anything else is refused, so that a mistyped flag does
/// not start the full run (minutes) that rewrites BENCHMARKS.md.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<(bool, Option<String>), String> {
    let (mut quick, mut only) = (false, None);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--only" => only = Some(args.next().ok_or("--only needs a section")?),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok((quick, only))
}

fn main() {
    let (quick, only) = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            let names: Vec<&str> = SECTIONS.iter().map(|(n, _)| *n).collect();
            eprintln!(
                "bench: {e}\nusage: bench [--quick] [--only SECTION[,SECTION...]]\n(no --only: every section, written to BENCHMARKS.md; sections: {}; flood and many, parts of e2e; and ab and e2e-ab, with LB_AB_OBJECT: see ab.rs and e2e/ab.rs)",
                names.join(", ")
            );
            std::process::exit(2);
        }
    };
    let o = Opts {
        quick,
        repeat: if quick { 100_000 } else { 1_000_000 },
        runs: if quick { 1 } else { 7 },
    };
    if let Some(sections) = only {
        // Some sections (comma-separated, in that order, in one process), printed: for
        // working on one number, not for the report.
        for section in sections.split(',') {
            if section == "ab" {
                print!("{}", ab::measure(&o));
                continue;
            }
            if section == "e2e-ab" {
                print!("{}", e2e::ab::measure(o.quick));
                continue;
            }
            // Part of e2e, alone.
            if section == "flood" {
                print!("{}", e2e::flood::measure(o.quick));
                continue;
            }
            if section == "many" {
                print!("{}", e2e::many::measure(o.quick));
                continue;
            }
            let Some((_, run)) = SECTIONS.iter().find(|(name, _)| *name == section) else {
                let names: Vec<&str> = SECTIONS.iter().map(|(n, _)| *n).collect();
                panic!(
                    "no section {section:?}; sections: {}, ab, e2e-ab",
                    names.join(", ")
                );
            };
            print!("{}", run(&o));
        }
        print!("\n{}", summary::table());
        return;
    }
    let started = Instant::now();
    let mut body = String::new();
    for (name, run) in SECTIONS {
        eprintln!("bench: {name}");
        body.push_str(&run(&o));
    }
    if quick {
        // `ab` compares two builds and has no place in the report; the quick run proves it
        // still works (loads, programs, verdicts) by comparing this build with itself.
        eprintln!("bench: ab (this build against itself)");
        let _ = write!(
            body,
            "\n## A/B (`--only ab`), this build against itself\n\n{}",
            ab::against(&o, "this build's own object", lb_tests::test_object::OBJECT)
        );
        eprintln!("bench: e2e-ab (this build against itself)");
        let _ = write!(
            body,
            "
## A/B on the wire (`--only e2e-ab`), this build against itself

{}",
            e2e::ab::against(
                true,
                "this build's own object",
                lb_tests::test_object::OBJECT
            )
        );
    }
    let mut md = String::new();
    let cmd = if quick {
        "cargo xtask bench --quick"
    } else {
        "cargo xtask bench"
    };
    let _ = writeln!(
        md,
        "# Benchmarks\n\nProduced by `{cmd}` on {} ({} CPUs, kernel {}), in {:.0} s. Every number sits next to a baseline measured in the same run; ratios are what to compare across machines.\n",
        date(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        kernel(),
        started.elapsed().as_secs_f64()
    );
    md.push_str(&summary::table());
    md.push_str(&body);
    let _ = writeln!(
        md,
        "\n## Not measured yet\n\nThe balancer on more than one core (this machine has two: one generates, one balances)."
    );
    let path = if quick {
        "target/bench-quick.md"
    } else {
        "BENCHMARKS.md"
    };
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::write(root.join(path), &md).expect("write the report");
    print!("{md}");
    eprintln!("bench: wrote {path}");
}

type Section = fn(&Opts) -> String;

/// The report's sections, in order: each measures and returns its markdown.
const SECTIONS: &[(&str, Section)] = &[
    ("per-packet", per_packet_section),
    ("e2e", |o| {
        format!(
            "\n## End-to-end packet rate (veth, live-frames generator)\n\n{}\n{}\n{}",
            e2e::measure(o.quick),
            e2e::measure_two_arm(o.quick),
            e2e::measure_v6(o.quick)
        ) + &e2e::flood::measure(o.quick)
            + &e2e::many::measure(o.quick)
    }),
    ("conn", |o| {
        format!("\n## Connection rate\n\n{}", conn::measure(o.quick))
    }),
    ("maglev", maglev_section),
    ("control", |o| {
        format!("\n## Control loop\n\n{}", control::measure(o.quick))
    }),
];

fn per_packet_section(o: &Opts) -> String {
    let pp = per_packet(o);
    let mut md = String::new();
    let _ = writeln!(
        md,
        "## Per-packet cost (BPF_PROG_TEST_RUN on the loaded programs)\n"
    );
    let _ = writeln!(
        md,
        "{} runs per call, {} calls per case; ns per packet (min / median / max over calls). Each call of a case follows a call of its baseline (the trivial program with the same verdict), and the ratio is the median over these pairs, so the machine's drift moves both sides alike. Every run's verdict is checked through the program's own counters. Rewriting paths run in `xdp_lb_bench`, which restores the frame after each run (the kernel reuses one buffer across repeats); the restoring's own cost is measured in the same pair and subtracted: `xdp_bench_floor` grows the head by an outer header and restores the frame, around nothing, and `xdp_bench_floor_twice` does the same with one more grow and shrink, which says what a grow costs; the grow is the path's own work (its encapsulation grows the head too), so only the floor less one grow is subtracted. (Until 2026-11-29 the whole floor was, a grow included: rewriting paths measured some 8–12 ns, 0.3–0.4×, low; ratios quoted below from earlier runs carry that.) The new-flow cases run `xdp_lb_bench_new`, which gives every run a new source port and address first, so each is a real ring pick and flow insert: into a table with room (one of its own, {room} runs per call, fewer than it holds in all), and into a full table (filled before the calls), where every insert evicts the least recently used entry, as under a flood of new connections. Both tables have the default 1M entries.\n",
        o.repeat,
        o.runs,
        room = per_packet::room(o).repeat
    );
    let _ = writeln!(
        md,
        "| path | ns/packet (min / median / max) | baseline (median) | ratio (median of pairs) | target |\n|---|---|---|---|---|"
    );
    for r in &pp {
        let ratio = r.ratio;
        let target = r.target.map_or("".to_string(), |t| {
            let goal = format!("≤ {t}× {}", r.baseline);
            let tick = summary::check(r.name, &goal, format!("{ratio:.2}×"), ratio <= t);
            format!("≤ {t}× {tick}")
        });
        let _ = writeln!(
            md,
            "| {} | {:.1} / {:.1} / {:.1} | {} {:.1} ns | {:.2}× | {} |",
            r.name, r.ns.min, r.ns.median, r.ns.max, r.baseline, r.base_ns, ratio, target
        );
    }
    let by = |name: &str| {
        pp.iter()
            .find(|r| r.name == name)
            .map(|r| (r.ns.median, r.ratio))
    };
    if let (Some(ipip), Some(gue), Some(l2)) = (
        by(per_packet::HIT_V4),
        by(per_packet::HIT_GUE_V4),
        by(per_packet::HIT_L2DSR_V4),
    ) {
        let _ = writeln!(
            md,
            "\nThe IPv4 TCP hit per forwarding mode: ipip {:.1} ns ({:.2}×), gue {:.1} ns ({:.2}×), l2dsr {:.1} ns ({:.2}×) against XDP_TX. l2dsr grows no head and writes only the Ethernet addresses; gue writes a UDP header after the outer IP one.",
            ipip.0, ipip.1, gue.0, gue.1, l2.0, l2.1
        );
    }
    let _ = writeln!(md, "\n{}", per_packet::ANALYSIS);
    let costs = parts::parts_cost(o);
    let _ = writeln!(
        md,
        "\n### What parts of the program cost\n\nThe program with one part and without it, each loaded with a flow table of 4096 entries (so that where the two tables lie in memory does not weigh more than what is measured), measured in alternating calls, three times as many as above (the hit through `xdp_lb_bench`, whose restoring costs both sides alike). The kernel reports whole nanoseconds per run, and the machine's drift between two calls is of the same order as these differences: read a cost of 0–2 ns as \"within the noise\". The counters are measured against the test object's `xdp_lb_bench_uncounted`, the balancer built without them. The flow-table lookup is measured against `xdp_lb_bench_fixed_flow`, built to find every packet's entry in one fixed array slot instead (neither is in the production object): the difference is what the flow lookup costs a hit (its hash of the 5-tuple and the flow cache's entry, which answers a flow's packets but the first of each second, the backend's entry checked: all inline, no helper call). The counters are the per-CPU counters behind `lb stats` and the metrics: a packet sent to a backend updates its backend's alone (the agent derives the outcome, VIP and flow-hit totals from those), any other its outcome's and its VIP's. The VIP lookup is measured on new flows (`xdp_lb_bench_new`: a new source every run, both tables full) in the same program with its VIP index turned off, when it asks the kernel's VIP hash map instead: the difference is what the index saves a new flow. The capture hook is not in the program the agent runs at all: `lb capture` swaps in the same program with the hook for its duration (one atomic link update per interface) and puts the other back after, so without a capture it costs nothing by construction; the row (the program loaded with the hook's load-time constant set, and without) shows what it would cost otherwise, which is also what a packet that a running capture's filter leaves out pays (an array read and a branch). Program logs (`--program-log`) are off by default and then absent from the loaded program altogether.\n"
    );
    let _ = writeln!(
        md,
        "| part | path | ns/packet with (median) | without | cost per packet (median of pairs) |\n|---|---|---|---|---|"
    );
    for c in &costs {
        let _ = writeln!(
            md,
            "| {} | {} | {:.1} | {:.1} | {:.1} ns |",
            c.name, c.path, c.with_ns, c.without_ns, c.delta_ns
        );
    }
    let hit = pp.iter().find(|r| r.name == per_packet::HIT_V4);
    let fixed = pp.iter().find(|r| r.name == per_packet::HIT_FIXED);
    let lookup = costs.iter().find(|c| c.name == parts::LOOKUP);
    if let (Some(hit), Some(fixed), Some(lookup)) = (hit, fixed, lookup) {
        let goal = hit.target.expect("the hit row carries its target");
        let _ = writeln!(
            md,
            "\nSo the flow lookup costs a hit {:.0} ns, {:.1}× the whole trivial XDP_TX program ({:.0} ns; the kernel's LRU hash map lb's table replaced measured 50–70 ns here; a hit repeated in this loop is answered by the flow cache, whose entry and the table's slot both stay in the CPU's cache here). With one array entry in its place (the row \"{}\" above, measured as the hit is), a hit comes to {:.2}× instead of {:.2}×: {}.",
            lookup.delta_ns,
            lookup.delta_ns / hit.base_ns,
            hit.base_ns,
            per_packet::HIT_FIXED,
            fixed.ratio,
            hit.ratio,
            if fixed.ratio <= goal {
                format!("within the {goal}× target, so the lookup decides whether the hit meets it")
            } else {
                format!(
                    "above the {goal}× target in this run even with a lookup that costs nothing"
                )
            }
        );
        let counters = costs.iter().find(|c| c.name == parts::COUNTERS);
        let floor = if fixed.ratio > goal {
            format!(
                "even with one array entry in place of the flow table (no lookup to speak of: \
                 the floor of any table) the same hit measures {:.2}× in this run{}",
                fixed.ratio,
                if fixed.ratio > hit.ratio {
                    ", more than the hit itself: the noise between the two programs' calls \
                     exceeds the lookup's cost"
                } else {
                    ""
                }
            )
        } else {
            format!(
                "with one array entry in place of the flow table the same hit measures {:.2}× \
                 in this run, so the table's lookup is what keeps it above {goal}×",
                fixed.ratio
            )
        };
        summary::bound(
            per_packet::HIT_V4,
            format!(
                "{floor}. The lookup costs a hit {:.0} ns{}, the trivial program takes {:.0} ns, \
                 and the rest is parsing and checking the headers, the backend's entry, growing \
                 the head and writing the outer headers.",
                lookup.delta_ns,
                counters.map_or(String::new(), |c| format!(
                    " and the per-CPU counters {:.0} ns",
                    c.delta_ns
                )),
                hit.base_ns,
            ),
        );
    }
    md
}

fn maglev_section(o: &Opts) -> String {
    let mg = maglev_rows(o);
    let mut md = String::new();
    let _ = writeln!(
        md,
        "\n## Maglev ring builds\n\nImbalance: the busiest backend's slots over the mean. Disruption: share of slots that change backend when one of N leaves (the minimum possible is 1/N).\n"
    );
    let _ = writeln!(
        md,
        "| N | M | build (ms, median) | fastest | imbalance | disruption | 1/N |\n|---|---|---|---|---|---|---|"
    );
    for r in &mg {
        let _ = writeln!(
            md,
            "| {} | {} | {:.2} | {:.2} | {:.4} | {:.4} | {:.4} |",
            r.n,
            r.m,
            r.build_ms,
            r.fastest_ms,
            r.imbalance,
            r.disruption,
            1.0 / r.n as f64
        );
    }
    let n100 = mg.iter().find(|r| r.n == 100 && r.m == 65537);
    let worst = mg.iter().map(|r| r.imbalance).fold(1.0, f64::max);
    let build_tick = n100.map_or("?".to_string(), |r| {
        let tick = summary::check(
            "Maglev ring build, N = 100, M = 65537 (median)",
            "≤ 1 ms",
            format!("{:.2} ms", r.build_ms),
            r.build_ms <= 1.0,
        );
        if r.build_ms <= 1.0 {
            tick.to_string()
        } else {
            format!("{tick} ({:.2} ms)", r.build_ms)
        }
    });
    let imbalance_tick = summary::check(
        "Maglev imbalance (busiest backend over the mean), every row",
        "≤ 1%",
        format!("{:.2}%", (worst - 1.0) * 100.0),
        worst <= 1.01,
    );
    let _ = writeln!(
        md,
        "\nTargets: build for N = 100, M = 65537 ≤ 1 ms {}; imbalance ≤ 1% {}.\n\nWhat bounds the build: each backend walks its own permutation and claims the first free slot it meets, about M × H(M) probes in all if every slot were probed for (some 766,000 for M = 65537). A probe is a load from a bitmap of the taken slots (8 KiB for M = 65537, in the first-level cache) and a step to the permutation's next slot, wrapped around M with a conditional move (the chain from one probe to the next: two cycles as written by hand for x86-64, three as LLVM arranges it, which cost the last stretch of a build a tenth); the search ends after a random number of probes, so a claim often costs a mispredicted branch. Two things cut that: until seven eighths of the slots are taken a claim looks at its next few slots at once (two, three, then four as the ring fills) and picks the first free one without a branch, probing on one at a time only when all are taken, and from there on it probes in pairs, two chains a slot apart each stepping twice the permutation's step (one link of the chain covers two probes; 4–6% of a build); and the last √M slots, which took half of all probes, are not probed for: each turn computes where every free slot stands in the backend's permutation (its modular inverse, in exact double arithmetic, eight slots at a time with AVX2) and takes the first. Together 1.4–1.7 ms became 0.8–1.1 ms for N = 100 here (the growing window, in place of two slots up to three quarters, and the hand-written step then took it from 0.85 to 0.68 ms at the fastest, 1.09 to 0.89 ms on average in alternating builds), the ring unchanged slot for slot (tested against the step-by-step reference and earlier versions' fingerprints). Tried without a gain: probing four or eight slots per branch all the way (half again slower), per-backend windows of 64 probes, a 16-bit ring during the build. Each build is timed {builds} times, in rounds that take every row in turn (so that a burst of other work on the machine falls on one build of many rows, not on every build of one); the median is what the target is read against, the fastest shows the cost with least interference from the other guests on this machine. Rings are rebuilt only when a VIP's backends change, never per packet, and the control loop's numbers below include it.",
        build_tick,
        imbalance_tick,
        builds = maglev_bench::builds(o.quick),
    );
    md
}

fn date() -> String {
    std::process::Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d")
        .output()
        .map_or_else(
            |_| "?".into(),
            |o| String::from_utf8_lossy(&o.stdout).trim().to_string(),
        )
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::parse_args;

    fn args(a: &[&str]) -> Result<(bool, Option<String>), String> {
        parse_args(a.iter().map(|s| s.to_string()))
    }

    #[test]
    fn a_full_run_needs_no_argument_and_any_unknown_one_is_refused() {
        assert_eq!(args(&[]), Ok((false, None)));
        assert_eq!(
            args(&["--quick", "--only", "maglev,control"]),
            Ok((true, Some("maglev,control".into())))
        );
        assert!(args(&["--help"]).is_err());
        assert!(args(&["--quick", "maglev"]).is_err());
        assert!(args(&["--only"]).is_err());
    }
}
