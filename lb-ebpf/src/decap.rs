//! `xdp_decap`: on a backend without the kernel's tunnel modules, strip the outer headers of
//! an IP-in-IP packet (v4 or v6 in v4 or v6) or of a GUE one (IP in UDP to the configured
//! port) addressed to this host and pass the inner packet up the stack, as the kernel's
//! tunnel device or fou socket would.
use aya_ebpf::{helpers::generated::bpf_xdp_adjust_head, programs::XdpContext};
use lb_common::{AddrKey, Counter, FAMILY_V4, FAMILY_V6, PROTO_UDP};
use network_types::{
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
    udp::UdpHdr,
};

use crate::{
    maps::{CONFIG, DECAP_DST},
    mem::{ptr_at_mut, read},
    verdict::Verdict,
    wire::{ETH_P_IP, ETH_P_IPV6},
};

use crate::wire::{IPPROTO_IPIP, IPPROTO_IPV6};

#[inline(always)]
fn ours(addr: [u8; 16], family: u8) -> bool {
    let key = AddrKey {
        addr,
        family,
        _pad: [0; 3],
    };
    unsafe { DECAP_DST.get(&key) }.is_some()
}

/// Whether a next-header value may carry a tunnel (checked before the address lookup).
#[inline(always)]
fn tunnel(next: u8) -> bool {
    next == IPPROTO_IPIP || next == IPPROTO_IPV6 || next == PROTO_UDP
}

/// What the outer headers hold, as the decapsulation sees it: IP in IP (by the next-header
/// field), or IP in UDP to the GUE port (by the inner version nibble); `None`: not ours.
#[inline(always)]
fn inner_type(ctx: &XdpContext, next: u8, l4: usize) -> Option<Result<(usize, u16), Counter>> {
    match next {
        IPPROTO_IPIP => Some(Ok((0, ETH_P_IP))),
        IPPROTO_IPV6 => Some(Ok((0, ETH_P_IPV6))),
        PROTO_UDP => {
            let Some(udp) = read::<UdpHdr>(ctx, l4) else {
                return Some(Err(Counter::PassMalformed));
            };
            let cfg = CONFIG.get(0)?;
            if cfg.gue_port_be == 0 || u16::from_ne_bytes(udp.dst) != cfg.gue_port_be {
                return None;
            }
            // GUE variant 1: the payload is the IP packet itself.
            let Some(first) = read::<u8>(ctx, l4 + 8) else {
                return Some(Err(Counter::PassMalformed));
            };
            match first >> 4 {
                4 => Some(Ok((8, ETH_P_IP))),
                6 => Some(Ok((8, ETH_P_IPV6))),
                _ => Some(Err(Counter::PassMalformed)),
            }
        }
        _ => None,
    }
}

#[inline(always)]
pub fn decap(ctx: &XdpContext) -> Verdict {
    let not_ours = Verdict::pass(Counter::PassNotVip);
    let Some(eth) = read::<EthHdr>(ctx, 0) else {
        return Verdict::pass(Counter::PassMalformed);
    };
    let (ip_len, next) = match u16::from_be(eth.ether_type) {
        ETH_P_IP => {
            let Some(ip) = read::<Ipv4Hdr>(ctx, 14) else {
                return Verdict::pass(Counter::PassMalformed);
            };
            // As one integer: a zeroed byte array would become a byte-at-a-time memset call.
            let dst = crate::mem::v4_in_16(ip.dst_addr);
            // Only a plain 20-byte outer header, unfragmented, is ours to strip.
            if ip.vihl != 0x45 || !tunnel(ip.proto) || !ours(dst, FAMILY_V4) {
                return not_ours;
            }
            if u16::from_be_bytes(ip.frags) & 0x3fff != 0 {
                return Verdict::pass(Counter::PassFragment);
            }
            (20, ip.proto)
        }
        ETH_P_IPV6 => {
            let Some(ip) = read::<Ipv6Hdr>(ctx, 14) else {
                return Verdict::pass(Counter::PassMalformed);
            };
            if !tunnel(ip.next_hdr) || !ours(ip.dst_addr, FAMILY_V6) {
                return not_ours;
            }
            (40, ip.next_hdr)
        }
        _ => return Verdict::pass(Counter::PassNotIp),
    };
    let (outer, eth) = match inner_type(ctx, next, 14 + ip_len) {
        None => return not_ours,
        Some(Err(c)) => return Verdict::pass(c),
        Some(Ok((udp, ether_type))) => {
            let mut eth = eth;
            eth.ether_type = ether_type.to_be();
            (ip_len + udp, eth)
        }
    };
    // The Ethernet header moves forward over the outer headers, with the inner packet's type.
    let Some(dst) = ptr_at_mut::<EthHdr>(ctx, outer) else {
        return Verdict::pass(Counter::PassMalformed);
    };
    unsafe { dst.write_unaligned(eth) };
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, outer as i32) } != 0 {
        return Verdict::pass(Counter::PassMalformed);
    }
    Verdict::pass(Counter::Decap)
}
