//! Backends from etcd: two agents watch the same prefix; a backend put there joins both rings
//! (the same fingerprint) within a second and takes traffic; deleted, it leaves; etcd stopped,
//! traffic goes on and discovery says it is stale; etcd back, the agents catch up.
use std::{net::SocketAddr, path::PathBuf, time::Duration};

use lb_tests::{
    Netns, Proc, TempDir,
    lab::{self, BACKENDS4, OneArm, VIP4},
    traffic,
};

const ETCD: &str = "198.18.0.50";

fn etcd_url() -> String {
    format!("http://{ETCD}:2379")
}

/// Debian's etcd in `ns`, its data in `dir` (kept across a restart).
fn start_etcd(ns: &Netns, tmp: &TempDir, dir: &std::path::Path) -> Proc {
    let url = etcd_url();
    let mut p = ns.spawn(
        &[
            "etcd",
            "--name",
            "lbtest",
            "--data-dir",
            dir.to_str().unwrap(),
            "--listen-client-urls",
            &url,
            "--advertise-client-urls",
            &url,
            "--listen-peer-urls",
            "http://127.0.0.1:2380",
            "--initial-advertise-peer-urls",
            "http://127.0.0.1:2380",
            "--initial-cluster",
            "lbtest=http://127.0.0.1:2380",
        ],
        tmp.path("etcd.log"),
    );
    let end = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let ok = std::process::Command::new("ip")
            .args(["netns", "exec", &ns.name, "etcdctl", "--endpoints", &url])
            .args(["--command-timeout=1s", "endpoint", "health"])
            .env("ETCDCTL_API", "3")
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return p;
        }
        if let Ok(Some(st)) = p.child.try_wait() {
            panic!("etcd exited ({st}):\n{}", p.log_text());
        }
        assert!(
            std::time::Instant::now() < end,
            "etcd not healthy:\n{}",
            p.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn etcdctl(ns: &Netns, args: &str) {
    ns.sh(&format!(
        "ETCDCTL_API=3 etcdctl --endpoints {} {args}",
        etcd_url()
    ));
}

/// Each agent's backends of VIP "web", and its ring fingerprint.
fn web(sock: &std::path::Path) -> (Vec<String>, Option<String>) {
    let s = lab::status(sock);
    let v = s.vips.iter().find(|v| v.name == "web").expect("VIP web");
    // The agent's print (from backend ids) is that of the ring its backends make (by address).
    let eligible: Vec<(std::net::IpAddr, u32)> = v
        .backends
        .iter()
        .map(|b| {
            let w = if b.in_ring { b.weight } else { 0 };
            (b.address.parse().unwrap(), w)
        })
        .collect();
    let addrs: Vec<std::net::IpAddr> = eligible.iter().map(|e| e.0).collect();
    let want = lb::maglev::fingerprint(&lb::maglev::build(&eligible, v.ring_size), &addrs);
    assert_eq!(v.ring_fingerprint.as_deref(), Some(want.as_str()), "{v:?}");
    let mut b: Vec<String> = v.backends.iter().map(|b| b.address.clone()).collect();
    b.sort();
    (b, v.ring_fingerprint.clone())
}

#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn backends_from_etcd_reach_every_agent_and_survive_etcd_going() {
    let mut topo = OneArm::new();
    let etcd_ns = Netns::new("etcd");
    topo.lab
        .plug(&etcd_ns, "eth0", "br0", &[&format!("{ETCD}/24")]);
    let lb2 = Netns::new("lb2");
    topo.lab.plug(&lb2, "eth0", "br0", &["198.18.0.3/24"]);
    lab::balancer_host(&lb2);
    let tmp = TempDir::new("etcd");
    let data = tmp.path("etcd-data");
    let mut etcd = start_etcd(&etcd_ns, &tmp, &data);

    let vip: SocketAddr = format!("{VIP4}:80").parse().unwrap();
    let _serving = lab::serve(&topo.backends, vip, false, &tmp, |i| format!("be{i}"));
    // The file names two backends; the third comes from etcd.
    let agents: Vec<(Proc, PathBuf, TempDir)> = [(&topo.lb, "198.18.0.2"), (&lb2, "198.18.0.3")]
        .into_iter()
        .enumerate()
        .map(|(i, (ns, me))| {
            let t = TempDir::new(&format!("etcd-lb{i}"));
            let sock = t.path("lb.sock");
            let mut cfg = format!(
                "[agent]\ninterfaces = [\"eth0\"]\nsocket = \"{}\"\nsource_v4 = \"{me}\"\n\n\
                 [discovery.etcd]\nendpoints = [\"{}\"]\nprefix = \"/lb/\"\n\n\
                 [[vip]]\nname = \"web\"\naddress = \"{VIP4}:80\"\nprotocol = \"tcp\"\n\n[vip.health]\nkind = \"none\"\n",
                sock.display(),
                etcd_url()
            );
            for b in &BACKENDS4[..2] {
                cfg += &format!("\n[[vip.backend]]\naddress = \"{b}\"\n");
            }
            let (agent, _) = lab::start_agent(ns, &cfg, &t);
            (agent, sock, t)
        })
        .collect();
    let socks: Vec<PathBuf> = agents.iter().map(|a| a.1.clone()).collect();
    lab::wait_for(Duration::from_secs(10), "discovery current", || {
        socks.iter().all(|s| {
            lab::status(s)
                .discovery
                .is_some_and(|d| d.state == "current")
        })
    });
    let two: Vec<String> = BACKENDS4[..2].iter().map(|s| s.to_string()).collect();
    let three: Vec<String> = BACKENDS4.iter().map(|s| s.to_string()).collect();
    for s in &socks {
        assert_eq!(web(s).0, two);
    }

    // Added in etcd: on both agents within a second, the same ring, and in the traffic.
    etcdctl(
        &etcd_ns,
        &format!("put /lb/backends/web/{} ''", BACKENDS4[2]),
    );
    let took = lab::wait_for(Duration::from_secs(5), "the etcd backend on both", || {
        socks.iter().all(|s| web(s).0 == three)
    });
    assert!(took <= Duration::from_secs(1), "took {took:?}");
    let (p0, p1) = (web(&socks[0]).1, web(&socks[1]).1);
    assert!(p0.is_some() && p0 == p1, "rings differ: {p0:?} {p1:?}");
    let t = traffic::tcp_connects(&topo.client, vip, 90);
    assert_eq!(t.ok(), 90, "{t:?}");
    assert!(t.by_server.get("be2").is_some_and(|n| *n > 0), "{t:?}");

    // A VIP from etcd too, with its own backend.
    etcdctl(
        &etcd_ns,
        &format!(
            "put /lb/vips/dns '{{\"address\": \"{VIP4}:53\", \"protocol\": \"udp\", \"health\": \"none\", \"backends\": [{{\"address\": \"{}\"}}]}}'",
            BACKENDS4[0]
        ),
    );
    lab::wait_for(Duration::from_secs(5), "the etcd VIP on both", || {
        socks.iter().all(|s| {
            lab::status(s)
                .vips
                .iter()
                .any(|v| v.name == "dns" && v.live == 1)
        })
    });

    // Deleted: gone from both, and from the traffic.
    etcdctl(&etcd_ns, &format!("del /lb/backends/web/{}", BACKENDS4[2]));
    let took = lab::wait_for(Duration::from_secs(5), "the backend gone from both", || {
        socks.iter().all(|s| web(s).0 == two)
    });
    assert!(took <= Duration::from_secs(1), "took {took:?}");
    let t = traffic::tcp_connects(&topo.client, vip, 60);
    assert_eq!(t.ok(), 60, "{t:?}");
    assert!(!t.by_server.contains_key("be2"), "{t:?}");

    // etcd stops: the agents keep the last state, say so, and traffic goes on.
    assert!(etcd.stop().is_some());
    lab::wait_for(Duration::from_secs(15), "discovery stale on both", || {
        socks.iter().all(|s| {
            lab::status(s)
                .discovery
                .is_some_and(|d| d.state == "stale" && d.error.is_some())
        })
    });
    for s in &socks {
        assert_eq!(web(s).0, two);
        assert!(lab::status(s).vips.iter().any(|v| v.name == "dns"));
    }
    let out = lab::cli_ok(&socks[0], &["status"]);
    assert!(out.contains("DISCOVERY STALE"), "{out}");
    let t = traffic::tcp_connects(&topo.client, vip, 30);
    assert_eq!(t.ok(), 30, "{t:?}");

    // etcd back, changed meanwhile: the agents catch up.
    let _etcd = start_etcd(&etcd_ns, &tmp, &data);
    etcdctl(
        &etcd_ns,
        &format!("put /lb/backends/web/{} ''", BACKENDS4[2]),
    );
    lab::wait_for(Duration::from_secs(15), "both caught up", || {
        socks.iter().all(|s| {
            let st = lab::status(s);
            st.discovery.is_some_and(|d| d.state == "current") && web(s).0 == three
        })
    });
    drop(agents);
}

