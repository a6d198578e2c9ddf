//! Packet fixtures through BPF_PROG_TEST_RUN on the real loaded `xdp_lb`: each case has an
//! input frame, the expected verdict, the counter it must land in, and the exact output
//! bytes. Packets are built with etherparse, never typed as hex; expected outer headers are
//! built with etherparse too (its own checksum code), so the program is checked against an
//! independent implementation.

use etherparse::{Ipv4Options, PacketBuilder};
use lb::dataplane::{Dataplane, nix_ifindex};
use lb_common::{Counter, PROTO_TCP, PROTO_UDP, program_names};
use lb_tests::fixture::*;

fn cases(vips: &[Vip]) -> Vec<Case> {
    let mut c = forwarded(vips);
    c.extend(dropped_and_passed());
    c.extend(malformed());
    c.extend(extension_headers(vips));
    c.extend(fragments(vips));
    c.extend(too_big());
    c.extend(icmp_errors(vips));
    c
}

/// An IPv6 extension header: its type and its bytes.
type Ext = (u8, Vec<u8>);

/// `frame` (IPv6, untagged) with extension headers put between the IPv6 header and the
/// transport header: each is (its type, its bytes); the next-header bytes are chained here and
/// the payload length grows by what was put in.
fn with_ext(frame: &[u8], exts: &[Ext]) -> Vec<u8> {
    let mut f = frame.to_vec();
    let transport = f[20];
    let mut chain = Vec::new();
    for (i, (_, body)) in exts.iter().enumerate() {
        let mut b = body.clone();
        b[0] = exts.get(i + 1).map_or(transport, |e| e.0);
        chain.extend(b);
    }
    if let Some(first) = exts.first() {
        f[20] = first.0;
    }
    let plen = u16::from_be_bytes([f[18], f[19]]) + chain.len() as u16;
    f[18..20].copy_from_slice(&plen.to_be_bytes());
    f.splice(54..54, chain);
    f
}

/// Extension headers of each kind: (type, bytes).
fn hop_by_hop() -> Ext {
    (0, vec![0, 0, 1, 4, 0, 0, 0, 0]) // one PadN option
}
fn dest_opts() -> Ext {
    (60, vec![0, 0, 1, 4, 0, 0, 0, 0])
}
fn routing() -> Ext {
    (43, vec![0, 0, 0, 0, 0, 0, 0, 0]) // no segments left
}
fn fragment(offset: u16, more: bool) -> Ext {
    let f = (offset << 3) | more as u16;
    (44, vec![0, 0, (f >> 8) as u8, f as u8, 0, 0, 0, 42])
}
fn auth() -> Ext {
    let mut b = vec![0, 4]; // (4 + 2) × 4 = 24 bytes
    b.resize(24, 0);
    (51, b)
}

