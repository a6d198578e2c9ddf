//! Backends: their entries, which the program reads on every packet it sends.
use std::net::IpAddr;

use aya::maps::Array;
use lb_common::{Backend, MAX_BACKENDS, NextHop, map_names};

use super::{Dataplane, DataplaneError, Result, ServedVip, addr_bytes, error::map_err};

impl Dataplane {
    /// Writes backend `id`: its address, the VIP it serves, its state bits
    /// ([`lb_common::BACKEND_UP`], [`lb_common::BACKEND_DRAIN`]) and its next hop (all zero:
    /// the program asks the kernel's route lookup).
    pub fn set_backend(
        &mut self,
        id: u32,
        addr: IpAddr,
        vip: ServedVip,
        state: u8,
        hop: NextHop,
    ) -> Result<()> {
        if id >= MAX_BACKENDS {
            return Err(DataplaneError::Limit(format!(
                "backend id {id} over {MAX_BACKENDS}"
            )));
        }
        let (addr, family) = addr_bytes(addr);
        let entry = Backend {
            addr,
            family,
            state,
            forwarding: vip.forwarding,
            _pad: 0,
            vip_id: vip.id,
            hop,
            vip: vip.key,
            udp_idle_s: vip.udp_idle_s,
        };
        let mut m: Array<_, Backend> = self.map_array(map_names::BACKENDS)?;
        m.set(id, entry, 0).map_err(map_err(map_names::BACKENDS))
    }

    /// Every used backend slot: (id, entry).
    pub fn backends(&mut self) -> Result<Vec<(u32, Backend)>> {
        let m: Array<_, Backend> = self.map_array(map_names::BACKENDS)?;
        let mut out = Vec::new();
        for id in 0..MAX_BACKENDS {
            let b = m.get(&id, 0).map_err(map_err(map_names::BACKENDS))?;
            if b.family != 0 {
                out.push((id, b));
            }
        }
        Ok(out)
    }
}
