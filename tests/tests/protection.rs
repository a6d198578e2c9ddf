//! Edge protection through BPF_PROG_TEST_RUN on the real loaded `xdp_lb`: established flows a
//! flood cannot evict, the VIPs' source ACLs (IPv4 and IPv6 prefixes, nested), the per-source
//! new-flow limit, and the drop of traffic to a VIP address that no VIP balances.
use lb::{
    config::{Acl, Limits},
    dataplane::{self, Dataplane, nix_ifindex, vip_flags},
};
use lb_common::{Counter, PROTO_TCP, PROTO_UDP, program_names};
use lb_tests::fixture::*;

fn count(dp: &Dataplane, c: Counter) -> u64 {
    dp.outcomes()
        .unwrap()
        .into_iter()
        .find(|(k, _)| *k == c)
        .map_or(0, |(_, t)| t.packets)
}

fn nets(list: &[&str]) -> Vec<ipnet::IpNet> {
    list.iter().map(|n| n.parse().unwrap()).collect()
}

/// Sends `p`: the action and, for XDP_TX, the next hop's MAC (which backend).
fn send(dp: &mut Dataplane, p: &Pkt) -> (u32, [u8; 6]) {
    let ifindex = nix_ifindex("eth0").unwrap();
    let (action, out) = test_run(dp, ifindex, &p.build());
    (action, out[..6].try_into().unwrap())
}

/// A table of 16 slots (four sets of four) holding six established flows takes 2,000 SYNs of
/// new flows, 125 times its size: every established flow keeps its entry, and so its backend
/// across a ring change made after the flood. Without probation the flood evicts them and
/// the ring change moves them.
#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn a_flood_of_new_flows_evicts_no_established_one() {
    let env = env();
    env.ns.run(|| {
        let mut dp =
            Dataplane::load_sized(dataplane::OBJECT, program_names::LB, 16).expect("load xdp_lb");
        let vips = program(&mut dp);
        let tcp = |port: u16| Pkt::new("198.19.0.100", 80, PROTO_TCP).sport(port);
        // Established: a SYN, then an ACK (the second packet promotes the entry).
        let established: Vec<u16> = (0..6).map(|i| 21000 + i).collect();
        let mut backends = Vec::new();
        for &p in &established {
            let (a, first) = send(&mut dp, &tcp(p));
            assert_eq!(a, XDP_TX);
            let (a, again) = send(&mut dp, &tcp(p).established());
            assert_eq!((a, again), (XDP_TX, first));
            backends.push(first);
        }
        let hits = dp.flow_counters().unwrap().1;
        for i in 0..2000u16 {
            let p = tcp(30000 + i).from(&format!("198.19.{}.{}", 128 + i / 256, i % 256));
            assert_eq!(send(&mut dp, &p).0, XDP_TX);
        }
        // Every new flow now goes to the third backend.
        let key = dataplane::vip_key("198.19.0.100".parse().unwrap(), 80, PROTO_TCP);
        let third = vips[0].backends[2];
        dp.set_vip(0, key, &vec![third.0; RING as usize], false, 0)
            .unwrap();
        for (&p, want) in established.iter().zip(&backends) {
            let (a, got) = send(&mut dp, &tcp(p).established());
            assert_eq!((a, got), (XDP_TX, *want), "established flow {p} moved");
        }
        assert_eq!(
            dp.flow_counters().unwrap().1,
            hits + established.len() as u64,
            "every established flow's packet a hit"
        );
        assert_eq!(
            send(&mut dp, &tcp(40000)).1,
            third.2,
            "a new flow takes the new ring"
        );
    });
}

/// A table too small for its live flows: with one set of four established flows, a fifth
/// flow is not recorded (counted), still reaches the ring's backend, and evicts none.
#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn a_table_full_of_established_flows_records_no_new_one_and_counts_it() {
    let env = env();
    env.ns.run(|| {
        let mut dp =
            Dataplane::load_sized(dataplane::OBJECT, program_names::LB, 4).expect("load xdp_lb");
        program(&mut dp);
        let udp = |port: u16| Pkt::new("198.19.0.100", 53, PROTO_UDP).sport(port);
        let mut backends = Vec::new();
        for p in 0..4u16 {
            let (_, first) = send(&mut dp, &udp(5000 + p));
            let (_, again) = send(&mut dp, &udp(5000 + p));
            assert_eq!(first, again);
            backends.push(first);
        }
        assert_eq!(dp.flow_table().unwrap().unrecorded, 0);
        for i in 0..3u16 {
            assert_eq!(send(&mut dp, &udp(6000 + i)).0, XDP_TX);
        }
        let f = dp.flow_table().unwrap();
        assert_eq!((f.entries, f.unrecorded), (4, 3), "{f:?}");
        let hits = f.hits;
        for (p, want) in (0..4u16).zip(&backends) {
            assert_eq!(send(&mut dp, &udp(5000 + p)).1, *want);
        }
        assert_eq!(
            dp.flow_table().unwrap().hits,
            hits + 4,
            "the four kept their entries"
        );
    });
}

