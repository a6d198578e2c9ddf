//! Passive health (`[vip.outlier]`): what the data path saw of each backend's new flows under
//! direct server return, where only the clients' side passes the balancer. A client whose SYN
//! went unanswered sends it again; the data path counts, per backend, SYNs repeated while their
//! flow was on probation ([`lb_common::map_names::BACKEND_RETRIES`]) beside the new flows the
//! ring gave it. Every `interval`, a backend whose share of repeated SYNs passes
//! `retry_percent` is ejected from the ring for a time that grows with each ejection, never
//! more than `max_ejection_percent` of the VIP's backends at once (Envoy's outlier detection is
//! the model). Established flows stay where they are; only new flows go elsewhere.
use std::{
    collections::HashMap,
    net::IpAddr,
    time::{Duration, Instant},
};

use crate::config::Outlier;

use super::sync::Agent;

/// A backend of a VIP (by name).
type Key = (String, IpAddr);

/// One backend's passive health.
#[derive(Debug, Default)]
struct State {
    /// Its counters (new flows, repeated SYNs) at the last verdict.
    seen: Option<(u64, u64)>,
    /// Ejected until then.
    until: Option<Instant>,
    /// Times ejected (the next ejection lasts one base time longer); forgotten after a
    /// `max_ejection_time` without one.
    ejections: u32,
    /// When it was last ejected.
    last: Option<Instant>,
}

/// Every watched backend's passive health, and when each VIP was last judged.
#[derive(Debug, Default)]
pub struct Outliers {
    states: HashMap<Key, State>,
    judged: HashMap<String, Instant>,
    /// Ejections ever, per backend (for the metrics).
    pub total: HashMap<Key, u64>,
}

/// What one interval showed of a backend.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub addr: IpAddr,
    /// New flows the ring gave it.
    pub flows: u64,
    /// SYNs clients repeated to it.
    pub retries: u64,
    /// Ejected now.
    pub ejected: bool,
}

/// The backends to eject now, worst first: those with at least `min_flows` new flows whose
/// repeated SYNs passed `retry_percent` of them, as many as `max_ejection_percent` of the
/// `total` backends allows (at least one) beside those ejected already.
pub fn verdict(o: &Outlier, samples: &[Sample], total: usize) -> Vec<IpAddr> {
    let allowed = (total * o.max_ejection_percent as usize / 100).max(1);
    let ejected = samples.iter().filter(|s| s.ejected).count();
    let mut bad: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            !s.ejected
                && s.flows >= o.min_flows as u64
                && s.retries * 100 > o.retry_percent as u64 * s.flows
        })
        .collect();
    // Worst share first: retries/flows compared as a cross product.
    bad.sort_by(|a, b| {
        (b.retries as u128 * a.flows as u128).cmp(&(a.retries as u128 * b.flows as u128))
    });
    bad.into_iter()
        .take(allowed.saturating_sub(ejected))
        .map(|s| s.addr)
        .collect()
}

/// How long the `n`th ejection (from 1) lasts.
pub fn ejection_time(o: &Outlier, n: u32) -> Duration {
    o.base_ejection_time
        .saturating_mul(n.max(1))
        .min(o.max_ejection_time)
}

impl Outliers {
    /// Whether the backend is ejected now.
    pub fn ejected(&self, vip: &str, addr: IpAddr) -> bool {
        self.ejected_for(vip, addr, Instant::now()).is_some()
    }

    /// How long more the backend stays ejected, if it is.
    pub fn ejected_for(&self, vip: &str, addr: IpAddr, now: Instant) -> Option<Duration> {
        let until = self.states.get(&(vip.to_string(), addr))?.until?;
        (until > now).then(|| until - now)
    }

    /// Times the backend was ejected since it last went a `max_ejection_time` without.
    pub fn ejections(&self, vip: &str, addr: IpAddr) -> u32 {
        self.states
            .get(&(vip.to_string(), addr))
            .map_or(0, |s| s.ejections)
    }

    /// Forgets backends and VIPs no longer watched.
    fn retain(&mut self, watched: &HashMap<String, Vec<IpAddr>>) {
        self.states
            .retain(|(v, a), _| watched.get(v).is_some_and(|addrs| addrs.contains(a)));
        self.judged.retain(|v, _| watched.contains_key(v));
    }
}

