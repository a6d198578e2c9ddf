//! State the program keeps between packets, through BPF_PROG_TEST_RUN on the real loaded
//! `xdp_lb`: ring flips, the flow table (hits, moves, UDP idle, eviction) and the next hop
//! cached in a backend's entry.
use lb::dataplane::{self, Dataplane, nix_ifindex};
use lb_common::{BACKEND_UP, Counter, PROTO_TCP, PROTO_UDP, program_names};
use lb_tests::fixture::*;

/// A ring change goes into the VIP's idle ring and then one update of the VIP entry flips to
/// it: the program follows the flip at once, and flipping back restores the old choices.
#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn a_ring_update_is_one_flip() {
    let env = env();
    env.ns.run(|| {
        let mut dp = Dataplane::load(program_names::LB).expect("load xdp_lb");
        let vips = program(&mut dp);
        let ifindex = nix_ifindex("eth0").unwrap();
        let key = dataplane::vip_key("198.19.0.100".parse().unwrap(), 80, PROTO_TCP);
        let dmacs = |dp: &mut Dataplane| -> Vec<[u8; 6]> {
            (0..40u16)
                .map(|i| {
                    let (action, out) = test_run(
                        dp,
                        ifindex,
                        &Pkt::new("198.19.0.100", 80, PROTO_TCP)
                            .sport(30000 + i)
                            .build(),
                    );
                    assert_eq!(action, XDP_TX);
                    out[..6].try_into().unwrap()
                })
                .collect()
        };
        assert_eq!(dp.vip(&key).unwrap().map(|v| v.active_ring), Some(0));
        let before = dmacs(&mut dp);
        assert!(
            before.iter().any(|m| *m != before[0]),
            "40 flows all on one backend: {before:?}"
        );

        let only_second = vec![vips[0].backends[1].0; RING as usize];
        dp.set_vip(0, key, &only_second, false, 0).unwrap();
        assert_eq!(dp.vip(&key).unwrap().map(|v| v.active_ring), Some(1));
        assert!(
            dmacs(&mut dp).iter().all(|m| *m == vips[0].backends[1].2),
            "not every flow moved to the one backend"
        );

        dp.set_vip(0, key, &vips[0].ring, false, 0).unwrap();
        assert_eq!(dp.vip(&key).unwrap().map(|v| v.active_ring), Some(0));
        assert_eq!(dmacs(&mut dp), before);
    });
}

/// The flow table: an established flow keeps its backend when the ring changes, a SYN takes
/// the new ring, a flow to a backend that went down moves, and a UDP flow idle longer than the
/// VIP's timeout takes the ring again.
#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn flows_keep_their_backend_until_it_goes() {
    let env = env();
    env.ns.run(|| {
        let mut dp = Dataplane::load(program_names::LB).expect("load xdp_lb");
        let vips = program(&mut dp);
        let ifindex = nix_ifindex("eth0").unwrap();
        let tcp_key = dataplane::vip_key("198.19.0.100".parse().unwrap(), 80, PROTO_TCP);
        let udp_key = dataplane::vip_key("198.19.0.100".parse().unwrap(), 53, PROTO_UDP);
        let send = |dp: &mut Dataplane, p: Pkt| -> [u8; 6] {
            let (action, out) = test_run(dp, ifindex, &p.build());
            assert_eq!(action, XDP_TX);
            out[..6].try_into().unwrap()
        };
        let flows: Vec<u16> = (0..30).map(|i| 20000 + i).collect();
        let tcp = |p: u16| Pkt::new("198.19.0.100", 80, PROTO_TCP).sport(p);
        let udp = |p: u16| Pkt::new("198.19.0.100", 53, PROTO_UDP).sport(p);
        let first: Vec<[u8; 6]> = flows.iter().map(|&p| send(&mut dp, tcp(p))).collect();
        let first_udp: Vec<[u8; 6]> = flows.iter().map(|&p| send(&mut dp, udp(p))).collect();

        // Every new flow now goes to the third backend; established ones stay.
        let (third_id, third_mac) = (vips[0].backends[2].0, vips[0].backends[2].2);
        dp.set_vip(0, tcp_key, &vec![third_id; RING as usize], false, 0)
            .unwrap();
        dp.set_vip(
            1,
            udp_key,
            &vec![vips[1].backends[2].0; RING as usize],
            false,
            0,
        )
        .unwrap();
        let again: Vec<[u8; 6]> = flows
            .iter()
            .map(|&p| send(&mut dp, tcp(p).established()))
            .collect();
        assert_eq!(again, first, "established TCP flows moved with the ring");
        let again_udp: Vec<[u8; 6]> = flows.iter().map(|&p| send(&mut dp, udp(p))).collect();
        assert_eq!(
            again_udp, first_udp,
            "UDP flows within their idle time moved"
        );
        // The first backend goes down: the established flows it held move (to the ring's pick,
        // the third); the others stay where they were.
        let (first_id, first_addr, first_mac, _) = vips[0].backends[0];
        assert!(
            first.contains(&first_mac),
            "no flow on the first backend: {first:?}"
        );
        dp.set_backend(first_id, first_addr, vips[0].served, 0, Default::default())
            .unwrap();
        let moved: Vec<[u8; 6]> = flows
            .iter()
            .map(|&p| send(&mut dp, tcp(p).established()))
            .collect();
        for (now, was) in moved.iter().zip(&first) {
            let want = if *was == first_mac { third_mac } else { *was };
            assert_eq!(*now, want, "after the first backend went down");
        }
        dp.set_backend(
            first_id,
            first_addr,
            vips[0].served,
            BACKEND_UP,
            Default::default(),
        )
        .unwrap();
        let (inserted, _) = dp.flow_counters().unwrap();
        assert!(
            flows.iter().all(|&p| send(&mut dp, tcp(p)) == third_mac),
            "a SYN must take the new ring"
        );
        // A SYN of a 5-tuple the table holds replaces the entry's pick: no entry is added.
        assert_eq!(
            dp.flow_counters().unwrap().0,
            inserted,
            "SYNs of held flows counted as new entries"
        );
        let after_syn: Vec<[u8; 6]> = flows
            .iter()
            .map(|&p| send(&mut dp, tcp(p).established()))
            .collect();
        assert!(
            after_syn.iter().all(|m| *m == third_mac),
            "the SYN's pick is the flow's backend from then on"
        );

        // UDP idle time 0 (kept in the backends' entries, which is where a flow-table hit
        // reads it): every packet finds its entry stale and takes the ring.
        let served = lb::dataplane::ServedVip {
            udp_idle_s: 0,
            ..vips[1].served
        };
        for (id, addr, _, _) in &vips[1].backends {
            dp.set_backend(*id, *addr, served, BACKEND_UP, Default::default())
                .unwrap();
        }
        dp.set_vip(
            1,
            udp_key,
            &vec![vips[1].backends[2].0; RING as usize],
            false,
            0,
        )
        .unwrap();
        let stale: Vec<[u8; 6]> = flows.iter().map(|&p| send(&mut dp, udp(p))).collect();
        assert!(
            stale.iter().all(|m| *m == vips[1].backends[2].2),
            "stale UDP flows must take the ring"
        );
    });
}

