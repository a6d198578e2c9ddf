//! The TOML configuration: its serde model, and the validation that turns it into the typed
//! [`Config`] the agent runs from. Every error names the file, the line and the field.
use std::{
    collections::HashSet,
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use lb_common::{MAX_BACKENDS, MAX_VIPS};

/// Where the control socket lives unless the config or `--socket` says otherwise.
pub const DEFAULT_SOCKET: &str = "/run/lb/lb.sock";
/// BIRD's control socket, as Debian's bird2 package runs it.
pub const DEFAULT_BIRD_SOCKET: &str = "/run/bird/bird.ctl";
/// Where the agent writes its static routes for BIRD (bird.conf includes it).
pub const DEFAULT_ROUTES_FILE: &str = "/etc/bird/lb-vips.conf";
/// Parent of the state directories (one per instance) unless `agent.state_dir` says otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/lb";
/// Parent of the pin directories (one per instance) unless `agent.pin_dir` says otherwise.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/lb";
/// The backends' GUE port when `agent.gue_port` is not given (and `lb decap`'s).
pub const GUE_PORT_DEFAULT: u16 = 6080;

/// A configuration error: file, line, field and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {field}: {reason}")]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub field: String,
    pub reason: String,
}

pub use health::{Health, HealthKind, Outlier, Via};

/// How to attach `xdp_lb`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// In the driver; fail if the driver cannot.
    Native,
    /// In the generic (skb) path: slow, for testing only.
    Generic,
    /// Native, falling back to generic loudly.
    Auto,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => lb_common::PROTO_TCP,
            Protocol::Udp => lb_common::PROTO_UDP,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Forwarding {
    Ipip,
    /// IP in UDP (GUE variant 1) to `agent.gue_port`.
    Gue,
    /// Only the Ethernet addresses rewritten, to a backend on a connected segment.
    L2dsr,
}

impl Forwarding {
    pub const fn name(self) -> &'static str {
        match self {
            Forwarding::Ipip => "ipip",
            Forwarding::Gue => "gue",
            Forwarding::L2dsr => "l2dsr",
        }
    }

    /// The mode's number in the maps.
    pub const fn number(self) -> u32 {
        match self {
            Forwarding::Ipip => lb_common::FORWARD_IPIP,
            Forwarding::Gue => lb_common::FORWARD_GUE,
            Forwarding::L2dsr => lb_common::FORWARD_L2DSR,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Agent {
    pub interfaces: Vec<String>,
    pub xdp_mode: XdpMode,
    /// Names this balancer's state (state directory).
    pub instance: String,
    pub socket: PathBuf,
    /// Where runtime changes (CLI/API) are kept across restarts.
    pub state_dir: PathBuf,
    /// Where the maps and links are pinned (on a bpf filesystem), so the data path outlives
    /// the agent.
    pub pin_dir: PathBuf,
    /// Entries of the flow table.
    pub flow_table_size: u32,
    /// A flow seen within this long counts as active (per backend, in `lb status` and the
    /// metrics: a drained backend is done when it has none).
    pub flow_active: Duration,
    pub metrics: Option<SocketAddr>,
    pub source_v4: Option<Ipv4Addr>,
    pub source_v6: Option<Ipv6Addr>,
    /// The MTU of the path from the balancer to the backends, outer header included, when it
    /// is below the egress interface's: what "too big" answers are computed from.
    pub path_mtu: Option<u32>,
    /// Whether the program answers echo requests (ping) to VIP addresses itself; otherwise
    /// they pass to the kernel.
    pub answer_echo: bool,
    /// Outer sources chosen by each flow's hash from these prefixes (instead of `source_v4`,
    /// `source_v6`), so that a backend's NIC spreads the flows over its queues.
    pub source_v4_prefix: Option<ipnet::Ipv4Net>,
    pub source_v6_prefix: Option<ipnet::Ipv6Net>,
    /// The UDP port `gue` VIPs send to at the backends.
    pub gue_port: u16,
    /// What becomes of traffic to a VIP address that no VIP balances.
    pub unbalanced: Unbalanced,
    /// How long an established TCP flow's entry is kept against eviction by new flows after
    /// its last packet.
    pub tcp_idle: Duration,
}

/// What becomes of traffic to a VIP address that no VIP balances (another port or protocol, a
/// fragment no VIP takes): handed to the kernel (which forwards it, if forwarding is on and a
/// route leads on) or dropped and counted. ICMP is handled as always.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Unbalanced {
    #[default]
    Pass,
    Drop,
}

/// A VIP's source ACL: the longest prefix that holds a source decides; a source no prefix
/// holds is denied when there is any `allow`, allowed otherwise.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Acl {
    pub allow: Vec<ipnet::IpNet>,
    pub deny: Vec<ipnet::IpNet>,
}

impl Acl {
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }

    /// Whether a packet from `src` is admitted, as the program decides it (the longest prefix
    /// wins; at one length, deny).
    pub fn admits(&self, src: IpAddr) -> bool {
        let best = |nets: &[ipnet::IpNet]| {
            nets.iter()
                .filter(|n| n.contains(&src))
                .map(|n| n.prefix_len())
                .max()
        };
        match (best(&self.allow), best(&self.deny)) {
            (Some(a), Some(d)) => a > d,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => self.allow.is_empty(),
        }
    }
}

