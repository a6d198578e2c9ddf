//! The flow table's layout and arithmetic, shared by the program (which keeps the table) and
//! the agent (which counts it, and moves an older table's flows into it).
//!
//! The table is one array map of [`FlowSlot`]s cut into sets of [`FLOW_WAYS`] consecutive
//! slots. A flow lives in the set its table hash names ([`flow_set_base`]), in any of the set's
//! ways; a new flow takes the way that holds its 5-tuple already, else an empty one, else the
//! one seen least recently ([`Ways`]). It replaces the kernel's LRU hash map, whose lookup
//! (a jhash of the 40-byte key, a bucket walk, a key compare, behind helper calls) measured
//! 50-70 ns a hit in BPF_PROG_TEST_RUN: here a hit is a cheap hash of our own
//! ([`flow_table_hash`]) and array lookups that the verifier inlines. What it gives up:
//! exact LRU order over the whole table (it is exact within a set), and a flow may be pushed
//! out of a full set while other sets have room.
//!
//! Concurrency: every CPU reads and writes the shared table without locks. A slot's backend and
//! its key's check ([`flow_check`]) form one 64-bit word ([`FlowSlot::tag`]), written and read
//! in one access. A writer stores the key before the word, a reader loads the word before the key, and
//! takes the slot only when the word's check and the key are both its own: a slot rewritten for
//! another flow under a reader gives it a miss (the packet takes the ring), never that flow's
//! backend. (On a CPU that reorders loads, x86 does not, a reader could pair a new word with
//! the old key; the other flow's check would then have to equal its own, a 2^-32 chance: the
//! check is independent of the bits that chose the set.)

use core::mem::size_of;

use crate::flow_cache::FLOW_SEEN_LAG_NS;

/// Ways per set: the slots a flow may occupy.
pub const FLOW_WAYS: u32 = 4;

/// A flow's 5-tuple as on the wire: the flow table's key. Aligned to 8, so that it compares as
/// five 64-bit words.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FlowKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// Source then destination port, network byte order.
    pub ports: [u8; 4],
    pub proto: u8,
    /// [`crate::FAMILY_V4`] or [`crate::FAMILY_V6`]; 0 in an empty slot.
    pub family: u8,
    pub _pad: [u8; 2],
}
const _: () = assert!(size_of::<FlowKey>() == 40);

/// How far the coarse clock must have moved past a slot's `last_seen_ns` before a packet of
/// its flow writes it again (2^26 ns, about 67 ms): a busy flow's slot is written a few times a
/// second, not at every tick of the clock (on the wire, writing at every tick cost a packet
/// some 70 ns more: dirty lines of a table far bigger than the cache). Neither the eviction
/// order nor UDP's idle time needs a finer grain ([`flow_udp_idle`] allows for it).
pub const FLOW_STAMP_NS: u64 = 1 << 26;

/// A flow as the kernel's LRU hash map of older releases held it ([`crate::map_names::FLOWS_LRU`]),
/// read once to move its flows into today's table.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlowValue {
    pub backend: u32,
    /// The ring's flow hash (0: not kept).
    pub hash: u32,
    /// UDP only: `bpf_ktime_get_coarse_ns` of the flow's last packet.
    pub last_seen_ns: u64,
}
const _: () = assert!(size_of::<FlowValue>() == 16);

/// One slot of the table: 64 bytes, one cache line (the map is memory-mappable, so its values
/// start page-aligned).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlowSlot {
    /// The backend the flow is pinned to. With `check`, one 64-bit word: [`FlowSlot::tag`].
    pub backend: u32,
    /// The key's [`flow_check`]: a reader takes the slot only if it is its own.
    pub check: u32,
    /// `bpf_ktime_get_coarse_ns` of the flow's last packet, to within [`FLOW_STAMP_NS`]: the
    /// set's eviction order, and a UDP flow's idle time.
    pub last_seen_ns: u64,
    pub key: FlowKey,
    /// The ring's flow hash ([`crate::hash::flow_hash`]), which IPv6's outer flow label is
    /// made of: kept so that a packet of the flow need not compute it again.
    pub hash: u32,
    /// [`FLOW_PROMOTED`], and in the bits below it the seconds the entry is kept against
    /// eviction after the flow's last packet once promoted (the VIP's UDP idle time, or the
    /// agent's TCP one).
    pub state: u32,
}
const _: () = assert!(size_of::<FlowSlot>() == 64);

