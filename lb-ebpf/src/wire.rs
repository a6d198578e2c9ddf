//! Protocol numbers, once: what the headers' next-protocol fields say. (TCP's and UDP's are
//! lb-common's `PROTO_TCP` and `PROTO_UDP`, as the flow keys hold them; the header layouts
//! are network-types'.)
pub const IPPROTO_ICMP: u8 = 1;
/// IPv4 in IP (IPv4 or IPv6 outer header).
pub const IPPROTO_IPIP: u8 = 4;
/// IPv6 in IP.
pub const IPPROTO_IPV6: u8 = 41;
pub const IPPROTO_ICMPV6: u8 = 58;

/// Ethernet: the header's length and the EtherTypes the programs read.
pub const ETH_HLEN: usize = 14;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
/// A VLAN tag (802.1Q) and an outer service tag (802.1ad).
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;

/// TCP header flags.
pub const TCP_SYN: u8 = 0x02;
pub const TCP_ACK: u8 = 0x10;
