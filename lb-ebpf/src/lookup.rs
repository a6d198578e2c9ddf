//! Step 2: is the packet for a VIP? Exact port first, then the VIP's every-port entry.
use lb_common::{VipKey, VipValue};

use crate::{maps::VIPS, parse::Packet};

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
    key.port_be = 0;
    unsafe { VIPS.get(&key) }.copied()
}
