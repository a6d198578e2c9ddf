//! `lb run` as three steps: [`start`] (load, program, attach, serve), [`Running::serve`] (the
//! control loop: one event at a time, from signals, the API, health checks, netlink, DNS,
//! discovery and the config file) and [`Running::stop`] (the tasks ended, the data path
//! left forwarding).
use std::{
    collections::HashMap,
    net::IpAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::Context;
use tokio::{
    signal::unix::{Signal, SignalKind, signal},
    sync::mpsc::{UnboundedReceiver, unbounded_channel},
    task::JoinHandle,
    time::Interval,
};

use super::{
    ensure_bpffs,
    links::Interface,
    settle::{FileEvents, Settle, Touch, file_stamp},
    sync::Agent,
};
use crate::{
    api,
    config::Config,
    dataplane::{Dataplane, ProgramLog, nix_ifindex},
    neigh, state,
};

/// How long a starting agent waits for its backends' next hops to resolve.
const NEIGH_WAIT: Duration = Duration::from_secs(3);
/// How often the agent looks whether a change of the config file has settled (and, where
/// inotify is not to be had, whether the file changed).
const FILE_CHECK: Duration = Duration::from_millis(100);
/// How often the flow table's entries are counted for the metrics (a count reads every slot).
const FLOW_COUNT: Duration = Duration::from_secs(5);
/// How often the counters are sampled for the rates `lb stats` shows.
const RATE_PERIOD: Duration = Duration::from_secs(1);

/// What the control loop listens to besides the agent itself.
struct Inputs {
    calls: UnboundedReceiver<api::Call>,
    reports: UnboundedReceiver<crate::health::Report>,
    net: UnboundedReceiver<neigh::watch::Event>,
    resolved: UnboundedReceiver<crate::dns::Resolved>,
    discovered: UnboundedReceiver<crate::discovery::Event>,
    program_logs: Option<ProgramLogs>,
    term: Signal,
    int: Signal,
    hup: Signal,
    /// The config file's inotify events (`None`: no watch could be set; polled instead).
    file_events: Option<FileEvents>,
    settle: Settle,
    file_tick: Interval,
    rate_tick: Interval,
}

/// A started agent: the state, its inputs and the tasks that feed them.
pub struct Running {
    agent: Agent,
    inputs: Inputs,
    tasks: Vec<JoinHandle<()>>,
    socket: PathBuf,
    pin_dir: PathBuf,
}

/// Loads the data path (adopting what an earlier run pinned), writes the config to it,
/// attaches, and starts serving: the API, the metrics, the watchers. Prints `lb: ready`
/// last, once signals are handled.
pub async fn start(
    config_path: &Path,
    file: Config,
    changes: (state::Store, Vec<state::Change>),
    socket: PathBuf,
    program_log: ProgramLog,
) -> anyhow::Result<Running> {
    let pin_dir = file.agent.pin_dir.clone();
    let (dp, capture_ring, program_logs) = load(&file, &pin_dir, program_log)?;
    let (reports_tx, reports) = unbounded_channel();
    let mut agent = Agent::new(config_path.to_path_buf(), file, changes, dp, reports_tx);
    for s in &agent.skipped {
        tracing::warn!(change = %s, "runtime change no longer applies; skipped");
    }
    let adopted = agent.adopt()?;
    if adopted > 0 {
        tracing::info!(vips = adopted, pin_dir = %pin_dir.display(), "adopted the pinned data path");
    }
    let kernel = neigh::Kernel::connect().context("opening a netlink socket")?;
    probe_path(&mut agent, &kernel).await;
    let found = resolve_all(&kernel, agent.backend_addresses()).await;
    agent.set_hops(found.clone());
    agent.sync(None)?;
    let links = attach(&mut agent, &kernel, &pin_dir).await?;
    let (net_tx, net) = unbounded_channel();
    let mut tasks = vec![
        neigh::watch::spawn(
            agent.hops.subscribe(),
            links,
            found.into_iter().collect(),
            net_tx,
        )
        .context("watching the kernel's routes, neighbours and links")?,
    ];
    let listener = api::bind(&socket)?;
    // Last: until here a failure drops the dataplane, which detaches what this run
    // attached. From here the links outlive the agent.
    agent.dp.pin_links(&pin_dir)?;
    agent.attached = true;
    agent.announce();
    let (calls_tx, calls) = unbounded_channel();
    tasks.extend(
        serve_api(
            &agent,
            listener,
            api::Inbox(calls_tx),
            capture_ring,
            &pin_dir,
        )
        .await?,
    );
    let (dns_tx, resolved) = unbounded_channel();
    tasks.push(crate::dns::spawn(
        agent.sources.file.dns_servers.clone(),
        agent.sources.hostnames(),
        dns_tx,
    ));
    let (disco_tx, discovered) = unbounded_channel();
    if let Some(e) = agent.sources.file.etcd.clone() {
        tasks.push(crate::discovery::spawn(e, disco_tx));
    }
    // Handlers first, "ready" after: a signal sent on seeing "ready" must find them (the
    // default action of SIGHUP would end the agent).
    let inputs = Inputs {
        calls,
        reports,
        net,
        resolved,
        discovered,
        program_logs,
        term: signal(SignalKind::terminate())?,
        int: signal(SignalKind::interrupt())?,
        hup: signal(SignalKind::hangup())?,
        file_events: match FileEvents::watch(config_path) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "no inotify watch on the config file: polling it instead");
                None
            }
        },
        settle: Settle::default(),
        file_tick: tokio::time::interval(FILE_CHECK),
        rate_tick: {
            // A late tick pushes the next one back: each rate is over a period of at least
            // RATE_PERIOD, never a shorter catch-up one.
            let mut t = tokio::time::interval(RATE_PERIOD);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        },
    };
    let ready = format!(
        "{} VIP(s) on {}; control socket {}",
        agent.effective.vips.len(),
        agent.effective.agent.interfaces.join(","),
        socket.display()
    );
    println!("lb: ready: {ready}");
    super::notify::ready(&ready);
    Ok(Running {
        agent,
        inputs,
        tasks,
        socket,
        pin_dir,
    })
}

