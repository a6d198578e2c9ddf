//! The ABI between the XDP programs (`lb-ebpf`) and the agent (`lb-userspace`).
//!
//! Every map key and value, every capacity, every map name and every counter lives here,
//! once, for both sides. Layout is ABI: each type is `#[repr(C)]` with explicit padding and
//! a compile-time size assertion. Map values hold no `bool`, enum or `Option`: integer codes
//! with named constants.
#![no_std]

mod capture;
pub mod counter;
pub mod flow;
pub mod flow_cache;
pub mod hash;
pub mod vip_index;

pub use capture::{CAPTURE_ANY, CAPTURE_MAX, CAPTURE_RING_BYTES, CaptureCtl, CaptureHeader};
pub use counter::{
    Counter, RETIRED_ENTRIES, RETIRED_HITS, RETIRED_REDIRECT, RETIRED_TX, Sent, Traffic,
};

pub use flow::{
    FLOW_KEEP_S, FLOW_PROMOTED, FLOW_STAMP_NS, FLOW_WAYS, FlowKey, FlowSlot, FlowValue, Ways,
    flow_check, flow_entries, flow_kept, flow_set_base, flow_sets, flow_table_hash, flow_udp_idle,
};
pub use flow_cache::{
    FLOW_CACHE_ENTRIES, FLOW_CACHE_EPOCH_NS, FLOW_SEEN_LAG_NS, FlowCacheEntry, flow_cache_index,
};

use core::mem::size_of;

/// Names of the maps, as the agent finds them in the loaded object (at most 15 bytes: the
/// kernel's `BPF_OBJ_NAME_LEN` is 16 with the terminating NUL).
pub mod map_names {
    pub const VIPS: &str = "LB_VIPS";
    pub const RINGS: &str = "LB_RINGS";
    pub const BACKENDS: &str = "LB_BACKENDS";
    pub const CONFIG: &str = "LB_CONFIG";
    pub const STATS: &str = "LB_STATS";
    pub const VIP_STATS: &str = "LB_VIP_STATS";
    /// Per backend (per CPU): what the program counts there itself, outside [`BACKEND_SENT`]
    /// (an ICMP "too big" answered for one of its flows).
    pub const BACKEND_STATS: &str = "LB_BE_STATS";
    /// Per backend (per CPU): the packets sent to it ([`crate::Sent`]), the one counter a
    /// forwarded packet updates (see [`crate::counter`]).
    pub const BACKEND_SENT: &str = "LB_BE_SENT";
    /// The sent counts of backends the agent has removed ([`crate::Retired`]), which the
    /// totals of their VIPs and outcomes keep; written only by the agent.
    pub const RETIRED: &str = "LB_RETIRED";
    pub const DEVMAP: &str = "LB_DEVMAP";
    pub const DECAP_DST: &str = "LB_DECAP_DST";
    /// The flow table (see [`crate::flow`]).
    pub const FLOWS: &str = "LB_FLOW_TABLE";
    /// The flow table of releases before it was our own (an LRU hash map of
    /// [`crate::FlowKey`] → [`crate::FlowValue`]): a pinned one is read once at start, its
    /// flows moved into [`FLOWS`], and its pin removed.
    pub const FLOWS_LRU: &str = "LB_FLOWS";
    pub const FLOW_STATS: &str = "LB_FLOW_STATS";
    /// The flow cache in front of the flow table (see [`crate::flow_cache`]).
    pub const FLOW_CACHE: &str = "LB_FLOW_CACHE";
    pub const VIP_FILTER: &str = "LB_VIP_FILTER";
    /// The VIPs laid out for an inline lookup (see [`crate::vip_index`]): the slots, each
    /// VIP's value, and the control word.
    pub const VIP_INDEX: &str = "LB_VIP_INDEX";
    pub const VIP_VALUES: &str = "LB_VIP_VALUES";
    pub const VIP_INDEX_CTL: &str = "LB_VIP_IDX_CTL";
    pub const ECHO: &str = "LB_ECHO";
    /// New flows per backend (per CPU): 5-tuples the ring sent to it.
    pub const BACKEND_FLOWS: &str = "LB_BE_FLOWS";
    /// SYNs repeated per backend (per CPU): a client's SYN again while its flow was on
    /// probation, within seconds (passive health).
    pub const BACKEND_RETRIES: &str = "LB_BE_RETRIES";
    /// `lb capture`: what to copy, and the ring buffer the copies go through.
    pub const CAPTURE_CTL: &str = "LB_CAPTURE_CTL";
    pub const CAPTURE: &str = "LB_CAPTURE";
    pub const CAPTURE_LOST: &str = "LB_CAPTURE_LOST";
    /// Per-VIP source ACLs: an LPM trie of [`crate::AclKey`] → [`crate::ACL_ALLOW`] or
    /// [`crate::ACL_DENY`].
    pub const ACL: &str = "LB_ACL";
    /// Per-VIP new-flow limits ([`crate::VipLimit`], by VIP id).
    pub const VIP_LIMITS: &str = "LB_VIP_LIMITS";
    /// Per-source token buckets of the new-flow limits: [`crate::LimitKey`] → the bucket's
    /// theoretical arrival time (ns), an LRU hash map.
    pub const LIMITS: &str = "LB_LIMITS";
    /// Every VIP address ([`crate::AddrKey`] → 1): what `agent.unbalanced = "drop"` drops for.
    pub const VIP_ADDRS: &str = "LB_VIP_ADDRS";
}

