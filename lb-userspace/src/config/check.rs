//! The checks that turn each part of the file into the typed configuration. Every error names
//! file, line and field.
use std::{collections::HashSet, net::IpAddr, path::PathBuf};

use lb_common::{RING_SIZE_DEFAULT, RING_STRIDE};
use toml::Spanned;

use super::{raw::*, *};

/// The field a serde message is about, where it names one.
pub(super) fn field_of(msg: &str) -> String {
    for marker in ["unknown field `", "missing field `", "duplicate key `"] {
        if let Some(rest) = msg.split(marker).nth(1) {
            return rest.split('`').next().unwrap_or("-").to_string();
        }
    }
    "-".into()
}

pub(super) fn agent(cx: &Ctx, raw: Spanned<RawAgent>) -> Result<Agent, ConfigError> {
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
    let instance = match raw.instance {
        None => "default".to_string(),
        Some(i) => {
            let ok = !i.get_ref().is_empty()
                && i.get_ref().len() <= 32
                && i.get_ref()
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c));
            if !ok {
                return Err(cx.err(
                    i.span(),
                    "agent.instance",
                    "use 1-32 letters, digits, '-' or '_'",
                ));
            }
            i.into_inner()
        }
    };
    let socket = raw
        .socket
        .map(|s| PathBuf::from(s.into_inner()))
        .unwrap_or_else(|| DEFAULT_SOCKET.into());
    let state_dir = raw
        .state_dir
        .map(|s| PathBuf::from(s.into_inner()))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR).join(&instance));
    let pin_dir = raw
        .pin_dir
        .map(|s| PathBuf::from(s.into_inner()))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PIN_DIR).join(&instance));
    let flow_table_size = match raw.flow_table_size {
        None => lb_common::FLOWS_DEFAULT,
        Some(n) if (1024..=1 << 26).contains(n.get_ref()) => *n.get_ref() as u32,
        Some(n) => {
            return Err(cx.err(
                n.span(),
                "agent.flow_table_size",
                format!("{}: must be from 1024 to {}", n.get_ref(), 1 << 26),
            ));
        }
    };
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
    let path_mtu = match raw.path_mtu {
        None => None,
        Some(n) if (1280..=65535).contains(n.get_ref()) => Some(*n.get_ref() as u32),
        Some(n) => {
            return Err(cx.err(
                n.span(),
                "agent.path_mtu",
                format!("{}: must be from 1280 to 65535", n.get_ref()),
            ));
        }
    };
    Ok(Agent {
        interfaces,
        xdp_mode,
        instance,
        socket,
        state_dir,
        pin_dir,
        flow_table_size,
        metrics,
        source_v4,
        source_v6,
        path_mtu,
        answer_echo: raw.answer_echo.is_some_and(|a| a.into_inner()),
    })
}

pub(super) fn bgp(cx: &Ctx, raw: Spanned<RawBgp>) -> Result<Bgp, ConfigError> {
    let span = raw.span();
    let raw = raw.into_inner();
    let path = |v: Option<Spanned<String>>, field: &str, default: &str| {
        let Some(v) = v else {
            return Ok(PathBuf::from(default));
        };
        if !v.get_ref().starts_with('/') {
            return Err(cx.err(v.span(), field, "an absolute path"));
        }
        Ok(PathBuf::from(v.into_inner()))
    };
    let bird_socket = path(raw.bird_socket, "bgp.bird_socket", DEFAULT_BIRD_SOCKET)?;
    let routes_file = path(raw.routes_file, "bgp.routes_file", DEFAULT_ROUTES_FILE)?;
    if routes_file.file_name().is_none() {
        return Err(cx.err(span, "bgp.routes_file", "a file, not a folder"));
    }
    Ok(Bgp {
        bird_socket,
        routes_file,
    })
}

pub(super) fn etcd(cx: &Ctx, raw: Spanned<RawEtcd>) -> Result<Etcd, ConfigError> {
    let raw = raw.into_inner();
    let span = raw.endpoints.span();
    let endpoints: Vec<String> = raw
        .endpoints
        .into_inner()
        .into_iter()
        .map(Spanned::into_inner)
        .collect();
    if endpoints.is_empty() {
        return Err(cx.err(
            span,
            "discovery.etcd.endpoints",
            "name at least one endpoint",
        ));
    }
    if let Some(bad) = endpoints.iter().find(|e| {
        let Some(rest) = e.strip_prefix("http://") else {
            return true;
        };
        rest.is_empty() || rest.contains('/')
    }) {
        return Err(cx.err(
            span,
            "discovery.etcd.endpoints",
            format!("{bad:?}: expected http://HOST:PORT"),
        ));
    }
    let prefix = match raw.prefix {
        None => "/lb/".to_string(),
        Some(p) if !p.get_ref().is_empty() => p.into_inner(),
        Some(p) => return Err(cx.err(p.span(), "discovery.etcd.prefix", "must not be empty")),
    };
    Ok(Etcd { endpoints, prefix })
}

