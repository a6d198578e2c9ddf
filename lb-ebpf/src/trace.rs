//! The programs' own log lines (aya-log), for debugging: off unless the agent runs with
//! `--program-log LEVEL`. The level is a load-time constant, so with logs off the verifier
//! removes these calls and they cost nothing; each is out of line, so with logs on their
//! formatting stays out of the packet path's frames.
use aya_ebpf::{bindings::xdp_md, programs::XdpContext};
use aya_log_ebpf::{
    debug, error,
    macro_support::{Level, level_enabled},
};
use lb_common::Counter;

/// Logs `counter` for a packet of `len` bytes: faults as errors, every outcome but forwarding
/// and plain non-VIP traffic at debug.
#[inline(always)]
pub fn outcome(ctx: &XdpContext, counter: u32, len: u64) {
    if counter == Counter::Aborted as u32 {
        if level_enabled(Level::Error) {
            fault(ctx.ctx, len as u32);
        }
        return;
    }
    if counter == Counter::Tx as u32
        || counter == Counter::Redirect as u32
        || counter == Counter::PassNotVip as u32
        || counter == Counter::PassNotIp as u32
    {
        return;
    }
    if level_enabled(Level::Debug) {
        not_forwarded(ctx.ctx, counter, len as u32);
    }
}

/// Logs a new flow's backend at debug.
#[inline(always)]
pub fn new_flow(ctx: &XdpContext, vip: u32, backend: u32, sport: u16, dport: u16) {
    if level_enabled(Level::Debug) {
        flow(ctx.ctx, vip, backend, (sport as u32) << 16 | dport as u32);
    }
}

#[inline(never)]
fn fault(md: *mut xdp_md, len: u32) {
    let ctx = XdpContext::new(md);
    error!(
        &ctx,
        "internal fault: a map entry that must exist did not ({} bytes, XDP_ABORTED)", len
    );
}

#[inline(never)]
fn not_forwarded(md: *mut xdp_md, counter: u32, len: u32) {
    let ctx = XdpContext::new(md);
    let name = match Counter::ALL.get(counter as usize) {
        Some(c) => c.name(),
        None => "unknown",
    };
    debug!(&ctx, "{} bytes: {}", len, name);
}

#[inline(never)]
fn flow(md: *mut xdp_md, vip: u32, backend: u32, ports: u32) {
    let ctx = XdpContext::new(md);
    debug!(
        &ctx,
        "new flow: VIP {} port {} from port {} -> backend {}",
        vip,
        ports & 0xffff,
        ports >> 16,
        backend
    );
}
