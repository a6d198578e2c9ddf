//! What the balancer reports: `lb stats --json` counts exactly the traffic sent, and the
//! Prometheus endpoint, scraped and parsed with a Prometheus text parser, agrees with it.
use std::{
    io::{Read, Write},
    net::SocketAddr,
    time::Duration,
};

use lb_tests::{
    TempDir,
    lab::{self, BACKENDS4, OneArm, VIP4},
    traffic,
};

/// The port the backends' health checks connect to.
const HEALTH_PORT: u16 = 8081;

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

fn sample<'a>(
    scrape: &'a prometheus_parse::Scrape,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<&'a prometheus_parse::Sample> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .find(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
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
fn stats_and_metrics_count_exactly_the_traffic_sent() {
    let topo = OneArm::new();
    let tmp = TempDir::new("metrics");
    let sock = tmp.path("lb.sock");
    let metrics = "127.0.0.1:9107";
    let mut cfg = format!(
        "[agent]\ninterfaces = [\"eth0\"]\nsocket = \"{}\"\nsource_v4 = \"198.18.0.2\"\nmetrics = \"{metrics}\"\n\n\
         [[vip]]\nname = \"dns\"\naddress = \"{VIP4}:53\"\nprotocol = \"udp\"\n\n\
         [vip.health]\nkind = \"tcp\"\nvia = \"direct\"\nport = {HEALTH_PORT}\ninterval = \"100ms\"\n",
        sock.display()
    );
    for b in BACKENDS4 {
        cfg += &format!("\n[[vip.backend]]\naddress = \"{b}\"\n");
    }
    let vip: SocketAddr = format!("{VIP4}:53").parse().unwrap();
    let _serving = lab::serve(&topo.backends, vip, true, &tmp, |i| format!("be{i}"));
    // What the health checks connect to (the kernel completes the handshakes).
    let _health: Vec<std::net::TcpListener> = topo
        .backends
        .iter()
        .zip(BACKENDS4)
        .map(|(ns, b)| ns.run(|| std::net::TcpListener::bind((b, HEALTH_PORT)).unwrap()))
        .collect();
    let (mut agent, _) = lab::start_agent(&topo.lb, &cfg, &tmp);

    // The agent samples the counters once a second for the rates, each against the sample
    // before: the burst must come after a first sample, or none would show it. A rate of the
    // health checks' traffic (passed to the kernel) says the sampling has begun.
    lab::wait_for(Duration::from_secs(5), "the agent's first rates", || {
        lab::stats(&sock).outcomes.iter().any(|o| o.pps > 0.0)
    });

    // One packet per request, each from a fresh socket: a new flow, unless the kernel gave
    // the socket a port an earlier request had (then a flow-table hit).
    const N: u32 = 120;
    let t = traffic::udp_requests(&topo.client, vip, N);
    assert_eq!(t.ok(), N, "{t:?}");

    let stats = lab::stats(&sock);
    let dns = &stats.vips[0];
    assert_eq!(dns.packets, N as u64, "{dns:?}");
    assert_eq!(dns.new_flows + stats.flows.hits, N as u64, "{stats:?}");
    assert!(dns.new_flows >= N as u64 / 2, "{dns:?}");
    assert_eq!(stats.flows.inserted, dns.new_flows, "{:?}", stats.flows);
    for (i, b) in dns.backends.iter().enumerate() {
        // Exactly what that backend's server answered.
        let answered = t.by_server.get(&format!("be{i}")).copied().unwrap_or(0);
        assert_eq!(b.packets, answered as u64, "{b:?} {t:?}");
        assert!(b.packets > 0 && b.new_flows > 0, "{b:?}");
        assert!(b.new_flows <= b.packets, "{b:?}");
        assert_eq!((b.health.as_str(), b.in_ring), ("up", true), "{b:?}");
    }
    let flows: u64 = dns.backends.iter().map(|b| b.new_flows).sum();
    assert_eq!(flows, dns.new_flows);
    let shares: f64 = dns.backends.iter().map(|b| b.share).sum();
    assert!((shares - 100.0).abs() < 1e-9, "shares add up to {shares}");
    assert_eq!(stats.outcome("tx"), N as u64);
    // The rates: the agent samples once a second; the burst shows in the next sample.
    let mut seen = None;
    lab::wait_for(
        Duration::from_secs(5),
        "a packet rate for the burst",
        || {
            let s = lab::stats(&sock);
            let v = &s.vips[0];
            if v.pps > 0.0 {
                seen = Some((
                    v.pps,
                    v.bps,
                    s.outcomes.iter().find(|o| o.name == "tx").unwrap().pps,
                ));
            }
            seen.is_some()
        },
    );
    let (pps, bps, tx_pps) = seen.unwrap();
    assert!(
        pps <= N as f64 * 1.01,
        "{pps} pps for {N} packets over a second or more"
    );
    // Every packet carries at least its Ethernet, IPv4 and UDP headers.
    assert!(bps >= 8.0 * 42.0 * pps, "{bps} bit/s at {pps} pps");
    assert!(tx_pps > 0.0);

    let (status, body) = get(&topo, metrics, "/metrics");
    assert!(status.contains("200"), "{status}: {body}");
    let lines = body.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("Prometheus text format");
    let dns = [("vip", "dns")];
    let dns_label = dns;
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
        assert_eq!(
            value(&scrape, "lb_backend_new_flows_total", &l),
            b.new_flows as f64
        );
        // The health checks of this backend were timed.
        let l = [
            ("vip", "dns"),
            ("backend", b.address.as_str()),
            ("result", "ok"),
        ];
        let h = sample(&scrape, "lb_health_check_duration_seconds", &l)
            .unwrap_or_else(|| panic!("no health-check histogram for {}:\n{body}", b.address));
        match &h.value {
            prometheus_parse::Value::Histogram(buckets) => {
                assert!(buckets.last().unwrap().count >= 1.0, "{buckets:?}")
            }
            v => panic!("not a histogram: {v:?}"),
        }
        sum += got;
    }
    assert_eq!(sum, N as f64, "backends' packets add up to the VIP's");
    assert_eq!(
        value(&scrape, "lb_vip_new_flows_total", &dns),
        stats.vips[0].new_flows as f64
    );
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
    assert!(value(&scrape, "lb_ring_writes_total", &[]) >= 1.0);
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

    // A packet sent to a backend is counted in its backend's entry alone, the VIP's, the
    // outcome's and the flow hits' totals derived from those: a backend taken out keeps its
    // packets in them, and so does an agent restarted after, whose config brings the backend
    // back with its counters at zero. (A counter that went down would read to Prometheus as a
    // reset.)
    let gone = stats.vips[0].backends[0].clone();
    assert!(gone.packets > 0, "{gone:?}");
    lab::cli_ok(&sock, &["backend", "del", "--vip", "dns", &gone.address]);
    for round in ["removed", "restarted"] {
        let now = lab::stats(&sock);
        let dns = &now.vips[0];
        assert_eq!(dns.packets, N as u64, "{round}: {dns:?}");
        assert_eq!(dns.bytes, stats.vips[0].bytes, "{round}: {dns:?}");
        assert_eq!(now.outcome("tx"), N as u64, "{round}");
        assert_eq!(now.flows.hits, stats.flows.hits, "{round}: {:?}", now.flows);
        let kept: u64 = dns.backends.iter().map(|b| b.packets).sum();
        assert_eq!(kept, N as u64 - gone.packets, "{round}: {dns:?}");
        let (_, body) = get(&topo, metrics, "/metrics");
        let scrape =
            prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap();
        assert_eq!(
            value(&scrape, "lb_vip_packets_total", &dns_label),
            N as f64,
            "{round}"
        );
        if round == "removed" {
            assert_eq!(dns.backends.len(), BACKENDS4.len() - 1, "{dns:?}");
            // Its counts move into the retired totals within the agent's next second.
            lab::wait_for(
                Duration::from_secs(5),
                "the removed backend retired",
                || {
                    agent
                        .log_text()
                        .contains("removed backends' counters retired")
                },
            );
            let now = lab::stats(&sock);
            assert_eq!(now.vips[0].packets, N as u64, "retired: {:?}", now.vips[0]);
            assert!(agent.stop().expect("agent exit").success());
            (agent, _) = lab::start_agent(&topo.lb, &cfg, &tmp);
        }
    }
}

