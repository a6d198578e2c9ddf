//! The VIP index the program looks VIPs up in (`lb_common::vip_index`): laid out here from the
//! VIP hash map, which stays the truth; each VIP's value written as one word whenever it
//! changes, a key taken out cleared in place, keys added laid out into the idle half. A half
//! that was live is written again only after an RCU grace period: where one is owed, the keys
//! added wait (the program asks the hash map for them meanwhile) until the agent settles its
//! changes ([`Dataplane::settle_vip_index`]), so that a drain or a ring change never waits.
use std::{
    collections::BTreeSet,
    sync::atomic::{AtomicU32, AtomicU64, Ordering},
};

use aya::maps::HashMap;
use lb_common::{
    VipKey, VipValue, map_names,
    vip_index::{
        VIP_INDEX_HALF, VIP_INDEX_PENDING, VIP_INDEX_SLOTS, VipIndexCtl, VipSlot, pack_vip_value,
        vip_index_hash, vip_index_slots,
    },
};

use super::{Dataplane, DataplaneError, Result, error::map_err, grace::wait_grace, mmap::Values};

/// The index's maps, mapped, and what is owed.
pub(super) struct VipIndex {
    ctl: Values<VipIndexCtl>,
    slots: Values<VipSlot>,
    values: Values<u64>,
    /// A half went live since the last grace period: the other one may still be read.
    half_flipped: bool,
}

/// Tries this many seeds before giving up (each fails with a probability far below one in a
/// thousand with the most keys the VIP map holds).
const SEEDS: u32 = 1000;
/// Moves of one key's insertion before a seed is given up.
const KICKS: usize = 100;

/// A cuckoo placement of `keys` (key, VIP id) in one half under `seed`: the half's slots, or
/// `None` if some key finds no slot.
pub fn place(keys: &[(VipKey, u32)], seed: u32) -> Option<Vec<VipSlot>> {
    let mut half = vec![VipSlot::default(); VIP_INDEX_SLOTS as usize];
    'keys: for &(key, id) in keys {
        let mut item = VipSlot {
            key,
            id_plus_one: id + 1,
        };
        let mut from = u32::MAX;
        for _ in 0..KICKS {
            let [a, b] = vip_index_slots(vip_index_hash(&item.key, seed));
            for s in [a, b] {
                if half[s as usize].id_plus_one == 0 {
                    half[s as usize] = item;
                    continue 'keys;
                }
            }
            // Both taken: displace the one in the slot this key did not just come from.
            let to = if from == a { b } else { a };
            std::mem::swap(&mut item, &mut half[to as usize]);
            from = to;
        }
        return None;
    }
    Some(half)
}

/// The first seed under which `keys` all find a slot, and the placement.
pub fn lay_out(keys: &[(VipKey, u32)]) -> Option<(u32, Vec<VipSlot>)> {
    (1..=SEEDS).find_map(|seed| place(keys, seed).map(|h| (seed, h)))
}

/// A key and its VIP id, ordered for comparing sets.
type Entry = ([u8; 16], u16, u8, u8, u32);

fn entry(k: &VipKey, id: u32) -> Entry {
    (k.addr, k.port_be, k.proto, k.family, id)
}

fn mmap_err(name: &'static str) -> impl FnOnce(std::io::Error) -> DataplaneError {
    move |source| DataplaneError::Mmap { name, source }
}

impl VipIndex {
    fn active(&self) -> u32 {
        // Safety: the control entry's word, read alone.
        unsafe { std::ptr::addr_of!((*self.ctl.at(0)).active).read_volatile() }
    }

    fn set_active(&mut self, active: u32) {
        // Safety: the control entry's word of the live, writable mapping: one aligned store,
        // after every store it makes live.
        unsafe { AtomicU32::from_ptr(std::ptr::addr_of_mut!((*self.ctl.at(0)).active)) }
            .store(active, Ordering::Release);
    }

    /// The live half's first slot, if a half is live.
    fn live_base(&self) -> Option<usize> {
        match self.active() & VIP_INDEX_HALF {
            0 => None,
            h => Some((h as usize - 1) * VIP_INDEX_SLOTS as usize),
        }
    }

    fn wait_grace(&mut self) -> Result<()> {
        wait_grace()?;
        self.half_flipped = false;
        Ok(())
    }
}

