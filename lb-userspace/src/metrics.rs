//! Prometheus text exposition of the agent's numbers, served on `agent.metrics` (GET
//! /metrics): the data path's counters per VIP, backend and outcome, backend health, the flow
//! table's counters, ring rebuilds, config reloads and build information. Built on each scrape
//! from the same counters `lb stats` reads.
use std::{net::IpAddr, time::Duration};

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

use crate::stats::{BackendStats, Outcome, VipStats};

mod format;
pub use format::{Format, OPENMETRICS, TEXT, to_text};

/// A listener's connection counters at the time of a scrape.
#[derive(Debug, Clone, Copy, Default)]
pub struct ListenerCounts {
    pub accepted: u64,
    /// Idle connections closed to make room for a new one.
    pub evicted: u64,
    /// New connections closed at once because every connection was busy.
    pub refused: u64,
    pub accept_errors: u64,
    pub open: u64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabels {
    vip: String,
    backend: String,
    /// `ok` or `failed`.
    result: String,
}

type Histograms = Family<CheckLabels, Histogram, fn() -> Histogram>;

/// How long health checks take, per VIP, backend and result, and how many could not run for a
/// local reason: shared by the checker tasks (which observe) and the scrapes (which read).
/// Buckets from 100 µs to ~3.3 s.
#[derive(Clone)]
pub struct HealthTimes {
    times: Histograms,
    local_faults: Family<BackendLabels, Counter>,
    /// The last probe's duration, whatever its result.
    last: Family<BackendLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
}

impl Default for HealthTimes {
    fn default() -> Self {
        HealthTimes {
            times: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0001, 2.0, 16))
            }),
            local_faults: Default::default(),
            last: Default::default(),
        }
    }
}

impl HealthTimes {
    pub fn observe(&self, vip: &str, backend: IpAddr, ok: bool, took: Duration) {
        self.times
            .get_or_create(&check_labels(vip, backend, ok))
            .observe(took.as_secs_f64());
        self.last
            .get_or_create(&backend_labels(vip, backend))
            .set(took.as_secs_f64());
    }

    /// How long the last probe of a backend took (none yet: `None`).
    pub fn last_seconds(&self, vip: &str, backend: IpAddr) -> Option<f64> {
        self.last
            .get(&backend_labels(vip, backend))
            .map(|g| g.get())
    }

    /// A probe that could not run for a reason of this host.
    pub fn local_fault(&self, vip: &str, backend: IpAddr) {
        self.local_faults
            .get_or_create(&backend_labels(vip, backend))
            .inc();
    }

    /// Probes of a backend that could not run for a reason of this host.
    pub fn local_faults(&self, vip: &str, backend: IpAddr) -> u64 {
        self.local_faults
            .get_or_create(&backend_labels(vip, backend))
            .get()
    }

    /// Drops a backend's series (its checker stopped).
    pub fn forget(&self, vip: &str, backend: IpAddr) {
        for ok in [true, false] {
            self.times.remove(&check_labels(vip, backend, ok));
        }
        self.local_faults.remove(&backend_labels(vip, backend));
        self.last.remove(&backend_labels(vip, backend));
    }
}

fn backend_labels(vip: &str, backend: IpAddr) -> BackendLabels {
    BackendLabels {
        vip: vip.into(),
        backend: backend.to_string(),
    }
}

fn check_labels(vip: &str, backend: IpAddr, ok: bool) -> CheckLabels {
    CheckLabels {
        vip: vip.into(),
        backend: backend.to_string(),
        result: if ok { "ok" } else { "failed" }.into(),
    }
}

