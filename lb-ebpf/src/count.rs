//! Step 8: per-CPU counters: no atomics needed, nothing per packet leaves the kernel.
use aya_ebpf::{Global, maps::PerCpuArray};
use lb_common::Traffic;

use crate::maps::{BACKEND_FLOWS, BACKEND_STATS, FLOW_STATS, STATS, VIP_STATS};

/// Whether the program counts (1, always, but for the benchmark that measures what counting
/// costs). A load-time constant: the verifier drops the code it turns off.
#[unsafe(no_mangle)]
static LB_COUNTERS: Global<u8> = Global::new(1);

#[inline(always)]
fn on() -> bool {
    LB_COUNTERS.load() != 0
}

#[inline(always)]
fn add(map: &PerCpuArray<Traffic>, index: u32, len: u64) {
    if !on() {
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
pub fn count(c: u32, len: u64) {
    add(&STATS, c, len);
}

#[inline(always)]
pub fn vip(id: u32, len: u64) {
    add(&VIP_STATS, id, len);
}

#[inline(always)]
pub fn backend(id: u32, len: u64) {
    add(&BACKEND_STATS, id, len);
}

#[inline(always)]
pub fn flow(index: u32) {
    if !on() {
        return;
    }
    if let Some(n) = FLOW_STATS.get_ptr_mut(index) {
        unsafe { *n += 1 };
    }
}

/// A new flow recorded for backend `id`.
#[inline(always)]
pub fn new_flow(id: u32) {
    if !on() {
        return;
    }
    if let Some(n) = BACKEND_FLOWS.get_ptr_mut(id) {
        unsafe { *n += 1 };
    }
}