/// IPv6 packets with extension headers before TCP or UDP.
fn extension_headers(vips: &[Vip]) -> Vec<Case> {
    let mut c = Vec::new();
    let walked: Vec<(&str, Vec<Ext>)> = vec![
        ("hop-by-hop", vec![hop_by_hop()]),
        ("destination options", vec![dest_opts()]),
        ("routing", vec![routing()]),
        ("atomic fragment header", vec![fragment(0, false)]),
        ("authentication header", vec![auth()]),
        (
            "hop-by-hop, routing, destination options",
            vec![hop_by_hop(), routing(), dest_opts()],
        ),
        (
            "four extension headers (the most walked)",
            vec![hop_by_hop(), routing(), auth(), dest_opts()],
        ),
    ];
    for (name, exts) in &walked {
        for (vip, port, proto) in [(&vips[2], 80, PROTO_TCP), (&vips[3], 53, PROTO_UDP)] {
            let p = Pkt::new("fd00:19::100", port, proto).sport(41000);
            let input = with_ext(&p.build(), exts);
            let (action, counter, output) = encapsulated(vip, &input, 14, &p);
            c.push(Case {
                name: format!(
                    "v6 {} with {name}",
                    if proto == PROTO_TCP { "tcp" } else { "udp" }
                ),
                input,
                action,
                counter,
                output,
            });
        }
    }
    let tcp6 = Pkt::new("fd00:19::100", 80, PROTO_TCP).build();
    let udp6 = Pkt::new("fd00:19::100", 53, PROTO_UDP).build();
    let passed: Vec<(&str, Vec<u8>, Counter)> = vec![
        (
            "v6 first fragment, to a VIP that takes none",
            with_ext(&tcp6, &[fragment(0, true)]),
            Counter::PassFragment,
        ),
        (
            "v6 later fragment, to a VIP that takes none",
            with_ext(&tcp6, &[fragment(100, false)]),
            Counter::PassFragment,
        ),
        (
            "v6 fragment behind hop-by-hop, to a VIP that takes none",
            with_ext(&tcp6, &[hop_by_hop(), fragment(0, true)]),
            Counter::PassFragment,
        ),
        (
            "v6 fragment whose payload length stops inside its fragment header",
            edit(&with_ext(&udp6, &[fragment(0, true)]), |f| {
                f[18..20].copy_from_slice(&8u16.to_be_bytes())
            }),
            Counter::PassBadLength,
        ),
        (
            "five extension headers (one more than walked)",
            with_ext(
                &tcp6,
                &[hop_by_hop(), routing(), auth(), dest_opts(), dest_opts()],
            ),
            Counter::PassExtLimit,
        ),
        (
            "v6 hop-by-hop cut short",
            with_ext(&tcp6, &[hop_by_hop()])[..56].to_vec(),
            Counter::PassBadIp,
        ),
        (
            "v6 hop-by-hop claiming 2 KB",
            edit(&with_ext(&tcp6, &[hop_by_hop()]), |f| f[55] = 255),
            Counter::PassBadL4,
        ),
        (
            "v6 payload length not covering its extension header",
            edit(&with_ext(&tcp6, &[hop_by_hop()]), |f| {
                f[18..20].copy_from_slice(&20u16.to_be_bytes())
            }),
            Counter::PassBadLength,
        ),
        (
            "v6 extension headers, then neither TCP nor UDP",
            with_ext(
                &edit(&tcp6, |f| f[20] = 58), // ICMPv6
                &[hop_by_hop()],
            ),
            Counter::PassNotVip,
        ),
    ];
    for (name, input, counter) in passed {
        c.push(pass(name, input, counter));
    }
    c
}

