//! Per-packet cost through BPF_PROG_TEST_RUN on the loaded programs.
use aya::programs::{TestRun, TestRunOptions};
use lb::dataplane::{Dataplane, OBJECT, Options, nix_ifindex};
use lb_common::{Counter, FLOWS_DEFAULT, PROTO_TCP, PROTO_UDP, program_names};
use lb_tests::{
    fixture::{self, Pkt},
    test_object::{self, programs},
};

use crate::Opts;

/// What bounds the per-packet numbers, for the report.
pub const ANALYSIS: &str = "**Where the fast path stands, and what bounds it.** Work so far: each backend's next hop kept in its entry (no per-packet `bpf_fib_lookup`); no BPF `memset` calls; code generation that allows misaligned loads, so a multi-byte header field is one load (the parser went from 329 to 156 instructions); a bitmap of VIP addresses checked inline before the parser, so traffic for any other address costs one array read and no hash lookup (on this kernel every return, a BPF function's included, goes through the SRSO return thunk, so calls saved show: a non-VIP packet went from ~1.75× to ~1.2–1.45× of XDP_PASS); the flow table consulted before the VIP map, each backend's entry recording the VIP it serves, so an established flow costs one flow-table lookup; a TCP SYN not looked up at all (it takes the ring whatever the table holds: its insert finds out, one walk of the table for a new connection instead of two, ~6–8% of a new flow); the send step and the parser inlined; a per-CPU cache of the coarse clock for UDP's idle time (`bpf_jiffies64` is inlined by the verifier, the clock helper is not); the IPv6 outer flow label kept in the flow entry (the ring pick's hash), so an IPv6 hit does not hash its 5-tuple again (6.5–7.0× to 5.7–6.5×); a flow table of lb's own in place of the kernel's LRU hash map (below); and the entry points' bodies inlined always (`#[xdp]` leaves that to LLVM, which once outlined `xdp_lb` when it grew: a BPF-to-BPF call took a non-VIP packet from ~1.35× to ~1.65×; the benchmark entry points had been outlined all along, so hit rows before measured one call more than the program the agent runs; a test now reads the object's symbols); and the code LLVM makes of whole words kept whole (read in the object's disassembly: the transport ports had been four byte loads, carried through the parser as bytes and put back together, the backend's address likewise, the outer IPv4 checksum summed over byte-swapped halves, and the outer IPv6 addresses copied by a call of BPF's `memcpy` and by sixteen byte moves: some 260 instructions fewer in `xdp_lb`, a hit 10–15 ns less in `bench --only ab`, an IPv6 hit 30–37 ns less); and the object built for BPF CPU v3, whose 32-bit ALU and jump instructions spare the two shifts that widened every `u32` before a compare in generic BPF (`xdp_lb` 4043 → 3765 instructions, a new flow 16–28 ns less, a hit 0–7 ns). Hardening added work to every packet for a VIP address (the IPv4 header checksum, TCP data offsets and UDP lengths checked, IPv6 extension headers walked, ICMP and fragments told apart), about 0.5× of a hit.\n\n**The hit's 3× target.** The flow table is lb's own: an array of 64-byte slots in sets of four, a set found by a cheap hash of the 5-tuple (five independent multiplies and a finaliser), its slots read inline (the verifier inlines array lookups: no helper call, no return through the SRSO thunk). Each run measures what that lookup costs a hit against the same program finding its entry in one fixed array slot (the last row above, and a row of the table below): ~10–30 ns, where the kernel's LRU hash map it replaced measured 50–70 ns (its jhash of the 40-byte key, the bucket walk, the key compare: four kernel functions). The one-slot row is the floor of this program: 2.8–4.4× across runs here before the harness stopped subtracting the encapsulation's own grow of the head (see above), 3.6–4.1× in the first runs after (the machine's phases move it by a third). So the 3× target is out of reach of any flow table: what is left above it is parsing and checking the headers, the backend's entry, one per-CPU counter update (the backend's; below), growing the head (a helper call, 8–12 ns with its return through the SRSO thunk) and writing 34 bytes of headers with their checksum. Katran's program measures about 5× on this kind of machine. In front of the table sits the flow cache (64K entries of 16 bytes: a copy of a flow's table entry, made at a hit, good for the rest of a second; `lb_common::flow_cache`), which answers a busy flow's packets, so the hit rows here are the cache's: in this loop, where one flow's slot stays in the CPU's cache anyway, it changes nothing that can be told from the noise (\"The flow cache: A/B\"); on the wire it is what takes the table's pages out of a hit.\n\n**New flows.** An insert is one pass over the four slots of the flow's set, and an eviction is an overwrite in place of the set's least recently seen slot: a new flow into a table with room costs ~14× (19–23× with the kernel's LRU hash, a third of it the first walk of a cold bucket in a 16 MB bucket array), into a full table ~15× (35–38× with the LRU hash: `bpf_lru_pop_free` and the evicted entry's cold bucket). End to end the picture differs: there 4096 flows lie spread over the default table of 1M slots (64 MB), and a packet's slot misses the cache and, in this virtual machine, the TLB, as the LRU hash's buckets did (until the flow cache, 2026-12-06: it reads the table once a second a flow, and its own 256 pages otherwise); the e2e section measures what is left against one slot. A hit writes its slot's stamp only once the coarse clock is 67 ms past it: at every 4 ms tick, as first written, about every other packet there dirtied a line of the 64 MB table, and the program took some 70 ns more a packet. A smaller table cost less before the flow cache (the agent's `flow_table_size`; the end-to-end section measures one of 16384 slots next to the default in every run). What the default table's cold sets cost a new flow here: the row with a full table of 16384 slots against the full default one; what finding its VIP costs: the parts table's VIP row (the kernel's hash map, which the VIP index replaced for the program's lookups, against the index). The rest of a new flow is the ring's hash (MurmurHash3 of the 5-tuple), the insert's pass over its set, the encapsulation and the counters.\n\n**Tried without gain, not kept:** per-CPU LRU lists (`BPF_F_NO_COMMON_LRU`) when the table was the kernel's LRU hash, for hits and for new flows; the ring's own hash (MurmurHash3's ten dependent rounds, some 120 cycles without a rotate instruction) as the table's, which left the lookup at ~50 ns a hit, no better than the LRU hash; handing the parser the IP version the inline check had found, so that it starts at the IP header (LLVM merged the two into one state machine that cost the non-VIP path ~0.3× more). Run to run, the same build's hit measures anywhere from 4.4× to 6.1× here (other guests share the host), so a change of a few nanoseconds cannot be told from the noise. Tried in a prototype, no gain on the wire: the flow table as an array of maps of at most 32 KB each, which the kernel takes from its huge-page direct map instead of 4 KB vmalloc pages (see the end-to-end section). Also tried, measured with `bench --only ab` (this build against another's object, alternating calls): the outer headers written as whole words (the IPv4 header in three stores, both MACs in two, instead of some fifteen field stores): +1, −3, +1 ns a hit, nothing; one per-CPU lookup shared by the outcome counters, the flow counters and the clock instead of three: no gain on a hit, +2 ns on the non-VIP path. BPF CPU v4 over v3 (sign-extending loads and moves, byte swaps, long jumps; kernel 6.6+): +2, +3, +3 ns a hit, nothing, so the object stays on v3 (kernel 5.1+); 32-bit ALU alone, without v3's 32-bit jumps: longer code (4473 instructions), each compare widening its operands again. What the counters cost is their updates, not their lookups: leaving out the flow-hit counter's update saved 3–5 ns a hit, with the VIP's 5–8 ns. Hence, since 2026-12-06, a packet sent to a backend updates one counter, its backend's (packets and bytes by outcome, and whether it was a hit), from which the agent derives the outcome, VIP and flow-hit totals, keeping removed backends' counts so that none goes down (`lb_common::counter`); and a new flow finds its VIP in an array the agent lays out (`lb_common::vip_index`) instead of the kernel's hash map (\"The counters and the VIP index: A/B\").";

