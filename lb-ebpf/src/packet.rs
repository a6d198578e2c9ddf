//! What the parser makes of a packet headed (perhaps) for a VIP, and every later step reads.
//! The ground floor: it imports no step.
use lb_common::FlowKey;

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
    // The ports are taken out of one 32-bit word, not indexed byte by byte: byte accesses make
    // LLVM keep the key's ports (and with them its addresses) as separate bytes through the
    // parser's branches and put them back together where the key is written.
    #[inline(always)]
    pub fn sport(&self) -> [u8; 2] {
        (u32::from_le_bytes(self.key.ports) as u16).to_le_bytes()
    }
    #[inline(always)]
    pub fn dport(&self) -> [u8; 2] {
        ((u32::from_le_bytes(self.key.ports) >> 16) as u16).to_le_bytes()
    }
}
