//! The health checkers: one task per checked backend, started, restarted and stopped to match
//! the effective config; their reports rebuild the affected VIP's ring.
use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
};

use tokio::task::JoinHandle;

use crate::{
    config::{Health, HealthKind},
    health::{self, Report},
};

use super::sync::{Agent, BackendHealth};

pub(super) struct Checker {
    pub(super) health: Health,
    pub(super) target: SocketAddr,
    pub(super) task: JoinHandle<()>,
}

impl Agent {
    /// Starts, restarts and stops health checkers to match the effective config.
    pub(super) fn sync_checkers(&mut self) {
        let mut wanted: HashMap<(String, IpAddr), (Health, SocketAddr)> = HashMap::new();
        for v in &self.effective.vips {
            if v.health.kind == HealthKind::None {
                continue;
            }
            let port = v.health.port.unwrap_or(v.address.port());
            for b in &v.backends {
                wanted.insert(
                    (v.name.clone(), b.address),
                    (v.health.clone(), SocketAddr::new(b.address, port)),
                );
            }
        }
        self.checkers.retain(|k, c| {
            let keep = wanted
                .get(k)
                .is_some_and(|(h, t)| *h == c.health && *t == c.target);
            if !keep {
                c.task.abort();
                self.health_times.forget(&k.0, k.1);
            }
            keep
        });
        self.health.retain(|k, _| wanted.contains_key(k));
        for (k, (h, target)) in wanted {
            if self.checkers.contains_key(&k) {
                continue;
            }
            let up = self.health.get(&k).map_or(!self.started, |s| s.up);
            self.health.entry(k.clone()).or_insert(BackendHealth {
                up,
                last_error: None,
                local_fault: None,
            });
            let task = health::spawn(
                k.0.clone(),
                target,
                h.clone(),
                up,
                self.reports.clone(),
                self.health_times.clone(),
            );
            self.checkers.insert(
                k,
                Checker {
                    health: h,
                    target,
                    task,
                },
            );
        }
    }

    /// A health report: record it, and rebuild that VIP's ring.
    pub fn on_report(&mut self, r: Report) -> anyhow::Result<()> {
        let k = (r.vip.clone(), r.target.ip());
        if self.checkers.get(&k).is_none_or(|c| c.target != r.target) {
            return Ok(()); // from a checker that has since been replaced
        }
        let before = self.health.get(&k).cloned();
        let moved = before.as_ref().is_none_or(|b| b.up != r.up);
        let had_fault = before.as_ref().and_then(|b| b.local_fault.as_ref());
        match (&r.local_fault, had_fault) {
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
        let last_error = match (r.up, r.error) {
            (false, None) => before.and_then(|b| b.last_error),
            (_, e) => e,
        };
        self.health.insert(
            k,
            BackendHealth {
                up: r.up,
                last_error,
                local_fault: r.local_fault,
            },
        );
        if moved {
            self.sync(Some(&r.vip))
        } else {
            Ok(())
        }
    }

    /// Stops every health checker (shutdown).
    pub fn stop_checkers(&mut self) {
        for c in self.checkers.values() {
            c.task.abort();
        }
        self.checkers.clear();
    }
}
