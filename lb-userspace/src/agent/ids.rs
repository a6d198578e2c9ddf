//! The ids VIPs and backends have in the data path's maps. They outlive the agent (the flow
//! table refers to backends by id), so a restart adopts them; a new VIP or backend takes the
//! lowest free id, and an id freed is free for the next.
use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
};

use lb_common::VipKey;

/// A freshly given id: its counters must be reset before use (it may have been someone
/// else's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Given {
    Kept(u32),
    New(u32),
}

#[derive(Debug, Default)]
pub struct Ids {
    vips: HashMap<VipKey, u32>,
    backends: HashMap<(u32, IpAddr), u32>,
}

fn lowest_free(used: impl Iterator<Item = u32>, max: u32) -> Option<u32> {
    let used: HashSet<u32> = used.collect();
    (0..max).find(|i| !used.contains(i))
}

impl Ids {
    /// Takes over an id an earlier run gave.
    pub fn adopt_vip(&mut self, key: VipKey, id: u32) {
        self.vips.insert(key, id);
    }

    pub fn adopt_backend(&mut self, vip: u32, addr: IpAddr, id: u32) {
        self.backends.insert((vip, addr), id);
    }

    pub fn vip(&self, key: &VipKey) -> Option<u32> {
        self.vips.get(key).copied()
    }

    pub fn backend(&self, vip: u32, addr: IpAddr) -> Option<u32> {
        self.backends.get(&(vip, addr)).copied()
    }

    /// The VIP's id, given now if it has none; `None` when all `max` are taken.
    pub fn give_vip(&mut self, key: VipKey, max: u32) -> Option<Given> {
        if let Some(id) = self.vip(&key) {
            return Some(Given::Kept(id));
        }
        let id = lowest_free(self.vips.values().copied(), max)?;
        self.vips.insert(key, id);
        Some(Given::New(id))
    }

    pub fn give_backend(&mut self, vip: u32, addr: IpAddr, max: u32) -> Option<Given> {
        if let Some(id) = self.backend(vip, addr) {
            return Some(Given::Kept(id));
        }
        let id = lowest_free(self.backends.values().copied(), max)?;
        self.backends.insert((vip, addr), id);
        Some(Given::New(id))
    }

    /// VIPs whose key is not in `wanted`, with their ids.
    pub fn vips_not_in(&self, wanted: &HashSet<VipKey>) -> Vec<(VipKey, u32)> {
        self.vips
            .iter()
            .filter(|(k, _)| !wanted.contains(k))
            .map(|(k, v)| (*k, *v))
            .collect()
    }

    /// Frees a VIP's id and its backends'; returns the backend ids freed.
    pub fn free_vip(&mut self, key: &VipKey) -> Vec<u32> {
        let Some(id) = self.vips.remove(key) else {
            return Vec::new();
        };
        self.free_backends(id, |_| true)
    }

    /// Frees the ids of the VIP's backends for which `gone` holds; returns them.
    pub fn free_backends(&mut self, vip: u32, gone: impl Fn(IpAddr) -> bool) -> Vec<u32> {
        let freed: Vec<(u32, IpAddr)> = self
            .backends
            .keys()
            .filter(|(v, a)| *v == vip && gone(*a))
            .copied()
            .collect();
        freed
            .into_iter()
            .filter_map(|k| self.backends.remove(&k))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(port: u16) -> VipKey {
        crate::dataplane::vip_key("198.19.0.1".parse().unwrap(), port, 6)
    }

    #[test]
    fn ids_are_the_lowest_free_kept_while_used_and_reused_when_freed() {
        let mut ids = Ids::default();
        ids.adopt_vip(key(80), 0);
        assert_eq!(ids.give_vip(key(80), 4), Some(Given::Kept(0)));
        assert_eq!(ids.give_vip(key(443), 4), Some(Given::New(1)));
        assert_eq!(ids.give_vip(key(53), 4), Some(Given::New(2)));
        let a: IpAddr = "198.18.0.11".parse().unwrap();
        let b: IpAddr = "198.18.0.12".parse().unwrap();
        assert_eq!(ids.give_backend(1, a, 8), Some(Given::New(0)));
        assert_eq!(ids.give_backend(1, b, 8), Some(Given::New(1)));
        // The same address under another VIP is another backend.
        assert_eq!(ids.give_backend(2, a, 8), Some(Given::New(2)));
        assert_eq!(ids.free_backends(1, |x| x == a), vec![0]);
        assert_eq!(
            ids.give_backend(2, b, 8),
            Some(Given::New(0)),
            "the freed id"
        );
        let mut freed = ids.free_vip(&key(53));
        freed.sort();
        assert_eq!(freed, vec![0, 2]);
        assert_eq!(ids.give_vip(key(22), 4), Some(Given::New(2)));
        assert_eq!(ids.give_vip(key(23), 4), Some(Given::New(3)));
        assert_eq!(ids.give_vip(key(24), 4), None, "all four taken");
        let wanted: HashSet<VipKey> = [key(80), key(443), key(22)].into();
        assert_eq!(ids.vips_not_in(&wanted), vec![(key(23), 3)]);
    }
}