/// A backend named by hostname follows its DNS record: a resolver in a namespace (dnsmasq)
/// answers with a 2-second TTL; when the record changes, the traffic moves after the TTL.
#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn a_hostname_backend_follows_its_dns_record() {
    const DNS: &str = "198.18.0.60";
    let mut topo = OneArm::new();
    let dns_ns = Netns::new("dns");
    topo.lab
        .plug(&dns_ns, "eth0", "br0", &[&format!("{DNS}/24")]);
    let tmp = TempDir::new("dns");
    let hosts = tmp.path("hosts");
    std::fs::write(&hosts, format!("{} app.lb.test\n", BACKENDS4[2])).unwrap();
    let mut dnsmasq = dns_ns.spawn(
        &[
            "dnsmasq",
            "--keep-in-foreground",
            "--log-facility=-",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            &format!("--listen-address={DNS}"),
            &format!("--addn-hosts={}", hosts.display()),
            "--local-ttl=2",
            "--pid-file=",
            "--user=root",
        ],
        tmp.path("dnsmasq.log"),
    );

    let vip: SocketAddr = format!("{VIP4}:80").parse().unwrap();
    let _serving = lab::serve(&topo.backends, vip, false, &tmp, |i| format!("be{i}"));
    let sock = tmp.path("lb.sock");
    let cfg = format!(
        "[agent]\ninterfaces = [\"eth0\"]\nsocket = \"{}\"\nsource_v4 = \"198.18.0.2\"\n\n\
         [discovery.dns]\nservers = [\"{DNS}\"]\n\n\
         [[vip]]\nname = \"web\"\naddress = \"{VIP4}:80\"\nprotocol = \"tcp\"\n\n[vip.health]\nkind = \"none\"\n\n\
         [[vip.backend]]\naddress = \"{}\"\n\n[[vip.backend]]\nhost = \"app.lb.test\"\n",
        sock.display(),
        BACKENDS4[0]
    );
    let (_agent, _) = lab::start_agent(&topo.lb, &cfg, &tmp);
    let with = |b: &str| vec![BACKENDS4[0].to_string(), b.to_string()];
    lab::wait_for(Duration::from_secs(10), "the hostname resolved", || {
        web(&sock).0 == with(BACKENDS4[2])
    });
    let t = traffic::tcp_connects(&topo.client, vip, 90);
    assert_eq!(t.ok(), 90, "{t:?}");
    assert!(t.by_server.get("be2").is_some_and(|n| *n > 0), "{t:?}");
    assert!(!t.by_server.contains_key("be1"), "{t:?}");
    let st = lab::status(&sock).dns.expect("dns status");
    assert_eq!(st.hosts["app.lb.test"], vec![BACKENDS4[2].to_string()]);

    // The record changes; dnsmasq re-reads it on SIGHUP. After the TTL the agent asks again.
    std::fs::write(&hosts, format!("{} app.lb.test\n", BACKENDS4[1])).unwrap();
    unsafe { libc::kill(dnsmasq.child.id() as i32, libc::SIGHUP) };
    let took = lab::wait_for(Duration::from_secs(10), "the new address", || {
        web(&sock).0 == with(BACKENDS4[1])
    });
    assert!(
        took <= Duration::from_secs(2 + 2),
        "took {took:?} with a 2 s TTL"
    );
    let t = traffic::tcp_connects(&topo.client, vip, 90);
    assert_eq!(t.ok(), 90, "{t:?}");
    assert!(t.by_server.get("be1").is_some_and(|n| *n > 0), "{t:?}");
    assert!(!t.by_server.contains_key("be2"), "{t:?}");
    assert!(dnsmasq.child.try_wait().unwrap().is_none(), "dnsmasq died");
}
