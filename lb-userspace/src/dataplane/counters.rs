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
        self.sum_u64(map_names::BACKEND_FLOWS, id)
    }

    /// SYNs clients repeated to backend `id` (passive health's signal).
    pub fn backend_syn_retries(&self, id: u32) -> Result<u64> {
        self.sum_u64(map_names::BACKEND_RETRIES, id)
    }

    fn sum_u64(&self, name: &'static str, id: u32) -> Result<u64> {
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
        self.zero::<u64>(map_names::BACKEND_FLOWS, id)?;
        self.zero::<u64>(map_names::BACKEND_RETRIES, id)
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

/// A pinned per-CPU counter map smaller than this release's (an older release's, before
/// counters were added): what it held, to be written into the new map once loaded.
pub(super) struct Grown {
    name: &'static str,
    traffic: Vec<Traffic>,
    plain: Vec<u64>,
}

/// The counter maps that have grown since a release: their names, with whether they hold
/// [`Traffic`] (else plain counts), and the entries this release has.
const GROWING: [(&str, bool, u32); 2] = [
    (map_names::STATS, true, Counter::COUNT),
    (map_names::FLOW_STATS, false, lb_common::FLOW_STATS_COUNT),
];

/// Reads every pinned counter map under `maps` that is smaller than this release's, sums its
/// counters over the CPUs, and removes its pin, so that the load makes it anew at its full
/// size ([`Dataplane::restore_grown`] then writes the sums back): no counter is lost, and none
/// of the new ones is left without a slot.
pub(super) fn take_grown(maps: &std::path::Path) -> Result<Vec<Grown>> {
    use aya::maps::{Map, MapData};
    let mut out = Vec::new();
    for (name, traffic, want) in GROWING {
        let path = maps.join(name);
        let Ok(data) = MapData::from_pin(&path) else {
            continue;
        };
        let have = data.info().map_err(map_err(name))?.max_entries();
        if have >= want {
            continue;
        }
        let map = Map::PerCpuArray(data);
        let mut g = Grown {
            name,
            traffic: Vec::new(),
            plain: Vec::new(),
        };
        if traffic {
            let m: PerCpuArray<_, Traffic> = PerCpuArray::try_from(map).map_err(map_err(name))?;
            for i in 0..have {
                let v = m.get(&i, 0).map_err(map_err(name))?;
                g.traffic
                    .push(v.iter().fold(Traffic::default(), |a, t| Traffic {
                        packets: a.packets + t.packets,
                        bytes: a.bytes + t.bytes,
                    }));
            }
        } else {
            let m: PerCpuArray<_, u64> = PerCpuArray::try_from(map).map_err(map_err(name))?;
            for i in 0..have {
                g.plain
                    .push(m.get(&i, 0).map_err(map_err(name))?.iter().sum());
            }
        }
        std::fs::remove_file(&path)
            .map_err(|e| DataplaneError::Limit(format!("removing {}: {e}", path.display())))?;
        tracing::info!(
            map = name,
            entries = have,
            grown_to = want,
            "counter map grown"
        );
        out.push(g);
    }
    Ok(out)
}

/// Removes the pin of the configuration map when its value is not of this release's size
/// (an older release's, before a field was added): the agent writes the whole configuration
/// before it attaches the program, so nothing it held is lost, and the running program keeps
/// the old map until it is replaced.
pub(super) fn drop_resized_config(maps: &std::path::Path) -> Result<()> {
    use aya::maps::MapData;
    let name = map_names::CONFIG;
    let path = maps.join(name);
    let Ok(data) = MapData::from_pin(&path) else {
        return Ok(());
    };
    let have = data.info().map_err(map_err(name))?.value_size();
    let want = size_of::<lb_common::Config>() as u32;
    if have != want {
        std::fs::remove_file(&path)
            .map_err(|e| DataplaneError::Limit(format!("removing {}: {e}", path.display())))?;
        tracing::info!(
            map = name,
            bytes = have,
            now = want,
            "configuration map resized"
        );
    }
    Ok(())
}

impl Dataplane {
    /// Writes the sums [`take_grown`] kept into the new maps (on the first CPU's values).
    pub(super) fn restore_grown(&mut self, grown: Vec<Grown>) -> Result<()> {
        for g in grown {
            if g.traffic.is_empty() {
                self.put_first_cpu(g.name, &g.plain)?;
            } else {
                self.put_first_cpu(g.name, &g.traffic)?;
            }
        }
        Ok(())
    }

    fn put_first_cpu<T: aya::Pod + Default>(&mut self, name: &'static str, v: &[T]) -> Result<()> {
        let cpus = aya::util::nr_cpus()
            .map_err(|(_, e)| DataplaneError::Limit(format!("counting possible CPUs: {e}")))?;
        let map = self.map_mut(name)?;
        let mut m: PerCpuArray<_, T> = PerCpuArray::try_from(map).map_err(map_err(name))?;
        for (i, value) in v.iter().enumerate() {
            let mut all = vec![T::default(); cpus];
            all[0] = *value;
            let values = PerCpuValues::try_from(all)
                .map_err(|e| DataplaneError::Limit(format!("map {name}: {e}")))?;
            m.set(i as u32, values, 0).map_err(map_err(name))?;
        }
        Ok(())
    }

    /// New flows the flow table could not record (their sets full of established flows).
    pub fn flows_unrecorded(&self) -> Result<u64> {
        let name = map_names::FLOW_STATS;
        let map = self.map(name)?;
        let st: PerCpuArray<_, u64> = PerCpuArray::try_from(map).map_err(map_err(name))?;
        Ok(st
            .get(&lb_common::FLOW_UNRECORDED, 0)
            .map_err(map_err(name))?
            .iter()
            .sum())
    }
}
