//! The entry points: thin wrappers that run one core function and count its verdict once.
use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use lb_common::Counter;

use crate::{decap, lookup, parse, pick, send, stats};

/// What became of a packet: the action for the kernel and the counter it lands in.
pub struct Verdict {
    pub action: u32,
    pub counter: Counter,
}

impl Verdict {
    pub const fn pass(counter: Counter) -> Self {
        Verdict {
            action: xdp_action::XDP_PASS,
            counter,
        }
    }
    pub const fn drop(counter: Counter) -> Self {
        Verdict {
            action: xdp_action::XDP_DROP,
            counter,
        }
    }
}

/// A real internal fault: a map entry that must exist did not. Counted and `XDP_ABORTED`.
pub struct Fault;

/// Counts the outcome once and turns it into the action.
#[inline(always)]
fn finish(len: u64, r: Result<Verdict, Fault>) -> u32 {
    let v = r.unwrap_or(Verdict {
        action: xdp_action::XDP_ABORTED,
        counter: Counter::Aborted,
    });
    stats::count(v.counter, len);
    v.action
}

#[xdp]
pub fn xdp_lb(ctx: XdpContext) -> u32 {
    let len = (ctx.data_end() - ctx.data()) as u64;
    finish(len, balance(&ctx, len))
}

#[inline(always)]
fn balance(ctx: &XdpContext, len: u64) -> Result<Verdict, Fault> {
    let pkt = match parse::parse(ctx) {
        Ok(p) => p,
        Err(v) => return Ok(v),
    };
    let Some(vip) = lookup::vip(&pkt) else {
        return Ok(Verdict::pass(Counter::PassNotVip));
    };
    stats::vip(vip.id, len);
    let Some((backend_id, backend)) = pick::backend(&pkt, &vip)? else {
        return Ok(Verdict::drop(Counter::DropNoBackend));
    };
    let verdict = send::encap_and_send(ctx, &pkt, &backend)?;
    if verdict.action != xdp_action::XDP_DROP {
        stats::backend(backend_id, len);
    }
    Ok(verdict)
}

#[xdp]
pub fn xdp_decap(ctx: XdpContext) -> u32 {
    let len = (ctx.data_end() - ctx.data()) as u64;
    finish(len, Ok(decap::decap(&ctx)))
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
