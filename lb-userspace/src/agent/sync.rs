//! The agent's state and the one function that writes it to the data path: [`Agent::sync`].
//! Desired state flows one way: file + runtime changes → effective config → health filter →
//! backend entries and rings.
use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    path::PathBuf,
};

use lb_common::{BACKEND_DRAIN, BACKEND_HELD, BACKEND_UP, MAX_BACKENDS, MAX_VIPS, VipKey};
use tokio::sync::mpsc::UnboundedSender;

use crate::{
    config::{Config, Forwarding, HealthKind, OnDown, Unbalanced, Vip},
    dataplane::{self, Dataplane, ServedVip},
    health::Report,
    state::Change,
};

mod admission;
mod hops;
mod rings;

use super::ids::Given;

use rings::{RingInputs, Rings};

pub struct Agent {
    pub config_path: PathBuf,
    /// The file, discovery, DNS and runtime changes, from which `effective` is made.
    pub sources: super::sources::Sources,
    pub effective: Config,
    pub skipped: Vec<String>,
    pub dp: Dataplane,
    /// Config reloads: applied, refused, the last refusal and the last success.
    pub reloads: super::reload::Reloads,
    /// The flow table's entries as the background count last found them (`u64::MAX`: not
    /// counted yet).
    pub flow_entries: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// The flows the flow cache answered for, as the background count last found them
    /// (`u64::MAX`: not counted yet).
    pub flow_cached: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Active flows per backend id, as the background count last found them (`None`: not
    /// counted yet).
    pub flow_activity:
        std::sync::Arc<std::sync::Mutex<Option<std::collections::HashMap<u32, u64>>>>,
    /// The ids VIPs and backends have in the maps.
    ids: super::ids::Ids,
    /// Each checked backend's health and checker.
    pub(super) checks: super::checkers::Checks,
    /// Passive health: the backends ejected for their clients' repeated SYNs.
    pub(super) outliers: super::outlier::Outliers,
    /// Each VIP's live ring, what it was built from, and how many were built and written.
    pub(super) rings: Rings,
    /// The VIPs' ACLs and limits as written.
    admission: admission::Admission,
    /// The backends' next hops, and the backends the netlink watcher follows.
    pub hops: hops::NextHops,
    /// The interfaces of `agent.interfaces`: present, and whether xdp_lb is attached there.
    pub interfaces: super::links::Interfaces,
    /// Until the first sync is done, new backends start up (a starting agent must not drop
    /// traffic while it waits for `rise` checks); after it, backends added at runtime start
    /// down and come up after `rise` passes.
    pub(super) started: bool,
    /// Rates of the last second, for `lb stats`.
    pub(super) rates: crate::stats::Rates,
    /// While a capture runs: the program with the capture hook, swapped in for it.
    pub(super) capture: Option<Dataplane>,
    /// `[bgp]`: what BIRD announces for this balancer.
    pub bgp: Option<crate::bgp::Announcer>,
    /// Whether the program is attached (and VIPs may be announced).
    pub attached: bool,
    /// What the API's listeners have seen (shared with their tasks).
    pub listeners: Listeners,
}

/// The control socket's and the metrics port's counters.
#[derive(Default)]
pub struct Listeners {
    pub control: std::sync::Arc<crate::api::server::ListenerStats>,
    pub metrics: std::sync::Arc<crate::api::server::ListenerStats>,
}

fn key_of(v: &Vip) -> VipKey {
    dataplane::vip_key(v.address.ip(), v.address.port(), v.protocol.number())
}

impl Agent {
    pub fn new(
        config_path: PathBuf,
        file: Config,
        (store, changes): (crate::state::Store, Vec<Change>),
        dp: Dataplane,
        reports: UnboundedSender<Report>,
    ) -> Self {
        let bgp = file
            .bgp
            .clone()
            .map(|b| crate::bgp::Announcer::new(b, &file.agent.instance));
        let mut sources = super::sources::Sources::new(file, store, changes);
        if sources.compaction_due() {
            sources.compact();
        }
        let (effective, skipped) = sources.effective();
        Agent {
            config_path,
            sources,
            effective,
            skipped,
            dp,
            reloads: Default::default(),
            flow_entries: std::sync::Arc::new(u64::MAX.into()),
            flow_cached: std::sync::Arc::new(u64::MAX.into()),
            flow_activity: Default::default(),
            ids: Default::default(),
            checks: super::checkers::Checks::new(reports),
            outliers: Default::default(),
            rings: Default::default(),
            admission: Default::default(),
            hops: Default::default(),
            interfaces: Default::default(),
            started: false,
            rates: Default::default(),
            capture: None,
            bgp,
            attached: false,
            listeners: Default::default(),
        }
    }

