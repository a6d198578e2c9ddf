//! The agent's edges against the counterparts that users run: a real Prometheus server and
//! `promtool` on the metrics port, thousands of idle clients on both listeners, a client that
//! trickles its request, and malformed requests.
use std::{
    io::{Read, Write},
    net::SocketAddr,
    os::unix::net::UnixStream,
    path::Path,
    time::{Duration, Instant},
};

use lb_tests::{
    Proc, TempDir,
    lab::{self, BACKENDS4, OneArm, VIP4},
    traffic,
};

const HEALTH_PORT: u16 = 8081;

/// A TCP VIP "web" on port 80 over the three backends, checked on [`HEALTH_PORT`] every
/// 100 ms, with the metrics on `metrics`.
fn web_config(sock: &Path, metrics: &str) -> String {
    let mut cfg = format!(
        "[agent]\ninterfaces = [\"eth0\"]\nsocket = \"{}\"\nsource_v4 = \"198.18.0.2\"\nmetrics = \"{metrics}\"\n\n\
         [[vip]]\nname = \"web\"\naddress = \"{VIP4}:80\"\nprotocol = \"tcp\"\n\n\
         [vip.health]\nkind = \"tcp\"\nvia = \"direct\"\nport = {HEALTH_PORT}\ninterval = \"100ms\"\n",
        sock.display()
    );
    for b in BACKENDS4 {
        cfg += &format!("\n[[vip.backend]]\naddress = \"{b}\"\n");
    }
    cfg
}

/// What the health checks connect to on each backend: listeners that accept and close each
/// connection, as a service would (a listener that never accepts fills its backlog after a
/// hundred-odd checks, and further checks time out). Each accepting thread holds its own
/// handle of the listener and stays blocked in `accept` until the test process ends.
fn health_listeners(topo: &OneArm) -> Vec<std::net::TcpListener> {
    topo.backends
        .iter()
        .zip(BACKENDS4)
        .map(|(ns, b)| {
            let l = ns.run(|| std::net::TcpListener::bind((b, HEALTH_PORT)).unwrap());
            let accepting = l.try_clone().unwrap();
            std::thread::spawn(move || {
                while let Ok((s, _)) = accepting.accept() {
                    drop(s);
                }
            });
            l
        })
        .collect()
}

/// One raw request on a fresh connection: the whole answer (head and body).
fn raw(stream: &mut (impl Read + Write), request: &str) -> String {
    stream.write_all(request.as_bytes()).unwrap();
    let mut r = String::new();
    let _ = stream.read_to_string(&mut r);
    r
}

/// `GET /metrics` with `accept`: (content type, body).
fn scrape(addr: &str, accept: &str) -> (String, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the metrics port");
    let r = raw(
        &mut s,
        &format!(
            "GET /metrics HTTP/1.1\r\nHost: lb\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
        ),
    );
    let (head, body) = r.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let ctype = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type:")
                .map(|v| v.trim().to_string())
        })
        .expect("a content type");
    (ctype, body.to_string())
}

/// `promtool check metrics` on `body`: panics with its words unless it accepts the body.
fn promtool_accepts(body: &str, what: &str) {
    let mut p = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run promtool (cargo xtask setup installs Debian's prometheus)");
    p.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = p.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics refused the {what} body: {}{}\n{body}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The Prometheus project's reference OpenMetrics parser (Debian's python3-prometheus-client)
/// reads `body` whole. promtool cannot judge OpenMetrics: its linter reads the 0.0.4 grammar,
/// where a counter family is named with its `_total` suffix and OpenMetrics forbids that.
fn openmetrics_parser_accepts(body: &str) {
    let script = "import sys\n\
        from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse\n\
        families = list(parse(sys.stdin.read()))\n\
        print(len(families), sum(len(f.samples) for f in families))\n";
    let mut p = std::process::Command::new("/usr/bin/python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run Debian's python3");
    p.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = p.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the OpenMetrics parser refused the body: {}\n{body}",
        String::from_utf8_lossy(&out.stderr)
    );
    let counts = String::from_utf8_lossy(&out.stdout);
    let samples: usize = counts.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(samples > 20, "{counts}");
}

