//! ICMP the program answers or steers, through BPF_PROG_TEST_RUN on the real loaded `xdp_lb`:
//! errors about a flow go to the backend that owns it, packets too big for the path are
//! answered so, and echo requests to a VIP are answered when the agent asks.
use lb::dataplane::{self, Dataplane, nix_ifindex};
use lb_common::{Counter, PROTO_TCP, program_names};
use lb_tests::fixture::*;

/// An ICMP error about what a backend sent a client goes to the backend that owns the client's
/// flow, even after the ring changed; about a flow the table does not hold, to the ring's pick.
/// It never adds a flow.
#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn icmp_errors_go_to_the_backend_that_owns_the_flow() {
    let env = env();
    env.ns.run(|| {
        let mut dp = Dataplane::load(program_names::LB).expect("load xdp_lb");
        let vips = program(&mut dp);
        let ifindex = nix_ifindex("eth0").unwrap();
        let send = |dp: &mut Dataplane, frame: &[u8]| -> [u8; 6] {
            let (action, out) = test_run(dp, ifindex, frame);
            assert_eq!(action, XDP_TX);
            out[..6].try_into().unwrap()
        };
        let about = |port: u16, kind| {
            icmp_to_vip(
                "198.19.0.100",
                kind,
                &reply_from_vip("198.19.0.100", 80, port, PROTO_TCP),
            )
        };
        // Flows whose ring picks cover at least two backends.
        let ports: Vec<u16> = (30000..30030).collect();
        let owners: Vec<[u8; 6]> = ports
            .iter()
            .map(|&p| {
                send(
                    &mut dp,
                    &Pkt::new("198.19.0.100", 80, PROTO_TCP).sport(p).build(),
                )
            })
            .collect();
        // The ring now names one backend only; the table still holds the flows.
        let key = dataplane::vip_key("198.19.0.100".parse().unwrap(), 80, PROTO_TCP);
        let (only, only_mac) = (vips[0].backends[0].0, vips[0].backends[0].2);
        dp.set_vip(0, key, &vec![only; RING as usize], false, 0)
            .unwrap();
        assert!(owners.iter().any(|m| *m != only_mac), "{owners:?}");
        let inserted = dp.flow_counters().unwrap().0;
        for kind in [
            IcmpKind::TooBig,
            IcmpKind::Unreachable,
            IcmpKind::TimeExceeded,
        ] {
            let got: Vec<[u8; 6]> = ports
                .iter()
                .map(|&p| send(&mut dp, &about(p, kind)))
                .collect();
            assert_eq!(got, owners, "{kind:?} errors did not follow their flows");
        }
        // A flow the table does not hold: the ring's pick, and nothing recorded.
        assert_eq!(send(&mut dp, &about(39999, IcmpKind::TooBig)), only_mac);
        assert_eq!(
            dp.flow_counters().unwrap().0,
            inserted,
            "an ICMP error added a flow"
        );
    });
}

/// A configured path MTU below the interface's: packets that fit the interface but not the
/// path are answered "too big" with the path's MTU, by the route lookup's path and the cached
/// next hop's alike.
#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn a_configured_path_mtu_is_what_packets_must_fit() {
    let env = env();
    env.ns.run(|| {
        let mut dp = Dataplane::load(program_names::LB).expect("load xdp_lb");
        let vips = program(&mut dp);
        let ifindex = nix_ifindex("eth0").unwrap();
        dp.set_path_mtu(Some(1400)).unwrap();
        // IPv4 with don't-fragment, `len` bytes of IP packet.
        let packet = |len: usize| {
            let mut p = Pkt::new("198.19.0.100", 80, PROTO_TCP).sport(41000);
            p.payload = vec![1; len - 40];
            rewrite_v4(&p.build(), |ip| ip.dont_fragment = true)
        };
        for cached in [false, true] {
            if cached {
                cache_next_hops(&mut dp, &vips);
            }
            let (action, out) = test_run(&mut dp, ifindex, &packet(1381));
            assert_eq!(action, XDP_TX, "cached {cached}");
            assert_eq!(
                (out[23], out[34], out[35]),
                (1, 3, 4),
                "an ICMP frag-needed: {out:02x?}"
            );
            assert_eq!(u16::from_be_bytes([out[40], out[41]]), 1380, "its MTU");
            let (action, out) = test_run(&mut dp, ifindex, &packet(1380));
            assert_eq!(action, XDP_TX, "cached {cached}");
            assert_eq!(out[23], 4, "1380 bytes fit once encapsulated: {out:02x?}");
        }
        dp.set_path_mtu(None).unwrap();
        let (_, out) = test_run(&mut dp, ifindex, &packet(1381));
        assert_eq!(
            out[23], 4,
            "without the setting, the interface's 1500 bytes"
        );
    });
}

