//! Follows the kernel's routes, neighbours and links by their rtnetlink events, so that a
//! backend's next hop and the attached interfaces are current without polling: an event
//! is handled as it comes (a neighbour event re-resolves only the backends behind that
//! neighbour), and a slow full refresh guards against events the socket dropped.
use std::{
    collections::{BTreeSet, HashMap},
    net::IpAddr,
    time::Duration,
};

use futures_util::{FutureExt, StreamExt};
use rtnetlink::{
    MulticastGroup,
    packet_core::NetlinkPayload,
    packet_route::{
        RouteNetlinkMessage,
        neighbour::{NeighbourAddress, NeighbourAttribute},
    },
};
use tokio::sync::{mpsc::UnboundedSender, watch};

use super::{Kernel, Link, NeighError, NextHop};

/// How often everything is resolved again regardless of events.
const REFRESH: Duration = Duration::from_secs(30);
/// Events handled in one go before resolving (a burst of events resolves once).
const BATCH: usize = 1024;

/// What changed.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Backends whose next hop changed (`None`: no longer resolved, with why).
    Hops(Vec<(IpAddr, Result<NextHop, String>)>),
    /// Watched interfaces that appeared (`Some`) or went away (`None`).
    Links(Vec<(String, Option<Link>)>),
}

/// Which backends an event may have moved.
enum Scope {
    Nothing,
    /// Backends whose next hop is this neighbour (and those with no next hop yet).
    Neighbour(IpAddr),
    /// Every backend, and the watched links.
    All,
}

fn scope(msg: &RouteNetlinkMessage) -> Scope {
    match msg {
        RouteNetlinkMessage::NewNeighbour(n) | RouteNetlinkMessage::DelNeighbour(n) => n
            .attributes
            .iter()
            .find_map(|a| match a {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => {
                    Some(Scope::Neighbour(IpAddr::V4(*a)))
                }
                NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => {
                    Some(Scope::Neighbour(IpAddr::V6(*a)))
                }
                _ => None,
            })
            .unwrap_or(Scope::Nothing),
        RouteNetlinkMessage::NewRoute(_)
        | RouteNetlinkMessage::DelRoute(_)
        | RouteNetlinkMessage::NewLink(_)
        | RouteNetlinkMessage::DelLink(_) => Scope::All,
        _ => Scope::Nothing,
    }
}

/// The watcher's view: each backend's last next hop and each watched interface.
struct View {
    kernel: Kernel,
    hops: HashMap<IpAddr, Result<NextHop, String>>,
    links: HashMap<String, Option<Link>>,
}

impl View {
    /// Resolves `backends` again; the ones whose answer changed.
    async fn resolve(
        &mut self,
        backends: impl IntoIterator<Item = IpAddr>,
    ) -> Vec<(IpAddr, Result<NextHop, String>)> {
        let mut changed = Vec::new();
        for b in backends {
            let now = match self.kernel.next_hop(b).await {
                Ok(h) => Ok(h),
                Err(e @ NeighError::Netlink(_)) => {
                    tracing::warn!(backend = %b, error = %e, "asking the kernel for a next hop");
                    continue;
                }
                Err(e) => Err(e.to_string()),
            };
            if self.hops.get(&b) != Some(&now) {
                self.hops.insert(b, now.clone());
                changed.push((b, now));
            }
        }
        changed
    }

    /// Looks the watched interfaces up again; the ones that appeared, went or changed.
    async fn relink(&mut self) -> Vec<(String, Option<Link>)> {
        let mut changed = Vec::new();
        let names: Vec<String> = self.links.keys().cloned().collect();
        for name in names {
            let now = match self.kernel.link_by_name(&name).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(interface = %name, error = %e, "asking the kernel for a link");
                    continue;
                }
            };
            if self.links.get(&name) != Some(&now) {
                self.links.insert(name.clone(), now.clone());
                changed.push((name, now));
            }
        }
        changed
    }
}

/// Starts the watcher: it resolves the backends it is given (and again whenever the set
/// changes), and sends what changed. `links` are the interfaces to watch, as they are now.
pub fn spawn(
    mut backends: watch::Receiver<BTreeSet<IpAddr>>,
    links: HashMap<String, Option<Link>>,
    hops: HashMap<IpAddr, Result<NextHop, String>>,
    tx: UnboundedSender<Event>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let (conn, handle, mut events) = rtnetlink::new_multicast_connection(&[
        MulticastGroup::Link,
        MulticastGroup::Neigh,
        MulticastGroup::Ipv4Route,
        MulticastGroup::Ipv6Route,
    ])?;
    Ok(tokio::spawn(async move {
        let conn = tokio::spawn(conn);
        let mut view = View {
            kernel: Kernel::with_handle(handle),
            hops,
            links,
        };
        let mut refresh = tokio::time::interval(REFRESH);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let mut all = false;
            let mut neighbours = BTreeSet::new();
            let mut note = |msg: &RouteNetlinkMessage| match scope(msg) {
                Scope::Nothing => {}
                Scope::Neighbour(n) => {
                    neighbours.insert(n);
                }
                Scope::All => all = true,
            };
            tokio::select! {
                changed = backends.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                ev = events.next() => {
                    let Some((first, _)) = ev else { break };
                    if let NetlinkPayload::InnerMessage(m) = &first.payload {
                        note(m);
                    }
                    for _ in 0..BATCH {
                        let Some(Some((m, _))) = events.next().now_or_never() else { break };
                        if let NetlinkPayload::InnerMessage(m) = &m.payload {
                            note(m);
                        }
                    }
                }
                _ = refresh.tick() => all = true,
            }
            let wanted: BTreeSet<IpAddr> = backends.borrow_and_update().clone();
            view.hops.retain(|b, _| wanted.contains(b));
            let links = if all { view.relink().await } else { Vec::new() };
            let stale: Vec<IpAddr> = wanted
                .iter()
                .copied()
                .filter(|b| match view.hops.get(b) {
                    None | Some(Err(_)) => true,
                    Some(Ok(h)) => all || neighbours.contains(&h.hop),
                })
                .collect();
            let hops = view.resolve(stale).await;
            if !links.is_empty() && tx.send(Event::Links(links)).is_err() {
                break;
            }
            if !hops.is_empty() && tx.send(Event::Hops(hops)).is_err() {
                break;
            }
        }
        conn.abort();
    }))
}
