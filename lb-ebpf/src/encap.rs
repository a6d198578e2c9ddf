//! Step 7: the headers for direct server return, by the backend's forwarding mode. `ipip`:
//! IP-in-IP (v4-in-v4, v6-in-v6, v4-in-v6); `gue`: the same with a UDP header between (GUE
//! variant 1); the inner packet is left exactly as the client sent it, a new Ethernet header
//! and the outer headers, of the backend's address family, are put in front of it. `l2dsr`:
//! only a new Ethernet header, to the backend's own MAC. A VLAN tag on the way in is not
//! carried out: the egress is the interface the kernel's route names, untagged.
use aya_ebpf::{helpers::generated::bpf_xdp_adjust_head, programs::XdpContext};
use lb_common::{
    Backend, Config, FAMILY_V4, FORWARD_GUE, FORWARD_L2DSR, PROTO_UDP,
    hash::{flow_hash, gue_source_port, ipv4_checksum_of, outer_source_v4, outer_source_v6_low},
};
use network_types::{
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
    udp::UdpHdr,
};

use crate::{
    mem::ptr_at_mut,
    packet::Packet,
    wire::{ETH_P_IP, ETH_P_IPV6},
};

use crate::wire::{IPPROTO_IPIP, IPPROTO_IPV6};
const TTL: u8 = 64;

/// Bytes the backend's forwarding mode adds to a packet: the outer IP header (of the
/// backend's family), with a UDP header for `gue`; nothing for `l2dsr`.
#[inline(always)]
pub fn overhead(be: &Backend) -> usize {
    if be.forwarding == FORWARD_L2DSR as u8 {
        return 0;
    }
    let ip = if be.family == FAMILY_V4 { 20 } else { 40 };
    if be.forwarding == FORWARD_GUE as u8 {
        ip + 8
    } else {
        ip
    }
}

/// Puts Ethernet + outer IP in front of the packet's IP header. `None` if the packet could
/// not be grown (no headroom). `hash`: the flow's hash if known, else 0.
#[inline(always)]
pub fn encap(
    ctx: &XdpContext,
    pkt: &Packet,
    cfg: &Config,
    be: &Backend,
    dmac: &[u8; 6],
    smac: &[u8; 6],
    hash: u32,
) -> Option<()> {
    let outer = overhead(be);
    // The old Ethernet header (and VLAN tag) is reused as room: grow by what is missing.
    let grow = outer as i32 - (pkt.l3_off as i32 - 14);
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -grow) } != 0 {
        return None;
    }
    // Headers are written field by field straight into the packet: building them on the
    // stack first and copying would cost stack and a copy per packet.
    let eth = ptr_at_mut::<EthHdr>(ctx, 0)?;
    // The outer header's family is the backend's (for l2dsr, the packet's own, the same).
    let ether_type = if be.family == FAMILY_V4 {
        ETH_P_IP
    } else {
        ETH_P_IPV6
    };
    unsafe {
        copy_mac(&mut (*eth).dst_addr, dmac);
        copy_mac(&mut (*eth).src_addr, smac);
        (*eth).ether_type = ether_type.to_be();
    }
    if outer == 0 {
        // l2dsr: the client's IP packet goes on as it came.
        return Some(());
    }
    let gue = be.forwarding == FORWARD_GUE as u8;
    if be.family == FAMILY_V4 {
        if !gue {
            // IP-in-IP over IPv4, the common case, on its own: the hash as given (0 picks
            // the prefix's first source).
            return write_v4(ctx, pkt, cfg, be, hash, false);
        }
        let hash = known(pkt, hash);
        write_v4(ctx, pkt, cfg, be, hash, true)?;
        return write_udp(ctx, 14 + 20, pkt.l3_len + 8, cfg, hash);
    }
    let hash = known(pkt, hash);
    write_v6(ctx, pkt, cfg, be, hash, gue)?;
    if gue {
        write_udp(ctx, 14 + 40, pkt.l3_len + 8, cfg, hash)?;
    }
    Some(())
}

/// The flow's hash: the one its flow-table entry or the ring pick gave, or computed here where
/// neither did (an ICMP error about the flow).
#[inline(always)]
fn known(pkt: &Packet, hash: u32) -> u32 {
    if hash != 0 {
        return hash;
    }
    let k = &pkt.key;
    flow_hash(&k.src, &k.dst, pkt.sport(), pkt.dport(), k.proto)
}

/// GUE's UDP header: the source port from the flow's hash, no checksum. Over IPv4 a zero
/// checksum means none; over IPv6, RFC 6935 allows it for tunnels, whose inner packet carries
/// its own (the kernel's fou accepts it unless told otherwise, and so does `xdp_decap`).
#[inline(always)]
fn write_udp(ctx: &XdpContext, off: usize, len: u16, cfg: &Config, hash: u32) -> Option<()> {
    let udp = ptr_at_mut::<UdpHdr>(ctx, off)?;
    let sport = gue_source_port(hash);
    // Source and destination port as one word, length and checksum as another.
    let ports = (sport as u32) << 16 | u16::from_be(cfg.gue_port_be) as u32;
    // Safety: ptr_at_mut checked that the header is inside the packet.
    unsafe {
        (udp as *mut u32).write_unaligned(ports.to_be());
        (udp as *mut u32)
            .add(1)
            .write_unaligned(((len as u32) << 16).to_be());
    }
    Some(())
}

