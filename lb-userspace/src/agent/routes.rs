//! The API's routes, answered on the agent's control loop (so every change is applied in
//! order, one at a time).
use std::{path::Path, time::Instant};

use lb_common::{CAPTURE_ANY, CAPTURE_MAX, CaptureCtl};

use crate::{
    api::{Answer, Command, Reply, error},
    capture,
    state::{self, Change},
    stats::{self, BackendStats, Outcome, RateKey, Stats, VipStats},
};

use super::sync::Agent;

fn json<T: serde::Serialize>(v: &T) -> Reply {
    Ok(Answer::Json(serde_json::to_string(v).unwrap_or_default()))
}

impl Agent {
    /// Answers one command of the API (every change applied in order, one at a time).
    pub fn handle(&mut self, command: Command) -> Reply {
        match command {
            Command::Metrics => self
                .metrics()
                .map(Answer::Metrics)
                .or_else(|e| error(500, format!("{e:#}"))),
            Command::Stats => self
                .stats()
                .map(|s| Answer::Stats(Box::new(s)))
                .or_else(|e| error(500, format!("{e:#}"))),
            Command::Status => json(&self.status()),
            Command::Config => Ok(Answer::Text(crate::state::render(&self.effective))),
            Command::Vips => json(&self.status().vips),
            Command::Backends { vip } => {
                match self.status().vips.into_iter().find(|v| v.name == vip) {
                    Some(v) => json(&v.backends),
                    None => error(404, format!("no VIP named {vip:?}")),
                }
            }
            Command::Change(ch) => self.change(ch),
            Command::FlowScope { vip } => self.flow_scope(&vip),
            Command::CaptureStart(r) => self.start_capture(&r),
            Command::CaptureStop => self.stop_capture(),
        }
    }

    /// A VIP's address, protocol and backends by id, for reading its flows from the table.
    fn flow_scope(&self, name: &str) -> Reply {
        let Some(v) = self.effective.vips.iter().find(|v| v.name == name) else {
            return error(404, format!("no VIP named {name:?}"));
        };
        let Some((_, ids)) = self.ids(v) else {
            return error(409, format!("VIP {name:?} is not in the data path"));
        };
        let backends = v
            .backends
            .iter()
            .zip(ids)
            .filter_map(|(b, id)| Some((id?, b.address.to_string())))
            .collect();
        Ok(Answer::FlowScope {
            address: v.address,
            proto: v.protocol.number(),
            backends,
        })
    }

    /// Switches the program's capture hook on with `r`'s filter.
    fn start_capture(&mut self, r: &capture::Request) -> Reply {
        let vip = match &r.vip {
            None => CAPTURE_ANY,
            Some(name) => match self.effective.vips.iter().find(|v| &v.name == name) {
                Some(v) => match self.ids(v) {
                    Some((id, _)) => id,
                    None => return error(409, format!("VIP {name:?} is not in the data path")),
                },
                None => return error(404, format!("no VIP named {name:?}")),
            },
        };
        let snaplen = match r.snaplen {
            0 => CAPTURE_MAX,
            n if n <= CAPTURE_MAX => n,
            n => return error(400, format!("snaplen {n}: at most {CAPTURE_MAX}")),
        };
        let lost = match self.dp.capture_lost() {
            Ok(n) => n,
            Err(e) => return error(500, e),
        };
        let ctl = CaptureCtl {
            on: 1,
            vip,
            drops: r.drops as u32,
            snaplen,
        };
        // The running program has no capture hook: the same program with the hook takes its
        // place on every interface for the capture's duration (one atomic swap each).
        let started = self
            .dp
            .set_capture(ctl)
            .map_err(anyhow::Error::from)
            .and_then(|()| {
                let mut hooked = self.dp.with_capture_hook()?;
                let pin_dir = self.dp.pin_dir().map(Path::to_path_buf).unwrap_or_default();
                let interfaces: Vec<String> = self.dp.attached().map(str::to_string).collect();
                hooked.take_over(&interfaces, &pin_dir)?;
                Ok(hooked)
            });
        match started {
            Ok(hooked) => self.capture = Some(hooked),
            Err(e) => {
                let _ = self.stop_capture();
                return error(500, format!("starting the capture: {e:#}"));
            }
        }
        tracing::info!(
            vip = r.vip.as_deref().unwrap_or("any"),
            drops = r.drops,
            count = r.count,
            snaplen,
            "capture started"
        );
        Ok(Answer::CaptureStarted { lost })
    }