fn forwarded(vips: &[Vip]) -> Vec<Case> {
    let mut c = Vec::new();
    // Forwarded: v4 and v6, TCP and UDP, several flows (so several backends).
    for sport in [40000, 40001, 40002, 51234, 65535] {
        c.push(forward(
            format!("v4 tcp to VIP, sport {sport}"),
            &vips[0],
            &Pkt::new("198.19.0.100", 80, PROTO_TCP).sport(sport),
        ));
        c.push(forward(
            format!("v6 tcp to VIP, sport {sport}"),
            &vips[2],
            &Pkt::new("fd00:19::100", 80, PROTO_TCP).sport(sport),
        ));
    }
    for sport in [40000, 12345, 999] {
        c.push(forward(
            format!("v4 udp to VIP, sport {sport}"),
            &vips[1],
            &Pkt::new("198.19.0.100", 53, PROTO_UDP).sport(sport),
        ));
        c.push(forward(
            format!("v6 udp to VIP, sport {sport}"),
            &vips[3],
            &Pkt::new("fd00:19::100", 53, PROTO_UDP).sport(sport),
        ));
    }
    c.push(forward(
        "v4 tcp, VLAN-tagged (goes out untagged)",
        &vips[0],
        &Pkt::new("198.19.0.100", 80, PROTO_TCP).vlan(100),
    ));
    c.push(forward(
        "v6 udp, VLAN-tagged (goes out untagged)",
        &vips[3],
        &Pkt::new("fd00:19::100", 53, PROTO_UDP).vlan(4094),
    ));
    for port in [1, 443, 8080] {
        c.push(forward(
            format!("every-port VIP, port {port}"),
            &vips[4],
            &Pkt::new("198.19.0.101", port, PROTO_TCP),
        ));
    }
    c.push(forward(
        "v4 backend behind the other interface (redirect)",
        &vips[6],
        &Pkt::new("198.19.0.103", 80, PROTO_TCP),
    ));
    c.push(forward(
        "v6 backend behind the other interface (redirect)",
        &vips[9],
        &Pkt::new("fd00:19::103", 80, PROTO_TCP),
    ));
    // IPv4 options: the whole inner header, options included, is carried.
    let p = Pkt::new("198.19.0.100", 80, PROTO_TCP);
    let with_opts = rewrite_v4(&p.build(), |ip| {
        ip.options = Ipv4Options::try_from(&[1u8, 1, 1, 0][..]).unwrap();
        ip.total_len += 4;
    });
    let (action, counter, output) = encapsulated(&vips[0], &with_opts, 14, &p);
    c.push(Case {
        name: "v4 with IP options (IHL 6)".into(),
        input: with_opts,
        action,
        counter,
        output,
    });
    // Don't-fragment is copied to the outer header.
    let df = rewrite_v4(&p.build(), |ip| ip.dont_fragment = true);
    let (action, counter, output) = encapsulated(&vips[0], &df, 14, &p);
    c.push(Case {
        name: "v4 with DF".into(),
        input: df,
        action,
        counter,
        output,
    });
    // Ethernet padding after a short packet stays behind the inner packet; lengths come from
    // the IP header.
    let mut padded = Pkt::new("198.19.0.100", 53, PROTO_UDP).build();
    padded.resize(60, 0);
    let (action, counter, output) = encapsulated(
        &vips[1],
        &padded,
        14,
        &Pkt::new("198.19.0.100", 53, PROTO_UDP),
    );
    c.push(Case {
        name: "v4 udp with Ethernet padding".into(),
        input: padded,
        action,
        counter,
        output,
    });
    // A bad TCP checksum is the backend's business: forwarded as is.
    let mut bad = Pkt::new("198.19.0.100", 80, PROTO_TCP).build();
    bad[14 + 20 + 16] ^= 0xff;
    let (action, counter, output) =
        encapsulated(&vips[0], &bad, 14, &Pkt::new("198.19.0.100", 80, PROTO_TCP));
    c.push(Case {
        name: "v4 tcp with a bad checksum".into(),
        input: bad,
        action,
        counter,
        output,
    });
    c
}

