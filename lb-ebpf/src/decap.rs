//! `xdp_decap`: on a backend without the kernel's ipip module, strip the outer header of an
//! IP-in-IP packet addressed to this host and pass the inner packet up the stack, as the
//! kernel's tunnel device would.
use aya_ebpf::{helpers::generated::bpf_xdp_adjust_head, programs::XdpContext};
use lb_common::{AddrKey, Counter, FAMILY_V4, FAMILY_V6};
use network_types::{
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
};

use crate::{
    maps::DECAP_DST,
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

#[inline(always)]
pub fn decap(ctx: &XdpContext) -> Verdict {
    let not_ours = Verdict::pass(Counter::PassNotVip);
    let Some(eth) = read::<EthHdr>(ctx, 0) else {
        return Verdict::pass(Counter::PassMalformed);
    };
    let outer = match u16::from_be(eth.ether_type) {
        ETH_P_IP => {
            let Some(ip) = read::<Ipv4Hdr>(ctx, 14) else {
                return Verdict::pass(Counter::PassMalformed);
            };
            // As one integer: a zeroed byte array would become a byte-at-a-time memset call.
            let dst = crate::mem::v4_in_16(ip.dst_addr);
            // Only a plain 20-byte outer header, unfragmented, is ours to strip.
            if ip.proto != IPPROTO_IPIP || ip.vihl != 0x45 || !ours(dst, FAMILY_V4) {
                return not_ours;
            }
            if u16::from_be_bytes(ip.frags) & 0x3fff != 0 {
                return Verdict::pass(Counter::PassFragment);
            }
            20
        }
        ETH_P_IPV6 => {
            let Some(ip) = read::<Ipv6Hdr>(ctx, 14) else {
                return Verdict::pass(Counter::PassMalformed);
            };
            if ip.next_hdr != IPPROTO_IPV6 || !ours(ip.dst_addr, FAMILY_V6) {
                return not_ours;
            }
            40
        }
        _ => return Verdict::pass(Counter::PassNotIp),
    };
    // The Ethernet header moves forward over the outer IP header; its type stays (v4-in-v4,
    // v6-in-v6).
    let Some(dst) = ptr_at_mut::<EthHdr>(ctx, outer) else {
        return Verdict::pass(Counter::PassMalformed);
    };
    unsafe { dst.write_unaligned(eth) };
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, outer as i32) } != 0 {
        return Verdict::pass(Counter::PassMalformed);
    }
    Verdict::pass(Counter::Decap)
}
