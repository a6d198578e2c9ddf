use super::*;
use lb_common::RING_SIZE_DEFAULT;

const GOOD: &str = r#"
[agent]
interfaces = ["eth0"]
source_v4 = "198.18.0.2"
source_v6 = "fd00::2"

[[vip]]
name = "web"
address = "198.19.0.100:80"
protocol = "tcp"

[vip.health]
kind = "http"
path = "/healthz"
interval = "2s"
timeout = "300ms"

[[vip.backend]]
address = "198.18.1.11"
weight = 50

[[vip.backend]]
address = "198.18.1.12"

[[vip]]
name = "dns6"
address = "[fd00::100]:53"
protocol = "udp"
ring_size = 251

[[vip.backend]]
address = "fd00::11"
"#;

#[test]
fn a_full_config_parses() {
    let c = parse("good.toml", GOOD).unwrap();
    assert_eq!(c.agent.interfaces, ["eth0"]);
    assert_eq!(c.agent.xdp_mode, XdpMode::Native);
    assert_eq!(c.agent.socket, PathBuf::from(DEFAULT_SOCKET));
    assert_eq!(c.vips.len(), 2);
    assert_eq!(c.vips[0].ring_size, RING_SIZE_DEFAULT);
    assert_eq!(c.vips[0].backends[0].weight, 50);
    assert_eq!(c.vips[0].backends[1].weight, 100);
    assert_eq!(c.vips[0].health.kind, HealthKind::Http);
    assert_eq!(c.vips[0].health.interval, Duration::from_secs(2));
    assert_eq!(c.vips[1].protocol, Protocol::Udp);
    assert_eq!(c.vips[1].ring_size, 251);
}

/// Each case: a replacement in GOOD, the line the error must name, the field, and a word of
/// the reason.
#[test]
fn errors_name_file_line_and_field() {
    let cases: &[(&str, &str, usize, &str, &str)] = &[
        (
            "\"198.19.0.100:80\"",
            "\"198.19.0.300:80\"",
            9,
            "vip.address",
            "not ADDRESS:PORT",
        ),
        (
            "protocol = \"tcp\"",
            "protocol = \"sctp\"",
            10,
            "vip.protocol",
            "expected tcp or udp",
        ),
        (
            "ring_size = 251",
            "ring_size = 250",
            29,
            "vip.ring_size",
            "prime",
        ),
        (
            "ring_size = 251",
            "ring_size = 65539",
            29,
            "vip.ring_size",
            "prime from 7",
        ),
        (
            "weight = 50",
            "weight = -1",
            20,
            "vip.backend.weight",
            "0 to 10000",
        ),
        (
            "address = \"198.18.1.12\"",
            "host = \"bad host!\"",
            23,
            "vip.backend.host",
            "not a hostname",
        ),
        (
            "address = \"198.18.1.12\"",
            "address = \"198.18.1.12\"\nhost = \"app.example\"",
            22,
            "vip.backend",
            "either address or host",
        ),
        (
            "address = \"fd00::11\"",
            "address = \"198.18.1.13\"",
            32,
            "vip.backend.address",
            "family",
        ),
        (
            "address = \"198.18.1.12\"",
            "address = \"198.18.1.11\"",
            23,
            "vip.backend.address",
            "duplicate",
        ),
        (
            "interval = \"2s\"",
            "interval = \"2 fortnights\"",
            15,
            "vip.health.interval",
            "duration",
        ),
        (
            "kind = \"http\"",
            "kind = \"icmp\"",
            13,
            "vip.health.kind",
            "expected tcp",
        ),
        (
            "name = \"dns6\"",
            "name = \"web\"",
            26,
            "vip.name",
            "duplicate",
        ),
        (
            "interfaces = [\"eth0\"]",
            "interfaces = []",
            3,
            "agent.interfaces",
            "at least one",
        ),
        (
            "interfaces = [\"eth0\"]",
            "interfaces = [\"eth0\"]\nxdp_mode = \"turbo\"",
            4,
            "agent.xdp_mode",
            "native",
        ),
        (
            "interfaces = [\"eth0\"]",
            "interfaces = [\"eth0\"]\ncolour = \"blue\"",
            4,
            "agent.colour",
            "unknown field",
        ),
        (
            "source_v4 = \"198.18.0.2\"\n",
            "",
            8,
            "agent.source_v4",
            "needs",
        ),
        (
            "source_v6 = \"fd00::2\"",
            "source_v6 = \"198.18.0.2\"",
            5,
            "agent.source_v6",
            "IPv6",
        ),
        (
            "weight = 50",
            "weight = \"heavy\"",
            20,
            "vip.backend.weight",
            "invalid type",
        ),
        (
            "interfaces = [\"eth0\"]",
            "interfaces = [\"eth0\"]\npath_mtu = 576",
            4,
            "agent.path_mtu",
            "from 1280",
        ),
    ];
    for (from, to, line, field, reason) in cases {
        assert!(GOOD.contains(from), "{from}");
        let text = GOOD.replacen(from, to, 1);
        let err = parse("lb.toml", &text).expect_err(to);
        assert_eq!(err.file, "lb.toml");
        assert_eq!(
            (err.line, err.field.as_str()),
            (*line, *field),
            "{to}: {err}"
        );
        assert!(err.reason.contains(reason), "{to}: {err}");
        let shown = err.to_string();
        assert!(shown.starts_with(&format!("lb.toml:{line}: ")), "{shown}");
    }
}

