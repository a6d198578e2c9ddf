//! The command line: `lb run`, `lb check`, `lb stats`, `lb decap`.
use std::{net::IpAddr, path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand, ValueEnum};

mod capture;
mod manage;

use crate::{
    agent, api, config,
    state::{BackendSpec, VipSpec},
    stats, status,
};

/// lb: an XDP layer-4 load balancer (Maglev hashing, IP-in-IP direct server return).
#[derive(Parser, Debug)]
#[command(name = "lb", version = env!("LB_VERSION"))]
pub struct Cli {
    /// How log events are written to standard error: `human` lines, or one JSON object per
    /// event (`json`), for a log collector.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the agent in the foreground: load, program and attach xdp_lb from the config.
    Run {
        /// The TOML configuration.
        #[arg(long, short)]
        config: PathBuf,
        /// Control socket (default: agent.socket from the config).
        #[arg(long)]
        socket: Option<PathBuf>,
        /// Log lines from the XDP program itself (new flows, drops, faults), for debugging.
        /// Off by default: it costs per packet. Applies from this start of the agent.
        #[arg(long, value_enum, default_value = "off")]
        program_log: crate::dataplane::ProgramLog,
    },
    /// Remove the data path that `lb run` leaves behind when it stops: unpin the links (the
    /// program leaves the interfaces) and the maps. The agent must be stopped first.
    Detach {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        socket: Option<PathBuf>,
    },
    /// Validate a configuration file and exit: 0 if valid, 2 with file:line: field: reason if not.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// The agent's view: every VIP and backend with its health; says loudly when a VIP has no
    /// live backend, or when a config reload was refused.
    Status {
        #[arg(long)]
        json: bool,
        #[arg(long, default_value = config::DEFAULT_SOCKET)]
        socket: PathBuf,
    },
    /// The effective configuration, as TOML: the file with what discovery, DNS and runtime
    /// changes made of it (it parses back: `lb check` takes it).
    Config {
        #[arg(long, default_value = config::DEFAULT_SOCKET)]
        socket: PathBuf,
    },
    /// Where a VIP's flows go: every client the flow table holds for it (the most recently
    /// seen first), or the one client given.
    Flows {
        #[arg(long)]
        vip: String,
        /// Only this client's flow (ADDRESS:PORT, [ADDRESS]:PORT for IPv6).
        #[arg(long)]
        from: Option<std::net::SocketAddr>,
        /// At most this many (1 to 10000).
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        json: bool,
        #[arg(long, default_value = config::DEFAULT_SOCKET)]
        socket: PathBuf,
    },
    /// VIPs: list, add, delete (runtime changes, kept across restarts).
    Vip {
        #[command(subcommand)]
        command: VipCommand,
        #[arg(long, default_value = config::DEFAULT_SOCKET, global = true)]
        socket: PathBuf,
    },
    /// Backends of a VIP: list, add, delete, drain, undrain (runtime changes, kept across
    /// restarts).
    Backend {
        #[command(subcommand)]
        command: BackendCommand,
        #[arg(long, default_value = config::DEFAULT_SOCKET, global = true)]
        socket: PathBuf,
    },
    /// Show packet counters per VIP, per backend and per outcome, with the rates of the last
    /// second.
    Stats {
        /// Print JSON for scripts.
        #[arg(long, conflicts_with = "watch")]
        json: bool,
        /// A live full-screen view, refreshed every second (q, Esc or Ctrl-C quits).
        #[arg(long)]
        watch: bool,
        /// Control socket of the agent.
        #[arg(long, default_value = config::DEFAULT_SOCKET)]
        socket: PathBuf,
    },
    /// Copy packets from the data path into a pcap file (tcpdump, Wireshark): as the program
    /// leaves them, so forwarded packets show their encapsulation. Stops after --count
    /// packets, or on Ctrl-C.
    Capture {
        /// Only packets of this VIP.
        #[arg(long)]
        vip: Option<String>,
        /// Only packets the program dropped (with why, in the summary).
        #[arg(long)]
        drops: bool,
        /// Stop after this many packets.
        #[arg(long, short = 'c')]
        count: Option<u64>,
        /// Bytes kept of each packet (default and most: 2048).
        #[arg(long, short = 's', default_value_t = 0)]
        snaplen: u32,
        /// The pcap file to write (`-`: standard output).
        #[arg(short = 'w', long = "write")]
        file: PathBuf,
        /// Control socket of the agent.
        #[arg(long, default_value = config::DEFAULT_SOCKET)]
        socket: PathBuf,
    },
    /// A shell completion script for lb, on standard output (bash, zsh, fish, elvish or
    /// powershell).
    Completions { shell: clap_complete::Shell },
    /// Write lb's manual pages (lb.8 and one per subcommand) into a directory.
    #[command(hide = true)]
    Manpages { dir: PathBuf },
    /// On a backend host: strip IP-in-IP and GUE packets addressed to this host (no tunnel
    /// module needed).
    Decap {
        /// The interface the encapsulated packets arrive on.
        #[arg(long, short)]
        interface: String,
        /// Attach mode.
        #[arg(long, value_enum, default_value_t = Mode::Native)]
        xdp_mode: Mode,
        /// Further outer addresses to accept, beyond the interface's own.
        #[arg(long)]
        address: Vec<IpAddr>,
        /// The UDP port GUE packets arrive on (the balancer's agent.gue_port); 0: none.
        #[arg(long, default_value_t = config::GUE_PORT_DEFAULT)]
        gue_port: u16,
    },
}

