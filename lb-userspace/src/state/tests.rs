use super::*;

const FILE: &str = r#"
[agent]
interfaces = ["eth0"]
source_v4 = "198.18.0.2"
state_dir = "/tmp/x"
unbalanced = "drop"
tcp_idle = "10m"

[[vip]]
name = "web"
address = "198.19.0.100:80"
udp_idle = "45s"

[vip.health]
kind = "http"
path = "/ok"

[vip.acl]
allow = ["198.18.0.0/15"]
deny = ["198.18.7.0/24", "fd00:7::/32"]

[vip.limits]
new_flows_per_source = 50
burst = 5

[[vip.backend]]
address = "198.18.0.11"
weight = 50

[[vip.backend]]
host = "app.lb.test"
weight = 20

[bgp]
routes_file = "/tmp/lb-vips.conf"

[discovery.etcd]
endpoints = ["http://198.18.0.50:2379"]
prefix = "/svc/"

[discovery.dns]
servers = ["198.18.0.60"]
"#;

fn file() -> Config {
    config::parse("lb.toml", FILE).unwrap()
}

#[test]
fn render_parses_back_to_the_same_config() {
    let c = file();
    assert_eq!(config::parse("again", &render(&c)).unwrap(), c);
}

/// The probe kinds' own fields survive the rendering too.
#[test]
fn probes_render_and_parse_back() {
    let text = FILE.replacen("[bgp]", &format!("{}[bgp]", PROBES), 1);
    let c = config::parse("lb.toml", &text).unwrap();
    assert_eq!(c.vips.len(), 3);
    assert_eq!(config::parse("again", &render(&c)).unwrap(), c);
}

/// The probe's way, passive health and the forwarding mode survive the rendering.
#[test]
fn health_ways_outliers_and_modes_render_and_parse_back() {
    let text = FILE
        .replacen(
            "udp_idle = \"45s\"",
            "udp_idle = \"45s\"\nforwarding = \"l2dsr\"",
            1,
        )
        .replacen("path = \"/ok\"", "path = \"/ok\"\nvia = \"direct\"", 1)
        .replacen(
            "[vip.limits]",
            "[vip.outlier]\ninterval = \"3s\"\nretry_percent = 40\nmin_flows = 7\n\
             base_ejection_time = \"10s\"\nmax_ejection_time = \"2m\"\nmax_ejection_percent = 25\n\n[vip.limits]",
            1,
        );
    let c = config::parse("lb.toml", &text).unwrap();
    let web = &c.vips[0];
    assert_eq!(web.forwarding, config::Forwarding::L2dsr);
    assert_eq!(web.health.via, config::Via::Direct);
    assert_eq!(web.outlier.map(|o| o.min_flows), Some(7));
    assert_eq!(config::parse("again", &render(&c)).unwrap(), c);
}

const PROBES: &str = r#"[[vip]]
name = "dns"
address = "198.19.0.101:53"
protocol = "udp"

[vip.health]
kind = "udp"
send_hex = "1234010000010000000000000000060001"
expect = "SOA"

[[vip.backend]]
address = "198.18.0.21"

[[vip]]
name = "tls"
address = "198.19.0.102:443"
hash = "src"
affinity_prefix_v4 = 24

[vip.health]
kind = "https"
sni = "app.lb.test"
verify = false
body = "ok"

[[vip.backend]]
address = "198.18.0.31"

"#;

#[test]
fn changes_apply_in_order_and_are_validated_like_the_file() {
    let b: IpAddr = "198.18.0.12".parse().unwrap();
    let changes = vec![
        Change::BackendAdd {
            vip: "web".into(),
            address: b,
            weight: Some(10),
        },
        Change::Drain {
            vip: "web".into(),
            address: b,
        },
        Change::VipAdd(VipSpec {
            name: "dns".into(),
            address: "198.19.0.100:53".into(),
            protocol: Some("udp".into()),
            ring_size: Some(251),
            health: Some("none".into()),
            forwarding: Some("gue".into()),
            backends: vec![BackendSpec {
                address: b,
                weight: None,
            }],
        }),
    ];
    let (c, skipped) = effective(&file(), &changes);
    assert!(skipped.is_empty(), "{skipped:?}");
    assert_eq!(c.vips.len(), 2);
    let web = &c.vips[0];
    assert_eq!((web.backends[1].weight, web.backends[1].drain), (10, true));
    assert_eq!(c.vips[1].ring_size, 251);
    assert_eq!(c.vips[1].health.kind, HealthKind::None);
    assert_eq!(c.vips[1].forwarding, crate::config::Forwarding::Gue);

    // Refused with the file's own reasons.
    let family = Change::BackendAdd {
        vip: "web".into(),
        address: "fd00::1".parse().unwrap(),
        weight: None,
    };
    // (An IPv6 backend of an IPv4 VIP: IPv4 in IPv6, which needs the IPv6 outer source this
    // file does not give.)
    assert!(
        try_apply(&c, &family)
            .unwrap_err()
            .contains("needs agent.source_v6")
    );
    let weight = Change::BackendAdd {
        vip: "web".into(),
        address: "198.18.0.13".parse().unwrap(),
        weight: Some(20000),
    };
    assert!(try_apply(&c, &weight).unwrap_err().contains("0 to 10000"));
    let dup = Change::VipAdd(VipSpec {
        name: "web".into(),
        address: "198.19.0.1:80".into(),
        protocol: None,
        ring_size: None,
        health: None,
        forwarding: None,
        backends: vec![],
    });
    assert!(try_apply(&c, &dup).unwrap_err().contains("exists"));
    let bad_ring = Change::VipAdd(VipSpec {
        name: "x".into(),
        ring_size: Some(100),
        ..match dup {
            Change::VipAdd(s) => s,
            _ => unreachable!(),
        }
    });
    assert!(try_apply(&c, &bad_ring).unwrap_err().contains("prime"));
    let bad_mode = Change::VipAdd(VipSpec {
        name: "y".into(),
        address: "198.19.0.3:80".into(),
        protocol: None,
        ring_size: None,
        health: None,
        forwarding: Some("gre".into()),
        backends: vec![],
    });
    assert!(
        try_apply(&c, &bad_mode)
            .unwrap_err()
            .contains("expected ipip, gue or l2dsr")
    );
    assert!(
        try_apply(
            &c,
            &Change::VipDel {
                name: "nope".into()
            }
        )
        .unwrap_err()
        .contains("no VIP")
    );
}

#[test]
fn a_change_the_file_made_moot_is_skipped() {
    let changes = vec![Change::BackendAdd {
        vip: "web".into(),
        address: "198.18.0.11".parse().unwrap(),
        weight: None,
    }];
    let (c, skipped) = effective(&file(), &changes);
    assert_eq!(c, file());
    assert_eq!(skipped.len(), 1, "{skipped:?}");
}
