//! The VIP index: the VIPs laid out by the agent in an array, so that the program finds a
//! packet's VIP with inline array reads and a few multiplies instead of a hash-map helper call
//! (the kernel's jhash of the key, its bucket walk, the call's return through the SRSO thunk).
//!
//! **Layout.** [`map_names::VIP_INDEX`](crate::map_names::VIP_INDEX) holds two halves of
//! [`VIP_INDEX_SLOTS`] slots; a slot is a VIP's key and its id ([`VipSlot`]). A key sits in one
//! of its two slots, [`vip_index_slots`] of its [`vip_index_hash`] under the half's seed (a
//! cuckoo placement the agent finds, trying seeds until every key of the
//! [`map_names::VIPS`](crate::map_names::VIPS) map has a slot of its own: with at most 128
//! keys in 512 slots, the first seed or two do). The value lives apart, per VIP id, in
//! [`map_names::VIP_VALUES`](crate::map_names::VIP_VALUES): two copies and a word saying which
//! is live ([`VipValues`]).
//!
//! **Updates, without a torn read.** A VIP's value changes (a new ring, new flags): the agent
//! writes the idle copy and flips `live` (one aligned word). The set of keys changes (a VIP
//! added or removed): the agent lays out the idle half, seed and all, and flips
//! [`VipIndexCtl::active`]. The program reads the flipped word first and everything else at
//! addresses that depend on it, so it sees the old layout or the new one, never a mix. A copy
//! or half that was live is written again only after an RCU grace period has passed since it
//! stopped being live (no program run that could still read it is left). The hash map stays the
//! truth the index is built from; with `active` 0 (no index laid out yet: a program just
//! loaded over an older release's pins) the program asks the hash map.
use crate::{MAX_VIPS, VipKey, VipValue};
use core::mem::size_of;

/// Slots of each half of the index: a power of two, four for every key the VIPS map can hold.
pub const VIP_INDEX_SLOTS: u32 = 512;
const _: () = assert!(VIP_INDEX_SLOTS.is_power_of_two() && VIP_INDEX_SLOTS >= 4 * 2 * MAX_VIPS);

/// Entries of the index map: two halves.
pub const VIP_INDEX_ENTRIES: u32 = 2 * VIP_INDEX_SLOTS;

/// A slot of the index: a key, and the id of its VIP plus one (0: an empty slot).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct VipSlot {
    pub key: VipKey,
    pub id_plus_one: u32,
}
const _: () = assert!(size_of::<VipSlot>() == 24);

/// The index's control word and seeds: the value of
/// [`map_names::VIP_INDEX_CTL`](crate::map_names::VIP_INDEX_CTL)'s one entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct VipIndexCtl {
    /// 0: no index, ask the hash map; 1 or 2: half 0 or 1 is live.
    pub active: u32,
    /// Each half's seed.
    pub seeds: [u32; 2],
    pub _pad: u32,
}
const _: () = assert!(size_of::<VipIndexCtl>() == 16);

/// A VIP's value, twice: `values[live & 1]` is the live one.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct VipValues {
    pub live: u32,
    pub _pad: u32,
    pub values: [VipValue; 2],
}
const _: () = assert!(size_of::<VipValues>() == 56);

/// The key's five words, as they lie in memory.
#[inline(always)]
fn words(k: &VipKey) -> [u64; 5] {
    let a = &k.addr;
    let w = |i: usize| u32::from_le_bytes([a[i], a[i + 1], a[i + 2], a[i + 3]]) as u64;
    let tail = u16::from_le_bytes(k.port_be.to_ne_bytes()) as u64
        | (k.proto as u64) << 16
        | (k.family as u64) << 24;
    [w(0), w(4), w(8), w(12), tail]
}

/// The hash that places `key` in a half laid out with `seed`: five independent multiplies
/// and a finaliser, as the flow table's.
#[inline(always)]
pub fn vip_index_hash(key: &VipKey, seed: u32) -> u64 {
    let w = words(key);
    let s = (seed as u64) << 32 | seed as u64;
    let mut x = (w[0] ^ s)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add((w[1] ^ s).wrapping_mul(0xc2b2_ae3d_27d4_eb4f))
        .wrapping_add((w[2] ^ s).wrapping_mul(0x1656_67b1_9e37_79f9))
        .wrapping_add((w[3] ^ s).wrapping_mul(0x85eb_ca77_c2b2_ae63))
        .wrapping_add((w[4] ^ s).wrapping_mul(0x27d4_eb2f_1656_67c5));
    x ^= x >> 29;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^ (x >> 32)
}

/// The two slots (within a half) a key of hash `h` may sit in.
#[inline(always)]
pub const fn vip_index_slots(h: u64) -> [u32; 2] {
    [
        h as u32 & (VIP_INDEX_SLOTS - 1),
        (h >> 32) as u32 & (VIP_INDEX_SLOTS - 1),
    ]
}

/// Whether two keys are the same, word by word.
#[inline(always)]
pub fn same_key(a: &VipKey, b: &VipKey) -> bool {
    let (x, y) = (words(a), words(b));
    x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3] && x[4] == y[4]
}
