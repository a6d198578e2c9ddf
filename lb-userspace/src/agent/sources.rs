//! Where the effective config comes from: the file, what discovery (etcd) adds, the
//! addresses of hostname backends (DNS), then the runtime changes; and where it goes besides
//! the data path (BGP announcements through BIRD).
use std::{collections::BTreeSet, net::IpAddr};

use tokio::sync::watch;

use crate::{
    config::Config,
    discovery::{self, Event},
    dns,
    state::{self, Change},
};

use super::sync::Agent;

/// The config's sources, and what each last gave.
pub struct Sources {
    pub file: Config,
    /// Runtime changes (the API's), kept in `store`.
    changes: Vec<Change>,
    store: state::Store,
    /// What discovery adds to the file, as changes applied before the runtime ones.
    discovered: Vec<Change>,
    /// How discovery stands (`[discovery.etcd]` only).
    pub discovery: Option<discovery::Status>,
    /// The hostnames of backends, for the resolver task.
    hosts: watch::Sender<BTreeSet<String>>,
    /// What they resolved to last.
    resolved: dns::Resolved,
    /// Resolved addresses that could not be added, and why.
    dns_skipped: Vec<String>,
}

impl Sources {
    pub fn new(file: Config, store: state::Store, changes: Vec<Change>) -> Self {
        let discovery = file.etcd.as_ref().map(|_| discovery::Status {
            source: "etcd".into(),
            state: "connecting".into(),
            ..Default::default()
        });
        Sources {
            file,
            changes,
            store,
            discovered: Vec::new(),
            discovery,
            hosts: watch::channel(Default::default()).0,
            resolved: Default::default(),
            dns_skipped: Vec::new(),
        }
    }

    /// The hostnames to resolve, as they change.
    pub fn hostnames(&self) -> watch::Receiver<BTreeSet<String>> {
        self.hosts.subscribe()
    }

    /// The effective config: the file, then what discovery adds, then each hostname
    /// backend's resolved addresses of its VIP's family, then the runtime changes. With it,
    /// the runtime changes that no longer apply.
    pub fn effective(&mut self) -> (Config, Vec<String>) {
        let base = self.base();
        state::effective(&base, &self.changes)
    }

    /// A runtime change, kept (fsync'd) before it is taken: once this returns it survives a
    /// crash. Every [`state::JOURNAL_MAX`] changes the kept ones are compacted.
    pub fn record(&mut self, ch: Change) -> anyhow::Result<()> {
        self.store.append(&ch)?;
        self.changes.push(ch);
        if self.store.journal_len() >= state::JOURNAL_MAX {
            self.compact();
        }
        Ok(())
    }