/// The rows with an ACL on the VIP.
pub const ACL_HIT: &str = "VIP, flow-table hit, IPv4 TCP, the VIP with an ACL of 10,000 prefixes";
pub const ACL_NEW: &str =
    "VIP, new flow, the table full, the VIP with an ACL of 10,000 prefixes (one LPM lookup)";

/// 10,000 deny prefixes (single addresses of 198.19.128.0/17), none of them a source the
/// benchmarks send from.
fn acl_10k() -> lb::config::Acl {
    lb::config::Acl {
        allow: Vec::new(),
        deny: (0..10_000u32)
            .map(|i| {
                format!("198.19.{}.{}/32", 128 + i / 256, i % 256)
                    .parse()
                    .unwrap()
            })
            .collect(),
    }
}

/// Gives the fixtures' IPv4 TCP VIP (id 0) `acl`.
fn with_acl(dp: &mut Dataplane, acl: &lb::config::Acl) {
    let key = lb::dataplane::vip_key("198.19.0.100".parse().unwrap(), 80, PROTO_TCP);
    dp.set_acl(0, acl).expect("the ACL");
    dp.set_vip_flags(&key, lb::dataplane::vip_flags(acl, None))
        .expect("the VIP's flags");
}

pub fn timed(dp: &mut Dataplane, ifindex: u32, frame: &[u8], repeat: u32) -> (f64, u32) {
    let md: [u32; 6] = [0, frame.len() as u32, 0, ifindex, 0, 0];
    let ctx: Vec<u8> = md.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let mut out = vec![0u8; frame.len() + 256];
    let r = dp
        .program()
        .expect("program")
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: Some(&ctx),
            repeat,
            ..Default::default()
        })
        .expect("BPF_PROG_TEST_RUN");
    (r.duration.as_nanos() as f64, r.return_value)
}

