//! Echo requests to a VIP address, answered by the balancer itself when the agent asks for
//! it (a VIP address belongs to no host that would answer).
use aya_ebpf::bindings::xdp_action;
use lb_common::{AddrKey, Counter, FAMILY_V4, FAMILY_V6};

use crate::{
    csum::mend,
    maps::ECHO,
    mem::{Frame, ptr_at},
    verdict::{Verdict, bad_ip, bad_l4},
};

/// An echo request the parser found: where its headers are, and the address it asks.
#[derive(Clone, Copy)]
pub struct Request {
    pub l3_off: usize,
    pub icmp_off: usize,
    pub v4: bool,
    pub dst: [u8; 16],
}

/// Answers the request in place (addresses and MACs swapped, the type made a reply, the
/// checksums mended) when its address is a VIP's whose echoes the agent answers
/// (`agent.answer_echo`); passes it otherwise.
#[inline(always)]
pub fn answer(ctx: &Frame, r: &Request) -> Verdict {
    let Request {
        l3_off,
        icmp_off,
        v4,
        dst,
    } = *r;
    let key = AddrKey {
        addr: dst,
        family: if v4 { FAMILY_V4 } else { FAMILY_V6 },
        _pad: [0; 3],
    };
    if unsafe { ECHO.get(&key) }.is_none() {
        return Verdict::pass(Counter::PassNotVip);
    }
    let (Some(eth), Some(icmp)) = (
        ptr_at::<[u16; 6]>(ctx, 0),
        ptr_at::<[u16; 2]>(ctx, icmp_off),
    ) else {
        return bad_l4();
    };
    // Safety: both checked above; unaligned accesses.
    unsafe {
        let e = eth as *mut u16;
        for i in 0..3 {
            let (a, b) = (e.add(i).read_unaligned(), e.add(3 + i).read_unaligned());
            e.add(i).write_unaligned(b);
            e.add(3 + i).write_unaligned(a);
        }
        let w = icmp as *mut u16;
        let old = w.read_unaligned();
        // Echo request to reply: IPv4 8 to 0, ICMPv6 128 to 129 (the type is the high byte).
        let new = u16::from_ne_bytes([if v4 { 0 } else { 129 }, old.to_ne_bytes()[1]]);
        w.write_unaligned(new);
        let check = w.add(1);
        check.write_unaligned(mend(check.read_unaligned(), old, new));
    }
    // Addresses swap; the sums over them (IPv4 header, ICMPv6 pseudo-header) stay as they are.
    let swapped = if v4 {
        ptr_at::<[u32; 2]>(ctx, l3_off + 12).map(|a| unsafe {
            let a = a as *mut u32;
            let (s, d) = (a.read_unaligned(), a.add(1).read_unaligned());
            a.write_unaligned(d);
            a.add(1).write_unaligned(s);
        })
    } else {
        ptr_at::<[u64; 4]>(ctx, l3_off + 8).map(|a| unsafe {
            let a = a as *mut u64;
            for i in 0..2 {
                let (s, d) = (a.add(i).read_unaligned(), a.add(2 + i).read_unaligned());
                a.add(i).write_unaligned(d);
                a.add(2 + i).write_unaligned(s);
            }
        })
    };
    match swapped {
        Some(()) => Verdict::new(xdp_action::XDP_TX, Counter::IcmpEcho),
        None => bad_ip(),
    }
}
