//! `cargo xtask demo`: a throwaway topology (a client, the balancer, three backends) with
//! real TCP traffic through the VIP; shows how it spread, then removes everything, also on
//! Ctrl-C.
use std::{
    net::SocketAddr,
    sync::atomic::{AtomicBool, Ordering},
};

use lb_tests::{
    TempDir,
    lab::{self, BACKENDS4, OneArm, VIP4},
    traffic,
};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn step(what: &str) {
    println!("\n\x1b[1m==> {what}\x1b[0m");
}

fn stopped() -> bool {
    if STOP.load(Ordering::SeqCst) {
        println!("\ninterrupted: cleaning up");
        return true;
    }
    false
}

fn main() {
    // Ctrl-C sets a flag; every step is bounded, so the guards below run their cleanup.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    // A failure (or a Ctrl-C that cut a step short) unwinds through the guards, which remove
    // what was made; say what happened in one line rather than with a backtrace.
    std::panic::set_hook(Box::new(|info| {
        if STOP.load(Ordering::SeqCst) {
            eprintln!("\ninterrupted: cleaning up");
        } else {
            eprintln!("\ndemo failed: {info}");
        }
    }));
    step("building a throwaway network: client, balancer and three backends on one switch");
    let topo = OneArm::new();
    println!(
        "  namespaces: {}, {}, {}, switch {}",
        topo.client.name,
        topo.lb.name,
        topo.backends
            .iter()
            .map(|b| b.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        topo.lab.switch.name
    );
    println!(
        "  client 198.18.0.1 · balancer 198.18.0.2 · backends {}",
        BACKENDS4.join(", ")
    );
    println!(
        "  the balancer's kernel drops everything it would forward (nftables): only XDP moves packets"
    );
    let tmp = TempDir::new("demo");
    if stopped() {
        return;
    }

    step(
        "backends: VIP on lo, `lb decap` strips IP-in-IP, a small TCP server answers with its name",
    );
    let vip: SocketAddr = format!("{VIP4}:80").parse().unwrap();
    let _decaps: Vec<_> = topo
        .backends
        .iter()
        .map(|b| lab::backend_host(b, "eth0", &tmp))
        .collect();
    let name = |i: usize| format!("backend {}", BACKENDS4[i]);
    let mut servers: Vec<Option<traffic::Server>> = (0..3)
        .map(|i| Some(traffic::tcp_server(&topo.backends[i], vip, &name(i))))
        .collect();
    if stopped() {
        return;
    }

    let sock = tmp.path("lb.sock");
    let config = format!(
        "[agent]\ninterfaces = [\"eth0\"]\nxdp_mode = \"native\"\nsocket = \"{}\"\nsource_v4 = \"198.18.0.2\"\n\n\
         [[vip]]\nname = \"web\"\naddress = \"{VIP4}:80\"\nprotocol = \"tcp\"\n\n\
         [vip.health]\nkind = \"tcp\"\ninterval = \"300ms\"\ntimeout = \"200ms\"\nrise = 2\nfall = 2\n{}",
        sock.display(),
        BACKENDS4
            .iter()
            .map(|b| format!("\n[[vip.backend]]\naddress = \"{b}\"\n"))
            .collect::<String>()
    );
    step("the balancer: `lb run` with this config (native XDP)");
    println!(
        "{}",
        config
            .lines()
            .map(|l| format!("  | {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let (_agent, _) = lab::start_agent(&topo.lb, &config, &tmp);
    if stopped() {
        return;
    }

    let n = 300;
    step(&format!("the client opens {n} TCP connections to {vip}"));
    let mut failed = spread(&topo, vip, n);
    if stopped() {
        return;
    }

    step("backend 198.18.0.12 fails: its server stops; the health check notices");
    servers[1] = None;
    let took = wait_health(&sock, "198.18.0.12", "down");
    println!("  down after {took:.1?} (interval 300ms × fall 2, plus the probe's timeout)");
    failed += spread(&topo, vip, 150);
    if stopped() {
        return;
    }

    step("it comes back: the server starts again; after rise passes it takes traffic again");
    servers[1] = Some(traffic::tcp_server(&topo.backends[1], vip, &name(1)));
    let took = wait_health(&sock, "198.18.0.12", "up");
    println!("  up after {took:.1?}");
    failed += spread(&topo, vip, 150);
    if stopped() {
        return;
    }

    step("what the balancer counted (`lb stats`)");
    let s = lab::stats(&sock);
    print!(
        "{}",
        lb::stats::render(&s)
            .lines()
            .map(|l| format!("  {l}\n"))
            .collect::<String>()
    );
    println!(
        "  kernel forward-chain drops in the balancer: {}",
        lab::kernel_forward_drops(&topo.lb)
    );

    step("cleaning up: agent and decap stopped, the pinned data path removed, namespaces deleted");
    drop(servers);
    if failed > 0 {
        std::process::exit(1);
    }
}

/// `n` connections from the client, shown as a bar chart; returns how many failed.
fn spread(topo: &OneArm, vip: SocketAddr, n: u32) -> usize {
    let t = traffic::tcp_connects(&topo.client, vip, n);
    println!("  {} answered, {} failed", t.ok(), t.failed.len());
    for (who, k) in &t.by_server {
        let pct = 100.0 * *k as f64 / n as f64;
        println!("  {who:<22} {} {pct:5.1}% ({k})", lb::stats::bar(pct, 40));
    }
    t.failed.len()
}

/// Waits (at most 10 s) until `lb status` shows `addr` in `health`; returns how long it took.
fn wait_health(sock: &std::path::Path, addr: &str, health: &str) -> std::time::Duration {
    lab::wait_for(
        std::time::Duration::from_secs(10),
        &format!("{addr} {health}"),
        || {
            lab::status(sock).vips[0]
                .backends
                .iter()
                .any(|b| b.address == addr && b.health == health)
        },
    )
}