impl Dataplane {
    /// The index's maps, mapped on first use; `None` for an object without them.
    fn vip_index(&mut self) -> Result<Option<&mut VipIndex>> {
        if self.vip_index.is_none() {
            let (Some(c), Some(s), Some(v)) = (
                self.ebpf.map(map_names::VIP_INDEX_CTL),
                self.ebpf.map(map_names::VIP_INDEX),
                self.ebpf.map(map_names::VIP_VALUES),
            ) else {
                return Ok(None);
            };
            let ctl: Values<VipIndexCtl> =
                Values::new(c).map_err(mmap_err(map_names::VIP_INDEX_CTL))?;
            // Pinned maps an earlier agent laid out: the half it made live last may be read
            // (a half never made live is read by nothing).
            let half_flipped = ctl.get(0).active & VIP_INDEX_HALF != 0;
            self.vip_index = Some(VipIndex {
                ctl,
                slots: Values::new(s).map_err(mmap_err(map_names::VIP_INDEX))?,
                values: Values::new(v).map_err(mmap_err(map_names::VIP_VALUES))?,
                half_flipped,
            });
        }
        Ok(self.vip_index.as_mut())
    }

    /// Makes `value` VIP `id`'s value in the index: one store of its packed word.
    pub(super) fn index_vip_value(&mut self, id: u32, value: VipValue) -> Result<()> {
        let Some(ix) = self.vip_index()? else {
            return Ok(());
        };
        let word = pack_vip_value(&value).ok_or_else(|| {
            DataplaneError::Limit(format!("VIP id {id}: {value:?} does not fit the index"))
        })?;
        if id as usize >= ix.values.len() {
            return Err(DataplaneError::Limit(format!(
                "VIP id {id} outside the index"
            )));
        }
        // Safety: entry `id` of the live, writable mapping: one aligned store.
        unsafe { AtomicU64::from_ptr(ix.values.at(id as usize)) }.store(word, Ordering::Release);
        Ok(())
    }

    /// Brings the index to the VIP hash map's keys: keys taken out are cleared in place; keys
    /// added are laid out with the rest in the idle half, which then goes live, unless that
    /// would wait for a grace period and `wait` is false: then the program asks the hash map
    /// for the keys the index lacks until [`Dataplane::settle_vip_index`].
    fn update_vip_index(&mut self, wait: bool) -> Result<()> {
        if self.ebpf.map(map_names::VIP_INDEX).is_none() {
            return Ok(());
        }
        let keys = {
            let m: HashMap<_, VipKey, VipValue> = self.map_hash(map_names::VIPS)?;
            let mut keys = Vec::new();
            for r in m.iter() {
                let (k, v) = r.map_err(map_err(map_names::VIPS))?;
                keys.push((k, v.id));
            }
            keys
        };
        let want: BTreeSet<Entry> = keys.iter().map(|(k, id)| entry(k, *id)).collect();
        let Some(ix) = self.vip_index()? else {
            return Ok(());
        };
        let mut missing = want.clone();
        if let Some(base) = ix.live_base() {
            for i in base..base + VIP_INDEX_SLOTS as usize {
                let slot = ix.slots.get(i);
                if slot.id_plus_one == 0 {
                    continue;
                }
                if !missing.remove(&entry(&slot.key, slot.id_plus_one - 1)) {
                    // Gone from the map: out of the index, with one store.
                    let p = ix.slots.at(i);
                    // Safety: the slot's id word in the live, writable mapping.
                    unsafe { AtomicU32::from_ptr(std::ptr::addr_of_mut!((*p).id_plus_one)) }
                        .store(0, Ordering::Release);
                }
            }
        }
        let active = ix.active();
        if want.is_empty() && ix.live_base().is_none() {
            // Nothing to lay out: the program asks the (empty) hash map.
            return Ok(());
        }
        if missing.is_empty() && ix.live_base().is_some() {
            if active & VIP_INDEX_PENDING != 0 {
                ix.set_active(active & VIP_INDEX_HALF);
            }
            return Ok(());
        }
        if ix.half_flipped && !wait {
            if active & VIP_INDEX_HALF != 0 && active & VIP_INDEX_PENDING == 0 {
                ix.set_active(active | VIP_INDEX_PENDING);
            }
            return Ok(());
        }
        let (seed, half) = lay_out(&keys).ok_or_else(|| {
            DataplaneError::Limit(format!(
                "no layout of the VIP index for {} keys",
                keys.len()
            ))
        })?;
        if ix.half_flipped {
            ix.wait_grace()?;
        }
        let idle = if active & VIP_INDEX_HALF == 1 { 1 } else { 0 };
        let base = idle * VIP_INDEX_SLOTS as usize;
        for (i, slot) in half.into_iter().enumerate() {
            ix.slots.set(base + i, slot);
        }
        let p = ix.ctl.at(0);
        // Safety: the idle half's seed in the live mapping, which no program reads.
        unsafe { std::ptr::addr_of_mut!((*p).seeds[idle]).write_volatile(seed) };
        ix.set_active(idle as u32 + 1);
        ix.half_flipped = true;
        Ok(())
    }

