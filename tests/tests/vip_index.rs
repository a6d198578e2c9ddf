//! The VIP index (`lb_common::vip_index`), through BPF_PROG_TEST_RUN on the real loaded
//! `xdp_lb`: the program finds VIPs in the array the agent lays out, not in the hash map; a
//! ring or flags change reaches it at once; a VIP added where a layout would wait is found in
//! the hash map until the agent settles; the most VIPs an instance serves, fragments' entries
//! too, each find their own; and a load over pinned maps without an index lays one out.
use aya::maps::HashMap;
use lb::dataplane::{self, Dataplane, nix_ifindex};
use lb_common::{
    Counter, MAX_VIPS, PROTO_TCP, PROTO_UDP, VipKey, VipValue, map_names, program_names,
};
use lb_tests::{TempDir, fixture::*};

/// Sends `p`: the action, the outcome's counter and the backend its next hop's MAC names.
fn send(dp: &mut Dataplane, vip: &Vip, p: &Pkt) -> (u32, Counter, u32) {
    let before = dp.outcomes().unwrap();
    let (action, out) = test_run(dp, nix_ifindex("eth0").unwrap(), &p.build());
    let after = dp.outcomes().unwrap();
    let counter = before
        .iter()
        .zip(&after)
        .find(|(b, a)| a.1.packets > b.1.packets)
        .map(|(_, a)| a.0)
        .expect("an outcome counted");
    let mac: [u8; 6] = out[..6].try_into().unwrap();
    let id = vip
        .backends
        .iter()
        .find(|b| b.2 == mac)
        .map_or(u32::MAX, |b| b.0);
    (action, counter, id)
}

fn vips_map(dp: &mut Dataplane) -> HashMap<&mut aya::maps::MapData, VipKey, VipValue> {
    HashMap::try_from(dp.map_mut(map_names::VIPS).unwrap()).unwrap()
}

#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn vips_are_found_in_the_index_not_the_hash_map() {
    let env = env();
    env.ns.run(|| {
        let mut dp = Dataplane::load(program_names::LB).expect("load xdp_lb");
        let vips = program(&mut dp);
        assert!(dp.vip_index_live().unwrap());
        // A new flow each (an established one's packets need no VIP lookup).
        let tcp = |port| Pkt::new("198.19.0.100", 80, PROTO_TCP).sport(port);
        let udp = |port| Pkt::new("198.19.0.100", 53, PROTO_UDP).sport(port);
        let any = |port| Pkt::new("198.19.0.101", 8080, PROTO_TCP).sport(port);
        for (i, (p, vip)) in [
            (tcp(5000), &vips[0]),
            (udp(5010), &vips[1]),
            (any(5020), &vips[4]),
        ]
        .iter()
        .enumerate()
        {
            assert_eq!(send(&mut dp, vip, p).1, Counter::Tx, "packet {i}");
        }
        // The hash map emptied behind the agent's back: the index still answers, every port's
        // entry included.
        let keys: Vec<VipKey> = vips_map(&mut dp).keys().map(|k| k.unwrap()).collect();
        assert!(keys.len() >= 8, "{keys:?}");
        for k in &keys {
            vips_map(&mut dp).remove(k).unwrap();
        }
        for (i, (p, vip)) in [
            (tcp(5001), &vips[0]),
            (udp(5011), &vips[1]),
            (any(5021), &vips[4]),
        ]
        .iter()
        .enumerate()
        {
            assert_eq!(send(&mut dp, vip, p).1, Counter::Tx, "index, packet {i}");
        }
        // Without the index, the program asks the hash map, which holds nothing now.
        dp.set_vip_index_live(false).unwrap();
        for (i, (p, vip)) in [
            (tcp(5002), &vips[0]),
            (udp(5012), &vips[1]),
            (any(5022), &vips[4]),
        ]
        .iter()
        .enumerate()
        {
            assert_eq!(
                send(&mut dp, vip, p).1,
                Counter::PassNotVip,
                "hash map, packet {i}"
            );
        }
    });
}

#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn ring_and_flag_changes_reach_the_index() {
    let env = env();
    env.ns.run(|| {
        let mut dp = Dataplane::load(program_names::LB).expect("load xdp_lb");
        let vips = program(&mut dp);
        let vip = &vips[0];
        let ids: Vec<u32> = vip.backends.iter().map(|b| b.0).collect();
        // Each ring names one backend; every new flow after a change goes to it (each change
        // one store of the VIP's packed value: none waits).
        for (round, &b) in ids.iter().chain(&ids).enumerate() {
            dp.set_vip(0, vip.served.key, &vec![b; RING as usize], false, 0)
                .unwrap();
            for port in 0..8 {
                let p =
                    Pkt::new("198.19.0.100", 80, PROTO_TCP).sport(6000 + 100 * round as u16 + port);
                let (action, _, to) = send(&mut dp, vip, &p);
                assert_eq!((action, to), (XDP_TX, b), "round {round}");
            }
        }
        // Flags: an ACL that denies by default (and no entry that allows) drops a new flow.
        dp.set_vip_flags(
            &vip.served.key,
            lb_common::VIP_ACL | lb_common::VIP_ACL_DEFAULT_DENY,
        )
        .unwrap();
        let p = Pkt::new("198.19.0.100", 80, PROTO_TCP).sport(7000);
        assert_eq!(send(&mut dp, vip, &p).1, Counter::DropAcl);
        dp.set_vip_flags(&vip.served.key, 0).unwrap();
        let p = Pkt::new("198.19.0.100", 80, PROTO_TCP).sport(7001);
        assert_eq!(send(&mut dp, vip, &p).1, Counter::Tx);
    });
}

