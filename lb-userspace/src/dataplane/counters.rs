//! Reading the counters, and deriving the totals a packet sent to a backend no longer counts
//! itself (`lb_common::counter`): an outcome's, a VIP's and the flow hits'.
use std::os::fd::AsFd;

use aya::maps::{Array, Map, PerCpuArray, PerCpuValues};
use lb_common::{
    BACKEND_RETIRING, Backend, Counter, FLOW_HITS, FLOW_INSERTS, MAX_BACKENDS, MAX_VIPS,
    RETIRED_ENTRIES, RETIRED_HITS, RETIRED_REDIRECT, RETIRED_TX, Sent, Traffic, map_names,
};

use super::{Dataplane, DataplaneError, Result, error::map_err, grace::wait_grace, sys};

/// Totals of a counter over all CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Totals {
    pub packets: u64,
    pub bytes: u64,
}

impl From<Traffic> for Totals {
    fn from(t: Traffic) -> Self {
        Totals {
            packets: t.packets,
            bytes: t.bytes,
        }
    }
}

fn plus(a: Traffic, b: Traffic) -> Traffic {
    Traffic {
        packets: a.packets + b.packets,
        bytes: a.bytes + b.bytes,
    }
}

fn plus_sent(a: Sent, b: Sent) -> Sent {
    Sent {
        tx: plus(a.tx, b.tx),
        redirect: plus(a.redirect, b.redirect),
        hits: a.hits + b.hits,
    }
}

/// No VIP: a backend slot that is not in use.
const NO_VIP: u32 = u32::MAX;

/// Every counter of the balancer, read at one moment (each map in one call), and the totals
/// derived from them. An object without the sent counters (an older release's, which the
/// benchmarks' A/B loads) counted everything where it is read directly.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    /// What the program counted per outcome itself (all but packets sent), by [`Counter`].
    outcomes: Vec<Traffic>,
    /// Per VIP: what the program counted itself (packets not sent to a backend).
    vips: Vec<Traffic>,
    /// Per backend: what the program counted there outside `sent`.
    backends: Vec<Traffic>,
    /// Per backend: the packets sent to it.
    sent: Vec<Sent>,
    /// Per backend: the VIP it serves ([`NO_VIP`]: none).
    owners: Vec<u32>,
    /// Removed backends' sent counts ([`lb_common::RETIRED_TX`] and the rest).
    retired: Vec<Traffic>,
    /// The flow table's counters ([`FLOW_INSERTS`], [`FLOW_HITS`], ...).
    flows: Vec<u64>,
}

impl Counts {
    /// Every outcome's total: its own count, with every backend's sent packets of it and
    /// those of removed backends.
    pub fn outcomes(&self) -> Vec<(Counter, Totals)> {
        let all = self.sent_sum();
        Counter::ALL
            .iter()
            .map(|&c| {
                let own = self.outcomes.get(c as usize).copied().unwrap_or_default();
                let derived = match c {
                    Counter::Tx => plus(all.tx, self.retired_at(RETIRED_TX)),
                    Counter::Redirect => plus(all.redirect, self.retired_at(RETIRED_REDIRECT)),
                    _ => Traffic::default(),
                };
                (c, plus(own, derived).into())
            })
            .collect()
    }

    /// VIP `id`'s total: what it did not forward, its backends' sent packets and those of its
    /// removed backends.
    pub fn vip(&self, id: u32) -> Totals {
        let own = self.vips.get(id as usize).copied().unwrap_or_default();
        let sent = self
            .sent
            .iter()
            .zip(&self.owners)
            .filter(|(_, o)| **o == id)
            .fold(Traffic::default(), |t, (s, _)| plus(t, s.total()));
        plus(plus(own, sent), self.retired_at(id)).into()
    }

    /// Backend `id`'s total: the packets sent to it, and the ICMP answers for its flows.
    pub fn backend(&self, id: u32) -> Totals {
        let own = self.backends.get(id as usize).copied().unwrap_or_default();
        let sent = self
            .sent
            .get(id as usize)
            .map(Sent::total)
            .unwrap_or_default();
        plus(own, sent).into()
    }

    /// Flows the table added.
    pub fn flow_inserts(&self) -> u64 {
        self.flows.get(FLOW_INSERTS as usize).copied().unwrap_or(0)
    }

    /// Packets of established flows that kept their backend: those counted apart, every
    /// backend's and removed backends'.
    pub fn flow_hits(&self) -> u64 {
        self.flows.get(FLOW_HITS as usize).copied().unwrap_or(0)
            + self.sent_sum().hits
            + self.retired_at(RETIRED_HITS).packets
    }

    fn sent_sum(&self) -> Sent {
        self.sent.iter().copied().fold(Sent::default(), plus_sent)
    }

    fn retired_at(&self, i: u32) -> Traffic {
        self.retired.get(i as usize).copied().unwrap_or_default()
    }
}

