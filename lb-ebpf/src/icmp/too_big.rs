//! Answers for packets too big for the encapsulated path: ICMP "fragmentation needed" (IPv4,
//! when the client set don't-fragment) or ICMPv6 "packet too big", sent back to the client
//! with the MTU that leaves room for the outer header, so its kernel lowers the path MTU.
//!
//! The reply is built in place: the head grows so that the client's IP header stays where it
//! is and becomes the quoted part, new Ethernet, IP and ICMP headers go in front, and the
//! tail is cut after the quoted header and 8 bytes of its payload.
use aya_ebpf::{
    bindings::xdp_action,
    helpers::generated::{bpf_xdp_adjust_head, bpf_xdp_adjust_tail},
    programs::XdpContext,
};
use lb_common::{Counter, FAMILY_V4, FlowKey, hash::csum_fold, hash::ipv4_checksum_of};

use crate::{
    mem::{Frame, ptr_at, ptr_at_mut},
    packet::Packet,
    verdict::Verdict,
};

const ICMP_HDR: usize = 8;
/// What of the client's packet past its IP header the reply quotes (ports and more).
const QUOTED_PAYLOAD: usize = 8;
const IPV6_MIN_MTU: u32 = 1280;

/// Answers `pkt` with "too big" for a path whose MTU is `path_mtu` and on which the
/// forwarding mode adds `overhead` bytes; returns the packed verdict. Not inlined: a frame of
/// its own, off the forwarding path.
#[inline(never)]
pub fn too_big_packed(ctx: &XdpContext, pkt: &Packet, path_mtu: u32, overhead: u32) -> u64 {
    too_big(ctx, pkt, path_mtu.saturating_sub(overhead)).pack()
}

/// The reply's shape: its IP header's length, the length of the client's IP header it quotes,
/// and the MTU it announces.
struct Shape {
    ip_hdr: usize,
    quoted_ip: usize,
    mtu: u32,
}

#[inline(always)]
fn too_big(ctx: &XdpContext, pkt: &Packet, mtu: u32) -> Verdict {
    let refuse = Verdict::drop(Counter::DropEncap);
    let v4 = pkt.key.family == FAMILY_V4;
    let Some(shape) = shape(ctx, pkt, v4, mtu) else {
        return refuse;
    };
    // The client's and our MACs, before the headers move (as integers: byte arrays on the
    // stack could be accessed at offsets the verifier finds misaligned).
    let (Some(d), Some(s)) = (ptr_at::<[u8; 6]>(ctx, 0), ptr_at::<[u8; 6]>(ctx, 6)) else {
        return refuse;
    };
    let (our_mac, client_mac) = unsafe { (mac(d), mac(s)) };
    if !make_room(ctx, pkt.l3_off, &shape) {
        return refuse;
    }
    let icmp_len = (ICMP_HDR + shape.quoted_ip + QUOTED_PAYLOAD) as u16;
    let icmp_off = 14 + shape.ip_hdr;
    // Ethernet: back to the client, from us; then the IP and ICMP headers, the checksum last.
    let ok = put_mac(ctx, 0, client_mac)
        && put_mac(ctx, 6, our_mac)
        && put(ctx, 12, if v4 { 0x0800u16 } else { 0x86dd }.to_be())
        && if v4 {
            headers_v4(ctx, &pkt.key, icmp_len, shape.mtu)
        } else {
            headers_v6(ctx, &pkt.key, icmp_len, shape.mtu)
        }
        && checksum(ctx, &pkt.key, v4, icmp_off, icmp_len);
    if !ok {
        return refuse;
    }
    Verdict::new(xdp_action::XDP_TX, Counter::IcmpTooBig)
}

/// The reply's [`Shape`], if there is one to send, announcing `mtu` (the path's less the
/// forwarding mode's overhead): IPv4 without don't-fragment asks routers to fragment, which
/// this program does not do.
#[inline(always)]
fn shape(ctx: &XdpContext, pkt: &Packet, v4: bool, mtu: u32) -> Option<Shape> {
    if v4 && !pkt.df {
        return None;
    }
    let shape = if v4 {
        let ihl = ((unsafe { *ptr_at::<u8>(ctx, pkt.l3_off)? } & 0x0f) as usize) * 4;
        Shape {
            ip_hdr: 20,
            quoted_ip: ihl,
            mtu,
        }
    } else {
        Shape {
            ip_hdr: 40,
            quoted_ip: 40,
            mtu: mtu.max(IPV6_MIN_MTU),
        }
    };
    if !(20..=60).contains(&shape.quoted_ip) || shape.mtu < 68 {
        return None;
    }
    Some(shape)
}

