//! Every one's-complement checksum fold and update, once. Byte order does not matter to a
//! one's-complement sum of 16-bit words as long as it is one order throughout, so words are
//! summed as they lie in the packet.
use crate::mem::{Frame, ptr_at};

/// A 64-bit sum of 32-bit words, folded to 16 bits.
#[inline(always)]
pub fn fold64(mut sum: u64) -> u16 {
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    lb_common::hash::csum_fold(sum as u32)
}

/// The folded one's-complement sum of five 32-bit words at `w` (a 20-byte IPv4 header the
/// caller checked is inside the packet).
#[inline(always)]
pub fn fold5(w: *const u32) -> u16 {
    let mut sum: u64 = 0;
    for i in 0..5 {
        // Safety: the caller checked the 20 bytes; unaligned reads.
        sum += unsafe { w.add(i).read_unaligned() } as u64;
    }
    fold64(sum)
}

/// The one's-complement sum of the IPv4 header at `off`, `ihl` bytes long (20 to 60), folded:
/// 0xffff when its checksum is right. The fixed 20 bytes are read as five words; options,
/// when there are any, a word at a time. Not inlined: inlined, LLVM drops the options' bounds
/// checks as implied by checks made elsewhere, which the verifier cannot follow.
#[inline(never)]
pub(crate) fn header_sum(ctx: &Frame, off: usize, ihl: usize) -> u16 {
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
    fold64(sum)
}

/// A one's-complement checksum (as stored) after one 16-bit word (as stored) changed from
/// `old` to `new` (RFC 1624): the words' byte order does not matter, as long as it is one.
#[inline(always)]
pub fn mend(check: u16, old: u16, new: u16) -> u16 {
    let sum = (!check as u32) + (!old as u32) + new as u32;
    !lb_common::hash::csum_fold(sum)
}

/// The one's-complement sum, as big-endian 16-bit words, of `len` (even) bytes at `off`.
#[inline(always)]
pub fn words(f: &Frame, off: usize, len: usize) -> u32 {
    let mut sum = 0u32;
    // At most the ICMP header, a 60-byte IPv4 header and 8 bytes: 38 words.
    for i in 0..38 {
        if i * 2 >= len {
            break;
        }
        match ptr_at::<[u8; 2]>(f, off + i * 2) {
            Some(w) => sum += u16::from_be_bytes(unsafe { w.read_unaligned() }) as u32,
            None => break,
        }
    }
    sum
}

/// The IPv6 pseudo-header's sum: addresses, upper-layer length, next header 58.
#[inline(always)]
pub fn pseudo_v6(src: &[u8; 16], dst: &[u8; 16], len: u32) -> u32 {
    let mut sum = len + crate::wire::IPPROTO_ICMPV6 as u32;
    for i in 0..8 {
        sum += u16::from_be_bytes([src[2 * i], src[2 * i + 1]]) as u32;
        sum += u16::from_be_bytes([dst[2 * i], dst[2 * i + 1]]) as u32;
    }
    sum
}
