//! Step 2: Ethernet (one 802.1Q/802.1ad tag allowed), IPv4 (any IHL) or IPv6, TCP or UDP ports.
//! Anything we do not balance comes back as a pass verdict, counted by why.
use core::mem::MaybeUninit;

use lb_common::{AddrKey, Counter, FAMILY_V4, FlowKey, PROTO_TCP, PROTO_UDP};
use network_types::ip::{Ipv4Hdr, Ipv6Hdr};

mod ipv6;

use crate::packet::Packet;
use crate::{
    icmp::{self, Kind, echo},
    mem::{Bounds, Frame, ptr_at, read},
    verdict::{Verdict, bad_ip, bad_l4, bad_length, malformed},
    wire::{ETH_HLEN, ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6},
};

const VLAN_HLEN: usize = 4;

/// Why the parser stops short of a packet to balance.
///
/// With a word for its tag: in rustc's own layout of the `Result` the parser returns, the
/// code generator wrote the packet's key in pieces at odd offsets of the stack, which the
/// verifier refuses.
#[repr(C, u64)]
pub enum Stop {
    /// Not ours, or not sane: the verdict says which.
    Verdict(Verdict),
    /// An echo request to a VIP address, for [`icmp::echo`] to answer.
    Echo(echo::Request),
    /// Neither TCP, UDP nor ICMP, to this address (perhaps a VIP's): no VIP balances it.
    OtherProtocol(AddrKey),
}

impl From<Verdict> for Stop {
    #[inline(always)]
    fn from(v: Verdict) -> Self {
        Stop::Verdict(v)
    }
}

/// Parses the frame into `out`, which is written whole when it returns `Ok`. Inlined into the
/// balancer: a BPF function call and its return (through the SRSO return thunk on this
/// kernel) cost a VIP packet more than the extra stack. `vip_checked`:
/// [`crate::guard::quick_pass`] found the destination may be a VIP's, so the filter is not
/// asked again.
#[inline(always)]
pub fn parse(frame: &Frame, out: &mut MaybeUninit<Packet>, vip_checked: bool) -> Result<(), Stop> {
    out.write(packet(frame, vip_checked)?);
    Ok(())
}

#[inline(always)]
fn packet(ctx: &Frame, vip_checked: bool) -> Result<Packet, Stop> {
    let eth_type: [u8; 2] = read(ctx, 12).ok_or(malformed())?;
    let mut ether_type = u16::from_be_bytes(eth_type);
    let mut l3_off = ETH_HLEN;
    if ether_type == ETH_P_8021Q || ether_type == ETH_P_8021AD {
        // The tag's TCI (2 bytes), then the encapsulated type.
        let inner: [u8; 2] = read(ctx, ETH_HLEN + 2).ok_or(malformed())?;
        ether_type = u16::from_be_bytes(inner);
        l3_off += VLAN_HLEN;
    }
    match ether_type {
        ETH_P_IP => ipv4(ctx, l3_off, vip_checked),
        ETH_P_IPV6 => ipv6::ipv6(ctx, l3_off, vip_checked),
        // ARP, LLDP, a second VLAN tag, ...: not ours.
        _ => Err(Verdict::pass(Counter::PassNotIp).into()),
    }
}

// Headers are read field by field through a checked pointer, not copied whole: every copy
// takes BPF stack, and the verifier allows 512 bytes for the deepest chain of calls.

