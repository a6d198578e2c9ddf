//! Step 7: the headers for direct server return, by the backend's forwarding mode. `ipip`:
//! IP-in-IP (v4-in-v4, v6-in-v6); the inner packet is left exactly as the client sent it, a
//! new Ethernet header and an outer IP header are put in front of it. `l2dsr`: only a new
//! Ethernet header, to the backend's own MAC. A VLAN tag on the way in is not carried out:
//! the egress is the interface the kernel's route names, untagged.
use aya_ebpf::{helpers::generated::bpf_xdp_adjust_head, programs::XdpContext};
use lb_common::{
    Backend, Config, FAMILY_V4, FORWARD_L2DSR,
    hash::{flow_hash, ipv4_checksum_of, outer_source_v4, outer_source_v6_low},
};
use network_types::{
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
};

use crate::{
    mem::ptr_at_mut,
    packet::Packet,
    wire::{ETH_P_IP, ETH_P_IPV6},
};

use crate::wire::{IPPROTO_IPIP, IPPROTO_IPV6};
const TTL: u8 = 64;

/// Bytes the backend's forwarding mode adds to a packet of `family`: the outer IP header, or
/// nothing (`l2dsr`).
#[inline(always)]
pub fn overhead(be: &Backend, family: u8) -> usize {
    if be.forwarding == FORWARD_L2DSR as u8 {
        0
    } else if family == FAMILY_V4 {
        20
    } else {
        40
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
    let outer = overhead(be, pkt.key.family);
    // The old Ethernet header (and VLAN tag) is reused as room: grow by what is missing.
    let grow = outer as i32 - (pkt.l3_off as i32 - 14);
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -grow) } != 0 {
        return None;
    }
    // Headers are written field by field straight into the packet: building them on the
    // stack first and copying would cost stack and a copy per packet.
    let eth = ptr_at_mut::<EthHdr>(ctx, 0)?;
    let ether_type = if pkt.key.family == FAMILY_V4 {
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
    if pkt.key.family == FAMILY_V4 {
        write_v4(ctx, pkt, cfg, be, hash)
    } else {
        write_v6(ctx, pkt, cfg, be, hash)
    }
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
fn write_v4(ctx: &XdpContext, pkt: &Packet, cfg: &Config, be: &Backend, hash: u32) -> Option<()> {
    let ip = ptr_at_mut::<Ipv4Hdr>(ctx, 14)?;
    // One source, or one of a prefix chosen by the flow's hash (`agent.source_v4_prefix`).
    let src = outer_source_v4(cfg.source_v4, cfg.flags, hash);
    let tot_len = pkt.l3_len + 20;
    let frags: u16 = if pkt.df { 0x4000 } else { 0 };
    // One 4-byte load (an array built from four indexed bytes is four loads).
    // Safety: the address's first 4 bytes; an unaligned read.
    let dst = unsafe { (be.addr.as_ptr() as *const [u8; 4]).read_unaligned() };
    let check = ipv4_checksum_of(pkt.tos, tot_len, frags, TTL, IPPROTO_IPIP, src, dst);
    // Safety: ptr_at_mut checked that the header is inside the packet.
    unsafe {
        (*ip).vihl = 0x45;
        (*ip).tos = pkt.tos;
        (*ip).tot_len = tot_len.to_be_bytes();
        (*ip).id = [0, 0];
        (*ip).frags = frags.to_be_bytes();
        (*ip).ttl = TTL;
        (*ip).proto = IPPROTO_IPIP;
        (*ip).check = check.to_be_bytes();
        (*ip).src_addr = src;
        (*ip).dst_addr = dst;
    }
    Some(())
}

#[inline(always)]
fn write_v6(ctx: &XdpContext, pkt: &Packet, cfg: &Config, be: &Backend, hash: u32) -> Option<()> {
    let ip = ptr_at_mut::<Ipv6Hdr>(ctx, 14)?;
    // The flow label carries the flow hash, so that ECMP on the way to the backend keeps a
    // flow on one path (RFC 6438): the one its flow-table entry or the ring pick gave, or
    // computed here where neither did.
    let k = &pkt.key;
    let hash = if hash != 0 {
        hash
    } else {
        flow_hash(&k.src, &k.dst, pkt.sport(), pkt.dport(), k.proto)
    };
    // The header's first 8 bytes (version, traffic class, flow label, payload length, next
    // header, hop limit) as one big-endian word: one store, where the fields one by one were
    // eight byte stores and the shifts to make them.
    let first = 6u64 << 60
        | (pkt.tos as u64) << 52
        | ((hash & 0x000f_ffff) as u64) << 32
        | (pkt.l3_len as u64) << 16
        | (IPPROTO_IPV6 as u64) << 8
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
