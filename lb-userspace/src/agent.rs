//! `lb run`: load, program the maps from the config, attach, serve the API, run the health
//! checks, follow the config file, and detach cleanly on SIGINT/SIGTERM.
use std::{
    net::IpAddr,
    path::Path,
    time::{Duration, SystemTime},
};

use anyhow::{Context, bail};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};

use crate::{
    api,
    config::{self, Config},
    dataplane::{Dataplane, nix_ifindex},
    neigh, state,
};

mod checkers;
mod decap;
mod links;
mod pins;
mod report;
mod routes;
mod sources;
mod sync;

pub use decap::decap;
pub use pins::{detach, ensure_bpffs};
use sync::Agent;

/// How long a starting agent waits for its backends' next hops to resolve.
const NEIGH_WAIT: Duration = Duration::from_secs(3);
/// How often the agent looks whether the config file changed on disk.
const FILE_CHECK: Duration = Duration::from_secs(1);
/// How often the flow table's entries are counted for the metrics (a count reads every slot).
const FLOW_COUNT: Duration = Duration::from_secs(5);
/// How often the counters are sampled for the rates `lb stats` shows.
const RATE_PERIOD: Duration = Duration::from_secs(1);

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

fn preflight(cfg: &Config, config_path: &Path) -> anyhow::Result<()> {
    if unsafe { libc::geteuid() } != 0 {
        bail!("lb run needs root (CAP_BPF and CAP_NET_ADMIN to load and attach XDP programs)");
    }
    let problems = forwarding_problems(cfg);
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
    Ok(())
}

/// Raises the soft limit on open files to the hard limit: the usual soft limit of 1,024 is
/// for programs that do not expect many connections, and health checks, listeners and maps
/// all take descriptors. Returns the limit now in force.
pub fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // Safety: getrlimit and setrlimit with a valid resource and a struct to fill or read.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return raised.rlim_cur;
            }
        }
    }
    lim.rlim_cur
}

