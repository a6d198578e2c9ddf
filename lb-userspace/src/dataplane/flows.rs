//! The flow table from the agent's side: its size, how full it is, and the flows of an older
//! release's table moved into it at start.
use std::path::{Path, PathBuf};

use aya::maps::{HashMap, Map, MapData};
use lb_common::{
    FLOW_WAYS, FlowKey, FlowSlot, FlowValue, PROTO_UDP, flow_check, flow_entries, flow_set_base,
    flow_sets, flow_table_hash, hash::flow_hash, map_names,
};

use super::{Dataplane, DataplaneError, Result, error::map_err, mmap::FlowSlots};

/// The flow table's size, contents and counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FlowTable {
    pub capacity: u32,
    /// Entries present now (counted by reading every slot).
    pub entries: u64,
    /// Flows added since the maps were created.
    pub inserted: u64,
    /// Flows pushed out of a full set to make room: added minus present.
    pub evicted: u64,
    /// Packets of established flows that kept their backend.
    pub hits: u64,
    /// New flows not recorded: every way of their set held an established flow within its
    /// keep time (the table is too small for its live flows, or a flood of established-looking
    /// flows filled it). They still reached the ring's backend.
    #[serde(default)]
    pub unrecorded: u64,
}

impl FlowTable {
    /// With `entries` counted: evictions are the flows added that are no longer there.
    pub fn with_entries(self, entries: u64) -> Self {
        FlowTable {
            entries,
            evicted: self.inserted.saturating_sub(entries),
            ..self
        }
    }
}

impl Dataplane {
    fn flow_map(&self) -> Result<&MapData> {
        let name = map_names::FLOWS;
        match self.ebpf.map(name) {
            Some(Map::Array(data)) => Ok(data),
            Some(_) => Err(DataplaneError::Limit(format!("map {name} is not an array"))),
            None => Err(DataplaneError::MissingMap(name)),
        }
    }

    pub(super) fn flow_slots(&self, writable: bool) -> Result<FlowSlots> {
        FlowSlots::new(self.flow_map()?, writable).map_err(|source| DataplaneError::Mmap {
            name: map_names::FLOWS,
            source,
        })
    }

    /// The flow table's numbers. Reads every slot: the cost grows with the table's size.
    pub fn flow_table(&self) -> Result<FlowTable> {
        let entries = self.flow_slots(false)?.occupied();
        Ok(self.flow_table_unwalked()?.with_entries(entries))
    }

    /// The flow table's numbers without reading it: `entries` and `evicted` are left at 0
    /// (see [`count_flows`], which the API runs off the agent's control loop).
    pub fn flow_table_unwalked(&self) -> Result<FlowTable> {
        let name = map_names::FLOWS;
        let capacity = self
            .flow_map()?
            .info()
            .map_err(map_err(name))?
            .max_entries();
        let (inserted, hits) = self.flow_counters()?;
        Ok(FlowTable {
            capacity,
            entries: 0,
            inserted,
            evicted: 0,
            hits,
            unrecorded: self.flows_unrecorded()?,
        })
    }

    /// Writes `flows` (from an older release's table) into the flow table, each where the
    /// program would look for it; a flow that finds its set full is left out (its next packet
    /// takes the ring). Returns how many went in.
    fn adopt_flows(&mut self, flows: &[(FlowKey, FlowValue)]) -> Result<u64> {
        let mut slots = self.flow_slots(true)?;
        let sets = flow_sets(slots.len() as u32);
        let now = coarse_now();
        let mut adopted = 0;
        for (key, value) in flows {
            let p = |i: usize| [key.ports[i], key.ports[i + 1]];
            let h = flow_table_hash(key);
            let base = flow_set_base(h, sets) as usize;
            let Some(way) = (0..FLOW_WAYS as usize).find(|w| slots.get(base + w).is_empty()) else {
                continue;
            };
            // UDP keeps its idle clock; TCP had none and counts as seen now.
            let seen = if key.proto == PROTO_UDP {
                value.last_seen_ns
            } else {
                now
            };
            slots.set(
                base + way,
                FlowSlot {
                    backend: value.backend,
                    check: flow_check(h),
                    last_seen_ns: seen,
                    key: *key,
                    hash: flow_hash(&key.src, &key.dst, p(0), p(2), key.proto),
                    // Established flows, kept for the default idle times.
                    state: lb_common::FLOW_PROMOTED
                        | if key.proto == PROTO_UDP {
                            lb_common::UDP_IDLE_DEFAULT_S
                        } else {
                            lb_common::TCP_IDLE_DEFAULT_S
                        },
                },
            );
            adopted += 1;
        }
        Ok(adopted)
    }
}