#[inline(always)]
fn ipv4(ctx: &Frame, l3_off: usize, vip_checked: bool) -> Result<Packet, Stop> {
    let ip = ptr_at::<Ipv4Hdr>(ctx, l3_off).ok_or(bad_ip())?;
    // Safety: ptr_at checked that the whole header is inside the packet.
    let (vihl, frags, proto, dst) = unsafe {
        (
            (*ip).vihl,
            u16::from_be_bytes((*ip).frags),
            (*ip).proto,
            crate::mem::v4_in_16((*ip).dst_addr),
        )
    };
    if vihl >> 4 != 4 {
        return Err(bad_ip().into());
    }
    if !vip_checked && !crate::guard::maybe_vip(&dst) {
        return Err(Verdict::pass(Counter::PassNotVip).into());
    }
    let ihl = ((vihl & 0x0f) as usize) * 4;
    if ihl < 20 {
        return Err(bad_ip().into());
    }
    // More-fragments set, or a non-zero offset: ports are missing or incomplete.
    if frags & 0x3fff != 0 {
        return Ok(ipv4_fragment(ctx, l3_off, ihl, frags, proto, dst)?);
    }
    // Lengths are compared as packet pointers against the packet's end: the verifier refuses
    // arithmetic on the end pointer. The transport header is read (bounds-checked against the
    // packet) before the length fields are judged: were the length check first, LLVM would
    // prove the bounds check redundant and drop it, and the verifier (which tracks pointers,
    // not that proof) would reject the program.
    if proto == crate::wire::IPPROTO_ICMP {
        return to_vip(ctx, l3_off, ihl, FAMILY_V4, dst);
    }
    if proto != PROTO_TCP && proto != PROTO_UDP {
        return Err(other_protocol(dst, FAMILY_V4));
    }
    let l4 = l4(ctx, proto, l3_off + ihl)?;
    let ip = ptr_at::<Ipv4Hdr>(ctx, l3_off).ok_or(bad_ip())?;
    let (l3_len, tos, src) =
        unsafe { (u16::from_be_bytes((*ip).tot_len), (*ip).tos, (*ip).src_addr) };
    let l3_len_us = l3_len as usize;
    if ctx.data() + l3_off + l3_len_us > ctx.data_end() || l3_len_us < ihl + l4.min_len {
        return Err(bad_length().into());
    }
    if l3_len_us < ihl + l4.claimed_len {
        return Err(bad_l4().into());
    }
    // The common 20-byte header is summed here, through the pointer already checked; a header
    // with options, in a function of its own.
    let sum = if ihl == 20 {
        crate::csum::fold5(ip as *const u32)
    } else {
        crate::csum::header_sum(ctx, l3_off, ihl)
    };
    if sum != 0xffff {
        return Err(Verdict::pass(Counter::PassBadChecksum).into());
    }
    Ok(Packet {
        l3_off,
        key: FlowKey {
            src: crate::mem::v4_in_16(src),
            dst,
            ports: l4.ports,
            proto,
            family: FAMILY_V4,
            _pad: [0; 2],
        },
        l3_len,
        tos,
        df: frags & 0x4000 != 0,
        tcp_flags: l4.tcp_flags,
        fragment: false,
        icmp_error: false,
    })
}

/// An IPv4 fragment: lengths and checksum judged as for any packet, no ports.
#[inline(always)]
fn ipv4_fragment(
    ctx: &Frame,
    l3_off: usize,
    ihl: usize,
    frags: u16,
    proto: u8,
    dst: [u8; 16],
) -> Result<Packet, Verdict> {
    let ip = ptr_at::<Ipv4Hdr>(ctx, l3_off).ok_or(bad_ip())?;
    let (l3_len, tos, src) =
        unsafe { (u16::from_be_bytes((*ip).tot_len), (*ip).tos, (*ip).src_addr) };
    let l3_len_us = l3_len as usize;
    if ctx.data() + l3_off + l3_len_us > ctx.data_end() || l3_len_us <= ihl {
        return Err(bad_length());
    }
    if crate::csum::header_sum(ctx, l3_off, ihl) != 0xffff {
        return Err(Verdict::pass(Counter::PassBadChecksum));
    }
    Ok(Packet {
        l3_off,
        key: FlowKey {
            src: crate::mem::v4_in_16(src),
            dst,
            ports: [0; 4],
            proto,
            family: FAMILY_V4,
            _pad: [0; 2],
        },
        l3_len,
        tos,
        df: frags & 0x4000 != 0,
        tcp_flags: 0,
        fragment: true,
        icmp_error: false,
    })
}

/// The stop for a protocol no VIP balances, to `dst`.
#[inline(always)]
fn other_protocol(dst: [u8; 16], family: u8) -> Stop {
    Stop::OtherProtocol(AddrKey::new(dst, family))
}

