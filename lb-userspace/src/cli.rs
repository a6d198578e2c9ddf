//! The command line: `lb run`, `lb check`, `lb stats`, `lb decap`.
use std::{net::IpAddr, path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand, ValueEnum};

use crate::{agent, api, config, stats};

/// lb: an XDP layer-4 load balancer (Maglev hashing, IP-in-IP direct server return).
#[derive(Parser, Debug)]
#[command(name = "lb", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
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
    },
    /// Validate a configuration file and exit: 0 if valid, 2 with file:line: field: reason if not.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Show packet counters per VIP, per backend and per outcome.
    Stats {
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
        /// Control socket of the agent.
        #[arg(long, default_value = config::DEFAULT_SOCKET)]
        socket: PathBuf,
    },
    /// On a backend host: strip IP-in-IP packets addressed to this host (no ipip module needed).
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
                Ok(())
            }
            Err(e) => {
                eprintln!("lb: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        },
        Command::Run { config, socket } => agent::run(&config, socket.as_deref()),
        Command::Stats { json, socket } => api::get(&socket, "/v1/stats").and_then(|body| {
            if json {
                println!("{body}");
            } else {
                let s: stats::Stats = serde_json::from_str(&body)?;
                print!("{}", stats::render(&s));
            }
            Ok(())
        }),
        Command::Decap {
            interface,
            xdp_mode,
            address,
        } => agent::decap(&interface, xdp_mode.into(), &address),
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
            if e.downcast_ref::<config::ConfigError>().is_some() {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
