//! Packet fixtures through BPF_PROG_TEST_RUN on the real loaded `xdp_lb`: each case has an
//! input frame, the expected verdict, the counter it must land in, and the exact output
//! bytes. Packets are built with etherparse, never typed as hex; expected outer headers are
//! built with etherparse too (its own checksum code), so the program is checked against an
//! independent implementation.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use aya::programs::{TestRun, TestRunOptions};
use etherparse::{
    IpNumber, Ipv4Header, Ipv4Options, Ipv6FlowLabel, Ipv6Header, PacketBuilder, VlanId,
};
use lb::{
    dataplane::{self, Dataplane, nix_ifindex},
    maglev,
};
use lb_common::{Counter, NO_BACKEND, PROTO_TCP, PROTO_UDP, hash::flow_hash, program_names};
use lb_tests::Netns;

const XDP_ABORTED: u32 = 0;
const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const XDP_REDIRECT: u32 = 4;

const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const ETH0_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const ETH1_MAC: [u8; 6] = [0x02, 0, 0, 0, 1, 0x02];
const CLIENT4: [u8; 4] = [198, 18, 7, 1];
const CLIENT6: [u8; 16] = [0xfd, 0, 0, 0x18, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const SRC4: [u8; 4] = [198, 18, 0, 2];
const SRC6: [u8; 16] = [0xfd, 0, 0, 0x18, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
const RING: u32 = 251;

fn v4(s: &str) -> [u8; 4] {
    s.parse::<Ipv4Addr>().unwrap().octets()
}
fn mac_of(last: u8, net: u8) -> [u8; 6] {
    [0x02, 0, 0, 0, net, last]
}

/// One VIP as the fixtures program it.
struct Vip {
    /// (backend id, address, mac of its next hop, egress interface mac)
    backends: Vec<(u32, IpAddr, [u8; 6], [u8; 6])>,
    ring: Vec<u32>,
}

struct Env {
    ns: Netns,
}

/// A namespace with two interfaces (eth0 facing clients and most backends, eth1 facing one
/// more backend), permanent neighbours with known MACs, forwarding on.
fn env() -> Env {
    lb_tests::require_root();
    let ns = Netns::new("fx");
    ns.sh(
        "ip link add eth0 address 02:00:00:00:00:02 type veth peer name peer0 \
         && ip link add eth1 address 02:00:00:00:01:02 type veth peer name peer1 \
         && for i in eth0 eth1 peer0 peer1; do ip link set $i up; done \
         && ip addr add 198.18.0.2/24 dev eth0 && ip addr add fd00:18::2/64 dev eth0 nodad \
         && ip addr add 198.18.1.2/24 dev eth1 && ip addr add fd00:18:1::2/64 dev eth1 nodad \
         && sysctl -qw net.ipv4.conf.all.forwarding=1 net.ipv6.conf.all.forwarding=1 \
         && for n in 11 12 13; do \
              ip neigh add 198.18.0.$n lladdr 02:00:00:00:00:$n dev eth0 nud permanent; \
              ip neigh add fd00:18::$n lladdr 02:00:00:00:00:$n dev eth0 nud permanent; done \
         && ip neigh add 198.18.1.21 lladdr 02:00:00:00:01:21 dev eth1 nud permanent \
         && ip neigh add fd00:18:1::21 lladdr 02:00:00:00:01:21 dev eth1 nud permanent",
    );
    Env { ns }
}

fn program(dp: &mut Dataplane) -> Vec<Vip> {
    dp.set_sources(Some(Ipv4Addr::from(SRC4)), Some(Ipv6Addr::from(SRC6)))
        .unwrap();
    dp.allow_egress(nix_ifindex("eth0").unwrap()).unwrap();
    dp.allow_egress(nix_ifindex("eth1").unwrap()).unwrap();
    let mut next_id = 0u32;
    let mut vips = Vec::new();
    let mut add = |dp: &mut Dataplane,
                   addr: &str,
                   port: u16,
                   proto: u8,
                   backends: &[(&str, [u8; 6], [u8; 6])]| {
        let addr: IpAddr = addr.parse().unwrap();
        let mut bs = Vec::new();
        for (b, mac, egress) in backends {
            let ip: IpAddr = b.parse().unwrap();
            dp.set_backend(next_id, ip).unwrap();
            bs.push((next_id, ip, *mac, *egress));
            next_id += 1;
        }
        let weights: Vec<(IpAddr, u32)> = bs.iter().map(|b| (b.1, 100)).collect();
        let ring: Vec<u32> = maglev::build(&weights, RING)
            .into_iter()
            .map(|i| bs.get(i as usize).map_or(NO_BACKEND, |b| b.0))
            .collect();
        let id = vips.len() as u32;
        dp.set_vip(id, dataplane::vip_key(addr, port, proto), &ring)
            .unwrap();
        vips.push(Vip { backends: bs, ring });
    };
    let three4 = [
        ("198.18.0.11", mac_of(0x11, 0), ETH0_MAC),
        ("198.18.0.12", mac_of(0x12, 0), ETH0_MAC),
        ("198.18.0.13", mac_of(0x13, 0), ETH0_MAC),
    ];
    let three6 = [
        ("fd00:18::11", mac_of(0x11, 0), ETH0_MAC),
        ("fd00:18::12", mac_of(0x12, 0), ETH0_MAC),
        ("fd00:18::13", mac_of(0x13, 0), ETH0_MAC),
    ];
    add(dp, "198.19.0.100", 80, PROTO_TCP, &three4); // 0
    add(dp, "198.19.0.100", 53, PROTO_UDP, &three4); // 1
    add(dp, "fd00:19::100", 80, PROTO_TCP, &three6); // 2
    add(dp, "fd00:19::100", 53, PROTO_UDP, &three6); // 3
    add(dp, "198.19.0.101", 0, PROTO_TCP, &three4); // 4: every port
    add(dp, "198.19.0.102", 80, PROTO_TCP, &[]); // 5: no backend
    add(
        dp,
        "198.19.0.103",
        80,
        PROTO_TCP,
        &[("198.18.1.21", mac_of(0x21, 1), ETH1_MAC)],
    ); // 6: other interface
    add(
        dp,
        "198.19.0.104",
        80,
        PROTO_TCP,
        &[("198.18.0.99", [0; 6], ETH0_MAC)],
    ); // 7: no neighbour
    add(
        dp,
        "198.19.0.105",
        80,
        PROTO_TCP,
        &[("198.18.5.5", [0; 6], ETH0_MAC)],
    ); // 8: no route
    add(
        dp,
        "fd00:19::103",
        80,
        PROTO_TCP,
        &[("fd00:18:1::21", mac_of(0x21, 1), ETH1_MAC)],
    ); // 9: v6 other interface
    vips
}

/// A client packet: Ethernet (optionally VLAN-tagged), IPv4 or IPv6, TCP or UDP.
#[derive(Clone)]
struct Pkt {
    dst: IpAddr,
    sport: u16,
    dport: u16,
    proto: u8,
    vlan: Option<u16>,
    payload: Vec<u8>,
}

impl Pkt {
    fn new(dst: &str, dport: u16, proto: u8) -> Self {
        Pkt {
            dst: dst.parse().unwrap(),
            sport: 40000,
            dport,
            proto,
            vlan: None,
            payload: b"hello".to_vec(),
        }
    }
    fn sport(mut self, p: u16) -> Self {
        self.sport = p;
        self
    }
    fn vlan(mut self, id: u16) -> Self {
        self.vlan = Some(id);
        self
    }
    fn src(&self) -> IpAddr {
        match self.dst {
            IpAddr::V4(_) => IpAddr::from(CLIENT4),
            IpAddr::V6(_) => IpAddr::from(CLIENT6),
        }
    }
    fn build(&self) -> Vec<u8> {
        let eth = PacketBuilder::ethernet2(CLIENT_MAC, ETH0_MAC);
        let mut out = Vec::new();
        macro_rules! l4 {
            ($ip:expr) => {
                if self.proto == PROTO_TCP {
                    $ip.tcp(self.sport, self.dport, 1000, 65000)
                        .syn()
                        .write(&mut out, &self.payload)
                        .unwrap()
                } else {
                    $ip.udp(self.sport, self.dport)
                        .write(&mut out, &self.payload)
                        .unwrap()
                }
            };
        }
        match (self.dst, self.vlan) {
            (IpAddr::V4(d), None) => l4!(eth.ipv4(CLIENT4, d.octets(), 64)),
            (IpAddr::V6(d), None) => l4!(eth.ipv6(CLIENT6, d.octets(), 64)),
            (IpAddr::V4(d), Some(v)) => {
                l4!(eth
                    .single_vlan(VlanId::try_new(v).unwrap())
                    .ipv4(CLIENT4, d.octets(), 64))
            }
            (IpAddr::V6(d), Some(v)) => {
                l4!(eth
                    .single_vlan(VlanId::try_new(v).unwrap())
                    .ipv6(CLIENT6, d.octets(), 64))
            }
        }
        out
    }
    fn l3_off(&self) -> usize {
        if self.vlan.is_some() { 18 } else { 14 }
    }
}

fn addr16(ip: IpAddr) -> [u8; 16] {
    dataplane::addr_bytes(ip).0
}

/// The frame xdp_lb must emit for `frame` (whose IP header starts at `l3_off`) sent to `vip`.
fn encapsulated(vip: &Vip, frame: &[u8], l3_off: usize, p: &Pkt) -> (u32, Counter, Vec<u8>) {
    let h = flow_hash(
        &addr16(p.src()),
        &addr16(p.dst),
        p.sport.to_be_bytes(),
        p.dport.to_be_bytes(),
        p.proto,
    );
    let id = vip.ring[(h % vip.ring.len() as u32) as usize];
    let (_, backend, mac, egress) = *vip
        .backends
        .iter()
        .find(|b| b.0 == id)
        .expect("ring names a backend");
    let inner = &frame[l3_off..];
    let mut out = Vec::new();
    let (ether_type, action, counter) = match (backend.is_ipv4(), egress == ETH0_MAC) {
        (true, true) => (0x0800u16, XDP_TX, Counter::Tx),
        (false, true) => (0x86dd, XDP_TX, Counter::Tx),
        (true, false) => (0x0800, XDP_REDIRECT, Counter::Redirect),
        (false, false) => (0x86dd, XDP_REDIRECT, Counter::Redirect),
    };
    out.extend_from_slice(&mac);
    out.extend_from_slice(&egress);
    out.extend_from_slice(&ether_type.to_be_bytes());
    match backend {
        IpAddr::V4(b) => {
            let inner_len = u16::from_be_bytes([inner[2], inner[3]]);
            let mut ip = Ipv4Header::new(inner_len, 64, IpNumber(4), SRC4, b.octets()).unwrap();
            ip.dont_fragment = inner[6] & 0x40 != 0;
            ip.header_checksum = ip.calc_header_checksum();
            ip.write(&mut out).unwrap();
            out.extend_from_slice(inner);
        }
        IpAddr::V6(b) => {
            let inner_len = 40 + u16::from_be_bytes([inner[4], inner[5]]);
            let ip = Ipv6Header {
                traffic_class: 0,
                flow_label: Ipv6FlowLabel::try_new(h & 0xfffff).unwrap(),
                payload_length: inner_len,
                next_header: IpNumber(41),
                hop_limit: 64,
                source: SRC6,
                destination: b.octets(),
            };
            ip.write(&mut out).unwrap();
            out.extend_from_slice(inner);
        }
    }
    (action, counter, out)
}

struct Case {
    name: String,
    input: Vec<u8>,
    action: u32,
    counter: Counter,
    output: Vec<u8>,
}

fn pass(name: impl Into<String>, input: Vec<u8>, counter: Counter) -> Case {
    Case {
        name: name.into(),
        output: input.clone(),
        input,
        action: XDP_PASS,
        counter,
    }
}

fn drop_case(name: impl Into<String>, input: Vec<u8>, counter: Counter) -> Case {
    // A dropped packet's bytes are not looked at; the program leaves them as they came.
    Case {
        name: name.into(),
        output: input.clone(),
        input,
        action: XDP_DROP,
        counter,
    }
}

fn forward(name: impl Into<String>, vip: &Vip, p: &Pkt) -> Case {
    let input = p.build();
    let (action, counter, output) = encapsulated(vip, &input, p.l3_off(), p);
    Case {
        name: name.into(),
        input,
        action,
        counter,
        output,
    }
}

/// Sets the IPv4 header's fields after building (options, lengths, flags), fixing its checksum.
fn rewrite_v4(frame: &[u8], f: impl FnOnce(&mut Ipv4Header)) -> Vec<u8> {
    let (mut ip, rest) = Ipv4Header::from_slice(&frame[14..]).unwrap();
    let payload = rest.to_vec();
    f(&mut ip);
    ip.header_checksum = ip.calc_header_checksum();
    let mut out = frame[..14].to_vec();
    ip.write(&mut out).unwrap();
    out.extend_from_slice(&payload);
    out
}

fn cases(vips: &[Vip]) -> Vec<Case> {
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

    // Dropped and counted.
    c.push(drop_case(
        "VIP without backends",
        Pkt::new("198.19.0.102", 80, PROTO_TCP).build(),
        Counter::DropNoBackend,
    ));
    c.push(drop_case(
        "backend next hop unresolved",
        Pkt::new("198.19.0.104", 80, PROTO_TCP).build(),
        Counter::DropNoNeigh,
    ));
    c.push(drop_case(
        "backend without route",
        Pkt::new("198.19.0.105", 80, PROTO_TCP).build(),
        Counter::DropNoRoute,
    ));

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
    let frag = rewrite_v4(&Pkt::new("198.19.0.100", 53, PROTO_UDP).build(), |ip| {
        ip.more_fragments = true
    });
    c.push(pass(
        "v4 first fragment (more fragments)",
        frag,
        Counter::PassFragment,
    ));
    let frag = rewrite_v4(&Pkt::new("198.19.0.100", 53, PROTO_UDP).build(), |ip| {
        ip.fragment_offset = etherparse::IpFragOffset::try_new(100).unwrap()
    });
    c.push(pass("v4 later fragment", frag, Counter::PassFragment));

    // Malformed: passed for the kernel to judge, never aborted.
    let good = Pkt::new("198.19.0.100", 80, PROTO_TCP).build();
    let mut bad_ver = good.clone();
    bad_ver[14] = 0x65;
    c.push(pass(
        "IPv4 ethertype, version 6 in the header",
        bad_ver,
        Counter::PassMalformed,
    ));
    let mut bad_ihl = good.clone();
    bad_ihl[14] = 0x44;
    c.push(pass(
        "IHL 4 (shorter than a header)",
        bad_ihl,
        Counter::PassMalformed,
    ));
    let lying = rewrite_v4(&good, |ip| ip.total_len += 100);
    c.push(pass(
        "total length longer than the frame",
        lying,
        Counter::PassMalformed,
    ));
    let short = rewrite_v4(&good, |ip| ip.total_len = 30);
    c.push(pass(
        "total length shorter than the TCP header",
        short,
        Counter::PassMalformed,
    ));
    // Truncation at every length, of every kind of VIP packet.
    for p in [
        Pkt::new("198.19.0.100", 80, PROTO_TCP),
        Pkt::new("198.19.0.100", 53, PROTO_UDP),
        Pkt::new("fd00:19::100", 80, PROTO_TCP),
        Pkt::new("fd00:19::100", 53, PROTO_UDP),
        Pkt::new("198.19.0.100", 80, PROTO_TCP).vlan(7),
    ] {
        let full = p.build();
        for len in 14..full.len() {
            let name = format!(
                "{} {} truncated to {len} of {}",
                p.dst,
                if p.proto == PROTO_TCP { "tcp" } else { "udp" },
                full.len()
            );
            c.push(pass(name, full[..len].to_vec(), Counter::PassMalformed));
        }
    }
    c
}

fn test_run(dp: &mut Dataplane, ifindex: u32, input: &[u8]) -> (u32, Vec<u8>) {
    let mut out = vec![0u8; input.len() + 256];
    // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex
    let md: [u32; 6] = [0, input.len() as u32, 0, ifindex, 0, 0];
    let ctx: Vec<u8> = md.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let r = dp
        .program()
        .unwrap()
        .test_run(TestRunOptions {
            data_in: Some(input),
            data_out: Some(&mut out),
            ctx_in: Some(&ctx),
            ..Default::default()
        })
        .expect("BPF_PROG_TEST_RUN");
    out.truncate(r.data_size_out as usize);
    (r.return_value, out)
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
        assert!(table.len() >= 30, "only {} cases", table.len());
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