/// The tunnel probes' way: their device with `tc_probe` on it, and the routes that lead
/// there (only once the program is there: a probe must never leave unencapsulated). Without
/// it a tunnel probe finds no route: a local fault, reported, that moves no backend.
async fn probe_path(agent: &mut Agent, kernel: &neigh::Kernel) {
    let done = async {
        let dev = kernel.probe_device().await?;
        agent.dp.attach_probe(neigh::PROBE_DEVICE)?;
        kernel.probe_routes(dev).await?;
        anyhow::Ok(())
    };
    if let Err(e) = done.await {
        tracing::error!(error = %format!("{e:#}"), "no way for health probes through the tunnel: VIPs with via = \"tunnel\" report a local fault");
    }
}

/// The program's log records, read as they come (`lb run --program-log`).
type ProgramLogs = tokio::io::unix::AsyncFd<aya_log::EbpfLogger<&'static dyn log::Log>>;

type Loaded = (Dataplane, crate::capture::SharedRing, Option<ProgramLogs>);

/// The data path, loaded or adopted from its pins, with its capture ring and program logs.
fn load(file: &Config, pin_dir: &Path, program_log: ProgramLog) -> anyhow::Result<Loaded> {
    ensure_bpffs(pin_dir)?;
    let mut dp = Dataplane::load_pinned(
        file.agent.flow_table_size,
        pin_dir,
        program_log,
        file.agent.tcp_idle.as_secs() as u32,
    )?;
    if let Some((moved, held)) = dp.adopted_flows() {
        println!(
            "lb: moved {moved} of {held} flows from the previous release's flow table (the rest take the ring on their next packet)"
        );
    }
    // A capture an earlier run left switched on (it stopped mid-capture) ends here.
    dp.set_capture(Default::default())?;
    let capture_ring = crate::capture::shared(dp.take_capture_ring()?)?;
    let program_logs = match program_log {
        ProgramLog::Off => None,
        level => {
            tracing::warn!(
                ?level,
                "the program logs: this costs per packet, for debugging only"
            );
            Some(dp.program_logger()?)
        }
    };
    for i in &file.agent.interfaces {
        let idx = nix_ifindex(i).with_context(|| format!("no interface named {i:?}"))?;
        dp.allow_egress(idx)?;
    }
    Ok((dp, capture_ring, program_logs))
}