/// A Prometheus instant query against the server at `web`: the first result's value.
fn query(web: &str, promql: &str) -> Option<f64> {
    let mut s = std::net::TcpStream::connect(web).ok()?;
    let q: String = promql
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let r = raw(
        &mut s,
        &format!(
            "GET /api/v1/query?query={q} HTTP/1.1\r\nHost: prometheus\r\nConnection: close\r\n\r\n"
        ),
    );
    let body = r.split_once("\r\n\r\n")?.1;
    // The body may be chunked: the JSON object is between the first `{` and the last `}`.
    let json = &body[body.find('{')?..=body.rfind('}')?];
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

/// A real Prometheus server, in the balancer's namespace, scrapes the agent: the target is up
/// and stores the VIP's packets exactly; `promtool` accepts both expositions.
#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn a_real_prometheus_scrapes_the_agent() {
    let topo = OneArm::new();
    let tmp = TempDir::new("prom");
    let sock = tmp.path("lb.sock");
    let metrics = "127.0.0.1:9117";
    let cfg = lab::dns_config(&sock).replacen(
        "[agent]\n",
        &format!("[agent]\nmetrics = \"{metrics}\"\n"),
        1,
    );
    let vip: SocketAddr = format!("{VIP4}:53").parse().unwrap();
    let _serving = lab::serve(&topo.backends, vip, true, &tmp, |i| format!("be{i}"));
    let (_agent, _) = lab::start_agent(&topo.lb, &cfg, &tmp);
    const N: u32 = 50;
    let t = traffic::udp_requests(&topo.client, vip, N);
    assert_eq!(t.ok(), N, "{t:?}");

    let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let (om_type, om) = topo.lb.run(|| scrape(metrics, prometheus));
    assert!(
        om_type.starts_with("application/openmetrics-text"),
        "{om_type}"
    );
    assert!(om.ends_with("# EOF\n"), "{om}");
    let (text_type, text) = topo.lb.run(|| scrape(metrics, "text/plain"));
    assert!(
        text_type.starts_with("text/plain; version=0.0.4"),
        "{text_type}"
    );
    assert!(
        !text.contains("# EOF") && !text.contains(" info\n"),
        "{text}"
    );
    promtool_accepts(&text, "0.0.4");
    openmetrics_parser_accepts(&om);

    let web = "127.0.0.1:9190";
    let prom_cfg = tmp.path("prometheus.yml");
    std::fs::write(
        &prom_cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: lb\n    static_configs:\n      - targets: ['{metrics}']\n"
        ),
    )
    .unwrap();
    let check = std::process::Command::new("promtool")
        .args(["check", "config", prom_cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");
    let _prom: Proc = topo.lb.spawn(
        &[
            "prometheus",
            &format!("--config.file={}", prom_cfg.display()),
            &format!("--storage.tsdb.path={}", tmp.path("tsdb").display()),
            &format!("--web.listen-address={web}"),
        ],
        tmp.path("prometheus.log"),
    );
    let packets = "lb_vip_packets_total{vip=\"dns\"}";
    let mut seen = (None, None);
    lab::wait_for(
        Duration::from_secs(30),
        "Prometheus to scrape the agent",
        || {
            seen = topo
                .lb
                .run(|| (query(web, "up{job=\"lb\"}"), query(web, packets)));
            seen.0 == Some(1.0) && seen.1.is_some()
        },
    );
    assert_eq!(seen.1, Some(N as f64), "stored packets: {seen:?}");
}

/// The agent's pid (`ip netns exec` execs the command it is given, and so does `prlimit`).
fn pid(p: &Proc) -> u32 {
    p.child.id()
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// User and system CPU time the process has used, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// Raises this test process's own open-file limit: it holds thousands of connections.
fn raise_own_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    assert!(
        lim.rlim_cur >= 8192,
        "this test needs 8192 open files: {lim:?}",
        lim = lim.rlim_cur
    );
}

/// With its open-file limit at 1,024 (soft and hard: it cannot raise it), the agent takes
/// 2,000 idle connections on its control socket and 2,000 on its metrics port without a
/// change: `lb status` answers within a second throughout, no backend changes state, new
/// connections through the VIP succeed, the agent's CPU stays low, and afterwards its open
/// files are back where they were.
#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn idle_connections_never_knock_the_agent_over() {
    raise_own_nofile();
    let topo = OneArm::new();
    let tmp = TempDir::new("idle");
    let sock = tmp.path("lb.sock");
    let metrics = "127.0.0.1:9118";
    let vip: SocketAddr = format!("{VIP4}:80").parse().unwrap();
    let _serving = lab::serve(&topo.backends, vip, false, &tmp, |i| format!("be{i}"));
    let _health = health_listeners(&topo);
    let (agent, _) = lab::start_agent_under(
        &topo.lb,
        &web_config(&sock, metrics),
        &tmp,
        &["prlimit", "--nofile=1024:1024"],
        &[],
    );
    let pid = pid(&agent);
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let nofile = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    assert!(nofile.split_whitespace().nth(3) == Some("1024"), "{nofile}");
    lab::wait_for(Duration::from_secs(5), "every backend up", || {
        lab::status(&sock).vips[0]
            .backends
            .iter()
            .all(|b| b.health == "up")
    });
    let fds_before = open_fds(pid);
    let (ticks_before, t0) = (cpu_ticks(pid), Instant::now());

    let (idle_unix, idle_tcp) = topo.lb.run(|| {
        let unix: Vec<UnixStream> = (0..2000)
            .map(|_| UnixStream::connect(&sock).expect("connect to the control socket"))
            .collect();
        let tcp: Vec<std::net::TcpStream> = (0..2000)
            .map(|_| std::net::TcpStream::connect(metrics).expect("connect to the metrics port"))
            .collect();
        (unix, tcp)
    });
    // Held open while the agent is used as usual.
    for round in 0..5 {
        let t = Instant::now();
        let st = lab::status(&sock);
        let took = t.elapsed();
        assert!(
            took < Duration::from_secs(1),
            "round {round}: lb status took {took:?}"
        );
        for b in &st.vips[0].backends {
            assert_eq!(
                (b.health.as_str(), b.in_ring),
                ("up", true),
                "round {round}: {b:?}"
            );
            assert!(b.local_fault.is_none(), "round {round}: {b:?}");
        }
        let c = traffic::tcp_connects(&topo.client, vip, 20);
        assert!(c.failed.is_empty(), "round {round}: {c:?}");
        let (_, body) = topo.lb.run(|| scrape(metrics, "text/plain"));
        assert!(
            body.contains("lb_vip_backends_live{vip=\"web\"} 3"),
            "{body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let busy = (cpu_ticks(pid) - ticks_before) as f64 / 100.0 / t0.elapsed().as_secs_f64();
    assert!(busy < 0.5, "the agent used {:.0}% of a CPU", busy * 100.0);
    let log = agent.log_text();
    assert!(!log.contains("backend down"), "{log}");
    // The listeners made room by closing idle connections, and say so.
    let (_, body) = topo.lb.run(|| scrape(metrics, "text/plain"));
    for listener in ["control", "metrics"] {
        let line =
            format!("lb_api_connections_total{{listener=\"{listener}\",result=\"evicted\"}} ");
        let evicted: f64 = body
            .lines()
            .find_map(|l| l.strip_prefix(line.as_str()))
            .unwrap_or_else(|| panic!("no {line} in\n{body}"))
            .parse()
            .unwrap();
        assert!(evicted >= 1000.0, "{listener}: {evicted} evicted");
    }
    drop((idle_unix, idle_tcp));
    lab::wait_for(
        Duration::from_secs(15),
        "the agent's open files back",
        || open_fds(pid) <= fds_before + 2,
    );
}

/// A client that sends its request a byte a second is cut off by the header timeout; a known
/// path with the wrong method is a 405, a malformed `Content-Length` a 400, a body over the
/// limit a 413, an unknown path a 404.
#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn slow_and_malformed_requests_are_cut_off_or_refused() {
    let topo = OneArm::new();
    let tmp = TempDir::new("slow");
    let sock = tmp.path("lb.sock");
    let (_agent, _) = lab::start_agent(&topo.lb, &lab::dns_config(&sock), &tmp);
    let status_of = |req: &str| {
        let mut s = UnixStream::connect(&sock).unwrap();
        let r = raw(&mut s, req);
        r.lines().next().unwrap_or("").to_string()
    };
    let head = status_of("POST /v1/status HTTP/1.1\r\nHost: lb\r\nContent-Length: 0\r\n\r\n");
    assert!(head.contains(" 405 "), "{head}");
    let head = status_of("GET /v1/nothing HTTP/1.1\r\nHost: lb\r\n\r\n");
    assert!(head.contains(" 404 "), "{head}");
    let head = status_of("POST /v1/vips HTTP/1.1\r\nHost: lb\r\nContent-Length: 12x\r\n\r\n{}");
    assert!(head.contains(" 400 "), "{head}");
    let big = "x".repeat(2 << 20);
    let mut s = UnixStream::connect(&sock).unwrap();
    let _ = write!(
        s,
        "POST /v1/vips HTTP/1.1\r\nHost: lb\r\nContent-Length: {}\r\n\r\n",
        big.len()
    );
    let _ = s.write_all(big.as_bytes());
    let mut r = String::new();
    let _ = s.read_to_string(&mut r);
    assert!(
        r.starts_with("HTTP/1.1 413"),
        "{}",
        r.lines().next().unwrap_or("")
    );

    // A byte a second: the request would take ~40 s; the connection is closed long before.
    let request = b"GET /v1/status HTTP/1.1\r\nHost: lb\r\n\r\n";
    let mut s = UnixStream::connect(&sock).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(1000)))
        .unwrap();
    let t = Instant::now();
    let mut sent = 0;
    let mut answer = Vec::new();
    let closed = loop {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "still open after 20 s"
        );
        if s.write_all(&request[sent..sent + 1]).is_err() {
            break t.elapsed();
        }
        sent += 1;
        let mut buf = [0u8; 512];
        match s.read(&mut buf) {
            Ok(0) => break t.elapsed(),
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => break t.elapsed(),
        }
    };
    assert!(sent < request.len(), "the whole request got through");
    assert!(
        closed >= Duration::from_secs(4) && closed <= Duration::from_secs(8),
        "cut off after {closed:?} ({sent} bytes sent)"
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    // The agent still answers.
    assert!(!lab::status(&sock).vips.is_empty());
}

