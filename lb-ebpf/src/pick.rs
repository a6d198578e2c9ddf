//! Steps 3 and 4: the flow table, then Maglev. An established flow keeps its backend while
//! that backend is up and serves this VIP; a TCP SYN, a miss, a stale UDP entry or a down
//! backend takes the VIP's live ring: the 5-tuple's hash picks a slot, the slot names the
//! backend, and the flow table remembers it.
use aya_ebpf::helpers::generated::bpf_ktime_get_coarse_ns;

/// The clock UDP flows age by: the coarse one (jiffies resolution, a few ms) is plenty for idle
/// times of seconds, and costs a fraction of the precise one (which, in a virtual machine, can
/// cost more than the rest of a flow-table hit).
#[inline(always)]
fn now() -> u64 {
    unsafe { bpf_ktime_get_coarse_ns() }
}
use lb_common::{
    BACKEND_UP, Backend, FLOW_HITS, FLOW_INSERTS, FlowValue, MAX_VIPS, NO_BACKEND, PROTO_TCP,
    PROTO_UDP, RING_STRIDE, VipValue, hash::flow_hash, ring_index,
};

use crate::{
    Fault,
    maps::{BACKENDS, FLOWS, RINGS},
    parse::{Packet, TCP_ACK, TCP_SYN},
    stats,
};

/// The backend for this packet: `Ok(None)` when the VIP has no live backend.
#[inline(always)]
pub fn backend(pkt: &Packet, vip: &VipValue) -> Result<Option<(u32, &'static Backend)>, Fault> {
    let id = match backend_id(pkt, vip) {
        FAULT => return Err(Fault),
        NO_BACKEND => return Ok(None),
        id => id,
    };
    // A reference into the map, not a copy: nothing of it need go on the stack.
    let be = BACKENDS.get(id).ok_or(Fault)?;
    Ok(Some((id, be)))
}

/// A backend id, [`NO_BACKEND`], or [`FAULT`].
const FAULT: u32 = NO_BACKEND - 1;

/// Not inlined, and returning a plain integer: its own stack frame keeps the program's
/// frames within the verifier's 512 bytes (and a BPF function may not return a pointer into
/// its stack, which a larger return value would be).
#[inline(never)]
fn backend_id(pkt: &Packet, vip: &VipValue) -> u32 {
    match pick(pkt, vip) {
        Ok(Some(id)) => id,
        Ok(None) => NO_BACKEND,
        Err(Fault) => FAULT,
    }
}

#[inline(always)]
fn pick(pkt: &Packet, vip: &VipValue) -> Result<Option<u32>, Fault> {
    if vip.ring_size == 0 || vip.ring_size > RING_STRIDE || vip.id >= MAX_VIPS {
        return Err(Fault);
    }
    let key = &pkt.key;
    let syn = pkt.key.proto == PROTO_TCP && pkt.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN;
    // Whether the table holds this 5-tuple at all (valid or not): only a new key grows it.
    // One lookup serves both questions: is the flow known (only a new key grows the table),
    // and may it keep its backend.
    let entry = FLOWS.get_ptr_mut(key);
    let known = entry.is_some();
    if !syn
        && let Some(flow) = entry
        && let Some(hit) = established(flow, pkt, vip)
    {
        stats::flow(FLOW_HITS);
        return Ok(Some(hit));
    }
    let h = flow_hash(&key.src, &key.dst, pkt.sport(), pkt.dport(), key.proto);
    let slot = h % vip.ring_size;
    let id = *RINGS
        .get(ring_index(vip.id, vip.active_ring, slot))
        .ok_or(Fault)?;
    if id == NO_BACKEND {
        return Ok(None);
    }
    let be = BACKENDS.get(id).ok_or(Fault)?;
    if be.family != pkt.key.family {
        return Ok(None);
    }
    // A full table evicts its least recently used entry; a failed insert only costs a re-pick.
    let value = FlowValue {
        backend: id,
        _pad: 0,
        // The clock is read only where it matters: UDP ages by it, TCP does not.
        last_seen_ns: if pkt.key.proto == PROTO_UDP { now() } else { 0 },
    };
    if FLOWS.insert(key, &value, 0).is_ok() && !known {
        stats::flow(FLOW_INSERTS);
    }
    Ok(Some(id))
}

/// The flow's recorded backend, if it may still serve it.
#[inline(always)]
fn established(flow: *mut FlowValue, pkt: &Packet, vip: &VipValue) -> Option<u32> {
    // Safety: the entry stays valid under RCU for this program run.
    let (id, seen) = unsafe { ((*flow).backend, (*flow).last_seen_ns) };
    let be = BACKENDS.get(id)?;
    if be.family != pkt.key.family || be.vip_id != vip.id || be.state & BACKEND_UP == 0 {
        return None;
    }
    if pkt.key.proto == PROTO_UDP {
        let now = now();
        if now.saturating_sub(seen) >= vip.udp_idle_s as u64 * 1_000_000_000 {
            return None;
        }
        // UDP has no handshake to tell a new flow: its entry ages by the clock.
        unsafe { (*flow).last_seen_ns = now };
    }
    Some(id)
}