#[test]
fn durations() {
    assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
    assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
    assert_eq!(parse_duration("0s"), None);
    assert_eq!(parse_duration("5"), None);
    assert_eq!(parse_duration("s"), None);
}

#[test]
fn primes() {
    assert!(is_prime(65537) && is_prime(7) && is_prime(251));
    assert!(!is_prime(65535) && !is_prime(1) && !is_prime(9));
}

/// The README's configuration reference is a valid file.
#[test]
fn the_readme_example_parses() {
    let readme = include_str!("../../../README.md");
    let start = readme
        .find("```toml\n")
        .expect("a toml block in the README")
        + 8;
    let len = readme[start..].find("```").unwrap();
    let c = parse("README.md", &readme[start..start + len]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.vips[0].health.port, Some(8080));
    assert_eq!(c.agent.flow_table_size, 1 << 20);
}

/// Fragments carry no port after the first: one VIP per address and protocol may take them.
#[test]
fn one_vip_per_address_and_protocol_takes_fragments() {
    let two = |second: &str| {
        format!(
            "[agent]\ninterfaces = [\"eth0\"]\nsource_v4 = \"198.18.0.2\"\n\n\
             [[vip]]\nname = \"dns\"\naddress = \"198.19.0.1:53\"\nprotocol = \"udp\"\nfragments = true\n\
             [[vip.backend]]\naddress = \"198.18.1.11\"\n\n\
             [[vip]]\nname = \"other\"\naddress = \"198.19.0.1:5353\"\nprotocol = \"udp\"\n{second}\n\
             [[vip.backend]]\naddress = \"198.18.1.12\"\n"
        )
    };
    let c = parse("lb.toml", &two("")).unwrap();
    assert!(c.vips[0].fragments && !c.vips[1].fragments);
    let err = parse("lb.toml", &two("fragments = true")).unwrap_err();
    assert_eq!(
        (err.line, err.field.as_str()),
        (17, "vip.fragments"),
        "{err}"
    );
    assert!(err.reason.contains("takes fragments already"), "{err}");
    // A TCP VIP takes none: fragments carry no ports to follow their connection by.
    let tcp = two("fragments = true").replacen(
        "address = \"198.19.0.1:5353\"\nprotocol = \"udp\"",
        "address = \"198.19.0.1:5353\"\nprotocol = \"tcp\"",
        1,
    );
    let err = parse("lb.toml", &tcp).unwrap_err();
    assert_eq!(err.field, "vip.fragments", "{err}");
    assert!(
        err.reason.contains("TCP VIP cannot take fragments"),
        "{err}"
    );
}

