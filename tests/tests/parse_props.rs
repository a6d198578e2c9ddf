//! Property test of the program's parsing against etherparse: random well-formed packets to
//! the VIPs (IPv4 with and without options, IPv6, a VLAN tag or none, TCP or UDP, any ports,
//! any payload) go through the loaded `xdp_lb`, and what comes out must be exactly the
//! encapsulation etherparse's reading of the packet predicts: the program parsed the same
//! addresses, ports and lengths.
use lb::dataplane::{Dataplane, nix_ifindex};
use lb_common::{PROTO_TCP, PROTO_UDP, program_names};
use lb_tests::fixture::*;
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Shape {
    v6: bool,
    tcp: bool,
    sport: u16,
    vlan: Option<u16>,
    payload: usize,
    /// IPv4 options, in 4-byte words (IPv4 without a VLAN tag only).
    options: usize,
    established: bool,
}

fn shapes() -> impl Strategy<Value = Shape> {
    (
        any::<bool>(),
        any::<bool>(),
        any::<u16>(),
        proptest::option::of(1u16..4095),
        0usize..1200,
        0usize..=10,
        any::<bool>(),
    )
        .prop_map(
            |(v6, tcp, sport, vlan, payload, options, established)| Shape {
                v6,
                tcp,
                sport,
                vlan,
                payload,
                options,
                established,
            },
        )
}

#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn the_program_parses_what_etherparse_parses() {
    let env = env();
    env.ns.run(|| {
        let mut dp = Dataplane::load(program_names::LB).expect("load xdp_lb");
        let vips = program(&mut dp);
        // The runner takes an Fn: the program's handle goes in a RefCell.
        let dp = std::cell::RefCell::new(dp);
        let ifindex = nix_ifindex("eth0").unwrap();
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
            cases: 2000,
            ..ProptestConfig::default()
        });
        runner
            .run(&shapes(), |s| {
                let (dst, port, vip) = match (s.v6, s.tcp) {
                    (false, true) => ("198.19.0.100", 80, &vips[0]),
                    (false, false) => ("198.19.0.100", 53, &vips[1]),
                    (true, true) => ("fd00:19::100", 80, &vips[2]),
                    (true, false) => ("fd00:19::100", 53, &vips[3]),
                };
                let mut p =
                    Pkt::new(dst, port, if s.tcp { PROTO_TCP } else { PROTO_UDP }).sport(s.sport);
                if s.established {
                    p = p.established();
                }
                p.payload = vec![0x42; s.payload];
                let mut frame = p.clone().build();
                if let Some(v) = s.vlan {
                    frame = p.clone().vlan(v).build();
                } else if !s.v6 && s.options > 0 {
                    // No-operation options, then end of options.
                    let mut opts = vec![1u8; s.options * 4];
                    opts[s.options * 4 - 1] = 0;
                    frame = rewrite_v4(&frame, |ip| {
                        ip.options = etherparse::Ipv4Options::try_from(&opts[..]).unwrap();
                        ip.total_len += opts.len() as u16;
                    });
                }
                let l3_off = if s.vlan.is_some() { 18 } else { 14 };
                // etherparse's reading of the frame, as the reference.
                let parsed = etherparse::SlicedPacket::from_ethernet(&frame).unwrap();
                prop_assert!(parsed.net.is_some() && parsed.transport.is_some());
                let (action, counter, want) = encapsulated(vip, &frame, l3_off, &p);
                let mut dp = dp.borrow_mut();
                let before = dp.outcomes().unwrap();
                let (got_action, out) = test_run(&mut dp, ifindex, &frame);
                let after = dp.outcomes().unwrap();
                prop_assert_eq!(got_action, action, "{:?}", s);
                prop_assert_eq!(out, want, "{:?}", s);
                let moved: Vec<_> = before
                    .iter()
                    .zip(&after)
                    .filter(|(b, a)| a.1.packets != b.1.packets)
                    .map(|(b, _)| b.0)
                    .collect();
                prop_assert_eq!(moved, vec![counter], "{:?}", s);
                Ok(())
            })
            .unwrap();
    });
}
