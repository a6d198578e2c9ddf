//! ICMP to a VIP: errors about what a backend sent a client, steered to the backend that owns
//! the client's flow; echo requests, answered in place when the agent asks for it.
use lb_common::{Counter, FAMILY_V4, FAMILY_V6, FlowKey, PROTO_TCP, PROTO_UDP};
use network_types::ip::{Ipv4Hdr, Ipv6Hdr};

use super::{Packet, bad_ip, bad_l4, bad_length, eq16};
use crate::{
    mem::{Bounds, Frame, ptr_at},
    verdict::Verdict,
};

/// An ICMP error (IPv4: destination unreachable, time exceeded, parameter problem; IPv6: the
/// same and packet too big) at `l3_off + hdrs`, quoting a TCP or UDP packet sent from `dst` (a
/// VIP, by a backend, straight to the client): the packet for the backend that owns the
/// client's flow. Anything else of ICMP (echo included) is the kernel's.
#[inline(always)]
pub(super) fn error(
    ctx: &Frame,
    l3_off: usize,
    hdrs: usize,
    family: u8,
    dst: [u8; 16],
) -> Result<Packet, Verdict> {
    let not_ours = Verdict::pass(Counter::PassNotVip);
    let icmp_off = l3_off + hdrs;
    // Type and code together: a one-byte read's bounds check is one LLVM rewrites into a
    // form the verifier does not learn the packet's range from.
    let ty = unsafe { (*ptr_at::<[u8; 2]>(ctx, icmp_off).ok_or(bad_l4())?)[0] };
    let v4 = family == FAMILY_V4;
    if ty == if v4 { 8 } else { 128 } {
        return Err(echo(ctx, l3_off, icmp_off, v4, &dst));
    }
    let error = if v4 {
        matches!(ty, 3 | 11 | 12)
    } else {
        matches!(ty, 1..=4)
    };
    if !error {
        return Err(not_ours);
    }
    // The quoted packet: its IP header, then at least the 8 bytes holding the ports.
    let q = icmp_off + 8;
    let (src, qdst, proto, ports_off) = if v4 {
        let ip = ptr_at::<Ipv4Hdr>(ctx, q).ok_or(bad_l4())?;
        let (vihl, proto, s, d) =
            unsafe { ((*ip).vihl, (*ip).proto, (*ip).src_addr, (*ip).dst_addr) };
        let qihl = ((vihl & 0x0f) as usize) * 4;
        if vihl >> 4 != 4 || qihl < 20 {
            return Err(bad_l4());
        }
        (
            crate::mem::v4_in_16(s),
            crate::mem::v4_in_16(d),
            proto,
            q + qihl,
        )
    } else {
        let ip = ptr_at::<Ipv6Hdr>(ctx, q).ok_or(bad_l4())?;
        let (v0, proto, s, d) =
            unsafe { ((*ip).vcf[0], (*ip).next_hdr, (*ip).src_addr, (*ip).dst_addr) };
        if v0 >> 4 != 6 {
            return Err(bad_l4());
        }
        (s, d, proto, q + 40)
    };
    if (proto != PROTO_TCP && proto != PROTO_UDP) || !eq16(&src, &dst) {
        return Err(not_ours);
    }
    let p = ptr_at::<[u8; 4]>(ctx, ports_off).ok_or(bad_l4())?;
    let ports = unsafe { p.read_unaligned() };
    // The outer packet's length, as for any packet.
    let (l3_len, tos, df) = if v4 {
        let ip = ptr_at::<Ipv4Hdr>(ctx, l3_off).ok_or(bad_ip())?;
        let (len, tos, frags) = unsafe {
            (
                u16::from_be_bytes((*ip).tot_len),
                (*ip).tos,
                u16::from_be_bytes((*ip).frags),
            )
        };
        if crate::csum::header_sum(ctx, l3_off, hdrs) != 0xffff {
            return Err(Verdict::pass(Counter::PassBadChecksum));
        }
        (len as usize, tos, frags & 0x4000 != 0)
    } else {
        let ip = ptr_at::<Ipv6Hdr>(ctx, l3_off).ok_or(bad_ip())?;
        let (v0, v1, payload) = unsafe {
            (
                (*ip).vcf[0],
                (*ip).vcf[1],
                u16::from_be_bytes((*ip).payload_len) as usize,
            )
        };
        (payload + 40, (v0 << 4) | (v1 >> 4), false)
    };
    if ctx.data() + l3_off + l3_len > ctx.data_end() || l3_len < hdrs + 8 || l3_len > 0xffff {
        return Err(bad_length());
    }
    Ok(Packet {
        l3_off,
        key: FlowKey {
            // The client's flow: the quoted packet's addresses and ports, reversed.
            src: qdst,
            dst,
            // The two ports swapped as the halves of one word (indexed bytes would make LLVM
            // carry every packet's ports as bytes: see `Packet::sport`).
            ports: u32::from_le_bytes(ports).rotate_left(16).to_le_bytes(),
            proto,
            family,
            _pad: [0; 2],
        },
        l3_len: l3_len as u16,
        tos,
        df,
        tcp_flags: 0,
        fragment: false,
        icmp_error: true,
    })
}

