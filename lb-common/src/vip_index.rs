//! The VIP index: the VIPs laid out by the agent in an array, so that the program finds a
//! packet's VIP with inline array reads and a few multiplies instead of a hash-map helper call
//! (the kernel's jhash of the key, its bucket walk, the call's return through the SRSO thunk).
//!
//! **Layout.** [`map_names::VIP_INDEX`](crate::map_names::VIP_INDEX) holds two halves of
//! [`VIP_INDEX_SLOTS`] slots; a slot is a VIP's key and its id ([`VipSlot`]). A key sits in one
//! of its two slots, [`vip_index_slots`] of its [`vip_index_hash`] under the half's seed (a
//! cuckoo placement the agent finds, trying seeds until every key of the
//! [`map_names::VIPS`](crate::map_names::VIPS) map has a slot of its own: with at most 128
//! keys in 512 slots, the first seed or two do). A VIP's value lives apart, per VIP id, in
//! [`map_names::VIP_VALUES`](crate::map_names::VIP_VALUES), packed into one word
//! ([`pack_vip_value`]).
//!
//! **Updates, without a torn read.** Every write the program may meet is one aligned store:
//! a VIP's value (a new ring, new flags) is one word; a key taken out has its slot's id
//! cleared in place; a new layout (keys added) is written into the idle half, seed and all,
//! and goes live with one store of [`VipIndexCtl::active`], which the program reads first,
//! reading the rest at addresses that depend on it. A half that was live is written again only
//! after an RCU grace period has passed since it stopped being live. Until a key added to the
//! hash map is laid out (the agent lays out at once where no grace period is owed, else when it
//! has settled a change), [`VIP_INDEX_PENDING`] in `active` tells the program to ask the hash
//! map for a key the index does not hold. The hash map stays the truth the index is built from;
//! with no half live (a program just loaded over an older release's pins) the program asks it.
use crate::{MAX_VIPS, VipKey, VipValue};
use core::mem::size_of;

/// Slots of each half of the index: a power of two, four for every key the VIPS map can hold.
pub const VIP_INDEX_SLOTS: u32 = 512;
const _: () = assert!(VIP_INDEX_SLOTS.is_power_of_two() && VIP_INDEX_SLOTS >= 4 * 2 * MAX_VIPS);

/// Entries of the index map: two halves.
pub const VIP_INDEX_ENTRIES: u32 = 2 * VIP_INDEX_SLOTS;

/// [`VipIndexCtl::active`]'s bits that name the live half: 0 none (ask the hash map), 1 or 2.
pub const VIP_INDEX_HALF: u32 = 3;
/// [`VipIndexCtl::active`]'s bit: the hash map holds keys the live half does not; a key the
/// index does not hold is looked up there.
pub const VIP_INDEX_PENDING: u32 = 4;

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
    /// The live half ([`VIP_INDEX_HALF`]) and [`VIP_INDEX_PENDING`].
    pub active: u32,
    /// Each half's seed.
    pub seeds: [u32; 2],
    pub _pad: u32,
}
const _: () = assert!(size_of::<VipIndexCtl>() == 16);

// A packed value's fields: id 6 bits, ring size 17, the active ring 1, the forwarding mode 2,
// the flags the rest.
const ID_BITS: u32 = 6;
const SIZE_SHIFT: u32 = ID_BITS;
const SIZE_BITS: u32 = 17;
const RING_SHIFT: u32 = SIZE_SHIFT + SIZE_BITS;
const FORWARD_SHIFT: u32 = RING_SHIFT + 1;
const FLAGS_SHIFT: u32 = FORWARD_SHIFT + 2;
const _: () = assert!(MAX_VIPS <= 1 << ID_BITS && crate::RING_STRIDE < 1 << SIZE_BITS);

/// `v` as one word (`None` if a field does not fit: the agent then leaves the VIP out of the
/// index, and its packets are looked up in the hash map).
pub const fn pack_vip_value(v: &VipValue) -> Option<u64> {
    if v.id >= MAX_VIPS
        || v.ring_size >= 1 << SIZE_BITS
        || v.active_ring > 1
        || v.forwarding > 3
        || v._reserved != 0
    {
        return None;
    }
    Some(
        v.id as u64
            | (v.ring_size as u64) << SIZE_SHIFT
            | (v.active_ring as u64) << RING_SHIFT
            | (v.forwarding as u64) << FORWARD_SHIFT
            | (v.flags as u64) << FLAGS_SHIFT,
    )
}

/// The value [`pack_vip_value`] packed.
#[inline(always)]
pub const fn unpack_vip_value(w: u64) -> VipValue {
    VipValue {
        id: (w & ((1 << ID_BITS) - 1)) as u32,
        ring_size: ((w >> SIZE_SHIFT) & ((1 << SIZE_BITS) - 1)) as u32,
        active_ring: ((w >> RING_SHIFT) & 1) as u32,
        forwarding: ((w >> FORWARD_SHIFT) & 3) as u32,
        flags: (w >> FLAGS_SHIFT) as u32,
        _reserved: 0,
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_packs_and_unpacks_whole() {
        for (id, ring_size, active_ring, forwarding, flags) in [
            (0, 1, 0, 0, 0),
            (MAX_VIPS - 1, crate::RING_STRIDE, 1, 3, u32::MAX),
            (
                17,
                251,
                1,
                2,
                crate::VIP_ACL | crate::hash::hash_flags(1, 24),
            ),
        ] {
            let v = VipValue {
                id,
                ring_size,
                active_ring,
                forwarding,
                flags,
                _reserved: 0,
            };
            assert_eq!(unpack_vip_value(pack_vip_value(&v).unwrap()), v);
        }
        let too_big = VipValue {
            id: MAX_VIPS,
            ..VipValue::default()
        };
        assert_eq!(pack_vip_value(&too_big), None);
    }
}
