//! The flow cache against a reference model: random sequences of packets (SYNs, established
//! packets, TCP and UDP), ring changes, backends going down and up, drains, restarts, floods of
//! new flows, flows the agent forgets, and time passing, run through the data path's algorithm
//! twice: with the cache in front of the table (as `xdp_lb` runs) and with the table alone (the
//! reference). Both are built from the layout and rules the program uses (`lb_common::flow`
//! and `lb_common::flow_cache`); the program's own reading of them is proven through
//! BPF_PROG_TEST_RUN in `tests/tests/flow_cache.rs`. What must hold:
//! 1. whenever the cache answers a packet, the table, read at that moment, gives the same
//!    backend and ring hash (the cache holds nothing the table does not);
//! 2. every packet of a flow that neither run lost (evicted or forgotten) since it began goes
//!    to the same backend in both runs;
//! 3. a promoted flow is never evicted while its last packet is within its keep time, and a UDP
//!    flow never counts as idle before it has been idle its idle time: the cache's run keeps
//!    live flows as the table alone does, though their stamps are refreshed once an epoch.
use std::collections::{HashMap, HashSet};

use lb_common::{
    FLOW_KEEP_S, FLOW_PROMOTED, FLOW_STAMP_NS, FLOW_WAYS, FlowCacheEntry, FlowKey, FlowSlot,
    PROTO_TCP, PROTO_UDP, Ways, flow_cache_index, flow_check, flow_kept, flow_set_base,
    flow_table_hash, flow_udp_idle,
};
use proptest::prelude::*;

const SETS: u32 = 2;
const RING: usize = 8;
const BACKENDS: usize = 4;
/// The model's cache: the real entry and index, folded onto a few slots so that flows share them.
const CACHE: usize = 4;
const KEEP_S: u32 = 5;
const SEC: u64 = 1_000_000_000;

#[derive(Clone, Debug)]
enum Op {
    /// A packet of flow `n` (a SYN when TCP and `syn`).
    Packet { n: usize, syn: bool },
    /// The ring gets new slots (an add, a removal, a weight change, a drain: only the slots
    /// matter here).
    Ring([u8; RING]),
    /// A backend goes down or up (its entry's state; the agent rebuilds the ring after, which
    /// a `Ring` may or may not follow).
    Health { b: usize, up: bool },
    /// The agent starts again: a new program, the pinned table, an empty cache.
    Restart,
    /// `k` one-packet flows from elsewhere (a flood).
    Flood { k: u8 },
    /// The agent takes flow `n` out of the table (an ACL change), then wipes the cache.
    Forget { n: usize },
    /// Time passes.
    Wait { ms: u32 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..12usize, 0..4u8).prop_map(|(n, r)| Op::Packet { n, syn: n % 2 == 1 && r == 0 }),
        1 => prop::array::uniform8(0..BACKENDS as u8).prop_map(Op::Ring),
        1 => (0..BACKENDS, any::<bool>()).prop_map(|(b, up)| Op::Health { b, up }),
        1 => Just(Op::Restart),
        1 => (1..12u8).prop_map(|k| Op::Flood { k }),
        1 => (0..12usize).prop_map(|n| Op::Forget { n }),
        4 => (0..3000u32).prop_map(|ms| Op::Wait { ms }),
    ]
}

/// The flow's key: flows 0-11 are the ones watched (even: UDP; odd: TCP), others the flood's.
fn key(n: usize) -> FlowKey {
    let mut k = FlowKey {
        proto: if n.is_multiple_of(2) {
            PROTO_UDP
        } else {
            PROTO_TCP
        },
        family: lb_common::FAMILY_V4,
        ..FlowKey::default()
    };
    k.src[..4].copy_from_slice(&[198, 18, (n >> 8) as u8, n as u8]);
    k.dst[..4].copy_from_slice(&[198, 19, 0, 1]);
    k.ports = [0x9c, 0x40 + (n % 7) as u8, 0, 80];
    k
}

/// The ring's hash of the flow (the model's: any fixed function of the flow will do).
fn ring_hash(n: usize) -> u32 {
    (n as u32).wrapping_mul(0x9e37_79b9) ^ 0x5bd1_e995
}

/// One run of the data path: the table, and the cache if it has one.
struct Path {
    cached: bool,
    slots: Vec<FlowSlot>,
    cache: Vec<FlowCacheEntry>,
}

/// What the data path shares between the two runs: the agent's state.
struct World {
    ring: [u8; RING],
    up: [bool; BACKENDS],
    now: u64,
}

enum Found {
    Hit(u32, u32),
    Stale(usize),
    Miss,
}