    /// Takes over what an earlier run left in pinned maps: VIP and backend ids (the flow
    /// table refers to them) and each backend's health as the data path last had it, so a
    /// restart changes nothing that was working.
    pub fn adopt(&mut self) -> anyhow::Result<usize> {
        let vips = self.dp.vips()?;
        let names: HashMap<VipKey, String> = self
            .effective
            .vips
            .iter()
            .map(|v| (key_of(v), v.name.clone()))
            .collect();
        let mut by_id: HashMap<u32, String> = HashMap::new();
        for (key, v) in &vips {
            self.ids.adopt_vip(*key, v.id);
            if let Some(n) = names.get(key) {
                by_id.insert(v.id, n.clone());
            }
        }
        let backends = self.dp.backends()?;
        for (id, b) in &backends {
            let addr = match b.family {
                lb_common::FAMILY_V4 => IpAddr::from([b.addr[0], b.addr[1], b.addr[2], b.addr[3]]),
                _ => IpAddr::from(b.addr),
            };
            self.ids.adopt_backend(b.vip_id, addr, *id);
            if let Some(name) = by_id.get(&b.vip_id) {
                let up = b.state & BACKEND_UP != 0 && b.state & BACKEND_HELD == 0;
                self.checks.adopt(name, addr, up);
            }
        }
        Ok(vips.len())
    }

    /// Whether the ring may give `addr` of `vip` new flows: unchecked, or up and not held for
    /// flapping (its established flows follow the VIP's `on_down`).
    pub(super) fn is_up(&self, vip: &Vip, addr: IpAddr) -> bool {
        (vip.health.kind == HealthKind::None || self.checks.in_service(&vip.name, addr))
            && !self.outliers.ejected(&vip.name, addr)
            && self.l2dsr_refusal(vip, addr).is_none()
    }

    /// Why `addr` cannot be a backend of `vip` in its forwarding mode now, if it cannot.
    pub(super) fn l2dsr_refusal(&self, vip: &Vip, addr: IpAddr) -> Option<String> {
        (vip.forwarding == Forwarding::L2dsr)
            .then(|| {
                self.hops
                    .l2dsr_refusal(addr, &self.effective.agent.interfaces)
            })
            .flatten()
    }

    /// Writes the effective config to the data path: every VIP, or only `only`.
    pub fn sync(&mut self, only: Option<&str>) -> anyhow::Result<()> {
        self.dp.set_sources(
            self.effective.agent.source_v4,
            self.effective.agent.source_v6,
        )?;
        self.dp.set_source_prefixes(
            self.effective.agent.source_v4_prefix,
            self.effective.agent.source_v6_prefix,
        )?;
        self.dp.set_path_mtu(self.effective.agent.path_mtu)?;
        self.dp.set_gue_port(self.effective.agent.gue_port)?;
        let echo: Vec<IpAddr> = if self.effective.agent.answer_echo {
            self.effective.vips.iter().map(|v| v.address.ip()).collect()
        } else {
            Vec::new()
        };
        self.dp.set_echo_addresses(&echo)?;
        self.dp
            .set_drop_unbalanced(self.effective.agent.unbalanced == Unbalanced::Drop)?;
        if only.is_none() {
            self.remove_stale_vips()?;
        }
        let vips = self.effective.vips.clone();
        for vip in vips.iter().filter(|v| only.is_none_or(|n| n == v.name)) {
            self.sync_vip(vip)?;
        }
        // VIPs added above reach the index now, with one wait at most for all of them.
        self.dp.settle_vip_index()?;
        self.sync_checkers();
        self.hops.follow(self.backend_addresses());
        self.started = true;
        self.announce();
        Ok(())
    }

