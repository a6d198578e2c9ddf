//! Backends' next hops, which their map entries carry so that the program need not ask the
//! kernel's route lookup per packet. The control loop never waits for the kernel: it writes
//! what the netlink watcher last found ([`crate::neigh::watch`]), and a backend whose hop is
//! not known yet takes the program's `bpf_fib_lookup` until the watcher's answer arrives.
use std::{collections::BTreeSet, net::IpAddr};

use lb_common::NextHop;

use super::Agent;
use crate::neigh;

impl Agent {
    /// The backend's next hop for its map entry, as last found.
    pub(super) fn resolve(&self, addr: IpAddr) -> NextHop {
        self.hops.get(&addr).copied().flatten().unwrap_or_default()
    }

    /// The backend's next hop as its entry carries it, if it carries one.
    pub fn cached_hop(&self, addr: IpAddr) -> Option<NextHop> {
        self.hops.get(&addr).copied().flatten()
    }

    /// A next hop the program may use without asking the kernel: out of an interface lb is
    /// attached to (else the route lookup stays the program's way).
    fn usable_hop(&self, h: &neigh::NextHop) -> Option<NextHop> {
        self.effective
            .agent
            .interfaces
            .contains(&h.dev)
            .then(|| h.cached())
    }

    /// Takes next hops as found, without writing the data path (before the first sync).
    pub fn set_hops(&mut self, found: Vec<(IpAddr, Result<neigh::NextHop, String>)>) -> bool {
        let mut changed = false;
        for (addr, h) in found {
            let hop = match &h {
                Ok(h) => {
                    tracing::info!(backend = %addr, dev = %h.dev, hop = %h.hop, lladdr = %h.lladdr, "next hop");
                    self.usable_hop(h)
                }
                Err(e) => {
                    tracing::warn!(backend = %addr, error = %e, "next hop not resolved; the kernel keeps trying, packets to it are dropped and counted (drop_no_neigh) until it answers");
                    None
                }
            };
            if self.hops.get(&addr) != Some(&hop) {
                self.hops.insert(addr, hop);
                changed = true;
            }
        }
        changed
    }

    /// Next hops that changed, from the watcher: the entries concerned are rewritten.
    pub fn update_hops(
        &mut self,
        fresh: Vec<(IpAddr, Result<neigh::NextHop, String>)>,
    ) -> anyhow::Result<()> {
        if self.set_hops(fresh) {
            self.sync(None)
        } else {
            Ok(())
        }
    }

    /// Backends whose next hop the watcher keeps current.
    pub fn backend_addresses(&self) -> BTreeSet<IpAddr> {
        self.effective
            .vips
            .iter()
            .flat_map(|v| v.backends.iter().map(|b| b.address))
            .collect()
    }

    /// Tells the watcher the backends of the effective config, where they changed.
    pub(super) fn publish_backends(&mut self) {
        let now = self.backend_addresses();
        self.hops.retain(|a, _| now.contains(a));
        self.hop_targets.send_if_modified(|s| {
            let changed = *s != now;
            *s = now;
            changed
        });
    }
}
