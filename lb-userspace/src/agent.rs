//! `lb run`: load, program the maps from the config, attach, serve the API, and detach
//! cleanly on SIGINT/SIGTERM.
use std::{
    net::IpAddr,
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context, bail};
use lb_common::program_names;
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    api,
    config::{self, Config},
    dataplane::{self, Dataplane, nix_ifindex},
    maglev, neigh,
    stats::{self, Outcome, Stats, VipStats},
};

/// How long `lb run` waits for a backend's next hop to resolve before it warns.
const NEIGH_WAIT: Duration = Duration::from_secs(3);
/// How often the agent checks that every backend's next hop is still resolved.
const NEIGH_CHECK: Duration = Duration::from_secs(5);

/// What the agent programmed: VIP and backend ids, for the counters' labels.
struct Programmed {
    vips: Vec<(config::Vip, u32, Vec<u32>)>,
}

/// Where `bpf_fib_lookup` needs forwarding on, and it is off: the sysctl to set.
pub fn forwarding_problems(cfg: &Config) -> Vec<String> {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .map(|s| s.trim() == "1")
            .unwrap_or(false)
    };
    let mut out = Vec::new();
    let v4 = cfg.vips.iter().any(|v| v.address.is_ipv4());
    let v6 = cfg.vips.iter().any(|v| v.address.is_ipv6());
    for i in &cfg.agent.interfaces {
        if v4 && !read(&format!("/proc/sys/net/ipv4/conf/{i}/forwarding")) {
            out.push(format!("net.ipv4.conf.{i}.forwarding=1"));
        }
        if v6 && !read(&format!("/proc/sys/net/ipv6/conf/{i}/forwarding")) {
            out.push(format!("net.ipv6.conf.{i}.forwarding=1"));
        }
    }
    out
}

fn program(dp: &mut Dataplane, cfg: &Config) -> anyhow::Result<Programmed> {
    dp.set_sources(cfg.agent.source_v4, cfg.agent.source_v6)?;
    for i in &cfg.agent.interfaces {
        let idx = nix_ifindex(i).with_context(|| format!("no interface named {i:?}"))?;
        dp.allow_egress(idx)?;
    }
    let mut next_backend = 0u32;
    let mut vips = Vec::new();
    for (vip_id, vip) in cfg.vips.iter().enumerate() {
        let mut ids = Vec::new();
        for b in &vip.backends {
            match neigh::ensure(b.address, NEIGH_WAIT) {
                Ok(h) => {
                    tracing::info!(backend = %b.address, dev = %h.dev, hop = %h.hop, lladdr = %h.lladdr, "next hop resolved")
                }
                Err(e) => {
                    tracing::warn!(backend = %b.address, error = %e, "next hop not resolved yet; the kernel keeps trying, packets to it are dropped and counted (drop_no_neigh) until it answers")
                }
            }
            dp.set_backend(next_backend, b.address)?;
            ids.push(next_backend);
            next_backend += 1;
        }
        let weights: Vec<(IpAddr, u32)> =
            vip.backends.iter().map(|b| (b.address, b.weight)).collect();
        let ring: Vec<u32> = maglev::build(&weights, vip.ring_size)
            .into_iter()
            .map(|i| {
                ids.get(i as usize)
                    .copied()
                    .unwrap_or(lb_common::NO_BACKEND)
            })
            .collect();
        let key = dataplane::vip_key(vip.address.ip(), vip.address.port(), vip.protocol.number());
        dp.set_vip(vip_id as u32, key, &ring)?;
        tracing::info!(vip = %vip.name, address = %vip.address, protocol = %vip.protocol, backends = ids.len(), ring = vip.ring_size, "VIP programmed");
        vips.push((vip.clone(), vip_id as u32, ids));
    }
    Ok(Programmed { vips })
}

