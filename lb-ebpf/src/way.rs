//! The way walked: the entry points' bodies call each step in its order and count the
//! packet's outcome once.
use aya_ebpf::{Global, bindings::xdp_action, programs::XdpContext};
use lb_common::{Counter, FLOW_HITS, FlowSlot};

use crate::{
    admit, capture,
    count::{self, Counting},
    decap,
    flow_table::{self, Lookup},
    guard, icmp,
    packet::Packet,
    parse,
    parse::Stop,
    ring, send, trace,
    verdict::{Fault, Verdict},
    vip,
};

/// What a balancer program is built with: how it counts and where it looks flows up. Every
/// program the agent runs is [`Production`]; the benchmark programs change one of the two to
/// measure what it costs.
pub trait Variant: Counting + Lookup {}

impl<T: Counting + Lookup> Variant for T {}

/// The programs the agent runs: counted, flows in the flow cache and the flow table.
pub struct Production;

impl Counting for Production {
    const ON: bool = true;
}

impl Lookup for Production {
    const CACHED: bool = true;
    #[inline(always)]
    fn find(pkt: &Packet) -> (Option<(*mut FlowSlot, u32)>, u64) {
        flow_table::find(pkt)
    }
}

/// Whether the capture hook is in the program: 0 in the program the agent runs, 1 in the one
/// it swaps in while `lb capture` runs. A load-time constant: the verifier drops the code it
/// turns off.
#[unsafe(no_mangle)]
static LB_CAPTURE_HOOK: Global<u8> = Global::new(1);

/// Counts the outcome once (a packet sent to a backend is counted there, by [`send`]), offers
/// the packet to a running capture, and turns the verdict into the action.
#[inline(always)]
fn finish<C: Counting>(ctx: &XdpContext, len: u64, r: Result<Verdict, Fault>) -> u32 {
    let v = r.unwrap_or(Verdict::new(xdp_action::XDP_ABORTED, Counter::Aborted));
    if !sent(v.counter) {
        count::count::<C>(v.counter, len);
    }
    trace::outcome(ctx, v.counter, len);
    if LB_CAPTURE_HOOK.load() != 0 {
        capture::hook(ctx, &v);
    }
    v.action
}

/// `xdp_lb`'s body, for its entry point: balances the packet and counts the outcome.
#[inline(always)]
pub fn run_lb<V: Variant>(ctx: &XdpContext) -> u32 {
    let len = (ctx.data_end() - ctx.data()) as u64;
    finish::<V>(ctx, len, balance::<V>(ctx, len))
}

/// `xdp_decap`'s body.
#[inline(always)]
pub fn run_decap(ctx: &XdpContext) -> u32 {
    let len = (ctx.data_end() - ctx.data()) as u64;
    finish::<Production>(ctx, len, Ok(decap::decap(ctx)))
}

