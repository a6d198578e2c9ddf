//! The balancer as the agent runs it, its benchmark variants, the baselines, and the trivial
//! programs of a test fabric.
use aya_ebpf::{
    bindings::xdp_action,
    helpers::{bpf_get_smp_processor_id, generated::bpf_xdp_adjust_head},
    macros::xdp,
    programs::XdpContext,
};
use lb_ebpf::{
    mem,
    way::{self, Production, Variant},
};

use crate::{
    maps::BENCH_SEQ,
    variants::{FixedFlow, Uncounted},
};

// `inline(always)` on every balancer entry point, as in the production object: an outlined
// body would cost every packet a BPF-to-BPF call.

/// `xdp_lb` as the production object has it, for comparisons of two builds on the wire.
#[xdp]
#[inline(always)]
pub fn xdp_lb(ctx: XdpContext) -> u32 {
    way::run_lb::<Production>(&ctx)
}

/// `xdp_lb` with one fixed flow entry in place of the table, on the wire.
#[xdp]
#[inline(always)]
pub fn xdp_lb_fixed_flow(ctx: XdpContext) -> u32 {
    way::run_lb::<FixedFlow>(&ctx)
}

/// `xdp_lb`'s whole path, then the frame put back as it came (the outer header stripped, the
/// saved Ethernet header restored). BPF_PROG_TEST_RUN's repeat loop reuses one buffer; without
/// this every run after the first would see the previous run's output and measure another
/// path. [`xdp_bench_floor`] measures what the restoring costs, to subtract it.
#[xdp]
#[inline(always)]
pub fn xdp_lb_bench(ctx: XdpContext) -> u32 {
    restoring::<Production>(&ctx)
}

/// [`xdp_lb_bench`] without counters.
#[xdp]
#[inline(always)]
pub fn xdp_lb_bench_uncounted(ctx: XdpContext) -> u32 {
    restoring::<Uncounted>(&ctx)
}

/// [`xdp_lb_bench`] with one fixed flow entry in place of the table.
#[xdp]
#[inline(always)]
pub fn xdp_lb_bench_fixed_flow(ctx: XdpContext) -> u32 {
    restoring::<FixedFlow>(&ctx)
}

#[inline(always)]
fn restoring<V: Variant>(ctx: &XdpContext) -> u32 {
    let Some(saved) = mem::read::<[u8; 18]>(ctx, 0) else {
        return way::run_lb::<V>(ctx);
    };
    let before = ctx.data_end() - ctx.data();
    let action = way::run_lb::<V>(ctx);
    let grown = (ctx.data_end() - ctx.data()).saturating_sub(before);
    // At most an outer IPv6 header and UDP (gue).
    if grown > 0 && grown <= 48 {
        restore(ctx, grown as i32, saved);
    }
    action
}

/// [`xdp_lb_bench`] on a 5-tuple the flow table has not seen. Before each run the source port
/// and three bytes of the source address (untagged IPv4 with a 20-byte header) take the CPU's
/// number and the next value of its sequence, so every run is a new flow (ring pick and flow
/// insert), whichever CPU the kernel runs it on.
#[xdp]
#[inline(always)]
pub fn xdp_lb_bench_new(ctx: XdpContext) -> u32 {
    if let Some(seq) = BENCH_SEQ.get_ptr_mut(0) {
        // Safety: per-CPU value, this CPU is its only writer.
        let n = unsafe {
            *seq = (*seq).wrapping_add(1);
            *seq
        };
        if let Some(sport) = mem::ptr_at_mut::<[u8; 2]>(&ctx, 14 + 20) {
            unsafe { sport.write_unaligned((n as u16).to_be_bytes()) };
        }
        let cpu = unsafe { bpf_get_smp_processor_id() } as u8;
        let hi = ((n >> 16) as u16).to_be_bytes();
        if let Some(src) = mem::ptr_at_mut::<[u8; 3]>(&ctx, 14 + 13) {
            unsafe { src.write_unaligned([cpu, hi[0], hi[1]]) };
        }
        // The IPv4 header checksum anew (the program checks it). A one's-complement sum is the
        // same in either byte order, so the words are summed as they lie.
        if let Some(ip) = mem::ptr_at_mut::<[u16; 10]>(&ctx, 14) {
            let w = ip as *mut u16;
            // Safety: ptr_at_mut checked the 20 bytes; unaligned accesses.
            unsafe {
                w.add(5).write_unaligned(0);
                let mut sum = 0u32;
                for i in 0..10 {
                    sum += w.add(i).read_unaligned() as u32;
                }
                w.add(5).write_unaligned(!lb_common::hash::csum_fold(sum));
            }
        }
    }
    restoring::<Production>(&ctx)
}

/// The restoring of [`xdp_lb_bench`] around nothing, after a grow by an outer IPv4 header (it
/// has to undo one): the grow, the shrink, the Ethernet header restored. The grow is not the
/// wrapper's but the path's own (the encapsulation grows the head itself), so the benchmark
/// takes it out again with [`xdp_bench_floor_twice`].
#[xdp]
pub fn xdp_bench_floor(ctx: XdpContext) -> u32 {
    let Some(saved) = mem::read::<[u8; 18]>(&ctx, 0) else {
        return xdp_action::XDP_TX;
    };
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -20) } == 0 {
        restore(&ctx, 20, saved);
    }
    xdp_action::XDP_TX
}

/// [`xdp_bench_floor`] with one more grow and shrink: the difference of the two is what a
/// grow and a shrink of the head cost (two calls of one helper).
#[xdp]
pub fn xdp_bench_floor_twice(ctx: XdpContext) -> u32 {
    let Some(saved) = mem::read::<[u8; 18]>(&ctx, 0) else {
        return xdp_action::XDP_TX;
    };
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -20) } == 0
        && unsafe { bpf_xdp_adjust_head(ctx.ctx, 20) } == 0
        && unsafe { bpf_xdp_adjust_head(ctx.ctx, -20) } == 0
    {
        restore(&ctx, 20, saved);
    }
    xdp_action::XDP_TX
}

#[inline(always)]
fn restore(ctx: &XdpContext, grown: i32, saved: [u8; 18]) {
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, grown) } != 0 {
        return;
    }
    if let Some(p) = mem::ptr_at_mut::<[u8; 18]>(ctx, 0) {
        unsafe { p.write_unaligned(saved) };
    }
}

/// A test fabric's switch port (a veth peer must run an XDP program for frames sent to it with
/// XDP_TX or a redirect to arrive), and the non-VIP baseline.
#[xdp]
pub fn xdp_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// The ceiling: every frame straight back out.
#[xdp]
pub fn xdp_tx(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_TX
}

/// It reads the packet without a bounds check, which the verifier must refuse. The tests load
/// it to prove how a verifier rejection is reported.
#[xdp]
pub fn xdp_reject(ctx: XdpContext) -> u32 {
    unsafe { core::ptr::read_volatile(ctx.data() as *const u32) }
}
