//! Step 6: the VIP's Maglev ring. The 5-tuple's hash picks a slot, the slot names the
//! backend; the pick is recorded in the flow table (step 3).
use lb_common::{
    FAMILY_V4, MAX_VIPS, NO_BACKEND, RING_STRIDE, VipValue, hash::pick_hash, ring_index,
};

use crate::{
    count::{self, Counting},
    flow_table::{self, Chosen, Record},
    maps::{BACKENDS, RINGS},
    packet::Packet,
    verdict::Fault,
};

/// The ring's backend for this packet, recorded in the flow table: `Ok(None)` when the VIP has
/// no live backend.
#[inline(always)]
pub fn from_ring<C: Counting>(
    pkt: &Packet,
    vip: &VipValue,
    at: Record,
) -> Result<Option<Chosen>, Fault> {
    let Some(c) = without_flow(pkt, vip)? else {
        return Ok(None);
    };
    let id = c.id;
    flow_table::record::<C>(pkt, at, &c)?;
    count::new_flow::<C>(id);
    Ok(Some(c))
}

/// The ring's backend for the packet's key, not recorded in the flow table: for a fragment
/// (its ports are zero in its key, so every fragment of a datagram, first and later alike,
/// picks the same slot) and for an ICMP error about a flow the table does not hold.
#[inline(always)]
pub fn without_flow(pkt: &Packet, vip: &VipValue) -> Result<Option<Chosen>, Fault> {
    let r = ring_id(pkt, vip);
    let (id, hash) = (r as u32, (r >> 32) as u32);
    let id = match id {
        FAULT => return Err(Fault),
        NO_BACKEND => return Ok(None),
        id => id,
    };
    // A reference into the map, not a copy: nothing of it need go on the stack.
    let be = BACKENDS.get(id).ok_or(Fault)?;
    // An IPv4 backend cannot carry an IPv6 packet (IPv4 in IPv6 is how IPv4 VIPs reach IPv6
    // backends; the agent never pairs them the other way).
    if be.family == FAMILY_V4 && pkt.key.family != FAMILY_V4 {
        return Ok(None);
    }
    Ok(Some(Chosen { id, be, hash }))
}

/// A backend id, [`NO_BACKEND`], or [`FAULT`].
const FAULT: u32 = NO_BACKEND - 1;

/// The ring's pick as one integer: the backend id (or [`NO_BACKEND`], or [`FAULT`]) in the low
/// 32 bits, the flow hash that picked the slot in the high 32. Not inlined, and returning a
/// plain integer: its own stack frame keeps the program's frames within the verifier's 512
/// bytes (and a BPF function may not return a pointer into its stack, which a larger return
/// value would be).
#[inline(never)]
fn ring_id(pkt: &Packet, vip: &VipValue) -> u64 {
    match pick(pkt, vip) {
        Ok((Some(id), h)) => id as u64 | (h as u64) << 32,
        Ok((None, h)) => NO_BACKEND as u64 | (h as u64) << 32,
        Err(Fault) => FAULT as u64,
    }
}

/// The ring's backend for the packet, if the slot names one, and the ring hash.
#[inline(always)]
fn pick(pkt: &Packet, vip: &VipValue) -> Result<(Option<u32>, u32), Fault> {
    if vip.ring_size == 0 || vip.ring_size > RING_STRIDE || vip.id >= MAX_VIPS {
        return Err(Fault);
    }
    let key = &pkt.key;
    let h = pick_hash(
        vip.flags,
        &key.src,
        &key.dst,
        pkt.sport(),
        pkt.dport(),
        key.proto,
    );
    let slot = h % vip.ring_size;
    let id = *RINGS
        .get(ring_index(vip.id, vip.active_ring, slot))
        .ok_or(Fault)?;
    if id == NO_BACKEND {
        return Ok((None, h));
    }
    Ok((Some(id), h))
}
