//! Next hops of the backends, from the kernel over rtnetlink. `bpf_fib_lookup` answers
//! `NO_NEIGH` for a next hop the kernel has no link-layer address for, and XDP cannot queue the
//! packet while the kernel asks (it has no socket buffer to park). So the agent makes the
//! kernel resolve every backend's next hop, and marks the neighbour entry `managed` (Linux
//! 5.16+): the kernel then keeps it resolved by itself, re-probing instead of letting it age
//! out. [`watch`] follows routes, neighbours and links by their events.
use std::{net::IpAddr, time::Duration};

use futures_util::TryStreamExt;
use rtnetlink::{
    Handle, RouteMessageBuilder,
    packet_route::{
        link::LinkAttribute,
        neighbour::{
            NeighbourAddress, NeighbourAttribute, NeighbourExtFlags, NeighbourFlags, NeighbourState,
        },
        route::{RouteAddress, RouteAttribute},
    },
};

mod probes;
pub mod watch;

pub use probes::{PROBE_DEVICE, PROBE_PEER, PROBE_RULE_PRIORITY, PROBE_TABLE};

#[derive(Debug, thiserror::Error)]
pub enum NeighError {
    #[error("netlink: {0}")]
    Netlink(String),
    #[error("no route to backend {0}")]
    NoRoute(IpAddr),
    #[error("the route to backend {backend} leaves through interface {ifindex}, which is gone")]
    NoLink { backend: IpAddr, ifindex: u32 },
    #[error(
        "the next hop {hop} of backend {backend} (dev {dev}) did not resolve within {waited:?}"
    )]
    Unresolved {
        backend: IpAddr,
        hop: IpAddr,
        dev: String,
        waited: Duration,
    },
}

fn netlink(e: rtnetlink::Error) -> NeighError {
    NeighError::Netlink(e.to_string())
}

/// A link-layer (MAC) address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mac(pub [u8; 6]);

impl std::fmt::Display for Mac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl Mac {
    fn from_bytes(b: &[u8]) -> Option<Mac> {
        Some(Mac(b.try_into().ok()?))
    }
}

/// Where packets to a backend go next, and what the program needs to send them there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextHop {
    pub dev: String,
    pub ifindex: u32,
    pub hop: IpAddr,
    /// The next hop's MAC.
    pub lladdr: Mac,
    /// The egress interface's own MAC and MTU.
    pub smac: Mac,
    pub mtu: u32,
}

impl NextHop {
    /// The next hop as `xdp_lb` keeps it in a backend's entry.
    pub fn cached(&self) -> lb_common::NextHop {
        lb_common::NextHop {
            ifindex: self.ifindex,
            mtu: self.mtu,
            dmac: self.lladdr.0,
            smac: self.smac.0,
        }
    }
}

/// An interface as the kernel describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub name: String,
    pub ifindex: u32,
    pub mtu: u32,
    pub mac: Mac,
}

/// Requests to the kernel's routing tables, on one rtnetlink connection.
#[derive(Clone)]
pub struct Kernel {
    handle: Handle,
}