/// The clock the program stamps flows with (`bpf_ktime_get_coarse_ns`), read from user space.
pub fn coarse_now() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // Safety: a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// How a load lays out the flow table, and the flows of an older release's table to move in.
pub(super) struct Plan {
    pub slots: u32,
    pub sets: u32,
    /// The older table's pin and its flows (the balancer only, where one is pinned).
    pub old: Option<(PathBuf, Vec<(FlowKey, FlowValue)>)>,
}

/// The flow table of a load with maps pinned under `pin_dir` (if any): the pinned table's size
/// where one exists (the kernel reuses it, and the program must index what is there), else
/// `flows` in whole sets for the balancer, one set for the other programs. An older release's
/// table is read here, before the load replaces its program's maps.
pub(super) fn plan(pin_dir: Option<&Path>, balancer: bool, flows: u32) -> Result<Plan> {
    let maps = pin_dir.map(|d| d.join("maps"));
    let asked = flow_entries(flows.max(FLOW_WAYS));
    let pinned = maps
        .as_ref()
        .and_then(|m| pinned_slots(&m.join(map_names::FLOWS)));
    let slots = match pinned {
        Some(n) => {
            if balancer && n != asked {
                tracing::warn!(
                    pinned = n,
                    asked,
                    "the pinned flow table keeps its size (lb detach, then start, to resize it)"
                );
            }
            n
        }
        None if balancer => asked,
        None => FLOW_WAYS,
    };
    let old = match (maps, balancer) {
        (Some(m), true) => {
            let path = m.join(map_names::FLOWS_LRU);
            read_lru_flows(&path)?.map(|f| (path, f))
        }
        _ => None,
    };
    Ok(Plan {
        slots,
        sets: flow_sets(slots),
        old,
    })
}

impl Dataplane {
    /// Moves the flows an older release's table held (see [`plan`]) into the flow table, then
    /// removes that table's pin (its program keeps its own reference until replaced). Flows
    /// moved, of how many it held.
    pub(super) fn adopt_old_flows(
        &mut self,
        old: Option<(PathBuf, Vec<(FlowKey, FlowValue)>)>,
    ) -> Result<Option<(u64, usize)>> {
        let Some((path, flows)) = old else {
            return Ok(None);
        };
        let moved = self.adopt_flows(&flows)?;
        std::fs::remove_file(&path)
            .map_err(|e| DataplaneError::Limit(format!("removing {}: {e}", path.display())))?;
        Ok(Some((moved, flows.len())))
    }
}

/// Slots of the flow table pinned at `path`, if one is.
fn pinned_slots(path: &Path) -> Option<u32> {
    let data = MapData::from_pin(path).ok()?;
    Some(data.info().ok()?.max_entries())
}

/// The flows of an older release's table (an LRU hash map) pinned at `path`, if one is.
fn read_lru_flows(path: &Path) -> Result<Option<Vec<(FlowKey, FlowValue)>>> {
    if !path.exists() {
        return Ok(None);
    }
    let name = map_names::FLOWS_LRU;
    let data = MapData::from_pin(path).map_err(map_err(name))?;
    let map: HashMap<_, FlowKey, FlowValue> =
        HashMap::try_from(Map::LruHashMap(data)).map_err(map_err(name))?;
    Ok(Some(map.iter().filter_map(|e| e.ok()).collect()))
}