fn dropped_and_passed() -> Vec<Case> {
    // Dropped and counted.
    let mut c = vec![
        drop_case(
            "VIP without backends",
            Pkt::new("198.19.0.102", 80, PROTO_TCP).build(),
            Counter::DropNoBackend,
        ),
        drop_case(
            "backend next hop unresolved",
            Pkt::new("198.19.0.104", 80, PROTO_TCP).build(),
            Counter::DropNoNeigh,
        ),
        drop_case(
            "backend without route",
            Pkt::new("198.19.0.105", 80, PROTO_TCP).build(),
            Counter::DropNoRoute,
        ),
    ];

    // Not for us: passed untouched.
    c.push(pass(
        "v4 to another address",
        Pkt::new("198.18.0.2", 80, PROTO_TCP).build(),
        Counter::PassNotVip,
    ));
    c.push(pass(
        "v6 to another address",
        Pkt::new("fd00:18::2", 80, PROTO_TCP).build(),
        Counter::PassNotVip,
    ));
    c.push(pass(
        "v4 wrong port",
        Pkt::new("198.19.0.100", 81, PROTO_TCP).build(),
        Counter::PassNotVip,
    ));
    c.push(pass(
        "v6 wrong port",
        Pkt::new("fd00:19::100", 81, PROTO_TCP).build(),
        Counter::PassNotVip,
    ));
    c.push(pass(
        "v4 wrong protocol (udp to a tcp-only port)",
        Pkt::new("198.19.0.100", 80, PROTO_UDP).build(),
        Counter::PassNotVip,
    ));
    c.push(pass(
        "v6 wrong protocol",
        Pkt::new("fd00:19::100", 80, PROTO_UDP).build(),
        Counter::PassNotVip,
    ));
    let mut icmp = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, ETH0_MAC)
        .ipv4(CLIENT4, v4("198.19.0.100"), 64)
        .icmpv4_echo_request(1, 1)
        .write(&mut icmp, b"ping")
        .unwrap();
    c.push(pass("ICMP echo to the VIP", icmp, Counter::PassNotVip));
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&CLIENT_MAC);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&CLIENT_MAC);
    arp.extend_from_slice(&CLIENT4);
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&v4("198.19.0.100"));
    c.push(pass("ARP request for the VIP", arp, Counter::PassNotIp));
    let mut qinq = Pkt::new("198.19.0.100", 80, PROTO_TCP).vlan(5).build();
    qinq.splice(16..16, [0x81, 0x00, 0x00, 0x06]);
    c.push(pass("two VLAN tags", qinq, Counter::PassNotIp));
    let frag = rewrite_v4(&Pkt::new("198.19.0.100", 80, PROTO_TCP).build(), |ip| {
        ip.more_fragments = true
    });
    c.push(pass(
        "v4 first fragment, to a VIP that takes none",
        frag,
        Counter::PassFragment,
    ));
    let frag = rewrite_v4(&Pkt::new("198.19.0.100", 80, PROTO_TCP).build(), |ip| {
        ip.fragment_offset = etherparse::IpFragOffset::try_new(100).unwrap()
    });
    c.push(pass(
        "v4 later fragment, to a VIP that takes none",
        frag,
        Counter::PassFragment,
    ));
    c
}

/// The answer `xdp_lb` must send to a client whose packet (`frame`, IP header at `l3_off`)
/// is too big for the encapsulated path, built with etherparse: back to the client from the
/// VIP, ICMP "fragmentation needed" (IPv4) or "packet too big" (IPv6) with `mtu`, quoting the
/// client's IP header and 8 bytes after it.
fn too_big_reply(frame: &[u8], l3_off: usize, mtu: u32) -> Vec<u8> {
    use etherparse::{
        Icmpv4Header, Icmpv4Type, Icmpv6Header, Icmpv6Type, IpNumber, Ipv4Header, Ipv6FlowLabel,
        Ipv6Header, icmpv4::DestUnreachableHeader,
    };
    let inner = &frame[l3_off..];
    let mut out = Vec::new();
    out.extend_from_slice(&frame[6..12]);
    out.extend_from_slice(&frame[0..6]);
    if inner[0] >> 4 == 4 {
        let ihl = (inner[0] & 0xf) as usize * 4;
        let quoted = &inner[..ihl + 8];
        let icmp = Icmpv4Header::with_checksum(
            Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded {
                next_hop_mtu: mtu as u16,
            }),
            quoted,
        );
        let src: [u8; 4] = inner[16..20].try_into().unwrap();
        let dst: [u8; 4] = inner[12..16].try_into().unwrap();
        let mut ip = Ipv4Header::new(
            (icmp.header_len() + quoted.len()) as u16,
            64,
            IpNumber::ICMP,
            src,
            dst,
        )
        .unwrap();
        ip.dont_fragment = false;
        ip.header_checksum = ip.calc_header_checksum();
        out.extend_from_slice(&[0x08, 0x00]);
        ip.write(&mut out).unwrap();
        icmp.write(&mut out).unwrap();
        out.extend_from_slice(quoted);
    } else {
        let quoted = &inner[..48];
        let src: [u8; 16] = inner[24..40].try_into().unwrap();
        let dst: [u8; 16] = inner[8..24].try_into().unwrap();
        let icmp = Icmpv6Header::with_checksum(Icmpv6Type::PacketTooBig { mtu }, src, dst, quoted)
            .unwrap();
        let ip = Ipv6Header {
            traffic_class: 0,
            flow_label: Ipv6FlowLabel::ZERO,
            payload_length: (icmp.header_len() + quoted.len()) as u16,
            next_header: IpNumber::IPV6_ICMP,
            hop_limit: 64,
            source: src,
            destination: dst,
        };
        out.extend_from_slice(&[0x86, 0xdd]);
        ip.write(&mut out).unwrap();
        icmp.write(&mut out).unwrap();
        out.extend_from_slice(quoted);
    }
    out
}