impl Path {
    fn new(cached: bool) -> Self {
        Path {
            cached,
            slots: vec![FlowSlot::default(); (SETS * FLOW_WAYS) as usize],
            cache: vec![FlowCacheEntry::default(); CACHE],
        }
    }

    fn cache_slot(h: u64) -> usize {
        flow_cache_index(h) as usize % CACHE
    }

    /// The slot holding `k`, as `slots::find` looks.
    fn find(&self, k: &FlowKey, h: u64) -> Option<usize> {
        let base = flow_set_base(h, SETS);
        (base..base + FLOW_WAYS)
            .map(|i| i as usize)
            .find(|&i| self.slots[i].check == flow_check(h) && self.slots[i].key == *k)
    }

    /// The table's answer for an established packet at `now`, without changing anything.
    fn table_says(&self, w: &World, k: &FlowKey, h: u64) -> Found {
        let Some(i) = self.find(k, h) else {
            return Found::Miss;
        };
        let s = &self.slots[i];
        let be = s.backend as usize;
        if !w.up[be] || (k.proto == PROTO_UDP && flow_udp_idle(s.last_seen_ns, w.now, KEEP_S)) {
            return Found::Stale(i);
        }
        Found::Hit(s.backend, s.hash)
    }

    /// A packet through the path: the backend it goes to.
    fn packet(&mut self, w: &World, n: usize, syn: bool, log: &mut Log) -> u32 {
        let k = key(n);
        let h = flow_table_hash(&k);
        let at = if syn && k.proto == PROTO_TCP {
            None
        } else {
            let e = self.cache[Self::cache_slot(h)];
            if let Some((b, rh)) = FlowCacheEntry::lookup(e.tag, e.stamp, h, w.now)
                && self.cached
                && w.up[b as usize]
            {
                // Property 1: the table, read now, says the same.
                match self.table_says(w, &k, h) {
                    Found::Hit(tb, trh) => assert_eq!((tb, trh), (b, rh), "flow {n}"),
                    _ => panic!("flow {n}: the cache names {b}, the table has no hit"),
                }
                log.cached += 1;
                return b;
            }
            match self.table_says(w, &k, h) {
                Found::Hit(b, rh) => {
                    let i = self.find(&k, h).unwrap();
                    let s = &mut self.slots[i];
                    if w.now >= s.last_seen_ns.saturating_add(FLOW_STAMP_NS) {
                        s.last_seen_ns = w.now;
                    }
                    s.state |= FLOW_PROMOTED;
                    let e = &mut self.cache[Self::cache_slot(h)];
                    let taken = e.tag != 0
                        && !FlowCacheEntry::tag_is(e.tag, h)
                        && FlowCacheEntry::current(e.stamp, w.now);
                    if self.cached && !taken {
                        *e = FlowCacheEntry::new(h, b, rh, w.now);
                    }
                    return b;
                }
                Found::Stale(i) => {
                    if k.proto == PROTO_UDP
                        && flow_udp_idle(self.slots[i].last_seen_ns, w.now, KEEP_S)
                    {
                        log.idle.push(n);
                    }
                    Some(i)
                }
                Found::Miss => None,
            }
        };
        // The ring, and the record.
        let b = w.ring[ring_hash(n) as usize % RING];
        let held = at.is_some() || self.find(&k, h).is_some();
        let e = &mut self.cache[Self::cache_slot(h)];
        if held && FlowCacheEntry::tag_is(e.tag, h) {
            e.tag = 0;
        }
        match at {
            Some(i) => {
                let s = &mut self.slots[i];
                s.backend = b as u32;
                s.check = flow_check(h);
                s.state = KEEP_S & FLOW_KEEP_S;
                s.last_seen_ns = s.last_seen_ns.max(w.now);
            }
            None => self.insert(w, &k, h, ring_hash(n), b as u32, log),
        }
        b as u32
    }

    fn insert(&mut self, w: &World, k: &FlowKey, h: u64, rh: u32, b: u32, log: &mut Log) {
        let base = flow_set_base(h, SETS);
        let mut ways = Ways::new();
        for way in 0..FLOW_WAYS {
            let s = &self.slots[(base + way) as usize];
            let mine = s.check == flow_check(h) && s.key == *k;
            ways.see(
                way,
                mine,
                s.last_seen_ns,
                flow_kept(s.state, s.last_seen_ns, w.now),
            );
        }
        let Some((way, new)) = ways.choice() else {
            log.unrecorded.insert(*k);
            return;
        };
        let i = (base + way) as usize;
        if new && self.slots[i].key.family != 0 {
            log.evicted.push((self.slots[i].key, self.slots[i].state));
        }
        self.slots[i] = FlowSlot {
            backend: b,
            check: flow_check(h),
            last_seen_ns: ways.stamp(w.now),
            key: *k,
            hash: rh,
            state: KEEP_S & FLOW_KEEP_S,
        };
        log.unrecorded.remove(k);
    }