/// Counts the entries of the flow table pinned at `path` (it reads every slot), through a
/// handle of its own, so that any thread can do it.
/// The flow table counted: its entries, and per backend id the flows seen within a window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlowCount {
    pub entries: u64,
    /// Flows per backend id whose last packet is within the window.
    pub active: std::collections::HashMap<u32, u64>,
    /// Flows the flow cache (pinned beside the table) answers for in the current epoch.
    pub cached: u64,
}

/// Counts the pinned flow table at `path`: every slot read once. A flow is active when its
/// last packet (the program's stamp, CLOCK_MONOTONIC_COARSE, which lags it by up to
/// FLOW_SEEN_LAG_NS) is within `window` of now.
pub fn count_flows_by_backend(path: &Path, window: std::time::Duration) -> Result<FlowCount> {
    let name = map_names::FLOWS;
    let data = MapData::from_pin(path).map_err(map_err(name))?;
    let slots =
        FlowSlots::new(&data, false).map_err(|source| DataplaneError::Mmap { name, source })?;
    // The stamp lags a flow's last packet by up to FLOW_SEEN_LAG_NS.
    let since = coarse_now().saturating_sub(window.as_nanos() as u64 + lb_common::FLOW_SEEN_LAG_NS);
    let mut count = FlowCount::default();
    for i in 0..slots.len() {
        let slot = slots.get(i);
        if slot.key.family == 0 {
            continue;
        }
        count.entries += 1;
        if slot.last_seen_ns >= since {
            *count.active.entry(slot.backend).or_default() += 1;
        }
    }
    count.cached = super::flow_cache::count_cached(&path.with_file_name(map_names::FLOW_CACHE))?;
    Ok(count)
}

/// A flow the table holds, as `lb flows` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FlowEntry {
    /// The client's address and port.
    pub client: String,
    /// The backend's id (the agent names its address).
    pub backend_id: u32,
    /// How long since its last packet, in milliseconds (to within the program's stamp).
    pub idle_ms: u64,
}

/// The flows of the pinned table at `path` to `vip` (port 0: any port) over protocol `proto`,
/// only from `from` if given: the most recently seen first, at most `limit`.
pub fn flows_to(
    path: &Path,
    vip: std::net::SocketAddr,
    proto: u8,
    from: Option<std::net::SocketAddr>,
    limit: usize,
) -> Result<Vec<FlowEntry>> {
    let name = map_names::FLOWS;
    let data = MapData::from_pin(path).map_err(map_err(name))?;
    let slots =
        FlowSlots::new(&data, false).map_err(|source| DataplaneError::Mmap { name, source })?;
    let (dst, _) = super::addr_bytes(vip.ip());
    let now = coarse_now();
    let mut found = Vec::new();
    for i in 0..slots.len() {
        let s = slots.get(i);
        let k = &s.key;
        let dport = u16::from_be_bytes([k.ports[2], k.ports[3]]);
        let sport = u16::from_be_bytes([k.ports[0], k.ports[1]]);
        if k.family == 0 || k.proto != proto || k.dst != dst {
            continue;
        }
        if vip.port() != 0 && dport != vip.port() {
            continue;
        }
        let client = match k.family {
            lb_common::FAMILY_V4 => {
                std::net::IpAddr::from([k.src[0], k.src[1], k.src[2], k.src[3]])
            }
            _ => std::net::IpAddr::from(k.src),
        };
        let client = std::net::SocketAddr::new(client, sport);
        if from.is_some_and(|f| f != client) {
            continue;
        }
        found.push((s.last_seen_ns, client, s.backend));
    }
    found.sort_by_key(|f| std::cmp::Reverse(f.0));
    Ok(found
        .into_iter()
        .take(limit)
        .map(|(seen, client, backend_id)| FlowEntry {
            client: client.to_string(),
            backend_id,
            idle_ms: now.saturating_sub(seen) / 1_000_000,
        })
        .collect())
}

pub fn count_flows(path: &Path) -> Result<u64> {
    let name = map_names::FLOWS;
    let data = MapData::from_pin(path).map_err(map_err(name))?;
    let slots =
        FlowSlots::new(&data, false).map_err(|source| DataplaneError::Mmap { name, source })?;
    Ok(slots.occupied())
}