/// Packets too big for the encapsulated path (the fixtures' eth0 has MTU 1500): answered with
/// the MTU that leaves room for the outer header; IPv4 without don't-fragment dropped.
fn too_big() -> Vec<Case> {
    let mut c = Vec::new();
    let answer = |name: &str, input: Vec<u8>, l3_off: usize, mtu: u32| Case {
        name: name.into(),
        output: too_big_reply(&input, l3_off, mtu),
        input,
        action: XDP_TX,
        counter: Counter::IcmpTooBig,
    };
    let big = |dst: &str, vlan: Option<u16>, room: usize| {
        let mut p = Pkt::new(dst, 80, PROTO_TCP).sport(41000);
        p.payload = vec![7; 1500 - room];
        if let Some(v) = vlan {
            p = p.vlan(v);
        }
        p
    };
    // IPv4: 20 + 20 + 1460 = 1500 bytes, 1520 encapsulated.
    let df = |p: &Pkt| {
        let f = p.build();
        let mut ip = etherparse::Ipv4Header::from_slice(&f[p.l3_off()..])
            .unwrap()
            .0;
        ip.dont_fragment = true;
        ip.header_checksum = ip.calc_header_checksum();
        let mut out = f[..p.l3_off()].to_vec();
        ip.write(&mut out).unwrap();
        out.extend_from_slice(&f[p.l3_off() + 20..]);
        out
    };
    let p = big("198.19.0.100", None, 40);
    c.push(answer(
        "v4 1500 bytes with DF: fragmentation needed, MTU 1480",
        df(&p),
        14,
        1480,
    ));
    let p = big("198.19.0.100", Some(7), 40);
    c.push(answer(
        "v4 1500 bytes with DF behind a VLAN tag: answered untagged",
        df(&p),
        18,
        1480,
    ));
    let p = big("198.19.0.100", None, 40);
    c.push(drop_case(
        "v4 1500 bytes without DF: dropped",
        rewrite_v4(&df(&p), |ip| ip.dont_fragment = false),
        Counter::DropEncap,
    ));
    // IPv6: 40 + 20 + 1440 = 1500 bytes, 1540 encapsulated.
    let p = big("fd00:19::100", None, 60);
    c.push(answer(
        "v6 1500 bytes: packet too big, MTU 1460",
        p.build(),
        14,
        1460,
    ));
    c
}

