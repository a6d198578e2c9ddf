//! Step 4: Maglev. The 5-tuple's hash picks a slot of the VIP's live ring; the slot names
//! the backend.
use lb_common::{
    Backend, MAX_VIPS, NO_BACKEND, RING_STRIDE, VipValue, hash::flow_hash, ring_index,
};

use crate::{
    Fault,
    maps::{BACKENDS, RINGS},
    parse::Packet,
};

/// The backend for this packet: `Ok(None)` when the VIP has no live backend.
#[inline(always)]
pub fn backend(pkt: &Packet, vip: &VipValue) -> Result<Option<(u32, Backend)>, Fault> {
    if vip.ring_size == 0 || vip.ring_size > RING_STRIDE || vip.id >= MAX_VIPS {
        return Err(Fault);
    }
    let h = flow_hash(&pkt.src, &pkt.dst, pkt.sport, pkt.dport, pkt.proto);
    let slot = h % vip.ring_size;
    let id = *RINGS
        .get(ring_index(vip.id, vip.active_ring, slot))
        .ok_or(Fault)?;
    if id == NO_BACKEND {
        return Ok(None);
    }
    let be = *BACKENDS.get(id).ok_or(Fault)?;
    if be.family != pkt.family {
        return Ok(None);
    }
    Ok(Some((id, be)))
}
