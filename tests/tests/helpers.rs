//! Property tests of the shared packet helpers against an independent implementation
//! (etherparse) or a plain restatement of what they promise.
use etherparse::{IpNumber, Ipv4Header};
use lb_common::{
    VIP_FILTER_WORDS,
    hash::{
        csum_fold, flow_hash, ipv4_checksum_of, ipv4_header_checksum, vip_filter_has,
        vip_filter_set,
    },
};
use proptest::prelude::*;

/// An IPv4 header from arbitrary fields, as etherparse builds it.
fn header(
    tot_len: u16,
    tos: u8,
    ttl: u8,
    proto: u8,
    src: [u8; 4],
    dst: [u8; 4],
    df: bool,
) -> Ipv4Header {
    let mut h =
        Ipv4Header::new(tot_len.saturating_sub(20), ttl, IpNumber(proto), src, dst).unwrap();
    h.dscp = etherparse::IpDscp::try_new(tos >> 2).unwrap();
    h.ecn = etherparse::IpEcn::try_new(tos & 3).unwrap();
    h.dont_fragment = df;
    h
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 5000, ..ProptestConfig::default() })]

    /// The checksum of a whole header, as etherparse computes it.
    #[test]
    fn ipv4_header_checksum_agrees_with_etherparse(
        tot_len in 20u16.., tos: u8, ttl: u8, proto: u8, src: [u8; 4], dst: [u8; 4],
        df: bool, id: u16,
    ) {
        let mut h = header(tot_len, tos, ttl, proto, src, dst, df);
        h.identification = id;
        let mut bytes: [u8; 20] = h.to_bytes()[..20].try_into().unwrap();
        bytes[10] = 0;
        bytes[11] = 0;
        prop_assert_eq!(ipv4_header_checksum(&bytes), h.calc_header_checksum());
    }

    /// The checksum the program writes into an outer header, from its fields alone.
    #[test]
    fn ipv4_checksum_of_fields_agrees_with_etherparse(
        tot_len in 20u16.., tos: u8, ttl: u8, proto: u8, src: [u8; 4], dst: [u8; 4], df: bool,
    ) {
        let h = header(tot_len, tos, ttl, proto, src, dst, df);
        let frags = if df { 0x4000 } else { 0 };
        prop_assert_eq!(
            ipv4_checksum_of(tos, h.total_len, frags, ttl, proto, src, dst),
            h.calc_header_checksum()
        );
    }

    /// A header with its checksum in place sums to all ones, in either byte order: what the
    /// program's check relies on.
    #[test]
    fn a_checked_header_folds_to_all_ones(
        tot_len in 20u16.., tos: u8, ttl: u8, proto: u8, src: [u8; 4], dst: [u8; 4], df: bool,
    ) {
        let mut h = header(tot_len, tos, ttl, proto, src, dst, df);
        h.header_checksum = h.calc_header_checksum();
        let b = h.to_bytes();
        let be: u32 = b.chunks(2).map(|w| u16::from_be_bytes([w[0], w[1]]) as u32).sum();
        let le: u32 = b.chunks(2).map(|w| u16::from_le_bytes([w[0], w[1]]) as u32).sum();
        prop_assert_eq!(csum_fold(be), 0xffff);
        prop_assert_eq!(csum_fold(le), 0xffff);
    }

    /// The VIP filter never turns away a VIP's address, whatever the set.
    #[test]
    fn the_vip_filter_has_no_false_negatives(
        addrs in proptest::collection::vec(any::<[u8; 16]>(), 1..64)
    ) {
        let mut f = [0u64; VIP_FILTER_WORDS];
        for a in &addrs {
            vip_filter_set(&mut f, a);
        }
        for a in &addrs {
            prop_assert!(vip_filter_has(&f, a));
        }
    }

    /// The flow hash is a function of the 5-tuple alone, and the two directions differ (a
    /// reply is not hashed as its request).
    #[test]
    fn the_flow_hash_depends_on_the_tuple(
        src: [u8; 16], dst: [u8; 16], sport: [u8; 2], dport: [u8; 2], proto: u8,
    ) {
        let h = flow_hash(&src, &dst, sport, dport, proto);
        prop_assert_eq!(h, flow_hash(&src, &dst, sport, dport, proto));
        let mut other = sport;
        other[1] ^= 1;
        prop_assert_ne!(h, flow_hash(&src, &dst, other, dport, proto));
    }
}

/// The flow table's check is not made of the bits that chose the set: a million flows in a
/// table of 2^18 sets (1M slots) put ~1.5M pairs of flows in a common set, and a check that
/// shared the set's 18 bits would match in ~90 of those pairs (2^-14 each); an independent
/// 32-bit check, in none (~0.0004 expected).
#[test]
fn the_flow_tables_check_is_independent_of_the_set() {
    use lb_common::{FAMILY_V4, FlowKey, flow_check, flow_set_base, flow_table_hash};
    let sets = 1 << 18;
    let mut seen: Vec<(u32, u32)> = (0..1u32 << 20)
        .map(|i| {
            let mut k = FlowKey {
                proto: 6,
                family: FAMILY_V4,
                ..Default::default()
            };
            k.src[..4].copy_from_slice(&[198, 18, (i >> 16) as u8, (i >> 8) as u8]);
            k.dst[..4].copy_from_slice(&[198, 19, 0, 100]);
            k.ports[..2].copy_from_slice(&(1024 + (i & 0xff) as u16).to_be_bytes());
            k.ports[2..].copy_from_slice(&443u16.to_be_bytes());
            let h = flow_table_hash(&k);
            (flow_set_base(h, sets), flow_check(h))
        })
        .collect();
    seen.sort_unstable();
    let shared = seen.windows(2).filter(|w| w[0] == w[1]).count();
    assert!(
        shared <= 2,
        "{shared} pairs of flows share a set and a check"
    );
}
