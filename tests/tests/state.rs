//! Runtime changes on disk, as operators and accidents treat them: thousands of changes keep
//! the state directory small and the start fast, a restart restores exactly what was
//! acknowledged, and so does SIGKILL in the middle of a burst.
use std::{
    collections::BTreeSet,
    net::IpAddr,
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use lb_tests::{
    Proc, TempDir,
    lab::{self, OneArm},
};

/// What the agent's view of VIPs, backends and drains is, for comparing two agents' states.
fn view(sock: &Path) -> BTreeSet<String> {
    let st = lab::status(sock);
    st.vips
        .iter()
        .flat_map(|v| {
            v.backends
                .iter()
                .map(move |b| format!("{} {} w={} drain={}", v.name, b.address, b.weight, b.drain))
        })
        .chain(st.vips.iter().map(|v| format!("{} {}", v.name, v.address)))
        .collect()
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

fn api(sock: &Path, method: &str, path: &str, body: Option<&str>) {
    lb::api::request(sock, method, path, body).unwrap_or_else(|e| panic!("{method} {path}: {e:#}"));
}

/// Restarts the agent (after a stop or a kill) and returns it with how long it took to be
/// ready.
fn restart(topo: &OneArm, tmp: &TempDir, cfg: &Path) -> (Proc, Duration) {
    let lb = lb_tests::lb_bin();
    let t = Instant::now();
    let mut p = topo.lb.spawn(
        &[
            lb.to_str().unwrap(),
            "run",
            "--config",
            cfg.to_str().unwrap(),
        ],
        tmp.path("agent-again.log"),
    );
    p.wait_for("lb: ready", Duration::from_secs(30));
    (p, t.elapsed())
}

/// The state directory stays under this after any number of changes to a handful of VIPs
/// and backends: a snapshot of the compacted changes and at most one journal of 64 lines.
const STATE_BOUND: u64 = 32 * 1024;

#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn five_thousand_changes_keep_the_state_small_and_the_start_fast() {
    let topo = OneArm::new();
    let tmp = TempDir::new("state");
    let sock = tmp.path("lb.sock");
    // Small rings: each change rebuilds one, and this is a debug build.
    let config = lab::dns_config(&sock).replace(
        "protocol = \"udp\"\n",
        "protocol = \"udp\"\nring_size = 251\n",
    );
    let (mut agent, cfg) = lab::start_agent(&topo.lb, &config, &tmp);
    // No route leads to the extra backend: its next hop fails at once (a start waits a moment
    // for next hops that may still resolve, which is not what this test times).
    let (b, extra) = ("/v1/vips/dns/backends", "198.18.9.14");
    // The changes the API makes as the CLI sends them (without starting a process each).
    for i in 0..5000u32 {
        match i % 10 {
            0..=5 => {
                let verb = if i % 2 == 0 { "drain" } else { "undrain" };
                api(
                    &sock,
                    "POST",
                    &format!("{b}/{}/{verb}", lab::backend4((i % 3) as usize)),
                    None,
                );
            }
            6 => api(
                &sock,
                "POST",
                b,
                Some(&format!(
                    "{{\"address\":\"{extra}\",\"weight\":{}}}",
                    i % 50 + 1
                )),
            ),
            7 => api(&sock, "DELETE", &format!("{b}/{extra}"), None),
            8 => api(
                &sock,
                "POST",
                "/v1/vips",
                Some(
                    "{\"name\":\"extra\",\"address\":\"198.19.0.9:53\",\"protocol\":\"udp\",\"health\":\"none\",\"ring_size\":251,\"backends\":[{\"address\":\"198.18.0.11\"}]}",
                ),
            ),
            _ => api(&sock, "DELETE", "/v1/vips/extra", None),
        }
    }
    // One more of each kind, so the last state is not the empty one.
    api(
        &sock,
        "POST",
        &format!("{b}/{}/drain", lab::backend4(1)),
        None,
    );
    api(
        &sock,
        "POST",
        b,
        Some(&format!("{{\"address\":\"{extra}\",\"weight\":7}}")),
    );
    let before = view(&sock);
    assert!(
        before.contains(&format!("dns {extra} w=7 drain=false")),
        "{before:?}"
    );
    let state = tmp.path("state");
    let bytes = dir_bytes(&state);
    assert!(bytes < STATE_BOUND, "{bytes} bytes in {}", state.display());

    agent.stop();
    let (_agent, took) = restart(&topo, &tmp, &cfg);
    assert_eq!(view(&sock), before, "the restart restored another state");
    assert!(
        took < Duration::from_secs(1),
        "the agent took {took:?} to start"
    );
    eprintln!("5002 changes: {bytes} bytes of state, a start in {took:?}");
}

#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn sigkill_during_a_burst_loses_no_acknowledged_change() {
    let topo = OneArm::new();
    let tmp = TempDir::new("kill");
    let sock = tmp.path("lb.sock");
    let (agent, cfg) = lab::start_agent(&topo.lb, &lab::dns_config(&sock), &tmp);
    // Each change adds a backend of its own (no route leads there: it stays unresolved), so
    // every acknowledged change is one address that must be back after the kill.
    let acked = Arc::new(Mutex::new(Vec::<IpAddr>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let (acked, stop, sock) = (acked.clone(), stop.clone(), sock.clone());
        std::thread::spawn(move || {
            for k in 0..2000u32 {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let a = IpAddr::from([198, 18, 1 + (k / 250) as u8, (k % 250) as u8 + 1]);
                let body = format!("{{\"address\":\"{a}\"}}");
                match lb::api::request(&sock, "POST", "/v1/vips/dns/backends", Some(&body)) {
                    Ok(_) => acked.lock().unwrap().push(a),
                    Err(_) => return,
                }
            }
        })
    };
    lab::wait_for(Duration::from_secs(30), "150 changes acknowledged", || {
        acked.lock().unwrap().len() >= 150
    });
    // SIGKILL: no chance to flush or tidy anything.
    unsafe { libc::kill(agent.child.id() as i32, libc::SIGKILL) };
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    drop(agent);
    let acked = acked.lock().unwrap().clone();
    let _ = std::fs::remove_file(&sock);
    let (_agent, _) = restart(&topo, &tmp, &cfg);
    let st = lab::status(&sock);
    let back: BTreeSet<IpAddr> = st.vips[0]
        .backends
        .iter()
        .map(|b| b.address.parse().unwrap())
        .collect();
    let lost: Vec<&IpAddr> = acked.iter().filter(|a| !back.contains(a)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged changes lost: {lost:?}",
        lost.len()
    );
    // Besides the three of the file and the acknowledged ones, at most the one in flight.
    assert!(back.len() <= 3 + acked.len() + 1, "{} backends", back.len());
    eprintln!(
        "{} changes acknowledged before the kill, all back",
        acked.len()
    );
}

/// The config file written in place in two halves 300 ms apart, the first half valid on its
/// own (the `[agent]` table: no VIP at all), once through one open file and once through two:
/// connections through the VIP never fail and the VIP is never removed; the whole file is
/// applied once it settles.
#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn a_config_written_in_place_in_two_halves_is_applied_whole() {
    use std::io::Write;
    let topo = OneArm::new();
    let tmp = TempDir::new("halves");
    let sock = tmp.path("lb.sock");
    let vip: std::net::SocketAddr = format!("{}:80", lab::VIP4).parse().unwrap();
    let _serving = lab::serve(&topo.backends, vip, false, &tmp, |i| format!("be{i}"));
    let mut cfg = format!(
        "[agent]\ninterfaces = [\"eth0\"]\nsocket = \"{}\"\nsource_v4 = \"198.18.0.2\"\n\n\
         [[vip]]\nname = \"web\"\naddress = \"{vip}\"\nprotocol = \"tcp\"\n[vip.health]\nkind = \"none\"\n",
        sock.display()
    );
    for b in lab::BACKENDS4 {
        cfg += &format!("\n[[vip.backend]]\naddress = \"{b}\"\n");
    }
    let (agent, path) = lab::start_agent(&topo.lb, &cfg, &tmp);
    // The file as the agent has it (with its pin and state directories), cut after [agent].
    let whole = std::fs::read_to_string(&path).unwrap();
    let cut = whole.find("[[vip]]").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let background = lb_tests::traffic::background_connects(&topo.client, vip, stop.clone());
    let reloads = |s: &lb::status::Status| s.reloads;
    for round in 0..2 {
        let before = reloads(&lab::status(&sock));
        if round == 0 {
            let mut f = std::fs::File::create(&path).unwrap();
            f.write_all(&whole.as_bytes()[..cut]).unwrap();
            f.flush().unwrap();
            std::thread::sleep(Duration::from_millis(300));
            f.write_all(&whole.as_bytes()[cut..]).unwrap();
        } else {
            std::fs::write(&path, &whole[..cut]).unwrap();
            std::thread::sleep(Duration::from_millis(300));
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap();
            f.write_all(&whole.as_bytes()[cut..]).unwrap();
        }
        lab::wait_for(Duration::from_secs(5), "the whole file applied", || {
            reloads(&lab::status(&sock)) > before
        });
        let st = lab::status(&sock);
        assert_eq!(reloads(&st), before + 1, "round {round}: applied once");
        assert_eq!(st.vips.len(), 1, "round {round}: {st:?}");
        assert!(st.vips[0].backends.iter().all(|b| b.in_ring), "{st:?}");
    }
    stop.store(true, Ordering::Relaxed);
    let t = background.join().unwrap();
    assert!(t.ok() > 50 && t.failed.is_empty(), "{t:?}");
    let log = agent.log_text();
    assert!(!log.contains("VIP removed"), "{log}");
}

