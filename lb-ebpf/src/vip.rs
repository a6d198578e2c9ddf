//! Step 4: is the packet for a VIP? Exact port first, then the VIP's every-port entry. Traffic
//! to a VIP address that no VIP balances passes, or is dropped (`agent.unbalanced`).
use lb_common::{AddrKey, CONFIG_ANY_PORT_VIP, CONFIG_DROP_UNBALANCED, Counter, VipKey, VipValue};

use crate::{
    maps::{CONFIG, VIP_ADDRS, VIPS},
    packet::Packet,
    verdict::Verdict,
};

#[inline(always)]
pub fn vip(pkt: &Packet) -> Option<VipValue> {
    let mut key = VipKey {
        addr: pkt.key.dst,
        port_be: u16::from_ne_bytes(pkt.dport()),
        proto: pkt.key.proto,
        family: pkt.key.family,
    };
    // Safety: the value is copied out at once; the kernel keeps it alive under RCU meanwhile.
    if let Some(v) = unsafe { VIPS.get(&key) } {
        return Some(*v);
    }
    let any_port = CONFIG
        .get(0)
        .is_some_and(|c| c.flags & CONFIG_ANY_PORT_VIP != 0);
    if !any_port {
        return None;
    }
    key.port_be = 0;
    unsafe { VIPS.get(&key) }.copied()
}

/// The VIP that takes fragments to the packet's address and protocol, if one does.
#[inline(always)]
pub fn fragment_vip(pkt: &Packet) -> Option<VipValue> {
    let key = VipKey {
        addr: pkt.key.dst,
        port_be: 0,
        proto: pkt.key.proto,
        family: pkt.key.family | lb_common::FAMILY_FRAGMENTS,
    };
    // Safety: the value is copied out at once; the kernel keeps it alive under RCU meanwhile.
    unsafe { VIPS.get(&key) }.copied()
}

/// What becomes of a packet to `addr` that no VIP balances (`pass` says why it would pass): with
/// `agent.unbalanced = "drop"`, dropped if `addr` is a VIP's address; passed otherwise.
#[inline(always)]
pub fn unbalanced(addr: &AddrKey, pass: Counter) -> Verdict {
    let drop = CONFIG
        .get(0)
        .is_some_and(|c| c.flags & CONFIG_DROP_UNBALANCED != 0);
    if drop && unsafe { VIP_ADDRS.get(addr) }.is_some() {
        return Verdict::drop(Counter::DropUnbalanced);
    }
    Verdict::pass(pass)
}

/// The packet's destination, as [`unbalanced`] takes it.
#[inline(always)]
pub fn destination(pkt: &Packet) -> AddrKey {
    AddrKey::new(pkt.key.dst, pkt.key.family)
}
