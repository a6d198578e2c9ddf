//! The entry points: thin wrappers that run one core function and count its verdict once.
use aya_ebpf::{Global, bindings::xdp_action, macros::xdp, programs::XdpContext};
use lb_common::{Counter, FLOW_HITS};

use aya_ebpf::helpers::generated::bpf_xdp_adjust_head;

use crate::{
    capture, count, decap, flow_table, guard, mem, parse, ring, send, trace,
    verdict::{FAULT, Fault, GO_ON, Verdict},
    vip,
};

/// Whether the capture hook is in the program: 0 in the program the agent runs, 1 in the one
/// it swaps in while `lb capture` runs. A load-time constant: the verifier drops the code it
/// turns off.
#[unsafe(no_mangle)]
static LB_CAPTURE_HOOK: Global<u8> = Global::new(1);

/// Counts the outcome once, offers the packet to a running capture, and turns the verdict
/// into the action.
#[inline(always)]
fn finish(ctx: &XdpContext, len: u64, r: Result<Verdict, Fault>) -> u32 {
    let v = r.unwrap_or(Verdict::new(xdp_action::XDP_ABORTED, Counter::Aborted));
    count::count(v.counter, len);
    trace::outcome(ctx, v.counter, len);
    if LB_CAPTURE_HOOK.load() != 0 {
        capture::hook(ctx, &v);
    }
    v.action
}

// `inline(always)` on the entry points: `#[xdp]` wraps the function in the program's entry
// and leaves the inlining of one into the other to LLVM, which outlines a big body (it did once
// `established` grew by a few instructions): a BPF-to-BPF call then costs every packet a
// return through the SRSO thunk on this kernel, ~10 ns, a third of a non-VIP packet's time.
#[xdp]
#[inline(always)]
pub fn xdp_lb(ctx: XdpContext) -> u32 {
    run_lb(&ctx)
}

#[inline(always)]
fn run_lb(ctx: &XdpContext) -> u32 {
    let len = (ctx.data_end() - ctx.data()) as u64;
    finish(ctx, len, balance(ctx, len))
}

/// Benchmarks only, never attached: `xdp_lb`'s whole path, then the frame put back as it came
/// (the outer header stripped, the saved Ethernet header restored). BPF_PROG_TEST_RUN's repeat
/// loop reuses one buffer; without this every run after the first would see the previous
/// run's output and measure another path. [`xdp_bench_floor`] measures what the restoring
/// costs, to subtract it.
#[xdp]
#[inline(always)]
pub fn xdp_lb_bench(ctx: XdpContext) -> u32 {
    lb_restoring(&ctx)
}

#[inline(always)]
fn lb_restoring(ctx: &XdpContext) -> u32 {
    let Some(saved) = mem::read::<[u8; 18]>(ctx, 0) else {
        return run_lb(ctx);
    };
    let before = ctx.data_end() - ctx.data();
    let action = run_lb(ctx);
    let grown = (ctx.data_end() - ctx.data()).saturating_sub(before);
    if grown > 0 && grown <= 40 {
        restore(ctx, grown as i32, saved);
    }
    action
}

