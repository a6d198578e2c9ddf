//! `tc_probe`: the health probes' way to a backend is the clients' way. The agent's probe
//! sockets carry a mark naming the backend ([`lb_common::PROBE_MARK`] | backend id); their
//! routes send them to the probes' own device, on whose egress this program puts the outer
//! headers the balancer would (IP-in-IP or GUE, to the backend's address, from the probe's
//! own source or, IPv4 over IPv6, the balancer's IPv6 one) and hands the packet to the kernel's neighbour output towards the backend. The
//! backend answers the probe from the VIP, directly, as it answers clients: a pass proves its
//! decapsulation, the VIP on its loopback and the service listening there.
use aya_ebpf::{
    bindings::{
        BPF_F_ADJ_ROOM_ENCAP_L3_IPV4, BPF_F_ADJ_ROOM_ENCAP_L3_IPV6, BPF_F_ADJ_ROOM_ENCAP_L4_UDP,
        BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS, BPF_FIB_LOOKUP_SKIP_NEIGH, TC_ACT_OK,
        TC_ACT_SHOT, bpf_adj_room_mode::BPF_ADJ_ROOM_MAC, bpf_fib_lookup as FibParams,
        bpf_redir_neigh as RedirNeigh,
    },
    helpers::generated::{bpf_fib_lookup, bpf_get_hash_recalc, bpf_redirect_neigh},
    programs::TcContext,
};
use lb_common::{
    Backend, FAMILY_V4, FAMILY_V6, FORWARD_GUE, FORWARD_L2DSR, PROBE_MARK, PROBE_MARK_MASK,
    PROTO_UDP,
    hash::{gue_source_port, ipv4_checksum_of},
};
use network_types::{
    ip::{Ipv4Hdr, Ipv6Hdr},
    udp::UdpHdr,
};

use crate::{
    maps::{BACKENDS, CONFIG},
    wire::{ETH_HLEN, ETH_P_IP, ETH_P_IPV6, IPPROTO_IPIP, IPPROTO_IPV6},
};

const TTL: u8 = 64;

/// A header on the stack at an 8-byte boundary: the verifier refuses a misaligned stack
/// access, and the headers' own alignment is 1, so LLVM would otherwise place them anywhere.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct Aligned<T>(T);

/// The packet's `T` at `off`, read into an aligned stack slot.
#[inline(always)]
fn load<T: Copy>(ctx: &TcContext, off: usize) -> Option<Aligned<T>> {
    let mut v = core::mem::MaybeUninit::<Aligned<T>>::uninit();
    // Safety: the helper writes `size_of::<T>()` bytes into `v`, which holds that many.
    let rc = unsafe {
        aya_ebpf::helpers::generated::bpf_skb_load_bytes(
            ctx.skb.skb as *const _,
            off as u32,
            v.as_mut_ptr() as *mut _,
            size_of::<T>() as u32,
        )
    };
    // Safety: the helper filled it (it zeroes the buffer when it fails).
    (rc == 0).then(|| unsafe { v.assume_init() })
}

