//! Topologies: a switch namespace with bridges, hosts plugged into them by veth, and the
//! roles of the load-balancing tests (client, balancer, backends, router).
//!
//! veth facts this relies on (seen on the kernel here):
//! - a veth drops XDP_TX'd or redirected frames unless its peer runs an XDP program, so every
//!   switch port runs `xdp_pass`, as a real switch port would forward;
//! - a host whose packets XDP forwards raw needs tx checksum offload off, or its TCP checksums
//!   arrive unfinished (CHECKSUM_PARTIAL has no meaning once the frame left the skb).
use std::{path::PathBuf, time::Duration};

use lb::dataplane::Dataplane;

use crate::{Netns, Proc, TempDir, lb_bin};

pub const VIP4: &str = "198.19.0.100";
pub const VIP6: &str = "fd00:19::100";

/// The switch: one namespace holding the bridges, its ports running `xdp_pass`.
pub struct Lab {
    /// The xdp_pass attachments of the switch ports (dropped before the namespaces).
    pass: Option<Dataplane>,
    ports: u32,
    pub switch: Netns,
}

// Making one creates namespaces: no `Default`, which would suggest a plain value.
#[allow(clippy::new_without_default)]
impl Lab {
    pub fn new() -> Self {
        crate::require_root();
        let switch = Netns::new("sw");
        let pass =
            crate::test_object::load(crate::test_object::programs::PASS).expect("load xdp_pass");
        Lab {
            pass: Some(pass),
            ports: 0,
            switch,
        }
    }

    pub fn bridge(&self, br: &str) {
        self.switch.sh(&format!(
            "ip link add {br} type bridge && ip link set {br} up"
        ));
    }

    /// Plugs `host`'s interface `ifname` into bridge `br`, with `addrs` (CIDR) on it.
    pub fn plug(&mut self, host: &Netns, ifname: &str, br: &str, addrs: &[&str]) {
        self.ports += 1;
        let port = format!("p{}", self.ports);
        crate::sh(&format!(
            "ip link add {ifname} netns {} type veth peer name {port} netns {}",
            host.name, self.switch.name
        ));
        self.switch.sh(&format!(
            "ip link set {port} master {br} && ip link set {port} up"
        ));
        let mut cmd = format!("ip link set {ifname} up && ethtool -K {ifname} tx off >/dev/null");
        for a in addrs {
            if a.contains(':') {
                cmd += &format!(" && ip addr add {a} dev {ifname} nodad");
            } else {
                cmd += &format!(" && ip addr add {a} dev {ifname}");
            }
        }
        host.sh(&cmd);
        let mut pass = self.pass.take().expect("pass program");
        let pass = self.switch.run(move || {
            pass.attach(&port, lb::config::XdpMode::Native)
                .expect("attach xdp_pass to a switch port");
            pass
        });
        self.pass = Some(pass);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.pass.take();
    }
}

/// Makes `ns` a balancer host: forwarding on (bpf_fib_lookup needs it), and an nftables
/// forward chain that drops everything, so that only XDP can move packets on.
pub fn balancer_host(ns: &Netns) {
    ns.sh(
        "sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.forwarding=1 net.ipv6.conf.all.forwarding=1 \
         && nft add table inet lbtest \
         && nft add chain inet lbtest guard \"{ type filter hook forward priority 0; policy drop; }\" \
         && nft add rule inet lbtest guard counter drop",
    );
}