/// Benchmarks only, never attached: [`xdp_lb_bench`] on a 5-tuple the flow table has not seen.
/// Before each run the source port and three bytes of the source address (untagged IPv4 with a
/// 20-byte header) take the CPU's number and the next value of its sequence, so every run is a
/// new flow (ring pick and flow insert), whichever CPU the kernel runs it on.
#[xdp]
#[inline(always)]
pub fn xdp_lb_bench_new(ctx: XdpContext) -> u32 {
    if let Some(seq) = crate::maps::BENCH_SEQ.get_ptr_mut(0) {
        // Safety: per-CPU value, this CPU is its only writer.
        let n = unsafe {
            *seq = (*seq).wrapping_add(1);
            *seq
        };
        if let Some(sport) = mem::ptr_at_mut::<[u8; 2]>(&ctx, 14 + 20) {
            unsafe { sport.write_unaligned((n as u16).to_be_bytes()) };
        }
        let cpu = unsafe { aya_ebpf::helpers::bpf_get_smp_processor_id() } as u8;
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
    lb_restoring(&ctx)
}

/// Benchmarks only: the restoring of [`xdp_lb_bench`] around nothing, after a grow by an outer
/// IPv4 header (it has to undo one): the grow, the shrink, the Ethernet header restored. The
/// grow is not the wrapper's but the path's own (the encapsulation grows the head itself), so
/// the benchmark takes it out again with [`xdp_bench_floor_twice`].
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

/// Benchmarks only: [`xdp_bench_floor`] with one more grow and shrink: the difference of the
/// two is what a grow and a shrink of the head cost (two calls of one helper).
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

#[inline(always)]
fn balance(ctx: &XdpContext, len: u64) -> Result<Verdict, Fault> {
    // Left uninitialised until parsed: zeroing it first would cost a call to BPF's
    // byte-at-a-time memset on every packet.
    let mut pkt = core::mem::MaybeUninit::<parse::Packet>::uninit();
    let frame = crate::mem::Frame {
        start: ctx.data(),
        end: ctx.data_end(),
    };
    let vip_checked = match guard::quick_pass(&frame) {
        guard::Quick::Pass(v) => return Ok(v),
        guard::Quick::MaybeVip => true,
        guard::Quick::Parse => false,
    };
    match parse::parse_packed(frame, &mut pkt, vip_checked) {
        GO_ON => {}
        v => return Ok(Verdict::unpack(v)),
    }
    // Safety: parse_packed wrote the whole packet when it said GO_ON.
    // (By reference: taken by value, the 56 bytes would be copied to another stack slot.)
    let pkt = unsafe { pkt.assume_init_ref() };
    if pkt.fragment {
        let Some(vip) = vip::fragment_vip(pkt) else {
            return Ok(Verdict::pass(Counter::PassFragment));
        };
        let Some(c) = ring::without_flow(pkt, &vip)? else {
            count::vip(vip.id, len);
            return Ok(Verdict::drop(Counter::DropNoBackend).of_vip(vip.id));
        };
        return send(ctx, pkt, c, len);
    }
    // An established flow: one flow-table lookup and the backend's entry, no VIP lookup.
    let record = match flow_table::flow(pkt) {
        flow_table::Flow::Hit(c) => {
            count::flow(FLOW_HITS);
            return send(ctx, pkt, c, len);
        }
        flow_table::Flow::Stale(slot, h) => flow_table::Record::Slot(slot, h),
        flow_table::Flow::Miss(h) => flow_table::Record::New(h),
    };
    let Some(vip) = vip::vip(pkt) else {
        return Ok(Verdict::pass(Counter::PassNotVip));
    };
    // An ICMP error about a flow the table does not hold: the backend the ring gives the flow,
    // which is the one that answered it unless the ring changed since; never recorded.
    if pkt.icmp_error {
        let Some(c) = ring::without_flow(pkt, &vip)? else {
            count::vip(vip.id, len);
            return Ok(Verdict::drop(Counter::DropNoBackend).of_vip(vip.id));
        };
        return send(ctx, pkt, c, len);
    }
    let Some(c) = ring::from_ring(pkt, &vip, record)? else {
        count::vip(vip.id, len);
        return Ok(Verdict::drop(Counter::DropNoBackend).of_vip(vip.id));
    };
    trace::new_flow(
        ctx,
        vip.id,
        c.id,
        u16::from_be_bytes(pkt.sport()),
        u16::from_be_bytes(pkt.dport()),
    );
    send(ctx, pkt, c, len)
}

/// Encapsulates toward the chosen backend and sends; counts the packet for its VIP and
/// backend.
#[inline(always)]
fn send(
    ctx: &XdpContext,
    pkt: &parse::Packet,
    c: flow_table::Chosen,
    len: u64,
) -> Result<Verdict, Fault> {
    let backend = c.be;
    count::vip(backend.vip_id, len);
    let verdict = match send::encap_and_send_packed(ctx, pkt, backend, c.hash) {
        FAULT => return Err(Fault),
        v => Verdict::unpack(v).of_vip(backend.vip_id),
    };
    if verdict.action != xdp_action::XDP_DROP {
        count::backend(c.id, len);
    }
    Ok(verdict)
}

#[xdp]
#[inline(always)]
pub fn xdp_decap(ctx: XdpContext) -> u32 {
    let len = (ctx.data_end() - ctx.data()) as u64;
    finish(&ctx, len, Ok(decap::decap(&ctx)))
}

#[xdp]
pub fn xdp_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[xdp]
pub fn xdp_tx(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_TX
}

/// Never attached by lb: it reads the packet without a bounds check, which the verifier must
/// refuse. The tests load it to prove how a verifier rejection is reported.
#[xdp]
pub fn xdp_reject(ctx: XdpContext) -> u32 {
    unsafe { core::ptr::read_volatile(ctx.data() as *const u32) }
}
