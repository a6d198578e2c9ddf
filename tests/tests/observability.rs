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
         [vip.health]\nkind = \"tcp\"\nport = {HEALTH_PORT}\ninterval = \"100ms\"\n",
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
    let (_agent, _) = lab::start_agent(&topo.lb, &cfg, &tmp);

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

/// `lb stats --watch` in a pseudo-terminal, its screen rebuilt by a terminal emulator
/// (vt100): it renders every VIP and backend, refreshes each second with the new counts, and
/// quits on `q` (leaving the alternate screen) or Ctrl-C.
#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn watch_renders_refreshes_and_quits_on_q_or_ctrl_c() {
    use std::sync::mpsc;

    let topo = OneArm::new();
    let tmp = TempDir::new("watch");
    let sock = tmp.path("lb.sock");
    let mut cfg = format!(
        "[agent]\ninterfaces = [\"eth0\"]\nsocket = \"{}\"\nsource_v4 = \"198.18.0.2\"\n\n\
         [[vip]]\nname = \"dns\"\naddress = \"{VIP4}:53\"\nprotocol = \"udp\"\n\n[vip.health]\nkind = \"none\"\n",
        sock.display()
    );
    for b in BACKENDS4 {
        cfg += &format!("\n[[vip.backend]]\naddress = \"{b}\"\n");
    }
    let vip: SocketAddr = format!("{VIP4}:53").parse().unwrap();
    let _serving = lab::serve(&topo.backends, vip, true, &tmp, |i| format!("be{i}"));
    let (_agent, _) = lab::start_agent(&topo.lb, &cfg, &tmp);

    let (rows, cols) = (40, 150);
    let (mut child, rx, mut writer) = watch_in_pty(&sock, rows, cols);
    let mut term = vt100::Parser::new(rows, cols, 0);
    let mut until = |what: &str, cond: &dyn Fn(&str) -> bool| {
        let end = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let screen = term.screen().contents();
            if cond(&screen) {
                return screen;
            }
            let left = end.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(bytes) => term.process(&bytes),
                Err(_) => panic!("the view never showed {what}; screen:\n{screen}"),
            }
        }
    };

    let first = until("the VIP and its backends", &|s| {
        s.contains("dns") && BACKENDS4.iter().all(|b| s.contains(b)) && s.contains("update 1")
    });
    assert!(first.contains("0 packets"), "{first}");
    assert!(first.contains("unchecked"), "{first}");
    assert!(first.contains("flow table"), "{first}");
    until("a refresh", &|s| s.contains("update 3"));

    const N: u32 = 60;
    let t = traffic::udp_requests(&topo.client, vip, N);
    assert_eq!(t.ok(), N, "{t:?}");
    let after = until("the burst's packets", &|s| {
        s.contains(&format!("{N} packets")) && !s.contains(" 0 new flows")
    });
    // Every backend got some, and its bar and share are drawn.
    assert!(after.contains('█'), "{after}");
    assert!(after.contains('%'), "{after}");

    writer.write_all(b"q").unwrap();
    writer.flush().unwrap();
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(child.wait());
    });
    let status = done_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("lb stats --watch did not quit on q")
        .unwrap();
    assert!(status.success(), "{status:?}");
    // Whatever it wrote last is in; the terminal is back on its normal screen.
    while let Ok(bytes) = rx.recv_timeout(Duration::from_millis(500)) {
        term.process(&bytes);
    }
    assert!(
        !term.screen().alternate_screen(),
        "the view left the terminal on the alternate screen"
    );

    // Ctrl-C quits too (in raw mode it arrives as a key, not as a signal).
    let (mut child, rx, mut writer) = watch_in_pty(&sock, rows, cols);
    let mut term = vt100::Parser::new(rows, cols, 0);
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while !term.screen().contents().contains("update 1") {
        let left = end.saturating_duration_since(std::time::Instant::now());
        term.process(&rx.recv_timeout(left).expect("the view never rendered"));
    }
    writer.write_all(b"\x03").unwrap();
    writer.flush().unwrap();
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(child.wait());
    });
    let status = done_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("lb stats --watch did not quit on Ctrl-C")
        .unwrap();
    assert!(status.success(), "{status:?}");
}

