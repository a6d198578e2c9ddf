//! The counters as the API serves them and the CLI shows them.
use serde::{Deserialize, Serialize};

use crate::dataplane::{FlowTable, Totals};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Outcome {
    pub name: String,
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BackendStats {
    pub address: String,
    pub weight: u32,
    pub packets: u64,
    pub bytes: u64,
    /// Share of the VIP's forwarded packets, in percent.
    pub share: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VipStats {
    pub name: String,
    pub address: String,
    pub protocol: String,
    pub packets: u64,
    pub bytes: u64,
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

/// Fills in every backend's share of its VIP's forwarded packets.
pub fn with_shares(mut backends: Vec<(String, u32, Totals)>) -> Vec<BackendStats> {
    let total: u64 = backends.iter().map(|b| b.2.packets).sum();
    backends
        .drain(..)
        .map(|(address, weight, t)| BackendStats {
            address,
            weight,
            packets: t.packets,
            bytes: t.bytes,
            share: if total == 0 {
                0.0
            } else {
                100.0 * t.packets as f64 / total as f64
            },
        })
        .collect()
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
            "VIP {} {} {}: {} packets, {} bytes\n",
            v.name, v.protocol, v.address, v.packets, v.bytes
        );
        for b in &v.backends {
            out += &format!(
                "  {:<28} w={:<5} {} {:5.1}%  {} packets, {} bytes\n",
                b.address,
                b.weight,
                bar(b.share, 30),
                b.share,
                b.packets,
                b.bytes
            );
        }
    }
    let f = &s.flows;
    out += &format!(
        "flow table: {} of {} entries, {} added, {} evicted, {} hits\n",
        f.entries, f.capacity, f.inserted, f.evicted, f.hits
    );
    out += "outcomes:\n";
    for o in s.outcomes.iter().filter(|o| o.packets > 0) {
        out += &format!(
            "  {:<16} {:>12} packets {:>14} bytes\n",
            o.name, o.packets, o.bytes
        );
    }
    if s.outcomes.iter().all(|o| o.packets == 0) {
        out += "  (no packets yet)\n";
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_and_bars_scale() {
        let t = |p| Totals {
            packets: p,
            bytes: p * 100,
        };
        let b = with_shares(vec![
            ("a".into(), 1, t(1)),
            ("b".into(), 1, t(3)),
            ("c".into(), 1, t(0)),
        ]);
        assert_eq!(b.iter().map(|x| x.share).sum::<f64>(), 100.0);
        assert_eq!(b[1].share, 75.0);
        assert_eq!(bar(50.0, 10), "█████·····");
        assert_eq!(bar(0.0, 4), "····");
        assert_eq!(with_shares(vec![("a".into(), 1, t(0))])[0].share, 0.0);
    }
}
