//! Owns the loaded BPF object: load, attach, and every map write. Nothing else touches maps.
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, DevMapHash, HashMap},
    programs::{ProgramError, Xdp, xdp::XdpLinkId},
};
use lb_common::{
    AddrKey, Config as BpfConfig, FAMILY_V4, FAMILY_V6, FLOWS_DEFAULT, VipKey, map_names,
    program_names,
};

mod admission;
mod attach;
mod backends;
mod capture;
mod counters;
mod decap;
mod error;
mod flow_cache;
mod flows;
mod grace;
mod mmap;
mod probe;
mod sys;
mod vip_index;
mod vips;

pub use admission::vip_flags;
pub use counters::{Counts, Totals};
pub use flow_cache::count_cached;
pub use flows::{
    FlowCount, FlowEntry, FlowTable, coarse_now, count_flows, count_flows_by_backend, flows_to,
};
pub use probe::PROBE_PROGRAM;

pub use error::{DataplaneError, Result};
use error::{is_eperm, load_error, map_err};

/// The object built from `lb-ebpf`, embedded at build time.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb-ebpf"));

/// Puts an address in the 16-byte, family-tagged form the maps use.
pub fn addr_bytes(ip: IpAddr) -> ([u8; 16], u8) {
    match ip {
        IpAddr::V4(a) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&a.octets());
            (b, FAMILY_V4)
        }
        IpAddr::V6(a) => (a.octets(), FAMILY_V6),
    }
}

/// The map key of a VIP.
pub fn vip_key(addr: IpAddr, port: u16, proto: u8) -> VipKey {
    let (addr, family) = addr_bytes(addr);
    VipKey {
        addr,
        port_be: port.to_be(),
        proto,
        family,
    }
}

/// The configuration's size before the GUE port ([`lb_common::Config::gue_port_be`]).
const LEGACY_CONFIG: usize = 28;

/// Every map of the object but the per-CPU clock cache (`LB_CLOCK`, which a new program starts
/// afresh): pinned, so that a restart or an upgrade keeps them.
pub const PINNED_MAPS: [&str; 29] = [
    map_names::VIPS,
    map_names::VIP_INDEX,
    map_names::VIP_VALUES,
    map_names::VIP_INDEX_CTL,
    map_names::ECHO,
    map_names::VIP_FILTER,
    map_names::RINGS,
    map_names::BACKENDS,
    map_names::CONFIG,
    map_names::STATS,
    map_names::VIP_STATS,
    map_names::BACKEND_STATS,
    map_names::BACKEND_SENT,
    map_names::RETIRED,
    map_names::BACKEND_FLOWS,
    map_names::BACKEND_RETRIES,
    map_names::DEVMAP,
    map_names::DECAP_DST,
    map_names::FLOWS,
    map_names::FLOW_CACHE,
    map_names::FLOW_STATS,
    map_names::ACL,
    map_names::VIP_LIMITS,
    map_names::LIMITS,
    map_names::VIP_ADDRS,
    // Shared with the program a capture swaps in for its duration (and its logs).
    map_names::CAPTURE_CTL,
    map_names::CAPTURE,
    map_names::CAPTURE_LOST,
    "AYA_LOGS",
];

/// How much the programs log through aya-log (`lb run --program-log`): a load-time constant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
#[repr(u8)]
pub enum ProgramLog {
    #[default]
    Off = 0,
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
    Trace = 5,
}

/// How to load the object.
#[derive(Clone, Debug)]
pub struct Options {
    /// Flow-table entries.
    pub flows: u32,
    /// Where maps are pinned (and reused from).
    pub pin_dir: Option<PathBuf>,
    pub program_log: ProgramLog,
    /// The capture hook: only in the program a capture swaps in while it runs.
    pub capture_hook: bool,
    /// Seconds an established TCP flow's entry is kept against eviction by new flows.
    pub tcp_idle_s: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            flows: FLOWS_DEFAULT,
            pin_dir: None,
            program_log: ProgramLog::Off,
            capture_hook: false,
            tcp_idle_s: lb_common::TCP_IDLE_DEFAULT_S,
        }
    }
}

/// The VIP a backend serves, as the backend's entry records it: the program checks an
/// established flow against the entry alone.
#[derive(Clone, Copy, Debug)]
pub struct ServedVip {
    pub id: u32,
    pub key: VipKey,
    /// Seconds a UDP flow may be idle and keep this backend.
    pub udp_idle_s: u32,
    /// [`lb_common::FORWARD_IPIP`], [`lb_common::FORWARD_GUE`] or [`lb_common::FORWARD_L2DSR`].
    pub forwarding: u8,
}

