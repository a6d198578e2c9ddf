//! Hashing and checksum helpers that both sides need: the XDP program hashes every packet's
//! 5-tuple with [`flow_hash`]; the agent's tests (and the fixtures) compute the same value to
//! know which backend a packet must reach; Maglev seeds its permutations from [`hash_bytes`].
//!
//! The mixing is MurmurHash3's 32-bit round and finaliser: cheap (multiply, rotate, xor), no
//! table, no loop over a variable length, so the verifier accepts it unrolled. Byte order is
//! fixed: words are read little-endian from the bytes as they stand on the wire, on every host,
//! so the value does not depend on where it is computed.

const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;

#[inline(always)]
fn round(h: u32, k: u32) -> u32 {
    let k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    (h ^ k)
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
}

#[inline(always)]
fn finish(mut h: u32, len: u32) -> u32 {
    h ^= len;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

#[inline(always)]
fn word(b: &[u8; 16], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// Seed of the flow hash. Fixed: every balancer instance must pick the same backend.
pub const FLOW_SEED: u32 = 0x5eed_1b01;

/// Hash of a flow's 5-tuple. Addresses as on the wire (IPv4 in the first 4 bytes, the rest
/// zero), ports as on the wire (network byte order), `proto` the IP protocol number.
#[inline(always)]
pub fn flow_hash(src: &[u8; 16], dst: &[u8; 16], sport: [u8; 2], dport: [u8; 2], proto: u8) -> u32 {
    let mut h = FLOW_SEED;
    h = round(h, word(src, 0));
    h = round(h, word(src, 4));
    h = round(h, word(src, 8));
    h = round(h, word(src, 12));
    h = round(h, word(dst, 0));
    h = round(h, word(dst, 4));
    h = round(h, word(dst, 8));
    h = round(h, word(dst, 12));
    h = round(
        h,
        u32::from_le_bytes([sport[0], sport[1], dport[0], dport[1]]),
    );
    h = round(h, proto as u32);
    finish(h, 37)
}

/// [`crate::VipValue::flags`], bits 8-15: what the ring's hash takes of a packet. The whole
/// 5-tuple (the default), the source alone (one client to one backend across its
/// connections), or the source and the destination port.
pub const HASH_5TUPLE: u32 = 0;
pub const HASH_SRC: u32 = 1;
pub const HASH_SRC_DPORT: u32 = 2;

/// The hash mode of a VIP entry's flags.
#[inline(always)]
pub const fn hash_mode(flags: u32) -> u32 {
    (flags >> 8) & 0xff
}

/// The affinity prefix of a VIP entry's flags (bits 16-23): the bits of the source the hash
/// keeps under [`HASH_SRC`] and [`HASH_SRC_DPORT`] (0: all of them).
#[inline(always)]
pub const fn affinity_prefix(flags: u32) -> u32 {
    (flags >> 16) & 0xff
}

/// The flags bits of hash mode `mode` with affinity prefix `prefix` (0: the whole address).
pub const fn hash_flags(mode: u32, prefix: u32) -> u32 {
    (mode & 0xff) << 8 | (prefix & 0xff) << 16
}

/// The first `bits` bits of `a` (IPv4 in the first 4 bytes: its bits come first either way),
/// the rest zero; 0 keeps all.
#[inline(always)]
pub fn prefix_of(a: &[u8; 16], bits: u32) -> [u8; 16] {
    if bits == 0 || bits >= 128 {
        return *a;
    }
    let hi = u64::from_be_bytes([a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]]);
    let lo = u64::from_be_bytes([a[8], a[9], a[10], a[11], a[12], a[13], a[14], a[15]]);
    let keep = |w: u64, n: u32| if n == 0 { 0 } else { w & (!0u64 << (64 - n)) };
    let (hi, lo) = if bits <= 64 {
        (keep(hi, bits), 0)
    } else {
        (hi, keep(lo, bits - 64))
    };
    let (h, l) = (hi.to_be_bytes(), lo.to_be_bytes());
    [
        h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7], l[0], l[1], l[2], l[3], l[4], l[5], l[6],
        l[7],
    ]
}