/// A backend whose health port flaps every 200 ms for 20 s (checks every 100 ms, rise 1,
/// fall 1): it is damped (held out, shown by `lb status`), the ring is rebuilt a handful of
/// times rather than at every change, and with the TCP default `on_down = "keep"` the
/// established connections on it survive.
#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn a_flapping_backend_is_damped_and_its_connections_kept() {
    let topo = OneArm::new();
    let tmp = TempDir::new("flap");
    let sock = tmp.path("lb.sock");
    let vip: std::net::SocketAddr = format!("{}:80", lab::VIP4).parse().unwrap();
    let _serving = lab::serve(&topo.backends, vip, false, &tmp, |i| format!("be{i}"));
    const HEALTH: u16 = 8081;
    let mut cfg = format!(
        "[agent]\ninterfaces = [\"eth0\"]\nsocket = \"{}\"\nsource_v4 = \"198.18.0.2\"\n\n\
         [[vip]]\nname = \"web\"\naddress = \"{vip}\"\nprotocol = \"tcp\"\n\
         [vip.health]\nkind = \"tcp\"\nvia = \"direct\"\nport = {HEALTH}\ninterval = \"100ms\"\ntimeout = \"100ms\"\nrise = 1\nfall = 1\n",
        sock.display()
    );
    for b in lab::BACKENDS4 {
        cfg += &format!("\n[[vip.backend]]\naddress = \"{b}\"\n");
    }
    // The other backends' health ports stay open; be0's flaps.
    let _steady: Vec<std::net::TcpListener> = topo.backends[1..]
        .iter()
        .zip(&lab::BACKENDS4[1..])
        .map(|(ns, b)| ns.run(|| std::net::TcpListener::bind((*b, HEALTH)).unwrap()))
        .collect();
    let be0 = std::net::SocketAddr::new(lab::BACKENDS4[0].parse().unwrap(), HEALTH);
    let steady0 = topo.backends[0].run(|| std::net::TcpListener::bind(be0).unwrap());
    let (agent, _) = lab::start_agent(&topo.lb, &cfg, &tmp);
    lab::wait_for(Duration::from_secs(5), "all backends up", || {
        lab::status(&sock).vips[0]
            .backends
            .iter()
            .all(|b| b.in_ring)
    });
    let mut long = lb_tests::traffic::LongLived::open(&topo.client, vip, 30);
    let on_be0 = long.by_server().get("be0").copied().unwrap_or(0);
    assert!(on_be0 > 0, "{:?}", long.by_server());
    let rebuilt = |log: &str| log.matches("ring rebuilt").count();
    let before = rebuilt(&agent.log_text());
    drop(steady0);

    let path = format!("/run/netns/{}", topo.backends[0].name);
    let flapper = std::thread::spawn(move || {
        let f = std::fs::File::open(&path).unwrap();
        assert_eq!(
            unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET) },
            0
        );
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end {
            let l = std::net::TcpListener::bind(be0).unwrap();
            std::thread::sleep(Duration::from_millis(200));
            drop(l);
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let mut damped_seen = false;
    while !flapper.is_finished() {
        let st = lab::status(&sock);
        let b = &st.vips[0].backends[0];
        if b.health == "damped" {
            assert!(b.held_s.is_some() && !b.in_ring, "{b:?}");
            damped_seen = true;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    flapper.join().unwrap();
    assert!(damped_seen, "never shown as damped");
    let rebuilds = rebuilt(&agent.log_text()) - before;
    assert!(
        rebuilds <= 6,
        "{rebuilds} ring rebuilds for ~100 changes of state"
    );
    let broken = long.exchange();
    assert!(
        broken.is_empty(),
        "{} of {on_be0} on be0: {broken:?}",
        broken.len()
    );
}
