//! End-to-end packet rate over veth: a generator namespace sends bounded bursts of 64-byte UDP
//! flows (BPF_PROG_RUN with live frames, XDP_TX out of its veth) to the balancer's veth;
//! whatever the balancer sends back is counted and dropped by `xdp_sink` on the generator's
//! veth. The same topology measures the bare XDP_TX ceiling, nftables DNAT load balancing
//! (jhash over three backends) and lb, over IPv4 and over IPv6.
use std::time::{Duration, Instant};

use lb::dataplane::{Dataplane, Options};
use lb_common::{GEN_FRAME_V4, GEN_FRAME_V6, GenConfig};
use lb_tests::{
    Netns, TempDir,
    test_object::{self, Fabric, programs},
};

pub mod ab;
pub mod flood;
pub mod many;
mod modes;
mod net;
mod report;
mod two_arm;

use modes::{Agent, Up, agent_swapped, detach, interleaved};

use net::{Net, NftDnat, V4, V6, agent_config};
use report::{e2e_bounds, fixed_note, one_arm_table, row};
pub use two_arm::measure_two_arm;

const GEN_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const LB_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

pub(super) struct Rates {
    min: f64,
    median: f64,
    max: f64,
    /// Each round's rate, in round order (for ratios taken round by round).
    rounds: Vec<f64>,
    /// The balancer program's own mean run time per packet (ns), from the kernel's stats.
    prog_ns: Option<f64>,
}

