//! The lb agent and CLI, as a library: `main.rs` only parses the command line.
pub mod agent;
pub mod api;
pub mod bgp;
pub mod capture;
pub mod cli;
pub mod config;
pub mod dataplane;
pub mod discovery;
pub mod dns;
pub mod health;
pub mod maglev;
pub mod metrics;
pub mod neigh;
pub mod state;
pub mod stats;
pub mod status;
pub mod watch;