/// An ICMP message to a VIP address `dst`, behind `hdrs` bytes of IP headers: an echo request
/// for the way to answer, or an error for the client's flow it quotes (as a packet of that
/// flow, to its backend); anything else of ICMP is the kernel's.
#[inline(always)]
fn to_vip(
    ctx: &Frame,
    l3_off: usize,
    hdrs: usize,
    family: u8,
    dst: [u8; 16],
) -> Result<Packet, Stop> {
    let icmp_off = l3_off + hdrs;
    let v4 = family == FAMILY_V4;
    match icmp::kind(ctx, icmp_off, v4)? {
        Kind::EchoRequest => {
            return Err(Stop::Echo(echo::Request {
                l3_off,
                icmp_off,
                v4,
                dst,
            }));
        }
        Kind::Error => {}
    }
    let key = icmp::error::flow(ctx, icmp_off, v4, &dst)?;
    let outer = icmp_lengths(ctx, l3_off, hdrs, v4)?;
    Ok(Packet {
        l3_off,
        key,
        l3_len: outer.l3_len,
        tos: outer.tos,
        df: outer.df,
        tcp_flags: 0,
        fragment: false,
        icmp_error: true,
    })
}

/// What [`icmp_lengths`] reads of the packet an ICMP error arrived in.
struct Outer {
    l3_len: u16,
    tos: u8,
    df: bool,
}

/// The length, TOS (or traffic class) and don't-fragment bit of the packet an ICMP error
/// arrived in, judged as for any packet (the IPv4 header's checksum too).
#[inline(always)]
fn icmp_lengths(ctx: &Frame, l3_off: usize, hdrs: usize, v4: bool) -> Result<Outer, Verdict> {
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
    Ok(Outer {
        l3_len: l3_len as u16,
        tos,
        df,
    })
}

/// What the transport header says.
struct L4 {
    /// Source then destination port, as on the wire.
    ports: [u8; 4],
    /// The header's fixed size (TCP 20, UDP 8): an IP length below it is a lie.
    min_len: usize,
    /// What the header claims of the IP payload: TCP's data offset, UDP's length field.
    claimed_len: usize,
    /// TCP flags (0 for UDP).
    tcp_flags: u8,
}

/// Both ports at the start of a transport header, in one 4-byte load: an array built from four
/// indexed bytes is four loads, each then kept on the stack until the key is written.
///
/// Safety: `h` points at 4 bytes the caller checked are inside the packet.
#[inline(always)]
unsafe fn ports_at(h: *const u8) -> [u8; 4] {
    unsafe { (h as *const [u8; 4]).read_unaligned() }
}

/// The TCP or UDP header at `off`, which must be whole and sane: a TCP data offset of at
/// least 5 words, a UDP length of at least 8 bytes.
#[inline(always)]
fn l4(ctx: &Frame, proto: u8, off: usize) -> Result<L4, Verdict> {
    // Read through the pointer that was checked: a second, separately checked read would
    // let LLVM merge the checks into one the verifier cannot follow.
    let l4 = match proto {
        PROTO_TCP => {
            let h = ptr_at::<[u8; 20]>(ctx, off).ok_or(bad_l4())?;
            let (ports, doff, flags) =
                unsafe { (ports_at(h as *const u8), (*h)[12] >> 4, (*h)[13]) };
            L4 {
                ports,
                min_len: 20,
                claimed_len: doff as usize * 4,
                tcp_flags: flags,
            }
        }
        PROTO_UDP => {
            let h = ptr_at::<[u8; 8]>(ctx, off).ok_or(bad_l4())?;
            let (ports, len) = unsafe {
                (
                    ports_at(h as *const u8),
                    u16::from_be_bytes([(*h)[4], (*h)[5]]),
                )
            };
            L4 {
                ports,
                min_len: 8,
                claimed_len: len as usize,
                tcp_flags: 0,
            }
        }
        _ => return Err(Verdict::pass(Counter::PassNotVip)),
    };
    if l4.claimed_len < l4.min_len {
        return Err(bad_l4());
    }
    Ok(l4)
}
