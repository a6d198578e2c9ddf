//! The flow cache: a small direct-mapped array in front of the flow table, so that the packets
//! of a busy flow need not read the table's slot, which lies on one of thousands of pages
//! (each read a TLB miss and a cache miss once the table outgrows them; see BENCHMARKS.md).
//!
//! An entry is a copy of what the table said of one flow when a packet of the flow last read
//! it there and kept its backend (a hit): the backend, and the ring hash the outer headers are
//! made of. It is good for the rest of the cache's epoch ([`FLOW_CACHE_EPOCH_NS`]); the first
//! packet of the flow in the next epoch reads the table again, which refreshes the entry's
//! stamp there and copies it anew. So the table stays the truth and stays current:
//! - every new flow is recorded as before (a miss of the cache goes to the table);
//! - a cached flow's table entry is refreshed at least once an epoch, so its stamp lags its
//!   last packet by at most [`FLOW_SEEN_LAG_NS`]; the table's keep time and UDP's idle time
//!   allow for that lag ([`crate::flow_kept`], [`crate::flow_udp_idle`]), so a live flow that
//!   reads its entry from the cache is never the one a flood evicts, nor one that counts as
//!   idle;
//! - an entry written in the current epoch is not replaced by another flow's: where more
//!   flows than entries are busy at once, the first of each slot's flows in an epoch keeps it
//!   (two flows sharing a slot do not take it from each other packet by packet, and the rest
//!   read the table without writing the cache);
//! - the cache holds nothing the table does not: an entry is written only after a hit in the
//!   table, and wiped (in its slot, if the flow's own) whenever a packet of the flow records a
//!   new pick over the flow's entry there. A flow new to the table has no entry to wipe: its
//!   last entry was not taken out while it could still be cached. What else changes a table
//!   entry under the cache: the agent forgetting flows (an ACL change), after which it waits
//!   until no program runs that may have read the old entries and wipes the whole cache; and
//!   eviction, which takes no entry of a flow seen within its keep time (with the lag), which a
//!   cached flow always is.
//!
//! A packet whose cache entry is good still has its backend's own entry checked, exactly as a
//! hit in the table is (up, serving the packet's VIP; a UDP idle time of 0, which makes every
//! packet idle in the table, makes none cached): a backend that goes down moves its flows at
//! once, cached or not. A ring change does not move an established flow, cached or
//! not: the cache holds the table's backend, not the ring's.
//!
//! Concurrency: every CPU reads and writes the shared cache without locks. An entry is two
//! 64-bit words, each written and read in one access: the backend with a 32-bit check of the
//! flow's table hash, then the ring hash with the epoch and 16 more bits of the check. A reader
//! takes the entry only if both words' checks are its flow's, so a torn read of two flows'
//! words is a miss unless the other flow's 16 bits match too (then the backend, from the word
//! whose 32-bit check matched, is still this flow's; only the ring hash, the outer source port
//! or flow label of that one packet, would be the other's). The cache's slot and the two
//! checks take all 64 bits of the table hash: two flows share an entry's identity only if their
//! table hashes are equal, and a packet taken for another flow of its VIP still goes to a
//! backend of that VIP (the backend's entry is checked against the packet's VIP). One race is
//! left, between two packets of one flow on two CPUs at once: a SYN re-picking the 5-tuple on
//! one while the other copies the old pick it has just read; the old pick then answers until
//! the epoch ends. A SYN of a 5-tuple whose packets are still in flight is a client reusing a
//! port it has not finished with, whose old connection's packets go where they went.

use core::mem::size_of;

use crate::flow::FLOW_STAMP_NS;

/// Entries in the cache: 16 bytes each, 1 MB in all, 256 pages a TLB keeps.
pub const FLOW_CACHE_ENTRIES: u32 = 1 << 16;

/// How long a cache entry is good for: from its write to the end of the epoch it was written
/// in (epochs are `now / FLOW_CACHE_EPOCH_NS`, about 1.07 s).
pub const FLOW_CACHE_EPOCH_NS: u64 = 1 << 30;

/// How far a flow's stamp in the table may lag its last packet: the stamp's own grain, and an
/// epoch of packets that read the cache instead.
pub const FLOW_SEEN_LAG_NS: u64 = FLOW_STAMP_NS + FLOW_CACHE_EPOCH_NS;