#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn every_vip_an_instance_serves_finds_its_own() {
    let env = env();
    env.ns.run(|| {
        let mut dp = Dataplane::load(program_names::LB).expect("load xdp_lb");
        let vips = program(&mut dp);
        let first = vips.len() as u32;
        let backends: Vec<u32> = vips[0].backends.iter().map(|b| b.0).collect();
        // Every id left, each with its fragments' entry too: the VIP map's most keys.
        let extra: Vec<(u32, VipKey, u32)> = (first..MAX_VIPS)
            .map(|id| {
                let addr = format!("198.19.1.{id}").parse().unwrap();
                let proto = if id % 2 == 0 { PROTO_TCP } else { PROTO_UDP };
                let b = backends[id as usize % backends.len()];
                (id, dataplane::vip_key(addr, 80, proto), b)
            })
            .collect();
        for (id, key, b) in &extra {
            dp.set_vip(*id, *key, &vec![*b; RING as usize], true, 0)
                .unwrap();
        }
        let keys = vips_map(&mut dp).keys().count();
        assert!(keys >= 100, "{keys} keys of {} VIPs", MAX_VIPS - first);
        let check = |dp: &mut Dataplane, gone: &dyn Fn(u32) -> bool| {
            for (id, key, b) in &extra {
                let p = Pkt::new(&format!("198.19.1.{id}"), 80, key.proto).sport(9000 + *id as u16);
                let (_, counter, to) = send(dp, &vips[0], &p);
                if gone(*id) {
                    assert_eq!(counter, Counter::PassNotVip, "VIP {id} removed");
                } else {
                    assert_eq!((counter, to), (Counter::Tx, *b), "VIP {id}");
                }
            }
            // The fixtures' own VIPs are still found.
            let p = Pkt::new("198.19.0.100", 80, PROTO_TCP).sport(9999);
            assert_eq!(send(dp, &vips[0], &p).1, Counter::Tx);
        };
        check(&mut dp, &|_| false);
        // Half of them removed: the index laid out anew without them.
        for (id, key, _) in extra.iter().filter(|(id, _, _)| id % 3 == 0) {
            let _ = id;
            dp.remove_vip(key).unwrap();
        }
        check(&mut dp, &|id| id % 3 == 0);
    });
}

#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn a_load_over_pins_without_an_index_lays_one_out() {
    let env = env();
    let tmp = TempDir::new("vipindex");
    let maps = tmp.pin_dir().join("maps");
    env.ns.run(|| {
        let load = || load_pinned(&tmp.pin_dir(), "load xdp_lb");
        let mut dp = load();
        let vips = program(&mut dp);
        drop(dp);
        // As an older release left its pins: VIPs, rings, backends; no index.
        for name in [
            map_names::VIP_INDEX,
            map_names::VIP_VALUES,
            map_names::VIP_INDEX_CTL,
        ] {
            std::fs::remove_file(maps.join(name)).unwrap();
        }
        let mut dp = load();
        assert!(dp.vip_index_live().unwrap(), "no index laid out at load");
        let p = Pkt::new("198.19.0.100", 80, PROTO_TCP).sport(8000);
        assert_eq!(send(&mut dp, &vips[0], &p).1, Counter::Tx);
        let p = Pkt::new("198.19.0.101", 4444, PROTO_TCP).sport(8001);
        assert_eq!(send(&mut dp, &vips[4], &p).1, Counter::Tx);
    });
}

#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn a_vip_added_before_its_layout_is_found_in_the_hash_map_until_settled() {
    let env = env();
    env.ns.run(|| {
        let mut dp = Dataplane::load(program_names::LB).expect("load xdp_lb");
        let vips = program(&mut dp);
        let b = vips[0].backends[0].0;
        // The fixtures' VIPs were laid out just now: a new layout would wait for a grace
        // period, so the new VIP waits, marked pending.
        let key = dataplane::vip_key("198.19.2.1".parse().unwrap(), 80, PROTO_TCP);
        let id = vips.len() as u32;
        let t = std::time::Instant::now();
        dp.set_vip(id, key, &vec![b; RING as usize], false, 0)
            .unwrap();
        assert!(
            t.elapsed() < std::time::Duration::from_millis(5),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(dp.vip_index_state().unwrap(), (true, true));
        let syn = |port| Pkt::new("198.19.2.1", 80, PROTO_TCP).sport(port);
        assert_eq!(send(&mut dp, &vips[0], &syn(100)), (XDP_TX, Counter::Tx, b));
        // It is the hash map that answered: without its entry, nothing does.
        let value = vips_map(&mut dp).get(&key, 0).unwrap();
        vips_map(&mut dp).remove(&key).unwrap();
        assert_eq!(send(&mut dp, &vips[0], &syn(101)).1, Counter::PassNotVip);
        vips_map(&mut dp).insert(key, value, 0).unwrap();
        // Settled: laid out, nothing pending, and the index answers without the hash map.
        dp.settle_vip_index().unwrap();
        assert_eq!(dp.vip_index_state().unwrap(), (true, false));
        vips_map(&mut dp).remove(&key).unwrap();
        assert_eq!(send(&mut dp, &vips[0], &syn(102)), (XDP_TX, Counter::Tx, b));
    });
}
