//! `[vip.health]` and `[vip.outlier]`: probe kinds and their fields, the probe's way, passive
//! health; with the forwarding modes and families their probes depend on.
use super::*;

/// A UDP VIP without `[vip.health]` is not checked (a TCP connect would fail it); a TCP one
/// gets a TCP connect.
#[test]
fn a_udp_vip_is_never_checked_by_a_tcp_connect_unless_asked() {
    let text = |proto: &str, health: &str| {
        format!(
            "[agent]\ninterfaces = [\"eth0\"]\nsource_v4 = \"198.18.0.2\"\n\n\
             [[vip]]\nname = \"v\"\naddress = \"198.19.0.1:53\"\nprotocol = \"{proto}\"\n{health}\n\
             [[vip.backend]]\naddress = \"198.18.0.11\"\n"
        )
    };
    let kind = |proto, health| {
        parse("lb.toml", &text(proto, health)).unwrap().vips[0]
            .health
            .kind
    };
    assert_eq!(kind("udp", ""), HealthKind::None);
    assert_eq!(kind("tcp", ""), HealthKind::Tcp);
    assert_eq!(
        kind("udp", "[vip.health]\nkind = \"tcp\"\nport = 8053"),
        HealthKind::Tcp
    );
}

/// The probe kinds' own fields: parsed for their kind, refused for another, with the line.
#[test]
fn probe_fields_belong_to_their_kind() {
    let with = |health: &str| GOOD.replacen("kind = \"http\"\npath = \"/healthz\"", health, 1);
    let c = parse(
        "lb.toml",
        &with("kind = \"https\"\npath = \"/healthz\"\nsni = \"app.lb.test\"\nverify = false\nca = \"/etc/lb/ca.pem\"\nbody = \"ok\""),
    )
    .unwrap();
    let h = &c.vips[0].health;
    assert_eq!(h.kind, HealthKind::Https);
    assert_eq!(
        (h.sni.as_deref(), h.verify, h.body.as_deref()),
        (Some("app.lb.test"), false, Some("ok"))
    );
    let c = parse(
        "lb.toml",
        &with("kind = \"udp\"\nsend_hex = \"12 34 00\"\nexpect = \"pong\""),
    )
    .unwrap();
    let h = &c.vips[0].health;
    assert_eq!(
        (h.send.as_slice(), h.expect.as_deref()),
        (&[0x12, 0x34, 0][..], Some(&b"pong"[..]))
    );
    let cases: &[(&str, &str, &str)] = &[
        (
            "kind = \"udp\"",
            "vip.health.send",
            "needs send or send_hex",
        ),
        (
            "kind = \"udp\"\nsend = \"a\"\nsend_hex = \"61\"",
            "vip.health.send",
            "not both",
        ),
        (
            "kind = \"udp\"\nsend_hex = \"6\"",
            "vip.health.send_hex",
            "hex digits",
        ),
        (
            "kind = \"tcp\"\nsend = \"ping\"",
            "vip.health.send",
            "only for kind = \"udp\"",
        ),
        (
            "kind = \"http\"\nsni = \"a.lb.test\"",
            "vip.health.sni",
            "only for kind = \"https\"",
        ),
        (
            "kind = \"https\"\nsni = \"not a name!\"",
            "vip.health.sni",
            "not a host name",
        ),
        ("kind = \"tcp\"\nbody = \"ok\"", "vip.health.body", "http"),
        ("kind = \"quic\"", "vip.health.kind", "https, udp or none"),
    ];
    for (health, field, reason) in cases {
        let err = parse("lb.toml", &with(health)).expect_err(health);
        assert_eq!(err.field, *field, "{health}: {err}");
        assert!(err.reason.contains(reason), "{health}: {err}");
        assert!(err.line >= 12, "{health}: {err}");
    }
}