/// Attaches to every interface; returns them as the kernel describes them, for the watcher.
async fn attach(
    agent: &mut Agent,
    kernel: &neigh::Kernel,
    pin_dir: &Path,
) -> anyhow::Result<HashMap<String, Option<neigh::Link>>> {
    let mut links = HashMap::new();
    for i in agent.effective.agent.interfaces.clone() {
        let mode = agent
            .dp
            .attach_pinned(&i, agent.effective.agent.xdp_mode, pin_dir)?;
        tracing::info!(interface = %i, mode, "xdp_lb attached");
        let link = kernel.link_by_name(&i).await?;
        let state = Interface {
            ifindex: link.as_ref().map(|l| l.ifindex),
            attached: true,
            error: None,
        };
        agent.interfaces.set(&i, state);
        links.insert(i, link);
    }
    Ok(links)
}

/// The control socket and, if configured, the metrics port, with the flow-table count that
/// the metrics read.
async fn serve_api(
    agent: &Agent,
    listener: tokio::net::UnixListener,
    inbox: api::Inbox,
    capture_ring: crate::capture::SharedRing,
    pin_dir: &Path,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let mut tasks = Vec::new();
    if let Some(addr) = agent.effective.agent.metrics {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("agent.metrics: binding {addr}"))?;
        let inbox = inbox.clone();
        tasks.push(tokio::spawn(api::server::serve(
            l,
            api::server::METRICS,
            agent.listeners.metrics.clone(),
            move |parts, body| api::endpoints::metrics_port(inbox.clone(), parts, body),
        )));
    }
    let flows_pin = pin_dir.join("maps").join(lb_common::map_names::FLOWS);
    tasks.push(tokio::spawn(count_flows(
        flows_pin.clone(),
        agent.effective.agent.flow_active,
        agent.flow_entries.clone(),
        agent.flow_cached.clone(),
        agent.flow_activity.clone(),
    )));
    let control = Arc::new(api::endpoints::Control {
        inbox,
        capture: Some(capture_ring),
        flows_pin: Some(flows_pin),
    });
    tasks.push(tokio::spawn(api::server::serve(
        listener,
        api::server::CONTROL,
        agent.listeners.control.clone(),
        move |parts, body| api::endpoints::control(control.clone(), parts, body),
    )));
    Ok(tasks)
}

