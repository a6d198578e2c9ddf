//! The health checks: one checker task per checked backend, started, restarted and stopped to
//! match the effective config, and each backend's health as its checker last reported it. A
//! report that moves a backend rebuilds its VIP's ring.
use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use tokio::{sync::mpsc::UnboundedSender, task::JoinHandle};

use crate::{
    config::{Health, HealthKind, Via},
    health::{self, Report, Target, Tunnel},
    metrics::HealthTimes,
};

use super::sync::Agent;

mod damping;
use damping::{Damping, PENALTY, REUSE};

/// A backend of a VIP (by name).
type Key = (String, IpAddr);

/// Health of one backend as the checks last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendHealth {
    pub up: bool,
    pub last_error: Option<String>,
    /// Why its probes cannot run from this host now, if they cannot.
    pub local_fault: Option<String>,
}

impl BackendHealth {
    fn new(up: bool) -> Self {
        BackendHealth {
            up,
            last_error: None,
            local_fault: None,
        }
    }
}

struct Checker {
    health: Health,
    target: Target,
    task: JoinHandle<()>,
}

/// How long the health of a backend no longer checked is remembered: a VIP removed and added
/// again within this (a config file written in two goes, a hand slip) gets it back, rather
/// than starting every backend down.
const REMEMBER: Duration = Duration::from_secs(120);

/// Every checked backend's health and checker.
pub struct Checks {
    states: HashMap<Key, BackendHealth>,
    /// States of backends that stopped being checked, and when.
    recent: HashMap<Key, (BackendHealth, Instant)>,
    /// Flap penalties, of backends that changed state.
    damping: HashMap<Key, Damping>,
    running: HashMap<Key, Checker>,
    reports: UnboundedSender<Report>,
    /// Probe durations and local faults, observed by the checkers, read by metric scrapes.
    pub times: HealthTimes,
}

impl Checks {
    pub fn new(reports: UnboundedSender<Report>) -> Self {
        Checks {
            states: HashMap::new(),
            recent: HashMap::new(),
            damping: HashMap::new(),
            running: HashMap::new(),
            reports,
            times: HealthTimes::default(),
        }
    }

    pub fn get(&self, vip: &str, addr: IpAddr) -> Option<&BackendHealth> {
        self.states.get(&(vip.to_string(), addr))
    }

    /// Whether the backend may have new flows: up (or not checked), and not held for flapping.
    pub fn in_service(&self, vip: &str, addr: IpAddr) -> bool {
        let k = (vip.to_string(), addr);
        self.states.get(&k).is_none_or(|h| h.up) && !self.damping.get(&k).is_some_and(|d| d.held)
    }

    /// How long more the backend is held out for flapping, if it is.
    pub fn held_for(&self, vip: &str, addr: IpAddr) -> Option<Duration> {
        let d = self.damping.get(&(vip.to_string(), addr))?;
        d.held.then(|| d.left(Instant::now()))
    }

    /// Ends the holds whose penalty decayed; the VIPs whose rings change for it.
    pub fn release_held(&mut self, now: Instant) -> Vec<String> {
        let mut vips = Vec::new();
        for (k, d) in self.damping.iter_mut() {
            if d.held && d.decayed(now) < REUSE {
                d.held = false;
                tracing::info!(vip = %k.0, backend = %k.1, "backend no longer held for flapping");
                if self.states.get(k).is_some_and(|h| h.up) {
                    vips.push(k.0.clone());
                }
            }
        }
        // A penalty that decayed to nothing is forgotten.
        self.damping
            .retain(|_, d| d.held || d.decayed(now) >= PENALTY / 16.0);
        vips.sort();
        vips.dedup();
        vips
    }

    /// Takes a backend's state as the data path had it (a restart changes nothing).
    pub fn adopt(&mut self, vip: &str, addr: IpAddr, up: bool) {
        self.states
            .insert((vip.to_string(), addr), BackendHealth::new(up));
    }

    /// A checked backend starts `up` unless it has a state already, or had one recently.
    pub fn ensure(&mut self, vip: &str, addr: IpAddr, up: bool) {
        let k = (vip.to_string(), addr);
        if !self.states.contains_key(&k) {
            let h = self.initial(&k, up);
            self.states.insert(k, h);
        }
    }

    /// A new backend's state: what it had when it stopped being checked, if that was recent.
    fn initial(&mut self, k: &Key, up: bool) -> BackendHealth {
        match self.recent.remove(k) {
            Some((h, since)) if since.elapsed() < REMEMBER => {
                tracing::info!(vip = %k.0, backend = %k.1, up = h.up, "health state kept from before the backend's VIP or check was removed");
                h
            }
            _ => BackendHealth::new(up),
        }
    }

