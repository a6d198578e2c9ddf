//! Step 1: the common cases of traffic that is not ours, turned away before the parser is
//! called (a bitmap of VIP addresses: one array read, no hash lookup).
use lb_common::Counter;
use network_types::ip::{Ipv4Hdr, Ipv6Hdr};

use crate::{
    mem::{Frame, ptr_at, read},
    verdict::Verdict,
    wire::{ETH_HLEN, ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6},
};

/// Whether `dst` may be a VIP's address: a clear filter bit says certainly not, so traffic
/// for the host itself or routed past it costs no hash lookup.
#[inline(always)]
pub fn maybe_vip(dst: &[u8; 16]) -> bool {
    crate::maps::VIP_FILTER
        .get(0)
        .is_none_or(|f| lb_common::hash::vip_filter_has(f, dst))
}

/// What [`quick_pass`] found out.
pub enum Quick {
    /// Not for us, and why: the parser would say the same.
    Pass(Verdict),
    /// An address that may be a VIP's: the filter was asked already.
    MaybeVip,
    /// Left to the parser (a VLAN tag, a short or malformed header).
    Parse,
}

/// The common cases of traffic that is not ours, decided inline before the parser's function
/// is called (a call, and its return, cost as much as the rest here): an untagged packet that
/// is not IP, or an untagged IPv4/IPv6 packet with its whole fixed header, of the right
/// version, for an address whose filter bit is clear. The verdicts are exactly the parser's.
#[inline(always)]
pub fn quick_pass(ctx: &Frame) -> Quick {
    let Some(t) = read::<[u8; 2]>(ctx, 12) else {
        return Quick::Parse;
    };
    let dst = match u16::from_be_bytes(t) {
        ETH_P_IP => {
            let Some(ip) = ptr_at::<Ipv4Hdr>(ctx, ETH_HLEN) else {
                return Quick::Parse;
            };
            // Safety: ptr_at checked that the whole header is inside the packet.
            let (vihl, dst) = unsafe { ((*ip).vihl, (*ip).dst_addr) };
            if vihl >> 4 != 4 {
                return Quick::Parse;
            }
            crate::mem::v4_in_16(dst)
        }
        ETH_P_IPV6 => {
            let Some(ip) = ptr_at::<Ipv6Hdr>(ctx, ETH_HLEN) else {
                return Quick::Parse;
            };
            // Safety: as above.
            let (v0, dst) = unsafe { ((*ip).vcf[0], (*ip).dst_addr) };
            if v0 >> 4 != 6 {
                return Quick::Parse;
            }
            dst
        }
        ETH_P_8021Q | ETH_P_8021AD => return Quick::Parse,
        _ => return Quick::Pass(Verdict::pass(Counter::PassNotIp)),
    };
    if maybe_vip(&dst) {
        Quick::MaybeVip
    } else {
        Quick::Pass(Verdict::pass(Counter::PassNotVip))
    }
}