/// The file's identity for change detection: modification time and length.
fn file_stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Runs the agent until SIGINT or SIGTERM.
pub fn run(
    config_path: &Path,
    socket: Option<&Path>,
    program_log: crate::dataplane::ProgramLog,
) -> anyhow::Result<()> {
    let file = config::load(config_path)?;
    preflight(&file, config_path)?;
    let nofile = raise_nofile();
    tracing::debug!(nofile, "open-file limit");
    let changes = state::load_changes(&file.agent.state_dir)?;
    let socket = socket
        .map(Path::to_path_buf)
        .unwrap_or_else(|| file.agent.socket.clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let pin_dir = file.agent.pin_dir.clone();
        ensure_bpffs(&pin_dir)?;
        let mut dp = Dataplane::load_pinned(file.agent.flow_table_size, &pin_dir, program_log)?;
        if let Some((moved, held)) = dp.adopted_flows() {
            println!(
                "lb: moved {moved} of {held} flows from the previous release's flow table (the rest take the ring on their next packet)"
            );
        }
        // A capture an earlier run left switched on (it stopped mid-capture) ends here.
        dp.set_capture(Default::default())?;
        let capture_ring = crate::capture::shared(dp.take_capture_ring()?)?;
        let mut program_logs = match program_log {
            crate::dataplane::ProgramLog::Off => None,
            level => {
                tracing::warn!(?level, "the program logs: this costs per packet, for debugging only");
                Some(dp.program_logger()?)
            }
        };
        for i in &file.agent.interfaces {
            let idx = nix_ifindex(i).with_context(|| format!("no interface named {i:?}"))?;
            dp.allow_egress(idx)?;
        }
        let (reports_tx, mut reports) = mpsc::unbounded_channel();
        let mut agent = Agent::new(config_path.to_path_buf(), file, changes, dp, reports_tx);
        for s in &agent.skipped {
            tracing::warn!(change = %s, "runtime change no longer applies; skipped");
        }
        let adopted = agent.adopt()?;
        if adopted > 0 {
            tracing::info!(vips = adopted, pin_dir = %pin_dir.display(), "adopted the pinned data path");
        }
        let kernel = neigh::Kernel::connect().context("opening a netlink socket")?;
        let found = resolve_all(&kernel, agent.backend_addresses()).await;
        agent.set_hops(found.clone());
        agent.sync(None)?;
        let interfaces = agent.effective.agent.interfaces.clone();
        let mut links = std::collections::HashMap::new();
        for i in &interfaces {
            let mode = agent.dp.attach_pinned(i, agent.effective.agent.xdp_mode, &pin_dir)?;
            tracing::info!(interface = %i, mode, "xdp_lb attached");
            let link = kernel.link_by_name(i).await?;
            agent.interfaces.insert(
                i.clone(),
                sync::Interface {
                    ifindex: link.as_ref().map(|l| l.ifindex),
                    attached: true,
                    error: None,
                },
            );
            links.insert(i.clone(), link);
        }
        let (net_tx, mut net) = mpsc::unbounded_channel();
        let netlink = neigh::watch::spawn(
            agent.hop_targets.subscribe(),
            links,
            found.into_iter().collect(),
            net_tx,
        )
        .context("watching the kernel's routes, neighbours and links")?;
        let listener = api::bind(&socket)?;
        // Last: until here a failure drops the dataplane, which detaches what this run
        // attached. From here the links outlive the agent.
        agent.dp.pin_links(&pin_dir)?;
        agent.attached = true;
        agent.announce();
        let (calls_tx, mut calls) = mpsc::unbounded_channel();
        let inbox = api::Inbox(calls_tx);
        let metrics = match agent.effective.agent.metrics {
            Some(addr) => {
                let l = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("agent.metrics: binding {addr}"))?;
                let inbox = inbox.clone();
                Some(tokio::spawn(api::server::serve(
                    l,
                    api::server::METRICS,
                    agent.listeners.metrics.clone(),
                    move |parts, body| api::endpoints::metrics_port(inbox.clone(), parts, body),
                )))
            }
            None => None,
        };
        let flows_pin = pin_dir.join("maps").join(lb_common::map_names::FLOWS);
        let flow_counter = tokio::spawn(count_flows(flows_pin.clone(), agent.flow_entries.clone()));
        let control = std::sync::Arc::new(api::endpoints::Control {
            inbox,
            capture: Some(capture_ring),
            flows_pin: Some(flows_pin),
        });
        let server = tokio::spawn(api::server::serve(
            listener,
            api::server::CONTROL,
            agent.listeners.control.clone(),
            move |parts, body| api::endpoints::control(control.clone(), parts, body),
        ));
        // Handlers first, "ready" after: a signal sent on seeing "ready" must find them (the
        // default action of SIGHUP would end the agent).
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        println!(
            "lb: ready: {} VIP(s) on {}; control socket {}",
            agent.effective.vips.len(),
            interfaces.join(","),
            socket.display()
        );
        let mut file_tick = tokio::time::interval(FILE_CHECK);
        let mut rate_tick = tokio::time::interval(RATE_PERIOD);
        let mut stamp = file_stamp(config_path);
        let (disco_tx, mut disco) = mpsc::unbounded_channel();
        let (dns_tx, mut resolved) = mpsc::unbounded_channel();
        let resolver = crate::dns::spawn(
            agent.file.dns_servers.clone(),
            agent.dns_hosts.subscribe(),
            dns_tx,
        );
        let watcher = agent
            .file
            .etcd
            .clone()
            .map(|e| crate::discovery::spawn(e, disco_tx));
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => reload(&mut agent, "SIGHUP"),
                _ = file_tick.tick() => {
                    let now = file_stamp(config_path);
                    if now != stamp {
                        stamp = now;
                        reload(&mut agent, "file changed");
                    }
                }
                _ = rate_tick.tick() => {
                    if let Err(e) = agent.sample_rates() {
                        tracing::warn!(error = %format!("{e:#}"), "sampling counters for rates");
                    }
                    if let Some(b) = agent.bgp.as_mut() {
                        b.retry();
                    }
                }
                Some(ev) = net.recv() => {
                    let applied = match ev {
                        neigh::watch::Event::Hops(h) => agent.update_hops(h),
                        neigh::watch::Event::Links(l) => agent.on_links(l),
                    };
                    if let Err(e) = applied {
                        tracing::error!(error = %format!("{e:#}"), "applying next-hop or link changes");
                    }
                }
                Some(r) = reports.recv() => {
                    if let Err(e) = agent.on_report(r) {
                        tracing::error!(error = %format!("{e:#}"), "applying a health change");
                    }
                }
                Ok(mut ready) = async {
                    match program_logs.as_mut() {
                        Some(l) => l.readable_mut().await,
                        None => std::future::pending().await,
                    }
                } => {
                    ready.get_inner_mut().flush();
                    ready.clear_ready();
                }
                Some(r) = resolved.recv() => {
                    if let Err(e) = agent.on_resolved(r) {
                        tracing::error!(error = %format!("{e:#}"), "applying resolved hostnames");
                    }
                }
                Some(ev) = disco.recv() => {
                    if let Err(e) = agent.on_discovery(ev) {
                        tracing::error!(error = %format!("{e:#}"), "applying discovered changes");
                    }
                }
                Some(call) = calls.recv() => {
                    let reply = agent.handle(call.command);
                    let _ = call.reply.send(reply);
                }
            }
        }
        server.abort();
        flow_counter.abort();
        netlink.abort();
        if let Some(w) = watcher {
            w.abort();
        }
        resolver.abort();
        if let Some(m) = metrics {
            m.abort();
        }
        agent.stop_checkers();
        // The program outlives the agent: a capture must not run on with nobody reading.
        if let Err(e) = agent.stop_capture() {
            tracing::error!(error = %e, "ending the capture at shutdown");
        }
        // Routers must stop sending here: the balancer's state will not follow changes now.
        agent.attached = false;
        agent.announce();
        let _ = std::fs::remove_file(&socket);
        drop(agent);
        tracing::info!(pin_dir = %pin_dir.display(), "agent stopped; the data path keeps forwarding (`lb detach` removes it)");
        Ok(())
    })
}

