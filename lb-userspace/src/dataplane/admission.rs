//! What the program admits: the VIPs' source ACLs, their new-flow limits, and whether traffic
//! to a VIP address that no VIP balances is dropped.
use std::net::IpAddr;

use aya::maps::{
    Array, HashMap, MapData,
    lpm_trie::{Key, LpmTrie},
};
use lb_common::{
    ACL_ALLOW, ACL_DENY, AclKey, AddrKey, CONFIG_DROP_UNBALANCED, FlowSlot, VipKey, VipLimit,
    VipValue, map_names,
};

use super::{Dataplane, DataplaneError, Result, addr_bytes, error::map_err};
use crate::config::{Acl, Limits};

/// The trie key of `net` for VIP `vip`: IPv4 prefixes mapped into IPv6 (`::ffff:0:0/96`).
fn acl_key(vip: u32, net: &ipnet::IpNet) -> Key<AclKey> {
    let (addr, family) = addr_bytes(net.network());
    let data = AclKey::new(vip, &addr, family);
    let bits = match net {
        ipnet::IpNet::V4(n) => 96 + n.prefix_len() as u32,
        ipnet::IpNet::V6(n) => n.prefix_len() as u32,
    };
    Key::new(32 + bits, data)
}

/// The program's [`VipValue::flags`] for a VIP with `acl` and `limits`.
pub fn vip_flags(acl: &Acl, limits: Option<Limits>) -> u32 {
    let mut flags = 0;
    if !acl.is_empty() {
        flags |= lb_common::VIP_ACL;
        if !acl.allow.is_empty() {
            flags |= lb_common::VIP_ACL_DEFAULT_DENY;
        }
    }
    if limits.is_some() {
        flags |= lb_common::VIP_LIMITED;
    }
    flags
}

impl Dataplane {
    /// Makes VIP `id`'s entries in the ACL trie exactly `acl`'s: new ones first, then the
    /// stale ones go (a packet meanwhile meets the old ACL or the new, never none).
    pub fn set_acl(&mut self, id: u32, acl: &Acl) -> Result<()> {
        let name = map_names::ACL;
        let mut trie: LpmTrie<&mut MapData, AclKey, u32> =
            LpmTrie::try_from(self.map_mut(name)?).map_err(map_err(name))?;
        let mut want: Vec<(Key<AclKey>, u32)> = Vec::new();
        for (nets, action) in [(&acl.allow, ACL_ALLOW), (&acl.deny, ACL_DENY)] {
            for net in nets {
                want.push((acl_key(id, net), action));
            }
        }
        let same = |a: &Key<AclKey>, b: &Key<AclKey>| {
            a.prefix_len() == b.prefix_len() && a.data() == b.data()
        };
        let stale: Vec<Key<AclKey>> = trie
            .keys()
            .filter_map(|k| k.ok())
            .filter(|k| u32::from_be_bytes(k.data().vip_be) == id)
            .filter(|k| !want.iter().any(|(w, _)| same(w, k)))
            .collect();
        for (key, action) in &want {
            trie.insert(key, action, 0)
                .map_err(|e| DataplaneError::Limit(format!("ACL entry for VIP id {id}: {e}")))?;
        }
        for key in &stale {
            let _ = trie.remove(key);
        }
        Ok(())
    }

    /// Sets VIP `id`'s new-flow limit (`None`: the entry is left as is; the VIP's flags say
    /// whether the program reads it).
    pub fn set_limit(&mut self, id: u32, limits: Option<Limits>) -> Result<()> {
        let Some(l) = limits else {
            return Ok(());
        };
        let interval_ns = 1_000_000_000 / l.new_flows_per_source as u64;
        let value = VipLimit {
            interval_ns,
            tolerance_ns: interval_ns * (l.burst as u64 - 1),
        };
        let mut m: Array<_, VipLimit> = self.map_array(map_names::VIP_LIMITS)?;
        m.set(id, value, 0).map_err(map_err(map_names::VIP_LIMITS))
    }

    /// Sets the flags of VIP `key`'s live entries (and its fragments' entry), if it has any.
    pub fn set_vip_flags(&mut self, key: &VipKey, flags: u32) -> Result<()> {
        let mut vips: HashMap<_, VipKey, VipValue> = self.map_hash(map_names::VIPS)?;
        let mut live = None;
        for k in [*key, key.for_fragments()] {
            if let Ok(mut v) = vips.get(&k, 0) {
                v.flags = flags;
                vips.insert(k, v, 0).map_err(map_err(map_names::VIPS))?;
                live = live.or(Some(v));
            }
        }
        match live {
            Some(v) => self.index_vip_value(v.id, v),
            None => Ok(()),
        }
    }

    /// Whether traffic to a VIP address that no VIP balances is dropped (or passed).
    pub fn set_drop_unbalanced(&mut self, drop: bool) -> Result<()> {
        self.update_config(|c| {
            if drop {
                c.flags |= CONFIG_DROP_UNBALANCED;
            } else {
                c.flags &= !CONFIG_DROP_UNBALANCED;
            }
        })
    }

    /// Makes the set of VIP addresses ([`map_names::VIP_ADDRS`]) exactly those of the VIPs in
    /// the map.
    pub(super) fn rebuild_vip_addrs(&mut self) -> Result<()> {
        let want: Vec<AddrKey> = self
            .vips()?
            .iter()
            .map(|(k, _)| AddrKey::new(k.addr, k.family & !lb_common::FAMILY_FRAGMENTS))
            .collect();
        self.set_addresses(map_names::VIP_ADDRS, &want)
    }

    /// Forgets the flows to VIP `vip` whose source `acl` no longer admits: their next packet
    /// takes the ring, where the ACL drops it. Returns how many. (Slots are rewritten whole
    /// while the program may read them: a reader meets the old flow or an empty slot, a miss.
    /// Copies of them in the flow cache are wiped once no program that read them still runs.)
    pub fn forget_denied_flows(&mut self, vip: &VipKey, acl: &Acl) -> Result<u64> {
        let mut slots = self.flow_slots(true)?;
        let mut forgotten = 0;
        for i in 0..slots.len() {
            let s = slots.get(i);
            let k = &s.key;
            if k.family != vip.family || k.proto != vip.proto || k.dst != vip.addr {
                continue;
            }
            let dport = u16::from_be_bytes([k.ports[2], k.ports[3]]);
            if vip.port_be != 0 && dport != u16::from_be(vip.port_be) {
                continue;
            }
            let src = match k.family {
                lb_common::FAMILY_V4 => IpAddr::from([k.src[0], k.src[1], k.src[2], k.src[3]]),
                _ => IpAddr::from(k.src),
            };
            if !acl.admits(src) {
                slots.set(i, FlowSlot::default());
                forgotten += 1;
            }
        }
        if forgotten > 0 {
            self.forget_cached_flows()?;
        }
        Ok(forgotten)
    }
}
