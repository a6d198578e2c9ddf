//! The checks that turn each part of the file into the typed configuration. Every error names
//! file, line and field.
use std::path::PathBuf;

use toml::Spanned;

use super::{raw::*, *};

mod health;
mod outlier;
mod vip;

pub(super) use vip::vip;

/// The field a serde message is about, where it names one.
pub(super) fn field_of(msg: &str) -> String {
    for marker in ["unknown field `", "missing field `", "duplicate key `"] {
        if let Some(rest) = msg.split(marker).nth(1) {
            return rest.split('`').next().unwrap_or("-").to_string();
        }
    }
    "-".into()
}

/// An outer source address: of its family, and one a host can send from.
fn source<A: std::str::FromStr + Into<std::net::IpAddr> + Copy>(
    cx: &Ctx,
    raw: Option<Spanned<String>>,
    field: &str,
    family: &str,
) -> Result<Option<A>, ConfigError> {
    let Some(s) = raw else { return Ok(None) };
    let a: A = s.get_ref().parse().map_err(|_| {
        cx.err(
            s.span(),
            field,
            format!("{:?} is not an {family} address", s.get_ref()),
        )
    })?;
    if let Some(why) = super::rules::unusable(&a.into()) {
        return Err(cx.err(
            s.span(),
            field,
            format!(
                "{}: {why} cannot be the source of encapsulated packets",
                s.get_ref()
            ),
        ));
    }
    Ok(Some(a))
}

pub(super) fn agent(cx: &Ctx, raw: Spanned<RawAgent>) -> Result<Agent, ConfigError> {
    let raw = raw.into_inner();
    let interfaces = interfaces(cx, raw.interfaces)?;
    let xdp_mode = match raw.xdp_mode {
        None => XdpMode::Native,
        Some(m) => one_of(
            cx,
            m,
            "agent.xdp_mode",
            &[
                ("native", XdpMode::Native),
                ("generic", XdpMode::Generic),
                ("auto", XdpMode::Auto),
            ],
        )?,
    };
    let instance = instance(cx, raw.instance)?;
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
        Some(n) => in_range(cx, &n, "agent.flow_table_size", 1024, 1 << 26)?,
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
    let source_v4 = source(cx, raw.source_v4, "agent.source_v4", "IPv4")?;
    let source_v6 = source(cx, raw.source_v6, "agent.source_v6", "IPv6")?;
    // (source_prefix checked the family.)
    let source_v4_prefix =
        match source_prefix(cx, raw.source_v4_prefix, "agent.source_v4_prefix", 30)? {
            Some(ipnet::IpNet::V4(n)) => Some(n),
            _ => None,
        };
    let source_v6_prefix =
        match source_prefix(cx, raw.source_v6_prefix, "agent.source_v6_prefix", 126)? {
            Some(ipnet::IpNet::V6(n)) => Some(n),
            _ => None,
        };
    let gue_port = match raw.gue_port {
        None => GUE_PORT_DEFAULT,
        Some(p) => in_range(cx, &p, "agent.gue_port", 1, 65535)? as u16,
    };
    let path_mtu = match raw.path_mtu {
        None => None,
        Some(n) => Some(in_range(cx, &n, "agent.path_mtu", 1280, 65535)?),
    };
    let day = 86_400;
    let flow_active = duration(
        cx,
        raw.flow_active,
        "agent.flow_active",
        30,
        (1, day),
        "1s to 24h",
    )?;
    let unbalanced = match raw.unbalanced {
        None => Unbalanced::Pass,
        Some(u) => one_of(
            cx,
            u,
            "agent.unbalanced",
            &[("pass", Unbalanced::Pass), ("drop", Unbalanced::Drop)],
        )?,
    };
    let tcp_idle = duration(
        cx,
        raw.tcp_idle,
        "agent.tcp_idle",
        lb_common::TCP_IDLE_DEFAULT_S as u64,
        (10, 7 * day),
        "10s to 7d",
    )?;
    Ok(Agent {
        interfaces,
        xdp_mode,
        instance,
        socket,
        state_dir,
        pin_dir,
        flow_table_size,
        flow_active,
        metrics,
        source_v4,
        source_v6,
        path_mtu,
        answer_echo: raw.answer_echo.is_some_and(|a| a.into_inner()),
        source_v4_prefix,
        source_v6_prefix,
        gue_port,
        unbalanced,
        tcp_idle,
    })
}