/// What a VIP's ring hashes: the 5-tuple (every connection on its own), the source (every
/// connection of a client, or of its affinity prefix, to one backend), or the source and the
/// destination port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub enum HashFields {
    #[default]
    #[serde(rename = "5tuple")]
    FiveTuple,
    #[serde(rename = "src")]
    Src,
    #[serde(rename = "src_dport")]
    SrcDport,
}

impl HashFields {
    pub const fn name(self) -> &'static str {
        match self {
            HashFields::FiveTuple => "5tuple",
            HashFields::Src => "src",
            HashFields::SrcDport => "src_dport",
        }
    }

    /// The data path's flags for this mode and an affinity prefix.
    pub fn flags(self, prefix: Option<u8>) -> u32 {
        let mode = match self {
            HashFields::FiveTuple => lb_common::hash::HASH_5TUPLE,
            HashFields::Src => lb_common::hash::HASH_SRC,
            HashFields::SrcDport => lb_common::hash::HASH_SRC_DPORT,
        };
        lb_common::hash::hash_flags(mode, prefix.unwrap_or(0) as u32)
    }
}

/// A VIP's limit on new flows per source (IPv4 address, IPv6 /64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Limits {
    /// New flows per second, on average.
    pub new_flows_per_source: u32,
    /// New flows a source may open at once after a quiet spell.
    pub burst: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Backend {
    pub address: IpAddr,
    pub weight: u32,
    /// Draining: established flows stay, no new ones.
    pub drain: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Vip {
    pub name: String,
    pub address: SocketAddr,
    pub protocol: Protocol,
    pub forwarding: Forwarding,
    pub ring_size: u32,
    /// How long a UDP flow may be idle and keep its backend.
    pub udp_idle: Duration,
    /// Whether fragments to the VIP's address and protocol are balanced (every fragment of a
    /// datagram to one backend, by source, destination and protocol) rather than passed.
    pub fragments: bool,
    pub health: Health,
    /// What a backend's established flows do when it goes down.
    pub on_down: OnDown,
    /// Which sources may reach the VIP (`[vip.acl]`).
    pub acl: Acl,
    /// New flows per source (`[vip.limits]`), if limited.
    pub limits: Option<Limits>,
    /// Passive health (`[vip.outlier]`), if on.
    pub outlier: Option<Outlier>,
    /// What the ring's hash takes of a packet.
    pub hash: HashFields,
    /// The bits of the source the hash keeps under `src` and `src_dport` (`None`: all).
    pub affinity_prefix: Option<u8>,
    pub backends: Vec<Backend>,
    /// Backends named by hostname (resolved into `backends` by the agent).
    pub hosts: Vec<HostBackend>,
}

/// What a backend's established flows do when its health checks (or flap damping) take it
/// down. Under direct server return an established TCP connection cannot move: another
/// backend answers it with a reset. So TCP VIPs `keep` by default (a connection to a backend
/// that only failed its check lives on; one to a dead host fails as it would have), and UDP
/// VIPs `move` (the next datagram of a flow goes to a live backend).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnDown {
    Move,
    Keep,
}

/// A validated configuration.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Config {
    pub agent: Agent,
    pub vips: Vec<Vip>,
    /// Announcing VIPs over BGP through BIRD (`[bgp]`), if configured.
    pub bgp: Option<Bgp>,
    /// VIPs and backends from etcd (`[discovery.etcd]`), merged with the file's.
    pub etcd: Option<Etcd>,
    /// The name servers hostname backends are resolved with (`[discovery.dns]`; none: the
    /// system's, from /etc/resolv.conf).
    pub dns_servers: Option<Vec<IpAddr>>,
}

/// A backend named by a hostname: each of its addresses of the VIP's family is a backend,
/// re-resolved when the records' TTL runs out.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HostBackend {
    pub host: String,
    pub weight: u32,
}

/// `[discovery.etcd]`: where VIPs and backends are kept in etcd (layout: docs/discovery.md).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Etcd {
    pub endpoints: Vec<String>,
    pub prefix: String,
}

/// `[bgp]`: the agent announces the VIP addresses it can serve through a BIRD daemon: it
/// writes them as static routes into `routes_file` (which bird.conf includes) and has BIRD
/// re-read its configuration over `bird_socket`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Bgp {
    pub bird_socket: PathBuf,
    pub routes_file: PathBuf,
}

mod check;
mod health;
mod raw;
mod rules;

use raw::{Ctx, RawFile};