/// Names of the programs in the object.
pub mod program_names {
    pub const LB: &str = "xdp_lb";
    pub const DECAP: &str = "xdp_decap";
}

/// How many VIPs one instance serves.
pub const MAX_VIPS: u32 = 64;
/// How many backends (over all VIPs) one instance knows.
pub const MAX_BACKENDS: u32 = 4096;

/// The socket mark of a health probe sent through the tunnel: [`PROBE_MARK`] | the backend's
/// id (below [`MAX_BACKENDS`], so kube-proxy's bits 0x4000 and 0x8000 stay clear). The
/// agent's policy rule sends marked packets to the probes' device, whose egress program
/// (`tc_probe`) encapsulates them to that backend.
pub const PROBE_MARK: u32 = 0x4c42_0000;
/// The bits of a mark that say it is a probe's.
pub const PROBE_MARK_MASK: u32 = 0xffff_0000;
const _: () = assert!(MAX_BACKENDS <= 0x1000);
/// Largest ring size, and the stride between rings in [`map_names::RINGS`].
pub const RING_STRIDE: u32 = 65537;
/// Default Maglev ring size: prime, so that every skip value walks every slot.
pub const RING_SIZE_DEFAULT: u32 = 65537;
/// Entries of the rings map: two rings (double buffer) per VIP.
pub const RINGS_ENTRIES: u32 = MAX_VIPS * 2 * RING_STRIDE;
/// A ring slot that names no backend (a VIP without live backends).
pub const NO_BACKEND: u32 = u32::MAX;
/// Default size of the flow table (entries, a multiple of [`FLOW_WAYS`]); the agent sets the
/// real size at load.
pub const FLOWS_DEFAULT: u32 = 1 << 20;
/// Index in [`map_names::FLOW_STATS`]: entries added to the flow table (a flow it did not
/// hold). Added minus present is what the table evicted to make room.
pub const FLOW_INSERTS: u32 = 0;
/// Index in [`map_names::FLOW_STATS`]: packets of established flows that kept their backend.
pub const FLOW_HITS: u32 = 1;
/// Index in [`map_names::FLOW_STATS`]: new flows the table could not record, every way of
/// their set holding an established flow within its keep time (the flow still goes to the
/// ring's backend; its next packet tries again).
pub const FLOW_UNRECORDED: u32 = 2;
pub const FLOW_STATS_COUNT: u32 = 3;
/// Default time a TCP flow's entry is kept against eviction by new flows after its last
/// packet, once established (`agent.tcp_idle`).
pub const TCP_IDLE_DEFAULT_S: u32 = 900;

