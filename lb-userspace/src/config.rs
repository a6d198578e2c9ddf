//! The TOML configuration: its serde model, and the validation that turns it into the typed
//! [`Config`] the agent runs from. Every error names the file, the line and the field.
use std::{
    collections::HashSet,
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    ops::Range,
    path::{Path, PathBuf},
    time::Duration,
};

use lb_common::{MAX_BACKENDS, MAX_VIPS, RING_SIZE_DEFAULT, RING_STRIDE};
use serde::Deserialize;
use toml::Spanned;

/// Where the control socket lives unless the config or `--socket` says otherwise.
pub const DEFAULT_SOCKET: &str = "/run/lb/lb.sock";

/// A configuration error: file, line, field and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {field}: {reason}")]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub field: String,
    pub reason: String,
}

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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthKind {
    Tcp,
    Http,
    None,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Health {
    pub kind: HealthKind,
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            kind: HealthKind::Tcp,
            path: "/".into(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
            rise: 2,
            fall: 3,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Agent {
    pub interfaces: Vec<String>,
    pub xdp_mode: XdpMode,
    pub socket: PathBuf,
    pub metrics: Option<SocketAddr>,
    pub source_v4: Option<Ipv4Addr>,
    pub source_v6: Option<Ipv6Addr>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Backend {
    pub address: IpAddr,
    pub weight: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Vip {
    pub name: String,
    pub address: SocketAddr,
    pub protocol: Protocol,
    pub forwarding: Forwarding,
    pub ring_size: u32,
    pub health: Health,
    pub backends: Vec<Backend>,
}

/// A validated configuration.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Config {
    pub agent: Agent,
    pub vips: Vec<Vip>,
}

// The file as written. Spanned fields keep their place in the text for error messages.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    agent: Spanned<RawAgent>,
    #[serde(default)]
    vip: Vec<Spanned<RawVip>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    interfaces: Spanned<Vec<Spanned<String>>>,
    xdp_mode: Option<Spanned<String>>,
    socket: Option<Spanned<String>>,
    metrics: Option<Spanned<String>>,
    source_v4: Option<Spanned<String>>,
    source_v6: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVip {
    name: Spanned<String>,
    address: Spanned<String>,
    protocol: Option<Spanned<String>>,
    forwarding: Option<Spanned<String>>,
    ring_size: Option<Spanned<i64>>,
    health: Option<Spanned<RawHealth>>,
    #[serde(default)]
    backend: Vec<Spanned<RawBackend>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    kind: Option<Spanned<String>>,
    path: Option<Spanned<String>>,
    interval: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    rise: Option<Spanned<i64>>,
    fall: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackend {
    address: Spanned<String>,
    weight: Option<Spanned<i64>>,
}

/// Turns byte offsets into line numbers and builds errors.
struct Ctx<'a> {
    file: &'a str,
    text: &'a str,
}

impl Ctx<'_> {
    fn line(&self, span: Range<usize>) -> usize {
        let at = span.start.min(self.text.len());
        self.text[..at].bytes().filter(|&b| b == b'\n').count() + 1
    }

    fn err(
        &self,
        span: Range<usize>,
        field: impl Into<String>,
        reason: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            file: self.file.to_string(),
            line: self.line(span),
            field: field.into(),
            reason: reason.into(),
        }
    }
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
        let field = field_of(e.message());
        cx.err(span, field, reason)
    })?;
    let agent = agent(&cx, raw.agent)?;
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
    let mut total_backends = 0usize;
    for v in raw.vip {
        let v = v.into_inner();
        let (name_span, addr_span) = (v.name.span(), v.address.span());
        let vip = vip(&cx, v)?;
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
    Ok(Config { agent, vips })
}

/// The field a serde message is about, where it names one.
fn field_of(msg: &str) -> String {
    for marker in ["unknown field `", "missing field `", "duplicate key `"] {
        if let Some(rest) = msg.split(marker).nth(1) {
            return rest.split('`').next().unwrap_or("-").to_string();
        }
    }
    "-".into()
}

fn agent(cx: &Ctx, raw: Spanned<RawAgent>) -> Result<Agent, ConfigError> {
    let raw = raw.into_inner();
    let ifaces_span = raw.interfaces.span();
    let interfaces: Vec<String> = raw
        .interfaces
        .into_inner()
        .into_iter()
        .map(Spanned::into_inner)
        .collect();
    if interfaces.is_empty() {
        return Err(cx.err(
            ifaces_span,
            "agent.interfaces",
            "name at least one interface",
        ));
    }
    if let Some(bad) = interfaces
        .iter()
        .find(|i| i.is_empty() || i.len() > 15 || i.contains('/'))
    {
        return Err(cx.err(
            ifaces_span,
            "agent.interfaces",
            format!("{bad:?} is not an interface name"),
        ));
    }
    let xdp_mode = match raw.xdp_mode {
        None => XdpMode::Native,
        Some(m) => match m.get_ref().as_str() {
            "native" => XdpMode::Native,
            "generic" => XdpMode::Generic,
            "auto" => XdpMode::Auto,
            other => {
                return Err(cx.err(
                    m.span(),
                    "agent.xdp_mode",
                    format!("{other:?}: expected native, generic or auto"),
                ));
            }
        },
    };
    let socket = raw
        .socket
        .map(|s| PathBuf::from(s.into_inner()))
        .unwrap_or_else(|| DEFAULT_SOCKET.into());
    let metrics = match raw.metrics {
        None => None,
        Some(m) => Some(m.get_ref().parse().map_err(|_| {
            cx.err(
                m.span(),
                "agent.metrics",
                format!("{:?} is not an address:port", m.get_ref()),
            )
        })?),
    };
    let source_v4 = match raw.source_v4 {
        None => None,
        Some(s) => Some(s.get_ref().parse().map_err(|_| {
            cx.err(
                s.span(),
                "agent.source_v4",
                format!("{:?} is not an IPv4 address", s.get_ref()),
            )
        })?),
    };
    let source_v6 = match raw.source_v6 {
        None => None,
        Some(s) => Some(s.get_ref().parse().map_err(|_| {
            cx.err(
                s.span(),
                "agent.source_v6",
                format!("{:?} is not an IPv6 address", s.get_ref()),
            )
        })?),
    };
    Ok(Agent {
        interfaces,
        xdp_mode,
        socket,
        metrics,
        source_v4,
        source_v6,
    })
}

fn vip(cx: &Ctx, raw: RawVip) -> Result<Vip, ConfigError> {
    let name = raw.name.get_ref().clone();
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(cx.err(
            raw.name.span(),
            "vip.name",
            format!("{name:?}: use 1-64 letters, digits, '-', '_' or '.'"),
        ));
    }
    let address: SocketAddr = raw.address.get_ref().parse().map_err(|_| {
        cx.err(
            raw.address.span(),
            "vip.address",
            format!(
                "{:?} is not ADDRESS:PORT (IPv6 as [ADDRESS]:PORT)",
                raw.address.get_ref()
            ),
        )
    })?;
    let protocol = match raw.protocol {
        None => Protocol::Tcp,
        Some(p) => match p.get_ref().as_str() {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            other => {
                return Err(cx.err(
                    p.span(),
                    "vip.protocol",
                    format!("{other:?}: expected tcp or udp"),
                ));
            }
        },
    };
    let forwarding = match raw.forwarding {
        None => Forwarding::Ipip,
        Some(f) => match f.get_ref().as_str() {
            "ipip" => Forwarding::Ipip,
            other => {
                return Err(cx.err(
                    f.span(),
                    "vip.forwarding",
                    format!("{other:?}: only ipip is supported yet"),
                ));
            }
        },
    };
    let ring_size = match raw.ring_size {
        None => RING_SIZE_DEFAULT,
        Some(r) => {
            let n = *r.get_ref();
            if n < 7 || n > RING_STRIDE as i64 || !is_prime(n as u64) {
                return Err(cx.err(
                    r.span(),
                    "vip.ring_size",
                    format!("{n}: must be a prime from 7 to {RING_STRIDE}"),
                ));
            }
            n as u32
        }
    };
    let health = match raw.health {
        None => Health::default(),
        Some(h) => health(cx, h.into_inner())?,
    };
    let mut backends = Vec::new();
    let mut seen = HashSet::new();
    for b in raw.backend {
        let b = b.into_inner();
        let ip: IpAddr = b.address.get_ref().parse().map_err(|_| {
            cx.err(
                b.address.span(),
                "vip.backend.address",
                format!("{:?} is not an IP address", b.address.get_ref()),
            )
        })?;
        if ip.is_ipv4() != address.is_ipv4() {
            return Err(cx.err(
                b.address.span(),
                "vip.backend.address",
                format!("{ip} is not of the VIP's address family ({address})"),
            ));
        }
        if !seen.insert(ip) {
            return Err(cx.err(
                b.address.span(),
                "vip.backend.address",
                format!("duplicate backend {ip}"),
            ));
        }
        let weight = match b.weight {
            None => 100,
            Some(w) => {
                let n = *w.get_ref();
                if !(0..=10_000).contains(&n) {
                    return Err(cx.err(
                        w.span(),
                        "vip.backend.weight",
                        format!("{n}: must be from 0 to 10000"),
                    ));
                }
                n as u32
            }
        };
        backends.push(Backend {
            address: ip,
            weight,
        });
    }
    if backends.len() as u64 >= ring_size as u64 {
        return Err(cx.err(
            raw.address.span(),
            "vip.ring_size",
            format!(
                "{ring_size} slots for {} backends: the ring must be larger",
                backends.len()
            ),
        ));
    }
    Ok(Vip {
        name,
        address,
        protocol,
        forwarding,
        ring_size,
        health,
        backends,
    })
}

