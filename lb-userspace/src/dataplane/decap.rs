//! `xdp_decap`'s map: the addresses whose IP-in-IP packets are this host's to decapsulate.
use std::net::IpAddr;

use aya::maps::HashMap;
use lb_common::{AddrKey, map_names};

use super::{Dataplane, Result, addr_bytes, error::map_err};

impl Dataplane {
    /// Marks `addr` as this host's, for `xdp_decap`.
    pub fn add_decap_address(&mut self, ip: IpAddr) -> Result<()> {
        let (addr, family) = addr_bytes(ip);
        let mut m: HashMap<_, AddrKey, u32> = self.map_hash(map_names::DECAP_DST)?;
        m.insert(
            AddrKey {
                addr,
                family,
                _pad: [0; 3],
            },
            1,
            0,
        )
        .map_err(map_err(map_names::DECAP_DST))
    }
}
