//! The agent's life under test: a one-arm topology with serving backends and a running agent
//! with fast health checks, shared by the lifecycle and restart tests.
use std::{net::SocketAddr, path::PathBuf};

use crate::{
    Proc, TempDir,
    lab::{self, OneArm, VIP4, backend4, status},
    traffic::{self, Server},
};

pub const INTERVAL_MS: u64 = 200;
pub const RISE: u32 = 2;
pub const FALL: u32 = 2;

pub fn vip_addr() -> SocketAddr {
    format!("{VIP4}:80").parse().unwrap()
}

pub fn config(tmp: &TempDir, backends: &[String]) -> String {
    let mut s = format!(
        r#"[agent]
interfaces = ["eth0"]
socket = "{}"
state_dir = "{}"
source_v4 = "198.18.0.2"
flow_table_size = 65536

[[vip]]
name = "web"
address = "{VIP4}:80"
protocol = "tcp"

[vip.health]
kind = "tcp"
interval = "{INTERVAL_MS}ms"
timeout = "200ms"
rise = {RISE}
fall = {FALL}
"#,
        tmp.path("lb.sock").display(),
        tmp.path("state").display()
    );
    for b in backends {
        s += &format!("\n[[vip.backend]]\naddress = \"{b}\"\n");
    }
    s
}

/// A one-arm topology with `n` backends, all serving; the agent running with the first
/// `configured` of them.
pub struct Setup {
    pub servers: Vec<Option<Server>>,
    pub agent: Proc,
    pub config: PathBuf,
    pub socket: PathBuf,
    _decaps: Vec<Proc>,
    pub tmp: TempDir,
    pub topo: OneArm,
}

impl Setup {
    pub fn new(n: usize, configured: usize) -> Self {
        Self::custom(n, configured, |_| {}, |c| c)
    }

    /// [`Setup::new`], with `prepare` run on the topology before the agent starts and the
    /// agent's config as `edit` makes it.
    pub fn custom(
        n: usize,
        configured: usize,
        prepare: impl FnOnce(&OneArm),
        edit: impl FnOnce(String) -> String,
    ) -> Self {
        let topo = OneArm::with_backends(n);
        prepare(&topo);
        let tmp = TempDir::new("life");
        let decaps = topo
            .backends
            .iter()
            .map(|b| lab::backend_host(b, "eth0", &tmp))
            .collect();
        let servers = (0..n)
            .map(|i| {
                Some(traffic::tcp_server(
                    &topo.backends[i],
                    vip_addr(),
                    &format!("be{i}"),
                ))
            })
            .collect();
        let cfg = edit(config(
            &tmp,
            &(0..configured).map(backend4).collect::<Vec<_>>(),
        ));
        let (agent, config) = lab::start_agent(&topo.lb, &cfg, &tmp);
        let socket = tmp.path("lb.sock");
        Setup {
            servers,
            agent,
            config,
            socket,
            _decaps: decaps,
            tmp,
            topo,
        }
    }

    pub fn connects(&self, n: u32) -> traffic::Tally {
        traffic::tcp_connects(&self.topo.client, vip_addr(), n)
    }

    pub fn kill(&mut self, i: usize) {
        self.servers[i] = None;
    }

    pub fn revive(&mut self, i: usize) {
        self.servers[i] = Some(traffic::tcp_server(
            &self.topo.backends[i],
            vip_addr(),
            &format!("be{i}"),
        ));
    }

    pub fn backend(&self, addr: &str) -> lb::status::BackendStatus {
        let s = status(&self.socket);
        s.vips[0]
            .backends
            .iter()
            .find(|b| b.address == addr)
            .cloned()
            .unwrap_or_else(|| panic!("{addr} not in {s:?}"))
    }
}

pub fn all_ok(t: &traffic::Tally, n: u32) {
    assert!(
        t.failed.is_empty(),
        "{} of {n} failed: {:?}",
        t.failed.len(),
        &t.failed[..t.failed.len().min(5)]
    );
    assert_eq!(t.ok(), n);
}