/// What no backend, source or VIP can be, the durations, the keys named by type errors and
/// the suggestion for a misspelt key: each case one change to a good file, and the field and
/// words of the refusal (or `None`: accepted).
#[test]
fn refused_addresses_durations_type_errors_and_suggestions() {
    let good = "[agent]\ninterfaces = [\"eth0\", \"eth1\"]\nsource_v4 = \"198.18.0.2\"\nsource_v6 = \"fd00:18::2\"\n\n\
                [[vip]]\nname = \"web\"\naddress = \"198.19.0.1:80\"\nudp_idle = \"30s\"\n\n\
                [vip.health]\ninterval = \"1s\"\n\n\
                [[vip.backend]]\naddress = \"198.18.0.11\"\nweight = 10\n";
    parse("lb.toml", good).unwrap();
    // (from, to, refused with (field, words) or accepted).
    type Case<'a> = (&'a str, &'a str, Option<(&'a str, &'a str)>);
    let cases: &[Case] = &[
        (
            "\"198.18.0.11\"",
            "\"0.0.0.0\"",
            Some(("vip.backend.address", "unspecified")),
        ),
        (
            "\"198.18.0.11\"",
            "\"255.255.255.255\"",
            Some(("vip.backend.address", "broadcast")),
        ),
        (
            "\"198.18.0.11\"",
            "\"224.0.0.9\"",
            Some(("vip.backend.address", "multicast")),
        ),
        (
            "\"198.18.0.11\"",
            "\"127.0.0.1\"",
            Some(("vip.backend.address", "loopback")),
        ),
        (
            "\"198.18.0.11\"",
            "\"198.19.0.1\"",
            Some(("vip.backend.address", "the VIP itself")),
        ),
        (
            "\"198.18.0.11\"",
            "\"198.18.0.2\"",
            Some(("vip.backend.address", "own source")),
        ),
        (
            "\"198.19.0.1:80\"",
            "\"0.0.0.0:80\"",
            Some(("vip.address", "unspecified")),
        ),
        (
            "source_v4 = \"198.18.0.2\"",
            "source_v4 = \"0.0.0.0\"",
            Some(("agent.source_v4", "unspecified")),
        ),
        (
            "source_v6 = \"fd00:18::2\"",
            "source_v6 = \"::1\"",
            Some(("agent.source_v6", "loopback")),
        ),
        (
            "\"eth0\", \"eth1\"",
            "\"eth0\", \"eth0\"",
            Some(("agent.interfaces", "named twice")),
        ),
        ("udp_idle = \"30s\"", "udp_idle = \"24h\"", None),
        ("udp_idle = \"30s\"", "udp_idle = \"1d\"", None),
        (
            "udp_idle = \"30s\"",
            "udp_idle = \"2d\"",
            Some(("vip.udp_idle", "1s to 24h")),
        ),
        ("interval = \"1s\"", "interval = \"1h\"", None),
        (
            "interval = \"1s\"",
            "interval = \"1w\"",
            Some(("vip.health.interval", "not a duration")),
        ),
        (
            "weight = 10",
            "weight = \"heavy\"",
            Some(("vip.backend.weight", "invalid type")),
        ),
        (
            "udp_idle = \"30s\"",
            "udp_idle = 30",
            Some(("vip.udp_idle", "invalid type")),
        ),
        (
            "interval = \"1s\"",
            "interval = true",
            Some(("vip.health.interval", "invalid type")),
        ),
        (
            "source_v4 = \"198.18.0.2\"",
            "source_v4 = 7",
            Some(("agent.source_v4", "invalid type")),
        ),
        (
            "name = \"web\"",
            "nmae = \"web\"",
            Some(("vip.nmae", "did you mean `name`?")),
        ),
        (
            "address = \"198.19.0.1:80\"",
            "adress = \"198.19.0.1:80\"",
            Some(("vip.adress", "did you mean `address`?")),
        ),
        (
            "weight = 10",
            "wieght = 10",
            Some(("vip.backend.wieght", "did you mean `weight`?")),
        ),
        (
            "interval = \"1s\"",
            "intervall = \"1s\"",
            Some(("vip.health.intervall", "did you mean `interval`?")),
        ),
    ];
    for (from, to, want) in cases {
        assert!(good.contains(from), "{from}");
        let text = good.replacen(from, to, 1);
        match (parse("lb.toml", &text), want) {
            (Ok(_), None) => {}
            (Ok(_), Some(w)) => panic!("{to}: accepted, want {w:?}"),
            (Err(e), None) => panic!("{to}: refused: {e}"),
            (Err(e), Some((field, words))) => {
                assert_eq!(e.field, *field, "{to}: {e}");
                assert!(e.reason.contains(words), "{to}: {e}");
                assert!(e.line > 0, "{to}: {e}");
            }
        }
    }
}