/// [`FlowSlot::state`] bit: the flow was seen past its first packet (TCP past the handshake,
/// UDP a second datagram). An entry starts on probation, without it: a new flow may take the
/// place of a probationary entry, but not of a promoted one whose last packet is within its
/// keep time. A flood of one-packet flows churns probationary entries only.
pub const FLOW_PROMOTED: u32 = 1 << 31;
/// [`FlowSlot::state`]: the keep time's bits.
pub const FLOW_KEEP_S: u32 = FLOW_PROMOTED - 1;

/// Whether an entry of `state`, last seen at `seen`, is kept against eviction at `now`: its
/// keep time counts from the flow's last packet, which the stamp may lag by up to
/// [`FLOW_SEEN_LAG_NS`] (its grain, and an epoch of packets that read the flow cache).
#[inline(always)]
pub const fn flow_kept(state: u32, seen: u64, now: u64) -> bool {
    state & FLOW_PROMOTED != 0
        && now < seen + (state & FLOW_KEEP_S) as u64 * 1_000_000_000 + FLOW_SEEN_LAG_NS
}

/// Whether a UDP flow last seen at `seen` counts as idle at `now` under an idle time of
/// `idle_s` seconds (then its next packet takes the ring): only once its stamp is `idle_s`
/// plus the stamp's greatest lag old, so never before the flow has been idle `idle_s`. An
/// idle time of 0 (tests only) makes every packet idle.
#[inline(always)]
pub const fn flow_udp_idle(seen: u64, now: u64, idle_s: u32) -> bool {
    idle_s == 0 || now.saturating_sub(seen) >= idle_s as u64 * 1_000_000_000 + FLOW_SEEN_LAG_NS
}

impl FlowSlot {
    /// `backend` and `check` as the one word at the slot's start (little-endian, as on the BPF
    /// target: `backend` in the low half).
    #[inline(always)]
    pub const fn tag(backend: u32, check: u32) -> u64 {
        backend as u64 | (check as u64) << 32
    }

    /// Whether the slot holds no flow.
    #[inline(always)]
    pub const fn is_empty(&self) -> bool {
        self.key.family == 0
    }
}

impl FlowKey {
    /// The key as five 64-bit words, in this machine's byte order.
    #[inline(always)]
    pub fn words(&self) -> [u64; 5] {
        // Safety: 40 bytes aligned to 8, every bit pattern a valid u64.
        unsafe { *(self as *const FlowKey as *const [u64; 5]) }
    }
}

/// The flow table's own hash of a key, 64 bits: the high half names the flow's set
/// ([`flow_set_base`]), the low half is the check its slot carries ([`flow_check`]). The two
/// halves come from one product but neither determines the other, so two flows of one set share
/// a check by a 2^-32 chance, not by the bits that put them in the same set. Not the ring's hash
/// ([`crate::hash::flow_hash`]: ten dependent rounds, which BPF, lacking a rotate instruction,
/// makes a chain of some 120 cycles): five independent multiplies summed, then a finaliser, so
/// that the high bits depend on every bit of the key. Only this host's table depends on it,
/// never which backend a flow gets, so it may differ from one release to the next.
#[inline(always)]
pub fn flow_table_hash(key: &FlowKey) -> u64 {
    let w = key.words();
    let mut x = w[0]
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(w[1].wrapping_mul(0xc2b2_ae3d_27d4_eb4f))
        .wrapping_add(w[2].wrapping_mul(0x1656_67b1_9e37_79f9))
        .wrapping_add(w[3].wrapping_mul(0x85eb_ca77_c2b2_ae63))
        .wrapping_add(w[4].wrapping_mul(0x27d4_eb2f_1656_67c5));
    x ^= x >> 29;
    x.wrapping_mul(0xbf58_476d_1ce4_e5b9)
}

/// The check a flow's slot carries: the low half of its [`flow_table_hash`].
#[inline(always)]
pub const fn flow_check(h: u64) -> u32 {
    h as u32
}

/// Slots of a table asked to hold `n` flows: `n` rounded up to whole sets.
pub const fn flow_entries(n: u32) -> u32 {
    n.div_ceil(FLOW_WAYS) * FLOW_WAYS
}

/// Sets of a table of `entries` slots (at least one).
pub const fn flow_sets(entries: u32) -> u32 {
    let s = entries / FLOW_WAYS;
    if s == 0 { 1 } else { s }
}

