//! Protocol numbers, once: what the headers' next-protocol fields say. (TCP's and UDP's are
//! lb-common's `PROTO_TCP` and `PROTO_UDP`, as the flow keys hold them; the header layouts
//! are network-types'.)
pub const IPPROTO_ICMP: u8 = 1;
/// IPv4 in IP (IPv4 or IPv6 outer header).
pub const IPPROTO_IPIP: u8 = 4;
/// IPv6 in IP.
pub const IPPROTO_IPV6: u8 = 41;
pub const IPPROTO_ICMPV6: u8 = 58;