#[inline(always)]
fn balance<V: Variant>(ctx: &XdpContext, len: u64) -> Result<Verdict, Fault> {
    // Left uninitialised until parsed: zeroing it first would cost a call to BPF's
    // byte-at-a-time memset on every packet.
    let mut pkt = core::mem::MaybeUninit::<Packet>::uninit();
    let frame = crate::mem::Frame {
        start: ctx.data(),
        end: ctx.data_end(),
    };
    let vip_checked = match guard::quick_pass(&frame) {
        guard::Quick::Pass(v) => return Ok(v),
        guard::Quick::MaybeVip => true,
        guard::Quick::Parse => false,
    };
    match parse::parse(&frame, &mut pkt, vip_checked) {
        Ok(()) => {}
        Err(Stop::Verdict(v)) => return Ok(v),
        Err(Stop::Echo(request)) => return Ok(icmp::echo::answer(&frame, &request)),
        Err(Stop::OtherProtocol(dst)) => return Ok(vip::unbalanced(&dst, Counter::PassNotVip)),
    }
    // Safety: parse wrote the whole packet when it returned Ok.
    // (By reference: taken by value, the 56 bytes would be copied to another stack slot.)
    let pkt = unsafe { pkt.assume_init_ref() };
    if pkt.fragment {
        let Some(vip) = vip::fragment_vip(pkt) else {
            let dst = vip::destination(pkt);
            return Ok(vip::unbalanced(&dst, Counter::PassFragment));
        };
        if let Some(v) = admit::admit(pkt, &vip, false) {
            count::vip::<V>(vip.id, len);
            return Ok(v.of_vip(vip.id));
        }
        let Some(c) = ring::without_flow(pkt, &vip)? else {
            count::vip::<V>(vip.id, len);
            return Ok(Verdict::drop(Counter::DropNoBackend).of_vip(vip.id));
        };
        return send::<V>(ctx, pkt, c, len, false);
    }
    // An established flow: one flow-table lookup and the backend's entry, no VIP lookup.
    let record = match flow_table::flow::<V>(pkt) {
        flow_table::Flow::Hit(c) => return send::<V>(ctx, pkt, c, len, true),
        flow_table::Flow::Stale(slot, h, now) => flow_table::Record::Slot(slot, h, now),
        flow_table::Flow::Miss(h, now) => flow_table::Record::New(h, now),
    };
    let Some(vip) = vip::vip(pkt) else {
        // ICMP errors to a VIP address pass as they always did.
        if pkt.icmp_error {
            return Ok(Verdict::pass(Counter::PassNotVip));
        }
        return Ok(vip::unbalanced(&vip::destination(pkt), Counter::PassNotVip));
    };
    // An ICMP error about a flow the table does not hold: the backend the ring gives the flow,
    // which is the one that answered it unless the ring changed since; never recorded.
    if pkt.icmp_error {
        let Some(c) = ring::without_flow(pkt, &vip)? else {
            count::vip::<V>(vip.id, len);
            return Ok(Verdict::drop(Counter::DropNoBackend).of_vip(vip.id));
        };
        return send::<V>(ctx, pkt, c, len, false);
    }
    let new = matches!(record, flow_table::Record::New(..));
    if let Some(v) = admit::admit(pkt, &vip, new) {
        count::vip::<V>(vip.id, len);
        return Ok(v.of_vip(vip.id));
    }
    let Some(c) = ring::from_ring::<V>(pkt, &vip, record)? else {
        count::vip::<V>(vip.id, len);
        return Ok(Verdict::drop(Counter::DropNoBackend).of_vip(vip.id));
    };
    trace::new_flow(
        ctx,
        vip.id,
        c.id,
        u16::from_be_bytes(pkt.sport()),
        u16::from_be_bytes(pkt.dport()),
    );
    send::<V>(ctx, pkt, c, len, false)
}

/// Whether an outcome is a packet sent to a backend, counted in the backend's entry alone.
#[inline(always)]
fn sent(counter: u32) -> bool {
    counter == Counter::Tx as u32 || counter == Counter::Redirect as u32
}

/// Encapsulates toward the chosen backend and sends. A packet sent is counted once, in the
/// backend's entry (with `hit`: whether the flow table kept its backend); any other outcome
/// (a drop, an ICMP answer) for its VIP, its outcome, its backend where not dropped, and a
/// hit apart.
#[inline(always)]
fn send<C: Counting>(
    ctx: &XdpContext,
    pkt: &Packet,
    c: flow_table::Chosen,
    len: u64,
    hit: bool,
) -> Result<Verdict, Fault> {
    let backend = c.be;
    let verdict = send::encap_and_send(ctx, pkt, backend, c.hash)?.of_vip(backend.vip_id);
    if sent(verdict.counter) {
        count::sent::<C>(c.id, verdict.counter == Counter::Redirect as u32, hit, len);
        return Ok(verdict);
    }
    count::vip::<C>(backend.vip_id, len);
    if verdict.action != xdp_action::XDP_DROP {
        count::backend::<C>(c.id, len);
    }
    if hit {
        count::flow::<C>(FLOW_HITS);
    }
    Ok(verdict)
}