#[derive(Subcommand, Debug)]
pub enum VipCommand {
    /// List the VIPs.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Add a VIP.
    Add {
        name: String,
        /// ADDRESS:PORT ([ADDRESS]:PORT for IPv6).
        #[arg(long)]
        address: String,
        /// tcp or udp.
        #[arg(long, default_value = "tcp")]
        protocol: String,
        /// Health check kind: tcp, http or none.
        #[arg(long)]
        health: Option<String>,
        #[arg(long)]
        ring_size: Option<u32>,
        /// How packets reach the backends: ipip (default), gue or l2dsr.
        #[arg(long)]
        forwarding: Option<String>,
        /// A backend, ADDRESS or ADDRESS=WEIGHT; repeat for more.
        #[arg(long = "backend")]
        backends: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Delete a VIP.
    Del {
        name: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum BackendCommand {
    /// List a VIP's backends with their health.
    List {
        #[arg(long)]
        vip: String,
        #[arg(long)]
        json: bool,
    },
    /// Add a backend to a VIP (it takes traffic once its health check passes `rise` times).
    Add {
        #[arg(long)]
        vip: String,
        address: IpAddr,
        #[arg(long)]
        weight: Option<u32>,
        #[arg(long)]
        json: bool,
    },
    /// Remove a backend from a VIP.
    Del {
        #[arg(long)]
        vip: String,
        address: IpAddr,
        #[arg(long)]
        json: bool,
    },
    /// No new flows to this backend; established flows continue.
    Drain {
        #[arg(long)]
        vip: String,
        address: IpAddr,
        #[arg(long)]
        json: bool,
    },
    /// Undo a drain.
    Undrain {
        #[arg(long)]
        vip: String,
        address: IpAddr,
        #[arg(long)]
        json: bool,
    },
    /// Change a backend in place: its health state and established flows are kept.
    Set {
        #[arg(long)]
        vip: String,
        address: IpAddr,
        /// The new weight, 0 to 10000 (0: no new flows).
        #[arg(long)]
        weight: u32,
        #[arg(long)]
        json: bool,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum Mode {
    Native,
    Generic,
    Auto,
}

impl From<Mode> for config::XdpMode {
    fn from(m: Mode) -> Self {
        match m {
            Mode::Native => config::XdpMode::Native,
            Mode::Generic => config::XdpMode::Generic,
            Mode::Auto => config::XdpMode::Auto,
        }
    }
}

/// Exit code for a configuration or usage error.
pub const EXIT_CONFIG: u8 = 2;

impl Cli {
    /// The log filter directive that lets the program's own lines through, when asked for.
    pub fn program_log_directive(&self) -> Option<String> {
        use crate::dataplane::ProgramLog as L;
        let level = match &self.command {
            Command::Run { program_log, .. } => *program_log,
            _ => L::Off,
        };
        let name = match level {
            L::Off => return None,
            L::Error => "error",
            L::Warn => "warn",
            L::Info => "info",
            L::Debug => "debug",
            L::Trace => "trace",
        };
        Some(format!("lb_ebpf={name}"))
    }
}

pub fn main(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Check { config } => match config::load(&config) {
            Ok(c) => {
                let backends: usize = c.vips.iter().map(|v| v.backends.len()).sum();
                println!(
                    "{}: ok: {} VIP(s), {} backend(s)",
                    config.display(),
                    c.vips.len(),
                    backends
                );
                for v in &c.vips {
                    println!("  {}", config::describe(v));
                }
                Ok(())
            }
            Err(e) => {
                eprintln!("lb: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        },
        Command::Run {
            config,
            socket,
            program_log,
        } => agent::run(&config, socket.as_deref(), program_log),
        Command::Detach { config, socket } => config::load(&config)
            .map_err(anyhow::Error::from)
            .and_then(|c| agent::detach(&c, socket.as_deref()))
            .map(|n| println!("detached: removed {n} pinned object(s)")),
        Command::Stats {
            watch: true,
            socket,
            ..
        } => crate::watch::run(&socket, std::time::Duration::from_secs(1)),
        Command::Stats { json, socket, .. } => api::get(&socket, "/v1/stats").and_then(|body| {
            if json {
                println!("{body}");
            } else {
                let s: stats::Stats = serde_json::from_str(&body)?;
                print!("{}", stats::render(&s));
            }
            Ok(())
        }),
        Command::Capture {
            vip,
            drops,
            count,
            snaplen,
            file,
            socket,
        } => {
            let req = crate::capture::Request {
                vip,
                drops,
                count,
                snaplen,
            };
            capture::client(&socket, &req, &file).map(|sum| eprintln!("lb capture: {sum}"))
        }
        Command::Config { socket } => api::get(&socket, "/v1/config").map(|t| print!("{t}")),
        Command::Flows {
            vip,
            from,
            limit,
            json,
            socket,
        } => {
            let mut path = format!("/v1/flows?vip={vip}&limit={limit}");
            if let Some(f) = from {
                path += &format!("&from={f}");
            }
            api::get(&socket, &path).and_then(|body| {
                print_as::<Vec<api::FlowView>>(json, &body, |flows| {
                    let mut out = format!("{:<46} {:<40} {:>9}\n", "client", "backend", "idle ms");
                    for f in flows {
                        out += &format!("{:<46} {:<40} {:>9}\n", f.client, f.backend, f.idle_ms);
                    }
                    if flows.is_empty() {
                        out += "(no flow)\n";
                    }
                    out
                })
            })
        }
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "lb", &mut std::io::stdout());
            Ok(())
        }
        Command::Manpages { dir } => manpages(&dir),
        Command::Status { json, socket } => api::get(&socket, "/v1/status")
            .and_then(|body| print_as::<status::Status>(json, &body, status::render)),
        Command::Vip { command, socket } => manage::vip(command, &socket),
        Command::Backend { command, socket } => manage::backend(command, &socket),
        Command::Decap {
            interface,
            xdp_mode,
            address,
            gue_port,
        } => agent::decap(&interface, xdp_mode.into(), &address, gue_port),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error and its causes.
            let msg = e
                .chain()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(": ");
            eprintln!("lb: {msg}");
            // A refused config, or a runtime change the agent refused (it validates changes
            // like the file): exit 2, as `lb check` does.
            let refused = e.downcast_ref::<config::ConfigError>().is_some()
                || e.downcast_ref::<api::ApiError>()
                    .is_some_and(|a| a.status == 400 || a.status == 404 || a.status == 409);
            if refused {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// `lb.8` and a page per subcommand (`lb-backend-set.8`, ...) into `dir`. Section 8: lb is a
/// system administration command (in /usr/sbin), and section 1's `lb` is live-build's.
fn manpages(dir: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context;
    fn write(cmd: clap::Command, dir: &std::path::Path) -> std::io::Result<()> {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned() {
            write(sub, dir)?;
        }
        clap_mangen::Man::new(cmd).section("8").generate_to(dir)?;
        Ok(())
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = <Cli as clap::CommandFactory>::command().disable_help_subcommand(true);
    cmd.build();
    write(cmd, dir).with_context(|| format!("writing to {}", dir.display()))
}

/// Prints a JSON body as is (`--json`) or through `human`.
pub(super) fn print_as<T: serde::de::DeserializeOwned>(
    json: bool,
    body: &str,
    human: impl Fn(&T) -> String,
) -> anyhow::Result<()> {
    if json {
        println!("{body}");
    } else {
        print!("{}", human(&serde_json::from_str::<T>(body)?));
    }
    Ok(())
}