/// The ring's hash of a packet under a VIP's flags: [`flow_hash`] of the 5-tuple, or of the
/// source (its affinity prefix) with the destination and protocol, and the destination port
/// under [`HASH_SRC_DPORT`]. The same on every balancer: rings and hashes agree across a fleet.
#[inline(always)]
pub fn pick_hash(
    flags: u32,
    src: &[u8; 16],
    dst: &[u8; 16],
    sport: [u8; 2],
    dport: [u8; 2],
    proto: u8,
) -> u32 {
    match hash_mode(flags) {
        HASH_SRC => flow_hash(
            &prefix_of(src, affinity_prefix(flags)),
            dst,
            [0; 2],
            [0; 2],
            proto,
        ),
        HASH_SRC_DPORT => flow_hash(
            &prefix_of(src, affinity_prefix(flags)),
            dst,
            [0; 2],
            dport,
            proto,
        ),
        _ => flow_hash(src, dst, sport, dport, proto),
    }
}

/// [`crate::Config::flags`], bits 8-15 and 16-23: how many low bits of the outer IPv4 and
/// IPv6 sources the flow hash chooses (0: one fixed source), so that a backend's NIC spreads
/// the flows it receives over its queues (RSS hashes the outer addresses).
pub const fn source_flags(v4_host_bits: u32, v6_host_bits: u32) -> u32 {
    (v4_host_bits & 0xff) << 8 | (v6_host_bits & 0xff) << 16
}

/// The host part a flow hash gives among `bits` host bits: neither all zeros nor all ones
/// (a subnet's own address or its broadcast, which a backend would take for a martian
/// source), so from 1 to 2^bits − 2; with one bit, or none, 0 (the base as it is).
#[inline(always)]
pub fn source_host(hash: u32, bits: u32) -> u32 {
    if bits < 2 {
        return 0;
    }
    let span = if bits >= 32 {
        u32::MAX
    } else {
        (1u32 << bits) - 1
    };
    // A checked remainder (span is 3 or more here): a `%` keeps a panic for a zero divisor in
    // the BPF program, which the verifier refuses (its last instruction is no exit).
    1 + hash.checked_rem(span - 1).unwrap_or(0)
}

/// The outer IPv4 source of a flow: `base` (the prefix's network) with the hash's host part.
#[inline(always)]
pub fn outer_source_v4(base: [u8; 4], flags: u32, hash: u32) -> [u8; 4] {
    let bits = (flags >> 8) & 0xff;
    if bits < 2 {
        return base;
    }
    let mask = if bits >= 32 {
        u32::MAX
    } else {
        (1u32 << bits) - 1
    };
    ((u32::from_be_bytes(base) & !mask) | source_host(hash, bits)).to_be_bytes()
}

/// The low 32 bits of a flow's outer IPv6 source: `base`'s with the hash's host part (at most
/// 32 host bits are chosen: the rest of the prefix stays as written).
#[inline(always)]
pub fn outer_source_v6_low(base_low: [u8; 4], flags: u32, hash: u32) -> [u8; 4] {
    let bits = ((flags >> 16) & 0xff).min(32);
    if bits < 2 {
        return base_low;
    }
    let mask = if bits >= 32 {
        u32::MAX
    } else {
        (1u32 << bits) - 1
    };
    ((u32::from_be_bytes(base_low) & !mask) | source_host(hash, bits)).to_be_bytes()
}

/// The UDP source port of a flow's GUE packets: one of the 16384 ports from 49152 up (the
/// ephemeral range), chosen by the hash with its high half folded in, so that the backends'
/// receive-side scaling spreads the flows of one balancer over their queues.
#[inline(always)]
pub fn gue_source_port(hash: u32) -> u16 {
    0xc000 | ((hash ^ (hash >> 16)) & 0x3fff) as u16
}

