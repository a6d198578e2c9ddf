//! Hash fields and affinity through BPF_PROG_TEST_RUN on the real loaded `xdp_lb`: with
//! `hash = "src"` a client's connections share a backend, sources still spread over the
//! backends, an affinity prefix puts a whole /24 on one backend, `src_dport` splits a client by
//! port, and two balancers loaded alike agree.
use std::collections::{BTreeMap, HashSet};

use lb::{
    config::{Acl, HashFields},
    dataplane::{self, Dataplane, nix_ifindex, vip_flags},
};
use lb_common::{PROTO_TCP, program_names};
use lb_tests::fixture::*;

/// The next hop's MAC (which backend) for a SYN to 198.19.0.100:`dport` from `src`:`sport`.
fn backend(dp: &mut Dataplane, dst: &str, dport: u16, src: &str, sport: u16) -> [u8; 6] {
    let ifindex = nix_ifindex("eth0").unwrap();
    let p = Pkt::new(dst, dport, PROTO_TCP).sport(sport).from(src);
    let (action, out) = test_run(dp, ifindex, &p.build());
    assert_eq!(action, XDP_TX, "from {src}:{sport}");
    out[..6].try_into().unwrap()
}

/// A data path programmed as the fixtures are, the IPv4 TCP VIP (id 0) and the every-port VIP
/// (id 4) hashing `hash` with `prefix`.
fn loaded(hash: HashFields, prefix: Option<u8>) -> Dataplane {
    let mut dp = Dataplane::load(program_names::LB).expect("load xdp_lb");
    program(&mut dp);
    for (addr, port) in [("198.19.0.100", 80), ("198.19.0.101", 0)] {
        let key = dataplane::vip_key(addr.parse().unwrap(), port, PROTO_TCP);
        dp.set_vip_flags(&key, vip_flags(&Acl::default(), None) | hash.flags(prefix))
            .unwrap();
    }
    dp
}

#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn a_source_hash_keeps_a_client_on_one_backend_and_spreads_sources() {
    let env = env();
    env.ns.run(|| {
        let mut dp = loaded(HashFields::Src, None);
        let vip = "198.19.0.100";
        let one: HashSet<[u8; 6]> = (0..50)
            .map(|i| backend(&mut dp, vip, 80, "198.18.7.1", 30000 + i))
            .collect();
        assert_eq!(one.len(), 1, "50 connections of one client on {one:?}");
        let mut spread: BTreeMap<[u8; 6], u32> = BTreeMap::new();
        for i in 0..256u32 {
            let src = format!("198.18.{}.{}", 8 + i / 200, 1 + i % 200);
            *spread
                .entry(backend(&mut dp, vip, 80, &src, 40000))
                .or_default() += 1;
        }
        // Three backends of equal weight: each near a third of 256 sources.
        assert_eq!(spread.len(), 3, "{spread:?}");
        assert!(
            spread.values().all(|&n| (50..=120).contains(&n)),
            "{spread:?}"
        );
        // The default, 5-tuple: one client's connections spread too.
        let mut five = loaded(HashFields::FiveTuple, None);
        let many: HashSet<[u8; 6]> = (0..50)
            .map(|i| backend(&mut five, vip, 80, "198.18.7.1", 30000 + i))
            .collect();
        assert_eq!(
            many.len(),
            3,
            "the 5-tuple hash put 50 connections on {many:?}"
        );
    });
}

#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn an_affinity_prefix_keeps_a_whole_prefix_together_and_balancers_agree() {
    let env = env();
    env.ns.run(|| {
        let mut a = loaded(HashFields::Src, Some(24));
        let mut b = loaded(HashFields::Src, Some(24));
        let vip = "198.19.0.100";
        for net in 8..40u32 {
            let hosts: HashSet<[u8; 6]> = (1..20u32)
                .map(|h| {
                    backend(
                        &mut a,
                        vip,
                        80,
                        &format!("198.18.{net}.{h}"),
                        40000 + h as u16,
                    )
                })
                .collect();
            assert_eq!(hosts.len(), 1, "198.18.{net}.0/24 over {hosts:?}");
        }
        // Another balancer with the same rings and config picks alike.
        for i in 0..256u32 {
            let src = format!("198.18.{}.{}", 8 + i / 200, 1 + i % 200);
            assert_eq!(
                backend(&mut a, vip, 80, &src, 41000),
                backend(&mut b, vip, 80, &src, 42000),
                "{src}"
            );
        }
        // src_dport on the every-port VIP: one client, one backend per port; ports differ.
        let mut sd = loaded(HashFields::SrcDport, None);
        let by_port: HashSet<[u8; 6]> = (0..30u16)
            .map(|p| {
                let first = backend(&mut sd, "198.19.0.101", 1000 + p, "198.18.7.1", 30000);
                assert_eq!(
                    first,
                    backend(&mut sd, "198.19.0.101", 1000 + p, "198.18.7.1", 31000)
                );
                first
            })
            .collect();
        assert!(by_port.len() > 1, "every port on one backend: {by_port:?}");
    });
}

/// Through the agent: 50 connections of one client land on one backend with `hash = "src"`.
#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn through_the_agent_a_clients_connections_share_a_backend() {
    use lb_tests::life::Setup;
    let s = Setup::custom(
        3,
        3,
        |_| {},
        |c| {
            c.replacen(
                "protocol = \"tcp\"\n",
                "protocol = \"tcp\"\nhash = \"src\"\n",
                1,
            )
        },
    );
    let t = s.connects(50);
    assert_eq!(t.ok(), 50, "{t:?}");
    assert_eq!(t.by_server.len(), 1, "{t:?}");
}