/// Writes `v` into the packet at `off`.
#[inline(always)]
fn store<T: Copy>(ctx: &TcContext, off: usize, v: &Aligned<T>) -> Option<()> {
    // Safety: `v` holds `size_of::<T>()` bytes.
    let rc = unsafe {
        aya_ebpf::helpers::generated::bpf_skb_store_bytes(
            ctx.skb.skb as *mut _,
            off as u32,
            v as *const Aligned<T> as *const _,
            size_of::<T>() as u32,
            0,
        )
    };
    (rc == 0).then_some(())
}
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// What becomes of one packet leaving the probes' device: not a probe's (`TC_ACT_OK`), a
/// probe's sent on encapsulated (`TC_ACT_REDIRECT`), or a probe's that cannot go (dropped: it
/// must not leave unencapsulated, or a pass would prove nothing).
#[inline(always)]
pub fn probe(ctx: &TcContext) -> i32 {
    // Safety: the context's sk_buff is valid for the program's run.
    let (mark, protocol) = unsafe { ((*ctx.skb.skb).mark, (*ctx.skb.skb).protocol) };
    if mark & PROBE_MARK_MASK != PROBE_MARK {
        return TC_ACT_OK;
    }
    let Some(be) = BACKENDS.get(mark & !PROBE_MARK_MASK) else {
        return TC_ACT_SHOT;
    };
    let family = u16::from_be(protocol as u16);
    if be.forwarding == FORWARD_L2DSR as u8 {
        // As the clients' packets: unchanged, to the backend's own MAC.
        return match l2dsr(ctx, be, family) {
            Some((ifindex, mut nh)) => {
                // Safety: a helper call; `nh` names the next hop, its size is passed.
                unsafe {
                    bpf_redirect_neigh(ifindex, &mut nh, size_of::<RedirNeigh>() as i32, 0) as i32
                }
            }
            None => TC_ACT_SHOT,
        };
    }
    match encap(ctx, be, family) {
        Some(ifindex) => {
            // Safety: a helper call; no parameters given, the kernel routes the outer header.
            unsafe { bpf_redirect_neigh(ifindex, core::ptr::null_mut(), 0, 0) as i32 }
        }
        None => TC_ACT_SHOT,
    }
}

/// `l2dsr`: the probe's packet unchanged; its egress, and the backend as its next hop.
#[inline(always)]
fn l2dsr(ctx: &TcContext, be: &Backend, family: u16) -> Option<(u32, RedirNeigh)> {
    // Safety: an all-zero bpf_redir_neigh is valid; its fields are written below.
    let mut nh: RedirNeigh = unsafe { core::mem::zeroed() };
    let src = match (family, be.family) {
        (ETH_P_IP, FAMILY_V4) => {
            let inner = load::<Ipv4Hdr>(ctx, ETH_HLEN)?.0;
            if !for_vip(&crate::mem::v4_in_16(inner.dst_addr), be) {
                return None;
            }
            nh.nh_family = AF_INET as u32;
            nh.__bindgen_anon_1.ipv4_nh =
                u32::from_ne_bytes([be.addr[0], be.addr[1], be.addr[2], be.addr[3]]);
            crate::mem::v4_in_16(inner.src_addr)
        }
        (ETH_P_IPV6, FAMILY_V6) => {
            let inner = load::<Ipv6Hdr>(ctx, ETH_HLEN)?.0;
            if !for_vip(&inner.dst_addr, be) {
                return None;
            }
            nh.nh_family = AF_INET6 as u32;
            // Safety: a plain [u32; 4] field, written in place.
            unsafe { crate::send::set_words(&mut nh.__bindgen_anon_1.ipv6_nh, &be.addr) };
            inner.src_addr
        }
        _ => return None,
    };
    let fam = if family == ETH_P_IP {
        FAMILY_V4
    } else {
        FAMILY_V6
    };
    Some((egress(ctx, fam, &src, &be.addr)?, nh))
}

/// The probe's inner destination must be its backend's VIP: a stray mark sends nothing.
#[inline(always)]
fn for_vip(dst: &[u8; 16], be: &Backend) -> bool {
    *dst == be.vip.addr
}