/// `lb status` through the API (no process to start: the timing is the agent's).
fn api_status(sock: &Path) -> lb::status::Status {
    serde_json::from_str(&lb::api::get(sock, "/v1/status").expect("status")).unwrap()
}

/// A backend's neighbour changes its MAC: the kernel's event reaches the backend's entry
/// at once (no polling), and traffic follows.
#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn a_neighbour_that_changes_its_mac_is_followed_at_once() {
    let topo = OneArm::new();
    let tmp = TempDir::new("mac");
    let sock = tmp.path("lb.sock");
    let vip: SocketAddr = format!("{VIP4}:53").parse().unwrap();
    let _serving = lab::serve(&topo.backends, vip, true, &tmp, |i| format!("be{i}"));
    let (_agent, _) = lab::start_agent(&topo.lb, &lab::dns_config(&sock), &tmp);
    let old = topo.backends[0].sh("cat /sys/class/net/eth0/address");
    let hop_of = |s: &lb::status::Status| s.vips[0].backends[0].next_hop.clone();
    assert_eq!(hop_of(&api_status(&sock)).as_deref(), Some(old.trim()));

    // The backend's NIC is replaced: a new MAC, which the balancer's kernel learns.
    let new = "02:00:00:00:aa:01";
    topo.backends[0].sh(&format!("ip link set eth0 address {new}"));
    let t = Instant::now();
    topo.lb.sh(&format!(
        "ip neigh replace {} dev eth0 lladdr {new}",
        BACKENDS4[0]
    ));
    let took = lab::wait_for(
        Duration::from_secs(1),
        "the entry to follow the MAC",
        || hop_of(&api_status(&sock)).as_deref() == Some(new),
    );
    eprintln!(
        "next hop followed in {took:?} ({:?} since the change)",
        t.elapsed()
    );
    assert!(took < Duration::from_millis(500), "{took:?}");
    let t = traffic::udp_requests(&topo.client, vip, 60);
    assert_eq!(t.ok(), 60, "{t:?}");
    assert!(t.by_server.get("be0").copied().unwrap_or(0) > 0, "{t:?}");
}

