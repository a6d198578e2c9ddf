//! Benchmark programs: a packet generator for BPF_PROG_RUN with live
//! frames (it sends with XDP_TX from the generator's interface), a sink that counts and drops
//! what arrives, and the ceilings the end-to-end section measures lb against.
use aya_ebpf::{
    bindings::xdp_action, helpers::generated::bpf_xdp_adjust_head, macros::xdp,
    programs::XdpContext,
};
use lb_common::{
    FAMILY_V6, GEN_CYCLE, GEN_CYCLE_1M, GEN_CYCLE_64K, GEN_FRAME_V4, GEN_FRAME_V6, GEN_SYN_FLOOD,
    GenConfig,
    hash::{ipv4_checksum_of, ipv4_header_checksum, udp_ipv6_checksum},
};

use lb_ebpf::{maps::DEVMAP, mem::ptr_at_mut};

use crate::maps::{GEN_CONFIG, REDIRECT_TO, SINK_COUNT};

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
    if cfg.mode != GEN_CYCLE {
        // A new 5-tuple every frame: the source's last 15 bits, then its port, count on (over
        // 2^20 or 2^16 flows, then again, for the cycles).
        let n = match cfg.mode {
            GEN_CYCLE_1M => n & 0xf_ffff,
            GEN_CYCLE_64K => n & 0xffff,
            _ => n,
        };
        let mut src = [cfg.src_ip[0], cfg.src_ip[1], cfg.src_ip[2], cfg.src_ip[3]];
        src[2] |= ((n >> 8) & 0x7f) as u8;
        src[3] = n as u8;
        let sport = (1024 + ((n >> 15) & 0x7fff)) as u16;
        return if cfg.mode == GEN_SYN_FLOOD {
            syn_v4(&ctx, cfg, src, sport, n as u32)
        } else {
            gen_v4(&ctx, cfg, src, sport)
        };
    }
    // 256 sources × 16 ports: 4096 flows, cycled, so flows are mostly established.
    let last = (n & 0xff) as u8;
    let sport = (1024 + ((n >> 8) & 0xf)) as u16;
    if cfg.family == FAMILY_V6 {
        gen_v6(&ctx, cfg, last, sport)
    } else {
        let src = [cfg.src_ip[0], cfg.src_ip[1], cfg.src_ip[2], last];
        gen_v4(&ctx, cfg, src, sport)
    }
}

/// A TCP SYN from `src`:`sport` (the TCP checksum left 0: the balancer never reads it, and
/// the backends' kernels discard the frame without answering).
#[inline(always)]
fn syn_v4(ctx: &XdpContext, cfg: &GenConfig, src: [u8; 4], sport: u16, seq: u32) -> u32 {
    const FRAME: usize = GEN_FRAME_V4;
    let Some(frame) = ptr_at_mut::<[u8; FRAME]>(ctx, 0) else {
        return xdp_action::XDP_ABORTED;
    };
    let mut f = [0u8; FRAME];
    eth(&mut f, cfg, 0x0800);
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[3] = 40;
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&src);
    ip[16..20].copy_from_slice(&cfg.dst_ip[..4]);
    let c = ipv4_header_checksum(&ip).to_be_bytes();
    ip[10] = c[0];
    ip[11] = c[1];
    f[14..34].copy_from_slice(&ip);
    f[34..36].copy_from_slice(&sport.to_be_bytes());
    f[36..38].copy_from_slice(&cfg.dst_port);
    f[38..42].copy_from_slice(&seq.to_be_bytes());
    f[46] = 0x50;
    f[47] = 0x02;
    f[48] = 0xff;
    f[49] = 0xff;
    unsafe { frame.write_unaligned(f) };
    xdp_action::XDP_TX
}

/// The frame's Ethernet header: the configured addresses and `ether_type`.
#[inline(always)]
fn eth(f: &mut [u8], cfg: &GenConfig, ether_type: u16) {
    f[0..6].copy_from_slice(&cfg.dst_mac);
    f[6..12].copy_from_slice(&cfg.src_mac);
    f[12..14].copy_from_slice(&ether_type.to_be_bytes());
}

