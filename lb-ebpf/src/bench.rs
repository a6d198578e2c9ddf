//! Benchmark programs, never attached by lb: a packet generator for BPF_PROG_RUN with live
//! frames (it sends with XDP_TX from the generator's interface), and a sink that counts and
//! drops what arrives.
use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use lb_common::{
    FAMILY_V6, GEN_FRAME_V4, GEN_FRAME_V6, GenConfig,
    hash::{ipv4_header_checksum, udp_ipv6_checksum},
};

use crate::{
    maps::{DEVMAP, GEN_CONFIG, REDIRECT_TO, SINK_COUNT},
    mem::ptr_at_mut,
};

/// Writes a whole UDP frame, IPv4 or IPv6 as configured (page_pool recycles frames without
/// re-initialising them, so every header is written on every run) and sends it.
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
    // 256 sources × 16 ports: 4096 flows, cycled, so flows are mostly established.
    let last = (n & 0xff) as u8;
    let sport = (1024 + ((n >> 8) & 0xf)) as u16;
    if cfg.family == FAMILY_V6 {
        gen_v6(&ctx, cfg, last, sport)
    } else {
        gen_v4(&ctx, cfg, last, sport)
    }
}

/// The frame's Ethernet header: the configured addresses and `ether_type`.
#[inline(always)]
fn eth(f: &mut [u8], cfg: &GenConfig, ether_type: u16) {
    f[0..6].copy_from_slice(&cfg.dst_mac);
    f[6..12].copy_from_slice(&cfg.src_mac);
    f[12..14].copy_from_slice(&ether_type.to_be_bytes());
}

#[inline(always)]
fn gen_v4(ctx: &XdpContext, cfg: &GenConfig, last: u8, sport: u16) -> u32 {
    const FRAME: usize = GEN_FRAME_V4;
    let Some(frame) = ptr_at_mut::<[u8; FRAME]>(ctx, 0) else {
        return xdp_action::XDP_ABORTED;
    };
    let mut f = [0u8; FRAME];
    eth(&mut f, cfg, 0x0800);
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[3] = (FRAME - 14) as u8;
    ip[8] = 64;
    ip[9] = 17;
    ip[12..15].copy_from_slice(&cfg.src_ip[..3]);
    ip[15] = last;
    ip[16..20].copy_from_slice(&cfg.dst_ip[..4]);
    let c = ipv4_header_checksum(&ip).to_be_bytes();
    ip[10] = c[0];
    ip[11] = c[1];
    f[14..34].copy_from_slice(&ip);
    f[34..36].copy_from_slice(&sport.to_be_bytes());
    f[36..38].copy_from_slice(&cfg.dst_port);
    f[39] = (FRAME - 34) as u8;
    unsafe { frame.write_unaligned(f) };
    xdp_action::XDP_TX
}

#[inline(always)]
fn gen_v6(ctx: &XdpContext, cfg: &GenConfig, last: u8, sport: u16) -> u32 {
    const FRAME: usize = GEN_FRAME_V6;
    let Some(frame) = ptr_at_mut::<[u8; FRAME]>(ctx, 0) else {
        return xdp_action::XDP_ABORTED;
    };
    let mut f = [0u8; FRAME];
    eth(&mut f, cfg, 0x86dd);
    f[14] = 0x60;
    f[19] = 8; // payload: the UDP header alone
    f[20] = 17;
    f[21] = 64;
    let mut src = cfg.src_ip;
    src[15] = last;
    f[22..38].copy_from_slice(&src);
    f[38..54].copy_from_slice(&cfg.dst_ip);
    let mut udp = [0u8; 8];
    udp[0..2].copy_from_slice(&sport.to_be_bytes());
    udp[2..4].copy_from_slice(&cfg.dst_port);
    udp[5] = 8;
    let c = udp_ipv6_checksum(&src, &cfg.dst_ip, &udp).to_be_bytes();
    udp[6..8].copy_from_slice(&c);
    f[54..62].copy_from_slice(&udp);
    unsafe { frame.write_unaligned(f) };
    xdp_action::XDP_TX
}

/// The bare XDP_TX ceiling plus the first read of the frame's headers (a word of the IP
/// header: the destination of an IPv4 frame, part of the source of an IPv6 one), which any
/// program that looks at a packet pays and the bare ceiling never does.
#[xdp]
pub fn xdp_touch_tx(ctx: XdpContext) -> u32 {
    if let Some(p) = crate::mem::ptr_at::<u32>(&ctx, 30) {
        // Safety: ptr_at checked the 4 bytes; volatile, so that the read is not dropped.
        unsafe { core::ptr::read_volatile(p) };
    }
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