/// A full flow table evicts, in each set of four, the flow seen least recently, and says how
/// many.
#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn a_full_flow_table_evicts_and_counts() {
    let env = env();
    env.ns.run(|| {
        let mut dp =
            Dataplane::load_sized(dataplane::OBJECT, program_names::LB, 1024).expect("load xdp_lb");
        program(&mut dp);
        let ifindex = nix_ifindex("eth0").unwrap();
        for i in 0..1500u16 {
            let (action, _) = test_run(
                &mut dp,
                ifindex,
                &Pkt::new("198.19.0.100", 80, PROTO_TCP)
                    .sport(10000 + i)
                    .build(),
            );
            assert_eq!(action, XDP_TX);
        }
        let f = dp.flow_table().unwrap();
        assert_eq!((f.capacity, f.inserted, f.hits), (1024, 1500, 0), "{f:?}");
        assert!(
            f.entries <= 1024 && f.evicted >= 476 && f.entries + f.evicted == 1500,
            "{f:?}"
        );
        // The newest flows are still there: their next packets hit.
        for i in 1490..1500u16 {
            let p = Pkt::new("198.19.0.100", 80, PROTO_TCP)
                .sport(10000 + i)
                .established();
            assert_eq!(test_run(&mut dp, ifindex, &p.build()).0, XDP_TX);
        }
        let f2 = dp.flow_table().unwrap();
        assert_eq!((f2.hits, f2.inserted), (10, 1500), "{f2:?}");
    });
}

/// The agent keeps each backend's next hop in its entry: the program then uses it instead of
/// the kernel's route lookup (here it points out of eth1 with its own MACs, where the route
/// says eth0), and drops and counts a packet too big for its MTU.
#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn a_cached_next_hop_replaces_the_route_lookup() {
    let env = env();
    env.ns.run(|| {
        let mut dp = Dataplane::load(program_names::LB).expect("load xdp_lb");
        let vips = program(&mut dp);
        let ifindex = nix_ifindex("eth0").unwrap();
        let dmac = [0x02, 0, 0, 0, 9, 9];
        let mut hop = lb_common::NextHop {
            ifindex: nix_ifindex("eth1").unwrap(),
            mtu: 1500,
            dmac,
            smac: ETH1_MAC,
        };
        let set = |dp: &mut Dataplane, hop| {
            for (id, addr, _, _) in &vips[0].backends {
                dp.set_backend(*id, *addr, vips[0].served, BACKEND_UP, hop)
                    .unwrap();
            }
        };
        set(&mut dp, hop);
        let p = Pkt::new("198.19.0.100", 80, PROTO_TCP);
        let frame = p.build();
        let (action, out) = test_run(&mut dp, ifindex, &frame);
        assert_eq!(action, XDP_REDIRECT);
        let (_, _, mut want) = encapsulated(&vips[0], &frame, 14, &p);
        want[..6].copy_from_slice(&dmac);
        want[6..12].copy_from_slice(&ETH1_MAC);
        assert_eq!(out, want);

        hop.mtu = 60;
        set(&mut dp, hop);
        let before = dp.outcomes().unwrap()[Counter::DropEncap as usize]
            .1
            .packets;
        assert_eq!(test_run(&mut dp, ifindex, &frame).0, XDP_DROP);
        assert_eq!(
            dp.outcomes().unwrap()[Counter::DropEncap as usize]
                .1
                .packets,
            before + 1
        );
    });
}
