//! Maglev consistent hashing (Eisenbud et al., NSDI 2016), weighted.
//!
//! Each backend walks its own permutation of the `m` slots (an offset and a skip derived from
//! its address alone) and claims the next free slot on its turn. Weights decide how often a
//! backend takes a turn: every round each backend earns its weight in credit, and claims one
//! slot per `max weight` of credit. With equal weights that is one slot each per round, so the
//! counts differ by at most one. Backends are ordered by address before the walk, so the ring
//! depends on the set of (address, weight) alone: every balancer with the same config builds
//! the same ring.
use std::net::IpAddr;

use lb_common::{NO_BACKEND, hash::hash_bytes};

const OFFSET_SEED: u32 = 0x6d61_676c;
const SKIP_SEED: u32 = 0x6576_3031;

fn key(addr: &IpAddr) -> Vec<u8> {
    match addr {
        IpAddr::V4(a) => [&[4u8][..], &a.octets()].concat(),
        IpAddr::V6(a) => [&[6u8][..], &a.octets()].concat(),
    }
}

/// A ring's fingerprint: a 64-bit FNV-1a hash of the backend address in every slot (in slot
/// order; an empty slot hashes as such), as 16 hex digits. Two balancers with the same
/// fingerprint for a VIP send every 5-tuple to the same backend, whatever ids they use.
pub fn fingerprint(ring: &[u32], backends: &[IpAddr]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= *b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    eat(&(ring.len() as u32).to_le_bytes());
    // Each backend's bytes once, not once per slot.
    let keys: Vec<Vec<u8>> = backends.iter().map(key).collect();
    for &i in ring {
        match keys.get(i as usize) {
            Some(k) => eat(k),
            None => eat(&[0]),
        }
    }
    format!("{h:016x}")
}

/// Builds a ring of `m` slots (`m` prime). Each slot holds the index into `backends` of the
/// backend it sends to, or [`NO_BACKEND`] when no backend has a weight above zero.
///
/// The walk is most of the work: some m × ln(m) probes in all, most of them on taken slots
/// near the end. Three things keep it short. The taken slots are a bitmap (8 KiB for
/// m = 65537, so it stays in the first-level cache where the ring does not). While most
/// slots are free, a claim looks at its next few slots and picks the first free one
/// without a branch: which probes hit a taken slot is random, so a branch on each
/// mispredicts often, and a mispredicted branch costs more than several probes. And the
/// last few slots (about √m) are not probed for at all: see [`endgame`].
pub fn build(backends: &[(IpAddr, u32)], m: u32) -> Vec<u32> {
    assert!(m >= 2, "ring size {m}");
    let mut order: Vec<(Vec<u8>, usize)> = (0..backends.len())
        .filter(|&i| backends[i].1 > 0)
        .map(|i| (key(&backends[i].0), i))
        .collect();
    let mut ring = vec![NO_BACKEND; m as usize];
    if order.is_empty() {
        return ring;
    }
    order.sort();
    let max_w = order.iter().map(|&(_, i)| backends[i].1).max().unwrap_or(1) as u64;
    let mut walk: Vec<Walk> = order
        .iter()
        .map(|(k, i)| {
            let skip = hash_bytes(SKIP_SEED, k) % (m - 1) + 1;
            let offset = hash_bytes(OFFSET_SEED, k) % m;
            Walk {
                next: offset,
                skip,
                wrap_at: m - skip,
                index: *i as u32,
                offset,
                inverse: inverse(skip as u64, m as u64) as u32,
                weight: backends[*i].1 as u64,
                credit: 0,
                skip2: (2 * skip as u64 % m as u64) as u32,
                wrap_at2: m - (2 * skip as u64 % m as u64) as u32,
            }
        })
        .collect();
    let mut at = Progress {
        filled: 0,
        turn: 0,
        taken: Bitmap(vec![0u64; (m as usize).div_ceil(64)]),
    };
    // How many slots a claim looks at without a branch, by how full the ring is: the fewer
    // slots are free, the more probes a claim takes, and the more it pays to look at several
    // at once. Beyond seven eighths most claims take many probes whatever the window, and
    // a wider one only adds work: there the walk probes in pairs instead (window 0, see
    // `Walk::claim_in_pairs`). Measured for N = 100: windows of 2, 3, 4 up to 3/8, 5/8,
    // 7/8 took a tenth off a build against a window of 2 up to 3/4; probing in blocks of 4
    // or 8, one branch a block, all the way made it half again slower, and so did blocks of
    // 8 probed with AVX2 (a gather from the bitmap) from seven eighths on.
    let m64 = m as u64;
    let endgame_at = m64 - endgame::size(&walk, m64);
    at.walk_until::<2>(&mut walk, &mut ring, max_w, m64 * 3 / 8);
    at.walk_until::<3>(&mut walk, &mut ring, max_w, m64 * 5 / 8);
    at.walk_until::<4>(&mut walk, &mut ring, max_w, m64 * 7 / 8);
    at.walk_until::<0>(&mut walk, &mut ring, max_w, endgame_at);
    if at.filled < m64 {
        endgame::finish(&mut walk, at.turn, &at.taken, &mut ring, max_w);
    }
    ring
}

