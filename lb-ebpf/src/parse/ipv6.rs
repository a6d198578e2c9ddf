//! IPv6: the fixed header, the extension headers walked to the transport header, fragments
//! told apart.
use lb_common::{Counter, FAMILY_V6, FlowKey, PROTO_TCP, PROTO_UDP};
use network_types::ip::Ipv6Hdr;

use super::{Packet, Stop, l4, other_protocol, to_vip};
use crate::{
    mem::{Bounds, Frame, ptr_at},
    verdict::{Verdict, bad_ip, bad_l4, bad_length},
};

#[inline(always)]
pub(super) fn ipv6(ctx: &Frame, l3_off: usize, vip_checked: bool) -> Result<Packet, Stop> {
    let ip = ptr_at::<Ipv6Hdr>(ctx, l3_off).ok_or(bad_ip())?;
    // Safety: ptr_at checked that the whole header is inside the packet.
    let (v0, next, dst) = unsafe { ((*ip).vcf[0], (*ip).next_hdr, (*ip).dst_addr) };
    if v0 >> 4 != 6 {
        return Err(bad_ip().into());
    }
    if !vip_checked && !crate::guard::maybe_vip(&dst) {
        return Err(Verdict::pass(Counter::PassNotVip).into());
    }
    let (proto, l4_off, fragment) = ext_headers(ctx, next, l3_off + 40)?;
    if fragment {
        return Ok(ipv6_fragment(ctx, l3_off, l4_off, proto, dst)?);
    }
    if proto == crate::wire::IPPROTO_ICMPV6 {
        return to_vip(ctx, l3_off, l4_off - l3_off, FAMILY_V6, dst);
    }
    if proto != PROTO_TCP && proto != PROTO_UDP {
        return Err(other_protocol(dst, FAMILY_V6));
    }
    let l4 = l4(ctx, proto, l4_off)?;
    let ip = ptr_at::<Ipv6Hdr>(ctx, l3_off).ok_or(bad_ip())?;
    let (v1, payload) = unsafe { ((*ip).vcf[1], u16::from_be_bytes((*ip).payload_len) as usize) };
    // What the extension headers take of the payload.
    let ext = l4_off - (l3_off + 40);
    if payload < ext + l4.min_len
        || ctx.data() + l3_off + 40 + payload > ctx.data_end()
        || payload > 0xffff - 40
    {
        return Err(bad_length().into());
    }
    if payload < ext + l4.claimed_len {
        return Err(bad_l4().into());
    }
    Ok(Packet {
        l3_off,
        key: FlowKey {
            src: unsafe { (*ip).src_addr },
            dst,
            ports: l4.ports,
            proto,
            family: FAMILY_V6,
            _pad: [0; 2],
        },
        l3_len: (payload + 40) as u16,
        tos: (v0 << 4) | (v1 >> 4),
        df: false,
        tcp_flags: l4.tcp_flags,
        fragment: false,
        icmp_error: false,
    })
}

/// An IPv6 fragment: `data_off` is where the fragment's data starts (behind its fragment
/// header), `proto` the protocol the fragment header names.
#[inline(always)]
fn ipv6_fragment(
    ctx: &Frame,
    l3_off: usize,
    data_off: usize,
    proto: u8,
    dst: [u8; 16],
) -> Result<Packet, Verdict> {
    let ip = ptr_at::<Ipv6Hdr>(ctx, l3_off).ok_or(bad_ip())?;
    let (v0, v1, payload) = unsafe {
        (
            (*ip).vcf[0],
            (*ip).vcf[1],
            u16::from_be_bytes((*ip).payload_len) as usize,
        )
    };
    let headers = data_off - (l3_off + 40);
    if payload <= headers
        || ctx.data() + l3_off + 40 + payload > ctx.data_end()
        || payload > 0xffff - 40
    {
        return Err(bad_length());
    }
    Ok(Packet {
        l3_off,
        key: FlowKey {
            src: unsafe { (*ip).src_addr },
            dst,
            ports: [0; 4],
            proto,
            family: FAMILY_V6,
            _pad: [0; 2],
        },
        l3_len: (payload + 40) as u16,
        tos: (v0 << 4) | (v1 >> 4),
        df: false,
        tcp_flags: 0,
        fragment: true,
        icmp_error: false,
    })
}

const IPV6_HOP_BY_HOP: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_FRAGMENT: u8 = 44;
const IPV6_AUTH: u8 = 51;
const IPV6_DEST_OPTS: u8 = 60;

/// Walks IPv6 extension headers from `off` (at most [`lb_common::IPV6_EXT_MAX`]) to the
/// transport header: its protocol number, its offset, and whether the packet is a fragment (a
/// non-zero offset or more to come: then the walk stops behind the fragment header, with the
/// protocol it names). An atomic fragment header (neither) is walked past.
#[inline(always)]
fn ext_headers(ctx: &Frame, mut next: u8, mut off: usize) -> Result<(u8, usize, bool), Verdict> {
    for _ in 0..lb_common::IPV6_EXT_MAX {
        let len = match next {
            IPV6_HOP_BY_HOP | IPV6_ROUTING | IPV6_DEST_OPTS | IPV6_FRAGMENT | IPV6_AUTH => {
                let h = ptr_at::<[u8; 4]>(ctx, off).ok_or(bad_ip())?;
                // Safety: ptr_at checked the 4 bytes.
                let (nh, hlen, b2, b3) = unsafe { ((*h)[0], (*h)[1], (*h)[2], (*h)[3]) };
                let len = match next {
                    IPV6_FRAGMENT => {
                        // Offset (13 bits) and the more-fragments bit.
                        if u16::from_be_bytes([b2, b3]) & 0xfff9 != 0 {
                            return Ok((nh, off + 8, true));
                        }
                        8
                    }
                    IPV6_AUTH => (hlen as usize + 2) * 4,
                    _ => (hlen as usize + 1) * 8,
                };
                next = nh;
                len
            }
            _ => return Ok((next, off, false)),
        };
        off += len;
    }
    match next {
        IPV6_HOP_BY_HOP | IPV6_ROUTING | IPV6_DEST_OPTS | IPV6_FRAGMENT | IPV6_AUTH => {
            Err(Verdict::pass(Counter::PassExtLimit))
        }
        _ => Ok((next, off, false)),
    }
}