/// `[vip.acl]`, `[vip.limits]`, `agent.unbalanced` and `agent.tcp_idle`: parsed, and their
/// mistakes refused with the line and the field.
#[test]
fn edge_protection_is_parsed_and_its_mistakes_refused() {
    let text = GOOD
        .replacen(
            "source_v6 = \"fd00::2\"",
            "source_v6 = \"fd00::2\"\nunbalanced = \"drop\"\ntcp_idle = \"5m\"",
            1,
        )
        .replacen(
            "[[vip.backend]]\naddress = \"198.18.1.11\"",
            "[vip.acl]\nallow = [\"198.18.0.0/15\", \"fd00::/8\"]\ndeny = [\"198.18.7.0/24\", \"198.18.9.9\"]\n\n\
             [vip.limits]\nnew_flows_per_source = 100\nburst = 20\n\n\
             [[vip.backend]]\naddress = \"198.18.1.11\"",
            1,
        );
    let c = parse("lb.toml", &text).unwrap();
    assert_eq!(c.agent.unbalanced, Unbalanced::Drop);
    assert_eq!(c.agent.tcp_idle, Duration::from_secs(300));
    let web = &c.vips[0];
    assert_eq!(web.acl.allow.len(), 2);
    assert_eq!(web.acl.deny[1].to_string(), "198.18.9.9/32");
    assert!(web.acl.admits("198.18.1.1".parse().unwrap()));
    assert!(!web.acl.admits("198.18.7.1".parse().unwrap()));
    assert!(!web.acl.admits("198.20.0.1".parse().unwrap()));
    assert_eq!(
        web.limits,
        Some(Limits {
            new_flows_per_source: 100,
            burst: 20
        })
    );
    assert!(c.vips[1].acl.is_empty() && c.vips[1].limits.is_none());
    let defaults = parse("lb.toml", GOOD).unwrap();
    assert_eq!(defaults.agent.unbalanced, Unbalanced::Pass);
    assert_eq!(
        defaults.agent.tcp_idle.as_secs(),
        lb_common::TCP_IDLE_DEFAULT_S as u64
    );

    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "unbalanced = \"drop\"",
            "unbalanced = \"reject\"",
            "agent.unbalanced",
            "\"pass\" or \"drop\"",
        ),
        (
            "tcp_idle = \"5m\"",
            "tcp_idle = \"1s\"",
            "agent.tcp_idle",
            "10s to 7d",
        ),
        (
            "\"198.18.7.0/24\"",
            "\"198.18.7.1/24\"",
            "vip.acl.deny",
            "host bits set (the prefix is 198.18.7.0/24)",
        ),
        (
            "\"fd00::/8\"",
            "\"fd00::/129\"",
            "vip.acl.allow",
            "not an address or prefix",
        ),
        (
            "\"198.18.9.9\"",
            "\"198.18.0.0/15\"",
            "vip.acl",
            "in both allow and deny",
        ),
        (
            "new_flows_per_source = 100",
            "new_flows_per_source = 0",
            "vip.limits.new_flows_per_source",
            "from 1 to",
        ),
        ("burst = 20", "burst = -3", "vip.limits.burst", "from 1 to"),
        ("burst = 20", "bursts = 20", "vip.limits", "unknown field"),
    ];
    for (from, to, field, reason) in cases {
        let bad = text.replacen(from, to, 1);
        let err = parse("lb.toml", &bad).expect_err(to);
        assert!(err.field.starts_with(field), "{to}: {err}");
        assert!(err.reason.contains(reason), "{to}: {err}");
        assert!(err.line > 1, "{to}: {err}");
    }
}