/// A prefix the outer sources are chosen from: no host bits set, at most `max_len` long (two
/// host bits at least: a subnet's own address and its broadcast are never used).
fn source_prefix(
    cx: &Ctx,
    raw: Option<Spanned<String>>,
    field: &str,
    max_len: u8,
) -> Result<Option<ipnet::IpNet>, ConfigError> {
    let Some(p) = raw else {
        return Ok(None);
    };
    let net: ipnet::IpNet = p.get_ref().parse().map_err(|_| {
        cx.err(
            p.span(),
            field,
            format!("{:?} is not a prefix (ADDR/LEN)", p.get_ref()),
        )
    })?;
    if net.trunc() != net {
        return Err(cx.err(
            p.span(),
            field,
            format!("{net}: host bits set (the prefix is {})", net.trunc()),
        ));
    }
    let v6 = field.ends_with("v6_prefix");
    if net.addr().is_ipv6() != v6 {
        let family = if v6 { "IPv6" } else { "IPv4" };
        return Err(cx.err(p.span(), field, format!("{net} is not an {family} prefix")));
    }
    if net.prefix_len() > max_len || net.prefix_len() == 0 {
        return Err(cx.err(
            p.span(),
            field,
            format!("{net}: from /1 to /{max_len} (two host bits at least)"),
        ));
    }
    Ok(Some(net))
}

/// `agent.interfaces`: at least one, each named once, each a possible interface name.
fn interfaces(cx: &Ctx, raw: Spanned<Vec<Spanned<String>>>) -> Result<Vec<String>, ConfigError> {
    let span = raw.span();
    let interfaces: Vec<String> = raw
        .into_inner()
        .into_iter()
        .map(Spanned::into_inner)
        .collect();
    let field = "agent.interfaces";
    if interfaces.is_empty() {
        return Err(cx.err(span, field, "name at least one interface"));
    }
    if let Some(twice) = interfaces
        .iter()
        .enumerate()
        .find_map(|(i, x)| interfaces[..i].contains(x).then_some(x))
    {
        return Err(cx.err(span, field, format!("{twice:?} is named twice")));
    }
    if let Some(bad) = interfaces
        .iter()
        .find(|i| i.is_empty() || i.len() > 15 || i.contains('/'))
    {
        return Err(cx.err(span, field, format!("{bad:?} is not an interface name")));
    }
    Ok(interfaces)
}

/// `agent.instance`: 1-32 letters, digits, '-' or '_'; "default" when not given.
fn instance(cx: &Ctx, raw: Option<Spanned<String>>) -> Result<String, ConfigError> {
    let Some(i) = raw else {
        return Ok("default".to_string());
    };
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
    Ok(i.into_inner())
}

/// The value `raw` names among `choices`, or an error that lists them.
fn one_of<T: Copy>(
    cx: &Ctx,
    raw: Spanned<String>,
    field: &str,
    choices: &[(&str, T)],
) -> Result<T, ConfigError> {
    if let Some((_, v)) = choices.iter().find(|(name, _)| *name == raw.get_ref()) {
        return Ok(*v);
    }
    let names: Vec<String> = choices.iter().map(|(n, _)| format!("{n:?}")).collect();
    Err(cx.err(
        raw.span(),
        field,
        format!("{:?}: expected {}", raw.get_ref(), names.join(" or ")),
    ))
}

/// An integer from `min` to `max`.
fn in_range(
    cx: &Ctx,
    n: &Spanned<i64>,
    field: &str,
    min: i64,
    max: i64,
) -> Result<u32, ConfigError> {
    if (min..=max).contains(n.get_ref()) {
        Ok(*n.get_ref() as u32)
    } else {
        Err(cx.err(
            n.span(),
            field,
            format!("{}: must be from {min} to {max}", n.get_ref()),
        ))
    }
}

/// A duration within `(min, max)` seconds (`text` says so in the error); `default_s` when not
/// given.
fn duration(
    cx: &Ctx,
    raw: Option<Spanned<String>>,
    field: &str,
    default_s: u64,
    (min, max): (u64, u64),
    text: &str,
) -> Result<Duration, ConfigError> {
    let Some(d) = raw else {
        return Ok(Duration::from_secs(default_s));
    };
    parse_duration(d.get_ref())
        .filter(|t| *t >= Duration::from_secs(min) && *t <= Duration::from_secs(max))
        .ok_or_else(|| {
            cx.err(
                d.span(),
                field,
                format!("{:?}: a duration from {text}", d.get_ref()),
            )
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
