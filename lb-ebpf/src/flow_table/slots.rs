//! The flow table's slots: 5-tuple → backend, set-associative, in one array map (layout, eviction
//! order and why it is safe without locks: [`lb_common::flow`]).
use aya_ebpf::Global;
use lb_common::{
    FLOW_PROMOTED, FLOW_WAYS, FlowKey, FlowSlot, Ways, flow_check, flow_kept, flow_set_base,
};

use crate::maps::FLOWS;

/// Sets in the table (its slots / [`FLOW_WAYS`]): a load-time constant the agent writes from
/// the map's real size, so the verifier folds it into the index arithmetic.
#[unsafe(no_mangle)]
static LB_FLOW_SETS: Global<u32> = Global::new(1);

#[inline(always)]
fn set_base(h: u64) -> u32 {
    flow_set_base(h, LB_FLOW_SETS.load())
}

/// Whether the slot's key is `key`: five 64-bit compares, each slot word read once, in order
/// after the tag (volatile: the compiler may not hoist them above it).
#[inline(always)]
fn holds(slot: *const FlowSlot, key: &FlowKey) -> bool {
    let w = key.words();
    // Safety: a slot of the map, valid for this program run; its key is 8-aligned.
    let s = unsafe { core::ptr::addr_of!((*slot).key) as *const u64 };
    unsafe {
        s.read_volatile() == w[0]
            && s.add(1).read_volatile() == w[1]
            && s.add(2).read_volatile() == w[2]
            && s.add(3).read_volatile() == w[3]
            && s.add(4).read_volatile() == w[4]
    }
}

/// The slot's backend and check, in one load (see [`FlowSlot::tag`]).
#[inline(always)]
pub fn tag(slot: *const FlowSlot) -> u64 {
    // Safety: a slot of the map, valid for this program run; 8-aligned.
    unsafe { core::ptr::read_volatile(slot as *const u64) }
}

/// Writes the slot's backend and check in one store.
#[inline(always)]
pub fn set_tag(slot: *mut FlowSlot, backend: u32, check: u32) {
    // Safety: as in `tag`.
    unsafe { core::ptr::write_volatile(slot as *mut u64, FlowSlot::tag(backend, check)) }
}

/// The slot that holds `key` (whose table hash is `h`), and the backend it names.
#[inline(always)]
pub fn find(key: &FlowKey, h: u64) -> Option<(*mut FlowSlot, u32)> {
    let (base, check) = (set_base(h), flow_check(h));
    for way in 0..FLOW_WAYS {
        let slot = FLOWS.get_ptr_mut(base + way)?;
        let t = tag(slot);
        if (t >> 32) as u32 == check && holds(slot, key) {
            return Some((slot, t as u32));
        }
    }
    None
}

/// What [`insert`] did.
pub enum Inserted {
    /// The flow is new to the table.
    New,
    /// The table held the flow: its entry now names the new pick. `retry_of`: the backend
    /// the entry named, when the packet is a SYN repeated while the flow was on probation
    /// within [`SYN_RETRY_NS`] (the client heard nothing back: passive health's signal); else
    /// [`NO_RETRY`]. (Not an `Option`: LLVM spills a `None`'s unwritten payload register, and
    /// the verifier refuses a read of a register never written.)
    Again { retry_of: u32 },
    /// Every way of the flow's set holds an established flow within its keep time: not
    /// recorded.
    Full,
}

/// [`Inserted::Again`]'s `retry_of` when the packet is no retry.
pub const NO_RETRY: u32 = u32::MAX;

/// How long after a flow's last packet a repeated SYN counts as a retry of it: past the
/// clients' first three retransmissions (1 s, 2 s, 4 s apart).
pub const SYN_RETRY_NS: u64 = 8_000_000_000;

/// Records that the flow `key` (table hash `h`, ring hash `ring_hash`) goes to `backend`,
/// seen at `now`, on probation with `keep_s` seconds to keep once promoted: in the way that
/// holds it, else an empty way, else in place of the set's least recently seen flow that is
/// not kept ([`flow_kept`]). `None` only if the map failed.
#[inline(always)]
pub fn insert(
    key: &FlowKey,
    h: u64,
    ring_hash: u32,
    backend: u32,
    now: u64,
    keep_s: u32,
) -> Option<Inserted> {
    let (base, check) = (set_base(h), flow_check(h));
    let mut ways = Ways::new();
    for way in 0..FLOW_WAYS {
        let slot = FLOWS.get_ptr_mut(base + way)?;
        let mine = (tag(slot) >> 32) as u32 == check && holds(slot, key);
        // Safety: as in `tag`.
        let (seen, state) = unsafe { ((*slot).last_seen_ns, (*slot).state) };
        ways.see(way, mine, seen, flow_kept(state, seen, now));
    }
    let Some((way, new)) = ways.choice() else {
        return Some(Inserted::Full);
    };
    let slot = FLOWS.get_ptr_mut(base + way)?;
    // Only a SYN is inserted over its own entry (any other packet found it): a SYN again
    // while the entry is on probation and recent is the client's retransmission.
    let retry_of = if new {
        NO_RETRY
    } else {
        // Safety: as in `tag`.
        let (seen, state) = unsafe { ((*slot).last_seen_ns, (*slot).state) };
        if state & FLOW_PROMOTED == 0 && now.wrapping_sub(seen) < SYN_RETRY_NS {
            tag(slot) as u32
        } else {
            NO_RETRY
        }
    };
    // Safety: as in `tag`. The key goes first and the tag after it: a reader that meets the new
    // key under the old tag finds another flow's check there, and misses.
    unsafe {
        if new {
            let w = key.words();
            let k = core::ptr::addr_of_mut!((*slot).key) as *mut u64;
            for (i, word) in w.iter().enumerate() {
                k.add(i).write_volatile(*word);
            }
        }
        (*slot).hash = ring_hash;
        (*slot).state = keep_s & lb_common::FLOW_KEEP_S;
        set_tag(slot, backend, check);
        (*slot).last_seen_ns = ways.stamp(now);
    }
    Some(if new {
        Inserted::New
    } else {
        Inserted::Again { retry_of }
    })
}
