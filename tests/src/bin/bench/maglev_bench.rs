//! Maglev ring builds: time, imbalance, disruption.
use std::{net::IpAddr, time::Instant};

use lb::maglev;

use crate::{Opts, per_packet::spread};

pub struct MaglevRow {
    pub n: usize,
    pub m: u32,
    pub build_ms: f64,
    /// The fastest of the builds: the cost with the least interference from other guests.
    pub fastest_ms: f64,
    pub imbalance: f64,
    pub disruption: f64,
}

pub fn maglev_rows(o: &Opts) -> Vec<MaglevRow> {
    let mut rows = Vec::new();
    for m in [65537u32, 655373] {
        for n in [10usize, 100, 1000] {
            let backends: Vec<(IpAddr, u32)> = (0..n)
                .map(|i| {
                    (
                        IpAddr::from([198, 18, (i / 250) as u8 + 1, (i % 250) as u8 + 1]),
                        100,
                    )
                })
                .collect();
            let mut times = Vec::new();
            let mut ring = Vec::new();
            for _ in 0..if o.quick { 3 } else { 15 } {
                let t = Instant::now();
                ring = maglev::build(&backends, m);
                times.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            let counts = maglev::slot_counts(&ring, n);
            let mean = m as f64 / n as f64;
            let imbalance = *counts.iter().max().unwrap() as f64 / mean;
            let rest: Vec<(IpAddr, u32)> = backends[1..].to_vec();
            let after = maglev::build(&rest, m);
            let moved = ring
                .iter()
                .zip(&after)
                .filter(|(b, a)| backends[**b as usize].0 != rest[**a as usize].0)
                .count();
            let times = spread(times);
            rows.push(MaglevRow {
                n,
                m,
                build_ms: times.median,
                fastest_ms: times.min,
                imbalance,
                disruption: moved as f64 / m as f64,
            });
        }
    }
    assert!(
        rows.iter().all(|r| r.imbalance >= 1.0),
        "imbalance below 1 is impossible"
    );
    rows
}