/// Packets the kernel's forward chain dropped in `ns` (0 when XDP moved everything).
pub fn kernel_forward_drops(ns: &Netns) -> u64 {
    let out = ns.sh("nft -j list chain inet lbtest guard");
    let v: serde_json::Value = serde_json::from_str(&out).expect("nft json");
    v["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o["rule"]["expr"].as_array())
        .flatten()
        .filter_map(|e| e["counter"]["packets"].as_u64())
        .sum()
}

/// Makes `ns` a backend host as README's guide says: the VIPs on lo, reverse-path filtering
/// off, no ARP answers for the VIPs, and `lb decap` on `ifname`.
pub fn backend_host(ns: &Netns, ifname: &str, tmp: &TempDir) -> Proc {
    ns.sh(&format!(
        "ip addr add {VIP4}/32 dev lo && ip addr add {VIP6}/128 dev lo nodad \
         && sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.{ifname}.rp_filter=0 \
            net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2"
    ));
    start_decap(ns, ifname, tmp)
}

/// Starts `lb decap` on `ifname` of `ns` and waits until it is ready.
pub fn start_decap(ns: &Netns, ifname: &str, tmp: &TempDir) -> Proc {
    let lb = lb_bin();
    let mut p = ns.spawn(
        &[lb.to_str().unwrap(), "decap", "--interface", ifname],
        tmp.path(&format!("decap-{}.log", ns.name)),
    );
    p.wait_for("lb: ready", Duration::from_secs(20));
    p
}

/// Backends serving a VIP: `lb decap` and a server that answers with a name, on each.
/// Dropped, it stops the servers, then the decaps.
pub struct Serving {
    _servers: Vec<crate::traffic::Server>,
    _decaps: Vec<Proc>,
}

/// Makes every namespace in `backends` a backend host (see [`backend_host`]) serving `vip`
/// over TCP or UDP; backend `i` answers with `name(i)`.
pub fn serve(
    backends: &[Netns],
    vip: std::net::SocketAddr,
    udp: bool,
    tmp: &TempDir,
    name: impl Fn(usize) -> String,
) -> Serving {
    let _decaps = backends
        .iter()
        .map(|b| backend_host(b, "eth0", tmp))
        .collect();
    let _servers = backends
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if udp {
                crate::traffic::udp_server(b, vip, &name(i))
            } else {
                crate::traffic::tcp_server(b, vip, &name(i))
            }
        })
        .collect();
    Serving { _servers, _decaps }
}

/// Starts `lb run` in `ns` with `config` and waits until it is ready.
pub fn start_agent(ns: &Netns, config: &str, tmp: &TempDir) -> (Proc, PathBuf) {
    start_agent_with(ns, config, tmp, &[])
}

/// [`start_agent`] with more arguments for `lb run`.
pub fn start_agent_with(ns: &Netns, config: &str, tmp: &TempDir, args: &[&str]) -> (Proc, PathBuf) {
    start_agent_under(ns, config, tmp, &[], args)
}

/// [`start_agent_with`], the agent started through `wrapper` (a command that runs the rest of
/// its arguments, such as `prlimit --nofile=1024:1024`).
pub fn start_agent_under(
    ns: &Netns,
    config: &str,
    tmp: &TempDir,
    wrapper: &[&str],
    args: &[&str],
) -> (Proc, PathBuf) {
    let cfg = tmp.path("lb.toml");
    // Pins go to the tests' bpf filesystem, and runtime changes to the test's own folder: a
    // change one test makes (a drain) must not be adopted by the next test's agent.
    let mut config = config.to_string();
    if !config.contains("pin_dir") {
        config = config.replacen(
            "[agent]\n",
            &format!("[agent]\npin_dir = \"{}\"\n", tmp.pin_dir().display()),
            1,
        );
    }
    if !config.contains("state_dir") {
        config = config.replacen(
            "[agent]\n",
            &format!("[agent]\nstate_dir = \"{}\"\n", tmp.path("state").display()),
            1,
        );
    }
    std::fs::write(&cfg, config).expect("write config");
    let lb = lb_bin();
    let mut cmd = wrapper.to_vec();
    cmd.extend([
        lb.to_str().unwrap(),
        "run",
        "--config",
        cfg.to_str().unwrap(),
    ]);
    cmd.extend_from_slice(args);
    let mut p = ns.spawn(&cmd, tmp.path("agent.log"));
    p.wait_for("lb: ready", Duration::from_secs(30));
    (p, cfg)
}

