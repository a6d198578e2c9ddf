//! The last slots of a ring, claimed without probing.
//!
//! With k slots left free a probe finds one with odds k/m: the last √m or so slots would
//! cost about half of all the probes of a build. Instead each turn computes, for every free
//! slot s, where it stands in the backend's permutation, j = (s − offset) × skip⁻¹ (mod m),
//! and claims the free slot with the least j: the very slot the probing would reach first,
//! since every slot before it in the permutation is taken. That costs k per turn, k²/2 in
//! all, against m × ln(k) probes.
use super::{Bitmap, Walk};

/// How many free slots the endgame starts with: about √m (0: probe to the end).
pub(super) fn size(walk: &[Walk], m: u64) -> u64 {
    // The arithmetic in `first_in` is exact in doubles while 2m² < 2^53, and packs j with
    // an index below 2^(32 - bits of m) into 32 bits. skip⁻¹ exists when m is prime.
    if m >= 1 << 24 || walk.iter().any(|w| w.inverse == 0) {
        return 0;
    }
    let index_bits = (m - 1).leading_zeros() - 32;
    ((m as f64).sqrt() as u64).min(1 << index_bits)
}

/// Claims every free slot, turn by turn, starting with walk `from`.
pub(super) fn finish(walk: &mut [Walk], from: usize, taken: &Bitmap, ring: &mut [u32], max_w: u64) {
    let m = ring.len() as u64;
    // Slot numbers as doubles, the form `first_in` computes with (exact: m < 2^24).
    let mut free: Vec<f64> = Vec::new();
    for (i, &word) in taken.0.iter().enumerate() {
        let mut bits = !word;
        while bits != 0 {
            let s = i as u64 * 64 + bits.trailing_zeros() as u64;
            if s < m {
                free.push(s as f64);
            }
            bits &= bits - 1;
        }
    }
    let consts = Consts::new(m);
    let mut turn = from;
    while !free.is_empty() {
        if turn == walk.len() {
            turn = 0;
        }
        let w = &mut walk[turn];
        turn += 1;
        if !w.takes_turn(max_w) {
            continue;
        }
        let i = first_in(
            &free,
            (m - w.offset as u64) as f64,
            w.inverse as f64,
            &consts,
        );
        ring[free.swap_remove(i) as usize] = w.index;
    }
}

pub(super) struct Consts {
    m: f64,
    /// 1/m, rounded.
    recip: f64,
    /// Bits below j in a packed (j, index) key.
    index_bits: u32,
}

impl Consts {
    pub(super) fn new(m: u64) -> Consts {
        Consts {
            m: m as f64,
            recip: 1.0 / m as f64,
            index_bits: (m - 1).leading_zeros() - 32,
        }
    }
}

/// The index in `free` of the slot with the least j = (s + back) × inverse (mod m).
pub(super) fn first_in(free: &[f64], back: f64, inverse: f64, c: &Consts) -> usize {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { first_in_avx2(free, back, inverse, c) };
    }
    first_in_portable(free, back, inverse, c)
}

/// The same loop, compiled for AVX2: LLVM vectorises it eight slots at a time.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn first_in_avx2(free: &[f64], back: f64, inverse: f64, c: &Consts) -> usize {
    first_in_portable(free, back, inverse, c)
}

#[inline(always)]
pub(super) fn first_in_portable(free: &[f64], back: f64, inverse: f64, c: &Consts) -> usize {
    // Adding and taking away 1.5 × 2^52 rounds a double below 2^51 to an integer.
    const ROUND: f64 = 6_755_399_441_055_744.0;
    let mut least = u32::MAX;
    for (i, &s) in free.iter().enumerate() {
        // All exact: (s + back) < 2m and inverse < m, so x < 2^49; q is x/m rounded
        // one way or the other, so x - q·m lies in [-m, m) and one addition fixes it.
        let x = (s + back) * inverse;
        let q = (x * c.recip + ROUND) - ROUND;
        let r = x - q * c.m;
        let j = if r < 0.0 { r + c.m } else { r };
        // SAFETY: j is a whole number in [0, m), m < 2^24: it fits an i32.
        let j = unsafe { j.to_int_unchecked::<i32>() } as u32;
        least = least.min(j << c.index_bits | i as u32);
    }
    (least & ((1 << c.index_bits) - 1)) as usize
}
