//! Owns the loaded BPF object: load, attach, and every map write. Nothing else touches maps.
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, DevMapHash, HashMap, IterableMap, MapError, PerCpuArray},
    programs::{
        ProgramError, Xdp, XdpMode,
        links::{FdLink, PinnedLink},
        xdp::{XdpLink, XdpLinkId},
    },
};
use lb_common::{
    AddrKey, Backend, Config as BpfConfig, Counter, FAMILY_V4, FAMILY_V6, FLOW_HITS, FLOW_INSERTS,
    FLOWS_DEFAULT, FORWARD_IPIP, FlowKey, FlowValue, MAX_BACKENDS, MAX_VIPS, RING_STRIDE, Traffic,
    VipKey, VipValue, map_names, program_names, ring_index,
};

use crate::config::XdpMode as ConfigMode;

mod error;

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

/// Every map of the object, for pinning.
const ALL_MAPS: [&str; 11] = [
    map_names::VIPS,
    map_names::RINGS,
    map_names::BACKENDS,
    map_names::CONFIG,
    map_names::STATS,
    map_names::VIP_STATS,
    map_names::BACKEND_STATS,
    map_names::DEVMAP,
    map_names::DECAP_DST,
    map_names::FLOWS,
    map_names::FLOW_STATS,
];

/// A loaded BPF object and the interfaces its program is attached to. Dropping it detaches
/// every link and frees the maps: nothing is left behind.
pub struct Dataplane {
    ebpf: Ebpf,
    program: &'static str,
    links: Vec<(String, XdpLinkId)>,
    /// Interfaces whose link is pinned (it outlives this process).
    pinned: Vec<String>,
}

/// The flow table's size, contents and counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FlowTable {
    pub capacity: u32,
    /// Entries present now (counted by walking the table).
    pub entries: u64,
    /// Flows added since the maps were created.
    pub inserted: u64,
    /// Flows the LRU pushed out to make room: added minus present.
    pub evicted: u64,
    /// Packets of established flows that kept their backend.
    pub hits: u64,
}

