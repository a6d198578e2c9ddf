//! Step 1: Ethernet (one 802.1Q/802.1ad tag allowed), IPv4 (any IHL) or IPv6, TCP or UDP ports.
//! Anything we do not balance comes back as a pass verdict, counted by why.
use core::mem::MaybeUninit;

use lb_common::{Counter, FAMILY_V4, FAMILY_V6, FlowKey, PROTO_TCP, PROTO_UDP};
use network_types::ip::{Ipv4Hdr, Ipv6Hdr};

use crate::{
    Verdict,
    mem::{Bounds, Frame, ptr_at, read},
};

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const ETH_HLEN: usize = 14;
const VLAN_HLEN: usize = 4;

/// What the later steps need of a packet headed (perhaps) for a VIP.
pub struct Packet {
    /// Offset of the IP header: 14, or 18 behind a VLAN tag.
    pub l3_off: usize,
    /// The 5-tuple as on the wire (IPv4 addresses in the first 4 bytes): the flow table's key.
    pub key: FlowKey,
    /// Length of the IP packet (header included) as its header says.
    pub l3_len: u16,
    /// IPv4 TOS or IPv6 traffic class, copied to the outer header.
    pub tos: u8,
    /// IPv4 don't-fragment bit, copied to the outer header (IPv6 never fragments in flight).
    pub df: bool,
    /// TCP flags (0 for UDP).
    pub tcp_flags: u8,
    /// A fragment (IPv4 or IPv6): its ports are missing or not to be trusted, so they are zero
    /// in `key`, and only a VIP that takes fragments takes it.
    pub fragment: bool,
    /// An ICMP error about a packet a backend sent from the VIP: `key` is the quoted packet's
    /// 5-tuple reversed (the client's flow to the VIP), and the whole ICMP packet goes to the
    /// backend that owns that flow.
    pub icmp_error: bool,
}

impl Packet {
    pub fn sport(&self) -> [u8; 2] {
        [self.key.ports[0], self.key.ports[1]]
    }
    pub fn dport(&self) -> [u8; 2] {
        [self.key.ports[2], self.key.ports[3]]
    }
}

pub const TCP_SYN: u8 = 0x02;
pub const TCP_ACK: u8 = 0x10;

const fn malformed() -> Verdict {
    Verdict::pass(Counter::PassMalformed)
}
const fn bad_ip() -> Verdict {
    Verdict::pass(Counter::PassBadIp)
}
const fn bad_length() -> Verdict {
    Verdict::pass(Counter::PassBadLength)
}
const fn bad_l4() -> Verdict {
    Verdict::pass(Counter::PassBadL4)
}

/// Whether `dst` may be a VIP's address: a clear filter bit says certainly not, so traffic
/// for the host itself or routed past it costs no hash lookup.
#[inline(always)]
fn maybe_vip(dst: &[u8; 16]) -> bool {
    crate::maps::VIP_FILTER
        .get(0)
        .is_none_or(|f| lb_common::hash::vip_filter_has(f, dst))
}

/// Parses into `out`; returns [`crate::programs::GO_ON`] or a packed pass verdict. Not inlined,
/// and returning an integer: the header reads get a stack frame of their own.
#[inline(never)]
pub fn parse_packed(frame: Frame, out: &mut MaybeUninit<Packet>) -> u64 {
    match parse(&frame) {
        Ok(p) => {
            out.write(p);
            crate::programs::GO_ON
        }
        Err(v) => v.pack(),
    }
}

#[inline(always)]
fn parse(ctx: &Frame) -> Result<Packet, Verdict> {
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
        ETH_P_IP => ipv4(ctx, l3_off),
        ETH_P_IPV6 => ipv6(ctx, l3_off),
        // ARP, LLDP, a second VLAN tag, ...: not ours.
        _ => Err(Verdict::pass(Counter::PassNotIp)),
    }
}

// Headers are read field by field through a checked pointer, not copied whole: every copy
// takes BPF stack, and the verifier allows 512 bytes for the deepest chain of calls.

