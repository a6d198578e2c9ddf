//! Step 4: is the packet for a VIP? Exact port first, then the VIP's every-port entry, each
//! looked up in the index the agent lays out (`lb_common::vip_index`: array reads, no helper
//! call), or in the VIP hash map while there is no index. Traffic to a VIP address that no VIP
//! balances passes, or is dropped (`agent.unbalanced`).
use lb_common::{
    AddrKey, CONFIG_ANY_PORT_VIP, CONFIG_DROP_UNBALANCED, Counter, VipKey, VipValue,
    vip_index::{VIP_INDEX_SLOTS, same_key, vip_index_hash, vip_index_slots},
};

use crate::{
    maps::{CONFIG, VIP_ADDRS, VIP_INDEX, VIP_INDEX_CTL, VIP_VALUES, VIPS},
    packet::Packet,
    verdict::Verdict,
};

/// The entry of VIP `key`: from the index if one is laid out, else from the hash map.
#[inline(always)]
fn lookup(key: &VipKey) -> Option<VipValue> {
    let ctl = VIP_INDEX_CTL.get_ptr(0)?;
    // Safety: the map's one entry; `active` is read once, and the agent flips it with one
    // aligned store.
    let active = unsafe { core::ptr::addr_of!((*ctl).active).read_volatile() };
    if active == 0 {
        // Safety: the value is copied out at once; the kernel keeps it alive under RCU.
        return unsafe { VIPS.get(key) }.copied();
    }
    let half = (active - 1) & 1;
    // Safety: as above; the seed of the half `active` names.
    let seed = unsafe { (*ctl).seeds[half as usize] };
    let base = half * VIP_INDEX_SLOTS;
    for s in vip_index_slots(vip_index_hash(key, seed)) {
        let Some(slot) = VIP_INDEX.get(base + s) else {
            continue;
        };
        if slot.id_plus_one != 0 && same_key(&slot.key, key) {
            let v = VIP_VALUES.get_ptr(slot.id_plus_one - 1)?;
            // Safety: the VIP's entry; `live` read once, then the copy it names, which the
            // agent does not write while it may be read (see `lb_common::vip_index`).
            unsafe {
                let live = core::ptr::addr_of!((*v).live).read_volatile() & 1;
                return Some((*v).values[live as usize]);
            }
        }
    }
    None
}

#[inline(always)]
pub fn vip(pkt: &Packet) -> Option<VipValue> {
    let mut key = VipKey {
        addr: pkt.key.dst,
        port_be: u16::from_ne_bytes(pkt.dport()),
        proto: pkt.key.proto,
        family: pkt.key.family,
    };
    if let Some(v) = lookup(&key) {
        return Some(v);
    }
    let any_port = CONFIG
        .get(0)
        .is_some_and(|c| c.flags & CONFIG_ANY_PORT_VIP != 0);
    if !any_port {
        return None;
    }
    key.port_be = 0;
    lookup(&key)
}

/// The VIP that takes fragments to the packet's address and protocol, if one does.
#[inline(always)]
pub fn fragment_vip(pkt: &Packet) -> Option<VipValue> {
    let key = VipKey {
        addr: pkt.key.dst,
        port_be: 0,
        proto: pkt.key.proto,
        family: pkt.key.family | lb_common::FAMILY_FRAGMENTS,
    };
    lookup(&key)
}

/// What becomes of a packet to `addr` that no VIP balances (`pass` says why it would pass): with
/// `agent.unbalanced = "drop"`, dropped if `addr` is a VIP's address; passed otherwise.
#[inline(always)]
pub fn unbalanced(addr: &AddrKey, pass: Counter) -> Verdict {
    let drop = CONFIG
        .get(0)
        .is_some_and(|c| c.flags & CONFIG_DROP_UNBALANCED != 0);
    if drop && unsafe { VIP_ADDRS.get(addr) }.is_some() {
        return Verdict::drop(Counter::DropUnbalanced);
    }
    Verdict::pass(pass)
}

/// The packet's destination, as [`unbalanced`] takes it.
#[inline(always)]
pub fn destination(pkt: &Packet) -> AddrKey {
    AddrKey::new(pkt.key.dst, pkt.key.family)
}