impl Running {
    /// The control loop, until SIGINT or SIGTERM: one event at a time, in order.
    pub async fn serve(&mut self) {
        let (agent, i) = (&mut self.agent, &mut self.inputs);
        let mut stamp = file_stamp(&agent.config_path);
        loop {
            let applied = tokio::select! {
                _ = i.term.recv() => break,
                _ = i.int.recv() => break,
                _ = i.hup.recv() => {
                    reload(agent, "SIGHUP");
                    Ok(())
                }
                Some(t) = async {
                    match i.file_events.as_mut() {
                        Some(f) => f.touches.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    i.settle.touch(t, std::time::Instant::now());
                    Ok(())
                }
                _ = i.file_tick.tick() => {
                    if i.file_events.is_none() {
                        let now = file_stamp(&agent.config_path);
                        if now != stamp {
                            stamp = now;
                            i.settle.touch(Touch::Closed, std::time::Instant::now());
                        }
                    }
                    if i.settle.due(std::time::Instant::now()) {
                        reload(agent, "file changed");
                    }
                    Ok(())
                }
                _ = i.rate_tick.tick() => {
                    if let Some(b) = agent.bgp.as_mut() {
                        b.retry();
                    }
                    agent
                        .release_held()
                        .context("ending flap holds")
                        .and_then(|()| {
                            agent
                                .check_outliers(std::time::Instant::now())
                                .context("passive health")
                        })
                        .and_then(|()| {
                            let n = agent
                                .dp
                                .retire_backends()
                                .context("retiring removed backends' counters")?;
                            if n > 0 {
                                tracing::info!(backends = n, "removed backends' counters retired");
                            }
                            Ok(())
                        })
                        .and_then(|()| agent.sample_rates().context("sampling counters for rates"))
                }
                Some(ev) = i.net.recv() => match ev {
                    neigh::watch::Event::Hops(h) => agent.update_hops(h),
                    neigh::watch::Event::Links(l) => agent.on_links(l),
                }
                .context("applying next-hop or link changes"),
                Some(r) = i.reports.recv() => {
                    agent.on_report(r).context("applying a health change")
                }
                Ok(mut ready) = async {
                    match i.program_logs.as_mut() {
                        Some(l) => l.readable_mut().await,
                        None => std::future::pending().await,
                    }
                } => {
                    ready.get_inner_mut().flush();
                    ready.clear_ready();
                    Ok(())
                }
                Some(r) = i.resolved.recv() => {
                    agent.on_resolved(r).context("applying resolved hostnames")
                }
                Some(ev) = i.discovered.recv() => {
                    agent.on_discovery(ev).context("applying discovered changes")
                }
                Some(call) = i.calls.recv() => {
                    let _ = call.reply.send(agent.handle(call.command));
                    Ok(())
                }
            };
            if let Err(e) = applied {
                tracing::error!(error = %format!("{e:#}"), "control loop");
            }
        }
    }

    /// Ends every task, takes a running capture's hook out, withdraws BGP announcements and
    /// removes the control socket. The data path stays attached and keeps forwarding.
    pub fn stop(mut self) {
        super::notify::stopping();
        for t in &self.tasks {
            t.abort();
        }
        self.agent.stop_checkers();
        // The program outlives the agent: a capture must not run on with nobody reading.
        if let Err(e) = self.agent.stop_capture() {
            tracing::error!(error = %e, "ending the capture at shutdown");
        }
        // Routers must stop sending here: the balancer's state will not follow changes now.
        self.agent.attached = false;
        self.agent.announce();
        let _ = std::fs::remove_file(&self.socket);
        drop(self.agent);
        tracing::info!(pin_dir = %self.pin_dir.display(), "agent stopped; the data path keeps forwarding (`lb detach` removes it)");
    }
}

/// A reload, told to the service manager: reloading, then ready again (whether the file was
/// applied or refused: the agent serves either way).
fn reload(agent: &mut Agent, why: &str) {
    super::notify::reloading();
    agent.reload(why);
    super::notify::ready(match &agent.reloads.error {
        None => "configuration reloaded",
        Some(_) => "configuration reload refused; running on the previous one",
    });
}

/// Counts the pinned flow table every [`FLOW_COUNT`] on a blocking thread: its entries, the
/// flows of each backend seen within `window`, and the flow cache's current entries.
async fn count_flows(
    pin: PathBuf,
    window: Duration,
    entries: Arc<std::sync::atomic::AtomicU64>,
    cached: Arc<std::sync::atomic::AtomicU64>,
    activity: Arc<std::sync::Mutex<Option<std::collections::HashMap<u32, u64>>>>,
) {
    let mut tick = tokio::time::interval(FLOW_COUNT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let pin = pin.clone();
        let counted = tokio::task::spawn_blocking(move || {
            crate::dataplane::count_flows_by_backend(&pin, window)
        })
        .await;
        match counted {
            Ok(Ok(c)) => {
                entries.store(c.entries, std::sync::atomic::Ordering::Relaxed);
                cached.store(c.cached, std::sync::atomic::Ordering::Relaxed);
                *activity.lock().unwrap_or_else(|p| p.into_inner()) = Some(c.active);
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "counting the flow table"),
            Err(e) => tracing::warn!(error = %e, "counting the flow table"),
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