/// Default idle time after which a UDP flow may move to another backend.
pub const UDP_IDLE_DEFAULT_S: u32 = 30;
/// Words of [`map_names::VIP_FILTER`]'s one entry: a bitmap of [`VIP_FILTER_BITS`] bits, one
/// set for every VIP address ([`hash::vip_filter_bit`]). A clear bit proves a packet is not for
/// a VIP, without a hash-map lookup; a set bit may be a collision, and the VIP lookup decides.
pub const VIP_FILTER_WORDS: usize = 1024;
pub const VIP_FILTER_BITS: u32 = VIP_FILTER_WORDS as u32 * 64;
pub type VipFilter = [u64; VIP_FILTER_WORDS];

/// Interfaces the program may redirect to.
pub const MAX_INTERFACES: u32 = 64;

/// Index of ring slot `slot` of ring `which` (0 or 1) of VIP `vip_id`.
#[inline(always)]
pub fn ring_index(vip_id: u32, which: u32, slot: u32) -> u32 {
    (vip_id * 2 + (which & 1)) * RING_STRIDE + slot
}

/// Address families, as stored in keys and values.
pub const FAMILY_V4: u8 = 4;
pub const FAMILY_V6: u8 = 6;

/// IP protocol numbers we balance.
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// Forwarding modes ([`VipValue::forwarding`], [`Backend::forwarding`]): IP-in-IP (0 in a
/// backend entry of an older release means the same).
pub const FORWARD_IPIP: u32 = 1;
/// The client's IP packet in UDP (GUE variant 1: no GUE header, the inner IP version tells
/// IPv4 from IPv6), to [`Config::gue_port`], the UDP source port from the flow's hash.
pub const FORWARD_GUE: u32 = 2;
/// The packet leaves unchanged but for its Ethernet addresses, to a backend on a connected
/// segment that holds the VIP on its loopback.
pub const FORWARD_L2DSR: u32 = 3;

/// Key of [`map_names::VIPS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct VipKey {
    /// Address in network byte order; an IPv4 address fills the first 4 bytes, the rest is 0.
    pub addr: [u8; 16],
    /// Port in network byte order; 0 means every port.
    pub port_be: u16,
    /// [`PROTO_TCP`] or [`PROTO_UDP`].
    pub proto: u8,
    /// [`FAMILY_V4`] or [`FAMILY_V6`].
    pub family: u8,
}
const _: () = assert!(size_of::<VipKey>() == 20);

/// Set in [`VipKey::family`] of the second entry a VIP that takes fragments has: keyed by
/// address and protocol alone (port 0), since a later fragment carries no port.
pub const FAMILY_FRAGMENTS: u8 = 0x80;

impl VipKey {
    /// The key fragments to this VIP's address and protocol are looked up by.
    pub const fn for_fragments(self) -> VipKey {
        VipKey {
            addr: self.addr,
            port_be: 0,
            proto: self.proto,
            family: self.family | FAMILY_FRAGMENTS,
        }
    }

    /// Whether this is the fragments' entry of a VIP, not a VIP of its own.
    pub const fn is_fragments(&self) -> bool {
        self.family & FAMILY_FRAGMENTS != 0
    }
}

/// Value of [`map_names::VIPS`]. The agent replaces it whole: flipping `active_ring` is how a
/// new ring goes live atomically (a hash map update swaps the element under RCU).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct VipValue {
    /// Index into the per-VIP counters and into the rings map.
    pub id: u32,
    /// Slots of this VIP's ring (prime, at most [`RING_STRIDE`]).
    pub ring_size: u32,
    /// Which of the VIP's two rings is live: 0 or 1.
    pub active_ring: u32,
    /// [`FORWARD_IPIP`], [`FORWARD_GUE`] or [`FORWARD_L2DSR`].
    pub forwarding: u32,
    /// [`VIP_ACL`] | [`VIP_ACL_DEFAULT_DENY`] | [`VIP_LIMITED`], and in bits 8-23 what the
    /// ring's hash takes of a packet ([`hash::hash_flags`]).
    pub flags: u32,
    /// Reserved; 0. (A UDP flow's idle time is in each backend's entry, where a flow-table hit
    /// reads it.)
    pub _reserved: u32,
}
const _: () = assert!(size_of::<VipValue>() == 24);