/// The bit of [`crate::VipFilter`] for a destination address in the 16-byte form of the maps
/// (IPv4 in the first 4 bytes, zeros after): the address folded to one word, then a
/// multiplicative hash's top bits. A few instructions on the packet path.
#[inline(always)]
pub fn vip_filter_bit(addr: &[u8; 16]) -> u32 {
    let w = |i: usize| u32::from_ne_bytes([addr[i], addr[i + 1], addr[i + 2], addr[i + 3]]);
    let fold = w(0) ^ w(4) ^ w(8) ^ w(12);
    fold.wrapping_mul(0x9e37_79b1) >> (32 - crate::VIP_FILTER_BITS.trailing_zeros())
}

/// Whether `filter` has the bit of `addr`.
#[inline(always)]
pub fn vip_filter_has(filter: &crate::VipFilter, addr: &[u8; 16]) -> bool {
    let bit = vip_filter_bit(addr);
    filter[(bit as usize >> 6) & (crate::VIP_FILTER_WORDS - 1)] & (1 << (bit & 63)) != 0
}

/// Sets the bit of `addr` in `filter`.
pub fn vip_filter_set(filter: &mut crate::VipFilter, addr: &[u8; 16]) {
    let bit = vip_filter_bit(addr);
    filter[(bit as usize >> 6) & (crate::VIP_FILTER_WORDS - 1)] |= 1 << (bit & 63);
}

/// Hash of a byte string with a seed (host side: Maglev's offset and skip).
pub fn hash_bytes(seed: u32, data: &[u8]) -> u32 {
    let mut h = seed;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        h = round(h, u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut tail = [0u8; 4];
        tail[..rest.len()].copy_from_slice(rest);
        h = round(h, u32::from_le_bytes(tail));
    }
    finish(h, data.len() as u32)
}

/// Folds a 32-bit one's-complement sum into 16 bits.
#[inline(always)]
pub fn csum_fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// The IPv4 header checksum of a 20-byte header whose checksum field (bytes 10..12) is zero.
/// Returns the value to store, in host order (write it with `to_be_bytes`).
#[inline(always)]
pub fn ipv4_header_checksum(hdr: &[u8; 20]) -> u16 {
    let mut sum = 0u32;
    let mut i = 0;
    while i < 20 {
        sum += u16::from_be_bytes([hdr[i], hdr[i + 1]]) as u32;
        i += 2;
    }
    !csum_fold(sum)
}

/// The checksum of an option-less IPv4 header with identification 0, from its fields alone
/// (no header bytes needed: the XDP program writes the header straight into the packet).
/// `frags` holds the flags and fragment offset, `src` and `dst` are as on the wire.
#[inline(always)]
pub fn ipv4_checksum_of(
    tos: u8,
    tot_len: u16,
    frags: u16,
    ttl: u8,
    proto: u8,
    src: [u8; 4],
    dst: [u8; 4],
) -> u16 {
    // A one's-complement sum does not depend on byte order: the fields are summed as they lie
    // on the wire, read in this machine's order (each address one 32-bit word, no byte
    // swaps), and the result turned into host order once (which the caller's `to_be_bytes`
    // turns back: the compiler drops the pair). The sum of byte-swapped 16-bit fields, as
    // first written, cost a hit some 4-6 ns of the program.
    let sum: u64 = u16::from_ne_bytes([0x45, tos]) as u64
        + u16::from_ne_bytes(tot_len.to_be_bytes()) as u64
        + u16::from_ne_bytes(frags.to_be_bytes()) as u64
        + u16::from_ne_bytes([ttl, proto]) as u64
        + u32::from_ne_bytes(src) as u64
        + u32::from_ne_bytes(dst) as u64;
    let sum = (sum & 0xffff_ffff) + (sum >> 32);
    let sum = (sum & 0xffff_ffff) + (sum >> 32);
    u16::from_be(!csum_fold(sum as u32))
}

