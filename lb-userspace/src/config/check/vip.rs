//! A `[[vip]]` table and its health check, into a [`Vip`].
use std::{collections::HashSet, net::IpAddr};

use lb_common::{RING_SIZE_DEFAULT, RING_STRIDE};
use toml::Spanned;

use crate::config::{raw::*, *};

/// A `[[vip]]` table, checked step by step; `agent` is the balancer's own part of the file
/// (its sources are no backend's address).
pub(in crate::config) fn vip(cx: &Ctx, raw: RawVip, agent: &Agent) -> Result<Vip, ConfigError> {
    let name = name(cx, &raw.name)?;
    let address = address(cx, &raw.address)?;
    let protocol = protocol(cx, raw.protocol)?;
    let forwarding = forwarding(cx, raw.forwarding)?;
    let ring_size = ring_size(cx, raw.ring_size)?;
    let health = match raw.health {
        // A UDP service answers no TCP connect: unchecked unless the file says how.
        None if protocol == Protocol::Udp => Health {
            kind: HealthKind::None,
            ..Health::default()
        },
        None => Health::default(),
        Some(h) => super::health::health(cx, h)?,
    };
    if address.port() == 0 && health.kind != HealthKind::None && health.port.is_none() {
        return Err(cx.err(
            raw.address.span(),
            "vip.health.port",
            "a VIP on every port (port 0) needs health.port, or kind = \"none\"",
        ));
    }
    let udp_idle = udp_idle(cx, raw.udp_idle)?;
    let fragments = fragments(cx, raw.fragments, protocol)?;
    let on_down = on_down(cx, raw.on_down, protocol)?;
    let acl = match raw.acl {
        None => Acl::default(),
        Some(a) => acl(cx, a)?,
    };
    let limits = raw.limits.map(|l| limits(cx, l)).transpose()?;
    let outlier = raw
        .outlier
        .map(|o| super::outlier::outlier(cx, o, protocol))
        .transpose()?;
    let (hash, affinity_prefix) = hash(
        cx,
        raw.hash,
        raw.affinity_prefix_v4,
        raw.affinity_prefix_v6,
        address.is_ipv4(),
    )?;
    let (backends, hosts) = backends(cx, raw.backend, address, forwarding, agent)?;
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
        fragments,
        ring_size,
        health,
        on_down,
        acl,
        limits,
        outlier,
        hash,
        affinity_prefix,
        backends,
        hosts,
    })
}

/// `hash` ("5tuple", "src", "src_dport") and the affinity prefix of the VIP's family (only
/// with a hash of the source).
fn hash(
    cx: &Ctx,
    raw: Option<Spanned<String>>,
    p4: Option<Spanned<i64>>,
    p6: Option<Spanned<i64>>,
    v4: bool,
) -> Result<(HashFields, Option<u8>), ConfigError> {
    let fields = match &raw {
        None => HashFields::FiveTuple,
        Some(h) => match h.get_ref().as_str() {
            "5tuple" => HashFields::FiveTuple,
            "src" => HashFields::Src,
            "src_dport" => HashFields::SrcDport,
            other => {
                return Err(cx.err(
                    h.span(),
                    "vip.hash",
                    format!("{other:?}: expected \"5tuple\", \"src\" or \"src_dport\""),
                ));
            }
        },
    };
    let (mine, other, field, other_field, max) = if v4 {
        (
            p4,
            p6,
            "vip.affinity_prefix_v4",
            "vip.affinity_prefix_v6",
            32,
        )
    } else {
        (
            p6,
            p4,
            "vip.affinity_prefix_v6",
            "vip.affinity_prefix_v4",
            128,
        )
    };
    if let Some(o) = other {
        return Err(cx.err(
            o.span(),
            other_field,
            "for the other address family than the VIP's",
        ));
    }
    let Some(p) = mine else {
        return Ok((fields, None));
    };
    if fields == HashFields::FiveTuple {
        return Err(cx.err(
            p.span(),
            field,
            "an affinity prefix needs hash = \"src\" or \"src_dport\"",
        ));
    }
    if !(1..=max).contains(p.get_ref()) {
        return Err(cx.err(
            p.span(),
            field,
            format!("{}: must be from 1 to {max}", p.get_ref()),
        ));
    }
    Ok((fields, Some(*p.get_ref() as u8)))
}