/// Totals of a counter over all CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Totals {
    pub packets: u64,
    pub bytes: u64,
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
        Self::load_with(object, program, flows, None)
    }

    /// Loads `xdp_lb` with its maps pinned under `pin_dir/maps/`: maps pinned there by an
    /// earlier run are reused (rings, backends, counters and the flow table carry over).
    pub fn load_pinned(flows: u32, pin_dir: &Path) -> Result<Self> {
        Self::load_with(OBJECT, program_names::LB, flows, Some(pin_dir))
    }

    fn load_with(
        object: &[u8],
        program: &'static str,
        flows: u32,
        pin_dir: Option<&Path>,
    ) -> Result<Self> {
        if object.is_empty() {
            return Err(DataplaneError::NoObject);
        }
        let mut loader = EbpfLoader::new();
        let pins: Vec<(&'static str, PathBuf)> = match pin_dir {
            Some(dir) => ALL_MAPS
                .iter()
                .map(|m| (*m, dir.join("maps").join(m)))
                .collect(),
            None => Vec::new(),
        };
        for (name, path) in &pins {
            loader.map_pin_path(name, path.as_path());
        }
        if program == program_names::LB {
            loader.map_max_entries(map_names::FLOWS, flows);
        } else {
            // Only the balancer needs its rings and flows: the others keep them at one entry.
            loader.map_max_entries(map_names::RINGS, 1);
            loader.map_max_entries(map_names::FLOWS, 1);
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
        Ok(Dataplane {
            ebpf,
            program,
            links: Vec::new(),
            pinned: Vec::new(),
        })
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

    /// The loaded program, for `BPF_PROG_TEST_RUN`.
    pub fn program(&mut self) -> Result<&mut Xdp> {
        self.xdp()
    }

    /// Attaches to `interface`. Returns the mode it ended up in: `auto` falls back from native
    /// to generic, and says so.
    pub fn attach(&mut self, interface: &str, mode: ConfigMode) -> Result<&'static str> {
        if nix_ifindex(interface).is_none() {
            return Err(DataplaneError::UnknownInterface(interface.into()));
        }
        let program = self.program;
        let try_mode = |dp: &mut Self, m: XdpMode, name: &'static str| -> Result<XdpLinkId> {
            dp.xdp()?
                .attach(interface, m)
                .map_err(|source| DataplaneError::Attach {
                    program: program.into(),
                    interface: interface.into(),
                    mode: name,
                    source: Box::new(source),
                })
        };
        let (id, used) = match mode {
            ConfigMode::Native => (try_mode(self, XdpMode::Driver, "native")?, "native"),
            ConfigMode::Generic => (try_mode(self, XdpMode::Skb, "generic")?, "generic"),
            ConfigMode::Auto => match try_mode(self, XdpMode::Driver, "native") {
                Ok(id) => (id, "native"),
                Err(e) => {
                    tracing::warn!(interface, error = %e, "native XDP failed; FALLING BACK TO GENERIC XDP (slow: every packet pays for an skb)");
                    (try_mode(self, XdpMode::Skb, "generic")?, "generic")
                }
            },
        };
        self.links.push((interface.to_string(), id));
        Ok(used)
    }

    /// Attaches to `interface`, keeping the attachment across agent restarts: if an earlier
    /// run left its link pinned under `pin_dir/links/`, the link is kept and only its program
    /// is replaced, atomically (`bpf_link_update`): traffic never sees an interface without
    /// the balancer, and an upgraded program takes over the same maps. Returns the mode, or
    /// "adopted".
    pub fn attach_pinned(
        &mut self,
        interface: &str,
        mode: ConfigMode,
        pin_dir: &Path,
    ) -> Result<&'static str> {
        let path = pin_dir.join("links").join(interface);
        if !path.exists() {
            return self.attach(interface, mode);
        }
        let program = self.program;
        let link_err = |e: String| {
            DataplaneError::Limit(format!("adopting the pinned link {}: {e}", path.display()))
        };
        let pinned = PinnedLink::from_pin(&path).map_err(|e| link_err(e.to_string()))?;
        let link = XdpLink::try_from(FdLink::from(pinned)).map_err(|e| link_err(e.to_string()))?;
        let id = self
            .xdp()?
            .attach_to_link(link)
            .map_err(|source| DataplaneError::Attach {
                program: program.into(),
                interface: interface.into(),
                mode: "pinned link",
                source: Box::new(source),
            })?;
        self.links.push((interface.to_string(), id));
        self.pinned.push(interface.to_string());
        Ok("adopted")
    }

    /// Pins every link this run made (call once the start has succeeded: a start that fails
    /// earlier leaves nothing attached).
    pub fn pin_links(&mut self, pin_dir: &Path) -> Result<()> {
        let dir = pin_dir.join("links");
        std::fs::create_dir_all(&dir)
            .map_err(|e| DataplaneError::Limit(format!("creating {}: {e}", dir.display())))?;
        let fresh: Vec<(String, XdpLinkId)> = std::mem::take(&mut self.links)
            .into_iter()
            .filter(|(i, _)| !self.pinned.contains(i))
            .collect();
        for (interface, id) in fresh {
            let link = self
                .xdp()?
                .take_link(id)
                .map_err(|e| DataplaneError::Limit(format!("{interface}: {e}")))?;
            match FdLink::try_from(link) {
                Ok(fd) => {
                    fd.pin(dir.join(&interface)).map_err(|e| {
                        DataplaneError::Limit(format!("pinning the link of {interface}: {e}"))
                    })?;
                    self.pinned.push(interface);
                }
                Err(e) => {
                    tracing::warn!(interface, error = %e, "this attachment (netlink, not a BPF link) cannot be pinned: stopping the agent will detach it");
                }
            }
        }
        Ok(())
    }

    /// Interfaces attached so far.
    pub fn attached(&self) -> impl Iterator<Item = &str> {
        self.links
            .iter()
            .map(|(i, _)| i.as_str())
            .chain(self.pinned.iter().map(String::as_str))
    }

    /// Sets the outer source addresses of encapsulated packets.
    pub fn set_sources(&mut self, v4: Option<Ipv4Addr>, v6: Option<Ipv6Addr>) -> Result<()> {
        let cfg = BpfConfig {
            source_v4: v4.map(|a| a.octets()).unwrap_or_default(),
            source_v6: v6.map(|a| a.octets()).unwrap_or_default(),
            flags: 0,
        };
        let mut m: Array<_, BpfConfig> = self.map_array(map_names::CONFIG)?;
        m.set(0, cfg, 0).map_err(map_err(map_names::CONFIG))
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

    /// Writes backend `id`: its address, the VIP it serves, and its state bits
    /// ([`lb_common::BACKEND_UP`], [`lb_common::BACKEND_DRAIN`]).
    pub fn set_backend(&mut self, id: u32, addr: IpAddr, vip_id: u32, state: u8) -> Result<()> {
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
            _pad: [0; 2],
            vip_id,
        };
        let mut m: Array<_, Backend> = self.map_array(map_names::BACKENDS)?;
        m.set(id, entry, 0).map_err(map_err(map_names::BACKENDS))
    }

    /// Frees backend `id`: flows recorded for it move on their next packet.
    pub fn clear_backend(&mut self, id: u32) -> Result<()> {
        let mut m: Array<_, Backend> = self.map_array(map_names::BACKENDS)?;
        m.set(id, Backend::default(), 0)
            .map_err(map_err(map_names::BACKENDS))
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

    /// Every VIP entry: (key, value).
    pub fn vips(&mut self) -> Result<Vec<(VipKey, VipValue)>> {
        let m: HashMap<_, VipKey, VipValue> = self.map_hash(map_names::VIPS)?;
        m.iter()
            .map(|r| r.map_err(map_err(map_names::VIPS)))
            .collect()
    }

    /// Installs `ring` (backend ids per slot) for VIP `id` and makes it live: the ring goes into
    /// the VIP's idle half first, then one update of the VIP entry flips to it, so a packet
    /// sees either the whole old ring or the whole new one.
    /// `idle_before`, when known, is what the idle ring holds now: only the slots that differ
    /// are written.
    pub fn set_vip(
        &mut self,
        id: u32,
        key: VipKey,
        ring: &[u32],
        udp_idle_s: u32,
        idle_before: Option<&[u32]>,
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
        {
            let mut rings: Array<_, u32> = self.map_array(map_names::RINGS)?;
            let before = idle_before.filter(|b| b.len() == ring.len());
            for (slot, backend) in ring.iter().enumerate() {
                if before.is_some_and(|b| b[slot] == *backend) {
                    continue;
                }
                rings
                    .set(ring_index(id, idle, slot as u32), backend, 0)
                    .map_err(map_err(map_names::RINGS))?;
            }
        }
        let value = VipValue {
            id,
            ring_size: ring.len() as u32,
            active_ring: idle,
            forwarding: FORWARD_IPIP,
            flags: 0,
            udp_idle_s,
        };
        let mut vips: HashMap<_, VipKey, VipValue> = self.map_hash(map_names::VIPS)?;
        vips.insert(key, value, 0).map_err(map_err(map_names::VIPS))
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

    /// Removes a VIP: its packets pass to the kernel again.
    pub fn remove_vip(&mut self, key: &VipKey) -> Result<()> {
        let mut vips: HashMap<_, VipKey, VipValue> = self.map_hash(map_names::VIPS)?;
        vips.remove(key).map_err(map_err(map_names::VIPS))
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

    /// The outcome counters, summed over CPUs.
    pub fn outcomes(&self) -> Result<Vec<(Counter, Totals)>> {
        let all = self.sum_all(map_names::STATS, Counter::COUNT)?;
        Ok(Counter::ALL.iter().copied().zip(all).collect())
    }

    /// The flow table's numbers. Walks the table: the cost grows with its contents.
    pub fn flow_table(&self) -> Result<FlowTable> {
        let name = map_names::FLOWS;
        let map = self
            .ebpf
            .map(name)
            .ok_or(DataplaneError::MissingMap(name))?;
        let flows: HashMap<_, FlowKey, FlowValue> =
            HashMap::try_from(map).map_err(map_err(name))?;
        let capacity = flows.map().info().map_err(map_err(name))?.max_entries();
        let entries = flows.keys().filter(|k| k.is_ok()).count() as u64;
        let sname = map_names::FLOW_STATS;
        let map = self
            .ebpf
            .map(sname)
            .ok_or(DataplaneError::MissingMap(sname))?;
        let st: PerCpuArray<_, u64> = PerCpuArray::try_from(map).map_err(map_err(sname))?;
        let sum =
            |i: u32| -> Result<u64> { Ok(st.get(&i, 0).map_err(map_err(sname))?.iter().sum()) };
        let inserted = sum(FLOW_INSERTS)?;
        Ok(FlowTable {
            capacity,
            entries,
            inserted,
            evicted: inserted.saturating_sub(entries),
            hits: sum(FLOW_HITS)?,
        })
    }

    /// Counters of VIP `id`.
    pub fn vip_totals(&self, id: u32) -> Result<Totals> {
        self.sum(map_names::VIP_STATS, id)
    }

    /// Counters of backend `id`.
    pub fn backend_totals(&self, id: u32) -> Result<Totals> {
        self.sum(map_names::BACKEND_STATS, id)
    }

    fn sum_all(&self, name: &'static str, n: u32) -> Result<Vec<Totals>> {
        (0..n).map(|i| self.sum(name, i)).collect()
    }

    fn sum(&self, name: &'static str, index: u32) -> Result<Totals> {
        let map = self
            .ebpf
            .map(name)
            .ok_or(DataplaneError::MissingMap(name))?;
        let m: PerCpuArray<_, Traffic> = PerCpuArray::try_from(map).map_err(map_err(name))?;
        let values = m.get(&index, 0).map_err(map_err(name))?;
        Ok(values.iter().fold(Totals::default(), |t, v| Totals {
            packets: t.packets + v.packets,
            bytes: t.bytes + v.bytes,
        }))
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