/// Grows the head so that the client's IP header (at `l3_off`) lands right behind the new
/// headers, and cuts the tail after the quoted part.
#[inline(always)]
fn make_room(ctx: &XdpContext, l3_off: usize, shape: &Shape) -> bool {
    let front = 14 + shape.ip_hdr + ICMP_HDR;
    let grow = front as i32 - l3_off as i32;
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -grow) } != 0 {
        return false;
    }
    let len = front + shape.quoted_ip + QUOTED_PAYLOAD;
    let now = ctx.data_end() - ctx.data();
    now >= len && unsafe { bpf_xdp_adjust_tail(ctx.ctx, len as i32 - now as i32) } == 0
}

/// IPv4 from the VIP to the client, and ICMP "destination unreachable, fragmentation needed"
/// with the MTU (its checksum written by [`checksum`]).
#[inline(always)]
fn headers_v4(ctx: &XdpContext, k: &FlowKey, icmp_len: u16, mtu: u32) -> bool {
    let src = [k.dst[0], k.dst[1], k.dst[2], k.dst[3]];
    let dst = [k.src[0], k.src[1], k.src[2], k.src[3]];
    let tot_len = 20 + icmp_len;
    let check = ipv4_checksum_of(0, tot_len, 0, 64, 1, src, dst);
    put(ctx, 14, u16::from_be_bytes([0x45, 0]).to_be())
        && put(ctx, 16, tot_len.to_be())
        && put(ctx, 18, 0u32)
        && put(ctx, 22, u16::from_be_bytes([64, 1]).to_be())
        && put(ctx, 24, check.to_be())
        && put(ctx, 26, u32::from_ne_bytes(src))
        && put(ctx, 30, u32::from_ne_bytes(dst))
        && put(ctx, 34, u16::from_be_bytes([3, 4]).to_be())
        && put(ctx, 36, 0u16)
        && put(ctx, 38, 0u16)
        && put(ctx, 40, (mtu as u16).to_be())
}

/// IPv6 from the VIP to the client, and ICMPv6 "packet too big" with the MTU (its checksum
/// written by [`checksum`]).
#[inline(always)]
fn headers_v6(ctx: &XdpContext, k: &FlowKey, icmp_len: u16, mtu: u32) -> bool {
    put(ctx, 14, 0x6000_0000u32.to_be())
        && put(ctx, 18, icmp_len.to_be())
        && put(ctx, 20, u16::from_be_bytes([58, 64]).to_be())
        && put(ctx, 22, u64::from_ne_bytes(half(&k.dst, 0)))
        && put(ctx, 30, u64::from_ne_bytes(half(&k.dst, 8)))
        && put(ctx, 38, u64::from_ne_bytes(half(&k.src, 0)))
        && put(ctx, 46, u64::from_ne_bytes(half(&k.src, 8)))
        && put(ctx, 54, u16::from_be_bytes([2, 0]).to_be())
        && put(ctx, 56, 0u16)
        && put(ctx, 58, mtu.to_be())
}

/// The ICMP checksum over the ICMP message (and, for ICMPv6, the pseudo-header), written
/// into it.
#[inline(always)]
fn checksum(ctx: &XdpContext, k: &FlowKey, v4: bool, icmp_off: usize, icmp_len: u16) -> bool {
    let frame = Frame {
        start: ctx.data(),
        end: ctx.data_end(),
    };
    let mut sum = if v4 {
        0u32
    } else {
        crate::csum::pseudo_v6(&k.dst, &k.src, icmp_len as u32)
    };
    sum += crate::csum::words(&frame, icmp_off, icmp_len as usize);
    let check = !csum_fold(sum);
    put(ctx, icmp_off + 2, check.to_be_bytes())
}

/// Writes `v` at `off` in the packet; false if the packet is too short.
#[inline(always)]
fn put<T>(ctx: &XdpContext, off: usize, v: T) -> bool {
    match ptr_at_mut::<T>(ctx, off) {
        // Safety: ptr_at_mut checked the bounds; unaligned write.
        Some(p) => {
            unsafe { p.write_unaligned(v) };
            true
        }
        None => false,
    }
}

/// A MAC as (first four bytes, last two), read as integers.
#[inline(always)]
unsafe fn mac(p: *const [u8; 6]) -> (u32, u16) {
    unsafe {
        (
            (p as *const u32).read_unaligned(),
            (p as *const u8).add(4).cast::<u16>().read_unaligned(),
        )
    }
}

#[inline(always)]
fn put_mac(ctx: &XdpContext, off: usize, m: (u32, u16)) -> bool {
    put(ctx, off, m.0) && put(ctx, off + 4, m.1)
}

/// Eight bytes of an address, from `at`.
#[inline(always)]
fn half(a: &[u8; 16], at: usize) -> [u8; 8] {
    [
        a[at],
        a[at + 1],
        a[at + 2],
        a[at + 3],
        a[at + 4],
        a[at + 5],
        a[at + 6],
        a[at + 7],
    ]
}
