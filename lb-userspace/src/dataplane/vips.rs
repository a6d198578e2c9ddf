//! VIPs: their entries, their rings (through the memory mapping) and the address filter.
use aya::maps::{Array, HashMap, MapError};
use lb_common::{
    CONFIG_ANY_PORT_VIP, FORWARD_IPIP, MAX_VIPS, RING_STRIDE, VIP_FILTER_WORDS, VipFilter, VipKey,
    VipValue, hash, map_names, ring_index,
};

use super::{Dataplane, DataplaneError, Result, error::map_err, mmap};

impl Dataplane {
    /// Every VIP entry: (key, value) (not the second entries of VIPs that take fragments).
    pub fn vips(&mut self) -> Result<Vec<(VipKey, VipValue)>> {
        let m: HashMap<_, VipKey, VipValue> = self.map_hash(map_names::VIPS)?;
        m.iter()
            .filter(|r| r.as_ref().map_or(true, |(k, _)| !k.is_fragments()))
            .map(|r| r.map_err(map_err(map_names::VIPS)))
            .collect()
    }

    /// Installs `ring` (backend ids per slot) for VIP `id` and makes it live: the ring goes into
    /// the VIP's idle half first, then one update of the VIP entry flips to it, so a packet
    /// sees either the whole old ring or the whole new one.
    /// With `fragments`, fragments to the VIP's address and protocol take the same ring (by
    /// source, destination and protocol).
    pub fn set_vip(
        &mut self,
        id: u32,
        key: VipKey,
        ring: &[u32],
        fragments: bool,
        flags: u32,
    ) -> Result<()> {
        if id >= MAX_VIPS || ring.is_empty() || ring.len() > RING_STRIDE as usize {
            return Err(DataplaneError::Limit(format!(
                "VIP id {id} with a ring of {} slots",
                ring.len()
            )));
        }
        let vips: HashMap<_, VipKey, VipValue> = self.map_hash(map_names::VIPS)?;
        let live = vips
            .get(&key, 0)
            .ok()
            .filter(|v| v.id == id)
            .map(|v| v.active_ring);
        let idle = live.map_or(0, |a| a ^ 1);
        if self.rings.is_none() {
            let map = self
                .ebpf
                .map(map_names::RINGS)
                .ok_or(DataplaneError::MissingMap(map_names::RINGS))?;
            self.rings = Some(
                mmap::Rings::new(map).map_err(|source| DataplaneError::Mmap {
                    name: map_names::RINGS,
                    source,
                })?,
            );
        }
        let rings = self.rings.as_mut().expect("mapped above");
        let base = ring_index(id, idle, 0) as usize;
        let half = rings
            .slots()
            .get_mut(base..base + ring.len())
            .ok_or_else(|| DataplaneError::Limit(format!("VIP id {id} outside the rings map")))?;
        // The idle half: no packet reads it until the VIP entry below flips to it, and that
        // update (a system call taking the map's locks) orders these stores before it.
        for (slot, backend) in half.iter_mut().zip(ring) {
            *slot = *backend as u64;
        }
        let value = VipValue {
            id,
            ring_size: ring.len() as u32,
            active_ring: idle,
            forwarding: FORWARD_IPIP,
            flags,
            _reserved: 0,
        };
        if key.port_be == 0 {
            // Before the VIP goes live: packets to it must find the every-port lookup on.
            self.update_config(|c| c.flags |= CONFIG_ANY_PORT_VIP)?;
        }
        // Before the VIP goes live, too: its address must pass the filter, and be known as a
        // VIP's.
        self.update_vip_filter(|f| hash::vip_filter_set(f, &key.addr))?;
        let addr = lb_common::AddrKey {
            addr: key.addr,
            family: key.family,
            _pad: [0; 3],
        };
        let mut addrs: HashMap<_, lb_common::AddrKey, u32> = self.map_hash(map_names::VIP_ADDRS)?;
        addrs
            .insert(addr, 1, 0)
            .map_err(map_err(map_names::VIP_ADDRS))?;
        let mut vips: HashMap<_, VipKey, VipValue> = self.map_hash(map_names::VIPS)?;
        vips.insert(key, value, 0)
            .map_err(map_err(map_names::VIPS))?;
        if fragments {
            vips.insert(key.for_fragments(), value, 0)
                .map_err(map_err(map_names::VIPS))?;
        } else {
            remove_if_there(&mut vips, &key.for_fragments())?;
        }
        // The index: the value first, then the keys (a new VIP's key goes live in the index
        // with its value already there).
        self.index_vip_value(id, value)?;
        self.refresh_vip_index()
    }