/// [`VipValue::flags`] bit: the VIP has a source ACL in [`map_names::ACL`].
pub const VIP_ACL: u32 = 1;
/// [`VipValue::flags`] bit: a source no ACL entry matches is denied (the ACL has allow
/// entries); without it, allowed.
pub const VIP_ACL_DEFAULT_DENY: u32 = 2;
/// [`VipValue::flags`] bit: the VIP limits new flows per source ([`map_names::VIP_LIMITS`]).
pub const VIP_LIMITED: u32 = 4;

/// Values of [`map_names::ACL`].
pub const ACL_ALLOW: u32 = 1;
pub const ACL_DENY: u32 = 2;

/// The data of an [`map_names::ACL`] key (behind the LPM trie's prefix length): the VIP id
/// (big-endian, so that it is the key's first 32 bits) and the source address, IPv4 mapped
/// into IPv6 (`::ffff:a.b.c.d`), so that one trie holds both families.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct AclKey {
    pub vip_be: [u8; 4],
    pub addr: [u8; 16],
}
const _: () = assert!(size_of::<AclKey>() == 20);
/// Prefix length of an [`AclKey`] that matches one address exactly.
pub const ACL_FULL_PREFIX: u32 = 32 + 128;

impl AclKey {
    /// The key of `addr` (in the maps' 16-byte form) for VIP `vip`.
    #[inline(always)]
    pub fn new(vip: u32, addr: &[u8; 16], family: u8) -> Self {
        let mut a = *addr;
        if family == FAMILY_V4 {
            a = [
                0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, addr[0], addr[1], addr[2], addr[3],
            ];
        }
        AclKey {
            vip_be: vip.to_be_bytes(),
            addr: a,
        }
    }
}

/// A VIP's new-flow limit per source, as a token bucket in time (GCRA): a source may open a
/// new flow when its bucket's arrival time is at most `tolerance_ns` ahead of now, and each
/// new flow moves it `interval_ns` on.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct VipLimit {
    /// 1 s / new flows per second.
    pub interval_ns: u64,
    /// (burst - 1) × `interval_ns`.
    pub tolerance_ns: u64,
}
const _: () = assert!(size_of::<VipLimit>() == 16);

/// Key of [`map_names::LIMITS`]: a VIP and a source (IPv4 /32, IPv6 /64: the rest zero).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct LimitKey {
    pub vip: u32,
    pub family: u8,
    pub _pad: [u8; 3],
    pub addr: [u8; 16],
}
const _: () = assert!(size_of::<LimitKey>() == 24);
/// Sources whose new-flow buckets are kept at once (least recently used go first).
pub const LIMIT_SOURCES: u32 = 65536;
/// Entries of the ACL trie, over all VIPs.
pub const ACL_ENTRIES: u32 = 65536;

/// Key of [`map_names::DECAP_DST`]: an address of the backend host, whose encapsulated
/// packets `xdp_decap` strips.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct AddrKey {
    /// Network byte order; IPv4 fills the first 4 bytes.
    pub addr: [u8; 16],
    /// [`FAMILY_V4`] or [`FAMILY_V6`].
    pub family: u8,
    pub _pad: [u8; 3],
}
const _: () = assert!(size_of::<AddrKey>() == 20);

impl AddrKey {
    /// The key of `addr` (IPv4 in the first 4 bytes) of `family`. Built from whole words: the
    /// code generator then writes the family and its padding as one 4-byte store, where field
    /// by field it wrote a byte and a 2-byte store at an odd offset, which the verifier
    /// refuses on the stack.
    #[inline(always)]
    pub fn new(addr: [u8; 16], family: u8) -> Self {
        #[repr(C)]
        struct Words {
            addr: [u8; 16],
            family_and_pad: u32,
        }
        let w = Words {
            addr,
            family_and_pad: u32::from_ne_bytes([family, 0, 0, 0]),
        };
        // Safety: both are 20 bytes of plain integers, laid out alike (repr(C)).
        unsafe { core::mem::transmute::<Words, AddrKey>(w) }
    }
}

