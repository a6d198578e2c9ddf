//! A million random and mutated packets through the loaded `xdp_lb` (BPF_PROG_TEST_RUN): none
//! may abort, and every one must land in exactly one outcome counter.
use lb::dataplane::{Dataplane, nix_ifindex};
use lb_common::{Counter, PROTO_TCP, PROTO_UDP, program_names};
use lb_tests::{Lcg, fixture::*};

const PACKETS: usize = 1_000_000;

/// Well-formed frames of every kind the program knows, to mutate.
fn seeds() -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    for dst in ["198.19.0.100", "198.19.0.101", "fd00:19::100", "198.18.0.2"] {
        for (port, proto) in [(80, PROTO_TCP), (53, PROTO_UDP), (443, PROTO_TCP)] {
            for vlan in [None, Some(7)] {
                for established in [false, true] {
                    let mut p = Pkt::new(dst, port, proto).sport(40000 + v.len() as u16);
                    if established {
                        p = p.established();
                    }
                    if let Some(id) = vlan {
                        p = p.vlan(id);
                    }
                    p.payload = vec![0x5a; v.len() % 64];
                    v.push(p.build());
                }
            }
        }
    }
    // Fragments, ICMP errors about VIP traffic, echo requests, a packet too big once
    // encapsulated: the program's other ways.
    for port in [40000u16, 40001] {
        let udp = Pkt::new("198.19.0.100", 53, PROTO_UDP).sport(port).build();
        v.push(rewrite_v4(&udp, |ip| ip.more_fragments = true));
        v.push(rewrite_v4(&udp, |ip| {
            ip.fragment_offset = etherparse::IpFragOffset::try_new(64).unwrap()
        }));
        for (vip, proto, vport) in [
            ("198.19.0.100", PROTO_TCP, 80),
            ("fd00:19::100", PROTO_UDP, 53),
        ] {
            let reply = reply_from_vip(vip, vport, port, proto);
            v.push(icmp_to_vip(vip, IcmpKind::TooBig, &reply));
            v.push(icmp_to_vip(vip, IcmpKind::Unreachable, &reply));
            v.push(icmp_to_vip(vip, IcmpKind::Echo, &[0; 8]));
        }
        let mut big = Pkt::new("198.19.0.100", 80, PROTO_TCP).sport(port);
        big.payload = vec![1; 1460];
        v.push(rewrite_v4(&big.build(), |ip| ip.dont_fragment = true));
    }
    v
}

/// One hostile frame: a seed with a few bytes changed (often in its headers), cut short,
/// grown, or replaced by noise behind an IP ethertype.
fn hostile(r: &mut Lcg, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut f = seeds[r.below(seeds.len())].clone();
    match r.below(6) {
        // A few bytes anywhere in the first 80 (the headers).
        0 | 1 => {
            for _ in 0..1 + r.below(4) {
                let i = r.below(f.len().min(80));
                f[i] = r.next() as u8;
            }
        }
        // A length or offset field set to anything.
        2 => {
            let at = [16, 17, 18, 19, 14, 46, 38, 39, 58, 59, 66, 20, 21][r.below(13)];
            if at < f.len() {
                f[at] = r.next() as u8;
            }
        }
        // Cut short anywhere from the Ethernet header on.
        3 => f.truncate(14 + r.below(f.len() - 13)),
        // Grown with noise (up to jumbo-ish sizes BPF_PROG_TEST_RUN takes in one buffer).
        4 => {
            let extra = r.below(3000);
            f.extend((0..extra).map(|_| r.next() as u8));
        }
        // Noise behind an IPv4, IPv6 or VLAN ethertype.
        _ => {
            let len = 15 + r.below(120);
            f = (0..len).map(|_| r.next() as u8).collect();
            let ty: [u8; 2] = [[0x08, 0x00], [0x86, 0xdd], [0x81, 0x00]][r.below(3)];
            f[12..14].copy_from_slice(&ty);
            if r.below(2) == 0 {
                // A plausible version nibble, to get past the first check more often.
                f[14] = if ty == [0x86, 0xdd] { 0x60 } else { 0x45 };
            }
        }
    }
    f
}

#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn a_million_hostile_packets_never_abort_and_are_all_counted() {
    let env = env();
    env.ns.run(|| {
        let mut dp = Dataplane::load(program_names::LB).expect("load xdp_lb");
        program(&mut dp);
        let ifindex = nix_ifindex("eth0").unwrap();
        let seeds = seeds();
        let mut r = Lcg(0x5eed);
        let before = dp.outcomes().unwrap();
        let mut actions = [0u64; 5];
        for i in 0..PACKETS {
            let f = hostile(&mut r, &seeds);
            let (action, _) = test_run(&mut dp, ifindex, &f);
            assert_ne!(action, XDP_ABORTED, "packet {i} aborted: {f:02x?}");
            actions[action as usize] += 1;
        }
        let after = dp.outcomes().unwrap();
        let moved: Vec<(Counter, u64)> = before
            .iter()
            .zip(&after)
            .map(|(b, a)| (b.0, a.1.packets - b.1.packets))
            .filter(|(_, n)| *n > 0)
            .collect();
        let total: u64 = moved.iter().map(|(_, n)| n).sum();
        eprintln!("actions (aborted, drop, pass, tx, redirect): {actions:?}\ncounters: {moved:?}");
        assert_eq!(
            total, PACKETS as u64,
            "every packet counted once: {moved:?}"
        );
        assert!(
            !moved.iter().any(|(c, _)| *c == Counter::Aborted),
            "{moved:?}"
        );
        // The mix reached every part of the program: forwarded, and each kind of malformed.
        for c in [
            Counter::Tx,
            Counter::PassNotVip,
            Counter::PassNotIp,
            Counter::PassBadIp,
            Counter::PassBadLength,
            Counter::PassBadL4,
            Counter::PassBadChecksum,
            Counter::IcmpTooBig,
        ] {
            assert!(
                moved.iter().any(|(m, n)| *m == c && *n > 0),
                "no packet reached {c:?}: {moved:?}"
            );
        }
    });
}