/// The probe's packet in the backend's tunnel (`ipip` or `gue`, outer family the backend's);
/// the egress interface's index.
#[inline(always)]
fn encap(ctx: &TcContext, be: &Backend, family: u16) -> Option<u32> {
    let udp = if be.forwarding == FORWARD_GUE as u8 {
        8
    } else {
        0
    };
    let ifindex = match (family, be.family) {
        (ETH_P_IP, FAMILY_V4) => v4_in_v4(ctx, be, udp)?,
        (ETH_P_IPV6, FAMILY_V6) => v6_in_v6(ctx, be, udp)?,
        (ETH_P_IP, FAMILY_V6) => v4_in_v6(ctx, be, udp)?,
        _ => return None,
    };
    if udp != 0 {
        let outer_ip = if be.family == FAMILY_V4 { 20 } else { 40 };
        let cfg = CONFIG.get(0)?;
        // Safety: a helper reading the sk_buff of this run.
        let hash = unsafe { bpf_get_hash_recalc(ctx.skb.skb) };
        let len = (ctx.len() as usize - ETH_HLEN - outer_ip) as u16;
        let hdr = Aligned(UdpHdr {
            src: gue_source_port(hash).to_be_bytes(),
            dst: cfg.gue_port_be.to_ne_bytes(),
            len: len.to_be_bytes(),
            check: [0, 0],
        });
        store(ctx, ETH_HLEN + outer_ip, &hdr)?;
    }
    Some(ifindex)
}

/// The flags for `bpf_skb_adjust_room` of an outer header of `family` (with UDP for GUE).
#[inline(always)]
fn room_flags(v6: bool, udp: usize) -> u64 {
    let l3 = if v6 {
        BPF_F_ADJ_ROOM_ENCAP_L3_IPV6
    } else {
        BPF_F_ADJ_ROOM_ENCAP_L3_IPV4
    };
    let l4 = if udp != 0 {
        BPF_F_ADJ_ROOM_ENCAP_L4_UDP
    } else {
        0
    };
    (l3 | l4) as u64
}

/// IPv4 in IPv4 (and UDP, `udp` 8) to `be`; the egress interface's index.
#[inline(always)]
fn v4_in_v4(ctx: &TcContext, be: &Backend, udp: usize) -> Option<u32> {
    let inner = load::<Ipv4Hdr>(ctx, ETH_HLEN)?.0;
    if !for_vip(&crate::mem::v4_in_16(inner.dst_addr), be) {
        return None;
    }
    let tot_len = u16::from_be_bytes(inner.tot_len).checked_add(20 + udp as u16)?;
    let dst = [be.addr[0], be.addr[1], be.addr[2], be.addr[3]];
    let ifindex = egress(
        ctx,
        FAMILY_V4,
        &crate::mem::v4_in_16(inner.src_addr),
        &be.addr,
    )?;
    let frags = 0x4000u16;
    let src = inner.src_addr;
    let proto = if udp != 0 { PROTO_UDP } else { IPPROTO_IPIP };
    let outer = Aligned(Ipv4Hdr {
        vihl: 0x45,
        tos: inner.tos,
        tot_len: tot_len.to_be_bytes(),
        id: [0, 0],
        frags: frags.to_be_bytes(),
        ttl: TTL,
        proto,
        check: ipv4_checksum_of(inner.tos, tot_len, frags, TTL, proto, src, dst).to_be_bytes(),
        src_addr: src,
        dst_addr: dst,
    });
    ctx.adjust_room(20 + udp as i32, BPF_ADJ_ROOM_MAC, room_flags(false, udp))
        .ok()?;
    store(ctx, ETH_HLEN, &outer)?;
    Some(ifindex)
}

/// IPv6 in IPv6 (and UDP) to `be`; the egress interface's index.
#[inline(always)]
fn v6_in_v6(ctx: &TcContext, be: &Backend, udp: usize) -> Option<u32> {
    let mut outer = load::<Ipv6Hdr>(ctx, ETH_HLEN)?;
    let inner = &mut outer.0;
    if !for_vip(&inner.dst_addr, be) {
        return None;
    }
    let payload = u16::from_be_bytes(inner.payload_len).checked_add(40 + udp as u16)?;
    let ifindex = egress(ctx, FAMILY_V6, &inner.src_addr, &be.addr)?;
    // The inner header becomes the outer: version, traffic class, flow label and source as
    // the probe's (its flow keeps one path).
    inner.payload_len = payload.to_be_bytes();
    inner.next_hdr = if udp != 0 { PROTO_UDP } else { IPPROTO_IPV6 };
    inner.hop_limit = TTL;
    inner.dst_addr = be.addr;
    ctx.adjust_room(40 + udp as i32, BPF_ADJ_ROOM_MAC, room_flags(true, udp))
        .ok()?;
    store(ctx, ETH_HLEN, &outer)?;
    Some(ifindex)
}