/// What a scrape reports.
pub struct Snapshot<'a> {
    pub outcomes: &'a [Outcome],
    pub vips: &'a [VipStats],
    pub health_times: &'a HealthTimes,
    pub flows_inserted: u64,
    pub flow_hits: u64,
    pub flows_unrecorded: u64,
    /// The flow table's entries as last counted (a background count, not one per scrape).
    pub flow_entries: Option<u64>,
    /// The flows the flow cache answered for in its current epoch, as last counted.
    pub flow_cached: Option<u64>,
    pub flow_capacity: u64,
    pub ring_builds: u64,
    pub ring_writes: u64,
    pub reloads: u64,
    pub reload_failures: u64,
    /// When the configuration was last loaded successfully (at start or by a reload).
    pub last_reload: std::time::SystemTime,
    pub listeners: [(&'a str, ListenerCounts); 2],
    /// Each configured interface and whether the balancer is attached to it.
    pub interfaces: Vec<(String, bool)>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VipLabels {
    vip: String,
    address: String,
    protocol: String,
    /// The forwarding mode: per-mode totals are sums by it (the data path counts per VIP).
    forwarding: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    vip: String,
    backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DownLabels {
    vip: String,
    backend: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectionLabels {
    listener: String,
    /// accepted, evicted (idle, closed for a new one) or refused (all busy).
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

fn counters<
    L: EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug + Send + Sync + 'static,
>(
    r: &mut Registry,
    name: &str,
    help: &str,
    values: impl IntoIterator<Item = (L, u64)>,
) {
    let f = Family::<L, Counter>::default();
    for (l, v) in values {
        f.get_or_create(&l).inc_by(v);
    }
    r.register(name, help, f);
}

/// The OpenMetrics text exposition, as prometheus-client writes it.
pub fn render(s: &Snapshot) -> String {
    let mut r = Registry::default();
    build_info(&mut r);
    traffic_families(&mut r, s);
    backend_gauges(&mut r, s);
    health_families(&mut r, s);
    outcome_families(&mut r, s);
    table_and_ring_counters(&mut r, s);
    agent_gauges(&mut r, s);
    listeners(&mut r, s);
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = encode(&mut out, &r);
    out
}

/// A gauge of 1 rather than an OpenMetrics info family, as Prometheus's own
/// `prometheus_build_info`: the 0.0.4 grammar (and promtool's linter) has no info type.
fn build_info(r: &mut Registry) {
    let build = Family::<BuildLabels, Gauge>::default();
    build
        .get_or_create(&BuildLabels {
            version: env!("CARGO_PKG_VERSION").into(),
        })
        .set(1);
    r.register("lb_build_info", "lb's build (always 1)", build);
}

fn vip_labels(v: &VipStats) -> VipLabels {
    VipLabels {
        vip: v.name.clone(),
        address: v.address.clone(),
        protocol: v.protocol.clone(),
        forwarding: v.forwarding.clone(),
    }
}

/// Every backend of every VIP, with its labels.
fn backends<'a>(s: &'a Snapshot) -> impl Iterator<Item = (BackendLabels, &'a BackendStats)> + 'a {
    s.vips.iter().flat_map(|v| {
        v.backends.iter().map(move |b| {
            (
                BackendLabels {
                    vip: v.name.clone(),
                    backend: b.address.clone(),
                },
                b,
            )
        })
    })
}

/// Packets, bytes and new flows, per VIP and per backend.
fn traffic_families(r: &mut Registry, s: &Snapshot) {
    let vips = |f: fn(&VipStats) -> u64| s.vips.iter().map(move |v| (vip_labels(v), f(v)));
    let bes = |f: fn(&BackendStats) -> u64| backends(s).map(move |(l, b)| (l, f(b)));
    let help = "Packets to the VIP (forwarded, or dropped for want of a backend)";
    counters(r, "lb_vip_packets", help, vips(|v| v.packets));
    counters(r, "lb_vip_bytes", "Bytes to the VIP", vips(|v| v.bytes));
    let help = "Packets forwarded to the backend";
    counters(r, "lb_backend_packets", help, bes(|b| b.packets));
    let help = "Bytes forwarded to the backend";
    counters(r, "lb_backend_bytes", help, bes(|b| b.bytes));
    let help = "Flows the VIP's ring gave a backend";
    counters(r, "lb_vip_new_flows", help, vips(|v| v.new_flows));
    let help = "Flows the ring gave the backend";
    counters(r, "lb_backend_new_flows", help, bes(|b| b.new_flows));
    let help =
        "SYNs the backend's clients repeated while their flows were new (passive health's signal)";
    counters(r, "lb_backend_syn_retries", help, bes(|b| b.syn_retries));
    let help = "Times passive health ejected the backend";
    counters(r, "lb_backend_ejections", help, bes(|b| b.ejections));
}

/// A gauge per backend, for the backends `value` gives one for.
fn backend_gauge(
    r: &mut Registry,
    s: &Snapshot,
    name: &str,
    help: &str,
    value: impl Fn(&BackendStats) -> Option<i64>,
) {
    let family = Family::<BackendLabels, Gauge>::default();
    for (l, b) in backends(s) {
        if let Some(v) = value(b) {
            family.get_or_create(&l).set(v);
        }
    }
    r.register(name, help, family);
}

/// Each backend's health, active flows and flap hold.
fn backend_gauges(r: &mut Registry, s: &Snapshot) {
    backend_gauge(
        r,
        s,
        "lb_backend_up",
        "1 while the backend passes its health checks (or is not checked), 0 while down or damped",
        |b| Some(i64::from(b.health == "up" || b.health == "unchecked")),
    );
    backend_gauge(
        r,
        s,
        "lb_backend_active_flows",
        "Flows of the backend seen within agent.flow_active (a drained backend is done at 0), counted every few seconds",
        |b| b.active_flows.map(|n| n as i64),
    );
    backend_gauge(
        r,
        s,
        "lb_backend_damped",
        "1 while the backend is held out of the ring for flapping",
        |b| Some(i64::from(b.health == "damped")),
    );
    backend_gauge(
        r,
        s,
        "lb_backend_ejected",
        "1 while passive health keeps the backend out of the ring",
        |b| Some(i64::from(b.health == "ejected")),
    );
    let down = Family::<DownLabels, Gauge>::default();
    for v in s.vips {
        for b in &v.backends {
            if let Some(reason) = &b.down_reason {
                let l = DownLabels {
                    vip: v.name.clone(),
                    backend: b.address.clone(),
                    reason: reason.clone(),
                };
                down.get_or_create(&l).set(1);
            }
        }
    }
    r.register(
        "lb_backend_down",
        "1 for a backend that takes no new flows for its health, labelled with why: active (its probes fail), passive (ejected), damped (flapping), local fault (its probes cannot run from here)",
        down,
    );
}

/// Health-check durations and local faults, as the checkers observed them.
fn health_families(r: &mut Registry, s: &Snapshot) {
    r.register(
        "lb_health_check_duration_seconds",
        "How long health checks took, by result",
        s.health_times.times.clone(),
    );
    r.register(
        "lb_health_check_last_seconds",
        "How long the last health check of the backend took, whatever its result",
        s.health_times.last.clone(),
    );
    r.register(
        "lb_health_check_local_faults",
        "Health checks that could not run for a reason of this host (file descriptors, buffers, no route from here): the backend's state is kept",
        s.health_times.local_faults.clone(),
    );
}

/// Packets and bytes by what the program did with them, and drops by reason.
fn outcome_families(r: &mut Registry, s: &Snapshot) {
    let outcome = |o: &Outcome| OutcomeLabels {
        outcome: o.name.clone(),
    };
    let help = "Packets by what the program did with them";
    counters(
        r,
        "lb_outcome_packets",
        help,
        s.outcomes.iter().map(|o| (outcome(o), o.packets)),
    );
    let help = "Bytes by what the program did with them";
    counters(
        r,
        "lb_outcome_bytes",
        help,
        s.outcomes.iter().map(|o| (outcome(o), o.bytes)),
    );
    let drops = s.outcomes.iter().filter_map(|o| {
        let reason = o.name.strip_prefix("drop_")?.into();
        Some((ReasonLabels { reason }, o.packets))
    });
    counters(r, "lb_dropped_packets", "Packets dropped, by reason", drops);
}

/// The flow table's and the rings' counters, and config reloads.
fn table_and_ring_counters(r: &mut Registry, s: &Snapshot) {
    let mut one = |name: &str, help: &str, v: u64| {
        let c = Counter::<u64>::default();
        c.inc_by(v);
        r.register(name, help, c);
    };
    one(
        "lb_flows_inserted",
        "5-tuples added to the flow table",
        s.flows_inserted,
    );
    one(
        "lb_flow_hits",
        "Packets of established flows that kept their backend",
        s.flow_hits,
    );
    one(
        "lb_flows_unrecorded",
        "New flows the flow table could not record: every way of their set held an established flow",
        s.flows_unrecorded,
    );
    one(
        "lb_ring_builds",
        "Maglev rings built: a VIP's backends, weights, health or ring size changed",
        s.ring_builds,
    );
    one(
        "lb_ring_writes",
        "Maglev rings written to the data path (a ring built the same as the live one is not written)",
        s.ring_writes,
    );
    let result = |result: &str| ResultLabels {
        result: result.into(),
    };
    counters(
        r,
        "lb_config_reloads",
        "Config reloads, applied or refused",
        [
            (result("applied"), s.reloads),
            (result("refused"), s.reload_failures),
        ],
    );
}

fn gauge(r: &mut Registry, name: &str, help: &str, v: i64) {
    let g = Gauge::<i64>::default();
    g.set(v);
    r.register(name, help, g);
}

/// What operators look for at a glance: live backends per VIP, the flow table's fill, when the
/// configuration was last loaded.
fn agent_gauges(r: &mut Registry, s: &Snapshot) {
    let live = Family::<VipNameLabels, Gauge>::default();
    let configured = Family::<VipNameLabels, Gauge>::default();
    for v in s.vips {
        let l = VipNameLabels {
            vip: v.name.clone(),
        };
        live.get_or_create(&l)
            .set(v.backends.iter().filter(|b| b.in_ring).count() as i64);
        configured.get_or_create(&l).set(v.backends.len() as i64);
    }
    r.register(
        "lb_vip_backends_live",
        "Backends in the VIP's ring (up and not drained); 0 means the VIP drops new flows",
        live,
    );
    r.register(
        "lb_vip_backends",
        "Backends configured for the VIP",
        configured,
    );
    if let Some(n) = s.flow_entries {
        gauge(
            r,
            "lb_flow_table_entries",
            "Entries in the flow table, as last counted (every few seconds, off the scrape)",
            n as i64,
        );
    }
    if let Some(n) = s.flow_cached {
        gauge(
            r,
            "lb_flow_cache_entries",
            "Flows the flow cache answers for in its current second, of 65536 entries, as last counted (every few seconds): near 65536, more flows are busy than it holds and the rest read the flow table",
            n as i64,
        );
    }
    gauge(
        r,
        "lb_flow_table_capacity",
        "Slots in the flow table",
        s.flow_capacity as i64,
    );
    let attached = Family::<InterfaceLabels, Gauge>::default();
    for (name, on) in &s.interfaces {
        attached
            .get_or_create(&InterfaceLabels {
                interface: name.clone(),
            })
            .set(i64::from(*on));
    }
    r.register(
        "lb_interface_attached",
        "1 while xdp_lb is attached to the interface; 0 while the interface is gone (or attaching failed)",
        attached,
    );
    let loaded = s
        .last_reload
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let g = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
    g.set(loaded.as_secs_f64());
    r.register(
        "lb_config_last_reload_success_timestamp_seconds",
        "When the configuration was last loaded successfully (at start or by a reload), Unix time",
        g,
    );
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InterfaceLabels {
    interface: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VipNameLabels {
    vip: String,
}

/// The control socket's and the metrics port's connections.
fn listeners(r: &mut Registry, s: &Snapshot) {
    let label = |name: &str| ListenerLabels {
        listener: name.into(),
    };
    let conns = s.listeners.iter().flat_map(|(name, l)| {
        [
            ("accepted", l.accepted),
            ("evicted", l.evicted),
            ("refused", l.refused),
        ]
        .map(|(result, n)| {
            (
                ConnectionLabels {
                    listener: (*name).into(),
                    result: result.into(),
                },
                n,
            )
        })
    });
    counters(
        r,
        "lb_api_connections",
        "Connections to the agent's listeners: accepted; evicted (idle, closed to make room); refused (every connection busy)",
        conns,
    );
    counters(
        r,
        "lb_api_accept_errors",
        "Failed accepts (file descriptors or buffers exhausted); the listener backs off",
        s.listeners
            .iter()
            .map(|(name, l)| (label(name), l.accept_errors)),
    );
    let open = Family::<ListenerLabels, Gauge>::default();
    for (name, l) in &s.listeners {
        open.get_or_create(&label(name)).set(l.open as i64);
    }
    r.register(
        "lb_api_connections_open",
        "Connections open on the agent's listeners",
        open,
    );
}

#[cfg(test)]
mod tests;
