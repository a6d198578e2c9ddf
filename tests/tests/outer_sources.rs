//! Outer sources chosen by the flow hash (`agent.source_v4_prefix`, `source_v6_prefix`),
//! through BPF_PROG_TEST_RUN on the real loaded `xdp_lb`: 256 flows to one backend leave with
//! some 256 distinct outer sources, all in the prefix, none its own address or its broadcast,
//! each flow always the same one; the IPv4 header's checksum right.
use std::{collections::HashSet, net::IpAddr};

use etherparse::{Ipv4Header, Ipv6Header};
use lb::dataplane::{Dataplane, nix_ifindex};
use lb_common::{PROTO_TCP, program_names};
use lb_tests::fixture::*;

/// The outer source of a SYN to `dst`:80 from port `sport`.
fn outer_source(dp: &mut Dataplane, dst: &str, sport: u16) -> IpAddr {
    let ifindex = nix_ifindex("eth0").unwrap();
    let (action, out) = test_run(
        dp,
        ifindex,
        &Pkt::new(dst, 80, PROTO_TCP).sport(sport).build(),
    );
    assert_eq!(action, XDP_TX);
    if dst.contains(':') {
        let (ip, _) = Ipv6Header::from_slice(&out[14..]).unwrap();
        IpAddr::from(ip.source)
    } else {
        let (ip, _) = Ipv4Header::from_slice(&out[14..]).unwrap();
        assert_eq!(
            ip.header_checksum,
            ip.calc_header_checksum(),
            "outer checksum"
        );
        IpAddr::from(ip.source)
    }
}

#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn flows_leave_with_outer_sources_spread_over_the_prefix() {
    let env = env();
    env.ns.run(|| {
        let mut dp = Dataplane::load(program_names::LB).expect("load xdp_lb");
        program(&mut dp);
        let (p4, p6): (ipnet::Ipv4Net, ipnet::Ipv6Net) = (
            "198.18.16.0/20".parse().unwrap(),
            "fd00:18::1:0/112".parse().unwrap(),
        );
        dp.set_source_prefixes(Some(p4), Some(p6)).unwrap();
        for (dst, net) in [
            ("198.19.0.100", ipnet::IpNet::from(p4)),
            ("fd00:19::100", ipnet::IpNet::from(p6)),
        ] {
            let sources: Vec<IpAddr> = (0..256)
                .map(|i| outer_source(&mut dp, dst, 20000 + i))
                .collect();
            let distinct: HashSet<&IpAddr> = sources.iter().collect();
            assert!(
                distinct.len() >= 200,
                "{dst}: {} distinct outer sources",
                distinct.len()
            );
            for s in &sources {
                assert!(net.contains(s), "{s} outside {net}");
                assert!(
                    *s != net.network() && *s != net.broadcast(),
                    "{s}: {net}'s own or broadcast"
                );
            }
            // A flow keeps its outer source (its next packet, a hit, hashes alike).
            for i in 0..16 {
                let again = {
                    let ifindex = nix_ifindex("eth0").unwrap();
                    let p = Pkt::new(dst, 80, PROTO_TCP).sport(20000 + i).established();
                    let (_, out) = test_run(&mut dp, ifindex, &p.build());
                    if dst.contains(':') {
                        IpAddr::from(Ipv6Header::from_slice(&out[14..]).unwrap().0.source)
                    } else {
                        IpAddr::from(Ipv4Header::from_slice(&out[14..]).unwrap().0.source)
                    }
                };
                assert_eq!(
                    again, sources[i as usize],
                    "{dst}: flow {i} changed its source"
                );
            }
        }
        // Without prefixes, one source again.
        dp.set_sources(Some("198.18.0.2".parse().unwrap()), None)
            .unwrap();
        dp.set_source_prefixes(None, None).unwrap();
        let one: HashSet<IpAddr> = (0..20)
            .map(|i| outer_source(&mut dp, "198.19.0.100", 30000 + i))
            .collect();
        assert_eq!(one.len(), 1, "{one:?}");
    });
}