pub(super) fn vip(cx: &Ctx, raw: RawVip) -> Result<Vip, ConfigError> {
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
    if address.port() == 0 && health.kind != HealthKind::None && health.port.is_none() {
        return Err(cx.err(
            raw.address.span(),
            "vip.health.port",
            "a VIP on every port (port 0) needs health.port, or kind = \"none\"",
        ));
    }
    let udp_idle = match raw.udp_idle {
        None => Duration::from_secs(lb_common::UDP_IDLE_DEFAULT_S as u64),
        Some(d) => parse_duration(d.get_ref())
            .filter(|d| d.as_secs() >= 1 && d.as_secs() <= 86_400)
            .ok_or_else(|| {
                cx.err(
                    d.span(),
                    "vip.udp_idle",
                    format!("{:?}: a duration from 1s to 24h", d.get_ref()),
                )
            })?,
    };
    let vip_address = address;
    let mut backends = Vec::new();
    let mut hosts: Vec<HostBackend> = Vec::new();
    let mut seen = HashSet::new();
    for b in raw.backend {
        let span = b.span();
        let b = b.into_inner();
        let weight = match &b.weight {
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
        let address = match (b.address, b.host) {
            (Some(a), None) => a,
            (None, Some(h)) => {
                let name = h.get_ref().trim_end_matches('.');
                let ok = !name.is_empty()
                    && name.len() <= 253
                    && name.parse::<IpAddr>().is_err()
                    && name.split('.').all(|l| {
                        !l.is_empty()
                            && l.len() <= 63
                            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    });
                if !ok {
                    return Err(cx.err(
                        h.span(),
                        "vip.backend.host",
                        format!("{:?} is not a hostname", h.get_ref()),
                    ));
                }
                if b.drain.is_some() {
                    return Err(cx.err(
                        h.span(),
                        "vip.backend.drain",
                        "drain applies to an address (drain the resolved address with the CLI)",
                    ));
                }
                if hosts.iter().any(|x| x.host == name) {
                    return Err(cx.err(
                        h.span(),
                        "vip.backend.host",
                        format!("duplicate backend host {name:?}"),
                    ));
                }
                hosts.push(HostBackend {
                    host: name.to_string(),
                    weight,
                });
                continue;
            }
            _ => {
                return Err(cx.err(span, "vip.backend", "give either address or host"));
            }
        };
        let ip: IpAddr = address.get_ref().parse().map_err(|_| {
            cx.err(
                address.span(),
                "vip.backend.address",
                format!("{:?} is not an IP address", address.get_ref()),
            )
        })?;
        if ip.is_ipv4() != vip_address.is_ipv4() {
            return Err(cx.err(
                address.span(),
                "vip.backend.address",
                format!("{ip} is not of the VIP's address family ({vip_address})"),
            ));
        }
        if !seen.insert(ip) {
            return Err(cx.err(
                address.span(),
                "vip.backend.address",
                format!("duplicate backend {ip}"),
            ));
        }
        backends.push(Backend {
            address: ip,
            weight,
            drain: b.drain.unwrap_or(false),
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
        udp_idle,
        fragments: raw.fragments.is_some_and(|f| f.into_inner()),
        ring_size,
        health,
        backends,
        hosts,
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
    if let Some(p) = raw.port {
        if !(1..=65535).contains(p.get_ref()) {
            return Err(cx.err(
                p.span(),
                "vip.health.port",
                format!("{}: not a port", p.get_ref()),
            ));
        }
        h.port = Some(*p.get_ref() as u16);
    }
    if let Some(st) = raw.expect_status {
        if !(100..=599).contains(st.get_ref()) {
            return Err(cx.err(
                st.span(),
                "vip.health.expect_status",
                format!("{}: not an HTTP status", st.get_ref()),
            ));
        }
        h.expect_status = *st.get_ref() as u16;
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
