//! Benchmark programs, never attached by lb: a packet generator for BPF_PROG_RUN with live
//! frames (it sends with XDP_TX from the generator's interface), and a sink that counts and
//! drops what arrives.
use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use lb_common::hash::ipv4_header_checksum;

use crate::{
    maps::{DEVMAP, GEN_CONFIG, REDIRECT_TO, SINK_COUNT},
    mem::ptr_at_mut,
};

/// Frame length the generator writes: Ethernet, IPv4, UDP, 18 bytes of payload.
const FRAME: usize = 60;

/// Writes a whole 64-byte UDP frame (page_pool recycles frames without re-initialising
/// them, so every header is written on every run) and sends it.
#[xdp]
pub fn xdp_gen(ctx: XdpContext) -> u32 {
    let Some(cfg) = GEN_CONFIG.get(0) else {
        return xdp_action::XDP_ABORTED;
    };
    let Some(seq) = SINK_COUNT.get_ptr_mut(1) else {
        return xdp_action::XDP_ABORTED;
    };
    let n = unsafe {
        *seq += 1;
        *seq
    };
    let Some(frame) = ptr_at_mut::<[u8; FRAME]>(&ctx, 0) else {
        return xdp_action::XDP_ABORTED;
    };
    let mut f = [0u8; FRAME];
    f[0..6].copy_from_slice(&cfg.dst_mac);
    f[6..12].copy_from_slice(&cfg.src_mac);
    f[12] = 0x08;
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[3] = (FRAME - 14) as u8;
    ip[8] = 64;
    ip[9] = 17;
    ip[12..15].copy_from_slice(&cfg.src_ip[..3]);
    ip[15] = (n & 0xff) as u8;
    ip[16..20].copy_from_slice(&cfg.dst_ip);
    let c = ipv4_header_checksum(&ip).to_be_bytes();
    ip[10] = c[0];
    ip[11] = c[1];
    f[14..34].copy_from_slice(&ip);
    // 256 sources × 16 ports: 4096 flows, cycled, so flows are mostly established.
    let sport = (1024 + ((n >> 8) & 0xf)) as u16;
    f[34..36].copy_from_slice(&sport.to_be_bytes());
    f[36..38].copy_from_slice(&cfg.dst_port);
    f[39] = (FRAME - 34) as u8;
    unsafe { frame.write_unaligned(f) };
    xdp_action::XDP_TX
}

/// Counts and drops.
#[xdp]
pub fn xdp_sink(_ctx: XdpContext) -> u32 {
    if let Some(n) = SINK_COUNT.get_ptr_mut(0) {
        unsafe { *n += 1 };
    }
    xdp_action::XDP_DROP
}

/// The redirect ceiling: every frame to the interface in `LB_REDIRECT_TO`, through the devmap.
#[xdp]
pub fn xdp_redirect_all(_ctx: XdpContext) -> u32 {
    let Some(ifindex) = REDIRECT_TO.get(0) else {
        return xdp_action::XDP_ABORTED;
    };
    DEVMAP.redirect(*ifindex, 0).unwrap_or(xdp_action::XDP_DROP)
}
