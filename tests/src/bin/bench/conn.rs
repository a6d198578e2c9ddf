//! Connection rate: short TCP connections (connect, read the server's greeting, close) from a
//! client namespace, straight to one backend, through lb, and through HAProxy in TCP mode on
//! the balancer host, in the same topology and the same run.
use std::{
    io::Read,
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use lb_tests::{
    TempDir,
    lab::{self, OneArm, VIP4, backend4},
    traffic,
};

/// Client threads, each opening connections one after the other.
const THREADS: usize = 2;

/// Connections per second over `per_thread` × THREADS attempts, and how many failed (a
/// benchmark reports failures; it does not stop on one).
fn rate(topo: &OneArm, addr: SocketAddr, per_thread: u32) -> (f64, u32) {
    let path = format!("/run/netns/{}", topo.client.name);
    let start = Instant::now();
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || {
                let f = std::fs::File::open(&path).expect("netns");
                assert_eq!(
                    unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET) },
                    0
                );
                let mut failed = 0u32;
                for _ in 0..per_thread {
                    let ok = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).and_then(
                        |mut s| {
                            s.set_read_timeout(Some(Duration::from_secs(3)))?;
                            let mut b = [0u8; 1];
                            s.read_exact(&mut b)
                        },
                    );
                    failed += ok.is_err() as u32;
                }
                failed
            })
        })
        .collect();
    let failed: u32 = handles
        .into_iter()
        .map(|h| h.join().expect("client thread"))
        .sum();
    let done = per_thread * THREADS as u32 - failed;
    (done as f64 / start.elapsed().as_secs_f64(), failed)
}

pub fn measure(quick: bool) -> String {
    // 30 rounds, a multiple of the three paths, so that each path runs first equally often. With
    // 15 the median of the rounds' ratios measured anywhere from 0.89 to 1.05 in five runs of
    // one build here.
    let (per_thread, runs) = if quick { (200, 1) } else { (1000, 30) };
    let topo = OneArm::with_backends(3);
    let tmp = TempDir::new("bench-conn");
    let vip: SocketAddr = format!("{VIP4}:80").parse().unwrap();
    let _serving = lab::serve(&topo.backends, vip, false, &tmp, |i| format!("be{i}"));
    let sock = tmp.path("lb.sock");
    let mut cfg = format!(
        "[agent]\ninterfaces = [\"eth0\"]\nsocket = \"{}\"\nstate_dir = \"{}\"\nsource_v4 = \"198.18.0.2\"\nflow_table_size = 262144\n\n\
         [[vip]]\nname = \"web\"\naddress = \"{VIP4}:80\"\n\n[vip.health]\nkind = \"none\"\n",
        sock.display(),
        tmp.path("state").display()
    );
    let mut haproxy = "global\n  maxconn 4096\ndefaults\n  mode tcp\n  timeout connect 3s\n  timeout client 10s\n  timeout server 10s\n\
                       frontend f\n  bind 198.18.0.2:8080\n  default_backend b\nbackend b\n  balance roundrobin\n"
        .to_string();
    for i in 0..3 {
        cfg += &format!("\n[[vip.backend]]\naddress = \"{}\"\n", backend4(i));
        haproxy += &format!("  server s{i} {}:80\n", backend4(i));
    }
    let (_agent, _) = lab::start_agent(&topo.lb, &cfg, &tmp);
    let hcfg = tmp.path("haproxy.cfg");
    std::fs::write(&hcfg, haproxy).unwrap();
    let _haproxy = topo.lb.spawn(
        &["haproxy", "-db", "-f", hcfg.to_str().unwrap()],
        tmp.path("haproxy.log"),
    );
    let via_haproxy: SocketAddr = "198.18.0.2:8080".parse().unwrap();
    lab::wait_for(Duration::from_secs(10), "haproxy listening", || {
        traffic::tcp_connects(&topo.client, via_haproxy, 1).ok() == 1
    });

    let direct: SocketAddr = format!("{}:80", backend4(0)).parse().unwrap();
    let paths = [
        ("direct to one backend (no balancer)", direct),
        ("through lb", vip),
        (
            "through HAProxy (TCP mode, on the balancer host)",
            via_haproxy,
        ),
    ];
    // Round by round, every path once, so that the machine's drift moves all of them alike;
    // the ratios are the medians of each round's own. Short rounds (about a second for all
    // three paths) keep the drift within a round small, and the order rotates from round to
    // round so that no path is always the one that runs first.
    let mut results: Vec<Vec<(f64, u32)>> = vec![Vec::new(); paths.len()];
    for round in 0..runs {
        for k in 0..paths.len() {
            let i = (round + k) % paths.len();
            results[i].push(rate(&topo, paths[i].1, per_thread));
        }
    }
    let mut out = format!(
        "{THREADS} client threads × {per_thread} connections each (connect, read the server's first byte, close), {runs} round(s), each path once per round, in an order that rotates; connections per second (min / median / max), and the median over rounds of the round's ratio to the direct path.\n\n\
         | path | conn/s | × direct | failed |\n|---|---|---|---|\n"
    );
    let (mut lb_ratio, mut lb_range, mut direct_rate) = (0.0, (0.0, 0.0), 0.0);
    for (i, (name, _)) in paths.iter().enumerate() {
        let failed: u32 = results[i].iter().map(|r| r.1).sum();
        let mut v: Vec<f64> = results[i].iter().map(|r| r.0).collect();
        assert!(
            v.iter().all(|r| *r > 0.0),
            "{name}: no connection succeeded: the harness is broken"
        );
        let mut ratios: Vec<f64> = results[i]
            .iter()
            .zip(&results[0])
            .map(|(r, d)| r.0 / d.0)
            .collect();
        v.sort_by(|a, b| a.total_cmp(b));
        ratios.sort_by(|a, b| a.total_cmp(b));
        let ratio = ratios[ratios.len() / 2];
        if i == 0 {
            direct_rate = v[v.len() / 2];
        }
        if i == 1 {
            lb_ratio = ratio;
            lb_range = (ratios[0], ratios[ratios.len() - 1]);
        }
        out += &format!(
            "| {name} | {:.0} / {:.0} / {:.0} | {ratio:.2}× | {failed} |\n",
            v[0],
            v[v.len() / 2],
            v[v.len() - 1],
        );
    }
    out += &format!(
        "\nTarget: through lb ≥ 0.9× direct {}.\n",
        crate::summary::check(
            "connections per second through lb against straight to a backend",
            "≥ 0.9×",
            format!("{lb_ratio:.2}×"),
            lb_ratio >= 0.9
        )
    );
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    out += &format!(
        "\nWhat bounds it here: the client, the balancer and the backends share this machine's {cpus} CPUs, some {:.0} µs of CPU time a connection at the direct path's rate. Through lb, each of the client's packets (about five a connection: SYN, ACKs, FIN) crosses the fabric twice where the direct path crosses it once (a veth pair and the bridge more, and the balancer's NAPI), and the backend strips the outer header; that hop's kernel work comes out of the client's and the servers' time, as it would not with a balancer on a machine of its own. `xdp_lb` itself takes some 0.2–0.4 µs a packet (the end-to-end section's program time), 1–2 µs a connection. The ratio is a median over rounds whose own ratios ranged from {:.2}× to {:.2}× in this run, so a tick this near the target moves from run to run.\n",
        cpus as f64 * 1e6 / direct_rate,
        lb_range.0,
        lb_range.1,
    );
    out
}
