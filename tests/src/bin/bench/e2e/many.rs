//! What users with many clients meet: end to end with a million live UDP flows cycling (the
//! agent's flow table sized for them, four slots a flow as the README advises) and with every
//! packet a new flow (the default table, full after the first bursts, so every insert evicts),
//! each against the bare XDP_TX ceiling in the same interleaved rounds.
use lb_common::{GEN_CYCLE_1M, GEN_FRAME_V4, GEN_UDP_FLOOD};
use lb_tests::{
    TempDir, lab,
    test_object::{Fabric, programs},
};

use super::{
    OneArmLab, Rates, V4, attached, burst, gen_config,
    modes::{Agent, Up, detach, interleaved},
    net::agent_config,
    pin_napi, ratio, send, sizes,
};

/// The flows of the million-flow mode, and its table's slots.
const FLOWS_1M: u32 = 1 << 20;
const TABLE_1M: u32 = 4 << 20;

pub(super) const TARGET_1M: &str =
    "end to end, IPv4, 1M live flows: lb against the bare XDP_TX ceiling";
pub(super) const TARGET_NEW: &str =
    "end to end, IPv4, every packet a new flow: lb against the bare XDP_TX ceiling";

pub fn measure(quick: bool) -> String {
    let (n, runs) = sizes(quick);
    let OneArmLab {
        gen_ns,
        lb_ns,
        sink,
        mut generator,
        tmp,
        cfg,
    } = OneArmLab::new(&V4);
    let tmp_1m = TempDir::new("bench-e2e-1m");
    let cfg_1m = agent_config(&tmp_1m, &["l0"], &V4, Some(TABLE_1M));
    let socket_1m = tmp_1m.path("lb.sock");
    let program = |name: &'static str| -> Up {
        let dp = attached(&lb_ns, name, "l0", |_| {});
        pin_napi(&lb_ns, "l0", 1);
        Box::new(dp)
    };
    const CEILING: &str = "XDP_TX ceiling";
    const MILLION: &str = "lb, 1M flows";
    const NEW: &str = "lb, every packet a new flow";
    let mut warm = false;
    let r = interleaved(
        runs,
        &mut [
            (CEILING, &mut || program(programs::TX)),
            (MILLION, &mut || {
                let agent = Agent::start(&lb_ns, &cfg_1m, &tmp_1m, &["l0"], "tx");
                pin_napi(&lb_ns, "l0", 1);
                Box::new(agent)
            }),
            (NEW, &mut || {
                let agent = Agent::start(&lb_ns, &cfg, &tmp, &["l0"], "tx");
                pin_napi(&lb_ns, "l0", 1);
                Box::new(agent)
            }),
        ],
        |what| {
            let mode = if what == NEW {
                GEN_UDP_FLOOD
            } else {
                GEN_CYCLE_1M
            };
            generator
                .set_gen_config(gen_config(&V4, mode))
                .expect("generator config");
            let inserted = || lab::stats(&socket_1m).flows.inserted;
            if what == MILLION && !warm {
                // Every flow recorded before the first measured burst (the table outlives
                // the agent between rounds, on its pins): the cycle sent until the table
                // has taken nearly all of it (a full veth queue drops frames), at most ten
                // times.
                for _ in 0..10 {
                    send(&gen_ns, &mut generator, FLOWS_1M, GEN_FRAME_V4);
                    if inserted() >= FLOWS_1M as u64 * 99 / 100 {
                        break;
                    }
                }
                warm = true;
            }
            let before = (what == MILLION).then(inserted);
            let r = burst(&gen_ns, &mut generator, &sink, n, &V4);
            // The million flows' packets must be hits: a burst that inserts is measuring
            // new flows.
            if let Some(b) = before {
                let new = inserted() - b;
                assert!(
                    new <= n as u64 / 20,
                    "{MILLION}: {new} of {n} packets were new flows: the harness measures the wrong path"
                );
            }
            r
        },
        Some(&mut || super::prog_stats(&lb_ns, "l0")),
    );
    detach(&tmp);
    detach(&tmp_1m);
    let [ceiling, million, new] = <[Rates; 3]>::try_from(r).ok().expect("three modes");
    let row = |name: &str, r: &Rates| {
        format!(
            "| {name} | {:.2} / {:.2} / {:.2} | {:.2}× | {} |\n",
            r.min,
            r.median,
            r.max,
            ratio(r, &ceiling),
            r.prog_ns.map_or("".into(), |p| format!("{p:.0}"))
        )
    };
    let (a, b) = (ratio(&million, &ceiling), ratio(&new, &ceiling));
    let mut out = format!(
        "\n### Many clients\n\nThe same topology and bursts; the generator cycles 2^20 UDP flows (32,768 sources × 32 ports, every one recorded by a warm-up burst before the first measured one) to an agent with `flow_table_size = {TABLE_1M}` ({} MB), or sends every packet from a new 5-tuple to an agent with the default table (full after the first bursts: every insert evicts the least recently seen entry of its set), interleaved with the ceiling.\n\n| mode | Mpps | × XDP_TX ceiling | program ns/packet |\n|---|---|---|---|\n",
        (TABLE_1M as usize * size_of::<lb_common::flow::FlowSlot>()) >> 20
    );
    out += &row("bare XDP_TX (ceiling)", &ceiling);
    out += &row(&format!("lb, 1M live flows ({TABLE_1M} slots)"), &million);
    out += &row("lb, every packet a new flow (default table)", &new);
    out += &format!(
        "\nTargets: 1M live flows ≥ 0.7× the ceiling {}, every packet a new flow ≥ 0.5× {}.\n",
        crate::summary::check(TARGET_1M, "≥ 0.7×", format!("{a:.2}×"), a >= 0.7),
        crate::summary::check(TARGET_NEW, "≥ 0.5×", format!("{b:.2}×"), b >= 0.5)
    );
    let prog = |r: &Rates| r.prog_ns.map_or("?".to_string(), |p| format!("{p:.0}"));
    crate::summary::bound(
        TARGET_1M,
        format!(
            "the program takes {} ns a packet against the ceiling's {}: a million flows are \
             sixteen times the flow cache's entries, so nearly every packet reads its flow's \
             slot in a table of {} MB, a different page nearly every packet, and pays a TLB \
             miss and a cache miss (see \"Many clients\").",
            prog(&million),
            prog(&ceiling),
            (TABLE_1M as usize * size_of::<lb_common::flow::FlowSlot>()) >> 20
        ),
    );
    crate::summary::bound(
        TARGET_NEW,
        format!(
            "the program takes {} ns a packet against the ceiling's {}: every packet finds its \
             VIP in the VIP index, hashes its 5-tuple for the ring, picks its ring slot and \
             evicts and writes a flow-table entry in a cold set (see \"Many clients\", and for \
             the parts the per-packet section).",
            prog(&new),
            prog(&ceiling)
        ),
    );
    out
}
