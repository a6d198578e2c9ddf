//! ICMP, in a folder of its own. The parser hands over what it finds addressed to a VIP: an
//! error about a packet a backend sent from the VIP ([`error`] finds the client's flow it
//! quotes, so the error goes to that flow's backend), or an echo request ([`echo`] answers it
//! in place when the agent asks for it). The send step answers a packet too big for the
//! encapsulated path ([`too_big`]).
use lb_common::Counter;

use crate::{
    mem::{Frame, ptr_at},
    verdict::{Verdict, bad_l4},
};

pub mod echo;
pub mod error;
pub mod too_big;

/// What an ICMP message to a VIP address is to the balancer.
pub enum Kind {
    /// An echo request.
    EchoRequest,
    /// An error (IPv4: destination unreachable, time exceeded, parameter problem; IPv6: the
    /// same and packet too big), which quotes the packet it is about.
    Error,
}

/// The kind of the ICMP message at `icmp_off` (ICMPv6 unless `v4`); anything else of ICMP is
/// the kernel's.
#[inline(always)]
pub fn kind(ctx: &Frame, icmp_off: usize, v4: bool) -> Result<Kind, Verdict> {
    // Type and code together: a one-byte read's bounds check is one LLVM rewrites into a
    // form the verifier does not learn the packet's range from.
    let ty = unsafe { (*ptr_at::<[u8; 2]>(ctx, icmp_off).ok_or(bad_l4())?)[0] };
    if ty == if v4 { 8 } else { 128 } {
        return Ok(Kind::EchoRequest);
    }
    let error = if v4 {
        matches!(ty, 3 | 11 | 12)
    } else {
        matches!(ty, 1..=4)
    };
    if !error {
        return Err(Verdict::pass(Counter::PassNotVip));
    }
    Ok(Kind::Error)
}
