//! Every map of the programs. Sizes and names come from `lb-common`.
use aya_ebpf::{
    macros::map,
    maps::{Array, DevMapHash, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
};
use lb_common::{
    ACL_ENTRIES, AclKey, AddrKey, Backend, CAPTURE_RING_BYTES, CaptureCtl, Config, Counter,
    FLOW_CACHE_ENTRIES, FLOW_STATS_COUNT, FLOWS_DEFAULT, FlowCacheEntry, FlowSlot, LIMIT_SOURCES,
    LimitKey, MAX_BACKENDS, MAX_INTERFACES, MAX_VIPS, RETIRED_ENTRIES, RINGS_ENTRIES, Sent,
    Traffic, VipFilter, VipKey, VipLimit, VipValue,
    vip_index::{VIP_INDEX_ENTRIES, VipIndexCtl, VipSlot},
};

/// The VIPs laid out for an inline lookup (`lb_common::vip_index`): two halves of slots.
#[map(name = "LB_VIP_INDEX")]
pub static VIP_INDEX: Array<VipSlot> =
    Array::with_max_entries(VIP_INDEX_ENTRIES, aya_ebpf::bindings::BPF_F_MMAPABLE);

/// Each VIP's value, packed into one word (`lb_common::vip_index::pack_vip_value`).
#[map(name = "LB_VIP_VALUES")]
pub static VIP_VALUES: Array<u64> =
    Array::with_max_entries(MAX_VIPS, aya_ebpf::bindings::BPF_F_MMAPABLE);

/// Which half of the index is live (none: ask [`VIPS`]), whether keys await a layout, and each
/// half's seed.
#[map(name = "LB_VIP_IDX_CTL")]
pub static VIP_INDEX_CTL: Array<VipIndexCtl> =
    Array::with_max_entries(1, aya_ebpf::bindings::BPF_F_MMAPABLE);

#[map(name = "LB_VIPS")]
/// Each VIP's entry, and a second one for a VIP that takes fragments.
pub static VIPS: HashMap<VipKey, VipValue> = HashMap::with_max_entries(2 * MAX_VIPS, 0);

/// One bit per VIP address (see [`lb_common::VipFilter`]): traffic for other addresses is
/// told apart with an array read, never a hash lookup.
#[map(name = "LB_VIP_FILTER")]
pub static VIP_FILTER: Array<VipFilter> = Array::with_max_entries(1, 0);

/// Memory-mappable: the agent writes a new ring with plain stores, not one system call per slot.
#[map(name = "LB_RINGS")]
pub static RINGS: Array<u32> =
    Array::with_max_entries(RINGS_ENTRIES, aya_ebpf::bindings::BPF_F_MMAPABLE);

#[map(name = "LB_BACKENDS")]
pub static BACKENDS: Array<Backend> = Array::with_max_entries(MAX_BACKENDS, 0);

#[map(name = "LB_CONFIG")]
pub static CONFIG: Array<Config> = Array::with_max_entries(1, 0);

#[map(name = "LB_STATS")]
pub static STATS: PerCpuArray<Traffic> = PerCpuArray::with_max_entries(Counter::COUNT, 0);

#[map(name = "LB_VIP_STATS")]
pub static VIP_STATS: PerCpuArray<Traffic> = PerCpuArray::with_max_entries(MAX_VIPS, 0);

/// Per backend: what the program counts there outside [`BACKEND_SENT`].
#[map(name = "LB_BE_STATS")]
pub static BACKEND_STATS: PerCpuArray<Traffic> = PerCpuArray::with_max_entries(MAX_BACKENDS, 0);

/// Per backend: the packets sent to it, the one counter a forwarded packet updates.
#[map(name = "LB_BE_SENT")]
pub static BACKEND_SENT: PerCpuArray<Sent> = PerCpuArray::with_max_entries(MAX_BACKENDS, 0);

/// Removed backends' sent counts, which the agent keeps in their VIPs' and the outcomes'
/// totals. The programs never touch it; it is here so that the object makes and pins it with
/// the other counters.
#[map(name = "LB_RETIRED")]
pub static RETIRED: Array<Traffic> = Array::with_max_entries(RETIRED_ENTRIES, 0);

/// New flows per backend: 5-tuples the ring sent to it and the flow table recorded.
#[map(name = "LB_BE_FLOWS")]
pub static BACKEND_FLOWS: PerCpuArray<u64> = PerCpuArray::with_max_entries(MAX_BACKENDS, 0);

/// SYNs repeated per backend: a client's SYN again while its flow was on probation (passive
/// health's signal: under direct server return the balancer sees only the client's side).
#[map(name = "LB_BE_RETRIES")]
pub static BACKEND_RETRIES: PerCpuArray<u64> = PerCpuArray::with_max_entries(MAX_BACKENDS, 0);

/// `lb capture`: the filter of the running capture (all zero: none runs).
#[map(name = "LB_CAPTURE_CTL")]
pub static CAPTURE_CTL: Array<CaptureCtl> = Array::with_max_entries(1, 0);

/// `lb capture`: the copies, on their way to the agent.
#[map(name = "LB_CAPTURE")]
pub static CAPTURE: RingBuf = RingBuf::with_byte_size(CAPTURE_RING_BYTES, 0);

/// `lb capture`: packets that matched but found the ring buffer full (per CPU).
#[map(name = "LB_CAPTURE_LOST")]
pub static CAPTURE_LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

#[map(name = "LB_DEVMAP")]
pub static DEVMAP: DevMapHash = DevMapHash::with_max_entries(MAX_INTERFACES, 0);

/// VIP addresses whose echo requests the program answers (`agent.answer_echo`).
#[map(name = "LB_ECHO")]
pub static ECHO: HashMap<AddrKey, u32> = HashMap::with_max_entries(2 * MAX_VIPS, 0);

/// Every VIP address: what `agent.unbalanced = "drop"` drops for (the filter above may
/// say yes for an address that is no VIP's).
#[map(name = "LB_VIP_ADDRS")]
pub static VIP_ADDRS: HashMap<AddrKey, u32> = HashMap::with_max_entries(2 * MAX_VIPS, 0);

/// Per-VIP source ACLs (a VIP whose entry has `VIP_ACL`): the longest prefix matching the
/// source says allow or deny.
#[map(name = "LB_ACL")]
pub static ACL: LpmTrie<AclKey, u32> = LpmTrie::with_max_entries(ACL_ENTRIES, 0);

/// Per-VIP new-flow limits (a VIP whose entry has `VIP_LIMITED`), by VIP id.
#[map(name = "LB_VIP_LIMITS")]
pub static VIP_LIMITS: Array<VipLimit> = Array::with_max_entries(MAX_VIPS, 0);

/// The per-source buckets of the new-flow limits: their theoretical arrival times (ns).
#[map(name = "LB_LIMITS")]
pub static LIMITS: LruHashMap<LimitKey, u64> = LruHashMap::with_max_entries(LIMIT_SOURCES, 0);

/// Decap's own addresses: an outer header addressed elsewhere is not ours to strip.
#[map(name = "LB_DECAP_DST")]
pub static DECAP_DST: HashMap<AddrKey, u32> = HashMap::with_max_entries(64, 0);

/// Flow table: 5-tuple → backend, a set-associative table of our own (see [`crate::flow_table`]).
/// One table shared by all CPUs rather than one per CPU: on hosts where a flow's packets may
/// be processed on different CPUs (veth, no RSS), a per-CPU table would miss and re-pick, and
/// a ring change in between would move the flow. Memory-mappable: the agent counts and reads
/// it without a system call per slot.
#[map(name = "LB_FLOW_TABLE")]
pub static FLOWS: Array<FlowSlot> =
    Array::with_max_entries(FLOWS_DEFAULT, aya_ebpf::bindings::BPF_F_MMAPABLE);

/// The flow cache in front of the table ([`lb_common::flow_cache`]): 1 MB on 256 pages, where
/// the table's flows lie on thousands. Memory-mappable: the agent wipes it with plain stores.
#[map(name = "LB_FLOW_CACHE")]
pub static FLOW_CACHE: Array<FlowCacheEntry> =
    Array::with_max_entries(FLOW_CACHE_ENTRIES, aya_ebpf::bindings::BPF_F_MMAPABLE);

/// Flow table counters: [`lb_common::FLOW_INSERTS`], [`lb_common::FLOW_HITS`] (per CPU).
#[map(name = "LB_FLOW_STATS")]
pub static FLOW_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(FLOW_STATS_COUNT, 0);

/// Per CPU: the coarse clock's last reading and the jiffies it was taken at (see
/// `flow_table::now`). Not pinned: a new program starts with an empty one.
#[map(name = "LB_CLOCK")]
pub static CLOCK: PerCpuArray<Clock> = PerCpuArray::with_max_entries(1, 0);

/// A reading of the coarse clock (ns), and the jiffies when it was taken.
#[repr(C)]
pub struct Clock {
    pub jiffies: u64,
    pub ns: u64,
}