/// ICMP errors about what a backend sent a client from a VIP go to the backend that owns the
/// client's flow (here the ring's pick for it: the table holds none of these flows); anything
/// else of ICMP passes.
fn icmp_errors(vips: &[Vip]) -> Vec<Case> {
    let mut c = Vec::new();
    for (vip_addr, vip, port, proto) in [
        ("198.19.0.100", &vips[0], 80, PROTO_TCP),
        ("198.19.0.100", &vips[1], 53, PROTO_UDP),
        ("fd00:19::100", &vips[2], 80, PROTO_TCP),
        ("fd00:19::100", &vips[3], 53, PROTO_UDP),
    ] {
        for client_port in [41000, 41001, 52000] {
            for ty in [
                IcmpKind::TooBig,
                IcmpKind::Unreachable,
                IcmpKind::TimeExceeded,
            ] {
                let input = icmp_to_vip(
                    vip_addr,
                    ty,
                    &reply_from_vip(vip_addr, port, client_port, proto),
                );
                // The client's flow: client:client_port to vip:port.
                let flow = Pkt::new(vip_addr, port, proto).sport(client_port);
                let (action, counter, output) = encapsulated(vip, &input, 14, &flow);
                c.push(Case {
                    name: format!(
                        "ICMP {ty:?} about {proto} {vip_addr}:{port} -> client:{client_port}"
                    ),
                    input,
                    action,
                    counter,
                    output,
                });
            }
        }
    }
    let reply = reply_from_vip("198.19.0.100", 80, 41000, PROTO_TCP);
    let other = reply_from_vip("198.19.0.101", 80, 41000, PROTO_TCP);
    for (name, input, counter) in [
        (
            "ICMP echo request to a VIP",
            icmp_to_vip("198.19.0.100", IcmpKind::Echo, &[0; 8]),
            Counter::PassNotVip,
        ),
        (
            "ICMPv6 echo request to a VIP",
            icmp_to_vip("fd00:19::100", IcmpKind::Echo, &[0; 8]),
            Counter::PassNotVip,
        ),
        (
            "ICMP error to a VIP quoting a packet from another address",
            icmp_to_vip("198.19.0.100", IcmpKind::TooBig, &other),
            Counter::PassNotVip,
        ),
        (
            "ICMP error quoting only part of an IP header",
            icmp_to_vip("198.19.0.100", IcmpKind::TooBig, &reply[..12]),
            Counter::PassBadL4,
        ),
        (
            "ICMP error quoting the IP header but no ports",
            icmp_to_vip("198.19.0.100", IcmpKind::TooBig, &reply[..22]),
            Counter::PassBadL4,
        ),
    ] {
        c.push(pass(name, input, counter));
    }
    c
}

/// A change to an IPv4 header.
type Shape = fn(&mut etherparse::Ipv4Header);

/// Fragments to the UDP VIPs, which take them: every fragment of a datagram (first, middle,
/// last) goes to the backend its source, destination and protocol pick, whatever its ports
/// say, encapsulated whole.
fn fragments(vips: &[Vip]) -> Vec<Case> {
    let mut c = Vec::new();
    for sport in [40000, 40001, 5353] {
        let p = Pkt::new("198.19.0.100", 53, PROTO_UDP).sport(sport);
        // The pick ignores the ports: hash as if they were zero.
        let three = Pkt {
            sport: 0,
            dport: 0,
            ..p.clone()
        };
        let shapes: [(&str, Shape); 3] = [
            ("first", |ip| ip.more_fragments = true),
            ("middle", |ip| {
                ip.more_fragments = true;
                ip.fragment_offset = etherparse::IpFragOffset::try_new(185).unwrap();
            }),
            ("last", |ip| {
                ip.fragment_offset = etherparse::IpFragOffset::try_new(370).unwrap()
            }),
        ];
        for (which, shape) in shapes {
            let input = rewrite_v4(&p.build(), shape);
            let (action, counter, output) = encapsulated(&vips[1], &input, 14, &three);
            c.push(Case {
                name: format!("v4 udp {which} fragment to a VIP that takes them, sport {sport}"),
                input,
                action,
                counter,
                output,
            });
        }
        let p6 = Pkt::new("fd00:19::100", 53, PROTO_UDP).sport(sport);
        let three6 = Pkt {
            sport: 0,
            dport: 0,
            ..p6.clone()
        };
        for (which, exts) in [
            ("first", vec![fragment(0, true)]),
            ("middle", vec![fragment(185, true)]),
            ("last", vec![fragment(370, false)]),
            (
                "first, behind hop-by-hop",
                vec![hop_by_hop(), fragment(0, true)],
            ),
        ] {
            let input = with_ext(&p6.build(), &exts);
            let (action, counter, output) = encapsulated(&vips[3], &input, 14, &three6);
            c.push(Case {
                name: format!("v6 udp {which} fragment to a VIP that takes them, sport {sport}"),
                input,
                action,
                counter,
                output,
            });
        }
    }
    c.push(pass(
        "v4 fragment with a wrong header checksum",
        edit(
            &rewrite_v4(&Pkt::new("198.19.0.100", 53, PROTO_UDP).build(), |ip| {
                ip.more_fragments = true
            }),
            |f| f[24] ^= 0x55,
        ),
        Counter::PassBadChecksum,
    ));
    c
}