/// A loaded BPF object and the interfaces its program is attached to. Dropping it detaches
/// every link and frees the maps: nothing is left behind.
pub struct Dataplane {
    ebpf: Ebpf,
    program: &'static str,
    links: Vec<(String, XdpLinkId)>,
    /// Interfaces whose link is pinned (it outlives this process).
    pinned: Vec<String>,
    /// The rings map, mapped into memory once it is first written.
    rings: Option<mmap::Rings>,
    /// The VIP index's maps, mapped once it is first written.
    vip_index: Option<vip_index::VipIndex>,
    /// How it was loaded (a capture loads the same program again, hook included).
    opts: Options,
    /// Flows moved from an older release's table at load, of how many it held.
    adopted_flows: Option<(u64, usize)>,
}

impl Dataplane {
    /// Loads the object and the program `program` (one of [`program_names`]) into the kernel.
    pub fn load(program: &'static str) -> Result<Self> {
        Self::load_from(OBJECT, program)
    }

    /// Like [`Dataplane::load`], from another object (tests).
    pub fn load_from(object: &[u8], program: &'static str) -> Result<Self> {
        if object.is_empty() {
            return Err(DataplaneError::NoObject);
        }
        Self::load_sized(object, program, FLOWS_DEFAULT)
    }

    /// Loads with a flow table of `flows` entries.
    pub fn load_sized(object: &[u8], program: &'static str, flows: u32) -> Result<Self> {
        Self::load_with(
            object,
            program,
            &Options {
                flows,
                ..Options::default()
            },
        )
    }

    /// Loads `xdp_lb` with its maps pinned under `pin_dir/maps/`: maps pinned there by an
    /// earlier run are reused (rings, backends, counters and the flow table carry over).
    pub fn load_pinned(
        flows: u32,
        pin_dir: &Path,
        program_log: ProgramLog,
        tcp_idle_s: u32,
    ) -> Result<Self> {
        Self::load_with(
            OBJECT,
            program_names::LB,
            &Options {
                flows,
                pin_dir: Some(pin_dir.to_path_buf()),
                program_log,
                tcp_idle_s,
                ..Options::default()
            },
        )
    }

    /// Loads `program` with `opts`.
    pub fn load_with(object: &[u8], program: &'static str, opts: &Options) -> Result<Self> {
        if object.is_empty() {
            return Err(DataplaneError::NoObject);
        }
        let (flows, pin_dir) = (opts.flows, opts.pin_dir.as_deref());
        let mut loader = EbpfLoader::new();
        // Load-time constants: the verifier removes the code they switch off.
        let log_level = opts.program_log as u8;
        let capture_hook = u8::from(opts.capture_hook);
        loader.override_global("AYA_LOG_LEVEL", &log_level, true);
        loader.override_global("LB_CAPTURE_HOOK", &capture_hook, true);
        loader.override_global("LB_TCP_IDLE_S", &opts.tcp_idle_s, true);
        let pins: Vec<(&'static str, PathBuf)> = match pin_dir {
            Some(dir) => PINNED_MAPS
                .iter()
                .map(|m| (*m, dir.join("maps").join(m)))
                .collect(),
            None => Vec::new(),
        };
        for (name, path) in &pins {
            loader.map_pin_path(name, path.as_path());
        }
        // The balancer, and in the test object its variants, all named `xdp_lb...`.
        let balancer = program.starts_with(program_names::LB);
        let flow_plan = flows::plan(pin_dir, balancer, flows)?;
        let grown = match pin_dir {
            Some(dir) if balancer => counters::take_grown(&dir.join("maps"))?,
            _ => Vec::new(),
        };
        if let Some(dir) = pin_dir {
            counters::drop_resized_config(&dir.join("maps"))?;
            flow_cache::drop_resized(&dir.join("maps"))?;
        }
        loader.map_max_entries(map_names::FLOWS, flow_plan.slots);
        loader.override_global("LB_FLOW_SETS", &flow_plan.sets, true);
        if !balancer {
            // Only the balancer needs its rings, flows and capture buffer: the others keep
            // them at their smallest.
            loader.map_max_entries(map_names::RINGS, 1);
            loader.map_max_entries(map_names::FLOW_CACHE, 1);
            loader.map_max_entries(map_names::CAPTURE, 4096);
            loader.map_max_entries("AYA_LOGS", 4096);
        }
        let mut ebpf = loader.load(object).map_err(|e| {
            if is_eperm(&e) {
                DataplaneError::Privilege
            } else {
                DataplaneError::Load(Box::new(e))
            }
        })?;
        let prog: &mut Xdp = ebpf
            .program_mut(program)
            .ok_or_else(|| DataplaneError::Program {
                program: program.into(),
                source: Box::new(ProgramError::NotLoaded),
            })?
            .try_into()
            .map_err(|source| DataplaneError::Program {
                program: program.into(),
                source: Box::new(source),
            })?;
        prog.load().map_err(|e| load_error(program, e))?;
        let mut dp = Dataplane {
            ebpf,
            program,
            links: Vec::new(),
            pinned: Vec::new(),
            rings: None,
            vip_index: None,
            opts: opts.clone(),
            adopted_flows: None,
        };
        dp.adopted_flows = dp.adopt_old_flows(flow_plan.old)?;
        // Whatever a pinned cache holds may predate this table (a table made anew, flows
        // forgotten by an agent that stopped before it wiped the cache): it starts empty.
        // (An older object, loaded by the benchmarks' A/B, has no cache.)
        if balancer && dp.ebpf.map(map_names::FLOW_CACHE).is_some() {
            dp.wipe_flow_cache()?;
        }
        dp.restore_grown(grown)?;
        // Pinned VIPs from an earlier run (perhaps one that predates the filter, or the index)
        // must pass it, and be in the index.
        dp.rebuild_vip_filter()?;
        dp.index_all_vips()?;
        Ok(dp)
    }

