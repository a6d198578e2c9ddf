//! Reading the counters.
use aya::maps::{PerCpuArray, PerCpuValues};
use lb_common::{Counter, FLOW_HITS, FLOW_INSERTS, Traffic, map_names};

use super::{Dataplane, DataplaneError, Result, error::map_err};

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