/// The attached interface is deleted under traffic and made again with the same name,
/// address and MAC: status says detached within a second, traffic flows again within two
/// seconds of its return, and established connections keep their backends (the flow table
/// and the maps outlived the interface).
#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn an_interface_that_returns_gets_the_balancer_back() {
    let mut topo = OneArm::new();
    let tmp = TempDir::new("relink");
    let sock = tmp.path("lb.sock");
    let vip: SocketAddr = format!("{VIP4}:80").parse().unwrap();
    let _serving = lab::serve(&topo.backends, vip, false, &tmp, |i| format!("be{i}"));
    let cfg = web_config(&sock, "127.0.0.1:9119").replace("kind = \"tcp\"", "kind = \"none\"");
    let (_agent, _) = lab::start_agent(&topo.lb, &cfg, &tmp);
    let mut long = traffic::LongLived::open(&topo.client, vip, 20);
    let mac = topo.lb.sh("cat /sys/class/net/eth0/address");
    let attached = |s: &lb::status::Status| s.links.iter().all(|l| l.attached);
    assert!(attached(&api_status(&sock)));

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let background = traffic::background_connects(&topo.client, vip, stop.clone());
    topo.lb.sh("ip link del eth0");
    let took = lab::wait_for(Duration::from_secs(1), "status to say detached", || {
        let s = api_status(&sock);
        !attached(&s) && s.links[0].ifindex.is_none()
    });
    eprintln!("detached reported in {took:?}");
    let (_, body) = topo.lb.run(|| scrape("127.0.0.1:9119", "text/plain"));
    assert!(
        body.contains("lb_interface_attached{interface=\"eth0\"} 0"),
        "{body}"
    );

    // The same interface again: a new device (and index) with the old name, address and MAC.
    topo.lab
        .plug(&topo.lb, "eth0", "br0", &["198.18.0.2/24", "fd00:18::2/64"]);
    let back = Instant::now();
    topo.lb
        .sh(&format!("ip link set eth0 address {}", mac.trim()));
    let took = lab::wait_for(
        Duration::from_secs(2),
        "traffic through the VIP again",
        || {
            attached(&api_status(&sock))
                && traffic::tcp_connects(&topo.client, vip, 5)
                    .failed
                    .is_empty()
        },
    );
    eprintln!("traffic flows {took:?} after the interface returned");
    assert!(
        back.elapsed() < Duration::from_secs(2),
        "{:?}",
        back.elapsed()
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let during = background.join().unwrap();
    assert!(during.ok() > 0, "{during:?}");
    let moved = long.exchange();
    assert!(
        moved.is_empty(),
        "established connections moved or broke: {moved:?}"
    );
    let s = api_status(&sock);
    assert!(
        s.links[0].ifindex.is_some() && s.links[0].error.is_none(),
        "{:?}",
        s.links
    );
    // Only the balancer moved packets: the kernel's forward chain dropped none.
    assert_eq!(lab::kernel_forward_drops(&topo.lb), 0);
}