fn health(cx: &Ctx, raw: RawHealth) -> Result<Health, ConfigError> {
    let mut h = Health::default();
    if let Some(k) = raw.kind {
        h.kind = match k.get_ref().as_str() {
            "tcp" => HealthKind::Tcp,
            "http" => HealthKind::Http,
            "none" => HealthKind::None,
            other => {
                return Err(cx.err(
                    k.span(),
                    "vip.health.kind",
                    format!("{other:?}: expected tcp, http or none"),
                ));
            }
        };
    }
    if let Some(p) = raw.path {
        if !p.get_ref().starts_with('/') {
            return Err(cx.err(p.span(), "vip.health.path", "must start with '/'"));
        }
        h.path = p.into_inner();
    }
    for (field, raw, slot) in [
        ("vip.health.interval", raw.interval, &mut h.interval),
        ("vip.health.timeout", raw.timeout, &mut h.timeout),
    ] {
        if let Some(d) = raw {
            *slot = parse_duration(d.get_ref()).ok_or_else(|| {
                cx.err(
                    d.span(),
                    field,
                    format!("{:?} is not a duration (e.g. 500ms, 1s, 2m)", d.get_ref()),
                )
            })?;
        }
    }
    for (field, raw, slot) in [
        ("vip.health.rise", raw.rise, &mut h.rise),
        ("vip.health.fall", raw.fall, &mut h.fall),
    ] {
        if let Some(n) = raw {
            if !(1..=100).contains(n.get_ref()) {
                return Err(cx.err(
                    n.span(),
                    field,
                    format!("{}: must be from 1 to 100", n.get_ref()),
                ));
            }
            *slot = *n.get_ref() as u32;
        }
    }
    Ok(h)
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
mod tests;
