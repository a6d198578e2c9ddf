//! Steps 3 and 4: the flow table, then Maglev. An established flow keeps its backend while
//! that backend is up and serves the packet's VIP; a TCP SYN, a miss, a stale UDP entry or a
//! down backend takes the VIP's live ring: the 5-tuple's hash picks a slot, the slot names the
//! backend, and the flow table remembers it.
use aya_ebpf::{
    Global,
    helpers::generated::{bpf_jiffies64, bpf_ktime_get_coarse_ns},
};
use lb_common::{
    BACKEND_UP, Backend, FLOW_INSERTS, FLOW_STAMP_NS, FlowSlot, MAX_VIPS, NO_BACKEND, PROTO_TCP,
    PROTO_UDP, RING_STRIDE, VipValue, flow_check, flow_table_hash, hash::flow_hash, ring_index,
};

use crate::{
    flows,
    maps::{BACKENDS, BENCH_FLOW, CLOCK, RINGS},
    parse::Packet,
    stats,
    verdict::Fault,
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
    /// The 5-tuple's ring hash (the outer IPv6 flow label is made of it).
    pub hash: u32,
}

/// What the flow table says of a packet. A miss carries the packet's table hash, which the
/// insert needs next.
pub enum Flow {
    /// An established flow that keeps its backend.
    Hit(Chosen),
    /// The table holds the 5-tuple but the packet takes the ring (a backend down or gone, an
    /// idle UDP flow): the slot to overwrite with the ring's pick, and the 5-tuple's table hash.
    Stale(*mut FlowSlot, u64),
    /// A 5-tuple the table does not hold, and its table hash.
    Miss(u64),
}

/// Benchmarks only, 0 in every program the agent loads: 1 puts one array entry, whatever the
/// packet, where the flow-table lookup (and the hash it starts with) is, so that the benchmark
/// can tell what the lookup itself costs. A load-time constant: the verifier removes the side
/// not taken.
#[unsafe(no_mangle)]
static LB_BENCH_FIXED_FLOW: Global<u8> = Global::new(0);

/// One flow-table lookup; for a hit, the backend's own entry says whether the flow may keep it
/// (up, and serving the VIP the packet is addressed to), so no VIP lookup is needed. A TCP SYN
/// is not looked up: it takes the ring whatever the table holds, and [`from_ring`]'s insert
/// finds out whether the table holds it (one walk of the set for a new connection, not two).
#[inline(always)]
pub fn flow(pkt: &Packet) -> Flow {
    if is_syn(pkt) {
        return Flow::Miss(flow_table_hash(&pkt.key));
    }
    if LB_BENCH_FIXED_FLOW.load() != 0 {
        return match BENCH_FLOW.get_ptr_mut(0) {
            // The slot's own check stands in for the table hash (its low half).
            Some(slot) => {
                let t = flows::tag(slot);
                settle(slot, t as u32, t >> 32, pkt)
            }
            None => Flow::Miss(flow_table_hash(&pkt.key)),
        };
    }
    let h = flow_table_hash(&pkt.key);
    match flows::find(&pkt.key, h) {
        Some((slot, id)) => settle(slot, id, h, pkt),
        None => Flow::Miss(h),
    }
}

/// A hit if the flow may keep backend `id`, else the slot to overwrite.
#[inline(always)]
fn settle(slot: *mut FlowSlot, id: u32, h: u64, pkt: &Packet) -> Flow {
    match established(slot, id, pkt) {
        Some(c) => Flow::Hit(c),
        None => Flow::Stale(slot, h),
    }
}

#[inline(always)]
fn established(slot: *mut FlowSlot, id: u32, pkt: &Packet) -> Option<Chosen> {
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
    // Safety: the slot stays valid for this program run.
    let (seen, hash) = unsafe { ((*slot).last_seen_ns, (*slot).hash) };
    let now = now();
    // UDP has no handshake to tell a new flow: its entry ages by the clock. The stamp lags the
    // flow's last packet by less than FLOW_STAMP_NS, so the flow counts as idle only past
    // `udp_idle` plus that (0, in tests only: every packet takes the ring).
    let idle = be.udp_idle_s as u64 * 1_000_000_000;
    let limit = if idle == 0 { 0 } else { idle + FLOW_STAMP_NS };
    if k.proto == PROTO_UDP && now.saturating_sub(seen) >= limit {
        return None;
    }
    // The set's eviction order; written only when the clock is FLOW_STAMP_NS past it, so
    // nearly every packet of a busy flow leaves its line clean.
    if now >= seen.saturating_add(FLOW_STAMP_NS) {
        unsafe { (*slot).last_seen_ns = now };
    }
    Some(Chosen { id, be, hash })
}

/// Where [`from_ring`] records its pick: the slot that held the 5-tuple, or none yet; with the
/// 5-tuple's table hash.
pub enum Record {
    Slot(*mut FlowSlot, u64),
    New(u64),
}

/// The ring's backend for this packet, recorded in the flow table: `Ok(None)` when the VIP has
/// no live backend.
#[inline(always)]
pub fn from_ring(pkt: &Packet, vip: &VipValue, at: Record) -> Result<Option<Chosen>, Fault> {
    let Some(c) = without_flow(pkt, vip)? else {
        return Ok(None);
    };
    let id = c.id;
    let now = now();
    match at {
        // Overwritten in place: the slot keeps its key and ring hash. The check written is
        // this 5-tuple's, not read back from the slot: should another CPU have given the slot
        // to another flow meanwhile, that flow's key then sits under this check, which neither
        // flow's lookup matches (a miss, never this pick for that flow).
        Record::Slot(s, h) => {
            // Safety: the slot stays valid for this program run.
            let seen = unsafe { (*s).last_seen_ns };
            flows::set_tag(s, id, flow_check(h));
            if now > seen {
                unsafe { (*s).last_seen_ns = now };
            }
        }
        // A full set gives up its least recently seen flow. A SYN was not looked up before
        // (see `flow`): if the table holds its 5-tuple, its pick replaces the entry's. Any
        // other packet: another CPU may have added the flow meanwhile, and this pick (the
        // same ring slot) replaces it.
        Record::New(h) => {
            if flows::insert(&pkt.key, h, c.hash, id, now).ok_or(Fault)? {
                stats::flow(FLOW_INSERTS);
            }
        }
    }
    stats::new_flow(id);
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

/// The ring's backend for the packet, if the slot names one, and the ring hash.
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
