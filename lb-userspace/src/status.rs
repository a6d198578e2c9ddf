//! What `lb status`, `lb vip list` and `lb backend list` show: the agent's view of every VIP
//! and backend, health included.
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BackendStatus {
    pub address: String,
    pub weight: u32,
    pub drain: bool,
    /// `up`, `down`, `damped` (held out of the ring for flapping, whatever its last check),
    /// `ejected` (passive health: its clients repeat their SYNs), or `unchecked` (health kind
    /// none: always taken as up).
    pub health: String,
    /// Why it takes no new flows, when it takes none for its health: `active` (its probes
    /// fail), `passive` (ejected), `damped` (held for flapping), `local fault` (down, and its
    /// probes cannot run from this host now), `refused` (it cannot be a backend in its VIP's
    /// forwarding mode: `last_error` says why).
    #[serde(default)]
    pub down_reason: Option<String>,
    /// While ejected: about how many seconds more.
    #[serde(default)]
    pub ejected_s: Option<u64>,
    /// Times ejected since it last went `max_ejection_time` without.
    #[serde(default)]
    pub ejections: u32,
    /// While damped: about how many seconds more it is held out.
    #[serde(default)]
    pub held_s: Option<u64>,
    pub last_error: Option<String>,
    /// Why its health checks cannot run from this host now (its state is kept meanwhile).
    #[serde(default)]
    pub local_fault: Option<String>,
    /// The MAC of its next hop as the data path has it (`None`: not resolved, or not out of
    /// an attached interface; the program then asks the kernel per packet).
    #[serde(default)]
    pub next_hop: Option<String>,
    /// Flows seen within `agent.flow_active` (`None`: not counted yet): a drained backend with
    /// none is done.
    #[serde(default)]
    pub active_flows: Option<u64>,
    /// Whether the ring sends new flows to it (up, not draining, weight above 0).
    pub in_ring: bool,
    /// How long its last health check took, in milliseconds (none yet, or unchecked: `None`).
    #[serde(default)]
    pub last_probe_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VipStatus {
    pub name: String,
    pub address: String,
    pub protocol: String,
    /// How its packets reach the backends: ipip, gue or l2dsr.
    #[serde(default = "ipip")]
    pub forwarding: String,
    pub ring_size: u32,
    /// The ring's fingerprint: equal on two balancers exactly when they send every 5-tuple to
    /// the same backend (see `maglev::fingerprint`).
    #[serde(default)]
    pub ring_fingerprint: Option<String>,
    /// Backends in the ring.
    pub live: usize,
    /// No backend can take new flows: packets to this VIP are dropped (and counted).
    pub all_down: bool,
    pub backends: Vec<BackendStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub instance: String,
    pub config: String,
    pub interfaces: Vec<String>,
    /// Each interface of `interfaces`: whether it exists and the balancer is attached to it.
    #[serde(default)]
    pub links: Vec<LinkStatus>,
    pub reloads: u64,
    /// Why the last reload of the config file was refused, if it was.
    pub reload_error: Option<String>,
    /// Runtime changes that no longer apply on top of the file.
    pub skipped_changes: Vec<String>,
    pub vips: Vec<VipStatus>,
    /// `[bgp]`: the addresses announced through BIRD, and why not, if it failed.
    #[serde(default)]
    pub bgp: Option<BgpStatus>,
    /// `[discovery.etcd]`: whether the discovered state is current.
    #[serde(default)]
    pub discovery: Option<crate::discovery::Status>,
    /// Hostname backends: what each name resolved to, and the names that failed.
    #[serde(default)]
    pub dns: Option<crate::dns::Status>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LinkStatus {
    pub name: String,
    /// Its index, while it exists.
    pub ifindex: Option<u32>,
    pub attached: bool,
    /// Why attaching to it again failed, if it did.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BgpStatus {
    pub announced: Vec<String>,
    pub error: Option<String>,
}

/// The human view of `lb status`.
pub fn render(s: &Status) -> String {
    let mut out = format!(
        "lb instance {} on {} (config {}, {} reload(s))\n",
        s.instance,
        s.interfaces.join(","),
        s.config,
        s.reloads
    );
    for l in s.links.iter().filter(|l| !l.attached) {
        match (&l.ifindex, &l.error) {
            (None, _) => {
                out += &format!(
                    "INTERFACE {} GONE: the balancer is detached there until it returns\n",
                    l.name
                )
            }
            (Some(_), e) => {
                out += &format!(
                    "INTERFACE {} NOT ATTACHED: {}\n",
                    l.name,
                    e.as_deref().unwrap_or("-")
                )
            }
        }
    }
    if let Some(e) = &s.reload_error {
        out += &format!("CONFIG RELOAD REFUSED (running on the previous config): {e}\n");
    }
    for c in &s.skipped_changes {
        out += &format!("runtime change skipped: {c}\n");
    }
    if let Some(d) = &s.discovery {
        out += &format!("discovery ({}): {}, {} key(s)\n", d.source, d.state, d.keys);
        if let Some(e) = &d.error {
            out += &format!("DISCOVERY STALE (running on the last state it gave): {e}\n");
        }
        for k in &d.skipped {
            out += &format!("discovery entry skipped: {k}\n");
        }
    }
    if let Some(d) = &s.dns {
        for (h, a) in &d.hosts {
            out += &format!(
                "hostname {h}: {}\n",
                if a.is_empty() {
                    "no addresses".to_string()
                } else {
                    a.join(", ")
                }
            );
        }
        for (h, e) in &d.errors {
            out += &format!("HOSTNAME NOT RESOLVED (its last addresses kept): {h}: {e}\n");
        }
    }
    if let Some(b) = &s.bgp {
        out += &format!(
            "BGP (through BIRD): announcing {}\n",
            if b.announced.is_empty() {
                "nothing".to_string()
            } else {
                b.announced.join(", ")
            }
        );
        if let Some(e) = &b.error {
            out += &format!("BGP ANNOUNCEMENTS NOT APPLIED: {e}\n");
        }
    }
    for v in &s.vips {
        out += &render_vip(v);
    }
    out
}

fn ipip() -> String {
    "ipip".into()
}

pub fn render_vip(v: &VipStatus) -> String {
    let mut out = format!(
        "VIP {} {} {} ({}): {}/{} backends live, ring {}",
        v.name,
        v.protocol,
        v.address,
        v.forwarding,
        v.live,
        v.backends.len(),
        v.ring_fingerprint.as_deref().unwrap_or("-")
    );
    if v.all_down {
        out += "  !!! ALL BACKENDS DOWN: packets to this VIP are dropped";
    }
    out += "\n";
    out += &render_backends(&v.backends);
    out
}

pub fn render_backends(bs: &[BackendStatus]) -> String {
    let mut out = String::new();
    for b in bs {
        let mut state = b.health.clone();
        if b.drain {
            state += ",draining";
        }
        out += &format!("  {:<28} w={:<5} {:<16}", b.address, b.weight, state);
        match (b.drain, b.active_flows) {
            (true, Some(0)) => out += " drained: no active flows",
            (_, Some(n)) => out += &format!(" {n} active flow(s)"),
            _ => {}
        }
        if let Some(ms) = b.last_probe_ms {
            out += &format!(" probe {ms:.1} ms");
        }
        if let Some(e) = &b.last_error {
            out += &format!(" last error: {e}");
        }
        if let Some(s) = b.held_s {
            out += &format!(" !!! FLAPPING: held out of the ring for ~{s} s more");
        }
        if let Some(s) = b.ejected_s {
            out += &format!(
                " !!! EJECTED (passive health: its clients repeat their SYNs) for ~{s} s more, ejection {}",
                b.ejections
            );
        }
        if b.down_reason.as_deref() == Some("refused") {
            out += " !!! REFUSED: takes no traffic (see last error)";
        }
        if let Some(f) = &b.local_fault {
            out += &format!(" !!! LOCAL FAULT, checks cannot run from this host (state kept): {f}");
        }
        out += "\n";
    }
    out
}