/// Most prefixes one VIP's ACL may hold (all VIPs share the program's trie).
const ACL_MAX: usize = 16_384;

/// `[vip.acl]`: `allow` and `deny`, IPv4 and IPv6 prefixes (a bare address is its own
/// prefix); none with host bits set, none in both lists.
fn acl(cx: &Ctx, raw: Spanned<RawAcl>) -> Result<Acl, ConfigError> {
    let span = raw.span();
    let raw = raw.into_inner();
    let list = |items: Vec<Spanned<String>>, field: &str| {
        items
            .into_iter()
            .map(|s| {
                let text = s.get_ref().trim();
                let net = match text.parse::<ipnet::IpNet>() {
                    Ok(n) => n,
                    Err(_) => match text.parse::<IpAddr>() {
                        Ok(a) => ipnet::IpNet::from(a),
                        Err(_) => {
                            return Err(cx.err(
                                s.span(),
                                field,
                                format!("{text:?} is not an address or prefix (ADDR/LEN)"),
                            ));
                        }
                    },
                };
                if net.trunc() != net {
                    return Err(cx.err(
                        s.span(),
                        field,
                        format!("{text}: host bits set (the prefix is {})", net.trunc()),
                    ));
                }
                Ok(net)
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let allow = list(raw.allow, "vip.acl.allow")?;
    let deny = list(raw.deny, "vip.acl.deny")?;
    if let Some(both) = allow.iter().find(|n| deny.contains(n)) {
        return Err(cx.err(span, "vip.acl", format!("{both} is in both allow and deny")));
    }
    if allow.len() + deny.len() > ACL_MAX {
        return Err(cx.err(
            span,
            "vip.acl",
            format!("{} prefixes: at most {ACL_MAX}", allow.len() + deny.len()),
        ));
    }
    Ok(Acl { allow, deny })
}

/// `[vip.limits]`: `new_flows_per_source` (1 to 1,000,000 a second) and `burst` (1 to
/// 1,000,000; default the rate, a second's worth).
fn limits(cx: &Ctx, raw: Spanned<RawLimits>) -> Result<Limits, ConfigError> {
    let raw = raw.into_inner();
    let range = |v: &Spanned<i64>, field: &str| {
        let n = *v.get_ref();
        if (1..=1_000_000).contains(&n) {
            Ok(n as u32)
        } else {
            Err(cx.err(v.span(), field, format!("{n}: must be from 1 to 1000000")))
        }
    };
    let rate = range(&raw.new_flows_per_source, "vip.limits.new_flows_per_source")?;
    let burst = match &raw.burst {
        None => rate,
        Some(b) => range(b, "vip.limits.burst")?,
    };
    Ok(Limits {
        new_flows_per_source: rate,
        burst,
    })
}

fn on_down(
    cx: &Ctx,
    raw: Option<Spanned<String>>,
    protocol: Protocol,
) -> Result<OnDown, ConfigError> {
    match raw {
        None if protocol == Protocol::Tcp => Ok(OnDown::Keep),
        None => Ok(OnDown::Move),
        Some(o) => match o.get_ref().as_str() {
            "keep" => Ok(OnDown::Keep),
            "move" => Ok(OnDown::Move),
            other => Err(cx.err(
                o.span(),
                "vip.on_down",
                format!("{other:?}: expected keep (established flows stay) or move (they take the ring again)"),
            )),
        },
    }
}

fn name(cx: &Ctx, raw: &Spanned<String>) -> Result<String, ConfigError> {
    let name = raw.get_ref().clone();
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !ok {
        return Err(cx.err(
            raw.span(),
            "vip.name",
            format!("{name:?}: use 1-64 letters, digits, '-', '_' or '.'"),
        ));
    }
    Ok(name)
}

fn address(cx: &Ctx, raw: &Spanned<String>) -> Result<SocketAddr, ConfigError> {
    let address: SocketAddr = raw.get_ref().parse().map_err(|_| {
        cx.err(
            raw.span(),
            "vip.address",
            format!(
                "{:?} is not ADDRESS:PORT (IPv6 as [ADDRESS]:PORT)",
                raw.get_ref()
            ),
        )
    })?;
    if let Some(why) = super::super::rules::unusable(&address.ip()) {
        return Err(cx.err(
            raw.span(),
            "vip.address",
            format!("{}: {why} cannot be a VIP", address.ip()),
        ));
    }
    Ok(address)
}

fn protocol(cx: &Ctx, raw: Option<Spanned<String>>) -> Result<Protocol, ConfigError> {
    match raw {
        None => Ok(Protocol::Tcp),
        Some(p) => match p.get_ref().as_str() {
            "tcp" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            other => Err(cx.err(
                p.span(),
                "vip.protocol",
                format!("{other:?}: expected tcp or udp"),
            )),
        },
    }
}

fn forwarding(cx: &Ctx, raw: Option<Spanned<String>>) -> Result<Forwarding, ConfigError> {
    match raw {
        None => Ok(Forwarding::Ipip),
        Some(f) => match f.get_ref().as_str() {
            "ipip" => Ok(Forwarding::Ipip),
            "gue" => Ok(Forwarding::Gue),
            "l2dsr" => Ok(Forwarding::L2dsr),
            other => Err(cx.err(
                f.span(),
                "vip.forwarding",
                format!("{other:?}: expected ipip, gue or l2dsr"),
            )),
        },
    }
}

fn ring_size(cx: &Ctx, raw: Option<Spanned<i64>>) -> Result<u32, ConfigError> {
    let Some(r) = raw else {
        return Ok(RING_SIZE_DEFAULT);
    };
    let n = *r.get_ref();
    if n < 7 || n > RING_STRIDE as i64 || !is_prime(n as u64) {
        return Err(cx.err(
            r.span(),
            "vip.ring_size",
            format!("{n}: must be a prime from 7 to {RING_STRIDE}"),
        ));
    }
    Ok(n as u32)
}

fn udp_idle(cx: &Ctx, raw: Option<Spanned<String>>) -> Result<Duration, ConfigError> {
    let Some(d) = raw else {
        return Ok(Duration::from_secs(lb_common::UDP_IDLE_DEFAULT_S as u64));
    };
    parse_duration(d.get_ref())
        .filter(|d| d.as_secs() >= 1 && d.as_secs() <= 86_400)
        .ok_or_else(|| {
            cx.err(
                d.span(),
                "vip.udp_idle",
                format!("{:?}: a duration from 1s to 24h", d.get_ref()),
            )
        })
}

/// Fragments follow the VIP's 3-tuple, not the 5-tuple of a connection: for TCP they would
/// reach another backend than the connection's, so TCP VIPs refuse them.
fn fragments(
    cx: &Ctx,
    raw: Option<Spanned<bool>>,
    protocol: Protocol,
) -> Result<bool, ConfigError> {
    let Some(f) = raw else { return Ok(false) };
    if *f.get_ref() && protocol == Protocol::Tcp {
        return Err(cx.err(
            f.span(),
            "vip.fragments",
            "a TCP VIP cannot take fragments: they carry no ports, so they would be balanced apart from their connection (TCP avoids fragments with path MTU discovery)",
        ));
    }
    Ok(f.into_inner())
}

/// The `[[vip.backend]]` tables: addresses (checked by [`backend_address`]) and hostnames.
fn backends(
    cx: &Ctx,
    raw: Vec<Spanned<RawBackend>>,
    vip: SocketAddr,
    forwarding: Forwarding,
    agent: &Agent,
) -> Result<(Vec<Backend>, Vec<HostBackend>), ConfigError> {
    let mut backends = Vec::new();
    let mut hosts: Vec<HostBackend> = Vec::new();
    let mut seen = HashSet::new();
    for b in raw {
        let span = b.span();
        let b = b.into_inner();
        let weight = weight(cx, b.weight.as_ref())?;
        match (b.address, b.host) {
            (Some(a), None) => {
                let ip = backend_address(cx, &a, vip, forwarding, agent)?;
                if !seen.insert(ip) {
                    return Err(cx.err(
                        a.span(),
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
            (None, Some(h)) => {
                if b.drain.is_some() {
                    return Err(cx.err(
                        h.span(),
                        "vip.backend.drain",
                        "drain applies to an address (drain the resolved address with the CLI)",
                    ));
                }
                let host = hostname(cx, &h)?;
                if hosts.iter().any(|x| x.host == host) {
                    return Err(cx.err(
                        h.span(),
                        "vip.backend.host",
                        format!("duplicate backend host {host:?}"),
                    ));
                }
                hosts.push(HostBackend { host, weight });
            }
            _ => return Err(cx.err(span, "vip.backend", "give either address or host")),
        }
    }
    Ok((backends, hosts))
}

fn weight(cx: &Ctx, raw: Option<&Spanned<i64>>) -> Result<u32, ConfigError> {
    let Some(w) = raw else { return Ok(100) };
    let n = *w.get_ref();
    if !(0..=10_000).contains(&n) {
        return Err(cx.err(
            w.span(),
            "vip.backend.weight",
            format!("{n}: must be from 0 to 10000"),
        ));
    }
    Ok(n as u32)
}

fn hostname(cx: &Ctx, h: &Spanned<String>) -> Result<String, ConfigError> {
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
    Ok(name.to_string())
}

/// A backend's address: an IP address of the VIP's family that some other host can have.
fn backend_address(
    cx: &Ctx,
    raw: &Spanned<String>,
    vip: SocketAddr,
    forwarding: Forwarding,
    agent: &Agent,
) -> Result<IpAddr, ConfigError> {
    let refuse = |reason: String| cx.err(raw.span(), "vip.backend.address", reason);
    let ip: IpAddr = raw
        .get_ref()
        .parse()
        .map_err(|_| refuse(format!("{:?} is not an IP address", raw.get_ref())))?;
    if ip.is_ipv4() && !vip.is_ipv4() {
        // IPv6 in IPv4 would have to be fragmented for most client packets, and an l2dsr
        // backend receives the client's packet as it is.
        return Err(refuse(format!(
            "{ip} is not of the VIP's address family ({vip}): an IPv6 VIP cannot be served over IPv4 backends (its packets do not fit an IPv4 path once wrapped)"
        )));
    }
    if !ip.is_ipv4() && vip.is_ipv4() {
        // IPv4 in IPv6: the outer header is the backend's family.
        if forwarding == Forwarding::L2dsr {
            return Err(refuse(format!(
                "{ip} is not of the VIP's address family ({vip}): l2dsr hands the client's packet on unchanged, so its backends must be of the VIP's family (ipip and gue carry IPv4 over IPv6)"
            )));
        }
        if agent.source_v6.is_none() {
            return Err(refuse(format!(
                "{ip}: an IPv6 backend needs agent.source_v6 (the outer source of the packets it is sent)"
            )));
        }
    }
    if let Some(why) = super::super::rules::unusable(&ip) {
        return Err(refuse(format!("{ip}: {why} cannot be a backend")));
    }
    if ip == vip.ip() {
        return Err(refuse(format!(
            "{ip} is the VIP itself: its packets would come back to the balancer"
        )));
    }
    let own = [
        agent.source_v4.map(IpAddr::from),
        agent.source_v6.map(IpAddr::from),
    ];
    if own.contains(&Some(ip)) {
        return Err(refuse(format!(
            "{ip} is the balancer's own source address (agent.source_v4/v6)"
        )));
    }
    Ok(ip)
}