/// `hash` and the affinity prefix of the VIP's family; a prefix needs a source hash.
#[test]
fn hash_fields_and_affinity() {
    let with = |extra: &str| {
        GOOD.replacen(
            "protocol = \"tcp\"\n",
            &format!("protocol = \"tcp\"\n{extra}"),
            1,
        )
    };
    let c = parse(
        "lb.toml",
        &with("hash = \"src\"\naffinity_prefix_v4 = 24\n"),
    )
    .unwrap();
    assert_eq!(
        (c.vips[0].hash, c.vips[0].affinity_prefix),
        (HashFields::Src, Some(24))
    );
    assert_eq!(
        parse("lb.toml", GOOD).unwrap().vips[0].hash,
        HashFields::FiveTuple
    );
    let cases: &[(&str, &str, &str)] = &[
        ("hash = \"dst\"\n", "vip.hash", "expected"),
        (
            "affinity_prefix_v4 = 24\n",
            "vip.affinity_prefix_v4",
            "needs hash",
        ),
        (
            "hash = \"src\"\naffinity_prefix_v4 = 33\n",
            "vip.affinity_prefix_v4",
            "from 1 to 32",
        ),
        (
            "hash = \"src\"\naffinity_prefix_v6 = 64\n",
            "vip.affinity_prefix_v6",
            "other address family",
        ),
    ];
    for (extra, field, reason) in cases {
        let err = parse("lb.toml", &with(extra)).expect_err(extra);
        assert_eq!(err.field, *field, "{extra}: {err}");
        assert!(err.reason.contains(reason), "{extra}: {err}");
    }
}

/// `agent.source_v4_prefix` and `source_v6_prefix`: a prefix of the right family, no host
/// bits, two host bits at least.
#[test]
fn outer_source_prefixes() {
    let with = |extra: &str| {
        GOOD.replacen(
            "source_v6 = \"fd00::2\"\n",
            &format!("source_v6 = \"fd00::2\"\n{extra}"),
            1,
        )
    };
    let c = parse(
        "lb.toml",
        &with("source_v4_prefix = \"198.18.16.0/20\"\nsource_v6_prefix = \"fd00:18::1:0/112\"\n"),
    )
    .unwrap();
    assert_eq!(
        c.agent.source_v4_prefix.map(|p| p.to_string()).as_deref(),
        Some("198.18.16.0/20")
    );
    assert_eq!(c.agent.source_v6_prefix.map(|p| p.prefix_len()), Some(112));
    let cases: &[(&str, &str, &str)] = &[
        (
            "source_v4_prefix = \"198.18.16.1/20\"\n",
            "agent.source_v4_prefix",
            "host bits set",
        ),
        (
            "source_v4_prefix = \"198.18.16.0/31\"\n",
            "agent.source_v4_prefix",
            "two host bits",
        ),
        (
            "source_v4_prefix = \"fd00::/64\"\n",
            "agent.source_v4_prefix",
            "not an IPv4 prefix",
        ),
        (
            "source_v6_prefix = \"198.18.0.0/16\"\n",
            "agent.source_v6_prefix",
            "not an IPv6 prefix",
        ),
        (
            "source_v4_prefix = \"198.18.16.0\"\n",
            "agent.source_v4_prefix",
            "not a prefix",
        ),
    ];
    for (extra, field, reason) in cases {
        let err = parse("lb.toml", &with(extra)).expect_err(extra);
        assert_eq!(err.field, *field, "{extra}: {err}");
        assert!(err.reason.contains(reason), "{extra}: {err}");
    }
}

mod health;