/// One entry (see the module's documentation). All zero: empty.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlowCacheEntry {
    /// The backend (low half) and the table hash's low half (high half).
    pub tag: u64,
    /// The ring hash (low half), the epoch (bits 32-47) and bits 32-47 of the table hash.
    pub stamp: u64,
}
const _: () = assert!(size_of::<FlowCacheEntry>() == 16);

/// The cache slot of the flow whose table hash is `h`: its top 16 bits.
#[inline(always)]
pub const fn flow_cache_index(h: u64) -> u32 {
    (h >> 48) as u32 & (FLOW_CACHE_ENTRIES - 1)
}

/// The epoch `now` falls in, as the entry keeps it (16 bits: an entry is taken for current
/// again only after some 19 hours of silence in its slot).
#[inline(always)]
pub const fn flow_cache_epoch(now: u64) -> u64 {
    (now / FLOW_CACHE_EPOCH_NS) & 0xffff
}

impl FlowCacheEntry {
    /// The entry for the flow of table hash `h`, pinned to `backend` with ring hash
    /// `ring_hash`, written at `now`.
    #[inline(always)]
    pub const fn new(h: u64, backend: u32, ring_hash: u32, now: u64) -> Self {
        FlowCacheEntry {
            tag: Self::tag_of(h, backend),
            stamp: ring_hash as u64 | flow_cache_epoch(now) << 32 | (h >> 32 & 0xffff) << 48,
        }
    }

    /// The first word of the flow's entry, pinned to `backend`.
    #[inline(always)]
    pub const fn tag_of(h: u64, backend: u32) -> u64 {
        backend as u64 | (h as u32 as u64) << 32
    }

    /// Whether the first word `tag` is that of the flow of table hash `h`.
    #[inline(always)]
    pub const fn tag_is(tag: u64, h: u64) -> bool {
        (tag >> 32) as u32 == h as u32
    }

    /// Whether an entry whose second word is `stamp` was written in the epoch of `now`.
    #[inline(always)]
    pub const fn current(stamp: u64, now: u64) -> bool {
        (stamp >> 32) & 0xffff == flow_cache_epoch(now)
    }

    /// What an entry read as `tag` then `stamp` says of the flow of table hash `h` at `now`:
    /// its backend and ring hash, if the entry is the flow's and of the current epoch.
    #[inline(always)]
    pub const fn lookup(tag: u64, stamp: u64, h: u64, now: u64) -> Option<(u32, u32)> {
        if !Self::tag_is(tag, h) || stamp >> 48 != h >> 32 & 0xffff || !Self::current(stamp, now) {
            return None;
        }
        Some((tag as u32, stamp as u32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: u64 = 0x1234_5678_9abc_def0;

    #[test]
    fn an_entry_is_good_for_its_flow_until_its_epoch_ends() {
        let now = 5 * FLOW_CACHE_EPOCH_NS + 10;
        let e = FlowCacheEntry::new(H, 7, 0xfeed, now);
        assert_eq!(
            FlowCacheEntry::lookup(e.tag, e.stamp, H, now),
            Some((7, 0xfeed))
        );
        let end = 6 * FLOW_CACHE_EPOCH_NS - 1;
        assert_eq!(
            FlowCacheEntry::lookup(e.tag, e.stamp, H, end),
            Some((7, 0xfeed))
        );
        assert_eq!(FlowCacheEntry::lookup(e.tag, e.stamp, H, end + 1), None);
        assert_eq!(FlowCacheEntry::lookup(0, 0, H, now), None, "empty");
    }

    #[test]
    fn every_bit_of_the_table_hash_counts() {
        let now = FLOW_CACHE_EPOCH_NS;
        let e = FlowCacheEntry::new(H, 7, 1, now);
        for bit in 0..64 {
            let other = H ^ 1 << bit;
            let same_slot = flow_cache_index(other) == flow_cache_index(H);
            let taken = FlowCacheEntry::lookup(e.tag, e.stamp, other, now).is_some();
            assert!(
                !(same_slot && taken),
                "bit {bit}: another flow takes the entry"
            );
        }
    }

    #[test]
    fn words_of_two_flows_read_together_give_no_backend_of_the_other() {
        let now = FLOW_CACHE_EPOCH_NS;
        let other = H ^ 0x0000_0001_0000_0001;
        let a = FlowCacheEntry::new(H, 1, 10, now);
        let b = FlowCacheEntry::new(other, 2, 20, now);
        assert_eq!(FlowCacheEntry::lookup(a.tag, b.stamp, H, now), None);
        assert_eq!(FlowCacheEntry::lookup(b.tag, a.stamp, H, now), None);
    }
}