    /// Replaces the kept changes by their compaction, when it makes the same config from
    /// what is under them now (it does, unless a limit shared between keys decides), and
    /// writes it as the new snapshot. A failure here loses nothing: the journal stays.
    pub fn compact(&mut self) {
        let compacted = state::compact(&self.changes);
        let base = self.base();
        let keep =
            if state::effective(&base, &compacted).0 == state::effective(&base, &self.changes).0 {
                compacted
            } else {
                tracing::warn!(
                    "the compacted runtime changes would make another config: keeping them all"
                );
                self.changes.clone()
            };
        match self.store.rewrite(&keep) {
            Ok(()) => {
                tracing::debug!(
                    kept = keep.len(),
                    of = self.changes.len(),
                    "runtime changes compacted"
                );
                self.changes = keep;
            }
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "compacting the runtime changes"),
        }
    }

    /// Whether a start should compact first (a journal at its bound).
    pub fn compaction_due(&self) -> bool {
        self.store.journal_len() >= state::JOURNAL_MAX
    }

    /// The config under the runtime changes: the file, discovery, DNS.
    fn base(&mut self) -> Config {
        let (base, dskipped) = state::effective(&self.file, &self.discovered);
        let names: BTreeSet<String> = base
            .vips
            .iter()
            .flat_map(|v| v.hosts.iter().map(|h| h.host.clone()))
            .collect();
        self.hosts.send_if_modified(|cur| {
            let changed = *cur != names;
            *cur = names;
            changed
        });
        let mut resolved = Vec::new();
        for v in &base.vips {
            for h in &v.hosts {
                for a in self.resolved.addrs.get(&h.host).into_iter().flatten() {
                    if a.is_ipv4() == v.address.is_ipv4() {
                        resolved.push(Change::BackendAdd {
                            vip: v.name.clone(),
                            address: *a,
                            weight: Some(h.weight),
                        });
                    }
                }
            }
        }
        let (base, dns_skipped) = state::effective(&base, &resolved);
        self.dns_skipped = dns_skipped;
        if let Some(d) = self.discovery.as_mut() {
            d.skipped.retain(|s| s.starts_with("etcd "));
            d.skipped.extend(dskipped);
        }
        base
    }

    /// New addresses for hostname backends; whether anything changed.
    pub fn resolve(&mut self, r: dns::Resolved) -> bool {
        if r == self.resolved {
            return false;
        }
        for (host, addrs) in &r.addrs {
            if self.resolved.addrs.get(host) != Some(addrs) {
                let list: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
                tracing::info!(host = %host, addresses = %list.join(","), "hostname resolved");
            }
        }
        for (host, e) in &r.errors {
            tracing::warn!(host = %host, error = %e, "hostname not resolved; keeping its last addresses");
        }
        self.resolved = r;
        true
    }

    /// A report from the etcd watcher; whether the discovered state changed. Etcd out of
    /// reach keeps the last state, marked stale.
    pub fn discover(&mut self, ev: Event) -> bool {
        let Some(prefix) = self.file.etcd.as_ref().map(|e| e.prefix.clone()) else {
            return false;
        };
        match ev {
            Event::Unreachable(e) => {
                if let Some(d) = self.discovery.as_mut() {
                    if d.state != "stale" || d.error.as_deref() != Some(&e) {
                        tracing::warn!(error = %e, "etcd out of reach: keeping the last discovered state");
                    }
                    d.state = "stale".into();
                    d.error = Some(e);
                }
                false
            }
            Event::Snapshot(keys) => {
                let (changes, bad) = discovery::changes(&prefix, &keys);
                for b in &bad {
                    tracing::warn!(entry = %b, "etcd entry skipped");
                }
                if let Some(d) = self.discovery.as_mut() {
                    d.state = "current".into();
                    d.error = None;
                    d.keys = keys.len();
                    d.skipped = bad;
                }
                if changes == self.discovered {
                    return false;
                }
                self.discovered = changes;
                true
            }
        }
    }

    /// How the hostname backends stand, for `lb status` (none when there are none).
    pub fn dns_status(&self) -> Option<dns::Status> {
        if self.hosts.borrow().is_empty() {
            return None;
        }
        Some(dns::Status {
            hosts: self
                .resolved
                .addrs
                .iter()
                .map(|(h, a)| (h.clone(), a.iter().map(|x| x.to_string()).collect()))
                .collect(),
            errors: self
                .resolved
                .errors
                .clone()
                .into_iter()
                .chain(
                    self.dns_skipped
                        .iter()
                        .map(|s| ("(skipped)".to_string(), s.clone())),
                )
                .collect(),
        })
    }
}

impl Agent {
    /// The effective config anew from its sources.
    pub fn rebuild_effective(&mut self) {
        let (effective, skipped) = self.sources.effective();
        self.effective = effective;
        self.skipped = skipped;
    }

    /// New addresses for hostname backends.
    pub fn on_resolved(&mut self, r: dns::Resolved) -> anyhow::Result<()> {
        if !self.sources.resolve(r) {
            return Ok(());
        }
        self.rebuild_effective();
        self.sync(None)
    }

    /// A report from the etcd watcher: a new state to apply, or etcd out of reach (the last
    /// state stays).
    pub fn on_discovery(&mut self, ev: Event) -> anyhow::Result<()> {
        if !self.sources.discover(ev) {
            return Ok(());
        }
        self.rebuild_effective();
        tracing::info!(vips = self.effective.vips.len(), "discovered state applied");
        self.sync(None)
    }

