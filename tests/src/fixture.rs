//! Fixture packets ([`Pkt`]), the frames `xdp_lb` must turn them into, and running a frame
//! through the loaded program with BPF_PROG_TEST_RUN.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use aya::programs::{TestRun, TestRunOptions};
use etherparse::{IpDscp, IpEcn, IpNumber, Ipv4Header, Ipv6FlowLabel, Ipv6Header};
use lb::{
    dataplane::{self, Dataplane, ServedVip, nix_ifindex},
    maglev,
};
use lb_common::{
    BACKEND_UP, Counter, FORWARD_GUE, FORWARD_IPIP, FORWARD_L2DSR, NO_BACKEND, PROTO_TCP,
    PROTO_UDP,
    hash::{flow_hash, gue_source_port},
};

use crate::Netns;

mod icmp;
mod pkt;

pub use icmp::{IcmpKind, icmp_to_vip, reply_from_vip};
pub use pkt::Pkt;

pub const XDP_ABORTED: u32 = 0;
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;
pub const XDP_REDIRECT: u32 = 4;

pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const ETH0_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
pub const ETH1_MAC: [u8; 6] = [0x02, 0, 0, 0, 1, 0x02];
pub const CLIENT4: [u8; 4] = [198, 18, 7, 1];
pub const CLIENT6: [u8; 16] = [0xfd, 0, 0, 0x18, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
pub const SRC4: [u8; 4] = [198, 18, 0, 2];
pub const SRC6: [u8; 16] = [0xfd, 0, 0, 0x18, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
pub const RING: u32 = 251;
/// The GUE port the fixtures program.
pub const GUE_PORT: u16 = 6080;

pub fn v4(s: &str) -> [u8; 4] {
    s.parse::<Ipv4Addr>().unwrap().octets()
}
pub fn mac_of(last: u8, net: u8) -> [u8; 6] {
    [0x02, 0, 0, 0, net, last]
}

/// One VIP as the fixtures program it.
pub struct Vip {
    /// (backend id, address, mac of its next hop, egress interface mac)
    pub backends: Vec<(u32, IpAddr, [u8; 6], [u8; 6])>,
    pub ring: Vec<u32>,
    /// What its backends' entries record of it.
    pub served: ServedVip,
}

pub fn addr16(ip: IpAddr) -> [u8; 16] {
    dataplane::addr_bytes(ip).0
}

/// The frame xdp_lb must emit for `frame` (whose IP header starts at `l3_off`) sent to `vip`.
pub fn encapsulated(vip: &Vip, frame: &[u8], l3_off: usize, p: &Pkt) -> (u32, Counter, Vec<u8>) {
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
    if vip.served.forwarding == FORWARD_L2DSR as u8 {
        // The client's packet as it came, to the backend's MAC.
        out.extend_from_slice(inner);
        return (action, counter, out);
    }
    // GUE: a UDP header between the outer IP header and the client's packet.
    let gue = vip.served.forwarding == FORWARD_GUE as u8;
    let udp = if gue { 8 } else { 0 };
    let inner_v4 = inner[0] >> 4 == 4;
    let inner_len = if inner_v4 {
        u16::from_be_bytes([inner[2], inner[3]])
    } else {
        40 + u16::from_be_bytes([inner[4], inner[5]])
    };
    let next = match (gue, inner_v4) {
        (true, _) => 17,
        (false, true) => 4,
        (false, false) => 41,
    };
    match backend {
        IpAddr::V4(b) => {
            let mut ip =
                Ipv4Header::new(inner_len + udp, 64, IpNumber(next), SRC4, b.octets()).unwrap();
            ip.dont_fragment = inner[6] & 0x40 != 0;
            ip.dscp = IpDscp::try_new(p.tos >> 2).unwrap();
            ip.ecn = IpEcn::try_new(p.tos & 3).unwrap();
            ip.header_checksum = ip.calc_header_checksum();
            ip.write(&mut out).unwrap();
        }
        IpAddr::V6(b) => {
            let ip = Ipv6Header {
                traffic_class: p.tos,
                flow_label: Ipv6FlowLabel::try_new(h & 0xfffff).unwrap(),
                payload_length: inner_len + udp,
                next_header: IpNumber(next),
                hop_limit: 64,
                source: SRC6,
                destination: b.octets(),
            };
            ip.write(&mut out).unwrap();
        }
    }
    if gue {
        // Source port from the flow's hash, no checksum (none over IPv4; RFC 6935 over IPv6).
        out.extend_from_slice(&gue_source_port(h).to_be_bytes());
        out.extend_from_slice(&GUE_PORT.to_be_bytes());
        out.extend_from_slice(&(inner_len + 8).to_be_bytes());
        out.extend_from_slice(&[0, 0]);
    }
    out.extend_from_slice(inner);
    (action, counter, out)
}

pub struct Case {
    pub name: String,
    pub input: Vec<u8>,
    pub action: u32,
    pub counter: Counter,
    pub output: Vec<u8>,
}

pub fn pass(name: impl Into<String>, input: Vec<u8>, counter: Counter) -> Case {
    Case {
        name: name.into(),
        output: input.clone(),
        input,
        action: XDP_PASS,
        counter,
    }
}

pub fn drop_case(name: impl Into<String>, input: Vec<u8>, counter: Counter) -> Case {
    // A dropped packet's bytes are not looked at; the program leaves them as they came.
    Case {
        name: name.into(),
        output: input.clone(),
        input,
        action: XDP_DROP,
        counter,
    }
}

pub fn forward(name: impl Into<String>, vip: &Vip, p: &Pkt) -> Case {
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
pub fn rewrite_v4(frame: &[u8], f: impl FnOnce(&mut Ipv4Header)) -> Vec<u8> {
    let (mut ip, rest) = Ipv4Header::from_slice(&frame[14..]).unwrap();
    let payload = rest.to_vec();
    f(&mut ip);
    ip.header_checksum = ip.calc_header_checksum();
    let mut out = frame[..14].to_vec();
    ip.write(&mut out).unwrap();
    out.extend_from_slice(&payload);
    out
}

pub fn test_run(dp: &mut Dataplane, ifindex: u32, input: &[u8]) -> (u32, Vec<u8>) {
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

/// [`test_run`], and the outcome counters it moved (each with by how much).
pub fn test_run_counted(
    dp: &mut Dataplane,
    ifindex: u32,
    input: &[u8],
) -> (u32, Vec<u8>, Vec<(Counter, u64)>) {
    let before = dp.outcomes().unwrap();
    let (action, out) = test_run(dp, ifindex, input);
    let after = dp.outcomes().unwrap();
    let moved = before
        .iter()
        .zip(&after)
        .filter(|(b, a)| a.1.packets != b.1.packets)
        .map(|(b, a)| (b.0, a.1.packets - b.1.packets))
        .collect();
    (action, out, moved)
}

pub struct Env {
    pub ns: Netns,
}

/// A namespace with two interfaces (eth0 facing clients and most backends, eth1 facing one
/// more backend), permanent neighbours with known MACs, forwarding on.
pub fn env() -> Env {
    crate::require_root();
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

/// `xdp_lb` loaded as the agent loads it, with a flow table of 1024 entries and its maps
/// pinned under `pin_dir/maps/` (made here if missing): what an earlier load pinned there is
/// reused. `what` names the load in a failure.
pub fn load_pinned(pin_dir: &std::path::Path, what: &str) -> Dataplane {
    std::fs::create_dir_all(pin_dir.join("maps")).expect("the pin folder");
    Dataplane::load_pinned(
        1024,
        pin_dir,
        lb::dataplane::ProgramLog::Off,
        lb_common::TCP_IDLE_DEFAULT_S,
    )
    .unwrap_or_else(|e| panic!("{what}: {e}"))
}

pub fn program(dp: &mut Dataplane) -> Vec<Vip> {
    dp.set_sources(Some(Ipv4Addr::from(SRC4)), Some(Ipv6Addr::from(SRC6)))
        .unwrap();
    dp.set_gue_port(GUE_PORT).unwrap();
    dp.allow_egress(nix_ifindex("eth0").unwrap()).unwrap();
    dp.allow_egress(nix_ifindex("eth1").unwrap()).unwrap();
    let mut next_id = 0u32;
    let mut vips = Vec::new();
    let mut add_as = |dp: &mut Dataplane,
                      addr: &str,
                      port: u16,
                      proto: u8,
                      backends: &[(&str, [u8; 6], [u8; 6])],
                      forwarding: u32| {
        let addr: IpAddr = addr.parse().unwrap();
        let served = ServedVip {
            id: vips.len() as u32,
            key: dataplane::vip_key(addr, port, proto),
            udp_idle_s: 30,
            forwarding: forwarding as u8,
        };
        let mut bs = Vec::new();
        for (b, mac, egress) in backends {
            let ip: IpAddr = b.parse().unwrap();
            // l2dsr backends have their next hop from the start: the agent puts them in
            // service only then (a route lookup could name a router).
            let hop = if forwarding == FORWARD_L2DSR {
                lb_common::NextHop {
                    ifindex: nix_ifindex("eth0").unwrap(),
                    mtu: 1500,
                    dmac: *mac,
                    smac: *egress,
                }
            } else {
                Default::default()
            };
            dp.set_backend(next_id, ip, served, BACKEND_UP, hop)
                .unwrap();
            bs.push((next_id, ip, *mac, *egress));
            next_id += 1;
        }
        let weights: Vec<(IpAddr, u32)> = bs.iter().map(|b| (b.1, 100)).collect();
        let ring: Vec<u32> = maglev::build(&weights, RING)
            .into_iter()
            .map(|i| bs.get(i as usize).map_or(NO_BACKEND, |b| b.0))
            .collect();
        // The UDP VIPs on port 53 take fragments too.
        let fragments = proto == PROTO_UDP && port == 53;
        dp.set_vip(served.id, served.key, &ring, fragments, 0)
            .unwrap();
        vips.push(Vip {
            backends: bs,
            ring,
            served,
        });
    };
    let mut add = |dp: &mut Dataplane,
                   addr: &str,
                   port: u16,
                   proto: u8,
                   backends: &[(&str, [u8; 6], [u8; 6])]| {
        add_as(dp, addr, port, proto, backends, FORWARD_IPIP)
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
    add_as(dp, "198.19.0.106", 80, PROTO_TCP, &three4, FORWARD_L2DSR); // 10: l2dsr
    add_as(dp, "198.19.0.106", 54, PROTO_UDP, &three4, FORWARD_L2DSR); // 11
    add_as(dp, "fd00:19::106", 80, PROTO_TCP, &three6, FORWARD_L2DSR); // 12
    add_as(dp, "fd00:19::106", 54, PROTO_UDP, &three6, FORWARD_L2DSR); // 13
    add_as(dp, "198.19.0.107", 80, PROTO_TCP, &three4, FORWARD_GUE); // 14: gue
    add_as(dp, "198.19.0.107", 54, PROTO_UDP, &three4, FORWARD_GUE); // 15
    add_as(dp, "fd00:19::107", 80, PROTO_TCP, &three6, FORWARD_GUE); // 16
    add_as(dp, "fd00:19::107", 54, PROTO_UDP, &three6, FORWARD_GUE); // 17
    add_as(dp, "198.19.0.108", 80, PROTO_TCP, &three6, FORWARD_IPIP); // 18: IPv4 in IPv6
    add_as(dp, "198.19.0.108", 54, PROTO_UDP, &three6, FORWARD_IPIP); // 19
    add_as(dp, "198.19.0.109", 80, PROTO_TCP, &three6, FORWARD_GUE); // 20: IPv4 in UDP in IPv6
    add_as(dp, "198.19.0.109", 54, PROTO_UDP, &three6, FORWARD_GUE); // 21
    // As the agent does once it has applied a change: every VIP laid out in the index.
    dp.settle_vip_index().unwrap();
    vips
}

/// Gives every backend of `vips` its next hop in its entry, as the agent does (out of the
/// interface whose MAC is the backend's egress MAC, to the backend's own MAC), so that the
/// program skips the kernel's route lookup.
pub fn cache_next_hops(dp: &mut Dataplane, vips: &[Vip]) {
    for v in vips {
        for (id, addr, mac, egress) in &v.backends {
            if *mac == [0; 6] {
                continue; // the fixtures' unresolved and unroutable backends
            }
            let dev = if *egress == ETH0_MAC { "eth0" } else { "eth1" };
            let hop = lb_common::NextHop {
                ifindex: nix_ifindex(dev).unwrap(),
                mtu: 1500,
                dmac: *mac,
                smac: *egress,
            };
            dp.set_backend(*id, *addr, v.served, BACKEND_UP, hop)
                .unwrap();
        }
    }
}
