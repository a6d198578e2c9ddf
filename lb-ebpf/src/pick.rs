//! Steps 3 and 4: the flow table, then Maglev. An established flow keeps its backend while
//! that backend is up and serves the packet's VIP; a TCP SYN, a miss, a stale UDP entry or a
//! down backend takes the VIP's live ring: the 5-tuple's hash picks a slot, the slot names the
//! backend, and the flow table remembers it.
use aya_ebpf::{
    Global,
    bindings::BPF_NOEXIST,
    helpers::generated::{bpf_jiffies64, bpf_ktime_get_coarse_ns},
};
use lb_common::{
    BACKEND_UP, Backend, FLOW_INSERTS, FlowValue, MAX_VIPS, NO_BACKEND, PROTO_TCP, PROTO_UDP,
    RING_STRIDE, VipValue, hash::flow_hash, ring_index,
};

use crate::{
    Fault,
    maps::{BACKENDS, BENCH_FLOW, CLOCK, FLOWS, RINGS},
    parse::Packet,
    stats,
};

/// The clock UDP flows age by: the coarse one (jiffies resolution, a few ms) is plenty for idle
/// times of seconds, and costs a fraction of the precise one (which, in a virtual machine, can
/// cost more than the rest of a flow-table hit). It changes only when jiffies do, so each CPU
/// keeps the last reading with the jiffies it was taken at and calls the helper once a tick:
/// `bpf_jiffies64` is not a call at all (the verifier turns it into a load of `jiffies`).
#[inline(always)]
fn now() -> u64 {
    let j = unsafe { bpf_jiffies64() };
    let Some(c) = CLOCK.get_ptr_mut(0) else {
        return unsafe { bpf_ktime_get_coarse_ns() };
    };
    // Safety: per-CPU value, this CPU is its only writer.
    unsafe {
        if (*c).jiffies == j && (*c).ns != 0 {
            return (*c).ns;
        }
        let ns = bpf_ktime_get_coarse_ns();
        (*c).jiffies = j;
        (*c).ns = ns;
        ns
    }
}

/// The backend a packet goes to.
#[derive(Clone, Copy)]
pub struct Chosen {
    pub id: u32,
    pub be: &'static Backend,
    /// The 5-tuple's flow hash, 0 where not known (then computed where needed).
    pub hash: u32,
}

/// What the flow table says of a packet.
pub enum Flow {
    /// An established flow that keeps its backend.
    Hit(Chosen),
    /// The table holds the 5-tuple but the packet takes the ring (a backend down or gone, an
    /// idle UDP flow): the entry to overwrite with the ring's pick.
    Stale(*mut FlowValue),
    /// A 5-tuple the table does not hold.
    Miss,
}

/// Benchmarks only, 0 in every program the agent loads: 1 puts one array entry, whatever the
/// packet, where the flow-table lookup is, so that the benchmark can tell what the lookup
/// itself costs. A load-time constant: the verifier removes the side not taken.
#[unsafe(no_mangle)]
static LB_BENCH_FIXED_FLOW: Global<u8> = Global::new(0);

/// One flow-table lookup; for a hit, the backend's own entry says whether the flow may keep it
/// (up, and serving the VIP the packet is addressed to), so no VIP lookup is needed. A TCP SYN
/// is not looked up: it takes the ring whatever the table holds, and [`from_ring`]'s insert
/// finds out whether the table holds it (one walk of the table for a new connection, not two).
#[inline(always)]
pub fn flow(pkt: &Packet) -> Flow {
    if is_syn(pkt) {
        return Flow::Miss;
    }
    let entry = if LB_BENCH_FIXED_FLOW.load() != 0 {
        BENCH_FLOW.get_ptr_mut(0)
    } else {
        FLOWS.get_ptr_mut(&pkt.key)
    };
    let Some(entry) = entry else {
        return Flow::Miss;
    };
    match established(entry, pkt) {
        Some(c) => Flow::Hit(c),
        None => Flow::Stale(entry),
    }
}