/// The UDP checksum of a datagram over IPv6 (RFC 8200: mandatory there), `udp` the whole
/// datagram with its checksum field zero. Returns the value to store, in host order; a sum
/// of zero goes on the wire as 0xffff (zero means "none", which IPv6 forbids).
#[inline(always)]
pub fn udp_ipv6_checksum<const N: usize>(src: &[u8; 16], dst: &[u8; 16], udp: &[u8; N]) -> u16 {
    // The pseudo-header: both addresses, the upper-layer length, the next header (17).
    let mut sum = N as u32 + 17;
    let mut i = 0;
    while i < 16 {
        sum += u16::from_be_bytes([src[i], src[i + 1]]) as u32;
        sum += u16::from_be_bytes([dst[i], dst[i + 1]]) as u32;
        i += 2;
    }
    let mut i = 0;
    while i + 1 < N {
        sum += u16::from_be_bytes([udp[i], udp[i + 1]]) as u32;
        i += 2;
    }
    if N % 2 == 1 {
        sum += (udp[N - 1] as u32) << 8;
    }
    match !csum_fold(sum) {
        0 => 0xffff,
        c => c,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gue_source_ports_stay_ephemeral_and_spread() {
        let mut ports: [u16; 256] = core::array::from_fn(|i| {
            gue_source_port(flow_hash(&[i as u8; 16], &[7; 16], [0, 1], [0, 80], 6))
        });
        assert!(ports.iter().all(|p| *p >= 49152));
        ports.sort_unstable();
        let distinct = 1 + ports.windows(2).filter(|w| w[0] != w[1]).count();
        assert!(distinct >= 250, "{distinct} distinct ports of 256 flows");
        // Hashes that differ only in their high half still differ.
        assert_ne!(gue_source_port(0x0001_0000), gue_source_port(0));
    }

    #[test]
    fn udp_ipv6_checksum_matches_a_worked_example() {
        // fd00:18::1 port 1024 to fd00:19::100 port 53, no payload: 0x0076 (summed by hand
        // with Python's struct, outside this code).
        let src: [u8; 16] = [0xfd, 0, 0, 0x18, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let dst: [u8; 16] = [0xfd, 0, 0, 0x19, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0];
        let udp = [0x04, 0x00, 0x00, 53, 0x00, 8, 0, 0];
        assert_eq!(udp_ipv6_checksum(&src, &dst, &udp), 0x0076);
        // With a payload of odd length, the datagram with its checksum sums to all ones.
        let mut d = [0x04, 0x00, 0x00, 53, 0x00, 11, 0, 0, 0xab, 0xcd, 0xef];
        let c = udp_ipv6_checksum(&src, &dst, &d).to_be_bytes();
        d[6..8].copy_from_slice(&c);
        let mut sum = d.len() as u32 + 17;
        for w in src.chunks(2).chain(dst.chunks(2)) {
            sum += u16::from_be_bytes([w[0], w[1]]) as u32;
        }
        for w in d.chunks(2) {
            sum += u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]) as u32;
        }
        assert_eq!(csum_fold(sum), 0xffff);
    }

    #[test]
    fn ipv4_checksum_matches_a_known_header() {
        // The worked example of RFC 1071's usual illustration: a header whose checksum is
        // 0xb861 (from a capture; verified by summing to 0xffff below).
        let mut hdr: [u8; 20] = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        let c = ipv4_header_checksum(&hdr);
        assert_eq!(c, 0xb861);
        hdr[10..12].copy_from_slice(&c.to_be_bytes());
        let mut sum = 0u32;
        for w in hdr.chunks(2) {
            sum += u16::from_be_bytes([w[0], w[1]]) as u32;
        }
        assert_eq!(csum_fold(sum), 0xffff);
    }

    #[test]
    fn checksum_from_fields_matches_the_bytes() {
        for (tos, len, frags, src, dst) in [
            (0u8, 60u16, 0x4000u16, [198, 18, 0, 2], [198, 18, 0, 11]),
            (0xb8, 1500, 0, [255, 255, 255, 255], [0, 0, 0, 1]),
            (3, 20, 0x4000, [10, 0, 0, 1], [192, 168, 200, 199]),
        ] {
            let mut h = [0u8; 20];
            h[0] = 0x45;
            h[1] = tos;
            h[2..4].copy_from_slice(&len.to_be_bytes());
            h[6..8].copy_from_slice(&frags.to_be_bytes());
            h[8] = 64;
            h[9] = 4;
            h[12..16].copy_from_slice(&src);
            h[16..20].copy_from_slice(&dst);
            assert_eq!(
                ipv4_checksum_of(tos, len, frags, 64, 4, src, dst),
                ipv4_header_checksum(&h)
            );
        }
    }

    #[test]
    fn fold_carries_twice() {
        assert_eq!(csum_fold(0x0001_ffff), 0x0001);
        assert_eq!(csum_fold(0xffff_ffff), 0xffff);
    }

    #[test]
    fn flow_hash_depends_on_every_field() {
        let a = [198, 18, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let b = [198, 19, 0, 100, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let base = flow_hash(&a, &b, [0x9c, 0x40], [0, 80], 6);
        assert_eq!(base, flow_hash(&a, &b, [0x9c, 0x40], [0, 80], 6));
        assert_ne!(base, flow_hash(&b, &a, [0x9c, 0x40], [0, 80], 6));
        assert_ne!(base, flow_hash(&a, &b, [0x9c, 0x41], [0, 80], 6));
        assert_ne!(base, flow_hash(&a, &b, [0x9c, 0x40], [0, 81], 6));
        assert_ne!(base, flow_hash(&a, &b, [0x9c, 0x40], [0, 80], 17));
        let mut a2 = a;
        a2[15] = 1;
        assert_ne!(base, flow_hash(&a2, &b, [0x9c, 0x40], [0, 80], 6));
    }

    #[test]
    fn flow_hash_spreads_source_ports_evenly() {
        // 60000 flows differing only in source port, into 7 buckets: each within 5% of even.
        let a = [198, 18, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let b = [198, 19, 0, 100, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let mut buckets = [0u32; 7];
        for p in 1000u16..61000 {
            buckets[(flow_hash(&a, &b, p.to_be_bytes(), [0, 80], 6) % 7) as usize] += 1;
        }
        for n in buckets {
            assert!(
                (n as f64 - 60000.0 / 7.0).abs() < 0.05 * 60000.0 / 7.0,
                "{buckets:?}"
            );
        }
    }

    #[test]
    fn vip_filter_has_what_was_set_and_little_else() {
        let mut f = [0u64; crate::VIP_FILTER_WORDS];
        let v4 = |a: [u8; 4]| {
            let mut x = [0u8; 16];
            x[..4].copy_from_slice(&a);
            x
        };
        let vips: [[u8; 16]; 64] = core::array::from_fn(|i| v4([198, 19, 0, i as u8]));
        for v in &vips {
            vip_filter_set(&mut f, v);
        }
        assert!(vips.iter().all(|v| vip_filter_has(&f, v)));
        // Neighbouring addresses, as a balancer's other traffic would have: nearly all clear.
        let hits = (0..=255u8)
            .flat_map(|a| (0..=255u8).map(move |b| v4([198, 18, a, b])))
            .filter(|a| vip_filter_has(&f, a))
            .count();
        assert!(hits < 65536 / 100, "{hits} false positives of 65536");
        let mut v6 = [0u8; 16];
        v6[..2].copy_from_slice(&[0xfd, 0x00]);
        v6[15] = 1;
        assert!(!vip_filter_has(&[0; crate::VIP_FILTER_WORDS], &v6));
        vip_filter_set(&mut f, &v6);
        assert!(vip_filter_has(&f, &v6));
    }

    #[test]
    fn hash_bytes_uses_the_tail_and_the_length() {
        assert_ne!(
            hash_bytes(1, &[1, 2, 3, 4, 5]),
            hash_bytes(1, &[1, 2, 3, 4, 6])
        );
        assert_ne!(
            hash_bytes(1, &[1, 2, 3, 4]),
            hash_bytes(1, &[1, 2, 3, 4, 0])
        );
        assert_ne!(hash_bytes(1, &[1, 2, 3, 4]), hash_bytes(2, &[1, 2, 3, 4]));
    }

    #[test]
    fn a_prefix_keeps_its_bits_and_clears_the_rest() {
        let v4 = |a: [u8; 4]| {
            let mut x = [0u8; 16];
            x[..4].copy_from_slice(&a);
            x
        };
        assert_eq!(prefix_of(&v4([198, 18, 5, 77]), 24), v4([198, 18, 5, 0]));
        assert_eq!(prefix_of(&v4([198, 18, 5, 77]), 20), v4([198, 18, 0, 0]));
        assert_eq!(prefix_of(&v4([198, 18, 5, 77]), 0), v4([198, 18, 5, 77]));
        assert_eq!(prefix_of(&v4([198, 18, 5, 77]), 32), v4([198, 18, 5, 77]));
        let v6: [u8; 16] = [0xfd, 0, 0, 0x18, 0, 7, 0, 3, 0xaa, 0xbb, 0, 0, 0, 0, 0, 1];
        let mut want = v6;
        want[8..].fill(0);
        assert_eq!(prefix_of(&v6, 64), want);
        want[7] = 0;
        assert_eq!(prefix_of(&v6, 56), want);
        let mut want = v6;
        want[9..].fill(0);
        assert_eq!(prefix_of(&v6, 72), want);
    }

    #[test]
    fn the_source_hash_ignores_ports_and_the_prefix_the_host_bits() {
        let (a, b) = ([198, 18, 5, 77], [198, 18, 5, 78]);
        let addr = |x: [u8; 4]| {
            let mut v = [0u8; 16];
            v[..4].copy_from_slice(&x);
            v
        };
        let dst = addr([198, 19, 0, 100]);
        let h = |flags, src, sport: u16, dport: u16| {
            pick_hash(
                flags,
                &addr(src),
                &dst,
                sport.to_be_bytes(),
                dport.to_be_bytes(),
                6,
            )
        };
        let src = hash_flags(HASH_SRC, 0);
        assert_eq!(h(src, a, 1000, 80), h(src, a, 2000, 443));
        assert_ne!(h(src, a, 1000, 80), h(src, b, 1000, 80));
        let src24 = hash_flags(HASH_SRC, 24);
        assert_eq!(h(src24, a, 1000, 80), h(src24, b, 2000, 80));
        let sd = hash_flags(HASH_SRC_DPORT, 0);
        assert_eq!(h(sd, a, 1000, 80), h(sd, a, 2000, 80));
        assert_ne!(h(sd, a, 1000, 80), h(sd, a, 1000, 443));
        // The default is the 5-tuple's hash, as before.
        assert_eq!(
            h(0, a, 1000, 80),
            flow_hash(
                &addr(a),
                &dst,
                1000u16.to_be_bytes(),
                80u16.to_be_bytes(),
                6
            )
        );
    }

    #[test]
    fn outer_sources_stay_inside_their_prefix_and_off_its_ends() {
        let flags = source_flags(8, 16);
        let mut seen = [false; 256];
        for h in 0..100_000u32 {
            let s = outer_source_v4([198, 18, 16, 0], flags, h.wrapping_mul(0x9e37_79b9));
            assert_eq!(&s[..3], &[198, 18, 16], "{s:?}");
            assert!(s[3] != 0 && s[3] != 255, "{s:?}");
            seen[s[3] as usize] = true;
        }
        assert_eq!(seen.iter().filter(|&&x| x).count(), 254);
        assert_eq!(outer_source_v4([198, 18, 0, 2], 0, 12345), [198, 18, 0, 2]);
        let low = outer_source_v6_low([0, 1, 0, 0], flags, 77);
        assert_eq!(&low[..2], &[0, 1]);
        assert!(low[2..] != [0, 0] && low[2..] != [0xff, 0xff]);
    }
}