/// ACLs, IPv4 and IPv6, nested: the longest prefix that holds the source decides, and with
/// any `allow` a source no prefix holds is denied. Denied packets are dropped and counted
/// (`drop_acl`) whether they open a flow or belong to one the table holds.
#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn acls_admit_by_the_longest_prefix() {
    let env = env();
    env.ns.run(|| {
        let mut dp = Dataplane::load(program_names::LB).expect("load xdp_lb");
        program(&mut dp);
        let v4 = Acl {
            allow: nets(&["198.18.0.0/16", "198.18.7.128/25"]),
            deny: nets(&["198.18.7.0/24", "198.18.9.9/32"]),
        };
        let v6 = Acl {
            allow: vec![],
            deny: nets(&["fd00:7::/32", "fd00:7:1::/48"]),
        };
        let key4 = dataplane::vip_key("198.19.0.100".parse().unwrap(), 80, PROTO_TCP);
        let key6 = dataplane::vip_key("fd00:19::100".parse().unwrap(), 80, PROTO_TCP);
        // An established flow from a source the ACL will deny, before the ACL.
        let before = Pkt::new("198.19.0.100", 80, PROTO_TCP)
            .sport(33000)
            .from("198.18.7.1");
        assert_eq!(send(&mut dp, &before).0, XDP_TX);
        assert_eq!(send(&mut dp, &before.clone().established()).0, XDP_TX);
        dp.set_acl(0, &v4).unwrap();
        dp.set_vip_flags(&key4, vip_flags(&v4, None)).unwrap();
        dp.set_acl(2, &v6).unwrap();
        dp.set_vip_flags(&key6, vip_flags(&v6, None)).unwrap();
        assert_eq!(dp.forget_denied_flows(&key4, &v4).unwrap(), 1);
        let cases = [
            ("198.18.1.1", XDP_TX),
            ("198.18.7.1", XDP_DROP),
            ("198.18.7.200", XDP_TX),
            ("198.18.9.9", XDP_DROP),
            ("198.19.200.1", XDP_DROP),
            ("fd00:8::1", XDP_TX),
            ("fd00:7::1", XDP_DROP),
            ("fd00:7:1::1", XDP_DROP),
        ];
        let dropped = count(&dp, Counter::DropAcl);
        for (i, (src, want)) in cases.iter().enumerate() {
            let dst = if src.contains(':') {
                "fd00:19::100"
            } else {
                "198.19.0.100"
            };
            let p = Pkt::new(dst, 80, PROTO_TCP)
                .sport(34000 + i as u16)
                .from(src);
            assert_eq!(send(&mut dp, &p).0, *want, "SYN from {src}");
            let acl = if src.contains(':') { &v6 } else { &v4 };
            assert_eq!(
                acl.admits(src.parse().unwrap()),
                *want == XDP_TX,
                "{src}: agent's view"
            );
        }
        // The flow established before the ACL: forgotten, so denied now.
        assert_eq!(send(&mut dp, &before.clone().established()).0, XDP_DROP);
        assert_eq!(count(&dp, Counter::DropAcl), dropped + 6);
        // Another VIP, without an ACL, admits the denied source.
        let other = Pkt::new("198.19.0.100", 53, PROTO_UDP).from("198.18.7.1");
        assert_eq!(send(&mut dp, &other).0, XDP_TX);
    });
}