/// Echo requests to a VIP address: passed to the kernel unless the agent asks the program to
/// answer them; then answered in place, byte for byte the reply etherparse builds.
#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn echo_requests_to_a_vip_are_answered_when_asked() {
    use etherparse::{IcmpEchoHeader, PacketBuilder};
    let env = env();
    env.ns.run(|| {
        let mut dp = Dataplane::load(program_names::LB).expect("load xdp_lb");
        program(&mut dp);
        let ifindex = nix_ifindex("eth0").unwrap();
        let router_mac = [0x02, 0, 0, 0, 0, 0x99];
        let echo = IcmpEchoHeader { id: 7, seq: 3 };
        let payload = [0xab; 56];
        let v4 = |reply: bool| {
            let mut out = Vec::new();
            let vip = [198, 19, 0, 100];
            let b = if reply {
                PacketBuilder::ethernet2(ETH0_MAC, router_mac).ipv4(vip, CLIENT4, 61)
            } else {
                PacketBuilder::ethernet2(router_mac, ETH0_MAC).ipv4(CLIENT4, vip, 61)
            };
            if reply {
                b.icmpv4_echo_reply(echo.id, echo.seq)
                    .write(&mut out, &payload)
            } else {
                b.icmpv4_echo_request(echo.id, echo.seq)
                    .write(&mut out, &payload)
            }
            .unwrap();
            out
        };
        let v6 = |reply: bool| {
            let mut out = Vec::new();
            let vip = addr16("fd00:19::100".parse().unwrap());
            let b = if reply {
                PacketBuilder::ethernet2(ETH0_MAC, router_mac).ipv6(vip, CLIENT6, 61)
            } else {
                PacketBuilder::ethernet2(router_mac, ETH0_MAC).ipv6(CLIENT6, vip, 61)
            };
            if reply {
                b.icmpv6_echo_reply(echo.id, echo.seq)
                    .write(&mut out, &payload)
            } else {
                b.icmpv6_echo_request(echo.id, echo.seq)
                    .write(&mut out, &payload)
            }
            .unwrap();
            out
        };
        for (req, _) in [(v4(false), v4(true)), (v6(false), v6(true))] {
            let (action, out) = test_run(&mut dp, ifindex, &req);
            assert_eq!(
                (action, &out),
                (XDP_PASS, &req),
                "not asked: passed untouched"
            );
        }
        dp.set_echo_addresses(&[
            "198.19.0.100".parse().unwrap(),
            "fd00:19::100".parse().unwrap(),
        ])
        .unwrap();
        let before = dp.outcomes().unwrap();
        for (req, reply) in [(v4(false), v4(true)), (v6(false), v6(true))] {
            let (action, out) = test_run(&mut dp, ifindex, &req);
            assert_eq!(action, XDP_TX);
            assert_eq!(out, reply, "the reply, byte for byte");
        }
        let after = dp.outcomes().unwrap();
        let moved = |c: Counter| {
            let f = |v: &Vec<(Counter, lb::dataplane::Totals)>| {
                v.iter()
                    .find(|(k, _)| *k == c)
                    .map_or(0, |(_, t)| t.packets)
            };
            f(&after) - f(&before)
        };
        assert_eq!(moved(Counter::IcmpEcho), 2);
        // Off the list again: passed.
        dp.set_echo_addresses(&["fd00:19::100".parse().unwrap()])
            .unwrap();
        let (action, _) = test_run(&mut dp, ifindex, &v4(false));
        assert_eq!(action, XDP_PASS, "no longer listed");
    });
}