/// The median over rounds of `r`'s rate over `base`'s in the same round.
fn ratio(r: &Rates, base: &Rates) -> f64 {
    let mut v: Vec<f64> = r
        .rounds
        .iter()
        .zip(&base.rounds)
        .map(|(a, b)| a / b)
        .collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Moves the threaded NAPI poller of `dev` in `ns` onto `cpu`: the balancer's packet work gets
/// a core of its own, apart from the generator's.
pub(super) fn pin_napi(ns: &Netns, dev: &str, cpu: usize) {
    // A veth has NAPI only while an XDP program is attached: call this after each attach.
    ns.sh(&format!(
        "echo 1 > /sys/class/net/{dev}/threaded 2>/dev/null || true"
    ));
    let pids = lb_tests::sh(&format!("pgrep -f 'napi/{dev}-' || true"));
    for pid in pids.split_whitespace() {
        let _ = std::process::Command::new("taskset")
            .args(["-pc", &cpu.to_string(), pid])
            .output();
    }
}

fn pin_self(cpu: usize) {
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Sends `n` frames of `len` bytes from the generator (on `g0` in `gen_ns`, pinned to the
/// first core): how long the sending took.
pub(super) fn send(gen_ns: &Netns, generator: &mut Dataplane, n: u32, len: usize) -> Duration {
    gen_ns.run(|| {
        pin_self(0);
        let t = Instant::now();
        lb_tests::flood::live_frames(generator, "g0", n, len);
        t.elapsed()
    })
}

/// Reads `count` until it stops moving (at most 2 s): what it settled at.
pub(super) fn settled(mut count: impl FnMut() -> u64) -> u64 {
    let mut last = count();
    let end = Instant::now() + Duration::from_secs(2);
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
        let now = count();
        if now == last {
            break;
        }
        last = now;
    }
    last
}

/// One burst of `n` packets: the rate at which they came back to the sink, in Mpps.
pub(super) fn burst(
    gen_ns: &Netns,
    generator: &mut Dataplane,
    sink: &Dataplane,
    n: u32,
    net: &Net,
) -> f64 {
    let before = sink.sink_count().expect("sink");
    let len = if net.v6() { GEN_FRAME_V6 } else { GEN_FRAME_V4 };
    let elapsed = send(gen_ns, generator, n, len);
    // Let the last frames drain through the balancer's queue.
    let last = settled(|| sink.sink_count().expect("sink"));
    (last - before) as f64 / elapsed.as_secs_f64() / 1e6
}

/// Packets per burst and bursts per mode.
pub(super) fn sizes(quick: bool) -> (u32, usize) {
    if quick { (100_000, 1) } else { (1_000_000, 7) }
}

/// A veth pair between two namespaces.
pub(super) fn veth(a_ns: &Netns, a: &str, b_ns: &Netns, b: &str) {
    lb_tests::sh(&format!(
        "ip link add {a} netns {} type veth peer name {b} netns {}",
        a_ns.name, b_ns.name
    ));
}

/// The kernel's own account of the XDP program on `ns`'s `dev` (kernel.bpf_stats_enabled):
/// total run time in ns and runs.
pub(super) fn prog_stats(ns: &Netns, dev: &str) -> Option<(u64, u64)> {
    let v: serde_json::Value =
        serde_json::from_str(&ns.sh(&format!("ip -j link show dev {dev}"))).ok()?;
    let id = v[0]["xdp"]["prog"]["id"].as_u64()?;
    let out = lb_tests::sh(&format!("bpftool -j prog show id {id}"));
    let p: serde_json::Value = serde_json::from_str(&out).ok()?;
    Some((
        p["run_time_ns"].as_u64().unwrap_or(0),
        p["run_cnt"].as_u64().unwrap_or(0),
    ))
}

/// Loads `program` and attaches it natively to `dev` in `ns` (after `setup`, run there too);
/// the attachment lasts as long as the returned value.
pub(super) fn attached(
    ns: &Netns,
    program: &'static str,
    dev: &str,
    setup: impl FnOnce(&mut Dataplane) + Send,
) -> Dataplane {
    let mut dp = test_object::load(program).unwrap_or_else(|e| panic!("load {program}: {e}"));
    ns.run(move || {
        setup(&mut dp);
        dp.attach(dev, lb::config::XdpMode::Native)
            .unwrap_or_else(|e| panic!("attach {program} to {dev}: {e}"));
        dp
    })
}

/// The generator, sending from `net`'s sources to the VIP's port 53.
pub(super) fn generator(net: &Net) -> Dataplane {
    let mut g = test_object::load(programs::GEN).expect("load xdp_gen");
    g.set_gen_config(gen_config(net, lb_common::GEN_CYCLE))
        .expect("generator config");
    g
}

/// The generator's frames to `net`'s VIP, in `mode`.
pub(super) fn gen_config(net: &Net, mode: u8) -> GenConfig {
    let vip: std::net::IpAddr = net.vip.parse().expect("VIP");
    let dst_ip = match vip {
        std::net::IpAddr::V4(a) => {
            let mut b = [0; 16];
            b[..4].copy_from_slice(&a.octets());
            b
        }
        std::net::IpAddr::V6(a) => a.octets(),
    };
    GenConfig {
        dst_mac: LB_MAC,
        src_mac: GEN_MAC,
        src_ip: net.sources,
        dst_ip,
        dst_port: 53u16.to_be_bytes(),
        family: net.family,
        mode,
    }
}

pub(super) fn rates(rounds: Vec<f64>) -> Rates {
    let mut v = rounds.clone();
    v.sort_by(|a, b| a.total_cmp(b));
    Rates {
        min: v[0],
        median: v[v.len() / 2],
        max: v[v.len() - 1],
        rounds,
        prog_ns: None,
    }
}

/// The modes of the one-arm topology, each as [`Rates`].
struct OneArm {
    ceiling: Rates,
    touch: Rates,
    /// The ceiling after an encapsulation with fixed headers (`xdp_encap_tx`).
    encap: Rates,
    nft: Rates,
    lb: Rates,
    /// lb with its flow-table lookup replaced by one array entry.
    fixed: Rates,
    /// lb with a flow table of [`SMALL_TABLE`] slots.
    small: Rates,
    /// lb with the VIP's `forwarding = "gue"`, and `"l2dsr"`.
    gue: Rates,
    l2dsr: Rates,
}

/// The flow-table size of the mode that shows what the default table's size costs: 16384
/// slots of 64 bytes (1 MB, 256 pages) hold the 4096 flows as well as the default's 1M slots
/// (64 MB, 16384 pages) do, in as many cache lines.
const SMALL_TABLE: u32 = 16384;

/// The end-to-end targets, as the summary names them.
const TARGET_CEILING: &str = "end to end, IPv4: lb against the bare XDP_TX ceiling";
const TARGET_NFT: &str = "end to end, IPv4: lb against nftables DNAT";

/// The one-arm topology's hosts, before any mode: the generator's namespace with its sink and
/// generator, the balancer's namespace, and an agent configuration for it.
pub(super) struct OneArmLab {
    pub(super) gen_ns: Netns,
    pub(super) lb_ns: Netns,
    pub(super) sink: Dataplane,
    pub(super) generator: Dataplane,
    pub(super) tmp: TempDir,
    pub(super) cfg: String,
}

impl OneArmLab {
    pub(super) fn new(net: &Net) -> Self {
        let gen_ns = Netns::new("gen");
        let lb_ns = Netns::new("lbe");
        veth(&gen_ns, "g0", &lb_ns, "l0");
        gen_ns.sh(&format!(
            "ip link set g0 address 02:00:00:00:00:01 && ip link set g0 up && {} addr add {}/{} dev g0{}",
            net.ip(),
            net.host(1),
            net.prefix,
            if net.v6() { " nodad" } else { "" }
        ));
        lb_ns.sh(&format!(
            "ip link set l0 address 02:00:00:00:00:02 && ip link set l0 up && {}",
            net.balancer_setup("l0", "02:00:00:00:00:01")
        ));
        let sink = attached(&gen_ns, programs::SINK, "g0", |_| {});
        let generator = generator(net);
        let tmp = TempDir::new("bench-e2e");
        let cfg = agent_config(&tmp, &["l0"], net, None);
        OneArmLab {
            gen_ns,
            lb_ns,
            sink,
            generator,
            tmp,
            cfg,
        }
    }
}

/// The one-arm topology over `net`'s family: the generator and the balancer on one veth pair,
/// the backends' frames sent back to the generator's sink.
fn one_arm(quick: bool, net: &Net) -> OneArm {
    let (n, runs) = sizes(quick);
    let OneArmLab {
        gen_ns,
        lb_ns,
        sink,
        mut generator,
        tmp,
        cfg,
    } = OneArmLab::new(net);
    // The same agent with a small flow table: its own state and pins (a pinned table's size
    // wins over the config's).
    let tmp_small = TempDir::new("bench-e2e-small");
    let cfg_small = agent_config(&tmp_small, &["l0"], net, Some(SMALL_TABLE));
    // The same agent in the other forwarding modes, each with its own state and pins.
    let mode = |name: &str| {
        let tmp = TempDir::new(&format!("bench-e2e-{name}"));
        let cfg = agent_config(&tmp, &["l0"], net, None).replacen(
            "protocol = \"udp\"\n",
            &format!("protocol = \"udp\"\nforwarding = \"{name}\"\n"),
            1,
        );
        (tmp, cfg)
    };
    let ((tmp_gue, cfg_gue), (tmp_l2, cfg_l2)) = (mode("gue"), mode("l2dsr"));
    // A program on the balancer's veth, its NAPI poller given the other core.
    let program = |name: &'static str| -> Up {
        let dp = attached(&lb_ns, name, "l0", |_| {});
        pin_napi(&lb_ns, "l0", 1);
        Box::new(dp)
    };
    let r = interleaved(
        runs,
        &mut [
            // The bare ceiling: the balancer's veth bounces every frame.
            ("XDP_TX ceiling", &mut || program(programs::TX)),
            ("XDP_TX after a read", &mut || program(programs::TOUCH_TX)),
            ("XDP_TX after an encapsulation", &mut || {
                program(programs::ENCAP_TX)
            }),
            // nftables DNAT, jhash over the backends (xdp_pass on the veth: see the report).
            ("nftables DNAT", &mut || {
                Box::new((program(programs::PASS), NftDnat::add(&lb_ns, net)))
            }),
            // lb: the agent, configured as an operator would.
            ("lb", &mut || {
                let agent = Agent::start(&lb_ns, &cfg, &tmp, &["l0"], "tx");
                pin_napi(&lb_ns, "l0", 1);
                Box::new(agent)
            }),
            // The same, with the flow-table lookup replaced by one array entry (benchmarks
            // only), swapped onto the agent's link as `lb capture` swaps its program in.
            ("lb, one flow entry", &mut || {
                Box::new(agent_swapped(
                    &lb_ns,
                    &cfg,
                    &tmp,
                    test_object::OBJECT,
                    programs::LB_FIXED_FLOW,
                    Options::default(),
                ))
            }),
            ("lb, small flow table", &mut || {
                let agent = Agent::start(&lb_ns, &cfg_small, &tmp_small, &["l0"], "tx");
                pin_napi(&lb_ns, "l0", 1);
                Box::new(agent)
            }),
            ("lb, gue", &mut || {
                let agent = Agent::start(&lb_ns, &cfg_gue, &tmp_gue, &["l0"], "tx");
                pin_napi(&lb_ns, "l0", 1);
                Box::new(agent)
            }),
            ("lb, l2dsr", &mut || {
                let agent = Agent::start(&lb_ns, &cfg_l2, &tmp_l2, &["l0"], "tx");
                pin_napi(&lb_ns, "l0", 1);
                Box::new(agent)
            }),
        ],
        |_| burst(&gen_ns, &mut generator, &sink, n, net),
        Some(&mut || prog_stats(&lb_ns, "l0")),
    );
    detach(&tmp);
    detach(&tmp_small);
    detach(&tmp_gue);
    detach(&tmp_l2);
    let [ceiling, touch, encap, nft, lb, fixed, small, gue, l2dsr] =
        <[Rates; 9]>::try_from(r).ok().expect("nine modes");
    OneArm {
        ceiling,
        touch,
        encap,
        nft,
        lb,
        fixed,
        small,
        gue,
        l2dsr,
    }
}

pub fn measure(quick: bool) -> String {
    let (n, runs) = sizes(quick);
    let m = one_arm(quick, &V4);
    let mut out = format!(
        "Bounded bursts of {n} 64-byte UDP packets over 4096 flows (256 sources × 16 ports, cycled), {runs} round(s) of one burst per mode; Mpps that came back to the generator's sink (min / median / max). The balancer's NAPI runs threaded on CPU 1, the generator on CPU 0. The nftables case runs `xdp_pass` on the balancer's veth (a veth drops frames sent to it by XDP unless it runs a program), which costs it a little.\n\n\
         The last column is the balancer's XDP program's own mean run time per packet, as the kernel counts it (`kernel.bpf_stats_enabled`, on for one extra burst in each of the last three rounds; the median). The second row is the ceiling's program plus one read of the frame's IP header (`xdp_touch_tx`): the first touch of a frame the generator wrote on the other core, which every program that looks at packets pays and the bare ceiling does not; it is there to show how much of the distance to the ceiling that alone accounts for (its program time is the steadier figure: the rates of modes measured one after another move with the machine's noise, by as much as the read costs), and the targets stay against the bare ceiling. The third row goes one step further (`xdp_encap_tx`): it reads the IP header, grows the head by an outer header and writes Ethernet and an outer IP header with fixed addresses, then sends, with no lookup of any kind: the least any balancer that encapsulates pays, and the floor under lb's rows.\n\n"
    );
    out += &one_arm_table(&m, "lb (xdp_lb: flow table, Maglev, IPIP, XDP_TX)");
    let (a, b) = (ratio(&m.lb, &m.ceiling), ratio(&m.lb, &m.nft));
    out += &format!(
        "\nTargets: ≥ 0.8× the ceiling {}, ≥ 6× nftables {}. The modes are interleaved: each round runs one burst of every mode in turn (its program attached, or the agent started on the maps it pinned in the round before, then taken down again), and a ratio is the median over rounds of that round's ratio, so drift from round to round moves every mode alike. Drift within a round still lands in them: over runs on this machine (other guests share the host) lb has measured 0.4–0.86× the ceiling and 3.1–6.1× nftables, so read one run's tick or cross with that in mind.\n",
        crate::summary::check(TARGET_CEILING, "≥ 0.8×", format!("{a:.2}×"), a >= 0.8),
        crate::summary::check(TARGET_NFT, "≥ 6×", format!("{b:.2}×"), b >= 6.0)
    );
    out += &fixed_note(&m);
    out += &report::modes_note(&m);
    e2e_bounds(&m);
    out
}

/// The one-arm topology over IPv6: the same bursts of the smallest UDP/IPv6 frames (62 bytes)
/// to an IPv6 VIP; lb encapsulates IPv6 in IPv6.
pub fn measure_v6(quick: bool) -> String {
    let m = one_arm(quick, &V6);
    let mut out = format!(
        "IPv6: the same bursts and topology with the smallest UDP/IPv6 frames ({GEN_FRAME_V6} bytes, 66 on the wire), from fd00:17::/64 to the VIP [{}]:53; nftables DNATs in the ip6 family; lb encapsulates IPv6 in IPv6 (40 bytes more per frame). The targets are set for IPv4.\n\n",
        V6.vip
    );
    out += &one_arm_table(&m, "lb (xdp_lb: flow table, Maglev, IPv6-in-IPv6, XDP_TX)");
    out += &fixed_note(&m);
    out += &report::modes_note(&m);
    out
}