/// The agent out of file descriptors (its hard limit just above what it holds at rest):
/// connections pile up until `accept` fails with EMFILE. The accept loop backs off (the
/// failures are counted, the CPU stays low), the health checks that cannot open a socket are
/// local faults (no backend changes state), and once the clients leave, the agent serves again.
#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn running_out_of_descriptors_is_a_local_fault_and_nothing_spins() {
    raise_own_nofile();
    let topo = OneArm::new();
    let tmp = TempDir::new("emfile");
    let sock = tmp.path("lb.sock");
    let metrics = "127.0.0.1:9121";
    let vip: SocketAddr = format!("{VIP4}:80").parse().unwrap();
    let _serving = lab::serve(&topo.backends, vip, false, &tmp, |i| format!("be{i}"));
    let _health = health_listeners(&topo);
    // First at ease, to learn how many descriptors the agent holds at rest.
    let (mut probe_agent, _) = lab::start_agent(&topo.lb, &web_config(&sock, metrics), &tmp);
    lab::wait_for(Duration::from_secs(5), "every backend up", || {
        lab::status(&sock).vips[0]
            .backends
            .iter()
            .all(|b| b.health == "up")
    });
    let at_rest = open_fds(pid(&probe_agent));
    probe_agent.stop();
    let _ = std::fs::remove_file(&sock);
    // Then with room for a few connections only.
    let limit = format!("--nofile={}:{}", at_rest + 12, at_rest + 12);
    let (agent, _) = lab::start_agent_under(
        &topo.lb,
        &web_config(&sock, metrics),
        &tmp,
        &["prlimit", &limit],
        &[],
    );
    let pid = pid(&agent);
    let (ticks, t0) = (cpu_ticks(pid), Instant::now());
    let held = topo.lb.run(|| {
        (0..200)
            .filter_map(|_| std::net::TcpStream::connect(metrics).ok())
            .collect::<Vec<_>>()
    });
    // Long enough for many health checks (every 100 ms) to meet the full table.
    std::thread::sleep(Duration::from_secs(2));
    let busy = (cpu_ticks(pid) - ticks) as f64 / 100.0 / t0.elapsed().as_secs_f64();
    assert!(busy < 0.5, "the agent used {:.0}% of a CPU", busy * 100.0);
    drop(held);
    // The idle connections time out (the metrics port's header timeout), and it serves again.
    let mut body = String::new();
    lab::wait_for(
        Duration::from_secs(20),
        "the metrics port to answer again",
        || {
            body = topo.lb.run(|| {
                std::panic::catch_unwind(|| scrape(metrics, "text/plain").1).unwrap_or_default()
            });
            !body.is_empty()
        },
    );
    let errors: f64 = body
        .lines()
        .find_map(|l| l.strip_prefix("lb_api_accept_errors_total{listener=\"metrics\"} "))
        .unwrap_or("0")
        .parse()
        .unwrap();
    let faults: f64 = body
        .lines()
        .filter_map(|l| l.strip_prefix("lb_health_check_local_faults_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        errors + faults > 0.0,
        "the descriptors never ran out:\n{body}"
    );
    let log = agent.log_text();
    assert!(!log.contains("backend down"), "{log}");
    for b in &lab::status(&sock).vips[0].backends {
        assert_eq!(b.health, "up", "{b:?}");
    }
}
