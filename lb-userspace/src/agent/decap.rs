//! `lb decap`: the backend side of IP-in-IP, for hosts whose kernel has no tunnel module.
use std::net::IpAddr;

use anyhow::bail;
use lb_common::program_names;
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    config,
    dataplane::{Dataplane, nix_ifindex},
};

/// `lb decap`: strip IP-in-IP on this backend host's `interface` until SIGINT/SIGTERM.
pub fn decap(interface: &str, mode: config::XdpMode, extra: &[IpAddr]) -> anyhow::Result<()> {
    if unsafe { libc::geteuid() } != 0 {
        bail!("lb decap needs root (CAP_BPF and CAP_NET_ADMIN to load and attach XDP programs)");
    }
    if nix_ifindex(interface).is_none() {
        bail!("no interface named {interface:?}");
    }
    let mut addrs = interface_addresses(interface)?;
    addrs.extend_from_slice(extra);
    if addrs.is_empty() {
        bail!("{interface} has no address: encapsulated packets could not be addressed to it");
    }
    let mut dp = Dataplane::load(program_names::DECAP)?;
    for a in &addrs {
        dp.add_decap_address(*a)?;
    }
    let used = dp.attach(interface, mode)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        // Handlers first, "ready" after (see `run`).
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        println!(
            "lb: ready: decapsulating on {interface} ({used}) for {}",
            addrs
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        anyhow::Ok(())
    })?;
    drop(dp);
    Ok(())
}

/// The addresses of an interface (iproute2's JSON).
fn interface_addresses(interface: &str) -> anyhow::Result<Vec<IpAddr>> {
    let out = std::process::Command::new("ip")
        .args(["-j", "addr", "show", "dev", interface])
        .output()?;
    if !out.status.success() {
        bail!(
            "ip addr show dev {interface}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let mut addrs = Vec::new();
    for link in v.as_array().into_iter().flatten() {
        for a in link["addr_info"].as_array().into_iter().flatten() {
            if let Some(ip) = a["local"].as_str().and_then(|s| s.parse::<IpAddr>().ok()) {
                addrs.push(ip);
            }
        }
    }
    Ok(addrs)
}