/// Counts the pinned flow table's entries every [`FLOW_COUNT`] on a blocking thread, for the
/// metrics.
async fn count_flows(pin: std::path::PathBuf, into: std::sync::Arc<std::sync::atomic::AtomicU64>) {
    let mut tick = tokio::time::interval(FLOW_COUNT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let pin = pin.clone();
        match tokio::task::spawn_blocking(move || crate::dataplane::count_flows(&pin)).await {
            Ok(Ok(n)) => into.store(n, std::sync::atomic::Ordering::Relaxed),
            Ok(Err(e)) => tracing::warn!(error = %e, "counting the flow table"),
            Err(e) => tracing::warn!(error = %e, "counting the flow table"),
        }
    }
}

/// Reloads the config file; an invalid one is refused and the running state stays.
fn reload(agent: &mut Agent, why: &str) {
    match config::load(&agent.config_path) {
        Err(e) => {
            tracing::error!(reason = why, error = %e, "config reload refused; running state unchanged");
            agent.reload_error = Some(e.to_string());
            agent.reload_failures += 1;
        }
        Ok(file) => {
            if file.agent.interfaces != agent.file.agent.interfaces
                || file.agent.flow_table_size != agent.file.agent.flow_table_size
                || file.agent.state_dir != agent.file.agent.state_dir
                || file.bgp != agent.file.bgp
                || file.etcd != agent.file.etcd
            {
                tracing::warn!(
                    "agent.interfaces, state_dir, [bgp] and [discovery] take effect at the next start; flow_table_size after lb detach"
                );
            }
            agent.file = file;
            agent.rebuild_effective();
            for s in &agent.skipped {
                tracing::warn!(change = %s, "runtime change no longer applies; skipped");
            }
            agent.reload_error = None;
            agent.reloads += 1;
            agent.last_reload = SystemTime::now();
            match agent.sync(None) {
                Ok(()) => tracing::info!(reason = why, "config reloaded"),
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "applying the reloaded config")
                }
            }
        }
    }
}

/// Every backend's next hop, asked in parallel, each waiting up to [`NEIGH_WAIT`] for the
/// kernel to resolve it (a starting agent, before it serves anything).
async fn resolve_all(
    kernel: &neigh::Kernel,
    backends: std::collections::BTreeSet<IpAddr>,
) -> Vec<(IpAddr, Result<neigh::NextHop, String>)> {
    let asks = backends.into_iter().map(|b| async move {
        (
            b,
            kernel
                .resolve_within(b, NEIGH_WAIT)
                .await
                .map_err(|e| e.to_string()),
        )
    });
    futures_util::future::join_all(asks).await
}
