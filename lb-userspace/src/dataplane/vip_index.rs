//! The VIP index the program looks VIPs up in (`lb_common::vip_index`): laid out here from the
//! VIP hash map, which stays the truth, whenever its keys change; each VIP's value written
//! whenever it changes. Nothing is written that a program run may still read: a copy or a half
//! that was live is written again only after an RCU grace period.
use std::sync::atomic::{AtomicU32, Ordering};

use aya::maps::HashMap;
use lb_common::{
    MAX_VIPS, VipKey, VipValue, map_names,
    vip_index::{
        VIP_INDEX_SLOTS, VipIndexCtl, VipSlot, VipValues, vip_index_hash, vip_index_slots,
    },
};

use super::{Dataplane, DataplaneError, Result, error::map_err, grace::Grace, mmap::Values};

/// The index's maps, mapped, and what was made live since the last grace period.
pub(super) struct VipIndex {
    ctl: Values<VipIndexCtl>,
    slots: Values<VipSlot>,
    values: Values<VipValues>,
    /// A half went live since the last grace period: the other one may still be read.
    half_flipped: bool,
    /// Per VIP id: a copy went live since the last grace period.
    value_flipped: Vec<bool>,
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

fn mmap_err(name: &'static str) -> impl FnOnce(std::io::Error) -> DataplaneError {
    move |source| DataplaneError::Mmap { name, source }
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
            self.vip_index = Some(VipIndex {
                ctl: Values::new(c).map_err(mmap_err(map_names::VIP_INDEX_CTL))?,
                slots: Values::new(s).map_err(mmap_err(map_names::VIP_INDEX))?,
                values: Values::new(v).map_err(mmap_err(map_names::VIP_VALUES))?,
                // Pinned maps an earlier agent wrote: what it made live last may still be read.
                half_flipped: true,
                value_flipped: vec![true; MAX_VIPS as usize],
            });
        }
        Ok(self.vip_index.as_mut())
    }

    /// Makes `value` VIP `id`'s live value in the index: written into its idle copy, which
    /// then goes live.
    pub(super) fn index_vip_value(&mut self, id: u32, value: VipValue) -> Result<()> {
        let Some(ix) = self.vip_index()? else {
            return Ok(());
        };
        let i = id as usize;
        if i >= ix.values.len() {
            return Err(DataplaneError::Limit(format!(
                "VIP id {id} over {MAX_VIPS}"
            )));
        }
        if ix.value_flipped[i] {
            wait_grace(ix)?;
        }
        let live = ix.values.get(i).live & 1;
        let idle = live ^ 1;
        let p = ix.values.at(i);
        // Safety: the idle copy of entry `i` of the live mapping; no program reads it (it
        // is not live, and a grace period has passed since it was).
        unsafe {
            std::ptr::addr_of_mut!((*p).values[idle as usize]).write_volatile(value);
            AtomicU32::from_ptr(std::ptr::addr_of_mut!((*p).live)).store(idle, Ordering::Release);
        }
        ix.value_flipped[i] = true;
        Ok(())
    }

    /// Lays the index out anew from the VIP hash map's keys, if they differ from the live
    /// half's, and makes it live. Every key's VIP must have its value in the index already.
    pub(super) fn rebuild_vip_index(&mut self) -> Result<()> {
        let keys = {
            let m: HashMap<_, VipKey, VipValue> = self.map_hash(map_names::VIPS)?;
            let mut keys = Vec::new();
            for r in m.iter() {
                let (k, v) = r.map_err(map_err(map_names::VIPS))?;
                keys.push((k, v.id));
            }
            keys
        };
        let Some(ix) = self.vip_index()? else {
            return Ok(());
        };
        let ctl = ix.ctl.get(0);
        let live = live_keys(ix, &ctl);
        let mut want = keys.clone();
        want.sort_by_key(|(k, id)| (k.addr, k.port_be, k.proto, k.family, *id));
        if live.as_ref() == Some(&want) {
            return Ok(());
        }
        let (seed, half) = lay_out(&keys).ok_or_else(|| {
            DataplaneError::Limit(format!(
                "no layout of the VIP index for {} keys",
                keys.len()
            ))
        })?;
        if ix.half_flipped {
            wait_grace(ix)?;
        }
        let idle = if ctl.active == 1 { 1 } else { 0 };
        let base = idle * VIP_INDEX_SLOTS as usize;
        for (i, slot) in half.into_iter().enumerate() {
            ix.slots.set(base + i, slot);
        }
        let p = ix.ctl.at(0);
        // Safety: entry 0 of the live mapping: the idle half's seed (read by no program), then
        // the control word, one aligned atomic store after everything it makes live.
        unsafe {
            std::ptr::addr_of_mut!((*p).seeds[idle]).write_volatile(seed);
            AtomicU32::from_ptr(std::ptr::addr_of_mut!((*p).active))
                .store(idle as u32 + 1, Ordering::Release);
        }
        ix.half_flipped = true;
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
        self.rebuild_vip_index()
    }

    /// Whether the program looks VIPs up in the index (tests).
    pub fn vip_index_live(&mut self) -> Result<bool> {
        Ok(self
            .vip_index()?
            .is_some_and(|ix| ix.ctl.get(0).active != 0))
    }

    /// Turns the index off or on again as laid out (tests: the program then asks the hash map).
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

/// The live half's keys and ids, sorted; `None` without one.
fn live_keys(ix: &VipIndex, ctl: &VipIndexCtl) -> Option<Vec<(VipKey, u32)>> {
    if ctl.active == 0 {
        return None;
    }
    let base = (ctl.active as usize - 1) * VIP_INDEX_SLOTS as usize;
    let mut keys: Vec<(VipKey, u32)> = (0..VIP_INDEX_SLOTS as usize)
        .map(|i| ix.slots.get(base + i))
        .filter(|s| s.id_plus_one != 0)
        .map(|s| (s.key, s.id_plus_one - 1))
        .collect();
    keys.sort_by_key(|(k, id)| (k.addr, k.port_be, k.proto, k.family, *id));
    Some(keys)
}

fn wait_grace(ix: &mut VipIndex) -> Result<()> {
    Grace::new()
        .and_then(|g| g.wait())
        .map_err(|e| DataplaneError::Limit(format!("waiting for RCU: {e}")))?;
    ix.half_flipped = false;
    ix.value_flipped.fill(false);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_common::{FAMILY_V4, FAMILY_V6, PROTO_TCP, PROTO_UDP};

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
