//! The maps of the programs that stand in for the rest of a network in tests and benchmarks:
//! the live-frames generator, the counting sink, the redirecting switch port, and the
//! decapsulating backend.
use std::net::IpAddr;

use aya::maps::{Array, HashMap, PerCpuArray};
use lb_common::{AddrKey, GenConfig, map_names};

use super::{Dataplane, DataplaneError, Result, addr_bytes, error::map_err};

impl Dataplane {
    /// Benchmarks: what `xdp_gen` writes into every frame.
    pub fn set_gen_config(&mut self, cfg: GenConfig) -> Result<()> {
        let mut m: Array<_, GenConfig> = self.map_array(map_names::GEN_CONFIG)?;
        m.set(0, cfg, 0).map_err(map_err(map_names::GEN_CONFIG))
    }

    /// Benchmarks: where `xdp_redirect_all` sends every frame.
    pub fn set_redirect_to(&mut self, ifindex: u32) -> Result<()> {
        self.allow_egress(ifindex)?;
        let mut m: Array<_, u32> = self.map_array(map_names::REDIRECT_TO)?;
        m.set(0, ifindex, 0)
            .map_err(map_err(map_names::REDIRECT_TO))
    }

    /// Benchmarks: frames `xdp_sink` has counted (over all CPUs).
    pub fn sink_count(&self) -> Result<u64> {
        let name = map_names::SINK_COUNT;
        let map = self
            .ebpf
            .map(name)
            .ok_or(DataplaneError::MissingMap(name))?;
        let m: PerCpuArray<_, u64> = PerCpuArray::try_from(map).map_err(map_err(name))?;
        Ok(m.get(&0, 0).map_err(map_err(name))?.iter().sum())
    }

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
