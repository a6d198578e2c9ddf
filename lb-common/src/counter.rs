//! The program's counters: every packet lands in exactly one outcome, with its bytes.
//!
//! A packet forwarded to a backend (outcome [`Counter::Tx`] or [`Counter::Redirect`]) updates
//! one counter only: its backend's [`Sent`] entry, which holds the outcome's packets and bytes
//! and whether the flow table kept the backend (a hit). The agent derives the rest: an
//! outcome's total is what the program counted in [`crate::map_names::STATS`] plus every
//! backend's sent packets of that outcome; a VIP's, its own entry (the packets it did not
//! forward) plus its backends'; the flow hits, the hits counted apart (a hit not forwarded)
//! plus every backend's. So that none of these totals ever goes down, a removed backend's
//! cleared entry keeps its VIP id, marked [`crate::BACKEND_RETIRING`], and its counts stay its
//! VIP's; once no program run can still count for it (an RCU grace period later), the agent
//! moves them into [`crate::map_names::RETIRED`] (its VIP's entry and the outcomes' and hits'
//! entries), which it adds in too, and only then zeroes them.
use core::mem::size_of;

/// Packets and bytes: the value of every counter map (per CPU).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Traffic {
    pub packets: u64,
    pub bytes: u64,
}
const _: () = assert!(size_of::<Traffic>() == 16);

/// What a backend was sent (per CPU): the value of [`crate::map_names::BACKEND_SENT`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Sent {
    /// Sent back out of the interface the packet came in on ([`Counter::Tx`]).
    pub tx: Traffic,
    /// Redirected to another interface ([`Counter::Redirect`]).
    pub redirect: Traffic,
    /// Of these, the packets whose backend the flow table kept (flow hits).
    pub hits: u64,
}
const _: () = assert!(size_of::<Sent>() == 40);

impl Sent {
    /// Everything sent, either way.
    pub const fn total(&self) -> Traffic {
        Traffic {
            packets: self.tx.packets + self.redirect.packets,
            bytes: self.tx.bytes + self.redirect.bytes,
        }
    }
}

/// Index in [`crate::map_names::RETIRED`] of removed backends' [`Counter::Tx`] packets (below
/// it: each VIP's, by VIP id).
pub const RETIRED_TX: u32 = crate::MAX_VIPS;
/// Index of removed backends' [`Counter::Redirect`] packets.
pub const RETIRED_REDIRECT: u32 = crate::MAX_VIPS + 1;
/// Index of removed backends' flow hits (in `packets`).
pub const RETIRED_HITS: u32 = crate::MAX_VIPS + 2;
pub const RETIRED_ENTRIES: u32 = crate::MAX_VIPS + 3;

/// Outcomes, the indices of [`crate::map_names::STATS`]. Every packet the program sees lands in
/// exactly one of them.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Not for a VIP (other address, port or protocol): passed untouched.
    PassNotVip = 0,
    /// Not IPv4/IPv6 (ARP, LLDP, ...): passed untouched.
    PassNotIp = 1,
    /// The frame is too short for its Ethernet (or VLAN) header: passed untouched, as is every
    /// malformed packet below, for the kernel to judge and count.
    PassMalformed = 2,
    /// Encapsulated and sent back out of the interface it came in on (`XDP_TX`).
    Tx = 3,
    /// Encapsulated and redirected to another interface.
    Redirect = 4,
    /// The VIP has no live backend.
    DropNoBackend = 5,
    /// No route to the backend (`bpf_fib_lookup` failed).
    DropNoRoute = 6,
    /// The route's next hop has no resolved neighbour entry.
    DropNoNeigh = 7,
    /// The egress interface is not in the redirect map (not one the agent manages).
    DropNoEgress = 8,
    /// The packet could not be grown for the outer header, or the result exceeds the MTU.
    DropEncap = 9,
    /// Internal fault (a map that should hold an entry did not).
    Aborted = 10,
    /// Decapsulated by `xdp_decap` and passed up.
    Decap = 11,
    /// An IPv4 fragment (ports unknown or incomplete): passed to the kernel.
    PassFragment = 12,
    /// IP header malformed: wrong version, IHL below 5, or cut short.
    PassBadIp = 13,
    /// The IP length field disagrees with the frame: longer than what arrived, or shorter
    /// than the headers it holds.
    PassBadLength = 14,
    /// Transport header malformed: cut short, TCP data offset below 5 or past the packet, UDP
    /// length below 8 or past the packet.
    PassBadL4 = 15,
    /// The IPv4 header checksum is wrong. (Transport checksums are the backend's to check:
    /// they cover the whole payload.)
    PassBadChecksum = 16,
    /// IPv6 with more extension headers before the transport header than the program walks
    /// ([`crate::IPV6_EXT_MAX`]): passed to the kernel.
    PassExtLimit = 17,
    /// Too big for the encapsulated path: answered with ICMP "fragmentation needed" or ICMPv6
    /// "packet too big" carrying the MTU that fits, sent back to the client (`XDP_TX`).
    IcmpTooBig = 18,
    /// An echo request to a VIP address, answered by the program (`agent.answer_echo`).
    IcmpEcho = 19,
    /// A source the VIP's ACL (`[vip.acl]`) does not admit: dropped, its established flows
    /// included.
    DropAcl = 20,
    /// A new flow over its source's limit (`[vip.limits]`): dropped. Established flows are
    /// never limited.
    DropLimit = 21,
    /// Traffic to a VIP address that no VIP balances (another port or protocol, a fragment no
    /// VIP takes), dropped by `agent.unbalanced = "drop"` rather than handed to the kernel.
    DropUnbalanced = 22,
}

