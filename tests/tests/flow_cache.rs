//! The flow cache in front of the flow table, through BPF_PROG_TEST_RUN on the real loaded
//! `xdp_lb`: a flow's second packet copies its table entry into the cache, later packets read
//! it there; a cached flow keeps its backend over a ring change, moves when that backend goes
//! down, and meets its new pick after a SYN re-picks it. (The algorithm against a reference
//! model: `lb-common/tests/flow_cache_model.rs`; an ACL change reaching a cached flow:
//! `protection::acls_admit_by_the_longest_prefix`.)
use aya::maps::Array;
use lb::dataplane::{self, Dataplane, nix_ifindex};
use lb_common::{
    BACKEND_UP, FAMILY_V4, FlowCacheEntry, FlowKey, PROTO_TCP, flow_cache_index, flow_table_hash,
    map_names, program_names,
};
use lb_tests::fixture::*;

/// Sends `p`: the action and, for XDP_TX, the next hop's MAC (which backend).
fn send(dp: &mut Dataplane, p: &Pkt) -> (u32, [u8; 6]) {
    let ifindex = nix_ifindex("eth0").unwrap();
    let (action, out) = test_run(dp, ifindex, &p.build());
    (action, out[..6].try_into().unwrap())
}

/// The flow table's key of a fixture packet to VIP 0 from the fixtures' client.
fn key(sport: u16) -> FlowKey {
    let mut k = FlowKey {
        proto: PROTO_TCP,
        family: FAMILY_V4,
        ..FlowKey::default()
    };
    k.src[..4].copy_from_slice(&CLIENT4);
    k.dst[..4].copy_from_slice(&v4("198.19.0.100"));
    k.ports[..2].copy_from_slice(&sport.to_be_bytes());
    k.ports[2..].copy_from_slice(&80u16.to_be_bytes());
    k
}

fn cache(dp: &mut Dataplane) -> Array<&mut aya::maps::MapData, FlowCacheEntry> {
    Array::try_from(dp.map_mut(map_names::FLOW_CACHE).unwrap()).unwrap()
}

/// The backend the cache holds for flow `sport`, if it holds the flow.
fn cached(dp: &mut Dataplane, sport: u16) -> Option<u32> {
    let h = flow_table_hash(&key(sport));
    let e = cache(dp).get(&flow_cache_index(h), 0).unwrap();
    FlowCacheEntry::tag_is(e.tag, h).then_some(e.tag as u32)
}

/// The next hop's MAC of VIP `vip`'s backend `id`, and the backend whose MAC is `m`.
fn mac_of_backend(vip: &Vip, id: u32) -> [u8; 6] {
    vip.backends.iter().find(|b| b.0 == id).unwrap().2
}

fn backend_of_mac(vip: &Vip, m: [u8; 6]) -> u32 {
    vip.backends.iter().find(|b| b.2 == m).unwrap().0
}