/// The first slot of the set of a flow whose table hash is `h`, in a table of `sets` sets: the
/// hash's high half scaled onto `0..sets` (a multiply and a shift, no division, any number of
/// sets).
#[inline(always)]
pub fn flow_set_base(h: u64, sets: u32) -> u32 {
    (((h >> 32) * sets as u64) >> 32) as u32 * FLOW_WAYS
}

/// The way a flow is written to, chosen in one pass over its set.
#[derive(Clone, Copy, Debug)]
pub struct Ways {
    /// The way that holds the flow's 5-tuple, [`FLOW_WAYS`] if none does.
    same: u32,
    /// The way seen least recently of those not kept ([`flow_kept`]; an empty way counts as
    /// never seen), [`FLOW_WAYS`] if every way is kept.
    oldest: u32,
    oldest_seen: u64,
    /// The latest `last_seen_ns` in the set.
    newest_seen: u64,
}

impl Default for Ways {
    fn default() -> Self {
        Self::new()
    }
}

impl Ways {
    pub const fn new() -> Self {
        Ways {
            same: FLOW_WAYS,
            oldest: FLOW_WAYS,
            oldest_seen: u64::MAX,
            newest_seen: 0,
        }
    }

    /// Takes way `way` into account: whether it holds the flow, when it was last seen, and
    /// whether it is kept against eviction ([`flow_kept`]).
    #[inline(always)]
    pub fn see(&mut self, way: u32, holds_flow: bool, seen: u64, kept: bool) {
        if holds_flow && self.same == FLOW_WAYS {
            self.same = way;
        }
        if !kept && seen < self.oldest_seen {
            self.oldest_seen = seen;
            self.oldest = way;
        }
        if seen > self.newest_seen {
            self.newest_seen = seen;
        }
    }

    /// The way to write, and whether the flow is new to the table (it replaces what the way
    /// held: nothing, or the set's least recently seen flow not kept); `None` when every way
    /// holds a kept flow and none this one.
    #[inline(always)]
    pub fn choice(&self) -> Option<(u32, bool)> {
        if self.same < FLOW_WAYS {
            Some((self.same, false))
        } else if self.oldest < FLOW_WAYS {
            Some((self.oldest, true))
        } else {
            None
        }
    }