#[derive(Clone, Copy)]
pub struct Spread {
    pub min: f64,
    pub median: f64,
    pub max: f64,
}

pub fn spread(mut v: Vec<f64>) -> Spread {
    v.sort_by(|a, b| a.total_cmp(b));
    Spread {
        min: v[0],
        median: v[v.len() / 2],
        max: v[v.len() - 1],
    }
}

pub fn count(dp: &Dataplane, c: Counter) -> u64 {
    dp.outcomes()
        .expect("counters")
        .iter()
        .find(|(k, _)| *k == c)
        .map_or(0, |(_, t)| t.packets)
}

pub struct Row {
    pub name: &'static str,
    pub ns: Spread,
    pub baseline: &'static str,
    pub base_ns: f64,
    /// Median over calls of (case ÷ baseline), each pair measured back to back.
    pub ratio: f64,
    pub target: Option<f64>,
}

/// The trivial programs every case is measured against, and the restoring wrapper's floor.
struct Baselines {
    tx: Dataplane,
    pass: Dataplane,
    floor: Dataplane,
    floor_twice: Dataplane,
    ifindex: u32,
    frame: Vec<u8>,
}

/// One case: the program, its frame, the verdict and counter every run must end in, and
/// whether the restoring wrapper's cost is to be subtracted.
struct Case<'a> {
    name: &'static str,
    dp: &'a mut Dataplane,
    frame: Vec<u8>,
    action: u32,
    counter: Counter,
    restoring: bool,
    target: Option<f64>,
}

