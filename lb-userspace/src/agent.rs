//! `lb run`: load, program the maps from the config, attach, serve the API, run the health
//! checks, follow the config file, and detach cleanly on SIGINT/SIGTERM.
use std::path::Path;

use anyhow::bail;

use crate::{
    config::{self, Config},
    dataplane::nix_ifindex,
    state,
};

mod checkers;
mod decap;
mod ids;
mod lifecycle;
mod links;
mod notify;
mod outlier;
mod pins;
mod reload;
mod report;
mod routes;
mod settle;
mod sources;
mod sync;

pub use decap::decap;
pub use pins::{detach, ensure_bpffs};

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

/// The capabilities `lb run` needs: CAP_BPF (programs and maps), CAP_NET_ADMIN (XDP, the
/// devmap, neighbour entries) and CAP_PERFMON (the verifier's checks for privileged programs:
/// without it the balancer's pointer arithmetic is refused). Root has them all.
pub const CAPABILITIES: &[&str] = &["CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON"];

fn capability_bit(name: &str) -> u32 {
    match name {
        "CAP_NET_ADMIN" => 12,
        "CAP_SYS_ADMIN" => 21,
        "CAP_PERFMON" => 38,
        "CAP_BPF" => 39,
        _ => 63,
    }
}

/// Which of [`CAPABILITIES`] this process does not have in its effective set. CAP_SYS_ADMIN
/// stands in for CAP_BPF and CAP_PERFMON, as the kernel lets it.
pub fn missing_capabilities() -> Vec<&'static str> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .unwrap_or(0);
    let has = |c: &str| eff & (1 << capability_bit(c)) != 0;
    CAPABILITIES
        .iter()
        .copied()
        .filter(|c| !(has(c) || (matches!(*c, "CAP_BPF" | "CAP_PERFMON") && has("CAP_SYS_ADMIN"))))
        .collect()
}

fn preflight(cfg: &Config, config_path: &Path) -> anyhow::Result<()> {
    let missing = missing_capabilities();
    if !missing.is_empty() {
        bail!(
            "lb run lacks {}: it needs {} (to load BPF programs and maps, to attach XDP and \
             manage neighbours), as root or as a user given them (AmbientCapabilities= in a unit)",
            missing.join(" and "),
            CAPABILITIES.join(", ")
        );
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

/// Runs the agent until SIGINT or SIGTERM: start, the control loop, stop.
pub fn run(
    config_path: &Path,
    socket: Option<&Path>,
    program_log: crate::dataplane::ProgramLog,
) -> anyhow::Result<()> {
    let file = config::load(config_path)?;
    preflight(&file, config_path)?;
    let nofile = raise_nofile();
    tracing::debug!(nofile, "open-file limit");
    let changes = state::Store::open(&file.agent.state_dir)?;
    let socket = socket
        .map(Path::to_path_buf)
        .unwrap_or_else(|| file.agent.socket.clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut running = lifecycle::start(config_path, file, changes, socket, program_log).await?;
        running.serve().await;
        running.stop();
        Ok(())
    })
}
