//! Many balancers, one service: two balancers announce the VIP over BGP through BIRD to a
//! router that spreads flows over them with ECMP (L4 hash). One balancer goes away: its route
//! is withdrawn, its flows move to the other, which has never seen them and sends each to the
//! same backend (same ring, a non-SYN miss takes the ring and records the flow). No connection
//! breaks, and new connections succeed throughout.
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

use lb_tests::{
    Netns, Proc, TempDir,
    lab::{self, BACKENDS4, Lab, VIP4},
    traffic::{self, LongLived},
};

const ROUTER: &str = "198.18.0.254";
const CLIENT: &str = "198.18.10.1";
const BALANCERS: [&str; 2] = ["198.18.0.2", "198.18.0.3"];

/// BIRD in `ns` with `conf`, its control socket at `sock`; ready when the socket answers.
fn bird(ns: &Netns, tmp: &TempDir, name: &str, conf: &str) -> (Proc, PathBuf) {
    let (conf_path, sock) = (
        tmp.path(&format!("{name}.conf")),
        tmp.path(&format!("{name}.ctl")),
    );
    std::fs::write(&conf_path, conf).unwrap();
    let pid = tmp.path(&format!("{name}.pid"));
    let mut p = ns.spawn(
        &[
            "bird",
            "-f",
            "-c",
            conf_path.to_str().unwrap(),
            "-s",
            sock.to_str().unwrap(),
            "-P",
            pid.to_str().unwrap(),
        ],
        tmp.path(&format!("{name}.log")),
    );
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while lb::bgp::bird_command(&sock, "show status").is_err() {
        if let Ok(Some(st)) = p.child.try_wait() {
            panic!("BIRD ({name}) exited ({st}):\n{}\n{conf}", p.log_text());
        }
        assert!(
            std::time::Instant::now() < end,
            "BIRD ({name}) not answering: {:?}\n{}",
            lb::bgp::bird_command(&sock, "show status"),
            p.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (p, sock)
}

/// Session timers short enough for a test (the defaults take minutes to give up on a peer).
const TIMERS: &str = "connect delay time 1; connect retry time 2; error wait time 1, 4; \
                      hold time 6; keepalive time 2;";

fn router_conf() -> String {
    let mut c = format!(
        "log stderr all;\nrouter id {ROUTER};\nprotocol device {{ scan time 1; }}\n\
         protocol kernel {{ ipv4 {{ import none; export all; }}; merge paths on; }}\n"
    );
    for (i, b) in BALANCERS.iter().enumerate() {
        c += &format!(
            "protocol bgp lb{i} {{ local {ROUTER} as 65000; neighbor {b} as 65001; \
             ipv4 {{ import all; export none; }}; {TIMERS} }}\n"
        );
    }
    c
}

fn balancer_conf(me: &str, routes: &Path) -> String {
    format!(
        "log stderr all;\nrouter id {me};\nprotocol device {{ scan time 1; }}\n\
         include \"{}\";\n\
         protocol bgp uplink {{ local {me} as 65001; neighbor {ROUTER} as 65000; \
         ipv4 {{ import none; export all; }}; {TIMERS} }}\n",
        routes.display()
    )
}

/// The router's next hops for the VIP.
fn next_hops(router: &Netns) -> Vec<String> {
    let out = router.sh(&format!("ip -j route show {VIP4}/32"));
    let routes: serde_json::Value = serde_json::from_str(&out).unwrap();
    let Some(r) = routes.as_array().and_then(|a| a.first()) else {
        return Vec::new();
    };
    match r["nexthops"].as_array() {
        Some(hops) => hops
            .iter()
            .filter_map(|h| h["gateway"].as_str().map(str::to_string))
            .collect(),
        None => r["gateway"]
            .as_str()
            .map(str::to_string)
            .into_iter()
            .collect(),
    }
}

struct Balancer {
    ns: Netns,
    tmp: TempDir,
    sock: PathBuf,
    cfg: PathBuf,
    agent: Proc,
    _bird: Proc,
}

#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn losing_a_balancer_breaks_no_connection() {
    let mut lab = Lab::new();
    lab.bridge("br0"); // balancers, backends, router
    lab.bridge("br1"); // client, router
    let router = Netns::new("rt");
    lab.plug(&router, "eth0", "br0", &[&format!("{ROUTER}/24")]);
    lab.plug(&router, "eth1", "br1", &["198.18.10.254/24"]);
    // ECMP on the 5-tuple, as a router in front of balancers must hash.
    router.sh(
        "sysctl -qw net.ipv4.ip_forward=1 net.ipv4.fib_multipath_hash_policy=1 \
         net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.eth0.rp_filter=0",
    );
    let client = Netns::new("cl");
    lab.plug(&client, "eth0", "br1", &[&format!("{CLIENT}/24")]);
    client.sh("ip route add default via 198.18.10.254");
    let backends: Vec<Netns> = (0..3)
        .map(|i| {
            let b = Netns::new(&format!("be{i}"));
            lab.plug(&b, "eth0", "br0", &[&format!("{}/24", BACKENDS4[i])]);
            // Answers go straight back to the client through the router.
            b.sh(&format!("ip route add default via {ROUTER}"));
            b
        })
        .collect();
    let btmp = TempDir::new("fleet-be");
    let vip: SocketAddr = format!("{VIP4}:80").parse().unwrap();
    let _serving = lab::serve(&backends, vip, false, &btmp, |i| format!("be{i}"));
    let rtmp = TempDir::new("fleet-rt");
    let (_router_bird, router_sock) = bird(&router, &rtmp, "router", &router_conf());

    let mut lbs: Vec<Balancer> = BALANCERS
        .iter()
        .enumerate()
        .map(|(i, me)| {
            let ns = Netns::new(&format!("lb{i}"));
            lab.plug(&ns, "eth0", "br0", &[&format!("{me}/24")]);
            lab::balancer_host(&ns);
            let tmp = TempDir::new(&format!("fleet-lb{i}"));
            let routes = tmp.path("vips.conf");
            std::fs::write(&routes, "").unwrap(); // BIRD includes it from its start
            let (bird_proc, bird_sock) = bird(&ns, &tmp, "bird", &balancer_conf(me, &routes));
            let sock = tmp.path("lb.sock");
            let mut cfg = format!(
                "[agent]\ninterfaces = [\"eth0\"]\ninstance = \"edge{i}\"\nsocket = \"{}\"\nsource_v4 = \"{me}\"\n\n\
                 [bgp]\nbird_socket = \"{}\"\nroutes_file = \"{}\"\n\n\
                 [[vip]]\nname = \"web\"\naddress = \"{VIP4}:80\"\nprotocol = \"tcp\"\n\n\
                 [vip.health]\nkind = \"tcp\"\ninterval = \"200ms\"\n",
                sock.display(),
                bird_sock.display(),
                routes.display()
            );
            for b in BACKENDS4 {
                cfg += &format!("\n[[vip.backend]]\naddress = \"{b}\"\n");
            }
            let (agent, cfg) = lab::start_agent(&ns, &cfg, &tmp);
            Balancer {
                ns,
                tmp,
                sock,
                cfg,
                agent,
                _bird: bird_proc,
            }
        })
        .collect();

    // Both balancers announce; the router spreads over both.
    lab::wait_for(Duration::from_secs(30), "two next hops for the VIP", || {
        next_hops(&router).len() == 2
    });
    let hops = next_hops(&router);
    for b in BALANCERS {
        assert!(hops.contains(&b.to_string()), "{hops:?}");
    }
    for l in &lbs {
        let s = lab::status(&l.sock);
        let bgp = s.bgp.expect("bgp status");
        assert_eq!((bgp.announced, bgp.error), (vec![VIP4.to_string()], None));
    }
    // The same ring on both: every flow has one backend, whichever balancer sees it.
    let prints: Vec<Option<String>> = lbs
        .iter()
        .map(|l| lab::status(&l.sock).vips[0].ring_fingerprint.clone())
        .collect();
    assert!(prints[0].is_some(), "no ring fingerprint");
    assert_eq!(prints[0], prints[1], "the balancers built different rings");

    let mut long = LongLived::open(&client, vip, 50);
    for l in &lbs {
        let tx = lab::stats(&l.sock).outcome("tx");
        assert!(tx > 0, "{}: the router sent it no flow", l.ns.name);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let background = traffic::background_connects(&client, vip, stop.clone());

    // Balancer 0 stops: its agent withdraws the route (and its data path still forwards until
    // the router has moved its flows), then its data path goes.
    let gone = lbs.remove(0);
    let mut agent = gone.agent;
    assert!(agent.stop().unwrap().success(), "{}", agent.log_text());
    lab::wait_for(Duration::from_secs(15), "the route withdrawn", || {
        next_hops(&router) == vec![BALANCERS[1].to_string()]
    });
    let (code, _, err) = lab::cli(&["detach", "--config", gone.cfg.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        !gone.ns.sh("ip -j link show dev eth0").contains("\"xdp\""),
        "still attached after detach"
    );

    // Every connection lives on, on its backend, now through balancer 1.
    let before = lab::stats(&lbs[0].sock).flows.inserted;
    let bad = long.exchange();
    assert!(bad.is_empty(), "connections broken: {bad:#?}");
    let after = lab::stats(&lbs[0].sock).flows.inserted;
    assert!(
        after > before,
        "balancer 1 recorded none of balancer 0's flows ({before} -> {after})"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let t = background.join().unwrap();
    assert!(
        t.failed.is_empty(),
        "new connections failed: {:?}",
        t.failed
    );
    assert!(t.ok() > 0, "no new connection tried");

    // Every backend fails the last balancer's health checks: it withdraws too.
    for b in &backends {
        b.sh(&format!(
            "nft add table inet hc && nft add chain inet hc in '{{ type filter hook input priority 0; }}' \
             && nft add rule inet hc in ip saddr {} tcp dport 80 drop",
            BALANCERS[1]
        ));
    }
    lab::wait_for(Duration::from_secs(15), "the last route withdrawn", || {
        next_hops(&router).is_empty()
    });

    // Healthy again: announced again. Then the agent dies without withdrawing (SIGKILL): the
    // route stays, and `lb detach` withdraws it.
    for b in &backends {
        b.sh("nft delete table inet hc");
    }
    lab::wait_for(Duration::from_secs(15), "announced again", || {
        next_hops(&router) == vec![BALANCERS[1].to_string()]
    });
    let last = lbs.remove(0);
    let mut agent = last.agent;
    agent.child.kill().unwrap();
    agent.child.wait().unwrap();
    assert_eq!(
        next_hops(&router),
        vec![BALANCERS[1].to_string()],
        "withdrawn by a killed agent?"
    );
    let (code, _, err) = lab::cli(&["detach", "--config", last.cfg.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    lab::wait_for(Duration::from_secs(15), "withdrawn by lb detach", || {
        next_hops(&router).is_empty()
    });
    let _ = (&router_sock, &gone.tmp, &last.tmp, &last.sock, &last.ns);
}
