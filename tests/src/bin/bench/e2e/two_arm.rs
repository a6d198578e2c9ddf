//! The two-arm topology: the generator on one side of the balancer, the sink on the other.
use lb::dataplane::nix_ifindex;
use lb_tests::{
    Netns, TempDir,
    test_object::{Fabric, programs},
};

use super::{
    Rates, attached, burst, generator,
    modes::{Agent, Up, detach, interleaved},
    net::{Net, NftDnat, V4, agent_config},
    pin_napi, row, sizes, veth,
};

/// Two-arm: the generator on one side of the balancer, the sink (standing for the backends) on
/// the other, so every frame leaves by another interface (devmap redirect). Rows: the bare
/// redirect ceiling, nftables DNAT and lb.
pub fn measure_two_arm(quick: bool) -> String {
    // The backends' side, behind l1; the generator's sources are 198.18.2.x.
    const BACKENDS: Net = Net {
        subnet: "198.18.1.",
        sources: [198, 18, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        ..V4
    };
    let (n, runs) = sizes(quick);
    let gen_ns = Netns::new("gen2");
    let lb_ns = Netns::new("lb2");
    let sink_ns = Netns::new("sink2");
    veth(&gen_ns, "g0", &lb_ns, "l0");
    veth(&lb_ns, "l1", &sink_ns, "s0");
    gen_ns.sh("ip link set g0 address 02:00:00:00:00:01 && ip link set g0 up && ip addr add 198.18.0.1/24 dev g0");
    sink_ns.sh("ip link set s0 address 02:00:00:00:01:03 && ip link set s0 up && ip addr add 198.18.1.3/24 dev s0");
    lb_ns.sh(&format!(
        "ip link set l0 address 02:00:00:00:00:02 && ip link set l0 up && ip addr add 198.18.0.2/24 dev l0 \
         && sysctl -qw net.ipv4.conf.l0.rp_filter=0 && ip link set l1 up && {}",
        BACKENDS.balancer_setup("l1", "02:00:00:00:01:03")
    ));
    let sink = attached(&sink_ns, programs::SINK, "s0", |_| {});
    let mut generator = generator(&BACKENDS);
    let tmp = TempDir::new("bench-e2e2");
    let cfg = agent_config(&tmp, &["l0", "l1"], &BACKENDS, None);
    let program = |name: &'static str| -> Up {
        let dp = attached(&lb_ns, name, "l0", |dp| {
            if name == programs::REDIRECT_ALL {
                dp.set_redirect_to(nix_ifindex("l1").expect("l1"))
                    .expect("redirect target")
            }
        });
        pin_napi(&lb_ns, "l0", 1);
        Box::new(dp)
    };
    let r = interleaved(
        runs,
        &mut [
            ("redirect ceiling", &mut || program(programs::REDIRECT_ALL)),
            // nftables DNAT to the three backends behind l1; the kernel routes out of l1.
            ("nftables DNAT two-arm", &mut || {
                Box::new((program(programs::PASS), NftDnat::add(&lb_ns, &BACKENDS)))
            }),
            ("lb two-arm", &mut || {
                let agent = Agent::start(&lb_ns, &cfg, &tmp, &["l0", "l1"], "redirect");
                pin_napi(&lb_ns, "l0", 1);
                Box::new(agent)
            }),
        ],
        |_| burst(&gen_ns, &mut generator, &sink, n, &BACKENDS),
        None,
    );
    detach(&tmp);
    let [ceiling, nft, lb_rate] = <[Rates; 3]>::try_from(r).ok().expect("three modes");

    let row = |name: &str, r: &Rates| row(name, r, &ceiling, &nft);
    let mut out = "Two-arm: the same bursts, the generator on one side of the balancer and the sink on the other, so every frame leaves by the other interface (redirected by XDP, or routed by the kernel after nftables' DNAT).\n\n\
         | mode | Mpps | × redirect ceiling | × nftables |\n|---|---|---|---|\n"
        .to_string();
    out += &row("bare devmap redirect (ceiling)", &ceiling);
    out += &row("nftables DNAT, jhash over 3 backends", &nft);
    out += &row("lb (xdp_lb, redirect)", &lb_rate);
    out
}