/// A copy of `frame` with `f` applied to its bytes.
fn edit(frame: &[u8], f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut v = frame.to_vec();
    f(&mut v);
    v
}

fn malformed() -> Vec<Case> {
    let mut c = Vec::new();
    // Malformed: passed for the kernel to judge, never aborted, counted by what is wrong.
    let tcp4 = Pkt::new("198.19.0.100", 80, PROTO_TCP).build();
    let udp4 = Pkt::new("198.19.0.100", 53, PROTO_UDP).build();
    let tcp6 = Pkt::new("fd00:19::100", 80, PROTO_TCP).build();
    let udp6 = Pkt::new("fd00:19::100", 53, PROTO_UDP).build();
    // IPv4 at 14 (TCP/UDP at 34), IPv6 at 14 (TCP/UDP at 54).
    let cases: Vec<(&str, Vec<u8>, Counter)> = vec![
        (
            "IPv4 ethertype, version 6 in the header",
            edit(&tcp4, |f| f[14] = 0x65),
            Counter::PassBadIp,
        ),
        (
            "IHL 4 (shorter than a header)",
            edit(&tcp4, |f| f[14] = 0x44),
            Counter::PassBadIp,
        ),
        (
            "IPv6 ethertype, version 4 in the header",
            edit(&tcp6, |f| f[14] = 0x40),
            Counter::PassBadIp,
        ),
        (
            "total length longer than the frame",
            rewrite_v4(&tcp4, |ip| ip.total_len += 100),
            Counter::PassBadLength,
        ),
        (
            "total length shorter than the TCP header",
            rewrite_v4(&tcp4, |ip| ip.total_len = 30),
            Counter::PassBadLength,
        ),
        (
            "IPv6 payload length longer than the frame",
            edit(&tcp6, |f| f[19] += 100),
            Counter::PassBadLength,
        ),
        (
            "IPv6 payload length shorter than the UDP header",
            edit(&udp6, |f| f[18..20].copy_from_slice(&4u16.to_be_bytes())),
            Counter::PassBadLength,
        ),
        (
            "IPv4 header checksum wrong",
            edit(&tcp4, |f| f[24] ^= 0x55),
            Counter::PassBadChecksum,
        ),
        (
            "IPv4 with options, header checksum wrong",
            edit(
                &rewrite_v4(&tcp4, |ip| {
                    ip.options = Ipv4Options::try_from(&[1u8, 1, 1, 0][..]).unwrap()
                }),
                |f| f[24] ^= 0x55,
            ),
            Counter::PassBadChecksum,
        ),
        (
            "TCP data offset 4 (shorter than its header)",
            edit(&tcp4, |f| f[46] = 0x40 | (f[46] & 0x0f)),
            Counter::PassBadL4,
        ),
        (
            "TCP data offset 0",
            edit(&tcp4, |f| f[46] &= 0x0f),
            Counter::PassBadL4,
        ),
        (
            "TCP data offset past the packet",
            edit(&tcp4, |f| f[46] = 0xf0 | (f[46] & 0x0f)),
            Counter::PassBadL4,
        ),
        (
            "IPv6 TCP data offset 4",
            edit(&tcp6, |f| f[66] = 0x40 | (f[66] & 0x0f)),
            Counter::PassBadL4,
        ),
        (
            "zero-length UDP",
            edit(&udp4, |f| f[38..40].copy_from_slice(&[0, 0])),
            Counter::PassBadL4,
        ),
        (
            "UDP length 7",
            edit(&udp4, |f| f[38..40].copy_from_slice(&7u16.to_be_bytes())),
            Counter::PassBadL4,
        ),
        (
            "UDP length past the packet",
            edit(&udp4, |f| f[38..40].copy_from_slice(&900u16.to_be_bytes())),
            Counter::PassBadL4,
        ),
        (
            "IPv6 zero-length UDP",
            edit(&udp6, |f| f[58..60].copy_from_slice(&[0, 0])),
            Counter::PassBadL4,
        ),
        (
            "IPv6 UDP length past the packet",
            edit(&udp6, |f| f[58..60].copy_from_slice(&900u16.to_be_bytes())),
            Counter::PassBadL4,
        ),
        (
            "two VLAN tags (the inner type is no IP)",
            {
                let mut f = Pkt::new("198.19.0.100", 80, PROTO_TCP).vlan(7).build();
                f.splice(16..16, [0x81, 0x00, 0x00, 0x08]);
                f
            },
            Counter::PassNotIp,
        ),
    ];
    for (name, frame, counter) in cases {
        c.push(pass(name, frame, counter));
    }
    // Truncation at every length, of every kind of VIP packet: counted by the header cut.
    for p in [
        Pkt::new("198.19.0.100", 80, PROTO_TCP),
        Pkt::new("198.19.0.100", 53, PROTO_UDP),
        Pkt::new("fd00:19::100", 80, PROTO_TCP),
        Pkt::new("fd00:19::100", 53, PROTO_UDP),
        Pkt::new("198.19.0.100", 80, PROTO_TCP).vlan(7),
    ] {
        let full = p.build();
        let l3 = p.l3_off();
        let l4 = l3 + if p.dst.is_ipv4() { 20 } else { 40 };
        let l4_len = if p.proto == PROTO_TCP { 20 } else { 8 };
        for len in 14..full.len() {
            let name = format!(
                "{} {} truncated to {len} of {}",
                p.dst,
                if p.proto == PROTO_TCP { "tcp" } else { "udp" },
                full.len()
            );
            let counter = if len < l3 {
                Counter::PassMalformed
            } else if len < l4 {
                Counter::PassBadIp
            } else if len < l4 + l4_len {
                Counter::PassBadL4
            } else {
                Counter::PassBadLength
            };
            c.push(pass(name, full[..len].to_vec(), counter));
        }
    }
    c
}

