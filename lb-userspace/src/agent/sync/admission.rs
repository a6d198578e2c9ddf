//! The VIPs' ACLs, new-flow limits and hash fields as the data path has them (the VIP entry's
//! flags): written when they change, and an ACL change carried to the flows it now denies.
use std::collections::HashMap;

use lb_common::VipKey;

use crate::{
    config::{Acl, Limits, Vip},
    dataplane::{Dataplane, vip_flags},
};

/// What each VIP id's ACL, limits and hash were when last written.
#[derive(Default)]
pub struct Admission {
    applied: HashMap<u32, (Acl, Option<Limits>, u32)>,
}

impl Admission {
    /// Writes VIP `id`'s ACL and limits if they changed, and returns the flags its entry
    /// carries. A VIP entry already live gets the new flags at once; the flows its new ACL
    /// denies are forgotten, so that their next packet meets the ACL.
    pub fn apply(
        &mut self,
        dp: &mut Dataplane,
        id: u32,
        key: &VipKey,
        vip: &Vip,
    ) -> anyhow::Result<u32> {
        let hash = vip.hash.flags(vip.affinity_prefix);
        let flags = vip_flags(&vip.acl, vip.limits) | hash;
        let want = (vip.acl.clone(), vip.limits, hash);
        let before = self.applied.get(&id);
        if before == Some(&want) {
            return Ok(flags);
        }
        let acl_changed = before.is_none_or(|(acl, _, _)| *acl != vip.acl);
        if acl_changed {
            dp.set_acl(id, &vip.acl)?;
        }
        dp.set_limit(id, vip.limits)?;
        dp.set_vip_flags(key, flags)?;
        if acl_changed && !vip.acl.is_empty() {
            let forgotten = dp.forget_denied_flows(key, &vip.acl)?;
            if forgotten > 0 {
                tracing::info!(vip = %vip.name, flows = forgotten, "ACL change: denied flows forgotten");
            }
        }
        self.applied.insert(id, want);
        Ok(flags)
    }

    /// VIP `id` is gone: its ACL entries go with it.
    pub fn remove(&mut self, dp: &mut Dataplane, id: u32) -> anyhow::Result<()> {
        if self
            .applied
            .remove(&id)
            .is_some_and(|(acl, _, _)| !acl.is_empty())
        {
            dp.set_acl(id, &Acl::default())?;
        }
        Ok(())
    }
}