    /// Starts, restarts and stops checkers to match `wanted`; a new checker starts from the
    /// backend's state, or from `new_up` for a backend that has none.
    fn sync(&mut self, wanted: HashMap<Key, (Health, Target)>, new_up: bool) {
        let times = &self.times;
        self.running.retain(|k, c| {
            let keep = wanted
                .get(k)
                .is_some_and(|(h, t)| *h == c.health && *t == c.target);
            if !keep {
                c.task.abort();
                times.forget(&k.0, k.1);
            }
            keep
        });
        let now = Instant::now();
        self.recent
            .retain(|_, (_, since)| now.duration_since(*since) < REMEMBER);
        let gone: Vec<Key> = self
            .states
            .keys()
            .filter(|k| !wanted.contains_key(*k))
            .cloned()
            .collect();
        for k in gone {
            if let Some(h) = self.states.remove(&k) {
                self.recent.insert(k, (h, now));
            }
        }
        for (k, (health, target)) in wanted {
            if self.running.contains_key(&k) {
                continue;
            }
            if !self.states.contains_key(&k) {
                let h = self.initial(&k, new_up);
                self.states.insert(k.clone(), h);
            }
            let up = self.states[&k].up;
            let task = health::spawn(
                k.0.clone(),
                target.clone(),
                health.clone(),
                up,
                self.reports.clone(),
                self.times.clone(),
            );
            let c = Checker {
                health,
                target,
                task,
            };
            self.running.insert(k, c);
        }
    }

    /// Records a report; whether it changed the backend's service (it moved up or down, or
    /// was put on hold for flapping). A report from a checker that has since been replaced is
    /// dropped (`None`).
    pub fn record(&mut self, r: Report) -> Option<bool> {
        let k = (r.vip.clone(), r.target.ip());
        if self
            .running
            .get(&k)
            .is_none_or(|c| c.target.backend != r.target)
        {
            return None;
        }
        let before = self.states.get(&k).cloned();
        let moved = before.as_ref().is_none_or(|b| b.up != r.up);
        log_report(&r, before.as_ref(), moved);
        let was_in_service = self.in_service(&k.0, k.1);
        let last_error = match (r.up, r.error) {
            (false, None) => before.and_then(|b| b.last_error),
            (_, e) => e,
        };
        let now = BackendHealth {
            up: r.up,
            last_error,
            local_fault: r.local_fault,
        };
        self.states.insert(k.clone(), now);
        let damping = self.running.get(&k).is_some_and(|c| c.health.damping);
        if moved && damping {
            let at = Instant::now();
            let d = self.damping.entry(k.clone()).or_insert(Damping {
                penalty: 0.0,
                at,
                held: false,
            });
            if d.change(at) {
                tracing::warn!(vip = %k.0, backend = %k.1, hold = ?d.left(at), "backend flapping: held out of the ring");
            }
        }
        Some(self.in_service(&k.0, k.1) != was_in_service)
    }

    /// Stops every checker (shutdown).
    pub fn stop(&mut self) {
        for c in self.running.values() {
            c.task.abort();
        }
        self.running.clear();
    }
}

fn log_report(r: &Report, before: Option<&BackendHealth>, moved: bool) {
    match (&r.local_fault, before.and_then(|b| b.local_fault.as_ref())) {
        (Some(f), None) => tracing::error!(vip = %r.vip, backend = %r.target, error = %f,
            "health checks cannot run from this host (a local fault): the backend keeps its state"),
        (None, Some(_)) => {
            tracing::info!(vip = %r.vip, backend = %r.target, "health checks run again")
        }
        _ => {}
    }
    if moved && r.up {
        tracing::info!(vip = %r.vip, backend = %r.target, "backend up");
    } else if moved {
        tracing::warn!(vip = %r.vip, backend = %r.target, error = r.error.as_deref().unwrap_or(""), "backend down");
    }
}

impl Agent {
    /// Starts, restarts and stops health checkers to match the effective config.
    pub(super) fn sync_checkers(&mut self) {
        let mut wanted = HashMap::new();
        for v in &self.effective.vips {
            if v.health.kind == HealthKind::None {
                continue;
            }
            let port = v.health.port.unwrap_or(v.address.port());
            let ids = self.ids(v).map(|(_, ids)| ids).unwrap_or_default();
            let source = match v.address {
                SocketAddr::V4(_) => self.effective.agent.source_v4.map(IpAddr::from),
                SocketAddr::V6(_) => self.effective.agent.source_v6.map(IpAddr::from),
            };
            for (i, b) in v.backends.iter().enumerate() {
                let backend = SocketAddr::new(b.address, port);
                let tunnel = (v.health.via == Via::Tunnel).then(|| Tunnel {
                    vip: SocketAddr::new(v.address.ip(), port),
                    mark: ids
                        .get(i)
                        .copied()
                        .flatten()
                        .map(|id| lb_common::PROBE_MARK | id),
                    source,
                });
                wanted.insert(
                    (v.name.clone(), b.address),
                    (v.health.clone(), Target { backend, tunnel }),
                );
            }
        }
        self.checks.sync(wanted, !self.started);
    }

    /// A health report: record it, and rebuild that VIP's ring if it moved the backend.
    pub fn on_report(&mut self, r: Report) -> anyhow::Result<()> {
        let vip = r.vip.clone();
        match self.checks.record(r) {
            Some(true) => self.sync(Some(&vip)),
            _ => Ok(()),
        }
    }

    /// Ends the holds of backends that stopped flapping, rebuilding their VIPs' rings.
    pub fn release_held(&mut self) -> anyhow::Result<()> {
        for vip in self.checks.release_held(Instant::now()) {
            self.sync(Some(&vip))?;
        }
        Ok(())
    }

    /// Stops every health checker (shutdown).
    pub fn stop_checkers(&mut self) {
        self.checks.stop();
    }
}

#[cfg(test)]
mod tests;