/// A config for the balancer of [`OneArm`]: control socket `socket`, and the VIP "dns" (UDP
/// port 53) over the three IPv4 backends, unchecked. More `[[vip]]` tables may follow.
pub fn dns_config(socket: &std::path::Path) -> String {
    let mut cfg = format!(
        "[agent]\ninterfaces = [\"eth0\"]\nsocket = \"{}\"\nsource_v4 = \"198.18.0.2\"\n\n\
         [[vip]]\nname = \"dns\"\naddress = \"{VIP4}:53\"\nprotocol = \"udp\"\n\n[vip.health]\nkind = \"none\"\n",
        socket.display()
    );
    for b in BACKENDS4 {
        cfg += &format!("\n[[vip.backend]]\naddress = \"{b}\"\n");
    }
    cfg
}

/// `lb stats --json` against the agent's socket, parsed.
pub fn stats(socket: &std::path::Path) -> lb::stats::Stats {
    let out = std::process::Command::new(lb_bin())
        .args(["stats", "--json", "--socket", socket.to_str().unwrap()])
        .output()
        .expect("run lb stats");
    assert!(
        out.status.success(),
        "lb stats: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("lb stats --json parses")
}

/// The classic one-arm topology: client, balancer and three backends on one bridge.
pub struct OneArm {
    pub backends: Vec<Netns>,
    pub lb: Netns,
    pub client: Netns,
    pub lab: Lab,
}

pub const BACKENDS4: [&str; 3] = ["198.18.0.11", "198.18.0.12", "198.18.0.13"];
pub const BACKENDS6: [&str; 3] = ["fd00:18::11", "fd00:18::12", "fd00:18::13"];

#[allow(clippy::new_without_default)]
impl OneArm {
    pub fn new() -> Self {
        Self::with_backends(3)
    }

    /// `n` backends: 198.18.0.11, .12, ... and fd00:18::11, ::12, ...
    pub fn with_backends(n: usize) -> Self {
        let mut lab = Lab::new();
        lab.bridge("br0");
        let client = Netns::new("cl");
        lab.plug(&client, "eth0", "br0", &["198.18.0.1/24", "fd00:18::1/64"]);
        client.sh(&format!(
            "ip route add {VIP4}/32 via 198.18.0.2 && ip -6 route add {VIP6}/128 via fd00:18::2"
        ));
        let lb = Netns::new("lb");
        lab.plug(&lb, "eth0", "br0", &["198.18.0.2/24", "fd00:18::2/64"]);
        balancer_host(&lb);
        let mut backends = Vec::new();
        for i in 0..n {
            let b = Netns::new(&format!("be{i}"));
            let (a4, a6) = (backend4(i), format!("fd00:18::{}", 11 + i));
            lab.plug(
                &b,
                "eth0",
                "br0",
                &[&format!("{a4}/24"), &format!("{a6}/64")],
            );
            backends.push(b);
        }
        OneArm {
            backends,
            lb,
            client,
            lab,
        }
    }
}

/// The IPv4 address of backend `i` in [`OneArm`].
pub fn backend4(i: usize) -> String {
    format!("198.18.0.{}", 11 + i)
}

/// Runs the `lb` CLI: exit code, stdout, stderr.
pub fn cli(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(lb_bin())
        .args(args)
        .output()
        .expect("run lb");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs the `lb` CLI against `socket` and panics unless it succeeds.
pub fn cli_ok(socket: &std::path::Path, args: &[&str]) -> String {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--socket", socket.to_str().unwrap()]);
    let (code, out, err) = cli(&all);
    assert_eq!(code, 0, "lb {args:?}: {err}");
    out
}

/// `lb status --json`, parsed.
pub fn status(socket: &std::path::Path) -> lb::status::Status {
    serde_json::from_str(&cli_ok(socket, &["status", "--json"])).expect("lb status --json parses")
}

/// Polls `cond` every 50 ms until it holds or `within` passes; returns how long it took.
pub fn wait_for(within: Duration, what: &str, mut cond: impl FnMut() -> bool) -> Duration {
    let start = std::time::Instant::now();
    loop {
        if cond() {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "not within {within:?}: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
