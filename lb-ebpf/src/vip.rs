//! Step 4: is the packet for a VIP? Exact port first, then the VIP's every-port entry, each
//! looked up in the index the agent lays out (`lb_common::vip_index`: array reads, no helper
//! call), or in the VIP hash map while there is no index. Traffic to a VIP address that no VIP
//! balances passes, or is dropped (`agent.unbalanced`).
use lb_common::{
    AddrKey, CONFIG_ANY_PORT_VIP, CONFIG_DROP_UNBALANCED, Counter, VipKey, VipValue,
    vip_index::{
        VIP_INDEX_HALF, VIP_INDEX_PENDING, VIP_INDEX_SLOTS, same_key, unpack_vip_value,
        vip_index_hash, vip_index_slots,
    },
};

use crate::{
    maps::{CONFIG, VIP_ADDRS, VIP_INDEX, VIP_INDEX_CTL, VIP_VALUES, VIPS},
    packet::Packet,
    verdict::Verdict,
};

/// The entry of VIP `key`: from the index if one is laid out, else (or for a key added since
/// the layout) from the hash map.
#[inline(always)]
fn lookup(key: &VipKey) -> Option<VipValue> {
    let ctl = VIP_INDEX_CTL.get_ptr(0)?;
    // Safety: the map's one entry; `active` is read once, and the agent writes it with one
    // aligned store.
    let active = unsafe { core::ptr::addr_of!((*ctl).active).read_volatile() };
    let half = active & VIP_INDEX_HALF;
    if half != 0 {
        let half = (half - 1) & 1;
        // Safety: as above; the seed of the half `active` names.
        let seed = unsafe { (*ctl).seeds[half as usize] };
        let base = half * VIP_INDEX_SLOTS;
        for s in vip_index_slots(vip_index_hash(key, seed)) {
            let Some(slot) = VIP_INDEX.get_ptr(base + s) else {
                continue;
            };
            // Safety: a slot of the live half; its id is read once (the agent clears it with
            // one store when the key goes), its key is not written while the half is live.
            let id = unsafe { core::ptr::addr_of!((*slot).id_plus_one).read_volatile() };
            if id != 0 && same_key(unsafe { &(*slot).key }, key) {
                let v = VIP_VALUES.get_ptr(id - 1)?;
                // Safety: the VIP's value, one word the agent writes with one store.
                return Some(unpack_vip_value(unsafe { v.read_volatile() }));
            }
        }
        if active & VIP_INDEX_PENDING == 0 {
            return None;
        }
    }
    // Safety: the value is copied out at once; the kernel keeps it alive under RCU meanwhile.
    unsafe { VIPS.get(key) }.copied()
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
