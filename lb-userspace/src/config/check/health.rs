//! `[vip.health]`: how a backend is probed, into a [`Health`].
use std::path::PathBuf;

use toml::Spanned;

use crate::config::{raw::*, *};

/// `[vip.health]`, checked field by field; the probe's own fields only for the kinds that use
/// them.
pub(in crate::config) fn health(cx: &Ctx, raw: Spanned<RawHealth>) -> Result<Health, ConfigError> {
    let span = raw.span();
    let raw = raw.into_inner();
    let mut h = Health::default();
    let raw_probe = RawProbe {
        body: raw.body,
        sni: raw.sni,
        verify: raw.verify,
        ca: raw.ca,
        send: raw.send,
        send_hex: raw.send_hex,
        expect: raw.expect,
        expect_hex: raw.expect_hex,
    };
    if let Some(d) = raw.damping {
        h.damping = d.into_inner();
    }
    if let Some(k) = raw.kind {
        h.kind = match k.get_ref().as_str() {
            "tcp" => HealthKind::Tcp,
            "http" => HealthKind::Http,
            "https" => HealthKind::Https,
            "udp" => HealthKind::Udp,
            "none" => HealthKind::None,
            other => {
                return Err(cx.err(
                    k.span(),
                    "vip.health.kind",
                    format!("{other:?}: expected tcp, http, https, udp or none"),
                ));
            }
        };
    }
    if let Some(v) = raw.via {
        h.via = match v.get_ref().as_str() {
            "tunnel" => Via::Tunnel,
            "direct" => Via::Direct,
            other => {
                return Err(cx.err(
                    v.span(),
                    "vip.health.via",
                    format!("{other:?}: expected tunnel (to VIP:port, as the clients' packets go) or direct (to the backend's address)"),
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
    probe_fields(cx, raw_probe, span, &mut h)?;
    Ok(h)
}

/// What the probe sends and expects, each field only for the kinds that use it.
struct RawProbe {
    body: Option<Spanned<String>>,
    sni: Option<Spanned<String>>,
    verify: Option<Spanned<bool>>,
    ca: Option<Spanned<String>>,
    send: Option<Spanned<String>>,
    send_hex: Option<Spanned<String>>,
    expect: Option<Spanned<String>>,
    expect_hex: Option<Spanned<String>>,
}

fn probe_fields(
    cx: &Ctx,
    raw: RawProbe,
    table: std::ops::Range<usize>,
    h: &mut Health,
) -> Result<(), ConfigError> {
    let kind = h.kind;
    let only = |span: std::ops::Range<usize>, field: &str, kinds: &[HealthKind], what: &str| {
        if kinds.contains(&kind) {
            Ok(())
        } else {
            Err(cx.err(span, field, format!("only for kind = {what}")))
        }
    };
    let (http, https, udp) = (
        &[HealthKind::Http, HealthKind::Https][..],
        &[HealthKind::Https][..],
        &[HealthKind::Udp][..],
    );
    if let Some(b) = raw.body {
        only(b.span(), "vip.health.body", http, "\"http\" or \"https\"")?;
        h.body = Some(b.into_inner());
    }
    if let Some(n) = raw.sni {
        only(n.span(), "vip.health.sni", https, "\"https\"")?;
        if rustls::pki_types::ServerName::try_from(n.get_ref().as_str()).is_err() {
            return Err(cx.err(
                n.span(),
                "vip.health.sni",
                format!("{:?} is not a host name", n.get_ref()),
            ));
        }
        h.sni = Some(n.into_inner());
    }
    if let Some(v) = raw.verify {
        only(v.span(), "vip.health.verify", https, "\"https\"")?;
        h.verify = v.into_inner();
    }
    if let Some(c) = raw.ca {
        only(c.span(), "vip.health.ca", https, "\"https\"")?;
        h.ca = Some(PathBuf::from(c.into_inner()));
    }
    let bytes = |text: Option<Spanned<String>>,
                 hex: Option<Spanned<String>>,
                 field: &str|
     -> Result<Option<Vec<u8>>, ConfigError> {
        match (text, hex) {
            (Some(t), Some(_)) => Err(cx.err(
                t.span(),
                field,
                format!("either {field} or {field}_hex, not both"),
            )),
            (Some(t), None) => {
                only(t.span(), field, udp, "\"udp\"")?;
                Ok(Some(t.into_inner().into_bytes()))
            }
            (None, Some(x)) => {
                only(x.span(), &format!("{field}_hex"), udp, "\"udp\"")?;
                decode_hex(x.get_ref())
                    .filter(|b| !b.is_empty())
                    .map(Some)
                    .ok_or_else(|| {
                        cx.err(x.span(), format!("{field}_hex"), "not pairs of hex digits")
                    })
            }
            (None, None) => Ok(None),
        }
    };
    let send = bytes(raw.send, raw.send_hex, "vip.health.send")?;
    h.expect = bytes(raw.expect, raw.expect_hex, "vip.health.expect")?;
    match send {
        Some(s) if s.len() <= 1472 => h.send = s,
        Some(s) => {
            return Err(cx.err(
                table.clone(),
                "vip.health.send",
                format!("{} bytes: at most 1472", s.len()),
            ));
        }
        None if kind == HealthKind::Udp => {
            return Err(cx.err(
                table.clone(),
                "vip.health.send",
                "kind = \"udp\" needs send or send_hex (what to send)",
            ));
        }
        None => {}
    }
    Ok(())
}

/// Bytes from hex digits (spaces allowed between pairs).
fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok())
        .collect()
}
