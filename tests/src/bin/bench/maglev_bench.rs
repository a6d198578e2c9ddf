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

/// Builds of each (N, M) timed per case; see [`maglev_rows`].
pub fn builds(quick: bool) -> usize {
    if quick { 3 } else { 31 }
}

/// Every case is built [`builds`] times, in rounds that take each case in turn, so that a burst
/// of other work on the machine (other guests share this host) falls on one build of many
/// cases rather than on every build of one.
pub fn maglev_rows(o: &Opts) -> Vec<MaglevRow> {
    // (M, N, the N backends with their weights)
    type Case = (u32, usize, Vec<(IpAddr, u32)>);
    let cases: Vec<Case> = [65537u32, 655373]
        .into_iter()
        .flat_map(|m| [10usize, 100, 1000].map(|n| (m, n)))
        .map(|(m, n)| {
            let backends = (0..n)
                .map(|i| {
                    (
                        IpAddr::from([198, 18, (i / 250) as u8 + 1, (i % 250) as u8 + 1]),
                        100,
                    )
                })
                .collect();
            (m, n, backends)
        })
        .collect();
    let mut times = vec![Vec::new(); cases.len()];
    for _ in 0..builds(o.quick) {
        for (i, (m, _, backends)) in cases.iter().enumerate() {
            let t = Instant::now();
            let ring = maglev::build(backends, *m);
            times[i].push(t.elapsed().as_secs_f64() * 1000.0);
            std::hint::black_box(ring);
        }
    }
    let mut rows = Vec::new();
    for ((m, n, backends), times) in cases.into_iter().zip(times) {
        let ring = maglev::build(&backends, m);
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
    assert!(
        rows.iter().all(|r| r.imbalance >= 1.0),
        "imbalance below 1 is impossible"
    );
    rows
}