    /// Puts the program without the hook back, and switches the copying off (idempotent).
    pub fn stop_capture(&mut self) -> Reply {
        if let Some(hooked) = self.capture.take() {
            let pin_dir = self.dp.pin_dir().map(Path::to_path_buf).unwrap_or_default();
            let interfaces: Vec<String> = self.dp.attached().map(str::to_string).collect();
            if let Err(e) = self.dp.take_over(&interfaces, &pin_dir) {
                // Keep the hooked program alive rather than leave an interface without one.
                self.capture = Some(hooked);
                return error(500, format!("putting the program back: {e}"));
            }
        }
        if let Err(e) = self.dp.set_capture(CaptureCtl::default()) {
            return error(500, e);
        }
        tracing::info!("capture stopped");
        Ok(Answer::CaptureStarted {
            lost: self.dp.capture_lost().unwrap_or(0),
        })
    }

    /// A runtime change: validated like the file, kept in the state directory, then applied.
    fn change(&mut self, ch: Change) -> Reply {
        let next = match state::try_apply(&self.effective, &ch) {
            Ok(n) => n,
            Err(e) => return error(400, e),
        };
        if let Err(e) = self.sources.record(ch.clone()) {
            return error(500, format!("keeping the change: {e:#}"));
        }
        self.effective = next;
        let only = match &ch {
            Change::VipDel { .. } => None,
            Change::VipAdd(s) => Some(s.name.clone()),
            Change::BackendAdd { vip, .. }
            | Change::BackendDel { vip, .. }
            | Change::Drain { vip, .. }
            | Change::Undrain { vip, .. }
            | Change::Weight { vip, .. } => Some(vip.clone()),
        };
        log_change(&ch);
        if let Err(e) = self.sync(only.as_deref()) {
            return error(500, format!("applying the change: {e:#}"));
        }
        json(&self.status())
    }

    pub fn stats(&self) -> anyhow::Result<Stats> {
        let (outcomes, vips) = self.traffic()?;
        // The flow table is counted by the API task afterwards, off this loop (see
        // `api::endpoints`): counting reads every slot of the table (64 MB at the default size).
        let flows = match self.dp.pin_dir() {
            Some(_) => self.dp.flow_table_unwalked()?,
            None => self.dp.flow_table()?,
        };
        Ok(Stats {
            outcomes,
            vips,
            flows,
        })
    }

    /// The metrics as OpenMetrics text. The flow table's entries are the background count's
    /// (a count reads every slot of the table).
    pub fn metrics(&self) -> anyhow::Result<String> {
        let (outcomes, vips) = self.traffic()?;
        let flows = self.dp.flow_table_unwalked()?;
        let entries = self.flow_entries.load(std::sync::atomic::Ordering::Relaxed);
        let cached = self.flow_cached.load(std::sync::atomic::Ordering::Relaxed);
        Ok(crate::metrics::render(&crate::metrics::Snapshot {
            outcomes: &outcomes,
            vips: &vips,
            health_times: &self.checks.times,
            flows_inserted: flows.inserted,
            flow_hits: flows.hits,
            flows_unrecorded: flows.unrecorded,
            flow_entries: (entries != u64::MAX).then_some(entries),
            flow_cached: (cached != u64::MAX).then_some(cached),
            flow_capacity: flows.capacity.into(),
            ring_builds: self.rings.builds,
            ring_writes: self.rings.writes,
            reloads: self.reloads.applied,
            reload_failures: self.reloads.refused,
            last_reload: self.reloads.last_ok,
            listeners: [
                ("control", self.listeners.control.counts()),
                ("metrics", self.listeners.metrics.counts()),
            ],
            interfaces: self
                .interfaces
                .iter()
                .map(|(n, i)| (n.clone(), i.attached))
                .collect(),
        }))
    }

