//! The counters, through BPF_PROG_TEST_RUN on the real loaded `xdp_lb`: a packet sent to a
//! backend updates its backend's entry alone, and the agent's totals of outcomes, VIPs and flow
//! hits, derived from those, never go down when a backend is removed, its id given again, or
//! the program loaded anew over the pinned maps (`lb_common::counter`). Against the agent and
//! its metrics: `observability::stats_and_metrics_count_exactly_the_traffic_sent`.
use aya::maps::PerCpuArray;
use lb::dataplane::{Dataplane, nix_ifindex};
use lb_common::{Counter, MAX_BACKENDS, PROTO_TCP, Sent, Traffic, map_names, program_names};
use lb_tests::{TempDir, fixture::*};

/// Sends `p`: the action and the backend its next hop's MAC names.
fn send(dp: &mut Dataplane, vip: &Vip, p: &Pkt) -> (u32, u32) {
    let (action, out) = test_run(dp, nix_ifindex("eth0").unwrap(), &p.build());
    let mac: [u8; 6] = out[..6].try_into().unwrap();
    let id = vip
        .backends
        .iter()
        .find(|b| b.2 == mac)
        .map_or(u32::MAX, |b| b.0);
    (action, id)
}

/// Every entry of per-CPU map `name`, summed over entries and CPUs, as `T` adds up.
fn raw<T: aya::Pod + Default>(dp: &Dataplane, name: &'static str, n: u32, add: fn(T, T) -> T) -> T {
    let m: PerCpuArray<_, T> = PerCpuArray::try_from(dp.map(name).unwrap()).unwrap();
    (0..n)
        .flat_map(|i| m.get(&i, 0).unwrap().iter().copied().collect::<Vec<_>>())
        .fold(T::default(), add)
}

fn traffic(a: Traffic, b: Traffic) -> Traffic {
    Traffic {
        packets: a.packets + b.packets,
        bytes: a.bytes + b.bytes,
    }
}

/// What the program counted itself, outside the backends' sent entries: every outcome, VIP,
/// backend and flow counter.
fn own(dp: &Dataplane) -> (Traffic, Traffic, Traffic, u64) {
    (
        raw(dp, map_names::STATS, Counter::COUNT, traffic),
        raw(dp, map_names::VIP_STATS, lb_common::MAX_VIPS, traffic),
        raw(dp, map_names::BACKEND_STATS, MAX_BACKENDS, traffic),
        raw(
            dp,
            map_names::FLOW_STATS,
            lb_common::FLOW_STATS_COUNT,
            |a: u64, b| a + b,
        ),
    )
}

/// Backend `id`'s sent entry, summed over CPUs.
fn sent(dp: &Dataplane, id: u32) -> Sent {
    let m: PerCpuArray<_, Sent> =
        PerCpuArray::try_from(dp.map(map_names::BACKEND_SENT).unwrap()).unwrap();
    m.get(&id, 0)
        .unwrap()
        .iter()
        .fold(Sent::default(), |a, s| Sent {
            tx: traffic(a.tx, s.tx),
            redirect: traffic(a.redirect, s.redirect),
            hits: a.hits + s.hits,
        })
}

/// The derived totals the agent reports: tx packets, VIP 0's packets, flow hits.
fn totals(dp: &Dataplane) -> (u64, u64, u64) {
    let c = dp.counts().unwrap();
    let tx = c.outcomes()[Counter::Tx as usize].1.packets;
    (tx, c.vip(0).packets, c.flow_hits())
}

