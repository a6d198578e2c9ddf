//! Step 8: the kernel's own routes and neighbours say where the encapsulated packet goes
//! (`bpf_fib_lookup`); same interface: `XDP_TX`, another: redirect through the devmap.
use aya_ebpf::{
    bindings::{
        BPF_FIB_LKUP_RET_FRAG_NEEDED, BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS,
        bpf_fib_lookup as FibParams, xdp_action,
    },
    helpers::generated::bpf_fib_lookup,
    programs::XdpContext,
};
use lb_common::{Backend, Counter, FAMILY_V4};

use crate::{
    encap::{self, overhead},
    maps::{CONFIG, DEVMAP},
    packet::Packet,
    verdict::{Fault, Verdict},
};

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// Writes an address into a `[u32; 4]` of the route lookup's parameters word by word. The
/// stores are volatile so that LLVM cannot merge two of them into one 8-byte store: the
/// fields lie 4 bytes off an 8-byte boundary on the stack, and the verifier refuses misaligned
/// stack access (code generation allows misaligned access, see build.rs, and with ALU32 LLVM
/// did merge them).
#[inline(always)]
pub(crate) fn set_words(dst: &mut [u32; 4], b: &[u8; 16]) {
    for (i, d) in dst.iter_mut().enumerate() {
        let w = u32::from_ne_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]);
        // Safety: `d` is a valid, aligned &mut u32.
        unsafe { core::ptr::write_volatile(d, w) };
    }
}

/// Encapsulates and sends. Inlined: the common case (the next hop cached in the backend's
/// entry) costs no function call; the route lookup, with its 64-byte parameters, is the one
/// part kept in a frame of its own ([`route_packed`]), within the verifier's 512 bytes.
#[inline(always)]
pub fn encap_and_send(
    ctx: &XdpContext,
    pkt: &Packet,
    be: &Backend,
    hash: u32,
) -> Result<Verdict, Fault> {
    let cfg = CONFIG.get(0).ok_or(Fault)?;
    let extra = overhead(be) as u32;
    let tot_len = pkt.l3_len as u32 + extra;
    if tot_len > 0xffff {
        return Ok(Verdict::drop(Counter::DropEncap));
    }
    let ingress = ctx.ingress_ifindex() as u32;
    // The agent keeps each backend's next hop in its entry; the kernel's route lookup is the
    // fallback for a backend it could not resolve.
    let egress = if be.hop.ifindex != 0 {
        let mtu = path_mtu(cfg, be.hop.mtu);
        if tot_len > mtu {
            return Ok(Verdict::unpack(crate::icmp::too_big::too_big_packed(
                ctx, pkt, mtu, extra,
            )));
        }
        if encap::encap(ctx, pkt, cfg, be, &be.hop.dmac, &be.hop.smac, hash).is_none() {
            return Ok(Verdict::drop(Counter::DropEncap));
        }
        be.hop.ifindex
    } else if be.forwarding == lb_common::FORWARD_L2DSR as u8 {
        // Only the backend's own MAC will do, and the agent writes it once it knows it: a
        // route lookup could answer with a router's, which would send the packet, still to
        // the VIP, back into the network.
        return Ok(Verdict::drop(Counter::DropNoNeigh));
    } else {
        match route_packed(ctx, pkt, be, tot_len, hash) {
            r if r & NOT_ROUTED != 0 => {
                let v = Verdict::unpack(r & !NOT_ROUTED);
                if v.action == TOO_BIG {
                    let mtu = path_mtu(cfg, v.counter);
                    return Ok(Verdict::unpack(crate::icmp::too_big::too_big_packed(
                        ctx, pkt, mtu, extra,
                    )));
                }
                return Ok(v);
            }
            egress => egress as u32,
        }
    };
    if egress == ingress {
        return Ok(Verdict::new(xdp_action::XDP_TX, Counter::Tx));
    }
    match DEVMAP.redirect(egress, 0) {
        Ok(action) => Ok(Verdict::new(action, Counter::Redirect)),
        Err(_) => Ok(Verdict::drop(Counter::DropNoEgress)),
    }
}