    fn xdp(&mut self) -> Result<&mut Xdp> {
        let program = self.program;
        self.ebpf
            .program_mut(program)
            .ok_or_else(|| DataplaneError::Program {
                program: program.into(),
                source: Box::new(ProgramError::NotLoaded),
            })?
            .try_into()
            .map_err(|source| DataplaneError::Program {
                program: program.into(),
                source: Box::new(source),
            })
    }

    /// Flows moved at load from an older release's flow table (an LRU hash map), and how many
    /// it held: `None` when there was none.
    pub fn adopted_flows(&self) -> Option<(u64, usize)> {
        self.adopted_flows
    }

    /// The loaded object's map `name`, for the maps of the test object's programs (the
    /// balancer's own are written through the methods here).
    pub fn map(&self, name: &'static str) -> Result<&aya::maps::Map> {
        self.ebpf.map(name).ok_or(DataplaneError::MissingMap(name))
    }

    /// [`Dataplane::map`], to write.
    pub fn map_mut(&mut self, name: &'static str) -> Result<&mut aya::maps::Map> {
        self.ebpf
            .map_mut(name)
            .ok_or(DataplaneError::MissingMap(name))
    }

    /// The loaded program, for `BPF_PROG_TEST_RUN`.
    pub fn program(&mut self) -> Result<&mut Xdp> {
        self.xdp()
    }

    /// Sets the outer source addresses of encapsulated packets.
    pub fn set_sources(&mut self, v4: Option<Ipv4Addr>, v6: Option<Ipv6Addr>) -> Result<()> {
        self.update_config(|c| {
            c.source_v4 = v4.map(|a| a.octets()).unwrap_or_default();
            c.source_v6 = v6.map(|a| a.octets()).unwrap_or_default();
        })
    }

    /// The prefixes the outer sources are chosen from by each flow's hash (`None`: the one
    /// source [`Dataplane::set_sources`] wrote). Call after it: a prefix's network replaces
    /// that source.
    pub fn set_source_prefixes(
        &mut self,
        v4: Option<ipnet::Ipv4Net>,
        v6: Option<ipnet::Ipv6Net>,
    ) -> Result<()> {
        self.update_config(|c| {
            let (mut b4, mut b6) = (0, 0);
            if let Some(n) = v4 {
                c.source_v4 = n.network().octets();
                b4 = 32 - n.prefix_len() as u32;
            }
            if let Some(n) = v6 {
                c.source_v6 = n.network().octets();
                b6 = 128 - n.prefix_len() as u32;
            }
            c.flags = (c.flags & !lb_common::hash::source_flags(0xff, 0xff))
                | lb_common::hash::source_flags(b4, b6);
        })
    }

    /// The VIP addresses whose echo requests the program answers: exactly these afterwards.
    pub fn set_echo_addresses(&mut self, addrs: &[IpAddr]) -> Result<()> {
        let want: Vec<AddrKey> = addrs
            .iter()
            .map(|a| {
                let (addr, family) = addr_bytes(*a);
                AddrKey::new(addr, family)
            })
            .collect();
        self.set_addresses(map_names::ECHO, &want)
    }

