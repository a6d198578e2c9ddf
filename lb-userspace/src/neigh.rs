//! Next hops of the backends. `bpf_fib_lookup` answers `NO_NEIGH` for a next hop the kernel has
//! no link-layer address for, and XDP cannot queue the packet while the kernel asks (it has no
//! socket buffer to park). So the agent makes the kernel resolve every backend's next hop
//! before it programs the backend, and marks the entry `managed` (Linux 5.16+): the kernel
//! then keeps it resolved by itself, re-probing instead of letting it age out.
//!
//! It speaks to the kernel through iproute2 (`ip -j`), which every host running lb has.
use std::{net::IpAddr, process::Command, time::Duration};

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum NeighError {
    #[error("running ip: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("`ip {args}` failed: {stderr}")]
    Ip { args: String, stderr: String },
    #[error("no route to backend {0}")]
    NoRoute(IpAddr),
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

/// Where packets to a backend go next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextHop {
    pub dev: String,
    pub hop: IpAddr,
    pub lladdr: String,
}

#[derive(Deserialize)]
struct Route {
    dev: Option<String>,
    gateway: Option<String>,
}

#[derive(Deserialize)]
struct Neigh {
    lladdr: Option<String>,
    #[serde(default)]
    state: Vec<String>,
}

fn ip(args: &[&str]) -> Result<String, NeighError> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(NeighError::Spawn)?;
    if !out.status.success() {
        return Err(NeighError::Ip {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The interface and next-hop address the kernel routes `backend` through.
pub fn route(backend: IpAddr) -> Result<(String, IpAddr), NeighError> {
    let text = ip(&["-j", "route", "get", &backend.to_string()])?;
    let routes: Vec<Route> =
        serde_json::from_str(&text).map_err(|_| NeighError::NoRoute(backend))?;
    let r = routes
        .into_iter()
        .next()
        .ok_or(NeighError::NoRoute(backend))?;
    let dev = r.dev.ok_or(NeighError::NoRoute(backend))?;
    let hop = r.gateway.and_then(|g| g.parse().ok()).unwrap_or(backend);
    Ok((dev, hop))
}

/// The resolved link-layer address of `hop` on `dev`, and whether it is static (permanent or
/// noarp: nothing to keep fresh).
fn lookup(hop: IpAddr, dev: &str) -> Result<Option<(String, bool)>, NeighError> {
    let text = ip(&["-j", "neigh", "show", "to", &hop.to_string(), "dev", dev])?;
    let entries: Vec<Neigh> = serde_json::from_str(&text).unwrap_or_default();
    Ok(entries.into_iter().find_map(|n| {
        let usable = n.state.iter().any(|s| {
            matches!(
                s.as_str(),
                "REACHABLE" | "STALE" | "DELAY" | "PROBE" | "PERMANENT" | "NOARP"
            )
        });
        let fixed = n
            .state
            .iter()
            .any(|s| matches!(s.as_str(), "PERMANENT" | "NOARP"));
        n.lladdr.filter(|_| usable).map(|l| (l, fixed))
    }))
}

/// Makes sure the kernel has, and keeps, the link-layer address of `backend`'s next hop;
/// waits up to `wait` for it.
pub fn ensure(backend: IpAddr, wait: Duration) -> Result<NextHop, NeighError> {
    let (dev, hop) = route(backend)?;
    match lookup(hop, &dev)? {
        Some((lladdr, true)) => return Ok(NextHop { dev, hop, lladdr }),
        Some((_, false)) | None => {
            // `managed` asks the kernel to resolve now and to keep the entry resolved.
            ip(&["neigh", "replace", &hop.to_string(), "dev", &dev, "managed"])?;
        }
    }
    let start = std::time::Instant::now();
    loop {
        if let Some((lladdr, _)) = lookup(hop, &dev)? {
            return Ok(NextHop { dev, hop, lladdr });
        }
        if start.elapsed() >= wait {
            return Err(NeighError::Unresolved {
                backend,
                hop,
                dev,
                waited: wait,
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The next hop as `xdp_lb` keeps it in a backend's entry: egress ifindex, MTU and MACs, read
/// from the kernel (sysfs is the current network namespace's).
pub fn cached_hop(h: &NextHop) -> Option<lb_common::NextHop> {
    let ifindex = crate::dataplane::nix_ifindex(&h.dev)?;
    let sys = |f: &str| std::fs::read_to_string(format!("/sys/class/net/{}/{f}", h.dev)).ok();
    let mtu: u32 = sys("mtu")?.trim().parse().ok()?;
    Some(lb_common::NextHop {
        ifindex,
        mtu,
        dmac: parse_mac(&h.lladdr)?,
        smac: parse_mac(sys("address")?.trim())?,
    })
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_parse() {
        assert_eq!(parse_mac("02:00:0a:ff:10:01"), Some([2, 0, 10, 255, 16, 1]));
        assert_eq!(parse_mac("02:00:0a:ff:10"), None);
        assert_eq!(parse_mac("02:00:0a:ff:10:01:05"), None);
        assert_eq!(parse_mac("zz:00:0a:ff:10:01"), None);
    }
}
