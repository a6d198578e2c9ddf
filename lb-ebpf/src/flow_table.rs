//! Step 3: the flow table. An established flow keeps its backend while that backend is up and
//! serves the packet's VIP; a TCP SYN, a miss, a stale UDP entry or a down backend takes the
//! ring (step 5), and the table remembers the pick. The table itself, its slots and sets:
//! [`slots`]; a busy flow's packets read a copy of its entry from a small cache in front of
//! it instead ([`cache`]).
use aya_ebpf::{
    Global,
    helpers::generated::{bpf_jiffies64, bpf_ktime_get_coarse_ns},
};
use lb_common::{
    BACKEND_UP, Backend, FLOW_INSERTS, FLOW_PROMOTED, FLOW_STAMP_NS, FLOW_UNRECORDED, FlowSlot,
    PROTO_TCP, PROTO_UDP, flow_check, flow_table_hash, flow_udp_idle,
};

use crate::{
    count::{self, Counting},
    maps::{BACKENDS, CLOCK},
    packet::Packet,
    verdict::Fault,
};

mod cache;
pub mod slots;

/// Seconds an established TCP flow's entry is kept against eviction by new flows after its
/// last packet (`agent.tcp_idle`): a load-time constant. (A UDP flow's is its VIP's
/// `udp_idle`, from the backend's entry.)
#[unsafe(no_mangle)]
static LB_TCP_IDLE_S: Global<u32> = Global::new(lb_common::TCP_IDLE_DEFAULT_S);

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
/// insert needs next, and the clock's reading, which it stamps the entry with.
pub enum Flow {
    /// An established flow that keeps its backend.
    Hit(Chosen),
    /// The table holds the 5-tuple but the packet takes the ring (a backend down or gone, an
    /// idle UDP flow): the slot to overwrite with the ring's pick, the 5-tuple's table hash,
    /// and the clock.
    Stale(*mut FlowSlot, u64, u64),
    /// A 5-tuple the table does not hold, its table hash, and the clock.
    Miss(u64, u64),
}

/// Where a packet's flow is looked up: in the cache, then the table ([`find`], every program
/// the agent runs); a benchmark program puts one fixed entry there instead, to measure what
/// the lookup costs.
pub trait Lookup {
    /// Whether the flow cache stands in front of [`Lookup::find`].
    const CACHED: bool;
    /// The slot holding the packet's 5-tuple and the backend it names, if any; and the
    /// 5-tuple's table hash (a miss's insert needs it next).
    fn find(pkt: &Packet) -> (Option<(*mut FlowSlot, u32)>, u64);
}

/// The table's slot for the packet's 5-tuple, if it holds it, and the 5-tuple's table hash.
#[inline(always)]
pub fn find(pkt: &Packet) -> (Option<(*mut FlowSlot, u32)>, u64) {
    let h = flow_table_hash(&pkt.key);
    (slots::find(&pkt.key, h), h)
}

/// What the cache, else the table, says of the packet's flow; for a hit, the backend's own
/// entry says whether the flow may keep it (up, and serving the VIP the packet is addressed
/// to), so no VIP lookup is needed. A TCP SYN is not looked up: it takes the ring whatever the
/// table holds, and [`record`]'s insert finds out whether the table holds it (one walk of the
/// set for a new connection, not two).
#[inline(always)]
pub fn flow<L: Lookup>(pkt: &Packet) -> Flow {
    let now = now();
    if is_syn(pkt) {
        return Flow::Miss(flow_table_hash(&pkt.key), now);
    }
    let (found, h) = if L::CACHED {
        let h = flow_table_hash(&pkt.key);
        if let Some(c) = cache::get(pkt, h, now) {
            return Flow::Hit(c);
        }
        (slots::find(&pkt.key, h), h)
    } else {
        L::find(pkt)
    };
    let Some((slot, id)) = found else {
        return Flow::Miss(h, now);
    };
    match established(slot, id, pkt, now) {
        Some(c) => {
            if L::CACHED {
                cache::put(h, &c, now);
            }
            Flow::Hit(c)
        }
        None => Flow::Stale(slot, h, now),
    }
}