/// A limit of 100 new flows a second with a burst of 10: 50 SYNs at once from one source get
/// 10 through; another source still gets its own; an admitted flow's packets are never limited.
#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn the_new_flow_limit_is_per_source_and_spares_established_flows() {
    let env = env();
    env.ns.run(|| {
        let mut dp = Dataplane::load(program_names::LB).expect("load xdp_lb");
        program(&mut dp);
        let key = dataplane::vip_key("198.19.0.100".parse().unwrap(), 80, PROTO_TCP);
        let limits = Limits {
            new_flows_per_source: 100,
            burst: 10,
        };
        dp.set_limit(0, Some(limits)).unwrap();
        dp.set_vip_flags(&key, vip_flags(&Acl::default(), Some(limits)))
            .unwrap();
        let syn = |src: &str, port: u16| {
            Pkt::new("198.19.0.100", 80, PROTO_TCP)
                .sport(port)
                .from(src)
        };
        let admitted: Vec<u16> = (0..50u16)
            .filter(|&i| send(&mut dp, &syn("198.18.3.3", 35000 + i)).0 == XDP_TX)
            .map(|i| 35000 + i)
            .collect();
        // The burst, and perhaps a flow or two the clock's ticks refilled meanwhile.
        assert!(
            (10..=12).contains(&admitted.len()),
            "{} of 50 admitted",
            admitted.len()
        );
        assert!(count(&dp, Counter::DropLimit) >= 38);
        assert_eq!(send(&mut dp, &syn("198.18.4.4", 36000)).0, XDP_TX);
        for _ in 0..100 {
            let p = syn("198.18.3.3", admitted[0]).established();
            assert_eq!(
                send(&mut dp, &p).0,
                XDP_TX,
                "an established flow was limited"
            );
        }
        // IPv6 sources share a bucket per /64.
        let key6 = dataplane::vip_key("fd00:19::100".parse().unwrap(), 80, PROTO_TCP);
        dp.set_limit(2, Some(limits)).unwrap();
        dp.set_vip_flags(&key6, vip_flags(&Acl::default(), Some(limits)))
            .unwrap();
        let through = (0..30u16)
            .filter(|&i| {
                let p = Pkt::new("fd00:19::100", 80, PROTO_TCP)
                    .sport(37000 + i)
                    .from(&format!("fd00:3:3:3::{:x}", i + 1));
                send(&mut dp, &p).0 == XDP_TX
            })
            .count();
        assert!((10..=12).contains(&through), "{through} of 30 from one /64");
    });
}

/// `agent.unbalanced = "drop"`: to a VIP address, another port, another IP protocol and a
/// fragment no VIP takes are dropped and counted; ICMP and other addresses pass as before.
/// With `pass`, all of them pass.
#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn unbalanced_traffic_to_a_vip_address_is_dropped_when_asked() {
    let env = env();
    env.ns.run(|| {
        let mut dp = Dataplane::load(program_names::LB).expect("load xdp_lb");
        program(&mut dp);
        let other_port = Pkt::new("198.19.0.100", 81, PROTO_TCP).build();
        let other_port6 = Pkt::new("fd00:19::100", 8080, PROTO_UDP).build();
        // GRE (47) to the VIP address: the TCP frame with its protocol changed.
        let gre = rewrite_v4(&other_port, |ip| {
            ip.protocol = etherparse::IpNumber(47);
        });
        // A fragment to the TCP VIP's address (no VIP takes TCP fragments).
        let fragment = rewrite_v4(&Pkt::new("198.19.0.100", 80, PROTO_TCP).build(), |ip| {
            ip.more_fragments = true;
        });
        let not_vip = Pkt::new("198.19.0.250", 80, PROTO_TCP).build();
        let ifindex = nix_ifindex("eth0").unwrap();
        let all = [
            (&other_port, Counter::PassNotVip),
            (&other_port6, Counter::PassNotVip),
            (&gre, Counter::PassNotVip),
            (&fragment, Counter::PassFragment),
        ];
        for (frame, _) in &all {
            assert_eq!(test_run(&mut dp, ifindex, frame).0, XDP_PASS);
        }
        dp.set_drop_unbalanced(true).unwrap();
        let before = count(&dp, Counter::DropUnbalanced);
        for (i, (frame, _)) in all.iter().enumerate() {
            assert_eq!(test_run(&mut dp, ifindex, frame).0, XDP_DROP, "case {i}");
        }
        assert_eq!(
            count(&dp, Counter::DropUnbalanced),
            before + all.len() as u64
        );
        assert_eq!(test_run(&mut dp, ifindex, &not_vip).0, XDP_PASS);
        // The VIP itself is balanced as ever.
        let vip = Pkt::new("198.19.0.100", 80, PROTO_TCP).build();
        assert_eq!(test_run(&mut dp, ifindex, &vip).0, XDP_TX);
        dp.set_drop_unbalanced(false).unwrap();
        assert_eq!(test_run(&mut dp, ifindex, &other_port).0, XDP_PASS);
    });
}
