//! Backends' next hops, which their map entries carry so that the program need not ask the
//! kernel's route lookup per packet: resolved when a backend first appears, then kept current
//! by the periodic check.
use std::{net::IpAddr, time::Duration};

use lb_common::NextHop;

use super::Agent;
use crate::neigh;

/// How long the agent waits for a new backend's next hop to resolve before it warns.
const NEIGH_WAIT: Duration = Duration::from_secs(3);

impl Agent {
    /// The backend's next hop for its map entry: resolved once here (waiting up to
    /// NEIGH_WAIT), then kept current by [`Agent::update_hops`].
    pub(super) fn resolve(&mut self, addr: IpAddr) -> NextHop {
        if let Some(h) = self.hops.get(&addr) {
            return h.unwrap_or_default();
        }
        let hop = match neigh::ensure(addr, NEIGH_WAIT) {
            Ok(h) => {
                tracing::info!(backend = %addr, dev = %h.dev, hop = %h.hop, lladdr = %h.lladdr, "next hop resolved");
                self.usable_hop(&h)
            }
            Err(e) => {
                tracing::warn!(backend = %addr, error = %e, "next hop not resolved yet; the kernel keeps trying, packets to it are dropped and counted (drop_no_neigh) until it answers");
                None
            }
        };
        self.hops.insert(addr, hop);
        hop.unwrap_or_default()
    }

    /// A next hop the program may use without asking the kernel: out of an interface lb is
    /// attached to (else the route lookup stays the program's way).
    fn usable_hop(&self, h: &neigh::NextHop) -> Option<NextHop> {
        if !self.effective.agent.interfaces.contains(&h.dev) {
            return None;
        }
        neigh::cached_hop(h)
    }

    /// Fresh next hops from the periodic check: entries whose hop changed are rewritten.
    pub fn update_hops(
        &mut self,
        fresh: Vec<(IpAddr, Option<neigh::NextHop>)>,
    ) -> anyhow::Result<()> {
        let mut changed = false;
        for (addr, h) in fresh {
            let hop = h.as_ref().and_then(|h| self.usable_hop(h));
            if self.hops.get(&addr) != Some(&hop) {
                tracing::info!(backend = %addr, ?hop, "next hop changed");
                self.hops.insert(addr, hop);
                changed = true;
            }
        }
        if changed { self.sync(None) } else { Ok(()) }
    }

    /// Backends whose next hop the agent keeps an eye on.
    pub fn backend_addresses(&self) -> Vec<IpAddr> {
        let mut v: Vec<IpAddr> = self
            .effective
            .vips
            .iter()
            .flat_map(|v| v.backends.iter().map(|b| b.address))
            .collect();
        v.sort();
        v.dedup();
        v
    }
}