#[inline(always)]
fn gen_v4(ctx: &XdpContext, cfg: &GenConfig, src: [u8; 4], sport: u16) -> u32 {
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
    ip[12..16].copy_from_slice(&src);
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
    if let Some(p) = lb_ebpf::mem::ptr_at::<u32>(&ctx, 30) {
        // Safety: ptr_at checked the 4 bytes; volatile, so that the read is not dropped.
        unsafe { core::ptr::read_volatile(p) };
    }
    xdp_action::XDP_TX
}

/// The ceiling plus the least any encapsulating balancer does to a frame, with no lookup at
/// all: read the IP header, grow the head by an outer header (IPv4 in IPv4, or IPv6 in IPv6)
/// and write Ethernet and the outer header in front, with fixed addresses from the
/// benchmarking ranges. What lb adds to this is its own work; the rest of the distance to
/// the ceiling every such balancer pays (the helper call, the frame's longer way out, the
/// cache line before the frame written).
#[xdp]
pub fn xdp_encap_tx(ctx: XdpContext) -> u32 {
    // Ethernet and the inner header's first eight bytes (version, TOS or traffic class, the
    // lengths), behind one bounds check, as words: a byte array here becomes a call to BPF's
    // byte-at-a-time memset, which would make this floor dearer than what it is the floor of.
    let Some(head) = lb_ebpf::mem::ptr_at::<[u8; 22]>(&ctx, 0) else {
        return xdp_action::XDP_ABORTED;
    };
    let h = head as *const u8;
    // Safety: ptr_at checked the 22 bytes; unaligned loads.
    let (e0, e1, ty, inner) = unsafe {
        (
            (h as *const u64).read_unaligned(),
            (h.add(8) as *const u32).read_unaligned(),
            (h.add(12) as *const u16).read_unaligned(),
            (h.add(14) as *const u64).read_unaligned(),
        )
    };
    let v6 = ty == 0x86ddu16.to_be();
    let grow = if v6 { 40 } else { 20 };
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -grow) } != 0 {
        return xdp_action::XDP_ABORTED;
    }
    let Some(out) = ptr_at_mut::<[u8; 54]>(&ctx, 0) else {
        return xdp_action::XDP_ABORTED;
    };
    let b = inner.to_le_bytes();
    let o = out as *mut u8;
    // Safety: ptr_at_mut checked the 54 bytes (the smallest frame here, 60 bytes, grown by 20);
    // unaligned stores.
    unsafe {
        (o as *mut u64).write_unaligned(e0);
        (o.add(8) as *mut u32).write_unaligned(e1);
        (o.add(12) as *mut u16).write_unaligned(ty);
        if v6 {
            // Version and traffic class as inside, the payload 40 more, IPv6 in IPv6, hop
            // limit 64, fd00::1 to fd00::2.
            let payload = u16::from_be_bytes([b[4], b[5]])
                .wrapping_add(40)
                .to_be_bytes();
            let w = u64::from_le_bytes([b[0], b[1], b[2], b[3], payload[0], payload[1], 41, 64]);
            (o.add(14) as *mut u64).write_unaligned(w);
            (o.add(22) as *mut u64).write_unaligned(0xfd);
            (o.add(30) as *mut u64).write_unaligned(1 << 56);
            (o.add(38) as *mut u64).write_unaligned(0xfd);
            (o.add(46) as *mut u64).write_unaligned(2 << 56);
        } else {
            // An option-less header, the length 20 more, IP in IP, TTL 64, 198.18.0.1 to
            // 198.18.0.2.
            let (src, dst) = ([198, 18, 0, 1], [198, 18, 0, 2]);
            let tot_len = u16::from_be_bytes([b[2], b[3]]).wrapping_add(20);
            let check = ipv4_checksum_of(b[1], tot_len, 0, 64, 4, src, dst).to_be_bytes();
            let l = tot_len.to_be_bytes();
            let w0 = u64::from_le_bytes([0x45, b[1], l[0], l[1], 0, 0, 0, 0]);
            let w1 = u32::from_le_bytes([64, 4, check[0], check[1]]);
            (o.add(14) as *mut u64).write_unaligned(w0);
            (o.add(22) as *mut u32).write_unaligned(w1);
            (o.add(26) as *mut [u8; 4]).write_unaligned(src);
            (o.add(30) as *mut [u8; 4]).write_unaligned(dst);
        }
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
