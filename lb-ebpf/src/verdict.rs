//! What becomes of a packet: a [`Verdict`] (the action for the kernel and the counter it
//! lands in), or a [`Fault`]. The ground floor every step stands on; it imports no step.
use aya_ebpf::bindings::xdp_action;
use lb_common::{CAPTURE_ANY, Counter};

/// What became of a packet: the action for the kernel and the counter it lands in.
///
/// Aligned to 8: the code generator stores `action` and `counter` as one 64-bit word, and
/// the verifier refuses a stack access that is not aligned to its size.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
pub struct Verdict {
    pub action: u32,
    /// A [`Counter`] index.
    pub counter: u32,
    /// The VIP id the packet belonged to ([`CAPTURE_ANY`]: none known), for `lb capture`.
    pub vip: u32,
}

impl Verdict {
    pub const fn new(action: u32, counter: Counter) -> Self {
        Verdict {
            action,
            counter: counter as u32,
            vip: CAPTURE_ANY,
        }
    }
    /// The same verdict, for a packet of VIP `id`.
    #[inline(always)]
    pub const fn of_vip(self, id: u32) -> Self {
        Verdict { vip: id, ..self }
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
            vip: CAPTURE_ANY,
        }
    }
}

/// A malformed frame (too short for its Ethernet header or VLAN tag): passed.
pub const fn malformed() -> Verdict {
    Verdict::pass(Counter::PassMalformed)
}
/// An IP header that is not one: passed.
pub const fn bad_ip() -> Verdict {
    Verdict::pass(Counter::PassBadIp)
}
/// An IP length that does not fit the frame or the headers: passed.
pub const fn bad_length() -> Verdict {
    Verdict::pass(Counter::PassBadLength)
}
/// A transport (or ICMP) header that is short or lies about its length: passed.
pub const fn bad_l4() -> Verdict {
    Verdict::pass(Counter::PassBadL4)
}

/// A real internal fault: a map entry that must exist did not. Counted and `XDP_ABORTED`.
pub struct Fault;
