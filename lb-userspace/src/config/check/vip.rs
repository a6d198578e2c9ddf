//! A `[[vip]]` table and its health check, into a [`Vip`].
use std::{collections::HashSet, net::IpAddr};

use lb_common::{RING_SIZE_DEFAULT, RING_STRIDE};

use crate::config::{raw::*, *};

pub(in crate::config) fn vip(cx: &Ctx, raw: RawVip) -> Result<Vip, ConfigError> {
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