/// `lb stats --watch` in a pseudo-terminal of `rows` × `cols`: the child, what it writes (in
/// chunks), and the keyboard.
#[allow(clippy::type_complexity)]
fn watch_in_pty(
    sock: &std::path::Path,
    rows: u16,
    cols: u16,
) -> (
    Box<dyn portable_pty::Child + Send + Sync>,
    std::sync::mpsc::Receiver<Vec<u8>>,
    Box<dyn Write + Send>,
) {
    use portable_pty::{CommandBuilder, PtySize, native_pty_system};
    let pair = native_pty_system()
        .openpty(PtySize {
            rows,
            cols,
            pixel_width: 0,
            pixel_height: 0,
        })
        .expect("a pseudo-terminal");
    let mut cmd = CommandBuilder::new(lb_tests::lb_bin());
    cmd.args(["stats", "--watch", "--socket", sock.to_str().unwrap()]);
    cmd.env("TERM", "xterm-256color");
    let child = pair
        .slave
        .spawn_command(cmd)
        .expect("start lb stats --watch");
    drop(pair.slave);
    let mut reader = pair.master.try_clone_reader().unwrap();
    let writer = pair.master.take_writer().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    (child, rx, writer)
}

/// "dns" (UDP 53) forwards to three backends; "sink" (UDP 54) has its only backend drained:
/// it drops.
fn dns_and_sink(sock: &std::path::Path) -> String {
    let mut cfg = format!(
        "[agent]\ninterfaces = [\"eth0\"]\nsocket = \"{}\"\nsource_v4 = \"198.18.0.2\"\n\n\
         [[vip]]\nname = \"dns\"\naddress = \"{VIP4}:53\"\nprotocol = \"udp\"\n\n[vip.health]\nkind = \"none\"\n",
        sock.display()
    );
    for b in BACKENDS4 {
        cfg += &format!("\n[[vip.backend]]\naddress = \"{b}\"\n");
    }
    cfg += &format!(
        "\n[[vip]]\nname = \"sink\"\naddress = \"{VIP4}:54\"\nprotocol = \"udp\"\n\n[vip.health]\nkind = \"none\"\n\n\
         [[vip.backend]]\naddress = \"{}\"\ndrain = true\n",
        BACKENDS4[0]
    );
    cfg
}

/// The program's own log lines (aya-log): none by default; with `--program-log debug`, one
/// per new flow and per dropped packet, in the agent's log.
#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn program_logs_are_off_by_default_and_on_when_asked() {
    let topo = OneArm::new();
    let tmp = TempDir::new("proglog");
    let sock = tmp.path("lb.sock");
    let cfg = dns_and_sink(&sock);
    let dns: SocketAddr = format!("{VIP4}:53").parse().unwrap();
    let sink: SocketAddr = format!("{VIP4}:54").parse().unwrap();
    let _serving = lab::serve(&topo.backends, dns, true, &tmp, |i| format!("be{i}"));

    let (mut quiet, _) = lab::start_agent(&topo.lb, &cfg, &tmp);
    let t = traffic::udp_requests(&topo.client, dns, 10);
    assert_eq!(t.ok(), 10, "{t:?}");
    udp_fire(&topo.client, sink, 3);
    lab::wait_for(Duration::from_secs(5), "the drops counted", || {
        lab::stats(&sock).outcome("drop_no_backend") == 3
    });
    assert!(quiet.stop().unwrap().success());
    let log = quiet.log_text();
    assert!(
        !log.contains("new flow:") && !log.contains("drop_no_backend"),
        "{log}"
    );

    // The same data path, the program loaded anew with its logs on.
    let (loud, _) = lab::start_agent_with(&topo.lb, &cfg, &tmp, &["--program-log", "debug"]);
    let t = traffic::udp_requests(&topo.client, dns, 10);
    assert_eq!(t.ok(), 10, "{t:?}");
    udp_fire(&topo.client, sink, 3);
    lab::wait_for(Duration::from_secs(5), "the program's lines", || {
        let log = loud.log_text();
        log.matches("new flow: VIP").count() >= 10
            && log.matches("bytes: drop_no_backend").count() >= 3
    });
    let log = loud.log_text();
    assert!(log.contains("port 53 from port"), "{log}");
    assert!(log.contains("costs per packet"), "{log}");
}