/// The map `name` of `ebpf`'s array maps, per CPU or not, for [`sys::read_all`].
fn array_fd<'a>(
    ebpf: &'a aya::Ebpf,
    name: &'static str,
) -> Result<Option<std::os::fd::BorrowedFd<'a>>> {
    match ebpf.map(name) {
        None => Ok(None),
        Some(Map::PerCpuArray(d) | Map::Array(d)) => Ok(Some(d.fd().as_fd())),
        Some(_) => Err(DataplaneError::Limit(format!("map {name} is not an array"))),
    }
}

fn cpus() -> Result<usize> {
    aya::util::nr_cpus()
        .map_err(|(_, e)| DataplaneError::Limit(format!("counting possible CPUs: {e}")))
}

impl Dataplane {
    /// Every counter, read at once ([`Counts`]).
    pub fn counts(&self) -> Result<Counts> {
        let cpus = cpus()?;
        let traffic = |name, n| self.read_per_cpu::<Traffic>(name, n, cpus, plus);
        let owners = match array_fd(&self.ebpf, map_names::BACKENDS)? {
            Some(fd) => sys::read_all::<Backend>(fd, MAX_BACKENDS, 1)
                .map_err(|e| read_error(map_names::BACKENDS, e))?
                .iter()
                .map(|b| {
                    if b.family != 0 || b.state & BACKEND_RETIRING != 0 {
                        b.vip_id
                    } else {
                        NO_VIP
                    }
                })
                .collect(),
            None => Vec::new(),
        };
        let retired = match array_fd(&self.ebpf, map_names::RETIRED)? {
            Some(fd) => sys::read_all::<Traffic>(fd, RETIRED_ENTRIES, 1)
                .map_err(|e| read_error(map_names::RETIRED, e))?,
            None => Vec::new(),
        };
        Ok(Counts {
            outcomes: traffic(map_names::STATS, Counter::COUNT)?,
            vips: traffic(map_names::VIP_STATS, MAX_VIPS)?,
            backends: traffic(map_names::BACKEND_STATS, MAX_BACKENDS)?,
            sent: self.read_per_cpu(map_names::BACKEND_SENT, MAX_BACKENDS, cpus, plus_sent)?,
            owners,
            retired,
            flows: self.read_per_cpu(
                map_names::FLOW_STATS,
                lb_common::FLOW_STATS_COUNT,
                cpus,
                |a, b| a + b,
            )?,
        })
    }

    /// The `n` entries of per-CPU map `name`, each summed over the CPUs; none if the object
    /// has no such map.
    fn read_per_cpu<T: aya::Pod + Default>(
        &self,
        name: &'static str,
        n: u32,
        cpus: usize,
        add: fn(T, T) -> T,
    ) -> Result<Vec<T>> {
        let Some(fd) = array_fd(&self.ebpf, name)? else {
            return Ok(Vec::new());
        };
        let all = sys::read_all::<T>(fd, n, cpus).map_err(|e| read_error(name, e))?;
        Ok(all
            .chunks(cpus)
            .map(|c| c.iter().copied().fold(T::default(), add))
            .collect())
    }

    /// The outcome counters, summed over CPUs, with the packets sent to backends.
    pub fn outcomes(&self) -> Result<Vec<(Counter, Totals)>> {
        Ok(self.counts()?.outcomes())
    }

    /// Flows inserted and flow-table hits, without walking the table.
    pub fn flow_counters(&self) -> Result<(u64, u64)> {
        let c = self.counts()?;
        Ok((c.flow_inserts(), c.flow_hits()))
    }

    /// Counters of VIP `id`.
    pub fn vip_totals(&self, id: u32) -> Result<Totals> {
        Ok(self.counts()?.vip(id))
    }

    /// Counters of backend `id`.
    pub fn backend_totals(&self, id: u32) -> Result<Totals> {
        let own = self.sum(map_names::BACKEND_STATS, id)?;
        Ok(plus(own, self.sent_of(id)?.total()).into())
    }

    /// What backend `id` was sent, summed over CPUs (nothing, in an object without the map).
    fn sent_of(&self, id: u32) -> Result<Sent> {
        let name = map_names::BACKEND_SENT;
        let Some(map) = self.ebpf.map(name) else {
            return Ok(Sent::default());
        };
        let m: PerCpuArray<_, Sent> = PerCpuArray::try_from(map).map_err(map_err(name))?;
        let values = m.get(&id, 0).map_err(map_err(name))?;
        Ok(values.iter().copied().fold(Sent::default(), plus_sent))
    }

    /// Clears the entries of backends `ids`: the program sends them nothing from then on.
    /// What they were sent stays in their VIPs' totals: each entry keeps its VIP id, marked
    /// [`BACKEND_RETIRING`], until [`Dataplane::retire_backends`] moves the counts into the
    /// retired totals (pinned, so an agent stopped in between leaves the mark for the next).
    pub fn clear_backends(&mut self, ids: &[u32]) -> Result<()> {
        let keeps_counts = self.ebpf.map(map_names::BACKEND_SENT).is_some();
        let mut m: Array<_, Backend> = self.map_array(map_names::BACKENDS)?;
        for &id in ids {
            let old = m.get(&id, 0).map_err(map_err(map_names::BACKENDS))?;
            let cleared = if keeps_counts && old.family != 0 {
                Backend {
                    state: BACKEND_RETIRING,
                    vip_id: old.vip_id,
                    ..Backend::default()
                }
            } else {
                Backend::default()
            };
            m.set(id, cleared, 0)
                .map_err(map_err(map_names::BACKENDS))?;
        }
        Ok(())
    }