#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn a_cached_flow_keeps_its_backend_over_a_ring_change_and_moves_when_it_goes_down() {
    let env = env();
    env.ns.run(|| {
        let mut dp = Dataplane::load(program_names::LB).expect("load xdp_lb");
        let vips = program(&mut dp);
        let vip = &vips[0];
        let (mac, id_of) = (|id| mac_of_backend(vip, id), |m| backend_of_mac(vip, m));
        let syn = Pkt::new("198.19.0.100", 80, PROTO_TCP).sport(41000);
        let ack = syn.clone().established();
        let (action, m) = send(&mut dp, &syn);
        assert_eq!(action, XDP_TX);
        let first = id_of(m);
        assert_eq!(cached(&mut dp, 41000), None, "a SYN only records");
        assert_eq!(send(&mut dp, &ack), (XDP_TX, mac(first)));
        assert_eq!(
            cached(&mut dp, 41000),
            Some(first),
            "a hit in the table is copied"
        );
        let hits = dp.flow_counters().unwrap().1;
        for _ in 0..5 {
            assert_eq!(send(&mut dp, &ack), (XDP_TX, mac(first)));
        }
        assert_eq!(
            dp.flow_counters().unwrap().1,
            hits + 5,
            "cached hits count as hits"
        );

        // Every slot of the ring names another backend: the established flow stays.
        let other = vip
            .backends
            .iter()
            .map(|b| b.0)
            .find(|&b| b != first)
            .unwrap();
        dp.set_vip(0, vip.served.key, &vec![other; RING as usize], false, 0)
            .unwrap();
        assert_eq!(send(&mut dp, &ack), (XDP_TX, mac(first)), "ring change");
        // A SYN of the same 5-tuple (the port reused) takes today's ring, and so do the
        // packets after it: the cache forgot the old pick when the table took the new one.
        assert_eq!(send(&mut dp, &syn), (XDP_TX, mac(other)));
        assert_eq!(
            cached(&mut dp, 41000),
            None,
            "the new pick forgets the cached one"
        );
        assert_eq!(send(&mut dp, &ack), (XDP_TX, mac(other)), "after the SYN");
        assert_eq!(send(&mut dp, &ack), (XDP_TX, mac(other)), "from the cache");
        assert_eq!(cached(&mut dp, 41000), Some(other));

        // Its backend goes down (the ring rebuilt without it): the flow moves at once.
        let third = vip
            .backends
            .iter()
            .map(|b| b.0)
            .find(|&b| b != first && b != other)
            .unwrap();
        let (_, addr, _, _) = *vip.backends.iter().find(|b| b.0 == other).unwrap();
        dp.set_backend(other, addr, vip.served, 0, Default::default())
            .unwrap();
        dp.set_vip(0, vip.served.key, &vec![third; RING as usize], false, 0)
            .unwrap();
        assert_eq!(send(&mut dp, &ack), (XDP_TX, mac(third)), "backend down");
        assert_eq!(send(&mut dp, &ack), (XDP_TX, mac(third)));
        assert_eq!(cached(&mut dp, 41000), Some(third));
    });
}

/// The cache is read before the table: an entry written by hand that names another backend
/// of the VIP takes the flow there, as long as that backend is up; a load starts it empty.
#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn the_cache_is_read_before_the_table_and_starts_empty() {
    let env = env();
    env.ns.run(|| {
        let mut dp = Dataplane::load(program_names::LB).expect("load xdp_lb");
        let vips = program(&mut dp);
        let vip = &vips[0];
        let (mac, id_of) = (|id| mac_of_backend(vip, id), |m| backend_of_mac(vip, m));
        let syn = Pkt::new("198.19.0.100", 80, PROTO_TCP).sport(42000);
        let ack = syn.clone().established();
        let first = id_of(send(&mut dp, &syn).1);
        assert_eq!(send(&mut dp, &ack), (XDP_TX, mac(first)));
        let (other, addr, _, _) = *vip.backends.iter().find(|b| b.0 != first).unwrap();
        let h = flow_table_hash(&key(42000));
        let forged = FlowCacheEntry::new(h, other, 7, dataplane::coarse_now());
        cache(&mut dp).set(flow_cache_index(h), forged, 0).unwrap();
        assert_eq!(
            send(&mut dp, &ack),
            (XDP_TX, mac(other)),
            "read from the cache"
        );
        // That backend down: the cache's word is not taken, the table's is (and copied).
        dp.set_backend(other, addr, vip.served, 0, Default::default())
            .unwrap();
        assert_eq!(send(&mut dp, &ack), (XDP_TX, mac(first)), "the table's");
        assert_eq!(cached(&mut dp, 42000), Some(first));
        dp.set_backend(other, addr, vip.served, BACKEND_UP, Default::default())
            .unwrap();
        cache(&mut dp).set(flow_cache_index(h), forged, 0).unwrap();
        assert_eq!(cached(&mut dp, 42000), Some(other));
        drop(dp);
        // A load wipes the cache (here a fresh map; a pinned one is wiped the same way).
        let mut dp = Dataplane::load(program_names::LB).expect("load xdp_lb");
        assert_eq!(cached(&mut dp, 42000), None);
    });
}
