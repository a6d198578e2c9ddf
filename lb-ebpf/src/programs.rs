//! The entry points: thin wrappers that run one core function and count its verdict once.
use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use lb_common::Counter;

use crate::{decap, lookup, parse, pick, send, stats};

/// What became of a packet: the action for the kernel and the counter it lands in.
#[derive(Clone, Copy)]
pub struct Verdict {
    pub action: u32,
    /// A [`Counter`] index.
    pub counter: u32,
}

impl Verdict {
    pub const fn new(action: u32, counter: Counter) -> Self {
        Verdict {
            action,
            counter: counter as u32,
        }
    }
    pub const fn pass(counter: Counter) -> Self {
        Self::new(xdp_action::XDP_PASS, counter)
    }
    pub const fn drop(counter: Counter) -> Self {
        Self::new(xdp_action::XDP_DROP, counter)
    }
    /// As one integer, for the return value of a function that is not inlined (a BPF
    /// function returns one register, and may not return a pointer into its own stack).
    #[inline(always)]
    pub const fn pack(self) -> u64 {
        self.action as u64 | (self.counter as u64) << 32
    }
    #[inline(always)]
    pub const fn unpack(v: u64) -> Self {
        Verdict {
            action: v as u32,
            counter: (v >> 32) as u32,
        }
    }
}

/// Packed returns that are not verdicts: "parsed, go on", and an internal fault.
pub const GO_ON: u64 = u64::MAX;
pub const FAULT: u64 = u64::MAX - 1;

/// A real internal fault: a map entry that must exist did not. Counted and `XDP_ABORTED`.
pub struct Fault;

/// Counts the outcome once and turns it into the action.
#[inline(always)]
fn finish(len: u64, r: Result<Verdict, Fault>) -> u32 {
    let v = r.unwrap_or(Verdict::new(xdp_action::XDP_ABORTED, Counter::Aborted));
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
    let mut pkt = parse::Packet::default();
    let frame = crate::mem::Frame {
        start: ctx.data(),
        end: ctx.data_end(),
    };
    match parse::parse_packed(frame, &mut pkt) {
        GO_ON => {}
        v => return Ok(Verdict::unpack(v)),
    }
    let Some(vip) = lookup::vip(&pkt) else {
        return Ok(Verdict::pass(Counter::PassNotVip));
    };
    stats::vip(vip.id, len);
    let Some((backend_id, backend)) = pick::backend(&pkt, &vip)? else {
        return Ok(Verdict::drop(Counter::DropNoBackend));
    };
    let verdict = match send::encap_and_send_packed(ctx, &pkt, &backend) {
        FAULT => return Err(Fault),
        v => Verdict::unpack(v),
    };
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