    /// Retires the backends [`Dataplane::clear_backends`] cleared: once no program run can
    /// still count a packet for them (an RCU grace period, waited for here), what they were
    /// sent moves into the retired totals of their VIPs, the outcomes and the flow hits, and
    /// their entries are emptied. The agent calls it once a second; a change waits for none.
    /// The number retired.
    pub fn retire_backends(&mut self) -> Result<usize> {
        let Some(fd) = array_fd(&self.ebpf, map_names::BACKENDS)? else {
            return Ok(0);
        };
        let retiring: Vec<(u32, u32)> = sys::read_all::<Backend>(fd, MAX_BACKENDS, 1)
            .map_err(|e| read_error(map_names::BACKENDS, e))?
            .iter()
            .enumerate()
            .filter(|(_, b)| b.family == 0 && b.state & BACKEND_RETIRING != 0)
            .map(|(id, b)| (id as u32, b.vip_id))
            .collect();
        if retiring.is_empty() {
            return Ok(0);
        }
        wait_grace()?;
        for &(id, vip) in &retiring {
            self.retire(id, Some(vip))?;
            let mut m: Array<_, Backend> = self.map_array(map_names::BACKENDS)?;
            m.set(id, Backend::default(), 0)
                .map_err(map_err(map_names::BACKENDS))?;
        }
        Ok(retiring.len())
    }

    /// Moves what backend `id` was sent into the retired totals (its VIP's too where `vip`
    /// names it), then zeroes it. In that order: an agent stopped between the two counts it
    /// twice rather than not at all.
    fn retire(&mut self, id: u32, vip: Option<u32>) -> Result<()> {
        if self.ebpf.map(map_names::RETIRED).is_none() {
            return Ok(());
        }
        let s = self.sent_of(id)?;
        if s == Sent::default() {
            return Ok(());
        }
        let mut m: Array<_, Traffic> = self.map_array(map_names::RETIRED)?;
        let mut add = |i: u32, t: Traffic| -> Result<()> {
            let old = m.get(&i, 0).map_err(map_err(map_names::RETIRED))?;
            m.set(i, plus(old, t), 0)
                .map_err(map_err(map_names::RETIRED))
        };
        if let Some(v) = vip.filter(|v| *v < MAX_VIPS) {
            add(v, s.total())?;
        }
        add(RETIRED_TX, s.tx)?;
        add(RETIRED_REDIRECT, s.redirect)?;
        add(
            RETIRED_HITS,
            Traffic {
                packets: s.hits,
                bytes: 0,
            },
        )?;
        self.zero::<Sent>(map_names::BACKEND_SENT, id)
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

    /// Zeroes VIP `id`'s counters, its removed backends' included: a freshly given id starts
    /// from nothing.
    pub fn reset_vip_counters(&mut self, id: u32) -> Result<()> {
        if self.ebpf.map(map_names::RETIRED).is_some() {
            let mut m: Array<_, Traffic> = self.map_array(map_names::RETIRED)?;
            m.set(id, Traffic::default(), 0)
                .map_err(map_err(map_names::RETIRED))?;
        }
        self.zero::<Traffic>(map_names::VIP_STATS, id)
    }

    /// Zeroes backend `id`'s counters: a freshly given id starts from nothing. Whatever it
    /// was still sent (its slot cleared by an agent that stopped before it retired them) stays
    /// in the outcomes' totals.
    pub fn reset_backend_counters(&mut self, id: u32) -> Result<()> {
        if self.ebpf.map(map_names::BACKEND_SENT).is_some() {
            // An id given again before its backend was retired: retired now, with its VIP.
            let m: Array<_, Backend> = self.map_array(map_names::BACKENDS)?;
            let old = m.get(&id, 0).map_err(map_err(map_names::BACKENDS))?;
            if old.family == 0 && old.state & BACKEND_RETIRING != 0 {
                wait_grace()?;
                self.retire(id, Some(old.vip_id))?;
            } else {
                self.retire(id, None)?;
            }
        }
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

    fn sum(&self, name: &'static str, index: u32) -> Result<Traffic> {
        let map = self
            .ebpf
            .map(name)
            .ok_or(DataplaneError::MissingMap(name))?;
        let m: PerCpuArray<_, Traffic> = PerCpuArray::try_from(map).map_err(map_err(name))?;
        let values = m.get(&index, 0).map_err(map_err(name))?;
        Ok(values.iter().copied().fold(Traffic::default(), plus))
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
                    .push(v.iter().copied().fold(Traffic::default(), plus));
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

fn read_error(name: &'static str, e: std::io::Error) -> DataplaneError {
    DataplaneError::Limit(format!("reading map {name}: {e}"))
}