#[inline(always)]
fn established(flow: *mut FlowValue, pkt: &Packet) -> Option<Chosen> {
    // Safety: the entry stays valid under RCU for this program run.
    let (id, hash, seen) = unsafe { ((*flow).backend, (*flow).hash, (*flow).last_seen_ns) };
    let be = BACKENDS.get(id)?;
    let k = &pkt.key;
    let port = u16::from_ne_bytes(pkt.dport());
    if be.state & BACKEND_UP == 0
        || be.vip.family != k.family
        || be.vip.proto != k.proto
        || (be.vip.port_be != 0 && be.vip.port_be != port)
        || !crate::parse::eq16(&be.vip.addr, &k.dst)
    {
        return None;
    }
    if k.proto == PROTO_UDP {
        let now = now();
        if now.saturating_sub(seen) >= be.udp_idle_s as u64 * 1_000_000_000 {
            return None;
        }
        // UDP has no handshake to tell a new flow: its entry ages by the clock (written only
        // when the clock moved, so most packets of a busy flow leave its line clean).
        if now != seen {
            unsafe { (*flow).last_seen_ns = now };
        }
    }
    Some(Chosen { id, be, hash })
}

/// The ring's backend for this packet, recorded in the flow table (in `entry` when the table
/// holds the 5-tuple already): `Ok(None)` when the VIP has no live backend.
#[inline(always)]
pub fn from_ring(
    pkt: &Packet,
    vip: &VipValue,
    entry: Option<*mut FlowValue>,
) -> Result<Option<Chosen>, Fault> {
    let Some(c) = without_flow(pkt, vip)? else {
        return Ok(None);
    };
    let id = c.id;
    // The clock is read only where it matters: UDP ages by it, TCP does not.
    let seen = if pkt.key.proto == PROTO_UDP { now() } else { 0 };
    // Overwritten in place: no update call, and the entry keeps its place in the LRU.
    let overwrite = |e: *mut FlowValue| {
        // Safety: the entry stays valid under RCU for this program run.
        unsafe {
            (*e).backend = id;
            (*e).hash = c.hash;
            (*e).last_seen_ns = seen;
        }
        stats::new_flow(id);
    };
    match entry {
        Some(e) => overwrite(e),
        None => {
            let value = FlowValue {
                backend: id,
                hash: c.hash,
                last_seen_ns: seen,
            };
            // A full table evicts its least recently used entry.
            match FLOWS.insert(&pkt.key, &value, BPF_NOEXIST as u64) {
                Ok(()) => {
                    stats::flow(FLOW_INSERTS);
                    stats::new_flow(id);
                }
                // The table holds the 5-tuple. A SYN was not looked up before (see `flow`):
                // its pick replaces the entry's. Any other packet: another CPU added the flow
                // meanwhile, which only costs a re-pick on the next packet.
                Err(_) if is_syn(pkt) => {
                    if let Some(e) = FLOWS.get_ptr_mut(&pkt.key) {
                        overwrite(e);
                    }
                }
                Err(_) => {}
            }
        }
    }
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
    if be.family != pkt.key.family {
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

/// The ring's backend for the packet, if the slot names one, and the flow hash.
#[inline(always)]
fn pick(pkt: &Packet, vip: &VipValue) -> Result<(Option<u32>, u32), Fault> {
    if vip.ring_size == 0 || vip.ring_size > RING_STRIDE || vip.id >= MAX_VIPS {
        return Err(Fault);
    }
    let key = &pkt.key;
    let h = flow_hash(&key.src, &key.dst, pkt.sport(), pkt.dport(), key.proto);
    let slot = h % vip.ring_size;
    let id = *RINGS
        .get(ring_index(vip.id, vip.active_ring, slot))
        .ok_or(Fault)?;
    if id == NO_BACKEND {
        return Ok((None, h));
    }
    Ok((Some(id), h))
}

/// Whether the packet opens a TCP connection (SYN without ACK): it takes the ring even when
/// the table holds its 5-tuple, so a reused port meets today's ring.
#[inline(always)]
pub fn is_syn(pkt: &Packet) -> bool {
    pkt.key.proto == PROTO_TCP
        && pkt.tcp_flags & (crate::parse::TCP_SYN | crate::parse::TCP_ACK) == crate::parse::TCP_SYN
}