    /// The `last_seen_ns` to write at `now`: later than every other way of the set, so that
    /// flows written within one tick of the coarse clock still leave in the order they came
    /// (a few ns ahead of the clock at most; a packet of the flow writes again only once the
    /// clock has passed it).
    #[inline(always)]
    pub fn stamp(&self, now: u64) -> u64 {
        let next = self.newest_seen.saturating_add(1);
        if now > next { now } else { next }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_cover_the_table_evenly() {
        assert_eq!(flow_entries(1024), 1024);
        assert_eq!(flow_entries(1025), 1028);
        assert_eq!(flow_sets(1028), 257);
        assert_eq!(flow_sets(1), 1);
        for sets in [1u32, 3, 257, 1 << 18, (1 << 26) / FLOW_WAYS] {
            assert_eq!(flow_set_base(u32::MAX as u64, sets), 0);
            assert_eq!(flow_set_base(u64::MAX, sets), (sets - 1) * FLOW_WAYS);
            let mut seen = [0u32; 8];
            for h in 0..4096u32 {
                let b = flow_set_base((h.wrapping_mul(0x9e37_79b9) as u64) << 32, sets);
                assert!(
                    b.is_multiple_of(FLOW_WAYS) && b / FLOW_WAYS < sets,
                    "{b} of {sets}"
                );
                if sets == 3 {
                    seen[(b / FLOW_WAYS) as usize] += 1;
                }
            }
            if sets == 3 {
                assert!(seen[..3].iter().all(|&n| n > 1300), "{seen:?}");
            }
        }
    }

    fn v4_key(src: [u8; 4], sport: u16) -> FlowKey {
        let mut k = FlowKey {
            proto: 17,
            family: crate::FAMILY_V4,
            ..Default::default()
        };
        k.src[..4].copy_from_slice(&src);
        k.dst[..4].copy_from_slice(&[198, 19, 0, 100]);
        k.ports[..2].copy_from_slice(&sport.to_be_bytes());
        k.ports[2..].copy_from_slice(&53u16.to_be_bytes());
        k
    }

    #[test]
    fn the_table_hash_spreads_structured_flows_over_the_sets() {
        // 64K flows that differ in a few low bits (sequential sources and ports: the worst
        // case for a weak hash) into 16K sets: an even spread puts 4 in a set on average, and
        // Poisson keeps the fullest set below ~16; a hash that ignored a field would pile them up.
        let sets = 1 << 14;
        let mut load = [0u32; 1 << 14];
        for src in 0..256u32 {
            for port in 0..256u16 {
                let k = v4_key([198, 18, (src >> 8) as u8, src as u8], 1024 + port);
                load[(flow_set_base(flow_table_hash(&k), sets) / FLOW_WAYS) as usize] += 1;
            }
        }
        let max = *load.iter().max().unwrap();
        let empty = load.iter().filter(|&&n| n == 0).count();
        assert!(max <= 16, "fullest set holds {max}");
        // Poisson(4): e^-4 of the sets, ~300, are empty.
        assert!((150..600).contains(&empty), "{empty} empty sets");
    }

    #[test]
    fn the_table_hash_depends_on_every_field() {
        let base = v4_key([198, 18, 0, 1], 1024);
        let h = flow_table_hash(&base);
        let mut changed = [base; 6];
        changed[0].src[15] = 1;
        changed[1].dst[3] = 101;
        changed[2].ports[1] ^= 1;
        changed[3].ports[3] ^= 1;
        changed[4].proto = 6;
        changed[5].family = crate::FAMILY_V6;
        for (i, k) in changed.iter().enumerate() {
            assert_ne!(flow_table_hash(k), h, "field {i}");
        }
    }

    #[test]
    fn a_flow_takes_its_own_way_else_an_empty_one_else_the_oldest() {
        let pick = |ways: [(bool, u64); 4]| {
            let mut w = Ways::new();
            for (i, (holds, seen)) in ways.into_iter().enumerate() {
                w.see(i as u32, holds, seen, false);
            }
            w.choice().unwrap()
        };
        assert_eq!(pick([(false, 0); 4]), (0, true));
        assert_eq!(
            pick([(false, 9), (false, 0), (false, 0), (false, 5)]),
            (1, true)
        );
        assert_eq!(
            pick([(false, 9), (false, 7), (false, 8), (false, 9)]),
            (1, true)
        );
        assert_eq!(
            pick([(false, 1), (false, 7), (true, 8), (true, 9)]),
            (2, false)
        );
    }

    #[test]
    fn flows_written_within_one_tick_leave_in_the_order_they_came() {
        // A set filled within one tick of the clock (now = 100), then written on: each write
        // replaces the earliest of the four, never the one just written.
        let mut set = [0u64; 4];
        let mut order = [0usize; 4];
        for n in 0..12 {
            let mut w = Ways::new();
            for (i, s) in set.iter().enumerate() {
                w.see(i as u32, false, *s, false);
            }
            let (way, new) = w.choice().unwrap();
            assert!(new);
            set[way as usize] = w.stamp(100);
            if n >= 4 {
                assert_eq!(way as usize, order[n % 4], "write {n}: {set:?}");
            }
            order[n % 4] = way as usize;
        }
        assert_eq!(set.iter().max(), Some(&111));
        // A later tick wins over the stamps.
        let mut w = Ways::new();
        w.see(0, false, 111, false);
        assert_eq!(w.stamp(5_000_000), 5_000_000);
    }

    #[test]
    fn a_new_flow_takes_no_kept_entry() {
        let s = 1_000_000_000u64;
        let promoted = FLOW_PROMOTED | 30;
        // Promoted and seen 10 s ago with 30 s to keep: kept; probationary, or promoted and
        // idle past its keep time: not.
        assert!(flow_kept(promoted, 90 * s, 100 * s));
        assert!(!flow_kept(30, 90 * s, 100 * s));
        assert!(!flow_kept(promoted, 60 * s, 100 * s));
        let pick = |ways: [(bool, u64, bool); 4]| {
            let mut w = Ways::new();
            for (i, (holds, seen, kept)) in ways.into_iter().enumerate() {
                w.see(i as u32, holds, seen, kept);
            }
            w.choice()
        };
        // The oldest way is kept: the oldest of the others goes.
        assert_eq!(
            pick([
                (false, 1, true),
                (false, 7, false),
                (false, 5, false),
                (false, 9, true)
            ]),
            Some((2, true))
        );
        // Every way kept: nothing is evicted, the flow is not recorded.
        assert_eq!(pick([(false, 1, true); 4]), None);
        // A kept way that holds the flow itself is its own.
        assert_eq!(
            pick([
                (false, 1, true),
                (true, 2, true),
                (false, 3, true),
                (false, 4, true)
            ]),
            Some((1, false))
        );
    }
}