/// [`Backend::state`] bit: the backend is healthy. Flows to a backend without it move.
pub const BACKEND_UP: u8 = 1;
/// [`Backend::state`] bit: draining: existing flows stay, the ring gives it no new ones.
pub const BACKEND_DRAIN: u8 = 2;
/// [`Backend::state`] bit: down (or damped), but its established flows are held on it
/// (`on_down = "keep"`): written with [`BACKEND_UP`], so the data path honours them; the ring
/// gives it none. Only the agent reads it (a restart must not take the backend as healthy).
pub const BACKEND_HELD: u8 = 4;
/// [`Backend::state`] bit of an entry the agent cleared (its family 0: the program sends the
/// backend nothing): what the backend was sent has yet to move into the retired totals
/// ([`map_names::RETIRED`]), and the entry keeps its `vip_id` until then. Only the agent reads
/// it.
pub const BACKEND_RETIRING: u8 = 8;

/// Value of [`map_names::BACKENDS`], indexed by backend id.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Backend {
    /// Address in network byte order; IPv4 fills the first 4 bytes.
    pub addr: [u8; 16],
    /// [`FAMILY_V4`], [`FAMILY_V6`], or 0 for an unused slot.
    pub family: u8,
    /// [`BACKEND_UP`] | [`BACKEND_DRAIN`] | [`BACKEND_HELD`].
    pub state: u8,
    /// Its VIP's forwarding mode ([`FORWARD_IPIP`], [`FORWARD_GUE`], [`FORWARD_L2DSR`]): a
    /// flow-table hit reads the backend's entry alone.
    pub forwarding: u8,
    pub _pad: u8,
    /// The VIP this backend serves (a flow entry is honoured only for its own VIP).
    pub vip_id: u32,
    /// The next hop, as the agent resolved it ([`NextHop::ifindex`] 0: not known, the
    /// program asks `bpf_fib_lookup`).
    pub hop: NextHop,
    /// The VIP's key (port 0: every port), and its UDP idle time: a flow-table hit is checked
    /// against the backend's entry alone, so an established flow costs no VIP lookup.
    pub vip: VipKey,
    pub udp_idle_s: u32,
}
const _: () = assert!(size_of::<Backend>() == 68);

/// Where packets to a backend leave: kept in the backend's entry by the agent so that the
/// program need not look the route and neighbour up for every packet.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct NextHop {
    /// Egress interface; 0 when unknown.
    pub ifindex: u32,
    /// Its MTU: a larger encapsulated packet is dropped and counted.
    pub mtu: u32,
    /// The next hop's MAC (destination).
    pub dmac: [u8; 6],
    /// The egress interface's MAC (source).
    pub smac: [u8; 6],
}
const _: () = assert!(size_of::<NextHop>() == 20);

/// [`Config::flags`] bit: some VIP takes every port (port 0), so a miss on the exact port
/// must try port 0 too. Without it, traffic that is not for us costs one lookup, not two.
pub const CONFIG_ANY_PORT_VIP: u32 = 1;
/// [`Config::flags`] bit: traffic to a VIP address that no VIP balances is dropped
/// (`agent.unbalanced = "drop"`), not passed.
pub const CONFIG_DROP_UNBALANCED: u32 = 2;

/// The single entry of [`map_names::CONFIG`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Config {
    /// Outer source of IPv4-in-IPv4 packets, network byte order.
    pub source_v4: [u8; 4],
    /// Outer source of IPv6-in-IPv6 packets, network byte order.
    pub source_v6: [u8; 16],
    /// [`CONFIG_ANY_PORT_VIP`] | [`CONFIG_DROP_UNBALANCED`], and the host bits of the outer
    /// sources' prefixes ([`hash::source_flags`]).
    pub flags: u32,
    /// The path MTU to the backends when below the egress interface's (0: the interface's).
    pub path_mtu: u32,
    /// The backends' GUE port ([`FORWARD_GUE`]), network byte order; `xdp_decap` takes UDP
    /// to this port as GUE.
    pub gue_port_be: u16,
    pub _pad: [u8; 2],
}
const _: () = assert!(size_of::<Config>() == 32);