    /// The live entry of a VIP, if it has one.
    pub fn vip(&mut self, key: &VipKey) -> Result<Option<VipValue>> {
        let vips: HashMap<_, VipKey, VipValue> = self.map_hash(map_names::VIPS)?;
        match vips.get(key, 0) {
            Ok(v) => Ok(Some(v)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(map_err(map_names::VIPS)(e)),
        }
    }

    /// Removes a VIP: its packets pass to the kernel again. The last VIP on every port gone,
    /// the program stops looking for one (a second VIP lookup for every packet to a VIP
    /// address on a port no VIP has).
    pub fn remove_vip(&mut self, key: &VipKey) -> Result<()> {
        let mut vips: HashMap<_, VipKey, VipValue> = self.map_hash(map_names::VIPS)?;
        remove_if_there(&mut vips, &key.for_fragments())?;
        vips.remove(key).map_err(map_err(map_names::VIPS))?;
        self.refresh_vip_index()?;
        if key.port_be == 0 && !self.vips()?.iter().any(|(k, _)| k.port_be == 0) {
            self.update_config(|c| c.flags &= !CONFIG_ANY_PORT_VIP)?;
        }
        self.rebuild_vip_filter()
    }

    /// Whether the program looks for a VIP on every port when the exact port has none.
    pub fn any_port_lookup(&mut self) -> Result<bool> {
        let m: Array<_, lb_common::Config> = self.map_array(map_names::CONFIG)?;
        let cfg = m.get(&0, 0).map_err(map_err(map_names::CONFIG))?;
        Ok(cfg.flags & CONFIG_ANY_PORT_VIP != 0)
    }

    /// Writes the VIP filter anew from the VIPs in the map. The remaining VIPs' bits are set in
    /// the old value and the new alike, so a packet that reads the entry while it is copied
    /// never misses one of them.
    pub(super) fn rebuild_vip_filter(&mut self) -> Result<()> {
        let Ok(vips) = self.vips() else {
            // Programs without the VIP map (the benchmarks' trivial ones) have no filter.
            return Ok(());
        };
        let mut filter: VipFilter = [0; VIP_FILTER_WORDS];
        for (key, _) in &vips {
            hash::vip_filter_set(&mut filter, &key.addr);
        }
        self.update_vip_filter(|f| *f = filter)?;
        self.rebuild_vip_addrs()
    }

    fn update_vip_filter(&mut self, f: impl FnOnce(&mut VipFilter)) -> Result<()> {
        let mut m: Array<_, VipFilter> = self.map_array(map_names::VIP_FILTER)?;
        let mut filter = m.get(&0, 0).map_err(map_err(map_names::VIP_FILTER))?;
        f(&mut filter);
        m.set(0, filter, 0).map_err(map_err(map_names::VIP_FILTER))
    }
}

fn remove_if_there(
    vips: &mut HashMap<&mut aya::maps::MapData, VipKey, VipValue>,
    key: &VipKey,
) -> Result<()> {
    match vips.remove(key) {
        Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
        Err(MapError::SyscallError(e)) if e.io_error.kind() == std::io::ErrorKind::NotFound => {
            Ok(())
        }
        Err(e) => Err(map_err(map_names::VIPS)(e)),
    }
}