/// Copies a MAC address as three 16-bit words. `src` may be on the stack (the route lookup's
/// answer), where the verifier wants every access aligned to its size; volatile reads keep
/// LLVM from merging them into a wider load the address may not be aligned for.
#[inline(always)]
fn copy_mac(dst: &mut [u8; 6], src: &[u8; 6]) {
    let s = src.as_ptr() as *const u16;
    let d = dst.as_mut_ptr() as *mut u16;
    // Safety: both are six bytes; a MAC inside a C struct is 2-byte aligned (after an even
    // number of bytes in bpf_fib_lookup and in lb_common::NextHop), and the packet's side
    // has no alignment rule.
    unsafe {
        for i in 0..3 {
            d.add(i).write_unaligned(core::ptr::read_volatile(s.add(i)));
        }
    }
}

#[inline(always)]
fn write_v4(
    ctx: &XdpContext,
    pkt: &Packet,
    cfg: &Config,
    be: &Backend,
    hash: u32,
    gue: bool,
) -> Option<()> {
    let ip = ptr_at_mut::<Ipv4Hdr>(ctx, 14)?;
    // One source, or one of a prefix chosen by the flow's hash (`agent.source_v4_prefix`).
    let src = outer_source_v4(cfg.source_v4, cfg.flags, hash);
    let (proto, tot_len) = if gue {
        (PROTO_UDP, pkt.l3_len + 28)
    } else {
        (IPPROTO_IPIP, pkt.l3_len + 20)
    };
    let frags: u16 = if pkt.df { 0x4000 } else { 0 };
    // One 4-byte load (an array built from four indexed bytes is four loads).
    // Safety: the address's first 4 bytes; an unaligned read.
    let dst = unsafe { (be.addr.as_ptr() as *const [u8; 4]).read_unaligned() };
    let check = ipv4_checksum_of(pkt.tos, tot_len, frags, TTL, proto, src, dst);
    // Safety: ptr_at_mut checked that the header is inside the packet.
    unsafe {
        (*ip).vihl = 0x45;
        (*ip).tos = pkt.tos;
        (*ip).tot_len = tot_len.to_be_bytes();
        (*ip).id = [0, 0];
        (*ip).frags = frags.to_be_bytes();
        (*ip).ttl = TTL;
        (*ip).proto = proto;
        (*ip).check = check.to_be_bytes();
        (*ip).src_addr = src;
        (*ip).dst_addr = dst;
    }
    Some(())
}

#[inline(always)]
fn write_v6(
    ctx: &XdpContext,
    pkt: &Packet,
    cfg: &Config,
    be: &Backend,
    hash: u32,
    gue: bool,
) -> Option<()> {
    let ip = ptr_at_mut::<Ipv6Hdr>(ctx, 14)?;
    // The flow label carries the flow hash, so that ECMP on the way to the backend keeps a
    // flow on one path (RFC 6438).
    let (next, payload) = if gue {
        (PROTO_UDP, pkt.l3_len + 8)
    } else if pkt.key.family == FAMILY_V4 {
        (IPPROTO_IPIP, pkt.l3_len)
    } else {
        (IPPROTO_IPV6, pkt.l3_len)
    };
    // The header's first 8 bytes (version, traffic class, flow label, payload length, next
    // header, hop limit) as one big-endian word: one store, where the fields one by one were
    // eight byte stores and the shifts to make them.
    let first = 6u64 << 60
        | (pkt.tos as u64) << 52
        | ((hash & 0x000f_ffff) as u64) << 32
        | (payload as u64) << 16
        | (next as u64) << 8
        | TTL as u64;
    // Safety: ptr_at_mut checked that the header is inside the packet.
    unsafe {
        (ip as *mut u64).write_unaligned(first.to_be());
        copy16(&mut (*ip).src_addr, &cfg.source_v6);
        copy16(&mut (*ip).dst_addr, &be.addr);
        // Its last 32 bits chosen by the flow's hash (`agent.source_v6_prefix`).
        if (cfg.flags >> 16) & 0xff >= 2 {
            let low = [
                cfg.source_v6[12],
                cfg.source_v6[13],
                cfg.source_v6[14],
                cfg.source_v6[15],
            ];
            let p = core::ptr::addr_of_mut!((*ip).src_addr) as *mut u8;
            (p.add(12) as *mut [u8; 4]).write_unaligned(outer_source_v6_low(low, cfg.flags, hash));
        }
    }
    Some(())
}

/// Copies an address as two 8-byte words. A plain assignment of the array became a call of
/// BPF's `memcpy` for one address (a BPF-to-BPF call, and its return through the SRSO thunk on
/// this kernel) and sixteen byte loads and stores for the other. `src` is a map value (the
/// configuration, a backend's entry), where the verifier allows unaligned accesses.
#[inline(always)]
fn copy16(dst: &mut [u8; 16], src: &[u8; 16]) {
    let (s, d) = (src.as_ptr() as *const u64, dst.as_mut_ptr() as *mut u64);
    // Safety: both are 16 bytes; unaligned accesses.
    unsafe {
        d.write_unaligned(s.read_unaligned());
        d.add(1).write_unaligned(s.add(1).read_unaligned());
    }
}