/// Whether backend `be` may take a packet of an established flow: it is up, and serves the
/// VIP the packet is addressed to.
#[inline(always)]
fn takes(be: &Backend, pkt: &Packet) -> bool {
    let k = &pkt.key;
    let port = u16::from_ne_bytes(pkt.dport());
    be.state & BACKEND_UP != 0
        && be.vip.family == k.family
        && be.vip.proto == k.proto
        && (be.vip.port_be == 0 || be.vip.port_be == port)
        && crate::mem::eq16(&be.vip.addr, &k.dst)
}

#[inline(always)]
fn established(slot: *mut FlowSlot, id: u32, pkt: &Packet, now: u64) -> Option<Chosen> {
    let be = BACKENDS.get(id)?;
    if !takes(be, pkt) {
        return None;
    }
    // Safety: the slot stays valid for this program run.
    let (seen, hash, state) = unsafe { ((*slot).last_seen_ns, (*slot).hash, (*slot).state) };
    // UDP has no handshake to tell a new flow: its entry ages by the clock.
    if pkt.key.proto == PROTO_UDP && flow_udp_idle(seen, now, be.udp_idle_s) {
        return None;
    }
    // The set's eviction order; written only when the clock is FLOW_STAMP_NS past it, so
    // nearly every packet of a busy flow leaves its line clean.
    if now >= seen.saturating_add(FLOW_STAMP_NS) {
        unsafe { (*slot).last_seen_ns = now };
    }
    // A second packet (no SYN is looked up): the flow is established, and no new flow may
    // take its entry while it is within its keep time.
    if state & FLOW_PROMOTED == 0 {
        unsafe { (*slot).state = state | FLOW_PROMOTED };
    }
    Some(Chosen { id, be, hash })
}

/// Where [`from_ring`] records its pick: the slot that held the 5-tuple, or none yet; with the
/// 5-tuple's table hash and the clock's reading.
pub enum Record {
    Slot(*mut FlowSlot, u64, u64),
    New(u64, u64),
}

/// Records the ring's pick `c` in the table, at `at`, on probation.
#[inline(always)]
pub fn record<C: Counting>(pkt: &Packet, at: Record, c: &Chosen) -> Result<(), Fault> {
    let (id, hash) = (c.id, c.hash);
    let keep_s = if pkt.key.proto == PROTO_UDP {
        c.be.udp_idle_s
    } else {
        LB_TCP_IDLE_S.load()
    };
    match at {
        // Overwritten in place: the slot keeps its key and ring hash. The check written is
        // this 5-tuple's, not read back from the slot: should another CPU have given the slot
        // to another flow meanwhile, that flow's key then sits under this check, which neither
        // flow's lookup matches (a miss, never this pick for that flow).
        // The cache must not go on naming what the table held before this pick. (A flow new
        // to the table has no entry in the cache: one is copied only from a hit in the table,
        // of a flow kept there beyond the entry's epoch; the agent wipes the cache after it
        // takes flows out.)
        Record::Slot(s, h, now) => {
            cache::forget(h);
            // Safety: the slot stays valid for this program run.
            let seen = unsafe { (*s).last_seen_ns };
            slots::set_tag(s, id, flow_check(h));
            unsafe { (*s).state = keep_s & lb_common::FLOW_KEEP_S };
            if now > seen {
                unsafe { (*s).last_seen_ns = now };
            }
        }
        // A full set gives up its least recently seen flow that is not kept. A SYN was not
        // looked up before (see `flow`): if the table holds its 5-tuple, its pick replaces the
        // entry's. Any other packet: another CPU may have added the flow meanwhile, and this
        // pick (the same ring slot) replaces it.
        Record::New(h, now) => {
            match slots::insert(&pkt.key, h, hash, id, now, keep_s).ok_or(Fault)? {
                slots::Inserted::New => count::flow::<C>(FLOW_INSERTS),
                slots::Inserted::Again { retry_of } => {
                    cache::forget(h);
                    if retry_of != slots::NO_RETRY {
                        count::syn_retry::<C>(retry_of);
                    }
                }
                slots::Inserted::Full => count::flow::<C>(FLOW_UNRECORDED),
            }
        }
    }
    Ok(())
}

/// Whether the packet opens a TCP connection (SYN without ACK): it takes the ring even when
/// the table holds its 5-tuple, so a reused port meets today's ring.
#[inline(always)]
pub fn is_syn(pkt: &Packet) -> bool {
    pkt.key.proto == PROTO_TCP
        && pkt.tcp_flags & (crate::wire::TCP_SYN | crate::wire::TCP_ACK) == crate::wire::TCP_SYN
}