impl Counter {
    pub const COUNT: u32 = 23;
    pub const ALL: [Counter; Self::COUNT as usize] = [
        Counter::PassNotVip,
        Counter::PassNotIp,
        Counter::PassMalformed,
        Counter::Tx,
        Counter::Redirect,
        Counter::DropNoBackend,
        Counter::DropNoRoute,
        Counter::DropNoNeigh,
        Counter::DropNoEgress,
        Counter::DropEncap,
        Counter::Aborted,
        Counter::Decap,
        Counter::PassFragment,
        Counter::PassBadIp,
        Counter::PassBadLength,
        Counter::PassBadL4,
        Counter::PassBadChecksum,
        Counter::PassExtLimit,
        Counter::IcmpTooBig,
        Counter::IcmpEcho,
        Counter::DropAcl,
        Counter::DropLimit,
        Counter::DropUnbalanced,
    ];

    /// The counter with index `i` (an unknown index reads as [`Counter::Aborted`]).
    #[inline(always)]
    pub const fn from_u32(i: u32) -> Counter {
        if i < Self::COUNT {
            Self::ALL[i as usize]
        } else {
            Counter::Aborted
        }
    }

    /// The name used in `lb stats` and its JSON.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::PassNotVip => "pass_not_vip",
            Counter::PassNotIp => "pass_not_ip",
            Counter::PassMalformed => "pass_malformed",
            Counter::Tx => "tx",
            Counter::Redirect => "redirect",
            Counter::DropNoBackend => "drop_no_backend",
            Counter::DropNoRoute => "drop_no_route",
            Counter::DropNoNeigh => "drop_no_neigh",
            Counter::DropNoEgress => "drop_no_egress",
            Counter::DropEncap => "drop_encap",
            Counter::Aborted => "aborted",
            Counter::Decap => "decap",
            Counter::PassFragment => "pass_fragment",
            Counter::PassBadIp => "pass_bad_ip",
            Counter::PassBadLength => "pass_bad_length",
            Counter::PassBadL4 => "pass_bad_l4",
            Counter::PassBadChecksum => "pass_bad_checksum",
            Counter::PassExtLimit => "pass_ext_limit",
            Counter::IcmpTooBig => "icmp_too_big",
            Counter::IcmpEcho => "icmp_echo",
            Counter::DropAcl => "drop_acl",
            Counter::DropLimit => "drop_limit",
            Counter::DropUnbalanced => "drop_unbalanced",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_dense_and_named_once() {
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(*c as u32, i as u32, "{c:?}");
        }
        for a in Counter::ALL {
            for b in Counter::ALL {
                assert!(a == b || a.name() != b.name(), "{a:?} {b:?}");
            }
        }
    }
}