/// One line on what a VIP gets: its backends and how they are checked (`lb check`).
pub fn describe(v: &Vip) -> String {
    let h = &v.health;
    let health = match h.kind {
        HealthKind::None if v.protocol == Protocol::Udp => {
            "not checked (a UDP VIP is checked only as [vip.health] says)".to_string()
        }
        HealthKind::None => "not checked".to_string(),
        kind => format!(
            "{} check on port {} every {:?}, {} to rise, {} to fall",
            format!("{kind:?}").to_lowercase(),
            h.port.unwrap_or(v.address.port()),
            h.interval,
            h.rise,
            h.fall
        ),
    };
    format!(
        "VIP {} {} {} ({}): {} backend(s), {} hostname(s); health: {health}",
        v.name,
        v.protocol,
        v.address,
        v.forwarding.name(),
        v.backends.len(),
        v.hosts.len()
    )
}

/// Reads and validates a config file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.display().to_string(),
        line: 0,
        field: "-".into(),
        reason: format!("cannot read: {e}"),
    })?;
    parse(&path.display().to_string(), &text)
}

/// Validates config text; `file` names it in errors.
pub fn parse(file: &str, text: &str) -> Result<Config, ConfigError> {
    let cx = Ctx { file, text };
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        // toml's message repeats the position and the offending line; keep its last line.
        let reason = e
            .message()
            .lines()
            .last()
            .unwrap_or("invalid TOML")
            .trim()
            .to_string();
        // The key at the error's span, under its table (a type error names none itself);
        // else the one serde's message names.
        let field = rules::key_at(text, &span).unwrap_or_else(|| check::field_of(e.message()));
        let reason = match rules::suggestion(e.message()) {
            Some(s) => format!("{reason} (did you mean `{s}`?)"),
            None => reason,
        };
        cx.err(span, field, reason)
    })?;
    let agent = check::agent(&cx, raw.agent)?;
    if raw.vip.len() > MAX_VIPS as usize {
        return Err(cx.err(
            raw.vip[MAX_VIPS as usize].span(),
            "vip",
            format!("at most {MAX_VIPS} VIPs"),
        ));
    }
    let mut vips: Vec<Vip> = Vec::new();
    let mut names = HashSet::new();
    let mut keys = HashSet::new();
    let mut fragment_keys = HashSet::new();
    let mut total_backends = 0usize;
    for v in raw.vip {
        let v = v.into_inner();
        let (name_span, addr_span) = (v.name.span(), v.address.span());
        let frag_span = v.fragments.as_ref().map(|f| f.span());
        let vip = check::vip(&cx, v, &agent)?;
        if !names.insert(vip.name.clone()) {
            return Err(cx.err(
                name_span,
                "vip.name",
                format!("duplicate VIP name {:?}", vip.name),
            ));
        }
        if !keys.insert((vip.address, vip.protocol)) {
            return Err(cx.err(
                addr_span,
                "vip.address",
                format!("duplicate VIP {} {}", vip.protocol, vip.address),
            ));
        }
        // A later fragment carries no port: only one VIP per address and protocol can take
        // the fragments.
        if vip.fragments && !fragment_keys.insert((vip.address.ip(), vip.protocol)) {
            return Err(cx.err(
                frag_span.unwrap_or(addr_span),
                "vip.fragments",
                format!(
                    "another {} VIP on {} takes fragments already (they carry no port to tell the VIPs apart)",
                    vip.protocol,
                    vip.address.ip()
                ),
            ));
        }
        let missing = match vip.address.ip() {
            IpAddr::V4(_) if agent.source_v4.is_none() => Some(("agent.source_v4", "IPv4")),
            IpAddr::V6(_) if agent.source_v6.is_none() => Some(("agent.source_v6", "IPv6")),
            _ => None,
        };
        if let Some((field, family)) = missing {
            let reason =
                format!("an {family} VIP needs {field} (the outer source of encapsulated packets)");
            return Err(cx.err(addr_span, field, reason));
        }
        total_backends += vip.backends.len();
        if total_backends > MAX_BACKENDS as usize {
            return Err(cx.err(
                addr_span,
                "vip.backend",
                format!("at most {MAX_BACKENDS} backends over all VIPs"),
            ));
        }
        vips.push(vip);
    }
    let bgp = raw.bgp.map(|b| check::bgp(&cx, b)).transpose()?;
    let (etcd, dns) = match raw.discovery {
        Some(d) => (d.etcd, d.dns),
        None => (None, None),
    };
    let etcd = etcd.map(|e| check::etcd(&cx, e)).transpose()?;
    let dns_servers = match dns.and_then(|d| d.servers) {
        None => None,
        Some(list) => {
            let mut out = Vec::new();
            for s in list.into_inner() {
                let ip: IpAddr = s.get_ref().parse().map_err(|_| {
                    cx.err(
                        s.span(),
                        "discovery.dns.servers",
                        format!("{:?} is not an IP address", s.get_ref()),
                    )
                })?;
                out.push(ip);
            }
            Some(out)
        }
    };
    Ok(Config {
        agent,
        vips,
        bgp,
        etcd,
        dns_servers,
    })
}

/// `500ms`, `1s`, `2m`: a whole number and a unit.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.checked_mul(60)?),
        "h" => Duration::from_secs(n.checked_mul(3600)?),
        "d" => Duration::from_secs(n.checked_mul(86_400)?),
        _ => return None,
    };
    (!d.is_zero()).then_some(d)
}

pub fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