#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn a_packet_sent_updates_its_backends_counter_alone() {
    let env = env();
    env.ns.run(|| {
        let mut dp = Dataplane::load(program_names::LB).expect("load xdp_lb");
        let vips = program(&mut dp);
        let vip = &vips[0];
        let syn = Pkt::new("198.19.0.100", 80, PROTO_TCP).sport(42000);
        let ack = syn.clone().established();
        let (action, id) = send(&mut dp, vip, &syn);
        assert_eq!(action, XDP_TX);
        assert_eq!(send(&mut dp, vip, &ack), (XDP_TX, id));
        let (before, sent_before, totals_before) = (own(&dp), sent(&dp, id), totals(&dp));
        assert_eq!(sent_before.tx.packets, 2, "{sent_before:?}");
        assert_eq!(
            sent_before.hits, 1,
            "the SYN picked, the ACK hit: {sent_before:?}"
        );
        for _ in 0..10 {
            assert_eq!(send(&mut dp, vip, &ack), (XDP_TX, id));
        }
        // Ten hits: no outcome, VIP, flow or other backend counter moved, only the backend's
        // sent entry, by ten packets of the frame's length, ten hits.
        assert_eq!(own(&dp), before);
        let s = sent(&dp, id);
        let len = ack.build().len() as u64;
        assert_eq!(s.tx.packets, sent_before.tx.packets + 10, "{s:?}");
        assert_eq!(s.tx.bytes, sent_before.tx.bytes + 10 * len, "{s:?}");
        assert_eq!(s.hits, sent_before.hits + 10, "{s:?}");
        assert_eq!(s.redirect, Traffic::default());
        // The totals count them all the same.
        let (tx, vip0, hits) = totals_before;
        assert_eq!(totals(&dp), (tx + 10, vip0 + 10, hits + 10));
        assert_eq!(dp.backend_totals(id).unwrap().packets, 12);

        // A packet not sent (no backend left in the ring) is counted where it always was.
        let no_one = vec![lb_common::NO_BACKEND; RING as usize];
        dp.set_vip(0, vip.served.key, &no_one, false, 0).unwrap();
        let fresh = Pkt::new("198.19.0.100", 80, PROTO_TCP).sport(42001);
        assert_eq!(send(&mut dp, vip, &fresh).0, XDP_DROP);
        let after = own(&dp);
        assert_eq!(after.0.packets, before.0.packets + 1, "the drop's outcome");
        assert_eq!(after.1.packets, before.1.packets + 1, "the VIP's");
        assert_eq!(dp.counts().unwrap().vip(0).packets, vip0 + 11);
    });
}

#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn totals_keep_what_removed_backends_were_sent() {
    let env = env();
    let tmp = TempDir::new("counters");
    env.ns.run(|| {
        let load = || load_pinned(&tmp.pin_dir(), "load xdp_lb");
        let mut dp = load();
        let vips = program(&mut dp);
        let vip = &vips[0];
        // Flows over all three backends, each with a hit.
        let mut used = std::collections::BTreeMap::new();
        for port in 43000..43030 {
            let syn = Pkt::new("198.19.0.100", 80, PROTO_TCP).sport(port);
            let (_, id) = send(&mut dp, vip, &syn);
            assert_eq!(send(&mut dp, vip, &syn.clone().established()), (XDP_TX, id));
            *used.entry(id).or_insert(0u64) += 2;
        }
        assert_eq!(used.len(), 3, "{used:?}");
        let start = totals(&dp);
        assert_eq!(start, (60, 60, 30));
        let (&gone, &its) = used.iter().next().unwrap();
        assert_eq!(sent(&dp, gone).tx.packets, its);

        // Removed: its entry cleared, marked retiring with its VIP, its counts still its VIP's.
        dp.clear_backends(&[gone]).unwrap();
        assert_eq!(dp.backend_totals(gone).unwrap().packets, its);
        assert_eq!(totals(&dp), start, "removed");
        // Loaded anew over the pinned maps before it was retired: the mark is pinned too.
        drop(dp);
        let mut dp = load();
        assert_eq!(totals(&dp), start, "loaded anew, not retired yet");
        // Retired (once no program run can count for it): its sent counts moved into the
        // pinned retired totals.
        assert_eq!(dp.retire_backends().unwrap(), 1);
        assert_eq!(dp.retire_backends().unwrap(), 0, "retired once");
        assert_eq!(sent(&dp, gone), Sent::default());
        assert_eq!(dp.backend_totals(gone).unwrap().packets, 0);
        assert_eq!(totals(&dp), start, "retired");
        // Its id given again (zeroed for its new backend): the totals stay.
        dp.reset_backend_counters(gone).unwrap();
        assert_eq!(totals(&dp), start, "id given again");
        // Loaded anew again: the retired totals are pinned.
        drop(dp);
        let mut dp = load();
        assert_eq!(totals(&dp), start, "loaded anew");
        // More traffic adds to them.
        let vips = program(&mut dp);
        let syn = Pkt::new("198.19.0.100", 80, PROTO_TCP).sport(43100);
        assert_eq!(send(&mut dp, &vips[0], &syn).0, XDP_TX);
        assert_eq!(totals(&dp), (61, 61, 30));
        // A VIP id given to another VIP starts from nothing: its removed backends' too.
        let live: u64 = vips[0]
            .backends
            .iter()
            .map(|b| dp.backend_totals(b.0).unwrap().packets)
            .sum();
        dp.reset_vip_counters(0).unwrap();
        assert_eq!(dp.counts().unwrap().vip(0).packets, live);
        assert!(live < 61, "{live}");
    });
}