    fn remove_stale_vips(&mut self) -> anyhow::Result<()> {
        let wanted: HashSet<VipKey> = self.effective.vips.iter().map(key_of).collect();
        for (key, id) in self.ids.vips_not_in(&wanted) {
            self.dp.remove_vip(&key)?;
            let freed = self.ids.free_vip(&key);
            self.dp.clear_backends(&freed)?;
            self.rings.remove(id);
            self.admission.remove(&mut self.dp, id)?;
            tracing::info!(vip_id = id, "VIP removed");
        }
        Ok(())
    }

    fn sync_vip(&mut self, vip: &Vip) -> anyhow::Result<()> {
        let key = key_of(vip);
        let id = match self.ids.give_vip(key, MAX_VIPS) {
            Some(Given::Kept(id)) => id,
            Some(Given::New(id)) => {
                // A reused id must not carry a former VIP's traffic.
                self.dp.reset_vip_counters(id)?;
                id
            }
            None => anyhow::bail!("out of VIP ids"),
        };
        // The ACL and limits before the ring: a VIP goes live with them in place.
        let flags = self.admission.apply(&mut self.dp, id, &key, vip)?;
        let udp_idle_s = vip.udp_idle.as_secs() as u32;
        let served = ServedVip {
            id,
            key,
            udp_idle_s,
            forwarding: vip.forwarding.number() as u8,
        };
        // Backends: stable ids per (VIP, address), so flows recorded for one stay valid.
        let mut ids = Vec::new();
        for b in &vip.backends {
            let bid = match self.ids.give_backend(id, b.address, MAX_BACKENDS) {
                Some(Given::Kept(bid)) => bid,
                Some(Given::New(bid)) => {
                    self.dp.reset_backend_counters(bid)?;
                    bid
                }
                None => anyhow::bail!("out of backend ids"),
            };
            if vip.health.kind != HealthKind::None {
                self.checks.ensure(&vip.name, b.address, !self.started);
            }
            let hop = self.hops.get(b.address).unwrap_or_default();
            if let Some(why) = self.l2dsr_refusal(vip, b.address) {
                tracing::error!(vip = %vip.name, backend = %b.address, reason = %why, "backend refused: it takes no traffic");
            }
            // A backend out of service keeps its established flows where the VIP says so.
            let up = self.is_up(vip, b.address);
            let keep = vip.on_down == OnDown::Keep;
            let state = match (up, keep) {
                (true, _) => BACKEND_UP,
                (false, true) => BACKEND_UP | BACKEND_HELD,
                (false, false) => 0,
            } | if b.drain { BACKEND_DRAIN } else { 0 };
            self.dp.set_backend(bid, b.address, served, state, hop)?;
            ids.push(bid);
        }
        let present: HashSet<IpAddr> = vip.backends.iter().map(|b| b.address).collect();
        let freed = self.ids.free_backends(id, |a| !present.contains(&a));
        self.dp.clear_backends(&freed)?;
        // The ring: up, not draining, weight > 0 (maglev skips weight 0).
        let eligible: Vec<(IpAddr, u32)> = vip
            .backends
            .iter()
            .map(|b| {
                (
                    b.address,
                    if b.drain || !self.is_up(vip, b.address) {
                        0
                    } else {
                        b.weight
                    },
                )
            })
            .collect();
        let inputs = RingInputs {
            eligible,
            size: vip.ring_size,
            ids,
            fragments: vip.fragments,
        };
        let Some(pending) = self.rings.build(id, inputs) else {
            return Ok(());
        };
        self.dp
            .set_vip(id, key, &pending.ring, vip.fragments, flags)?;
        let (in_ring, backends) = pending.live();
        self.rings.commit(id, pending);
        tracing::info!(vip = %vip.name, address = %vip.address, live = in_ring, backends, "ring rebuilt");
        if in_ring == 0 {
            tracing::error!(vip = %vip.name, "ALL BACKENDS DOWN: packets to this VIP are dropped");
        }
        Ok(())
    }

    /// Ids of a VIP and its backends, for the counters.
    pub fn ids(&self, vip: &Vip) -> Option<(u32, Vec<Option<u32>>)> {
        let id = self.ids.vip(&key_of(vip))?;
        Some((
            id,
            vip.backends
                .iter()
                .map(|b| self.ids.backend(id, b.address))
                .collect(),
        ))
    }
}
