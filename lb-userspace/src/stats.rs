//! The counters as the API serves them and the CLI shows them.
use std::{collections::HashMap, time::Instant};

use serde::{Deserialize, Serialize};

use crate::dataplane::{FlowTable, Totals};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Outcome {
    pub name: String,
    pub packets: u64,
    pub bytes: u64,
    /// Packets per second over the last second.
    pub pps: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BackendStats {
    pub address: String,
    pub weight: u32,
    pub packets: u64,
    pub bytes: u64,
    /// Packets and bits per second over the last second.
    pub pps: f64,
    pub bps: f64,
    /// Flows the ring sent to it (each recorded in the flow table).
    pub new_flows: u64,
    /// Share of the VIP's forwarded packets, in percent.
    pub share: f64,
    /// `up`, `down` or `unchecked`, as `lb status` says.
    pub health: String,
    pub drain: bool,
    /// Whether the ring sends it new flows.
    pub in_ring: bool,
    /// Flows seen within `agent.flow_active` (`None`: not counted yet).
    #[serde(default)]
    pub active_flows: Option<u64>,
    /// SYNs its clients repeated while their flows were on probation (passive health's
    /// signal).
    #[serde(default)]
    pub syn_retries: u64,
    /// Why it takes no new flows for its health (`lb status`'s `down_reason`).
    #[serde(default)]
    pub down_reason: Option<String>,
    /// Times passive health ejected it, ever (this agent's run).
    #[serde(default)]
    pub ejections: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VipStats {
    pub name: String,
    pub address: String,
    pub protocol: String,
    /// How its packets reach the backends (`ipip`, `l2dsr`): the metrics' per-mode label.
    #[serde(default)]
    pub forwarding: String,
    pub packets: u64,
    pub bytes: u64,
    pub pps: f64,
    pub bps: f64,
    pub new_flows: u64,
    pub backends: Vec<BackendStats>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Stats {
    pub outcomes: Vec<Outcome>,
    pub vips: Vec<VipStats>,
    pub flows: FlowTable,
}

impl Stats {
    /// The count of outcome `name` (0 when absent).
    pub fn outcome(&self, name: &str) -> u64 {
        self.outcomes
            .iter()
            .find(|o| o.name == name)
            .map_or(0, |o| o.packets)
    }
}

/// Packets and bits per second.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rate {
    pub pps: f64,
    pub bps: f64,
}

/// What a rate is kept for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateKey {
    Vip(u32),
    Backend(u32),
    Outcome(u32),
}

/// Rates over the last sampling period: the agent samples the counters once a second, so
/// `lb stats` shows the rate of the last second, however seldom it is asked.
#[derive(Debug, Default)]
pub struct Rates {
    prev: HashMap<RateKey, (Instant, Totals)>,
    rates: HashMap<RateKey, Rate>,
}

impl Rates {
    /// Records a sample of `key`'s counters taken at `at`.
    pub fn observe(&mut self, key: RateKey, t: Totals, at: Instant) {
        if let Some((t0, p)) = self.prev.get(&key) {
            let dt = at.saturating_duration_since(*t0).as_secs_f64();
            if dt > 0.0 {
                // A counter that went back (its id was given anew) restarts from 0.
                let packets = t.packets.checked_sub(p.packets).unwrap_or(t.packets);
                let bytes = t.bytes.checked_sub(p.bytes).unwrap_or(t.bytes);
                self.rates.insert(
                    key,
                    Rate {
                        pps: packets as f64 / dt,
                        bps: 8.0 * bytes as f64 / dt,
                    },
                );
            }
        }
        self.prev.insert(key, (at, t));
    }

    /// Forgets every key not sampled since `since` (VIPs and backends that went away).
    pub fn forget_older(&mut self, since: Instant) {
        self.prev.retain(|_, (t, _)| *t >= since);
        let prev = &self.prev;
        self.rates.retain(|k, _| prev.contains_key(k));
    }

    pub fn get(&self, key: RateKey) -> Rate {
        self.rates.get(&key).copied().unwrap_or_default()
    }
}

/// Fills in every backend's share of its VIP's forwarded packets.
pub fn fill_shares(backends: &mut [BackendStats]) {
    let total: u64 = backends.iter().map(|b| b.packets).sum();
    for b in backends {
        b.share = if total == 0 {
            0.0
        } else {
            100.0 * b.packets as f64 / total as f64
        };
    }
}

/// `n` with a metric prefix (k, M, G), for rates.
pub fn si(n: f64) -> String {
    match n {
        n if n >= 1e9 => format!("{:.2}G", n / 1e9),
        n if n >= 1e6 => format!("{:.2}M", n / 1e6),
        n if n >= 1e3 => format!("{:.1}k", n / 1e3),
        n => format!("{n:.0}"),
    }
}

/// A bar of `width` cells for `percent`.
pub fn bar(percent: f64, width: usize) -> String {
    let cells = ((percent / 100.0) * width as f64)
        .round()
        .clamp(0.0, width as f64) as usize;
    format!("{}{}", "█".repeat(cells), "·".repeat(width - cells))
}

/// The human view of `lb stats`.
pub fn render(s: &Stats) -> String {
    let mut out = String::new();
    for v in &s.vips {
        out += &format!(
            "VIP {} {} {}: {} packets, {} bytes, {} new flows; {} pps, {}bit/s\n",
            v.name,
            v.protocol,
            v.address,
            v.packets,
            v.bytes,
            v.new_flows,
            si(v.pps),
            si(v.bps)
        );
        for b in &v.backends {
            let state = match (b.drain, b.health.as_str()) {
                (true, _) => "drain",
                (false, h) => h,
            };
            out += &format!(
                "  {:<24} {:<9} w={:<4} {} {:5.1}%  {} packets, {} bytes, {} new flows; {} pps, {}bit/s\n",
                b.address,
                state,
                b.weight,
                bar(b.share, 20),
                b.share,
                b.packets,
                b.bytes,
                b.new_flows,
                si(b.pps),
                si(b.bps)
            );
        }
    }
    let f = &s.flows;
    out += &format!(
        "flow table: {} of {} entries, {} added, {} evicted, {} hits, {} not recorded (full of established flows)\n",
        f.entries, f.capacity, f.inserted, f.evicted, f.hits, f.unrecorded
    );
    out += "outcomes:\n";
    for o in s.outcomes.iter().filter(|o| o.packets > 0) {
        out += &format!(
            "  {:<18} {:>12} packets {:>14} bytes {:>9} pps\n",
            o.name,
            o.packets,
            o.bytes,
            si(o.pps)
        );
    }
    if s.outcomes.iter().all(|o| o.packets == 0) {
        out += "  (no packets yet)\n";
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn backend(packets: u64) -> BackendStats {
        BackendStats {
            address: "198.18.1.1".into(),
            weight: 1,
            packets,
            bytes: packets * 100,
            pps: 0.0,
            bps: 0.0,
            new_flows: 0,
            share: 0.0,
            health: "up".into(),
            drain: false,
            in_ring: true,
            active_flows: None,
            syn_retries: 0,
            down_reason: None,
            ejections: 0,
        }
    }

    #[test]
    fn shares_add_up_and_bars_scale() {
        let mut b = vec![backend(1), backend(3), backend(0)];
        fill_shares(&mut b);
        assert_eq!(b.iter().map(|x| x.share).sum::<f64>(), 100.0);
        assert_eq!(b[1].share, 75.0);
        assert_eq!(bar(50.0, 10), "█████·····");
        assert_eq!(bar(0.0, 4), "····");
        let mut idle = vec![backend(0)];
        fill_shares(&mut idle);
        assert_eq!(idle[0].share, 0.0);
    }

    #[test]
    fn rates_over_the_last_period() {
        let mut r = Rates::default();
        let t0 = Instant::now();
        let k = RateKey::Backend(3);
        let t = |packets, bytes| Totals { packets, bytes };
        r.observe(k, t(100, 10_000), t0);
        assert_eq!(r.get(k), Rate::default(), "one sample is no rate");
        r.observe(k, t(1100, 110_000), t0 + Duration::from_secs(2));
        assert_eq!(
            r.get(k),
            Rate {
                pps: 500.0,
                bps: 400_000.0
            }
        );
        // A counter that went back (id given anew) counts from 0.
        r.observe(k, t(50, 5000), t0 + Duration::from_secs(3));
        assert_eq!(r.get(k).pps, 50.0);
        r.forget_older(t0 + Duration::from_secs(4));
        assert_eq!(r.get(k), Rate::default());
        assert_eq!(si(1_500_000.0), "1.50M");
        assert_eq!(si(999.0), "999");
    }
}
