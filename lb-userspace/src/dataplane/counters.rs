//! Reading the counters and the flow table's numbers.
use aya::maps::{HashMap, IterableMap, PerCpuArray, PerCpuValues};
use lb_common::{Counter, FLOW_HITS, FLOW_INSERTS, FlowKey, FlowValue, Traffic, map_names};

use super::{Dataplane, DataplaneError, Result, error::map_err};

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

/// Totals of a counter over all CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Totals {
    pub packets: u64,
    pub bytes: u64,
}

impl Dataplane {
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
        let entries = flows.keys().filter(|k| k.is_ok()).count() as u64;
        Ok(self.flow_table_unwalked()?.with_entries(entries))
    }

    /// The flow table's numbers without walking it: `entries` and `evicted` are left at 0
    /// (see [`count_flows`], which the API runs off the agent's control loop).
    pub fn flow_table_unwalked(&self) -> Result<FlowTable> {
        let name = map_names::FLOWS;
        let map = self
            .ebpf
            .map(name)
            .ok_or(DataplaneError::MissingMap(name))?;
        let flows: HashMap<_, FlowKey, FlowValue> =
            HashMap::try_from(map).map_err(map_err(name))?;
        let capacity = flows.map().info().map_err(map_err(name))?.max_entries();
        let (inserted, hits) = self.flow_counters()?;
        Ok(FlowTable {
            capacity,
            entries: 0,
            inserted,
            evicted: 0,
            hits,
        })
    }

    /// Flows inserted and flow-table hits, without walking the table.
    pub fn flow_counters(&self) -> Result<(u64, u64)> {
        let sname = map_names::FLOW_STATS;
        let map = self
            .ebpf
            .map(sname)
            .ok_or(DataplaneError::MissingMap(sname))?;
        let st: PerCpuArray<_, u64> = PerCpuArray::try_from(map).map_err(map_err(sname))?;
        let sum =
            |i: u32| -> Result<u64> { Ok(st.get(&i, 0).map_err(map_err(sname))?.iter().sum()) };
        Ok((sum(FLOW_INSERTS)?, sum(FLOW_HITS)?))
    }

    /// Counters of VIP `id`.
    pub fn vip_totals(&self, id: u32) -> Result<Totals> {
        self.sum(map_names::VIP_STATS, id)
    }

    /// Counters of backend `id`.
    pub fn backend_totals(&self, id: u32) -> Result<Totals> {
        self.sum(map_names::BACKEND_STATS, id)
    }

    /// New flows recorded for backend `id`.
    pub fn backend_new_flows(&self, id: u32) -> Result<u64> {
        let name = map_names::BACKEND_FLOWS;
        let map = self
            .ebpf
            .map(name)
            .ok_or(DataplaneError::MissingMap(name))?;
        let m: PerCpuArray<_, u64> = PerCpuArray::try_from(map).map_err(map_err(name))?;
        Ok(m.get(&id, 0).map_err(map_err(name))?.iter().sum())
    }

    /// Zeroes VIP `id`'s counters: a freshly given id starts from nothing.
    pub fn reset_vip_counters(&mut self, id: u32) -> Result<()> {
        self.zero::<Traffic>(map_names::VIP_STATS, id)
    }

    /// Zeroes backend `id`'s counters.
    pub fn reset_backend_counters(&mut self, id: u32) -> Result<()> {
        self.zero::<Traffic>(map_names::BACKEND_STATS, id)?;
        self.zero::<u64>(map_names::BACKEND_FLOWS, id)
    }

    fn zero<T: aya::Pod + Default>(&mut self, name: &'static str, index: u32) -> Result<()> {
        let map = self
            .ebpf
            .map_mut(name)
            .ok_or(DataplaneError::MissingMap(name))?;
        let mut m: PerCpuArray<_, T> = PerCpuArray::try_from(map).map_err(map_err(name))?;
        let cpus = aya::util::nr_cpus()
            .map_err(|(_, e)| DataplaneError::Limit(format!("counting possible CPUs: {e}")))?;
        let values = PerCpuValues::try_from(vec![T::default(); cpus])
            .map_err(|e| DataplaneError::Limit(format!("map {name}: {e}")))?;
        m.set(index, values, 0).map_err(map_err(name))
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
}

/// Counts the entries of the flow table pinned at `path` (a walk: its cost grows with the
/// contents), through a handle of its own, so that any thread can do it.
pub fn count_flows(path: &std::path::Path) -> Result<u64> {
    let name = map_names::FLOWS;
    let data = aya::maps::MapData::from_pin(path).map_err(map_err(name))?;
    let flows: HashMap<_, FlowKey, FlowValue> =
        HashMap::try_from(aya::maps::Map::LruHashMap(data)).map_err(map_err(name))?;
    Ok(flows.keys().filter(|k| k.is_ok()).count() as u64)
}
