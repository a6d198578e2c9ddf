//! Backends' next hops, which their map entries carry so that the program need not ask the
//! kernel's route lookup per packet. The control loop never waits for the kernel: it writes
//! what the netlink watcher last found ([`crate::neigh::watch`]), and a backend whose hop is
//! not known yet takes the program's `bpf_fib_lookup` until the watcher's answer arrives.
use std::{
    collections::{BTreeSet, HashMap},
    net::IpAddr,
};

use lb_common::NextHop;
use tokio::sync::watch;

use super::Agent;
use crate::neigh;

/// The backends' next hops as their entries carry them, and the set of backends the
/// watcher follows.
#[derive(Default)]
pub struct NextHops {
    /// By backend address (`None`: unresolved, or not out of an attached interface).
    cached: HashMap<IpAddr, Option<NextHop>>,
    /// By backend address: its next hop's address and interface, as the kernel routes it.
    routes: HashMap<IpAddr, (IpAddr, String)>,
    targets: watch::Sender<BTreeSet<IpAddr>>,
}

impl NextHops {
    pub fn get(&self, addr: IpAddr) -> Option<NextHop> {
        self.cached.get(&addr).copied().flatten()
    }

    /// Why `addr` cannot be an `l2dsr` backend, if it cannot: the packet must go to the
    /// backend itself, out of an attached interface, with its Ethernet address known.
    pub fn l2dsr_refusal(&self, addr: IpAddr, interfaces: &[String]) -> Option<String> {
        let Some((hop, dev)) = self.routes.get(&addr) else {
            return Some(format!(
                "l2dsr: no route to {addr} resolved yet (the kernel's neighbour entry for it)"
            ));
        };
        if *hop != addr {
            return Some(format!(
                "l2dsr: {addr} is reached through {hop} (dev {dev}), not on a connected subnet: l2dsr reaches only backends on a segment of an attached interface"
            ));
        }
        if !interfaces.contains(dev) {
            return Some(format!(
                "l2dsr: {addr} is on {dev}, which is not one of agent.interfaces"
            ));
        }
        self.get(addr)
            .is_none()
            .then(|| format!("l2dsr: the Ethernet address of {addr} is not resolved yet"))
    }

    /// The backends to follow, as they change.
    pub fn subscribe(&self) -> watch::Receiver<BTreeSet<IpAddr>> {
        self.targets.subscribe()
    }

    /// Takes next hops as found. One the program may use without asking the kernel leaves
    /// through one of `interfaces` (else the route lookup stays the program's way). Returns
    /// whether any entry must change.
    pub fn take(
        &mut self,
        found: Vec<(IpAddr, Result<neigh::NextHop, String>)>,
        interfaces: &[String],
    ) -> bool {
        let mut changed = false;
        for (addr, h) in found {
            let hop = match &h {
                Ok(h) => {
                    tracing::info!(backend = %addr, dev = %h.dev, hop = %h.hop, lladdr = %h.lladdr, "next hop");
                    let route = (h.hop, h.dev.clone());
                    if self.routes.get(&addr) != Some(&route) {
                        self.routes.insert(addr, route);
                        changed = true;
                    }
                    interfaces.contains(&h.dev).then(|| h.cached())
                }
                Err(e) => {
                    tracing::warn!(backend = %addr, error = %e, "next hop not resolved; the kernel keeps trying, packets to it are dropped and counted (drop_no_neigh) until it answers");
                    None
                }
            };
            if self.cached.get(&addr) != Some(&hop) {
                self.cached.insert(addr, hop);
                changed = true;
            }
        }
        changed
    }

    /// The backends of the effective config: the ones gone are forgotten, and the watcher is
    /// told where the set changed.
    pub fn follow(&mut self, backends: BTreeSet<IpAddr>) {
        self.cached.retain(|a, _| backends.contains(a));
        self.routes.retain(|a, _| backends.contains(a));
        self.targets.send_if_modified(|s| {
            let changed = *s != backends;
            *s = backends;
            changed
        });
    }
}

impl Agent {
    /// Takes next hops as found, without writing the data path (before the first sync).
    pub fn set_hops(&mut self, found: Vec<(IpAddr, Result<neigh::NextHop, String>)>) -> bool {
        self.hops.take(found, &self.effective.agent.interfaces)
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hop(dev: &str, mac: u8) -> neigh::NextHop {
        neigh::NextHop {
            dev: dev.into(),
            ifindex: 2,
            hop: "198.18.0.11".parse().unwrap(),
            lladdr: neigh::Mac([2, 0, 0, 0, 0, mac]),
            smac: neigh::Mac([2, 0, 0, 0, 0, 1]),
            mtu: 1500,
        }
    }

    #[test]
    fn hops_are_cached_only_out_of_attached_interfaces_and_changes_are_told() {
        let mut h = NextHops::default();
        let mut watcher = h.subscribe();
        let (a, b): (IpAddr, IpAddr) = (
            "198.18.0.11".parse().unwrap(),
            "198.18.0.12".parse().unwrap(),
        );
        let eth0 = ["eth0".to_string()];
        assert!(h.take(vec![(a, Ok(hop("eth0", 0x11)))], &eth0));
        assert_eq!(h.get(a).unwrap().dmac, [2, 0, 0, 0, 0, 0x11]);
        assert!(
            !h.take(vec![(a, Ok(hop("eth0", 0x11)))], &eth0),
            "the same hop"
        );
        assert!(h.take(vec![(a, Ok(hop("eth0", 0x22)))], &eth0), "a new MAC");
        // Out of an interface lb is not on: the program asks the kernel instead.
        assert!(h.take(vec![(b, Ok(hop("eth9", 0x33)))], &eth0));
        assert_eq!(h.get(b), None);
        assert!(h.take(vec![(a, Err("unresolved".into()))], &eth0));
        assert_eq!(h.get(a), None);
        h.follow([a, b].into());
        assert!(watcher.has_changed().unwrap());
        watcher.borrow_and_update();
        h.follow([a, b].into());
        assert!(!watcher.has_changed().unwrap(), "the same set is not told");
        h.take(vec![(b, Ok(hop("eth0", 0x44)))], &eth0);
        h.follow([a].into());
        assert_eq!(h.get(b), None, "a backend gone is forgotten");
        assert!(watcher.has_changed().unwrap());
    }
}
