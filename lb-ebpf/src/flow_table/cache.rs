//! The flow cache in front of the table: what it holds and why that is safe is
//! [`lb_common::flow_cache`]'s to say; here, its reads and writes.
use lb_common::{FlowCacheEntry, PROTO_UDP, flow_cache_index};

use super::Chosen;
use crate::{
    maps::{BACKENDS, FLOW_CACHE},
    packet::Packet,
};

/// The backend the cache holds for the packet's flow (table hash `h`) at `now`, if its entry
/// is good and the backend may still take the flow (as a hit in the table is checked).
#[inline(always)]
pub fn get(pkt: &Packet, h: u64, now: u64) -> Option<Chosen> {
    let e = FLOW_CACHE.get_ptr(flow_cache_index(h))?;
    // Safety: an entry of the map, valid for this program run; each word read once, the tag
    // first (volatile: neither read may be merged, repeated or reordered).
    let (tag, stamp) = unsafe {
        (
            core::ptr::addr_of!((*e).tag).read_volatile(),
            core::ptr::addr_of!((*e).stamp).read_volatile(),
        )
    };
    let (id, hash) = FlowCacheEntry::lookup(tag, stamp, h, now)?;
    let be = BACKENDS.get(id)?;
    // A UDP idle time of 0 (tests only) makes every packet idle in the table; any other is
    // longer than the entry's stamp can have aged within the epoch (FLOW_SEEN_LAG_NS).
    if !super::takes(be, pkt) || (pkt.key.proto == PROTO_UDP && be.udp_idle_s == 0) {
        return None;
    }
    Some(Chosen { id, be, hash })
}

/// Copies a hit in the table into the cache: flow `h` keeps `c`, seen at `now`; unless the
/// slot holds another flow's entry of this epoch.
#[inline(always)]
pub fn put(h: u64, c: &Chosen, now: u64) {
    let Some(e) = FLOW_CACHE.get_ptr_mut(flow_cache_index(h)) else {
        return;
    };
    let new = FlowCacheEntry::new(h, c.id, c.hash, now);
    // Safety: as in `get`; each word in one store. (The line is in the cache: `get` read it.)
    unsafe {
        let (tag, stamp) = (
            core::ptr::addr_of!((*e).tag).read_volatile(),
            core::ptr::addr_of!((*e).stamp).read_volatile(),
        );
        if tag != 0 && !FlowCacheEntry::tag_is(tag, h) && FlowCacheEntry::current(stamp, now) {
            return;
        }
        core::ptr::addr_of_mut!((*e).stamp).write_volatile(new.stamp);
        core::ptr::addr_of_mut!((*e).tag).write_volatile(new.tag);
    }
}

/// Forgets flow `h`'s entry, if its slot holds it: the table is about to name another pick.
#[inline(always)]
pub fn forget(h: u64) {
    let Some(e) = FLOW_CACHE.get_ptr_mut(flow_cache_index(h)) else {
        return;
    };
    // Safety: as in `get`. Read first: most new flows find another flow's entry (or none)
    // there, and leave its line clean.
    unsafe {
        let tag = core::ptr::addr_of_mut!((*e).tag);
        if FlowCacheEntry::tag_is(tag.read_volatile(), h) {
            tag.write_volatile(0);
        }
    }
}