fn collect(dp: &Dataplane, p: &Programmed) -> anyhow::Result<Stats> {
    let outcomes = dp
        .outcomes()?
        .into_iter()
        .map(|(c, t)| Outcome {
            name: c.name().into(),
            packets: t.packets,
            bytes: t.bytes,
        })
        .collect();
    let mut vips = Vec::new();
    for (vip, id, ids) in &p.vips {
        let t = dp.vip_totals(*id)?;
        let mut backends = Vec::new();
        for (b, bid) in vip.backends.iter().zip(ids) {
            backends.push((b.address.to_string(), b.weight, dp.backend_totals(*bid)?));
        }
        vips.push(VipStats {
            name: vip.name.clone(),
            address: vip.address.to_string(),
            protocol: vip.protocol.to_string(),
            packets: t.packets,
            bytes: t.bytes,
            backends: stats::with_shares(backends),
        });
    }
    Ok(Stats { outcomes, vips })
}

/// Runs the agent until SIGINT or SIGTERM.
pub fn run(config_path: &Path, socket: Option<&Path>) -> anyhow::Result<()> {
    let cfg = config::load(config_path)?;
    if unsafe { libc::geteuid() } != 0 {
        bail!("lb run needs root (CAP_BPF and CAP_NET_ADMIN to load and attach XDP programs)");
    }
    let problems = forwarding_problems(&cfg);
    if !problems.is_empty() {
        bail!(
            "forwarding is off where lb attaches, and bpf_fib_lookup refuses to route there; set: sysctl -w {} (lb never changes this behind your back)",
            problems.join(" ")
        );
    }
    for i in &cfg.agent.interfaces {
        if nix_ifindex(i).is_none() {
            bail!(
                "no interface named {i:?} (agent.interfaces in {})",
                config_path.display()
            );
        }
    }
    let socket = socket
        .map(Path::to_path_buf)
        .unwrap_or_else(|| cfg.agent.socket.clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut dp = Dataplane::load(program_names::LB)?;
        let programmed = program(&mut dp, &cfg)?;
        for i in &cfg.agent.interfaces {
            let mode = dp.attach(i, cfg.agent.xdp_mode)?;
            tracing::info!(interface = %i, mode, "xdp_lb attached");
        }
        // After the attach: a failure here drops `dp`, which detaches everything.
        let listener = api::bind(&socket)?;
        let dp = Arc::new(Mutex::new(dp));
        let programmed = Arc::new(programmed);
        let handler: api::Handler = {
            let (dp, programmed) = (dp.clone(), programmed.clone());
            Arc::new(move |method, path| match (method, path) {
                ("GET", "/v1/stats") => {
                    let dp = dp.lock().unwrap_or_else(|e| e.into_inner());
                    match collect(&dp, &programmed) {
                        Ok(s) => (200, serde_json::to_string(&s).unwrap_or_default()),
                        Err(e) => (
                            500,
                            serde_json::json!({ "error": e.to_string() }).to_string(),
                        ),
                    }
                }
                ("GET", _) => (404, r#"{"error":"no such endpoint"}"#.into()),
                _ => (405, r#"{"error":"method not allowed"}"#.into()),
            })
        };
        let server = tokio::spawn(api::serve(listener, handler));
        let backends: Vec<IpAddr> = cfg
            .vips
            .iter()
            .flat_map(|v| v.backends.iter().map(|b| b.address))
            .collect();
        let watch = tokio::spawn(keep_resolved(backends));
        println!(
            "lb: ready: {} VIP(s) on {}; control socket {}",
            cfg.vips.len(),
            cfg.agent.interfaces.join(","),
            socket.display()
        );
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        server.abort();
        watch.abort();
        let _ = std::fs::remove_file(&socket);
        drop(dp);
        tracing::info!("detached; bye");
        Ok(())
    })
}

/// Re-asks the kernel for any backend next hop that is no longer resolved.
async fn keep_resolved(backends: Vec<IpAddr>) {
    loop {
        tokio::time::sleep(NEIGH_CHECK).await;
        for &b in &backends {
            if let Ok(Err(e)) =
                tokio::task::spawn_blocking(move || neigh::ensure(b, Duration::ZERO)).await
            {
                tracing::warn!(backend = %b, error = %e, "next hop unresolved");
            }
        }
    }
}

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
    println!(
        "lb: ready: decapsulating on {interface} ({used}) for {}",
        addrs
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    rt.block_on(async {
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
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