impl Agent {
    /// Ends ejections whose time is up and judges the VIPs whose interval has passed; rebuilds
    /// the rings of the VIPs whose backends moved.
    pub fn check_outliers(&mut self, now: Instant) -> anyhow::Result<()> {
        let watched: HashMap<String, Vec<IpAddr>> = self
            .effective
            .vips
            .iter()
            .filter(|v| v.outlier.is_some())
            .map(|v| {
                (
                    v.name.clone(),
                    v.backends.iter().map(|b| b.address).collect(),
                )
            })
            .collect();
        self.outliers.retain(&watched);
        let mut moved = Vec::new();
        for v in self.effective.vips.clone() {
            let Some(o) = v.outlier else { continue };
            let ids = self.ids(&v).map(|(_, ids)| ids).unwrap_or_default();
            // Ejections that ended.
            for b in &v.backends {
                let k = (v.name.clone(), b.address);
                if let Some(s) = self.outliers.states.get_mut(&k) {
                    if s.until.is_some_and(|u| u <= now) {
                        s.until = None;
                        tracing::info!(vip = %v.name, backend = %b.address, "ejection ended: the backend takes new flows again");
                        moved.push(v.name.clone());
                    }
                    if s.last
                        .is_some_and(|l| now.duration_since(l) >= o.max_ejection_time)
                        && s.until.is_none()
                    {
                        s.ejections = 0;
                    }
                }
            }
            let due = self
                .outliers
                .judged
                .get(&v.name)
                .is_none_or(|t| now.duration_since(*t) >= o.interval);
            if !due {
                continue;
            }
            self.outliers.judged.insert(v.name.clone(), now);
            let mut samples = Vec::new();
            for (i, b) in v.backends.iter().enumerate() {
                let Some(id) = ids.get(i).copied().flatten() else {
                    continue;
                };
                let counts = (
                    self.dp.backend_new_flows(id)?,
                    self.dp.backend_syn_retries(id)?,
                );
                let s = self
                    .outliers
                    .states
                    .entry((v.name.clone(), b.address))
                    .or_default();
                let (flows, retries) = match s.seen {
                    Some((f, r)) => (counts.0.saturating_sub(f), counts.1.saturating_sub(r)),
                    // The first look only sets where counting starts.
                    None => (0, 0),
                };
                s.seen = Some(counts);
                samples.push(Sample {
                    addr: b.address,
                    flows,
                    retries,
                    ejected: s.until.is_some(),
                });
            }
            for addr in verdict(&o, &samples, v.backends.len()) {
                let sample = samples.iter().find(|s| s.addr == addr).copied();
                let k = (v.name.clone(), addr);
                let s = self.outliers.states.entry(k.clone()).or_default();
                s.ejections += 1;
                let time = ejection_time(&o, s.ejections);
                s.until = Some(now + time);
                s.last = Some(now);
                *self.outliers.total.entry(k).or_default() += 1;
                tracing::warn!(
                    vip = %v.name,
                    backend = %addr,
                    new_flows = sample.map_or(0, |s| s.flows),
                    repeated_syns = sample.map_or(0, |s| s.retries),
                    ejection = s.ejections,
                    time = ?time,
                    "backend ejected: its clients repeat their SYNs (passive health)"
                );
                moved.push(v.name.clone());
            }
        }
        moved.sort();
        moved.dedup();
        for vip in moved {
            self.sync(Some(&vip))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(last: u8, flows: u64, retries: u64, ejected: bool) -> Sample {
        Sample {
            addr: IpAddr::from([198, 18, 0, last]),
            flows,
            retries,
            ejected,
        }
    }

    #[test]
    fn a_backend_whose_clients_repeat_their_syns_is_ejected() {
        let o = Outlier::default();
        let s = [sample(11, 100, 0, false), sample(12, 100, 80, false)];
        assert_eq!(verdict(&o, &s, 4), vec![IpAddr::from([198, 18, 0, 12])]);
        // At the threshold, not past it: kept.
        let s = [sample(12, 100, 25, false)];
        assert!(verdict(&o, &s, 4).is_empty());
        // Too few flows to judge.
        let s = [sample(12, 9, 9, false)];
        assert!(verdict(&o, &s, 4).is_empty());
    }

    #[test]
    fn never_more_than_the_share_of_backends_worst_first() {
        let o = Outlier {
            max_ejection_percent: 25,
            ..Outlier::default()
        };
        let s = [
            sample(11, 100, 0, false),
            sample(12, 100, 50, false),
            sample(13, 100, 90, false),
            sample(14, 100, 0, false),
        ];
        assert_eq!(verdict(&o, &s, 4), vec![IpAddr::from([198, 18, 0, 13])]);
        // One is out already: none more.
        let s = [sample(12, 100, 50, false), sample(13, 0, 0, true)];
        assert!(verdict(&o, &s, 4).is_empty());
        // A share below one backend still allows one.
        let o = Outlier {
            max_ejection_percent: 10,
            ..Outlier::default()
        };
        assert_eq!(verdict(&o, &[sample(12, 100, 50, false)], 4).len(), 1);
    }

    #[test]
    fn ejection_time_grows_with_each_ejection_up_to_the_most() {
        let o = Outlier::default();
        assert_eq!(ejection_time(&o, 1), Duration::from_secs(30));
        assert_eq!(ejection_time(&o, 2), Duration::from_secs(60));
        assert_eq!(ejection_time(&o, 50), Duration::from_secs(300));
    }
}