/// One backend's walk through its permutation offset + j × skip (mod m).
struct Walk {
    next: u32,
    skip: u32,
    /// m - skip: from here on, a step wraps around.
    wrap_at: u32,
    index: u32,
    offset: u32,
    /// skip⁻¹ (mod m), or 0 where there is none (m not prime).
    inverse: u32,
    weight: u64,
    credit: u64,
    /// 2 × skip (mod m), and m minus it: the step of [`Walk::claim_in_pairs`]'s two chains.
    skip2: u32,
    wrap_at2: u32,
}

impl Walk {
    /// Every round each backend earns its weight in credit and claims one slot per `max_w`
    /// of it: at most one, since the credit stays below `max_w` between rounds.
    #[inline(always)]
    fn takes_turn(&mut self, max_w: u64) -> bool {
        self.credit += self.weight;
        let turn = self.credit >= max_w;
        if turn {
            self.credit -= max_w;
        }
        turn
    }

    /// The slot after `c` in this walk: c + skip, less m where that passes m.
    #[inline(always)]
    fn step(&self, c: u32) -> u32 {
        step(c, self.skip, self.wrap_at)
    }

    /// The first free slot from `next` on (the caller marks it taken). The first `LOOK`
    /// slots are looked at together and the first free one among them picked without a
    /// branch; only when all are taken does the loop probe on.
    #[inline(always)]
    fn claim<const LOOK: usize>(&mut self, taken: &Bitmap) -> u32 {
        let mut seen = [self.next; LOOK];
        for i in 1..LOOK {
            seen[i] = self.step(seen[i - 1]);
        }
        let mut c = self.step(seen[LOOK - 1]);
        for &s in seen.iter().rev() {
            c = std::hint::select_unpredictable(taken.has(s), c, s);
        }
        // The step is computed before the test, so that the loop has one branch and
        // nothing to copy.
        loop {
            let after = self.step(c);
            if !taken.has(c) {
                self.next = after;
                return c;
            }
            c = after;
        }
    }

    /// [`Walk::claim`] for a ring nearly full, where a claim takes many probes: two chains,
    /// from `next` and the slot after it, each stepping 2 × skip, probe the walk two slots at
    /// a time. One step of the chain (two cycles) then covers two probes, and the loop has one
    /// branch per pair; the first free slot of the pair is picked without a branch. Took some
    /// 4% off a build for N = 100 against probing one at a time from seven eighths on.
    #[inline(always)]
    fn claim_in_pairs(&mut self, taken: &Bitmap) -> u32 {
        let mut a = self.next;
        let mut b = self.step(a);
        loop {
            let (free_a, free_b) = (!taken.has(a), !taken.has(b));
            let next_a = step(a, self.skip2, self.wrap_at2);
            let next_b = step(b, self.skip2, self.wrap_at2);
            if free_a | free_b {
                self.next = std::hint::select_unpredictable(free_a, b, next_a);
                return std::hint::select_unpredictable(free_a, a, b);
            }
            (a, b) = (next_a, next_b);
        }
    }
}

/// Where a build stands: the slots filled, whose turn is next, the slots taken.
struct Progress {
    filled: u64,
    turn: usize,
    taken: Bitmap,
}