    /// The index brought to the VIP map's keys without waiting ([`Dataplane::set_vip`],
    /// [`Dataplane::remove_vip`]).
    pub(super) fn refresh_vip_index(&mut self) -> Result<()> {
        self.update_vip_index(false)
    }

    /// Lays out the keys added since the index last went live, waiting for a grace period if
    /// one is owed: the agent calls it once it has applied a change, so that a change of many
    /// VIPs waits at most once.
    pub fn settle_vip_index(&mut self) -> Result<()> {
        let active = match self.vip_index()? {
            Some(ix) => ix.active(),
            None => return Ok(()),
        };
        if active & VIP_INDEX_PENDING != 0 || active & VIP_INDEX_HALF == 0 {
            self.update_vip_index(true)?;
        }
        Ok(())
    }

    /// Puts every VIP of the hash map into the index (a load over pinned maps, perhaps an older
    /// release's, which had none).
    pub(super) fn index_all_vips(&mut self) -> Result<()> {
        if self.ebpf.map(map_names::VIP_INDEX).is_none() || self.ebpf.map(map_names::VIPS).is_none()
        {
            return Ok(());
        }
        for (_, v) in self.vips()? {
            self.index_vip_value(v.id, v)?;
        }
        self.update_vip_index(true)
    }

    /// Whether the program looks VIPs up in the index, and whether keys await a layout (tests).
    pub fn vip_index_state(&mut self) -> Result<(bool, bool)> {
        Ok(match self.vip_index()? {
            Some(ix) => {
                let a = ix.active();
                (a & VIP_INDEX_HALF != 0, a & VIP_INDEX_PENDING != 0)
            }
            None => (false, false),
        })
    }

    /// Whether the program looks VIPs up in the index (tests).
    pub fn vip_index_live(&mut self) -> Result<bool> {
        Ok(self.vip_index_state()?.0)
    }

    /// Turns the index off, or on again as laid out (tests: the program then asks the hash map).
    pub fn set_vip_index_live(&mut self, on: bool) -> Result<()> {
        let Some(ix) = self.vip_index()? else {
            return Ok(());
        };
        let mut ctl = ix.ctl.get(0);
        ctl.active = match (on, ctl.active) {
            (false, _) => 0,
            (true, 0) => return Err(DataplaneError::Limit("no index laid out".into())),
            (true, a) => a,
        };
        ix.ctl.set(0, ctl);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_common::{FAMILY_V4, FAMILY_V6, MAX_VIPS, PROTO_TCP, PROTO_UDP};

    fn key(i: u32) -> VipKey {
        let mut addr = [0u8; 16];
        let family = if i.is_multiple_of(3) {
            FAMILY_V6
        } else {
            FAMILY_V4
        };
        addr[..4].copy_from_slice(&(0xc613_0000 + i / 2).to_be_bytes());
        if family == FAMILY_V6 {
            addr[0] = 0xfd;
        }
        VipKey {
            addr,
            port_be: (80 + (i % 2) as u16 * 363).to_be(),
            proto: if i % 4 < 2 { PROTO_TCP } else { PROTO_UDP },
            family: family
                | if i.is_multiple_of(5) {
                    lb_common::FAMILY_FRAGMENTS
                } else {
                    0
                },
        }
    }

    #[test]
    fn the_most_keys_the_vip_map_holds_find_a_slot_each() {
        for n in [1, 2, 17, 64, 2 * MAX_VIPS] {
            let keys: Vec<(VipKey, u32)> = (0..n).map(|i| (key(i), i % MAX_VIPS)).collect();
            let (seed, half) = lay_out(&keys).expect("a layout");
            assert!(seed <= 5, "{n} keys took seed {seed}");
            assert_eq!(
                half.iter().filter(|s| s.id_plus_one != 0).count(),
                n as usize
            );
            for (k, id) in &keys {
                // Found where the program looks: one of its two slots, with its id.
                let found = vip_index_slots(vip_index_hash(k, seed))
                    .iter()
                    .map(|&s| half[s as usize])
                    .find(|s| s.id_plus_one != 0 && lb_common::vip_index::same_key(&s.key, k));
                assert_eq!(found.map(|s| s.id_plus_one - 1), Some(*id), "{k:?}");
            }
        }
    }

    #[test]
    fn a_key_not_laid_out_is_not_found() {
        let keys: Vec<(VipKey, u32)> = (0..100).map(|i| (key(i), i % MAX_VIPS)).collect();
        let (seed, half) = lay_out(&keys).unwrap();
        for i in 100..1000 {
            let k = key(i);
            assert!(
                vip_index_slots(vip_index_hash(&k, seed))
                    .iter()
                    .all(|&s| !lb_common::vip_index::same_key(&half[s as usize].key, &k)),
                "{k:?}"
            );
        }
    }
}
