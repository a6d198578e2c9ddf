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

/// Through the agent, read where the backend's NIC would: a capture on the backend's switch
/// port (its own tcpdump would see the decapsulated packet, XDP running first) shows 256
/// connections arriving from 200 and more outer sources. (No capture filter: `ip proto 4`
/// matched none of these frames here.)
#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn a_backend_receives_its_flows_from_many_outer_sources() {
    use lb_tests::{TempDir, life::Setup};
    let s = Setup::custom(
        1,
        1,
        |_| {},
        |c| {
            c.replacen(
                "source_v4 = \"198.18.0.2\"\n",
                "source_v4 = \"198.18.0.2\"\nsource_v4_prefix = \"198.18.16.0/20\"\n",
                1,
            )
        },
    );
    let tmp = TempDir::new("rss");
    let pcap = tmp.path("be0.pcap");
    // The switch's ports: the client's p1, the balancer's p2, the backend's p3.
    let mut capture = s.topo.lab.switch.spawn(
        &[
            "sh",
            "-c",
            &format!(
                "exec tcpdump -i p3 -nn -U --immediate-mode -w {} 2>&1",
                pcap.display()
            ),
        ],
        tmp.path("tcpdump.log"),
    );
    capture.wait_for("tcpdump: listening", std::time::Duration::from_secs(10));
    // What the capture holds (its file is written packet by packet): each inner flow's outer
    // sources.
    let read = || {
        let text = lb_tests::sh(&format!("tcpdump -r {} -nn 2>/dev/null", pcap.display()));
        let mut flows: std::collections::HashMap<String, HashSet<String>> = Default::default();
        for line in text.lines() {
            // "... IP 198.18.x.y > 198.18.0.11: IP 198.18.0.1.PORT > 198.19.0.100.80: ..."
            let mut words = line.split_whitespace().skip_while(|w| *w != "IP");
            let (Some(_), Some(outer)) = (words.next(), words.next()) else {
                continue;
            };
            let inner = line.split(": IP ").nth(1).and_then(|r| r.split(' ').next());
            if let Some(inner) = inner {
                flows
                    .entry(inner.to_string())
                    .or_default()
                    .insert(outer.to_string());
            }
        }
        flows
    };
    // The capture is live once it holds a health probe (from the agent's source, through the
    // tunnel as the clients' packets go): the first frames after "listening" can be lost.
    lb_tests::lab::wait_for(
        std::time::Duration::from_secs(5),
        "a health probe in the capture",
        || read().keys().any(|k| k.starts_with("198.18.0.2.")),
    );
    // Open at once, so that no two share a source port (a closed connection's port may be
    // taken again, and the same 5-tuple is the same flow).
    let open = lb_tests::traffic::LongLived::open(&s.topo.client, lb_tests::life::vip_addr(), 256);
    assert_eq!(open.conns.len(), 256);
    let mut flows = read();
    lb_tests::lab::wait_for(
        std::time::Duration::from_secs(10),
        "256 flows in the capture",
        || {
            flows = read();
            flows.retain(|k, _| k.starts_with("198.18.0.1."));
            flows.len() >= 256
        },
    );
    capture.stop();
    assert!(flows.len() >= 256, "{} flows captured", flows.len());
    assert!(
        flows.values().all(|o| o.len() == 1),
        "a flow came from two outer sources"
    );
    let sources: HashSet<&String> = flows.values().flatten().collect();
    eprintln!("{} flows from {} outer sources", flows.len(), sources.len());
    assert!(
        sources.len() >= 200,
        "{} distinct outer sources",
        sources.len()
    );
}