/// A backend of the other family is refused with the reason where it cannot be (an IPv6 VIP
/// over IPv4; IPv4 over IPv6 with l2dsr, or without an IPv6 outer source); `via`,
/// `[vip.outlier]`, `forwarding` and `gue_port` take what they document and refuse the rest
/// (that `lb config` renders them back: `state::tests`).
#[test]
fn families_probe_ways_outliers_and_modes() {
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "protocol = \"tcp\"\n\n[vip.health]\nkind = \"http\"\npath = \"/healthz\"\ninterval = \"2s\"\ntimeout = \"300ms\"\n\n[[vip.backend]]\naddress = \"198.18.1.11\"",
            "protocol = \"tcp\"\nforwarding = \"l2dsr\"\n\n[vip.health]\nkind = \"http\"\npath = \"/healthz\"\ninterval = \"2s\"\ntimeout = \"300ms\"\n\n[[vip.backend]]\naddress = \"fd00::11\"",
            "vip.backend.address",
            "l2dsr hands the client's packet on unchanged",
        ),
        (
            "source_v6 = \"fd00::2\"",
            "source_v6 = \"fd00::2\"\ngue_port = 0",
            "agent.gue_port",
            "from 1 to 65535",
        ),
        (
            "interval = \"2s\"",
            "interval = \"2s\"\nvia = \"sideways\"",
            "vip.health.via",
            "expected tunnel",
        ),
        (
            "[[vip.backend]]\naddress = \"198.18.1.11\"",
            "[vip.outlier]\nretry_percent = 0\n\n[[vip.backend]]\naddress = \"198.18.1.11\"",
            "vip.outlier.retry_percent",
            "from 1 to 100",
        ),
        (
            "[[vip.backend]]\naddress = \"198.18.1.11\"",
            "[vip.outlier]\nbase_ejection_time = \"1m\"\nmax_ejection_time = \"10s\"\n\n[[vip.backend]]\naddress = \"198.18.1.11\"",
            "vip.outlier.max_ejection_time",
            "shorter than",
        ),
        (
            "protocol = \"tcp\"",
            "protocol = \"tcp\"\nforwarding = \"gre\"",
            "vip.forwarding",
            "expected ipip, gue or l2dsr",
        ),
    ];
    for (from, to, field, reason) in cases {
        assert!(GOOD.contains(from), "{from}");
        let text = GOOD.replacen(from, to, 1);
        let err = parse("lb.toml", &text).expect_err(to);
        assert_eq!(err.field, *field, "{to}: {err}");
        assert!(err.reason.contains(reason), "{to}: {err}");
    }
    // IPv6 VIP, IPv4 backend: never.
    let v6 = GOOD.replacen(
        "address = \"198.19.0.100:80\"",
        "address = \"[fd00::80]:80\"",
        1,
    );
    let err = parse("lb.toml", &v6).expect_err("v6 over v4");
    assert!(err.reason.contains("cannot be served over IPv4"), "{err}");
    // IPv4 VIP, IPv6 backend: the outer header needs an IPv6 source.
    let no_source = GOOD.replacen("source_v6 = \"fd00::2\"\n", "", 1).replacen(
        "address = \"198.18.1.12\"",
        "address = \"fd00::12\"",
        1,
    );
    let err = parse("lb.toml", &no_source).expect_err("no IPv6 source");
    assert_eq!(err.field, "vip.backend.address", "{err}");
    assert!(err.reason.contains("needs agent.source_v6"), "{err}");
    let ok = GOOD.replacen(
        "[[vip.backend]]\naddress = \"198.18.1.11\"",
        "[vip.outlier]\nmax_ejection_percent = 25\n\n[[vip.backend]]\naddress = \"198.18.1.11\"",
        1,
    )
    .replacen("protocol = \"tcp\"", "protocol = \"tcp\"\nforwarding = \"l2dsr\"", 1)
    .replacen("interval = \"2s\"", "interval = \"2s\"\nvia = \"direct\"", 1);
    let c = parse("lb.toml", &ok).expect("accepted");
    let web = &c.vips[0];
    assert_eq!(web.forwarding, Forwarding::L2dsr);
    assert_eq!(web.health.via, Via::Direct);
    assert_eq!(web.outlier.map(|o| o.max_ejection_percent), Some(25));
    assert_eq!(c.agent.gue_port, crate::config::GUE_PORT_DEFAULT);
    // GUE, and an IPv4 VIP over an IPv6 backend (IPv4 in IPv6), on another port.
    let gue = GOOD
        .replacen(
            "protocol = \"tcp\"",
            "protocol = \"tcp\"\nforwarding = \"gue\"",
            1,
        )
        .replacen("address = \"198.18.1.12\"", "address = \"fd00::12\"", 1)
        .replacen(
            "source_v6 = \"fd00::2\"",
            "source_v6 = \"fd00::2\"\ngue_port = 5555",
            1,
        );
    let c = parse("lb.toml", &gue).expect("accepted");
    assert_eq!(c.vips[0].forwarding, Forwarding::Gue);
    assert_eq!(c.agent.gue_port, 5555);
    assert!(c.vips[0].backends.iter().any(|b| b.address.is_ipv6()));
}
