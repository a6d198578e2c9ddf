//! What the balancer reports: the Prometheus endpoint, scraped and parsed with a Prometheus
//! text parser, agrees with the traffic sent and with `lb stats`.
use std::{
    io::{Read, Write},
    net::SocketAddr,
};

use lb_tests::{
    TempDir,
    lab::{self, BACKENDS4, OneArm, VIP4},
    traffic,
};

/// GET `path` from the metrics endpoint inside the balancer's namespace: (status line, body).
fn get(topo: &OneArm, addr: &str, path: &str) -> (String, String) {
    topo.lb.run(|| {
        let mut s = std::net::TcpStream::connect(addr).expect("connect to the metrics endpoint");
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: lb\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut r = String::new();
        s.read_to_string(&mut r).unwrap();
        let (head, body) = r.split_once("\r\n\r\n").expect("an HTTP answer");
        (
            head.lines().next().unwrap_or("").to_string(),
            body.to_string(),
        )
    })
}

fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .find(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
        .unwrap_or_else(|| panic!("no sample {name} {labels:?}"))
}

#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn the_metrics_endpoint_agrees_with_the_traffic_and_lb_stats() {
    let topo = OneArm::new();
    let tmp = TempDir::new("metrics");
    let sock = tmp.path("lb.sock");
    let metrics = "127.0.0.1:9107";
    let mut cfg = format!(
        "[agent]\ninterfaces = [\"eth0\"]\nsocket = \"{}\"\nsource_v4 = \"198.18.0.2\"\nmetrics = \"{metrics}\"\n\n\
         [[vip]]\nname = \"dns\"\naddress = \"{VIP4}:53\"\nprotocol = \"udp\"\n\n[vip.health]\nkind = \"none\"\n",
        sock.display()
    );
    for b in BACKENDS4 {
        cfg += &format!("\n[[vip.backend]]\naddress = \"{b}\"\n");
    }
    let vip: SocketAddr = format!("{VIP4}:53").parse().unwrap();
    let _serving = lab::serve(&topo.backends, vip, true, &tmp, |i| format!("be{i}"));
    let (_agent, _) = lab::start_agent(&topo.lb, &cfg, &tmp);

    const N: u32 = 120;
    let t = traffic::udp_requests(&topo.client, vip, N);
    assert_eq!(t.ok(), N, "{t:?}");

    let (status, body) = get(&topo, metrics, "/metrics");
    assert!(status.contains("200"), "{status}: {body}");
    let lines = body.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("Prometheus text format");
    let stats = lab::stats(&sock);

    let dns = [("vip", "dns")];
    assert_eq!(value(&scrape, "lb_vip_packets_total", &dns), N as f64);
    assert_eq!(
        value(&scrape, "lb_vip_packets_total", &dns),
        stats.vips[0].packets as f64
    );
    assert_eq!(
        value(&scrape, "lb_vip_bytes_total", &dns),
        stats.vips[0].bytes as f64
    );
    let mut sum = 0.0;
    for b in &stats.vips[0].backends {
        let l = [("vip", "dns"), ("backend", b.address.as_str())];
        let got = value(&scrape, "lb_backend_packets_total", &l);
        assert_eq!(got, b.packets as f64, "{}", b.address);
        assert_eq!(value(&scrape, "lb_backend_up", &l), 1.0, "{}", b.address);
        sum += got;
    }
    assert_eq!(sum, N as f64, "backends' packets add up to the VIP's");
    assert_eq!(
        value(&scrape, "lb_outcome_packets_total", &[("outcome", "tx")]),
        stats.outcome("tx") as f64
    );
    assert_eq!(
        value(
            &scrape,
            "lb_dropped_packets_total",
            &[("reason", "no_backend")]
        ),
        0.0
    );
    assert_eq!(
        value(&scrape, "lb_flows_inserted_total", &[]),
        stats.flows.inserted as f64
    );
    assert!(value(&scrape, "lb_ring_rebuilds_total", &[]) >= 1.0);
    assert_eq!(
        value(&scrape, "lb_config_reloads_total", &[("result", "refused")]),
        0.0
    );
    assert_eq!(
        value(
            &scrape,
            "lb_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    // The control API is not reachable on the metrics port.
    let (status, _) = get(&topo, metrics, "/v1/status");
    assert!(status.contains("404"), "{status}");
}

/// `--log-format json`: every line the agent logs is one JSON object, and its state changes
/// (rings rebuilt, a runtime change such as a drain) are events with their fields.
#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn json_logs_are_one_object_per_event() {
    let topo = OneArm::new();
    let tmp = TempDir::new("jsonlog");
    let sock = tmp.path("lb.sock");
    let mut cfg = format!(
        "[agent]\ninterfaces = [\"eth0\"]\nsocket = \"{}\"\nsource_v4 = \"198.18.0.2\"\n\n\
         [[vip]]\nname = \"dns\"\naddress = \"{VIP4}:53\"\nprotocol = \"udp\"\n\n[vip.health]\nkind = \"none\"\n",
        sock.display()
    );
    for b in BACKENDS4 {
        cfg += &format!("\n[[vip.backend]]\naddress = \"{b}\"\n");
    }
    let (agent, _) = lab::start_agent_with(&topo.lb, &cfg, &tmp, &["--log-format", "json"]);
    lab::cli_ok(&sock, &["backend", "drain", "--vip", "dns", BACKENDS4[0]]);
    let log = agent.log_text();
    let events: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(!events.is_empty(), "no events logged");
    let find = |msg: &str| {
        events
            .iter()
            .find(|e| e["message"] == msg)
            .unwrap_or_else(|| panic!("no {msg:?} event in:\n{log}"))
    };
    let rebuilt = find("ring rebuilt");
    assert_eq!(rebuilt["vip"], "dns", "{rebuilt}");
    assert_eq!(rebuilt["level"], "INFO", "{rebuilt}");
    find("runtime change applied");
}
