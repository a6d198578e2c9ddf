//! Step 9: per-CPU counters: no atomics needed, nothing per packet leaves the kernel. A
//! packet sent to a backend updates one counter, the backend's [`sent`]; the agent derives
//! its outcome's, its VIP's and the flow hits' totals from those (`lb_common::counter`).
use aya_ebpf::maps::PerCpuArray;
use lb_common::Traffic;

use crate::maps::{
    BACKEND_FLOWS, BACKEND_RETRIES, BACKEND_SENT, BACKEND_STATS, FLOW_STATS, STATS, VIP_STATS,
};

/// Whether a program counts: every program the agent runs does (`way::Production`); a
/// benchmark program that measures what counting costs does not.
pub trait Counting {
    const ON: bool;
}

#[inline(always)]
fn add<C: Counting>(map: &PerCpuArray<Traffic>, index: u32, len: u64) {
    if !C::ON {
        return;
    }
    if let Some(t) = map.get_ptr_mut(index) {
        // Per-CPU value: this CPU is the only writer.
        unsafe {
            (*t).packets += 1;
            (*t).bytes += len;
        }
    }
}

#[inline(always)]
pub fn count<C: Counting>(c: u32, len: u64) {
    add::<C>(&STATS, c, len);
}

#[inline(always)]
pub fn vip<C: Counting>(id: u32, len: u64) {
    add::<C>(&VIP_STATS, id, len);
}

#[inline(always)]
pub fn backend<C: Counting>(id: u32, len: u64) {
    add::<C>(&BACKEND_STATS, id, len);
}

/// A packet of `len` bytes sent to backend `id`: redirected or sent back out (`XDP_TX`), and
/// whether the flow table kept the backend (`hit`). Its outcome, VIP and flow-hit counts are
/// this one's.
#[inline(always)]
pub fn sent<C: Counting>(id: u32, redirect: bool, hit: bool, len: u64) {
    if !C::ON {
        return;
    }
    if let Some(s) = BACKEND_SENT.get_ptr_mut(id) {
        // Per-CPU value: this CPU is the only writer.
        unsafe {
            let t = if redirect {
                &mut (*s).redirect
            } else {
                &mut (*s).tx
            };
            t.packets += 1;
            t.bytes += len;
            (*s).hits += hit as u64;
        }
    }
}

#[inline(always)]
pub fn flow<C: Counting>(index: u32) {
    one::<C>(&FLOW_STATS, index);
}

/// A new flow recorded for backend `id`.
#[inline(always)]
pub fn new_flow<C: Counting>(id: u32) {
    one::<C>(&BACKEND_FLOWS, id);
}

/// A SYN the client repeated while its flow to backend `id` was on probation (passive health).
#[inline(always)]
pub fn syn_retry<C: Counting>(id: u32) {
    one::<C>(&BACKEND_RETRIES, id);
}

/// One more in entry `index` of a per-CPU count.
#[inline(always)]
fn one<C: Counting>(map: &PerCpuArray<u64>, index: u32) {
    if !C::ON {
        return;
    }
    if let Some(n) = map.get_ptr_mut(index) {
        // Safety: this CPU's value, this program its only writer now.
        unsafe { *n += 1 };
    }
}
