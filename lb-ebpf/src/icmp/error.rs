//! An ICMP error about a packet a backend sent from a VIP straight to a client: the packet it
//! quotes names the client's flow, whose backend must see the error (a "fragmentation
//! needed" above all: without it, that backend's path MTU to the client never shrinks).
use lb_common::{Counter, FAMILY_V4, FAMILY_V6, FlowKey, PROTO_TCP, PROTO_UDP};
use network_types::ip::{Ipv4Hdr, Ipv6Hdr};

use crate::{
    mem::{Frame, eq16, ptr_at, v4_in_16},
    verdict::{Verdict, bad_l4},
};

/// The client's flow that the error at `icmp_off` is about: the TCP or UDP packet it quotes,
/// which the VIP `vip` sent, with its addresses and ports reversed (anything else quoted is
/// not ours).
#[inline(always)]
pub fn flow(ctx: &Frame, icmp_off: usize, v4: bool, vip: &[u8; 16]) -> Result<FlowKey, Verdict> {
    // The quoted packet: its IP header, then at least the 8 bytes holding the ports.
    let q = icmp_off + 8;
    let (src, client, proto, ports_off) = if v4 {
        let ip = ptr_at::<Ipv4Hdr>(ctx, q).ok_or(bad_l4())?;
        let (vihl, proto, s, d) =
            unsafe { ((*ip).vihl, (*ip).proto, (*ip).src_addr, (*ip).dst_addr) };
        let qihl = ((vihl & 0x0f) as usize) * 4;
        if vihl >> 4 != 4 || qihl < 20 {
            return Err(bad_l4());
        }
        (v4_in_16(s), v4_in_16(d), proto, q + qihl)
    } else {
        let ip = ptr_at::<Ipv6Hdr>(ctx, q).ok_or(bad_l4())?;
        let (v0, proto, s, d) =
            unsafe { ((*ip).vcf[0], (*ip).next_hdr, (*ip).src_addr, (*ip).dst_addr) };
        if v0 >> 4 != 6 {
            return Err(bad_l4());
        }
        (s, d, proto, q + 40)
    };
    if (proto != PROTO_TCP && proto != PROTO_UDP) || !eq16(&src, vip) {
        return Err(Verdict::pass(Counter::PassNotVip));
    }
    let p = ptr_at::<[u8; 4]>(ctx, ports_off).ok_or(bad_l4())?;
    let ports = unsafe { p.read_unaligned() };
    Ok(FlowKey {
        src: client,
        dst: *vip,
        // The two ports swapped as the halves of one word (indexed bytes would make LLVM
        // carry every packet's ports as bytes: see `packet::Packet::sport`).
        ports: u32::from_le_bytes(ports).rotate_left(16).to_le_bytes(),
        proto,
        family: if v4 { FAMILY_V4 } else { FAMILY_V6 },
        _pad: [0; 2],
    })
}