    fn forget(&mut self, n: usize) {
        let k = key(n);
        if let Some(i) = self.find(&k, flow_table_hash(&k)) {
            self.slots[i] = FlowSlot::default();
        }
        // The agent waits for running programs, then wipes the cache.
        self.cache.fill(FlowCacheEntry::default());
    }
}

/// What a run did besides sending: flows it evicted, UDP flows it found idle, flows it could
/// not record.
#[derive(Default)]
struct Log {
    evicted: Vec<(FlowKey, u32)>,
    idle: Vec<usize>,
    unrecorded: HashSet<FlowKey>,
    /// Packets the cache answered.
    cached: u64,
}

/// Runs `ops` through both paths; the cached run's log.
fn run(ops: &[Op]) -> Log {
    let mut w = World {
        ring: [0, 1, 2, 3, 0, 1, 2, 3],
        up: [true; BACKENDS],
        now: 100 * SEC,
    };
    let (mut cached, mut table) = (Path::new(true), Path::new(false));
    let (mut lc, mut lt) = (Log::default(), Log::default());
    // Per watched flow: its last packet, whether it was promoted, and whether either run lost
    // it (evicted, forgotten, not recorded, or idle) since it began.
    let mut last: HashMap<usize, u64> = HashMap::new();
    let mut lost: HashSet<usize> = HashSet::new();
    let mut flood = 1000;
    for op in ops {
        match *op {
            Op::Packet { n, syn } => {
                if syn {
                    lost.remove(&n);
                }
                let a = cached.packet(&w, n, syn, &mut lc);
                let b = table.packet(&w, n, syn, &mut lt);
                // Property 3, UDP: never idle before it has been idle KEEP_S.
                for l in [&mut lc, &mut lt] {
                    for m in l.idle.drain(..) {
                        let gap = w.now - last.get(&m).copied().unwrap_or(0);
                        assert!(gap >= KEEP_S as u64 * SEC, "flow {m} idle after {gap} ns");
                        lost.insert(m);
                    }
                }
                if lc.unrecorded.contains(&key(n)) || lt.unrecorded.contains(&key(n)) {
                    lost.insert(n);
                }
                if !lost.contains(&n) {
                    assert_eq!(a, b, "flow {n}: the cached run and the table alone differ");
                }
                last.insert(n, w.now);
            }
            Op::Ring(r) => w.ring = r,
            Op::Health { b, up } => w.up[b] = up,
            Op::Restart => cached.cache.fill(FlowCacheEntry::default()),
            Op::Flood { k } => {
                for _ in 0..k {
                    flood += 1;
                    cached.packet(&w, flood, true, &mut lc);
                    table.packet(&w, flood, true, &mut lt);
                }
            }
            Op::Forget { n } => {
                cached.forget(n);
                table.forget(n);
                lost.insert(n);
            }
            Op::Wait { ms } => w.now += ms as u64 * 1_000_000,
        }
        // Property 3, eviction: no promoted flow within its keep time is evicted, in either run.
        for l in [&mut lc, &mut lt] {
            for (k, state) in l.evicted.drain(..) {
                let Some(n) = (0..12).find(|&n| key(n) == k) else {
                    continue;
                };
                let promoted = state & FLOW_PROMOTED != 0;
                let gap = w.now - last.get(&n).copied().unwrap_or(0);
                assert!(
                    !promoted || gap >= KEEP_S as u64 * SEC,
                    "flow {n} evicted {gap} ns after its last packet"
                );
                lost.insert(n);
            }
        }
    }
    lc
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    #[test]
    fn the_cache_sends_every_packet_where_the_table_alone_would(
        ops in prop::collection::vec(op(), 1..200)
    ) {
        run(&ops);
    }
}

/// The epoch ends, the flow's next packet reads the table (and refreshes it), and the cache
/// answers again: a flow busy for a minute in a table under a flood keeps its entry.
#[test]
fn a_busy_flow_keeps_its_entry_under_a_flood_though_it_reads_the_cache() {
    let mut ops = vec![
        Op::Packet { n: 1, syn: true },
        Op::Packet { n: 1, syn: false },
    ];
    for _ in 0..600 {
        ops.push(Op::Wait { ms: 100 });
        ops.push(Op::Packet { n: 1, syn: false });
        ops.push(Op::Flood { k: 8 });
    }
    // About one packet in ten (the first of each epoch) reads the table.
    let log = run(&ops);
    assert!(
        log.cached >= 500,
        "{} of 600 packets answered by the cache",
        log.cached
    );
}