/// The single entry of the test object's `LB_GEN_CONFIG`: what its traffic generator writes
/// into every frame (60 bytes over IPv4, 62 over IPv6). [`GEN_CYCLE`]: UDP, varying the
/// source address and port over 4096 flows; [`GEN_SYN_FLOOD`] and [`GEN_UDP_FLOOD`] (IPv4):
/// a TCP SYN or a UDP datagram from a new source address and port every frame.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct GenConfig {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    /// Network byte order; the last byte and the source port vary. IPv4 in the first 4 bytes
    /// (the rest unused), as in the maps.
    pub src_ip: [u8; 16],
    pub dst_ip: [u8; 16],
    /// Network byte order.
    pub dst_port: [u8; 2],
    /// [`FAMILY_V4`] or [`FAMILY_V6`].
    pub family: u8,
    /// [`GEN_CYCLE`], [`GEN_SYN_FLOOD`], [`GEN_UDP_FLOOD`], [`GEN_CYCLE_1M`] or
    /// [`GEN_CYCLE_64K`].
    pub mode: u8,
}
const _: () = assert!(size_of::<GenConfig>() == 48);

/// [`GenConfig::mode`]: 4096 UDP flows, cycled.
pub const GEN_CYCLE: u8 = 0;
/// [`GenConfig::mode`]: a TCP SYN from a new 5-tuple every frame (IPv4): the source's last 15
/// bits and port follow a sequence; the TCP checksum is left 0.
pub const GEN_SYN_FLOOD: u8 = 1;
/// [`GenConfig::mode`]: like [`GEN_SYN_FLOOD`], a one-datagram UDP flow every frame.
pub const GEN_UDP_FLOOD: u8 = 2;
/// [`GenConfig::mode`]: [`GEN_UDP_FLOOD`]'s sequence over 2^20 UDP flows (32,768 sources ×
/// 32 ports), cycled: a million live flows.
pub const GEN_CYCLE_1M: u8 = 3;
/// [`GenConfig::mode`]: the same sequence over 2^16 UDP flows (32,768 sources × 2 ports),
/// cycled: more live flows than the flow cache has entries.
pub const GEN_CYCLE_64K: u8 = 4;

/// The length of the generator's IPv4 frames: Ethernet, IPv4, UDP, 18 bytes of payload (64
/// bytes on the wire with the frame check sequence).
pub const GEN_FRAME_V4: usize = 60;
/// The length of the generator's IPv6 frames: Ethernet, IPv6, UDP, no payload (the smallest).
pub const GEN_FRAME_V6: usize = 62;

/// Extension headers `xdp_lb` walks in an IPv6 packet to find its transport header.
pub const IPV6_EXT_MAX: usize = 4;

#[cfg(feature = "user")]
mod pod {
    use super::*;
    unsafe impl aya::Pod for VipKey {}
    unsafe impl aya::Pod for AddrKey {}
    unsafe impl aya::Pod for VipValue {}
    unsafe impl aya::Pod for Backend {}
    unsafe impl aya::Pod for NextHop {}
    unsafe impl aya::Pod for Config {}
    unsafe impl aya::Pod for Traffic {}
    unsafe impl aya::Pod for Sent {}
    unsafe impl aya::Pod for vip_index::VipSlot {}
    unsafe impl aya::Pod for vip_index::VipIndexCtl {}
    unsafe impl aya::Pod for FlowKey {}
    unsafe impl aya::Pod for GenConfig {}
    unsafe impl aya::Pod for FlowValue {}
    unsafe impl aya::Pod for FlowSlot {}
    unsafe impl aya::Pod for FlowCacheEntry {}
    unsafe impl aya::Pod for CaptureCtl {}
    unsafe impl aya::Pod for AclKey {}
    unsafe impl aya::Pod for VipLimit {}
    unsafe impl aya::Pod for LimitKey {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rings_do_not_overlap() {
        assert_eq!(ring_index(0, 1, 0), RING_STRIDE);
        assert_eq!(ring_index(1, 0, 0), 2 * RING_STRIDE);
        assert_eq!(
            ring_index(MAX_VIPS - 1, 1, RING_STRIDE - 1),
            RINGS_ENTRIES - 1
        );
    }
}
