//! The agent's account of itself for `lb status`, `lb vip list` and `lb backend list`.
use crate::{
    config::{HealthKind, Vip},
    status::{BackendStatus, Status, VipStatus},
};

use super::sync::Agent;

impl Agent {
    pub fn vip_status(&self, v: &Vip) -> VipStatus {
        let ids = self.ids(v).map(|(_, b)| b).unwrap_or_default();
        let activity = self
            .flow_activity
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let now = std::time::Instant::now();
        let backends: Vec<BackendStatus> =
            v.backends
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    let h = self.checks.get(&v.name, b.address);
                    let up = self.is_up(v, b.address);
                    let held = self.checks.held_for(&v.name, b.address);
                    let ejected = self.outliers.ejected_for(&v.name, b.address, now);
                    let checked_up = h.is_none_or(|h| h.up);
                    let refused = self.l2dsr_refusal(v, b.address);
                    BackendStatus {
                        address: b.address.to_string(),
                        weight: b.weight,
                        drain: b.drain,
                        health: match (v.health.kind, up, held, ejected) {
                            (_, _, _, Some(_)) => "ejected",
                            (HealthKind::None, _, _, _) => "unchecked",
                            (_, _, Some(_), _) => "damped",
                            (_, true, _, _) => "up",
                            (_, false, _, _) => "down",
                        }
                        .into(),
                        down_reason: refused.as_ref().map(|_| "refused".to_string()).or(
                            down_reason(
                                v.health.kind,
                                checked_up,
                                held.is_some(),
                                ejected.is_some(),
                                h.is_some_and(|h| h.local_fault.is_some()),
                            )
                            .map(str::to_string),
                        ),
                        ejected_s: ejected.map(|d| d.as_secs()),
                        ejections: self.outliers.ejections(&v.name, b.address),
                        held_s: held.map(|d| d.as_secs()),
                        last_error: refused.or_else(|| h.and_then(|h| h.last_error.clone())),
                        local_fault: h.and_then(|h| h.local_fault.clone()),
                        next_hop: self
                            .hops
                            .get(b.address)
                            .map(|h| crate::neigh::Mac(h.dmac).to_string()),
                        in_ring: up && !b.drain && b.weight > 0,
                        last_probe_ms: self
                            .checks
                            .times
                            .last_seconds(&v.name, b.address)
                            .map(|s| (s * 1e6).round() / 1e3),
                        active_flows: activity.as_ref().map(|a| {
                            ids.get(i)
                                .copied()
                                .flatten()
                                .and_then(|id| a.get(&id).copied())
                                .unwrap_or(0)
                        }),
                    }
                })
                .collect();
        let live = backends.iter().filter(|b| b.in_ring).count();
        VipStatus {
            name: v.name.clone(),
            address: v.address.to_string(),
            protocol: v.protocol.to_string(),
            forwarding: v.forwarding.name().to_string(),
            ring_size: v.ring_size,
            ring_fingerprint: self.ids(v).and_then(|(id, _)| self.rings.fingerprint(id)),
            live,
            all_down: live == 0,
            backends,
        }
    }

    pub fn status(&self) -> Status {
        Status {
            instance: self.effective.agent.instance.clone(),
            config: self.config_path.display().to_string(),
            interfaces: self.effective.agent.interfaces.clone(),
            links: self
                .interfaces
                .iter()
                .map(|(name, i)| crate::status::LinkStatus {
                    name: name.clone(),
                    ifindex: i.ifindex,
                    attached: i.attached,
                    error: i.error.clone(),
                })
                .collect(),
            reloads: self.reloads.applied,
            reload_error: self.reloads.error.clone(),
            skipped_changes: self.skipped.clone(),
            vips: self
                .effective
                .vips
                .iter()
                .map(|v| self.vip_status(v))
                .collect(),
            discovery: self.sources.discovery.clone(),
            dns: self.sources.dns_status(),
            bgp: self.bgp.as_ref().map(|b| crate::status::BgpStatus {
                announced: b.wanted.iter().map(|a| a.to_string()).collect(),
                error: b.last_error.clone(),
            }),
        }
    }
}

/// Why a backend takes no new flows for its health, if it takes none: its probes fail
/// (`active`; `local fault` when they cannot run from here now), it is ejected (`passive`), or
/// held for flapping (`damped`).
pub fn down_reason(
    kind: HealthKind,
    checked_up: bool,
    held: bool,
    ejected: bool,
    local_fault: bool,
) -> Option<&'static str> {
    let checked = kind != HealthKind::None;
    if checked && !checked_up {
        Some(if local_fault { "local fault" } else { "active" })
    } else if ejected {
        Some("passive")
    } else if held {
        Some("damped")
    } else {
        None
    }
}