    /// Makes the address map `name` hold exactly `want` (each mapped to 1): the new ones
    /// first, then the stale ones go, so a packet meanwhile finds every address it should.
    pub(super) fn set_addresses(&mut self, name: &'static str, want: &[AddrKey]) -> Result<()> {
        let mut m: HashMap<_, AddrKey, u32> = self.map_hash(name)?;
        let stale: Vec<AddrKey> = m
            .keys()
            .filter_map(|k| k.ok())
            .filter(|k| !want.contains(k))
            .collect();
        for k in want {
            m.insert(k, 1, 0).map_err(map_err(name))?;
        }
        for k in &stale {
            let _ = m.remove(k);
        }
        Ok(())
    }

    /// Sets the backends' GUE port (`gue` VIPs send to it; `xdp_decap` takes it as GUE).
    pub fn set_gue_port(&mut self, port: u16) -> Result<()> {
        self.update_config(|c| c.gue_port_be = port.to_be())
    }

    /// Sets the path MTU to the backends (`None`: each egress interface's).
    pub fn set_path_mtu(&mut self, mtu: Option<u32>) -> Result<()> {
        self.update_config(|c| c.path_mtu = mtu.unwrap_or(0))
    }

    fn update_config(&mut self, f: impl FnOnce(&mut BpfConfig)) -> Result<()> {
        if self.legacy_config() {
            return self.update_legacy_config(f);
        }
        let mut m: Array<_, BpfConfig> = self.map_array(map_names::CONFIG)?;
        let mut cfg = m.get(&0, 0).map_err(map_err(map_names::CONFIG))?;
        f(&mut cfg);
        m.set(0, cfg, 0).map_err(map_err(map_names::CONFIG))
    }

    /// Whether the loaded object's configuration is the release before the GUE port's
    /// ([`LEGACY_CONFIG`] bytes): an older build's object, which `bench --only ab` loads to
    /// measure against.
    fn legacy_config(&self) -> bool {
        match self.ebpf.map(map_names::CONFIG) {
            Some(aya::maps::Map::Array(d)) => d
                .info()
                .is_ok_and(|i| i.value_size() as usize == LEGACY_CONFIG),
            _ => false,
        }
    }

    /// [`Dataplane::update_config`] on an older object's configuration: its fields are this
    /// one's first [`LEGACY_CONFIG`] bytes.
    fn update_legacy_config(&mut self, f: impl FnOnce(&mut BpfConfig)) -> Result<()> {
        let mut m: Array<_, [u8; LEGACY_CONFIG]> = self.map_array(map_names::CONFIG)?;
        let old = m.get(&0, 0).map_err(map_err(map_names::CONFIG))?;
        let mut cfg = BpfConfig::default();
        // Safety: BpfConfig is plain repr(C) data at least LEGACY_CONFIG bytes long, and any
        // bytes make a valid one.
        let bytes = unsafe {
            std::slice::from_raw_parts_mut(
                (&mut cfg as *mut BpfConfig).cast::<u8>(),
                size_of::<BpfConfig>(),
            )
        };
        bytes[..LEGACY_CONFIG].copy_from_slice(&old);
        f(&mut cfg);
        // Safety: as above, read back.
        let bytes = unsafe {
            std::slice::from_raw_parts((&cfg as *const BpfConfig).cast::<u8>(), LEGACY_CONFIG)
        };
        let mut new = [0u8; LEGACY_CONFIG];
        new.copy_from_slice(bytes);
        m.set(0, new, 0).map_err(map_err(map_names::CONFIG))
    }

    /// Lets the program redirect to these interfaces (by index).
    pub fn allow_egress(&mut self, ifindex: u32) -> Result<()> {
        let map = self
            .ebpf
            .map_mut(map_names::DEVMAP)
            .ok_or(DataplaneError::MissingMap(map_names::DEVMAP))?;
        let mut m: DevMapHash<_> = DevMapHash::try_from(map).map_err(map_err(map_names::DEVMAP))?;
        m.insert(ifindex, ifindex, None, 0)
            .map_err(|e| DataplaneError::Limit(format!("devmap entry for ifindex {ifindex}: {e}")))
    }

    fn map_array<V: aya::Pod>(
        &mut self,
        name: &'static str,
    ) -> Result<Array<&mut aya::maps::MapData, V>> {
        let map = self
            .ebpf
            .map_mut(name)
            .ok_or(DataplaneError::MissingMap(name))?;
        Array::try_from(map).map_err(map_err(name))
    }

    fn map_hash<K: aya::Pod, V: aya::Pod>(
        &mut self,
        name: &'static str,
    ) -> Result<HashMap<&mut aya::maps::MapData, K, V>> {
        let map = self
            .ebpf
            .map_mut(name)
            .ok_or(DataplaneError::MissingMap(name))?;
        HashMap::try_from(map).map_err(map_err(name))
    }
}

/// The index of a network interface, if it exists.
pub fn nix_ifindex(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}