/// `lb capture` running in the background: its stderr lines, and its exit.
struct Capture {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Capture {
    /// Starts `lb capture ARGS` and waits until the agent has switched the hook on.
    fn start(sock: &std::path::Path, args: &[&str]) -> Capture {
        use std::io::BufRead;
        let mut child = std::process::Command::new(lb_tests::lb_bin())
            .arg("capture")
            .args(args)
            .args(["--socket", sock.to_str().unwrap()])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start lb capture");
        let err = child.stderr.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        let mut c = Capture { child, lines };
        c.expect_line("lb capture: capturing");
        c
    }

    fn expect_line(&mut self, prefix: &str) -> String {
        let end = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let left = end.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.starts_with(prefix) => return l,
                Ok(_) => {}
                Err(e) => panic!("lb capture said no {prefix:?}: {e}"),
            }
        }
    }

    /// Waits (bounded) for the exit; its summary line.
    fn finish(mut self) -> String {
        let summary = self.expect_line("lb capture: ");
        let end = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                assert!(st.success(), "lb capture: {st}");
                return summary;
            }
            assert!(std::time::Instant::now() < end, "lb capture did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The id of the XDP program on the balancer's eth0.
fn xdp_prog_id(ns: &lb_tests::Netns) -> u64 {
    let j: serde_json::Value = serde_json::from_str(&ns.sh("ip -j -d link show dev eth0")).unwrap();
    j[0]["xdp"]["prog"]["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("no XDP program on eth0: {j}"))
}

/// `tcpdump -r FILE -nn -q`: one line per packet, no application decoding.
fn tcpdump(file: &std::path::Path) -> Vec<String> {
    let out = std::process::Command::new("tcpdump")
        .args(["-r", file.to_str().unwrap(), "-nn", "-q"])
        .output()
        .expect("run tcpdump");
    assert!(
        out.status.success(),
        "tcpdump -r: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Datagrams to `addr` without waiting for answers (to a VIP that drops them).
fn udp_fire(ns: &lb_tests::Netns, addr: SocketAddr, n: u32) {
    ns.run(|| {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        for i in 0..n {
            s.send_to(format!("lost {i}").as_bytes(), addr).unwrap();
        }
    });
}

/// `lb capture` writes pcap files that tcpdump reads, with exactly the packets asked for:
/// a VIP's forwarded packets (their IP-in-IP encapsulation visible), or only the drops; and
/// Ctrl-C leaves a whole file and switches the hook off.
#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn capture_writes_pcap_files_tcpdump_reads() {
    let topo = OneArm::new();
    let tmp = TempDir::new("capture");
    let sock = tmp.path("lb.sock");
    let cfg = dns_and_sink(&sock);
    let dns: SocketAddr = format!("{VIP4}:53").parse().unwrap();
    let sink: SocketAddr = format!("{VIP4}:54").parse().unwrap();
    let _serving = lab::serve(&topo.backends, dns, true, &tmp, |i| format!("be{i}"));
    let (_agent, _) = lab::start_agent(&topo.lb, &cfg, &tmp);

    // One VIP's packets, as forwarded: 20 requests, 20 packets, then it stops by itself. The
    // program with the capture hook runs only meanwhile.
    let running = xdp_prog_id(&topo.lb);
    let file = tmp.path("dns.pcap");
    let cap = Capture::start(
        &sock,
        &[
            "--vip",
            "dns",
            "--count",
            "20",
            "-w",
            file.to_str().unwrap(),
        ],
    );
    let capturing = xdp_prog_id(&topo.lb);
    assert_ne!(capturing, running, "no program swapped in for the capture");
    udp_fire(&topo.client, sink, 5); // another VIP's: not this capture's
    let t = traffic::udp_requests(&topo.client, dns, 20);
    assert_eq!(t.ok(), 20, "{t:?}");
    let summary = cap.finish();
    assert!(
        summary.contains("20 packet(s) captured (tx 20)"),
        "{summary}"
    );
    assert_eq!(
        xdp_prog_id(&topo.lb),
        running,
        "the program without the hook is back"
    );
    let lines = tcpdump(&file);
    assert_eq!(lines.len(), 20, "{lines:#?}");
    for l in &lines {
        // The outer header from the balancer to a backend, then the client's datagram.
        let outer_ok = BACKENDS4
            .iter()
            .any(|b| l.contains(&format!("IP 198.18.0.2 > {b}: IP 198.18.0.1.")));
        assert!(outer_ok, "not an encapsulated packet to a backend: {l}");
        assert!(l.contains(&format!("> {VIP4}.53: UDP")), "{l}");
    }
    // Stamped with the wall clock (the program's clock is the monotonic one).
    let today = lb_tests::sh("date +%Y-%m-%d");
    let dated = std::process::Command::new("tcpdump")
        .args(["-r", file.to_str().unwrap(), "-nn", "-q", "-tttt"])
        .output()
        .unwrap();
    let dated = String::from_utf8_lossy(&dated.stdout);
    assert!(
        dated.lines().all(|l| l.starts_with(today.trim())),
        "{today}: {dated}"
    );

    // Only drops: the drained VIP's datagrams, not the forwarded ones around them.
    let file = tmp.path("drops.pcap");
    let cap = Capture::start(&sock, &["--drops", "-c", "5", "-w", file.to_str().unwrap()]);
    let t = traffic::udp_requests(&topo.client, dns, 10);
    assert_eq!(t.ok(), 10, "{t:?}");
    udp_fire(&topo.client, sink, 5);
    let summary = cap.finish();
    assert!(
        summary.contains("5 packet(s) captured (drop_no_backend 5)"),
        "{summary}"
    );
    let lines = tcpdump(&file);
    assert_eq!(lines.len(), 5, "{lines:#?}");
    for l in &lines {
        assert!(
            l.contains("IP 198.18.0.1.") && l.contains(&format!("> {VIP4}.54: UDP")),
            "not a client datagram to the drained VIP: {l}"
        );
    }

    // No count: Ctrl-C ends it with a whole file, and the hook is off for the next one.
    let file = tmp.path("all.pcap");
    let snap = ["-s", "64", "-w", file.to_str().unwrap()];
    let cap = Capture::start(&sock, &snap);
    let t = traffic::udp_requests(&topo.client, dns, 10);
    assert_eq!(t.ok(), 10, "{t:?}");
    // The summary counts what reached the file; wait for the 10 forwarded ones.
    lab::wait_for(Duration::from_secs(5), "10 packets in the file", || {
        tcpdump(&file)
            .iter()
            .filter(|l| l.contains(".53: UDP"))
            .count()
            >= 10
    });
    unsafe { libc::kill(cap.child.id() as i32, libc::SIGINT) };
    let summary = cap.finish();
    assert!(summary.contains("packet(s) captured"), "{summary}");
    let lines = tcpdump(&file);
    assert!(lines.len() >= 10, "{lines:#?}");
    // Snap length 64: no record holds more (file header 24 bytes, record header 16).
    let size = std::fs::metadata(&file).unwrap().len() as usize;
    assert!(
        size <= 24 + lines.len() * (16 + 64),
        "{size} bytes for {} packets",
        lines.len()
    );
    let again = Capture::start(
        &sock,
        &["-c", "1", "-w", tmp.path("one.pcap").to_str().unwrap()],
    );
    udp_fire(&topo.client, sink, 1);
    assert!(again.finish().contains("1 packet(s) captured"));
}
