//! Looking inside the data path: `lb capture` (packets into pcap files tcpdump reads) and the
//! program's own log lines (`lb run --program-log`).
use std::{net::SocketAddr, time::Duration};

use lb_tests::{
    TempDir,
    lab::{self, BACKENDS4, OneArm, VIP4},
    traffic,
};

/// "dns" (UDP 53) forwards to three backends; "sink" (UDP 54) has its only backend drained:
/// it drops.
fn dns_and_sink(sock: &std::path::Path) -> String {
    let mut cfg = lab::dns_config(sock);
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