#[inline(always)]
fn ipv4(ctx: &Frame, l3_off: usize) -> Result<Packet, Verdict> {
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
        return Err(bad_ip());
    }
    if !maybe_vip(&dst) {
        return Err(Verdict::pass(Counter::PassNotVip));
    }
    let ihl = ((vihl & 0x0f) as usize) * 4;
    if ihl < 20 {
        return Err(bad_ip());
    }
    // More-fragments set, or a non-zero offset: ports are missing or incomplete.
    if frags & 0x3fff != 0 {
        return ipv4_fragment(ctx, l3_off, ihl, frags, proto, dst);
    }
    // Lengths are compared as packet pointers against the packet's end: the verifier refuses
    // arithmetic on the end pointer. The transport header is read (bounds-checked against the
    // packet) before the length fields are judged: were the length check first, LLVM would
    // prove the bounds check redundant and drop it, and the verifier (which tracks pointers,
    // not that proof) would reject the program.
    if proto == PROTO_ICMP {
        return icmp_error(ctx, l3_off, ihl, FAMILY_V4, dst);
    }
    let l4 = l4(ctx, proto, l3_off + ihl)?;
    let ip = ptr_at::<Ipv4Hdr>(ctx, l3_off).ok_or(bad_ip())?;
    let (l3_len, tos, src) =
        unsafe { (u16::from_be_bytes((*ip).tot_len), (*ip).tos, (*ip).src_addr) };
    let l3_len_us = l3_len as usize;
    if ctx.data() + l3_off + l3_len_us > ctx.data_end() || l3_len_us < ihl + l4.min_len {
        return Err(bad_length());
    }
    if l3_len_us < ihl + l4.claimed_len {
        return Err(bad_l4());
    }
    // The common 20-byte header is summed here, through the pointer already checked; a header
    // with options, in a function of its own.
    let sum = if ihl == 20 {
        fold5(ip as *const u32)
    } else {
        header_sum(ctx, l3_off, ihl)
    };
    if sum != 0xffff {
        return Err(Verdict::pass(Counter::PassBadChecksum));
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
    if header_sum(ctx, l3_off, ihl) != 0xffff {
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

/// The folded one's-complement sum of five 32-bit words at `w` (a 20-byte IPv4 header the
/// caller checked is inside the packet).
#[inline(always)]
fn fold5(w: *const u32) -> u16 {
    let mut sum: u64 = 0;
    for i in 0..5 {
        // Safety: the caller checked the 20 bytes; unaligned reads.
        sum += unsafe { w.add(i).read_unaligned() } as u64;
    }
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    lb_common::hash::csum_fold(sum as u32)
}

/// The one's-complement sum of the IPv4 header at `off`, `ihl` bytes long (20 to 60), folded:
/// 0xffff when its checksum is right. The fixed 20 bytes are read as five words; options,
/// when there are any, a word at a time. Not inlined: inlined, LLVM drops the options' bounds
/// checks as implied by checks made elsewhere, which the verifier cannot follow.
#[inline(never)]
fn header_sum(ctx: &Frame, off: usize, ihl: usize) -> u16 {
    let Some(h) = ptr_at::<[u32; 5]>(ctx, off) else {
        return 0;
    };
    // Safety: ptr_at checked the 20 bytes; unaligned reads.
    let mut sum: u64 = 0;
    for i in 0..5 {
        sum += unsafe { (h as *const u32).add(i).read_unaligned() } as u64;
    }
    for i in 5..15 {
        if i * 4 >= ihl {
            break;
        }
        match ptr_at::<u32>(ctx, off + i * 4) {
            Some(w) => sum += unsafe { w.read_unaligned() } as u64,
            None => return 0,
        }
    }
    // Fold the 32-bit words' sum to 16 bits: byte order does not matter to a one's-complement
    // sum of 16-bit words, as long as the result is compared with all ones.
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    lb_common::hash::csum_fold(sum as u32)
}

#[inline(always)]
fn ipv6(ctx: &Frame, l3_off: usize) -> Result<Packet, Verdict> {
    let ip = ptr_at::<Ipv6Hdr>(ctx, l3_off).ok_or(bad_ip())?;
    // Safety: ptr_at checked that the whole header is inside the packet.
    let (v0, next, dst) = unsafe { ((*ip).vcf[0], (*ip).next_hdr, (*ip).dst_addr) };
    if v0 >> 4 != 6 {
        return Err(bad_ip());
    }
    if !maybe_vip(&dst) {
        return Err(Verdict::pass(Counter::PassNotVip));
    }
    let (proto, l4_off, fragment) = ext_headers(ctx, next, l3_off + 40)?;
    if fragment {
        return ipv6_fragment(ctx, l3_off, l4_off, proto, dst);
    }
    if proto == PROTO_ICMPV6 {
        return icmp_error(ctx, l3_off, l4_off - l3_off, FAMILY_V6, dst);
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
        return Err(bad_length());
    }
    if payload < ext + l4.claimed_len {
        return Err(bad_l4());
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

const PROTO_ICMP: u8 = 1;
const PROTO_ICMPV6: u8 = 58;

/// An ICMP error (IPv4: destination unreachable, time exceeded, parameter problem; IPv6: the
/// same and packet too big) at `l3_off + hdrs`, quoting a TCP or UDP packet sent from `dst` (a
/// VIP, by a backend, straight to the client): the packet for the backend that owns the
/// client's flow. Anything else of ICMP (echo included) is the kernel's.
#[inline(always)]
fn icmp_error(
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
        if header_sum(ctx, l3_off, hdrs) != 0xffff {
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
            ports: [ports[2], ports[3], ports[0], ports[1]],
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
        check.write_unaligned(mend(check.read_unaligned(), old, new));
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

/// A one's-complement checksum (as stored) after one 16-bit word (as stored) changed from
/// `old` to `new` (RFC 1624): the words' byte order does not matter, as long as it is one.
#[inline(always)]
fn mend(check: u16, old: u16, new: u16) -> u16 {
    let sum = (!check as u32) + (!old as u32) + new as u32;
    !lb_common::hash::csum_fold(sum)
}

/// Two addresses equal, as two 64-bit compares (an array compare may become a `memcmp` call).
#[inline(always)]
pub fn eq16(a: &[u8; 16], b: &[u8; 16]) -> bool {
    let (a, b) = (a.as_ptr() as *const u64, b.as_ptr() as *const u64);
    // Safety: both are 16 bytes; unaligned reads.
    unsafe {
        a.read_unaligned() == b.read_unaligned()
            && a.add(1).read_unaligned() == b.add(1).read_unaligned()
    }
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

/// The TCP or UDP header at `off`, which must be whole and sane: a TCP data offset of at
/// least 5 words, a UDP length of at least 8 bytes.
#[inline(always)]
fn l4(ctx: &Frame, proto: u8, off: usize) -> Result<L4, Verdict> {
    // Read through the pointer that was checked: a second, separately checked read would
    // let LLVM merge the checks into one the verifier cannot follow.
    let l4 = match proto {
        PROTO_TCP => {
            let h = ptr_at::<[u8; 20]>(ctx, off).ok_or(bad_l4())?;
            let (ports, doff, flags) = unsafe {
                (
                    [(*h)[0], (*h)[1], (*h)[2], (*h)[3]],
                    (*h)[12] >> 4,
                    (*h)[13],
                )
            };
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
                    [(*h)[0], (*h)[1], (*h)[2], (*h)[3]],
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