    /// Has BIRD announce every VIP address with a healthy backend while the program is
    /// attached, and nothing otherwise (`[bgp]`). A drained backend still counts: its
    /// established flows come through this balancer.
    pub fn announce(&mut self) {
        if self.bgp.is_none() {
            return;
        }
        let wanted: std::collections::BTreeSet<IpAddr> = if self.attached {
            self.effective
                .vips
                .iter()
                .filter(|v| {
                    self.vip_status(v)
                        .backends
                        .iter()
                        .any(|b| b.health != "down" && b.health != "damped")
                })
                .map(|v| v.address.ip())
                .collect()
        } else {
            Default::default()
        };
        if let Some(b) = self.bgp.as_mut() {
            b.announce(wanted);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "[agent]\ninterfaces = [\"eth0\"]\nsource_v4 = \"198.18.0.2\"\n\n\
        [[vip]]\nname = \"web\"\naddress = \"198.19.0.1:80\"\nprotocol = \"tcp\"\n\n\
        [[vip.backend]]\naddress = \"198.18.0.11\"\n\n[[vip.backend]]\nhost = \"app.test\"\n";

    fn backends(c: &Config) -> Vec<String> {
        c.vips[0]
            .backends
            .iter()
            .map(|b| b.address.to_string())
            .collect()
    }

    #[test]
    fn the_effective_config_is_file_then_dns_then_runtime_changes() {
        let file = crate::config::parse("lb.toml", FILE).unwrap();
        let changes = vec![
            Change::BackendAdd {
                vip: "web".into(),
                address: "198.18.0.13".parse().unwrap(),
                weight: None,
            },
            Change::Drain {
                vip: "gone".into(),
                address: "198.18.0.11".parse().unwrap(),
            },
        ];
        let dir = std::env::temp_dir().join(format!("lb-sources-{}", std::process::id()));
        let (store, _) = state::Store::open(&dir).unwrap();
        let mut s = Sources::new(file, store, changes);
        let names = s.hostnames();
        let (eff, skipped) = s.effective();
        assert_eq!(backends(&eff), ["198.18.0.11", "198.18.0.13"]);
        assert_eq!(
            skipped.len(),
            1,
            "the drain of a VIP that is not there: {skipped:?}"
        );
        assert!(names.borrow().contains("app.test"));
        assert!(s.dns_status().is_some());
        // The name resolves: its address of the VIP's family joins, before the changes.
        let resolved = dns::Resolved {
            addrs: [(
                "app.test".to_string(),
                vec!["198.18.0.12".parse().unwrap(), "fd00::12".parse().unwrap()],
            )]
            .into(),
            errors: Default::default(),
        };
        assert!(s.resolve(resolved.clone()));
        assert!(!s.resolve(resolved), "the same answer changes nothing");
        let (eff, _) = s.effective();
        assert_eq!(
            backends(&eff),
            ["198.18.0.11", "198.18.0.12", "198.18.0.13"]
        );
        // No etcd configured: discovery reports change nothing.
        assert!(!s.discover(Event::Unreachable("down".into())));
        assert!(s.discovery.is_none());
        // Recorded changes are kept, and compacted every JOURNAL_MAX of them.
        let x: IpAddr = "198.18.0.13".parse().unwrap();
        for i in 0..state::JOURNAL_MAX * 3 {
            let ch = if i % 2 == 0 {
                Change::Drain {
                    vip: "web".into(),
                    address: x,
                }
            } else {
                Change::Undrain {
                    vip: "web".into(),
                    address: x,
                }
            };
            s.record(ch).unwrap();
        }
        assert!(
            s.changes.len() < state::JOURNAL_MAX + 3,
            "{}",
            s.changes.len()
        );
        let (eff, _) = s.effective();
        assert!(
            !eff.vips[0].backends.iter().any(|b| b.drain),
            "the last was an undrain"
        );
        let (_, kept) = state::Store::open(&dir).unwrap();
        assert_eq!(kept, s.changes);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