/// IPv4 in IPv6 (and UDP) to `be`, from the balancer's IPv6 source: the packet becomes an
/// IPv6 one for the kernel (its protocol changed, which makes 20 bytes of the room), the
/// rest of the room is made as for the others.
#[inline(always)]
fn v4_in_v6(ctx: &TcContext, be: &Backend, udp: usize) -> Option<u32> {
    let inner = load::<Ipv4Hdr>(ctx, ETH_HLEN)?.0;
    if !for_vip(&crate::mem::v4_in_16(inner.dst_addr), be) {
        return None;
    }
    let cfg = CONFIG.get(0)?;
    let payload = u16::from_be_bytes(inner.tot_len).checked_add(udp as u16)?;
    let ifindex = egress(ctx, FAMILY_V6, &cfg.source_v6, &be.addr)?;
    // Safety: a helper reading the sk_buff of this run.
    let hash = unsafe { bpf_get_hash_recalc(ctx.skb.skb) };
    let vcf = 6u32 << 28 | (inner.tos as u32) << 20 | (hash & 0x000f_ffff);
    let outer = Aligned(Ipv6Hdr {
        vcf: vcf.to_be_bytes(),
        payload_len: payload.to_be_bytes(),
        next_hdr: if udp != 0 { PROTO_UDP } else { IPPROTO_IPIP },
        hop_limit: TTL,
        src_addr: cfg.source_v6,
        dst_addr: be.addr,
    });
    ctx.change_proto(ETH_P_IPV6.to_be(), 0).ok()?;
    ctx.adjust_room(20 + udp as i32, BPF_ADJ_ROOM_MAC, room_flags(true, udp))
        .ok()?;
    store(ctx, ETH_HLEN, &outer)?;
    Some(ifindex)
}

/// The interface the kernel's routes send `dst` out of (its neighbour need not be known yet:
/// the neighbour output resolves it). Looked up as for a packet arriving on the probes'
/// device: an output lookup would take its index as the route's required interface.
#[inline(always)]
fn egress(ctx: &TcContext, family: u8, src: &[u8; 16], dst: &[u8; 16]) -> Option<u32> {
    // Safety: an all-zero bpf_fib_lookup is a valid (empty) request.
    let mut fib: FibParams = unsafe { core::mem::zeroed() };
    // Safety: the context's sk_buff is valid for the program's run.
    fib.ifindex = unsafe { (*ctx.skb.skb).ifindex };
    if family == FAMILY_V4 {
        fib.family = AF_INET;
        fib.l4_protocol = IPPROTO_IPIP;
        fib.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes([src[0], src[1], src[2], src[3]]);
        fib.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes([dst[0], dst[1], dst[2], dst[3]]);
    } else {
        fib.family = AF_INET6;
        fib.l4_protocol = IPPROTO_IPV6;
        // Safety: plain [u32; 4] fields of `fib`, written in place.
        unsafe {
            crate::send::set_words(&mut fib.__bindgen_anon_3.ipv6_src, src);
            crate::send::set_words(&mut fib.__bindgen_anon_4.ipv6_dst, dst);
        }
    }
    // Safety: `fib` is a valid request on the stack; its size is passed.
    let rc = unsafe {
        bpf_fib_lookup(
            ctx.skb.skb as *mut _,
            &mut fib,
            size_of::<FibParams>() as i32,
            BPF_FIB_LOOKUP_SKIP_NEIGH,
        )
    };
    (rc == BPF_FIB_LKUP_RET_SUCCESS as i64 || rc == BPF_FIB_LKUP_RET_NO_NEIGH as i64)
        .then_some(fib.ifindex)
}
