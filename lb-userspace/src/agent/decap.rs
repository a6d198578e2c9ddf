//! `lb decap`: the backend side of IP-in-IP and GUE, for hosts whose kernel has no tunnel
//! modules.
use std::net::IpAddr;

use anyhow::{Context, bail};
use lb_common::program_names;
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    config,
    dataplane::{Dataplane, nix_ifindex},
};

/// `lb decap`: strip IP-in-IP, and GUE to `gue_port` (0: none), on this backend host's
/// `interface` until SIGINT/SIGTERM.
pub fn decap(
    interface: &str,
    mode: config::XdpMode,
    extra: &[IpAddr],
    gue_port: u16,
) -> anyhow::Result<()> {
    let missing = super::missing_capabilities();
    if !missing.is_empty() {
        bail!(
            "lb decap lacks {}: it needs {} to load and attach its XDP program",
            missing.join(" and "),
            super::CAPABILITIES.join(", ")
        );
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
    dp.set_gue_port(gue_port)?;
    let used = dp.attach(interface, mode)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        // Handlers first, "ready" after (see `run`).
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let gue = match gue_port {
            0 => String::new(),
            p => format!(", GUE on UDP port {p}"),
        };
        println!(
            "lb: ready: decapsulating on {interface} ({used}) for {}{gue}",
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

/// The addresses of an interface, from the kernel over rtnetlink.
fn interface_addresses(interface: &str) -> anyhow::Result<Vec<IpAddr>> {
    let ifindex =
        nix_ifindex(interface).with_context(|| format!("no interface named {interface:?}"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let kernel = crate::neigh::Kernel::connect()?;
        Ok(kernel.addresses(ifindex).await?)
    })
}
