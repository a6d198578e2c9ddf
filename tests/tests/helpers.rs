//! The shared packet helpers against an independent implementation (etherparse).
use etherparse::{IpNumber, Ipv4Header};
use lb_common::hash::ipv4_header_checksum;

use lb_tests::Lcg;

#[test]
fn ipv4_checksum_agrees_with_etherparse_on_10000_headers() {
    let mut r = Lcg(7);
    for _ in 0..10_000 {
        let mut h = Ipv4Header::new(
            (r.next() % 60000) as u16,
            r.next() as u8,
            IpNumber((r.next() % 256) as u8),
            r.next().to_be_bytes(),
            r.next().to_be_bytes(),
        )
        .unwrap();
        h.identification = r.next() as u16;
        h.dont_fragment = r.next().is_multiple_of(2);
        let mut bytes: [u8; 20] = h.to_bytes()[..20].try_into().unwrap();
        bytes[10] = 0;
        bytes[11] = 0;
        assert_eq!(
            ipv4_header_checksum(&bytes),
            h.calc_header_checksum(),
            "{h:?}"
        );
    }
}