/// Runs the case's calls, each right after a call of its baseline (and of the wrapper's floor
/// where it applies), so that a machine that speeds up or slows down moves both alike; the
/// ratio is taken per pair. Checks that every run took the case's path, by its counter.
fn run_case(b: &mut Baselines, c: Case, o: &Opts) -> Row {
    let before = count(c.dp, c.counter);
    let (base_action, base_name) = if c.action == fixture::XDP_PASS {
        (fixture::XDP_PASS, "XDP_PASS")
    } else {
        (fixture::XDP_TX, "XDP_TX")
    };
    let (mut ns, mut base, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..o.runs {
        let base_dp = if base_action == fixture::XDP_PASS {
            &mut b.pass
        } else {
            &mut b.tx
        };
        let (t_base, a) = timed(base_dp, b.ifindex, &b.frame, o.repeat);
        assert_eq!(a, base_action, "baseline verdict");
        // The floor is the restoring after a grow of the head, and the grow is the path's
        // own work (its encapsulation), not the wrapper's: the second floor, with one grow
        // and shrink more, says what one grow costs (half of the two), and only the rest is
        // subtracted.
        let wrapper = if c.restoring {
            let (t_floor, a) = timed(&mut b.floor, b.ifindex, &b.frame, o.repeat);
            assert_eq!(a, fixture::XDP_TX, "floor verdict");
            let (t_twice, a) = timed(&mut b.floor_twice, b.ifindex, &b.frame, o.repeat);
            assert_eq!(a, fixture::XDP_TX, "second floor's verdict");
            let grow = ((t_twice - t_floor) / 2.0).max(0.0);
            (t_floor - t_base - grow).max(0.0)
        } else {
            0.0
        };
        let (t, a) = timed(c.dp, b.ifindex, &c.frame, o.repeat);
        assert_eq!(
            a, c.action,
            "{}: unexpected verdict: the harness measures the wrong path",
            c.name
        );
        let t = t - wrapper;
        ns.push(t);
        base.push(t_base);
        ratios.push(t / t_base);
    }
    let moved = count(c.dp, c.counter) - before;
    let want = o.repeat as u64 * o.runs as u64;
    assert_eq!(
        moved, want,
        "{}: {:?} moved by {moved}, want {want}: some runs took another path",
        c.name, c.counter
    );
    Row {
        name: c.name,
        ns: spread(ns),
        baseline: base_name,
        base_ns: spread(base).median,
        ratio: spread(ratios).median,
        target: c.target,
    }
}

/// `program` loaded with `opts` and programmed as the agent would: the fixtures' VIPs, the
/// next hops in the backends' entries.
pub fn as_the_agent_runs(program: &'static str, opts: &Options) -> Dataplane {
    let object = if program == program_names::LB {
        OBJECT
    } else {
        test_object::OBJECT
    };
    programmed(object, program, opts)
}

/// [`as_the_agent_runs`], from `object` (another build's, for `bench --only ab`).
pub fn programmed(object: &[u8], program: &'static str, opts: &Options) -> Dataplane {
    let mut dp = Dataplane::load_with(object, program, opts)
        .unwrap_or_else(|e| panic!("load {program}: {e}"));
    let vips = fixture::program(&mut dp);
    fixture::cache_next_hops(&mut dp, &vips);
    dp
}

/// The options of the new-flow case with room: fewer runs per call, so that all calls' inserts
/// fit in the table.
pub fn room(o: &Opts) -> Opts {
    Opts {
        repeat: (FLOWS_DEFAULT / (o.runs as u32 + 2)).min(o.repeat),
        ..*o
    }
}

pub fn per_packet(o: &Opts) -> Vec<Row> {
    let env = fixture::env();
    env.ns.run(|| {
        let ifindex = nix_ifindex("eth0").expect("eth0");
        let mut b = Baselines {
            tx: test_object::load(programs::TX).expect("load xdp_tx"),
            pass: test_object::load(programs::PASS).expect("load xdp_pass"),
            floor: test_object::load(programs::BENCH_FLOOR).expect("load xdp_bench_floor"),
            floor_twice: test_object::load(programs::BENCH_FLOOR_TWICE)
                .expect("load xdp_bench_floor_twice"),
            ifindex,
            frame: Pkt::new("198.19.0.100", 80, PROTO_TCP).build(),
        };
        // As the agent runs them: the fixtures' VIPs, next hops in the backends' entries.
        let mut bench = as_the_agent_runs(programs::LB_BENCH, &Options::default());
        let mut fresh = as_the_agent_runs(programs::LB_BENCH_NEW, &Options::default());
        // Non-VIP traffic, with and without a VIP on every port among the VIPs.
        let mut lb = Dataplane::load(program_names::LB).expect("load xdp_lb");
        fixture::program(&mut lb);
        let mut plain = Dataplane::load(program_names::LB).expect("load xdp_lb");
        let key = lb::dataplane::vip_key("198.19.0.100".parse().unwrap(), 80, PROTO_TCP);
        plain
            .set_vip(0, key, &[lb_common::NO_BACKEND; 7], false, 0)
            .expect("a VIP");

        let other = || Pkt::new("198.18.0.2", 80, PROTO_TCP).build();
        let hit = |dst: &str| Pkt::new(dst, 80, PROTO_TCP).sport(41000).established();
        let mut rows = Vec::new();
        rows.push(run_case(
            &mut b,
            Case {
                name: "non-VIP packet (pass), no VIP on every port",
                dp: &mut plain,
                frame: other(),
                action: fixture::XDP_PASS,
                counter: Counter::PassNotVip,
                restoring: false,
                target: Some(1.5),
            },
            o,
        ));
        rows.push(run_case(
            &mut b,
            Case {
                name: "non-VIP packet (pass), a VIP on every port exists",
                dp: &mut lb,
                frame: other(),
                action: fixture::XDP_PASS,
                counter: Counter::PassNotVip,
                restoring: false,
                target: None,
            },
            o,
        ));
        // New flows into a table with room: a table of its own, and fewer runs per call than
        // it holds in all.
        let mut roomy = as_the_agent_runs(programs::LB_BENCH_NEW, &Options::default());
        let room = room(o);
        rows.push(run_case(
            &mut b,
            Case {
                name: "VIP, new flow, the table with room (ring pick, flow insert, encap)",
                dp: &mut roomy,
                frame: Pkt::new("198.19.0.100", 80, PROTO_TCP).build(),
                action: fixture::XDP_TX,
                counter: Counter::Tx,
                restoring: true,
                target: Some(22.0),
            },
            &room,
        ));
        assert_eq!(
            roomy.flow_counters().expect("flow counters").0,
            room.repeat as u64 * room.runs as u64,
            "new-flow runs that inserted no flow"
        );
        drop(roomy);
        // The other table filled first, so that every measured run evicts: four times its
        // size in new flows leaves a set with room only by chance (Poisson(16) < 4: about one
        // set in ten thousand).
        let fill = 4 * FLOWS_DEFAULT;
        let (_, a) = timed(&mut fresh, ifindex, &b.frame, fill);
        assert_eq!(a, fixture::XDP_TX, "filling the flow table");
        let table = fresh.flow_table().expect("flow table");
        assert!(
            table.inserted >= fill as u64 && table.entries >= table.capacity as u64 * 999 / 1000,
            "filling the flow table: {table:?}"
        );
        let inserted = table.inserted;
        rows.push(run_case(
            &mut b,
            Case {
                name: "VIP, new flow, the table full (ring pick, eviction of the set's oldest, flow insert, encap)",
                dp: &mut fresh,
                frame: Pkt::new("198.19.0.100", 80, PROTO_TCP).build(),
                action: fixture::XDP_TX,
                counter: Counter::Tx,
                restoring: true,
                target: Some(22.0),
            },
            o,
        ));
        let inserted = fresh.flow_counters().expect("flow counters").0 - inserted;
        assert_eq!(
            inserted,
            o.repeat as u64 * o.runs as u64,
            "new-flow runs that inserted no flow"
        );
        // The same into a full table of 16384 slots (1 MB), whose sets stay in the CPU's
        // caches and TLB: the difference is what the default table's cold sets cost a new flow.
        {
            let mut small = as_the_agent_runs(
                programs::LB_BENCH_NEW,
                &Options {
                    flows: NEW_SMALL_TABLE,
                    ..Options::default()
                },
            );
            let (_, a) = timed(&mut small, ifindex, &b.frame, 4 * NEW_SMALL_TABLE);
            assert_eq!(a, fixture::XDP_TX, "filling the small flow table");
            let before = small.flow_counters().expect("flow counters").0;
            rows.push(run_case(
                &mut b,
                Case {
                    name: NEW_SMALL,
                    dp: &mut small,
                    frame: Pkt::new("198.19.0.100", 80, PROTO_TCP).build(),
                    action: fixture::XDP_TX,
                    counter: Counter::Tx,
                    restoring: true,
                    target: None,
                },
                o,
            ));
            let inserted = small.flow_counters().expect("flow counters").0 - before;
            assert_eq!(
                inserted,
                o.repeat as u64 * o.runs as u64,
                "new-flow runs that inserted no flow"
            );
        }
        // The same with an ACL of 10,000 prefixes on the VIP: every new flow's source looked
        // up in the trie (none matches: admitted by default).
        with_acl(&mut fresh, &acl_10k());
        rows.push(run_case(
            &mut b,
            Case {
                name: ACL_NEW,
                dp: &mut fresh,
                frame: Pkt::new("198.19.0.100", 80, PROTO_TCP).build(),
                action: fixture::XDP_TX,
                counter: Counter::Tx,
                restoring: true,
                target: None,
            },
            o,
        ));
        rows.push(run_case(
            &mut b,
            Case {
                name: "VIP, SYN of a 5-tuple the table holds (ring pick; the insert fails, the entry overwritten)",
                dp: &mut bench,
                frame: Pkt::new("198.19.0.100", 80, PROTO_TCP).build(),
                action: fixture::XDP_TX,
                counter: Counter::Tx,
                restoring: true,
                target: None,
            },
            o,
        ));
        let hits = bench.flow_counters().expect("flow counters").1;
        // The hits per forwarding mode (the fixtures' VIPs: 106 l2dsr, 107 gue, 108 and 109
        // IPv4 over IPv6 backends, ipip and gue). l2dsr grows no head, so its runs have
        // nothing for the wrapper to restore, and nothing of it is subtracted.
        let cases = [
            (HIT_V4, hit("198.19.0.100").build(), Some(3.0), true),
            (
                "VIP, flow-table hit, IPv6 TCP",
                hit("fd00:19::100").build(),
                None,
                true,
            ),
            (
                "VIP, flow-table hit, IPv4 UDP",
                Pkt::new("198.19.0.100", 53, PROTO_UDP).sport(41000).build(),
                None,
                true,
            ),
            (HIT_GUE_V4, hit("198.19.0.107").build(), None, true),
            (
                "VIP, flow-table hit, IPv6 TCP, gue",
                hit("fd00:19::107").build(),
                None,
                true,
            ),
            (
                "VIP, flow-table hit, IPv4 TCP over an IPv6 backend, ipip",
                hit("198.19.0.108").build(),
                None,
                true,
            ),
            (
                "VIP, flow-table hit, IPv4 TCP over an IPv6 backend, gue",
                hit("198.19.0.109").build(),
                None,
                true,
            ),
            (HIT_L2DSR_V4, hit("198.19.0.106").build(), None, false),
        ];
        let n = cases.len() as u64;
        for (name, frame, target, restoring) in cases {
            rows.push(run_case(
                &mut b,
                Case {
                    name,
                    dp: &mut bench,
                    frame,
                    action: fixture::XDP_TX,
                    counter: Counter::Tx,
                    restoring,
                    target,
                },
                o,
            ));
        }
        let hits = bench.flow_counters().expect("flow counters").1 - hits;
        // Each hit case's first run records its flow; every later run must hit it.
        assert!(
            hits >= n * (o.repeat as u64 * o.runs as u64 - 1),
            "flow-table hits not taken: {hits}"
        );
        // An established flow with the same ACL on its VIP: a hit does not look the source up.
        with_acl(&mut bench, &acl_10k());
        rows.push(run_case(
            &mut b,
            Case {
                name: ACL_HIT,
                dp: &mut bench,
                frame: hit("198.19.0.100").build(),
                action: fixture::XDP_TX,
                counter: Counter::Tx,
                restoring: true,
                target: None,
            },
            o,
        ));
        // The IPv4 TCP hit once more, with one array entry where the flow-table lookup is
        // (the test object's variant): what the rest of a hit costs.
        let opts = Options {
            flows: 4096,
            ..Default::default()
        };
        let mut fixed = as_the_agent_runs(programs::LB_BENCH_FIXED_FLOW, &opts);
        rows.push(run_case(
            &mut b,
            Case {
                name: HIT_FIXED,
                dp: &mut fixed,
                frame: hit("198.19.0.100").build(),
                action: fixture::XDP_TX,
                counter: Counter::Tx,
                restoring: true,
                target: None,
            },
            o,
        ));
        let hits = fixed.flow_counters().expect("flow counters").1;
        assert!(
            hits >= o.repeat as u64 * o.runs as u64 - 1,
            "hits on the fixed entry not taken: {hits}"
        );
        rows
    })
}

/// The IPv4 TCP hit with one array entry in place of the flow-table lookup.
pub const HIT_FIXED: &str =
    "VIP, IPv4 TCP hit on one array entry instead of the flow table (benchmarks only)";

/// The hits of the other forwarding modes, IPv4 TCP (the summary sets them beside [`HIT_V4`]).
pub const HIT_GUE_V4: &str = "VIP, flow-table hit, IPv4 TCP, gue";
/// The full-table new flow, in a table of [`NEW_SMALL_TABLE`] slots.
pub const NEW_SMALL: &str = "VIP, new flow, a full table of 16384 slots (1 MB) instead of the default 1M (its sets stay in the CPU's caches)";
const NEW_SMALL_TABLE: u32 = 16384;
pub const HIT_L2DSR_V4: &str = "VIP, flow-table hit, IPv4 TCP, l2dsr";

/// The row of the flow-table hit the target is for.
pub const HIT_V4: &str = "VIP, flow-table hit, IPv4 TCP";