/// An echo request to `dst`: answered in place (addresses and MACs swapped, the type made a
/// reply, the checksums mended) when `dst` is a VIP address whose echoes the agent answers;
/// passed otherwise.
#[inline(always)]
fn echo(ctx: &Frame, l3_off: usize, icmp_off: usize, v4: bool, dst: &[u8; 16]) -> Verdict {
    let key = lb_common::AddrKey {
        addr: *dst,
        family: if v4 { FAMILY_V4 } else { FAMILY_V6 },
        _pad: [0; 3],
    };
    if unsafe { crate::maps::ECHO.get(&key) }.is_none() {
        return Verdict::pass(Counter::PassNotVip);
    }
    let (Some(eth), Some(icmp)) = (
        ptr_at::<[u16; 6]>(ctx, 0),
        ptr_at::<[u16; 2]>(ctx, icmp_off),
    ) else {
        return bad_l4();
    };
    // Safety: both checked above; unaligned accesses.
    unsafe {
        let e = eth as *mut u16;
        for i in 0..3 {
            let (a, b) = (e.add(i).read_unaligned(), e.add(3 + i).read_unaligned());
            e.add(i).write_unaligned(b);
            e.add(3 + i).write_unaligned(a);
        }
        let w = icmp as *mut u16;
        let old = w.read_unaligned();
        // Echo request to reply: IPv4 8 to 0, ICMPv6 128 to 129 (the type is the high byte).
        let new = u16::from_ne_bytes([if v4 { 0 } else { 129 }, old.to_ne_bytes()[1]]);
        w.write_unaligned(new);
        let check = w.add(1);
        check.write_unaligned(crate::csum::mend(check.read_unaligned(), old, new));
    }
    // Addresses swap; the sums over them (IPv4 header, ICMPv6 pseudo-header) stay as they are.
    let swapped = if v4 {
        ptr_at::<[u32; 2]>(ctx, l3_off + 12).map(|a| unsafe {
            let a = a as *mut u32;
            let (s, d) = (a.read_unaligned(), a.add(1).read_unaligned());
            a.write_unaligned(d);
            a.add(1).write_unaligned(s);
        })
    } else {
        ptr_at::<[u64; 4]>(ctx, l3_off + 8).map(|a| unsafe {
            let a = a as *mut u64;
            for i in 0..2 {
                let (s, d) = (a.add(i).read_unaligned(), a.add(2 + i).read_unaligned());
                a.add(i).write_unaligned(d);
                a.add(2 + i).write_unaligned(s);
            }
        })
    };
    match swapped {
        Some(()) => Verdict::new(aya_ebpf::bindings::xdp_action::XDP_TX, Counter::IcmpEcho),
        None => bad_ip(),
    }
}