    /// The counters per outcome and per VIP and backend, with the rates of the last second
    /// and each backend's health.
    fn traffic(&self) -> anyhow::Result<(Vec<Outcome>, Vec<VipStats>)> {
        let counts = self.dp.counts()?;
        let outcomes = counts
            .outcomes()
            .into_iter()
            .map(|(c, t)| Outcome {
                name: c.name().into(),
                packets: t.packets,
                bytes: t.bytes,
                pps: self.rates.get(RateKey::Outcome(c as u32)).pps,
            })
            .collect();
        let mut vips = Vec::new();
        for vip in &self.effective.vips {
            let Some((id, bids)) = self.ids(vip) else {
                continue;
            };
            let t = counts.vip(id);
            let status = self.vip_status(vip);
            let mut backends = Vec::new();
            for ((b, bid), st) in vip.backends.iter().zip(bids).zip(status.backends) {
                let (totals, new_flows, syn_retries, rate) = match bid {
                    Some(bid) => (
                        counts.backend(bid),
                        self.dp.backend_new_flows(bid)?,
                        self.dp.backend_syn_retries(bid)?,
                        self.rates.get(RateKey::Backend(bid)),
                    ),
                    None => Default::default(),
                };
                let ejections = self
                    .outliers
                    .total
                    .get(&(vip.name.clone(), b.address))
                    .copied()
                    .unwrap_or(0);
                backends.push(BackendStats {
                    address: b.address.to_string(),
                    weight: b.weight,
                    packets: totals.packets,
                    bytes: totals.bytes,
                    pps: rate.pps,
                    bps: rate.bps,
                    new_flows,
                    share: 0.0,
                    health: st.health,
                    drain: st.drain,
                    in_ring: st.in_ring,
                    active_flows: st.active_flows,
                    syn_retries,
                    down_reason: st.down_reason,
                    ejections,
                });
            }
            stats::fill_shares(&mut backends);
            let rate = self.rates.get(RateKey::Vip(id));
            vips.push(VipStats {
                name: vip.name.clone(),
                address: vip.address.to_string(),
                protocol: vip.protocol.to_string(),
                forwarding: vip.forwarding.name().into(),
                packets: t.packets,
                bytes: t.bytes,
                pps: rate.pps,
                bps: rate.bps,
                new_flows: backends.iter().map(|b| b.new_flows).sum(),
                backends,
            });
        }
        Ok((outcomes, vips))
    }

    /// Samples every counter for the rates `lb stats` shows (once a second).
    pub fn sample_rates(&mut self) -> anyhow::Result<()> {
        let now = Instant::now();
        let counts = self.dp.counts()?;
        for (c, t) in counts.outcomes() {
            self.rates.observe(RateKey::Outcome(c as u32), t, now);
        }
        for vip in &self.effective.vips {
            let Some((id, bids)) = self.ids(vip) else {
                continue;
            };
            self.rates.observe(RateKey::Vip(id), counts.vip(id), now);
            for bid in bids.into_iter().flatten() {
                self.rates
                    .observe(RateKey::Backend(bid), counts.backend(bid), now);
            }
        }
        self.rates.forget_older(now);
        Ok(())
    }
}

/// One structured event per runtime change: what changed, with its VIP and backend as fields.
fn log_change(ch: &Change) {
    match ch {
        Change::VipAdd(s) => {
            tracing::info!(vip = %s.name, address = %s.address, source = "api", "VIP added")
        }
        Change::VipDel { name } => tracing::info!(vip = %name, source = "api", "VIP deleted"),
        Change::BackendAdd {
            vip,
            address,
            weight,
        } => {
            tracing::info!(vip = %vip, backend = %address, weight, source = "api", "backend added")
        }
        Change::BackendDel { vip, address } => {
            tracing::info!(vip = %vip, backend = %address, source = "api", "backend removed")
        }
        Change::Drain { vip, address } => {
            tracing::info!(vip = %vip, backend = %address, source = "api", "backend drained")
        }
        Change::Undrain { vip, address } => {
            tracing::info!(vip = %vip, backend = %address, source = "api", "backend undrained")
        }
        Change::Weight {
            vip,
            address,
            weight,
        } => {
            tracing::info!(vip = %vip, backend = %address, weight, source = "api", "backend weight set")
        }
    }
}