/// `--log-format json`: every line the agent logs is one JSON object, and its state changes
/// (rings rebuilt, a runtime change such as a drain) are events with their fields.
#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn json_logs_are_one_object_per_event() {
    let topo = OneArm::new();
    let tmp = TempDir::new("jsonlog");
    let sock = tmp.path("lb.sock");
    let cfg = lab::dns_config(&sock);
    let (mut agent, cfg_path) =
        lab::start_agent_with(&topo.lb, &cfg, &tmp, &["--log-format", "json"]);
    lab::cli_ok(&sock, &["backend", "drain", "--vip", "dns", BACKENDS4[0]]);
    assert!(agent.stop().unwrap().success());
    let events = |log: &str| -> Vec<serde_json::Value> {
        log.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    };
    let log = agent.log_text();
    let all = events(&log);
    assert!(!all.is_empty(), "no events logged");
    let find = |msg: &str| {
        all.iter()
            .find(|e| e["message"] == msg)
            .unwrap_or_else(|| panic!("no {msg:?} event in:\n{log}"))
            .clone()
    };
    let attached = find("xdp_lb attached");
    assert_eq!(attached["interface"], "eth0", "{attached}");
    let rebuilt = find("ring rebuilt");
    assert_eq!(rebuilt["vip"], "dns", "{rebuilt}");
    assert_eq!(rebuilt["level"], "INFO", "{rebuilt}");
    let drained = find("backend drained");
    assert_eq!(
        (&drained["vip"], &drained["backend"]),
        (&"dns".into(), &BACKENDS4[0].into()),
        "{drained}"
    );
    // The drain rebuilt the ring without that backend: a second rebuild event, one fewer live.
    let rebuilds: Vec<_> = all
        .iter()
        .filter(|e| e["message"] == "ring rebuilt")
        .collect();
    assert_eq!(rebuilds.last().unwrap()["live"], 2, "{rebuilds:?}");
    find("agent stopped; the data path keeps forwarding (`lb detach` removes it)");
    // Detaching is an event too.
    let out = std::process::Command::new(lb_tests::lb_bin())
        .args([
            "--log-format",
            "json",
            "detach",
            "--config",
            cfg_path.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    let detached = events(&err)
        .into_iter()
        .find(|e| e["message"] == "xdp_lb detached")
        .unwrap_or_else(|| panic!("no detach event: {err}"));
    assert_eq!(detached["interfaces"], "eth0", "{detached}");
}

/// A reload builds the rings of the VIPs it changes and no others: `lb_ring_builds_total`
/// counts rings built, `lb_ring_writes_total` rings written. A VIP added builds one ring; a
/// weight changed builds that VIP's; a file whose VIPs did not change builds none.
#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn a_reload_builds_only_the_rings_it_changes() {
    let topo = OneArm::new();
    let tmp = TempDir::new("ring-builds");
    let sock = tmp.path("lb.sock");
    let metrics = "127.0.0.1:9108";
    let vip = |name: &str, port: u16, weight: u32| {
        let mut v = format!(
            "\n[[vip]]\nname = \"{name}\"\naddress = \"{VIP4}:{port}\"\nprotocol = \"udp\"\n\n[vip.health]\nkind = \"none\"\n"
        );
        for b in BACKENDS4 {
            v += &format!("\n[[vip.backend]]\naddress = \"{b}\"\nweight = {weight}\n");
        }
        v
    };
    // The same agent table in every version of the file (pins and state where the test keeps
    // them, as `start_agent` would put them).
    let head = format!(
        "[agent]\ninterfaces = [\"eth0\"]\nsocket = \"{}\"\nsource_v4 = \"198.18.0.2\"\nmetrics = \"{metrics}\"\npin_dir = \"{}\"\nstate_dir = \"{}\"\n",
        sock.display(),
        tmp.pin_dir().display(),
        tmp.path("state").display()
    );
    let (agent, config) = lab::start_agent(
        &topo.lb,
        &format!("{head}{}{}", vip("a", 53, 100), vip("b", 54, 100)),
        &tmp,
    );
    let counts = || {
        let (status, body) = get(&topo, metrics, "/metrics");
        assert!(status.contains("200"), "{status}");
        let scrape =
            prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap();
        (
            value(&scrape, "lb_ring_builds_total", &[]),
            value(&scrape, "lb_ring_writes_total", &[]),
        )
    };
    assert_eq!(counts(), (2.0, 2.0), "one ring per VIP at the start");
    let mut reloads = 0;
    let mut reload = |cfg: String| {
        std::fs::write(&config, cfg).unwrap();
        unsafe { libc::kill(agent.child.id() as i32, libc::SIGHUP) };
        reloads += 1;
        lab::wait_for(Duration::from_secs(5), "the reload applied", || {
            lab::status(&sock).reloads >= reloads
        });
    };
    // Three VIPs, b's backends at `b_weight`, and `note` (a comment) in the agent table.
    let three = |b_weight: u32, note: &str| {
        format!(
            "{head}{note}{}{}{}",
            vip("a", 53, 100),
            vip("b", 54, b_weight),
            vip("c", 55, 100)
        )
    };
    reload(three(100, ""));
    assert_eq!(counts(), (3.0, 3.0), "a VIP added: its ring alone");
    reload(three(50, ""));
    // Every backend of b at the same weight: the ring is the same, built but not written.
    assert_eq!(counts(), (4.0, 3.0), "b's weights changed: b's ring alone");
    reload(three(50, "\n# nothing but a comment changed\n"));
    assert_eq!(counts(), (4.0, 3.0), "no VIP changed: no ring built");
    assert_eq!(lab::status(&sock).reloads, 3);
}
