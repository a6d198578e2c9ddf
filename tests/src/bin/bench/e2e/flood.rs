//! The flood the balancer absorbs: TCP SYNs from random sources (a new 5-tuple every frame,
//! 32,768 sources) at a VIP that admits one new flow a second per source, so that nearly every
//! SYN is dropped (`drop_limit`). Side by side in the same rounds, nftables doing the same: an
//! ingress-hook chain on the same interface with a per-source `limit` meter. Each side's rate
//! is what it took in, counted on its own side (the program's outcomes; the chain's first
//! rule's counter), over the time the generator took to send the burst.
use lb_common::{GEN_FRAME_V4, GEN_SYN_FLOOD, GenConfig};
use lb_tests::{Netns, lab, test_object::Fabric};

use super::{
    GEN_MAC, LB_MAC, OneArmLab, V4, attached, modes::Agent, pin_napi, send, settled, sizes,
};
use crate::per_packet::spread;

/// A per-source limit as nftables writes it, on `l0`'s ingress hook.
struct NftLimit {
    ns: String,
}

impl NftLimit {
    fn add(ns: &Netns) -> Self {
        ns.sh(
            "nft add table netdev lbflood \
             && nft add chain netdev lbflood in \"{ type filter hook ingress device l0 priority 0; }\" \
             && nft add rule netdev lbflood in counter \
             && nft add rule netdev lbflood in ip daddr 198.19.0.100 tcp flags syn \
                meter persource size 65536 \"{ ip saddr limit rate over 1/second burst 1 packets }\" counter drop",
        );
        NftLimit {
            ns: ns.name.clone(),
        }
    }

    /// Packets the chain took in (its first rule's counter) and dropped (the meter's).
    fn counts(&self) -> (u64, u64) {
        let out = lb_tests::sh(&format!(
            "ip netns exec {} nft -j list chain netdev lbflood in",
            self.ns
        ));
        let v: serde_json::Value = serde_json::from_str(&out).expect("nft json");
        let counters: Vec<u64> = v["nftables"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|o| o["rule"]["expr"].as_array())
            .map(|e| {
                e.iter()
                    .filter_map(|x| x["counter"]["packets"].as_u64())
                    .sum()
            })
            .collect();
        (
            counters.first().copied().unwrap_or(0),
            counters.get(1).copied().unwrap_or(0),
        )
    }
}

impl Drop for NftLimit {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args([
                "netns", "exec", &self.ns, "nft", "delete", "table", "netdev", "lbflood",
            ])
            .status();
    }
}

pub fn measure(quick: bool) -> String {
    let (n, runs) = sizes(quick);
    let mut lab = OneArmLab::new(&V4);
    let mut dst_ip = [0u8; 16];
    dst_ip[..4].copy_from_slice(&[198, 19, 0, 100]);
    let mut src_ip = [0u8; 16];
    src_ip[..4].copy_from_slice(&[198, 19, 128, 0]);
    lab.generator
        .set_gen_config(GenConfig {
            dst_mac: LB_MAC,
            src_mac: GEN_MAC,
            src_ip,
            dst_ip,
            dst_port: 80u16.to_be_bytes(),
            family: lb_common::FAMILY_V4,
            mode: GEN_SYN_FLOOD,
        })
        .expect("generator config");
    let cfg = lab.cfg.replace(
        "address = \"198.19.0.100:53\"\nprotocol = \"udp\"",
        "address = \"198.19.0.100:80\"\nprotocol = \"tcp\"",
    ) + "\n[vip.limits]\nnew_flows_per_source = 1\nburst = 1\n";
    let socket = lab.tmp.path("lb.sock");
    let (mut lb_rates, mut nft_rates) = (Vec::new(), Vec::new());
    let (mut lb_dropped, mut nft_dropped) = (0.0, 0.0);
    for _ in 0..runs {
        {
            let _agent = Agent::start(&lab.lb_ns, &cfg, &lab.tmp, &["l0"], "tx");
            pin_napi(&lab.lb_ns, "l0", 1);
            let all = || {
                let s = lab::stats(&socket);
                (
                    s.outcomes.iter().map(|o| o.packets).sum::<u64>(),
                    s.outcome("drop_limit"),
                )
            };
            let (b, bd) = all();
            let t = send(&lab.gen_ns, &mut lab.generator, n, GEN_FRAME_V4);
            let a = settled(|| all().0);
            let ad = all().1;
            lb_rates.push((a - b) as f64 / t.as_secs_f64() / 1e6);
            lb_dropped = (ad - bd) as f64 / (a - b).max(1) as f64;
        }
        {
            let _pass = attached(
                &lab.lb_ns,
                lb_tests::test_object::programs::PASS,
                "l0",
                |_| {},
            );
            pin_napi(&lab.lb_ns, "l0", 1);
            let nft = NftLimit::add(&lab.lb_ns);
            let (b, bd) = nft.counts();
            let t = send(&lab.gen_ns, &mut lab.generator, n, GEN_FRAME_V4);
            let a = settled(|| nft.counts().0);
            let ad = nft.counts().1;
            nft_rates.push((a - b) as f64 / t.as_secs_f64() / 1e6);
            nft_dropped = (ad - bd) as f64 / (a - b).max(1) as f64;
        }
    }
    super::modes::detach(&lab.tmp);
    let (l, f) = (spread(lb_rates.clone()), spread(nft_rates.clone()));
    assert!(
        l.median > 0.0 && f.median > 0.0,
        "a side took nothing in: {lb_rates:?} {nft_rates:?}"
    );
    let ratios: Vec<f64> = lb_rates
        .iter()
        .zip(&nft_rates)
        .map(|(a, b)| a / b)
        .collect();
    format!(
        "\n### A SYN flood absorbed\n\nTCP SYNs from 32,768 random sources (a new 5-tuple every frame), {n} a burst, {runs} rounds, at a VIP that admits one new flow a second per source: lb with `[vip.limits] new_flows_per_source = 1, burst = 1` (its LRU map of 65,536 sources), against nftables with the same limit as a per-source meter on the interface's ingress hook (the earliest the kernel's nftables can act), an XDP_PASS program on the interface. Each side's rate is what it took in (the program's outcomes; the chain's first counter) over the generator's sending time, Mpps, min / median / max.\n\n| what | Mpps taken in | dropped | against nftables (median of rounds) |\n|---|---|---|---|\n| lb, `drop_limit` | {:.2} / {:.2} / {:.2} | {:.1}% | {:.2}× |\n| nftables, ingress `limit` meter | {:.2} / {:.2} / {:.2} | {:.1}% | 1× |\n",
        l.min,
        l.median,
        l.max,
        100.0 * lb_dropped,
        spread(ratios).median,
        f.min,
        f.median,
        f.max,
        100.0 * nft_dropped,
    )
}