impl Progress {
    /// Turns, in order, until `until` slots are filled.
    fn walk_until<const LOOK: usize>(
        &mut self,
        walk: &mut [Walk],
        ring: &mut [u32],
        max_w: u64,
        until: u64,
    ) {
        let (mut filled, mut turn) = (self.filled, self.turn);
        if filled >= until {
            return;
        }
        'walk: loop {
            for w in &mut walk[turn..] {
                turn += 1;
                if !w.takes_turn(max_w) {
                    continue;
                }
                // A window of 0: the walk probes in pairs.
                let c = if LOOK == 0 {
                    w.claim_in_pairs(&self.taken)
                } else {
                    w.claim::<LOOK>(&self.taken)
                };
                self.taken.set(c);
                // SAFETY: a walk's slots are below m, the ring's length (see `Bitmap`).
                unsafe { *ring.get_unchecked_mut(c as usize) = w.index };
                filled += 1;
                if filled == until {
                    break 'walk;
                }
            }
            turn = 0;
        }
        (self.filled, self.turn) = (filled, turn);
    }
}

/// c + skip, or c + skip − m where c ≥ wrap_at = m − skip (c < m).
///
/// This is the probe loop's loop-carried chain, so its latency bounds the last stretch of a
/// build (most of its probes). The shortest form compares c while both candidates are
/// computed, then picks one: two cycles. Written in Rust, LLVM folds the two candidates
/// into c + (c ≥ wrap_at ? skip − m : skip), an add after the pick: three cycles, and a
/// build measured 10% slower in its last stretch. Hence the instructions by hand on x86-64.
#[inline(always)]
fn step(c: u32, skip: u32, wrap_at: u32) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        let next: u32;
        // SAFETY: register arithmetic only: no memory, no stack, flags clobbered (the
        // default for asm!).
        unsafe {
            std::arch::asm!(
                "lea {next:e}, [{c:e} + {skip:e}]",
                "mov {wrapped:e}, {c:e}",
                "sub {wrapped:e}, {wrap_at:e}",
                "cmp {c:e}, {wrap_at:e}",
                "cmovae {next:e}, {wrapped:e}",
                next = out(reg) next,
                wrapped = out(reg) _,
                c = in(reg) c,
                skip = in(reg) skip,
                wrap_at = in(reg) wrap_at,
                options(pure, nomem, nostack),
            );
        }
        next
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        step_portable(c, skip, wrap_at)
    }
}

/// [`step`] in plain Rust: what the hand-written form must compute.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
#[inline(always)]
fn step_portable(c: u32, skip: u32, wrap_at: u32) -> u32 {
    std::hint::select_unpredictable(c >= wrap_at, c.wrapping_sub(wrap_at), c.wrapping_add(skip))
}

/// a⁻¹ (mod m) by the extended Euclidean algorithm, or 0 when a and m share a factor.
fn inverse(a: u64, m: u64) -> u64 {
    let (mut t, mut nt, mut r, mut nr) = (0i64, 1i64, m as i64, a as i64);
    while nr != 0 {
        let q = r / nr;
        (t, nt) = (nt, t - q * nt);
        (r, nr) = (nr, r - q * nr);
    }
    if r == 1 {
        t.rem_euclid(m as i64) as u64
    } else {
        0
    }
}

mod endgame;

/// One bit per slot of the ring, in ⌈m/64⌉ words.
///
/// Indexing skips the bounds check (4% of a build): every slot a walk reaches is below m,
/// since it starts at its offset (< m) and `Walk::step` maps [0, m) onto itself.
struct Bitmap(Vec<u64>);

impl Bitmap {
    #[inline(always)]
    fn has(&self, i: u32) -> bool {
        debug_assert!(((i >> 6) as usize) < self.0.len());
        // SAFETY: i < m, so i / 64 < ⌈m/64⌉ (see above).
        unsafe { *self.0.get_unchecked((i >> 6) as usize) & (1 << (i & 63)) != 0 }
    }
    #[inline(always)]
    fn set(&mut self, i: u32) {
        debug_assert!(((i >> 6) as usize) < self.0.len());
        // SAFETY: as in `has`.
        unsafe { *self.0.get_unchecked_mut((i >> 6) as usize) |= 1 << (i & 63) };
    }
}

/// How many slots each of `n` backends holds.
pub fn slot_counts(ring: &[u32], n: usize) -> Vec<u64> {
    let mut counts = vec![0u64; n];
    for &s in ring {
        if let Some(c) = counts.get_mut(s as usize) {
            *c += 1;
        }
    }
    counts
}

#[cfg(test)]
mod tests;