impl Kernel {
    /// A connection of its own (its task runs on the current tokio runtime).
    pub fn connect() -> std::io::Result<Kernel> {
        let (conn, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(conn);
        Ok(Kernel { handle })
    }

    pub fn with_handle(handle: Handle) -> Kernel {
        Kernel { handle }
    }

    /// The interface and next-hop address the kernel routes `backend` through (as `ip route
    /// get`).
    pub async fn route(&self, backend: IpAddr) -> Result<(u32, IpAddr), NeighError> {
        let prefix = if backend.is_ipv4() { 32 } else { 128 };
        let msg = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(backend, prefix)
            .map_err(|e| NeighError::Netlink(e.to_string()))?
            .build();
        let mut routes = self.handle.route().get(msg).execute();
        let route = match routes.try_next().await {
            Ok(Some(r)) => r,
            // ENETUNREACH and its kin: the kernel has no route.
            Ok(None) | Err(rtnetlink::Error::NetlinkError(_)) => {
                return Err(NeighError::NoRoute(backend));
            }
            Err(e) => return Err(netlink(e)),
        };
        let mut oif = None;
        let mut hop = backend;
        for a in &route.attributes {
            match a {
                RouteAttribute::Oif(i) => oif = Some(*i),
                RouteAttribute::Gateway(RouteAddress::Inet(g)) => hop = IpAddr::V4(*g),
                RouteAttribute::Gateway(RouteAddress::Inet6(g)) => hop = IpAddr::V6(*g),
                _ => {}
            }
        }
        Ok((oif.ok_or(NeighError::NoRoute(backend))?, hop))
    }

    /// The interface with index `ifindex`, if there is one.
    pub async fn link(&self, ifindex: u32) -> Result<Option<Link>, NeighError> {
        let req = self.handle.link().get().match_index(ifindex).execute();
        Self::one_link(req).await
    }

    /// The interface named `name`, if there is one.
    pub async fn link_by_name(&self, name: &str) -> Result<Option<Link>, NeighError> {
        let req = self.handle.link().get().match_name(name).execute();
        Self::one_link(req).await
    }

    async fn one_link(
        mut req: impl futures_util::Stream<
            Item = Result<rtnetlink::packet_route::link::LinkMessage, rtnetlink::Error>,
        > + Unpin,
    ) -> Result<Option<Link>, NeighError> {
        let msg = match req.try_next().await {
            Ok(Some(m)) => m,
            // ENODEV: no such interface.
            Ok(None) | Err(rtnetlink::Error::NetlinkError(_)) => return Ok(None),
            Err(e) => return Err(netlink(e)),
        };
        Ok(Some(link_of(&msg)))
    }

    /// The addresses on interface `ifindex` (the local ones, as `ip addr` shows them).
    pub async fn addresses(&self, ifindex: u32) -> Result<Vec<IpAddr>, NeighError> {
        use rtnetlink::packet_route::address::AddressAttribute;
        let mut req = self
            .handle
            .address()
            .get()
            .set_link_index_filter(ifindex)
            .execute();
        let mut out = Vec::new();
        while let Some(a) = req.try_next().await.map_err(netlink)? {
            // IPv4 names its own address `Local` (`Address` is the peer's on point-to-point
            // links); IPv6 has only `Address`.
            let local = a.attributes.iter().find_map(|x| match x {
                AddressAttribute::Local(ip) => Some(*ip),
                _ => None,
            });
            let addr = a.attributes.iter().find_map(|x| match x {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            });
            if let Some(ip) = local.or(addr) {
                out.push(ip);
            }
        }
        Ok(out)
    }

    /// The kernel's entry for `hop` on `ifindex`: its MAC if usable, whether it is static
    /// (permanent or noarp: nothing to keep fresh), and whether it is managed.
    async fn neighbour(&self, ifindex: u32, hop: IpAddr) -> Result<Option<Entry>, NeighError> {
        let want = match hop {
            IpAddr::V4(a) => NeighbourAddress::Inet(a),
            IpAddr::V6(a) => NeighbourAddress::Inet6(a),
        };
        let mut all = self.handle.neighbours().get().execute();
        while let Some(n) = all.try_next().await.map_err(netlink)? {
            if n.header.ifindex != ifindex {
                continue;
            }
            let mut dst = None;
            let mut lladdr = None;
            let mut managed = false;
            for a in &n.attributes {
                match a {
                    NeighbourAttribute::Destination(d) => dst = Some(d.clone()),
                    NeighbourAttribute::LinkLayerAddress(l) => lladdr = Mac::from_bytes(l),
                    NeighbourAttribute::ExtFlags(f) => {
                        managed = f.contains(NeighbourExtFlags::Managed)
                    }
                    _ => {}
                }
            }
            if dst.as_ref() != Some(&want) {
                continue;
            }
            let state = n.header.state;
            let usable = matches!(
                state,
                NeighbourState::Reachable
                    | NeighbourState::Stale
                    | NeighbourState::Delay
                    | NeighbourState::Probe
                    | NeighbourState::Permanent
                    | NeighbourState::Noarp
            );
            return Ok(Some(Entry {
                lladdr: lladdr.filter(|_| usable),
                fixed: matches!(state, NeighbourState::Permanent | NeighbourState::Noarp),
                managed,
            }));
        }
        Ok(None)
    }

    /// Asks the kernel to resolve `hop` now and to keep it resolved (a managed entry).
    async fn keep_resolved(&self, ifindex: u32, hop: IpAddr) -> Result<(), NeighError> {
        let mut req = self
            .handle
            .neighbours()
            .add(ifindex, hop)
            .state(NeighbourState::None)
            .flags(NeighbourFlags::Use)
            .replace();
        req.message_mut()
            .attributes
            .push(NeighbourAttribute::ExtFlags(NeighbourExtFlags::Managed));
        req.execute().await.map_err(netlink)
    }

    /// `backend`'s next hop as it is now. An unresolved one gets a managed entry (once: an
    /// entry that is managed already is the kernel's to resolve) and is `Unresolved`.
    pub async fn next_hop(&self, backend: IpAddr) -> Result<NextHop, NeighError> {
        let (ifindex, hop) = self.route(backend).await?;
        let link = self
            .link(ifindex)
            .await?
            .ok_or(NeighError::NoLink { backend, ifindex })?;
        let entry = self.neighbour(ifindex, hop).await?;
        if let Some(Entry {
            lladdr: Some(lladdr),
            fixed,
            managed,
        }) = entry
        {
            if !fixed && !managed {
                self.keep_resolved(ifindex, hop).await?;
            }
            return Ok(NextHop {
                dev: link.name,
                ifindex,
                hop,
                lladdr,
                smac: link.mac,
                mtu: link.mtu,
            });
        }
        if !entry.is_some_and(|e| e.managed) {
            self.keep_resolved(ifindex, hop).await?;
        }
        Err(NeighError::Unresolved {
            backend,
            hop,
            dev: link.name,
            waited: Duration::ZERO,
        })
    }

    /// [`Kernel::next_hop`], waiting up to `wait` for the kernel to resolve it.
    pub async fn resolve_within(
        &self,
        backend: IpAddr,
        wait: Duration,
    ) -> Result<NextHop, NeighError> {
        let start = tokio::time::Instant::now();
        loop {
            match self.next_hop(backend).await {
                Err(NeighError::Unresolved { hop, dev, .. }) if start.elapsed() >= wait => {
                    return Err(NeighError::Unresolved {
                        backend,
                        hop,
                        dev,
                        waited: wait,
                    });
                }
                Err(NeighError::Unresolved { .. }) => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                r => return r,
            }
        }
    }
}

/// What the kernel's neighbour table says of one next hop.
#[derive(Debug, Clone, Copy)]
struct Entry {
    lladdr: Option<Mac>,
    fixed: bool,
    managed: bool,
}

fn link_of(msg: &rtnetlink::packet_route::link::LinkMessage) -> Link {
    let mut l = Link {
        name: String::new(),
        ifindex: msg.header.index,
        mtu: 0,
        mac: Mac::default(),
    };
    for a in &msg.attributes {
        match a {
            LinkAttribute::IfName(n) => l.name = n.clone(),
            LinkAttribute::Mtu(m) => l.mtu = *m,
            LinkAttribute::Address(a) => l.mac = Mac::from_bytes(a).unwrap_or_default(),
            _ => {}
        }
    }
    l
}

/// Makes sure the kernel has, and keeps, the link-layer address of `backend`'s next hop;
/// waits up to `wait` for it. Blocking, for callers outside the agent's runtime (a thread
/// inside a network namespace: its netlink socket is that namespace's).
pub fn ensure(backend: IpAddr, wait: Duration) -> Result<NextHop, NeighError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| NeighError::Netlink(e.to_string()))?;
    rt.block_on(async {
        let k = Kernel::connect().map_err(|e| NeighError::Netlink(e.to_string()))?;
        k.resolve_within(backend, wait).await
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Routes, neighbours, links and addresses come over netlink: no `ip` process anywhere in
    /// the agent.
    #[test]
    fn the_agent_spawns_no_ip_processes() {
        let needle = concat!("Command::new(", "\"ip\")");
        let mut dirs = vec![std::path::PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src"
        ))];
        let mut read = 0;
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    dirs.push(p);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    read += 1;
                    let text = std::fs::read_to_string(&p).unwrap();
                    assert!(!text.contains(needle), "{} spawns ip", p.display());
                }
            }
        }
        assert!(read > 20, "read only {read} files");
    }

    #[test]
    fn macs_print_as_the_kernel_does() {
        assert_eq!(Mac([2, 0, 10, 255, 16, 1]).to_string(), "02:00:0a:ff:10:01");
        assert_eq!(Mac::from_bytes(&[1, 2, 3]), None);
    }
}