#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn fixtures_through_bpf_prog_test_run() {
    let env = env();
    env.ns.run(|| {
        let mut dp = Dataplane::load(program_names::LB).expect("load xdp_lb");
        let vips = program(&mut dp);
        let ifindex = nix_ifindex("eth0").unwrap();
        let table = cases(&vips);
        assert!(table.len() >= 200, "only {} cases", table.len());
        let mut failures = Vec::new();
        for case in &table {
            let before = dp.outcomes().unwrap();
            let (action, output) = test_run(&mut dp, ifindex, &case.input);
            let after = dp.outcomes().unwrap();
            let moved: Vec<(Counter, u64)> = before
                .iter()
                .zip(&after)
                .filter(|(b, a)| a.1.packets != b.1.packets)
                .map(|(b, a)| (b.0, a.1.packets - b.1.packets))
                .collect();
            if action != case.action {
                failures.push(format!(
                    "{}: action {action}, want {}",
                    case.name, case.action
                ));
            } else if action != XDP_DROP && output != case.output {
                failures.push(format!(
                    "{}: output\n  got  {:02x?}\n  want {:02x?}",
                    case.name, output, case.output
                ));
            } else if moved != [(case.counter, 1)] {
                failures.push(format!(
                    "{}: counters moved {moved:?}, want [({:?}, 1)]",
                    case.name, case.counter
                ));
            }
            assert_ne!(action, XDP_ABORTED, "{}", case.name);
        }
        assert!(
            failures.is_empty(),
            "{} of {} fixtures failed:\n{}",
            failures.len(),
            table.len(),
            failures.join("\n")
        );
        // The forwarded cases spread over all three backends of the main VIP.
        let per_backend: Vec<u64> = (0..3)
            .map(|id| dp.backend_totals(id).unwrap().packets)
            .collect();
        assert!(per_backend.iter().all(|&n| n > 0), "{per_backend:?}");
        eprintln!("{} fixtures passed", table.len());
    });
}
