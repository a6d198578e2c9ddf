//! Step 5: whether a packet that takes the ring may have a backend at all.
//! The VIP's source ACL (`[vip.acl]`) judges every packet that reaches this step, an
//! established flow's too when its entry is gone (the agent clears the entries of sources an
//! ACL change denies); the per-source new-flow limit (`[vip.limits]`) judges new flows only.
//! Both cost a VIP without them one test of its flags.
use aya_ebpf::{helpers::generated::bpf_ktime_get_ns, maps::lpm_trie::Key};
use lb_common::{
    ACL_DENY, ACL_FULL_PREFIX, AclKey, Counter, FAMILY_V6, LimitKey, VIP_ACL, VIP_ACL_DEFAULT_DENY,
    VIP_LIMITED, VipValue,
};

use crate::{
    maps::{ACL, LIMITS, VIP_LIMITS},
    packet::Packet,
    verdict::Verdict,
};

/// The drop verdict for a packet the VIP does not admit; `None` admits it. `new`: the packet
/// opens a flow the table does not hold (the limit applies).
#[inline(always)]
pub fn admit(pkt: &Packet, vip: &VipValue, new: bool) -> Option<Verdict> {
    if vip.flags & VIP_ACL != 0 && !acl_admits(pkt, vip) {
        return Some(Verdict::drop(Counter::DropAcl));
    }
    if new && vip.flags & VIP_LIMITED != 0 && !within_limit(pkt, vip.id) {
        return Some(Verdict::drop(Counter::DropLimit));
    }
    None
}

/// The longest prefix of the ACL that holds the source decides; none: the VIP's default.
#[inline(always)]
fn acl_admits(pkt: &Packet, vip: &VipValue) -> bool {
    let key = Key::new(
        ACL_FULL_PREFIX,
        AclKey::new(vip.id, &pkt.key.src, pkt.key.family),
    );
    match ACL.get(&key) {
        Some(action) => *action != ACL_DENY,
        None => vip.flags & VIP_ACL_DEFAULT_DENY == 0,
    }
}

/// Takes a new flow from the source's bucket (IPv4 /32, IPv6 /64), if it has one left: the
/// bucket's theoretical arrival time may run at most the VIP's tolerance ahead of now, and
/// each flow moves it one interval on. Two CPUs may read one bucket at once and both admit:
/// the limit is exact to within the CPUs.
#[inline(always)]
fn within_limit(pkt: &Packet, vip: u32) -> bool {
    let Some(limit) = VIP_LIMITS.get(vip) else {
        return true;
    };
    let mut key = LimitKey {
        vip,
        family: pkt.key.family,
        _pad: [0; 3],
        addr: pkt.key.src,
    };
    if pkt.key.family == FAMILY_V6 {
        key.addr[8..].copy_from_slice(&[0; 8]);
    }
    // The precise clock: the coarse one moves in ticks, and a bucket with no tolerance (a
    // burst of 1) that meets a tick a hair early waits for the next, halving the rate.
    let now = unsafe { bpf_ktime_get_ns() };
    match LIMITS.get_ptr_mut(&key) {
        Some(tat) => {
            // Safety: a value of the map, valid for this program run.
            let t = unsafe { *tat }.max(now);
            if t - now > limit.tolerance_ns {
                return false;
            }
            unsafe { *tat = t + limit.interval_ns };
            true
        }
        None => {
            let _ = LIMITS.insert(&key, &(now + limit.interval_ns), 0);
            true
        }
    }
}