/// The MTU a packet must fit, outer header included: the egress interface's, or the
/// configured path MTU where that is lower.
#[inline(always)]
fn path_mtu(cfg: &lb_common::Config, egress: u32) -> u32 {
    if cfg.path_mtu != 0 && cfg.path_mtu < egress {
        cfg.path_mtu
    } else {
        egress
    }
}

/// Marks a [`route_packed`] result that is a packed verdict, not an interface index.
const NOT_ROUTED: u64 = 1 << 63;

/// The action of a [`route`] "verdict" that says: too big for the path; its counter field is
/// the path's MTU.
const TOO_BIG: u32 = u32::MAX;

/// [`route`] in a BPF function of its own, returning one integer: the egress interface index,
/// or a packed verdict with [`NOT_ROUTED`] set.
#[inline(never)]
fn route_packed(ctx: &XdpContext, pkt: &Packet, be: &Backend, tot_len: u32, hash: u32) -> u64 {
    let Some(cfg) = CONFIG.get(0) else {
        return Verdict::new(xdp_action::XDP_ABORTED, Counter::Aborted).pack() | NOT_ROUTED;
    };
    match route(ctx, pkt, cfg, be, tot_len, hash) {
        Ok(egress) => egress as u64,
        Err(v) => v.pack() | NOT_ROUTED,
    }
}

/// `bpf_fib_lookup`: the next hop and egress interface of `be`, or why there is none.
#[inline(always)]
fn route(
    ctx: &XdpContext,
    pkt: &Packet,
    cfg: &lb_common::Config,
    be: &Backend,
    tot_len: u32,
    hash: u32,
) -> Result<u32, Verdict> {
    // Safety: an all-zero bpf_fib_lookup is a valid (empty) request.
    let mut fib: FibParams = unsafe { core::mem::zeroed() };
    fib.ifindex = ctx.ingress_ifindex() as u32;
    fib.__bindgen_anon_1.tot_len = tot_len as u16;
    // The outer header's route: the backend's family (an IPv4 VIP may have IPv6 backends).
    if be.family == FAMILY_V4 {
        fib.family = AF_INET;
        fib.l4_protocol = 4;
        fib.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes(cfg.source_v4);
        fib.__bindgen_anon_4.ipv4_dst =
            u32::from_ne_bytes([be.addr[0], be.addr[1], be.addr[2], be.addr[3]]);
    } else {
        fib.family = AF_INET6;
        fib.l4_protocol = 41;
        // Safety: both are plain [u32; 4] fields of `fib`, written in place.
        unsafe {
            set_words(&mut fib.__bindgen_anon_3.ipv6_src, &cfg.source_v6);
            set_words(&mut fib.__bindgen_anon_4.ipv6_dst, &be.addr);
        }
    }
    let rc = unsafe {
        bpf_fib_lookup(
            ctx.ctx as *mut _,
            &mut fib,
            core::mem::size_of::<FibParams>() as i32,
            0,
        )
    };
    match rc as u32 {
        BPF_FIB_LKUP_RET_SUCCESS => {
            // The kernel checked the interface's MTU; a lower configured one is ours to check.
            if cfg.path_mtu != 0 && tot_len > cfg.path_mtu {
                return Err(Verdict {
                    action: TOO_BIG,
                    counter: cfg.path_mtu,
                    vip: lb_common::CAPTURE_ANY,
                });
            }
            if encap::encap(ctx, pkt, cfg, be, &fib.dmac, &fib.smac, hash).is_none() {
                return Err(Verdict::drop(Counter::DropEncap));
            }
            Ok(fib.ifindex)
        }
        BPF_FIB_LKUP_RET_NO_NEIGH => Err(Verdict::drop(Counter::DropNoNeigh)),
        // Answered by the caller, whose frame is smaller: the route lookup's and the
        // answer's frames on top of each other would pass the verifier's 512 bytes.
        BPF_FIB_LKUP_RET_FRAG_NEEDED => Err(Verdict {
            action: TOO_BIG,
            counter: unsafe { fib.__bindgen_anon_1.mtu_result } as u32,
            vip: lb_common::CAPTURE_ANY,
        }),
        _ => Err(Verdict::drop(Counter::DropNoRoute)),
    }
}
