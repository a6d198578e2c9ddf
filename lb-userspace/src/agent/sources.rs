//! Where the effective config comes from besides the file (etcd, DNS) and where it goes
//! besides the data path (BGP announcements through BIRD).
use std::net::IpAddr;

use crate::state::Change;

use super::sync::Agent;

impl Agent {
    /// The effective config anew: the file, what discovery adds, then the runtime changes.
    pub fn rebuild_effective(&mut self) {
        let (base, dskipped) = crate::state::effective(&self.file, &self.discovered);
        // Hostname backends: each resolved address of the VIP's family is a backend.
        let names: std::collections::BTreeSet<String> = base
            .vips
            .iter()
            .flat_map(|v| v.hosts.iter().map(|h| h.host.clone()))
            .collect();
        self.dns_hosts.send_if_modified(|cur| {
            let changed = *cur != names;
            *cur = names;
            changed
        });
        let mut resolved = Vec::new();
        for v in &base.vips {
            for h in &v.hosts {
                for a in self.dns_resolved.addrs.get(&h.host).into_iter().flatten() {
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
        let (base, dns_skipped) = crate::state::effective(&base, &resolved);
        self.dns_skipped = dns_skipped;
        let (effective, skipped) = crate::state::effective(&base, &self.changes);
        self.effective = effective;
        self.skipped = skipped;
        if let Some(d) = self.discovery.as_mut() {
            d.skipped.retain(|s| s.starts_with("etcd "));
            d.skipped.extend(dskipped);
        }
    }

    /// New addresses for hostname backends.
    pub fn on_resolved(&mut self, r: crate::dns::Resolved) -> anyhow::Result<()> {
        if r == self.dns_resolved {
            return Ok(());
        }
        for (host, addrs) in &r.addrs {
            if self.dns_resolved.addrs.get(host) != Some(addrs) {
                let list: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
                tracing::info!(host = %host, addresses = %list.join(","), "hostname resolved");
            }
        }
        for (host, e) in &r.errors {
            tracing::warn!(host = %host, error = %e, "hostname not resolved; keeping its last addresses");
        }
        self.dns_resolved = r;
        self.rebuild_effective();
        self.sync(None)
    }

    /// A report from the etcd watcher: a new state to apply, or etcd out of reach (the last
    /// state stays).
    pub fn on_discovery(&mut self, ev: crate::discovery::Event) -> anyhow::Result<()> {
        use crate::discovery::Event;
        let Some(prefix) = self.file.etcd.as_ref().map(|e| e.prefix.clone()) else {
            return Ok(());
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
                Ok(())
            }
            Event::Snapshot(keys) => {
                let (changes, bad) = crate::discovery::changes(&prefix, &keys);
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
                    return Ok(());
                }
                self.discovered = changes;
                self.rebuild_effective();
                tracing::info!(
                    keys = keys.len(),
                    vips = self.effective.vips.len(),
                    "discovered state applied"
                );
                self.sync(None)
            }
        }
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
                        .any(|b| b.health != "down")
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
