//! A bounded flood of new flows into the balancer: the test object's generator, run with live
//! frames (BPF_PROG_RUN) from a namespace of its own, whose veth leads straight into the
//! balancer's namespace (`g0` there, `flood0` on the balancer, where the agent attaches too).
//! Sources are 198.19.128.0/17 and ports from 1024 on: a new 5-tuple every frame.
use std::net::Ipv4Addr;

use aya::programs::{TestRun, TestRunAttrs, TestRunOptions};
use lb::dataplane::{Dataplane, nix_ifindex};
use lb_common::{FAMILY_V4, GEN_FRAME_V4, GenConfig};

use crate::{
    Netns,
    test_object::{self, Fabric, programs},
};

const GEN_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x0f, 0x01];
const FLOOD0_MAC: &str = "02:00:00:00:0f:02";

/// The generator and its namespace.
pub struct Flood {
    pub ns: Netns,
    generator: Dataplane,
}

impl Flood {
    /// Wires a generator namespace to `lb` (interface `flood0` there, up, no address) and
    /// loads the generator: `mode` is [`lb_common::GEN_SYN_FLOOD`] or
    /// [`lb_common::GEN_UDP_FLOOD`], to `dst`:`port`.
    pub fn wire(lb: &Netns, mode: u8, dst: Ipv4Addr, port: u16) -> Self {
        let ns = Netns::new("gen");
        crate::sh(&format!(
            "ip link add g0 netns {} type veth peer name flood0 netns {}",
            ns.name, lb.name
        ));
        ns.sh("ip link set g0 address 02:00:00:00:0f:01 && ip link set g0 up");
        lb.sh(&format!(
            "ip link set flood0 address {FLOOD0_MAC} && ip link set flood0 up \
             && sysctl -qw net.ipv4.conf.flood0.rp_filter=0"
        ));
        let mut generator = test_object::load(programs::GEN).expect("load xdp_gen");
        let mut dst_ip = [0u8; 16];
        dst_ip[..4].copy_from_slice(&dst.octets());
        let mut src_ip = [0u8; 16];
        src_ip[..4].copy_from_slice(&[198, 19, 128, 0]);
        let lb_mac: [u8; 6] = [0x02, 0, 0, 0, 0x0f, 0x02];
        generator
            .set_gen_config(GenConfig {
                dst_mac: lb_mac,
                src_mac: GEN_MAC,
                src_ip,
                dst_ip,
                dst_port: port.to_be_bytes(),
                family: FAMILY_V4,
                mode,
            })
            .expect("generator config");
        Flood { ns, generator }
    }

    /// Sends `n` frames, as fast as the generator goes.
    pub fn send(&mut self, n: u32) {
        let generator = &mut self.generator;
        self.ns
            .run(|| live_frames(generator, "g0", n, GEN_FRAME_V4));
    }
}

/// Runs the generator `n` times with live frames of `len` bytes out of `dev` (from the thread
/// that is in `dev`'s namespace): each run's frame goes out with XDP_TX.
pub fn live_frames(generator: &mut Dataplane, dev: &str, n: u32, len: usize) {
    let ifindex = nix_ifindex(dev).unwrap_or_else(|| panic!("{dev}"));
    let md: [u32; 6] = [0, len as u32, 0, ifindex, 0, 0];
    let ctx: Vec<u8> = md.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let frame = vec![0u8; len];
    generator
        .program()
        .expect("xdp_gen")
        .test_run(TestRunOptions {
            data_in: Some(&frame),
            ctx_in: Some(&ctx),
            repeat: n,
            attrs: TestRunAttrs::new().xdp_live_frames(64),
            ..Default::default()
        })
        .expect("BPF_PROG_RUN with live frames");
}
