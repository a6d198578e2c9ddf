//! A VIP's live ring: what it was built from, so that the same inputs are not built again,
//! and its fingerprint, worked out once asked for (`lb status` shows it; balancers with the
//! same one send every 5-tuple alike).
use std::net::IpAddr;

use lb_common::NO_BACKEND;

use crate::maglev;

/// A VIP's ring as written to the data path, and what it was built from.
pub(in crate::agent) struct LiveRing {
    pub(in crate::agent) ring: Vec<u32>,
    pub(super) inputs: RingInputs,
}

/// Everything a VIP's ring depends on: its backends in order with their weights (0 where
/// down or draining), the ring's size, the backends' ids (what the slots hold), and whether
/// the VIP takes fragments (written with the ring).
#[derive(PartialEq)]
pub(super) struct RingInputs {
    pub(super) eligible: Vec<(IpAddr, u32)>,
    pub(super) size: u32,
    pub(super) ids: Vec<u32>,
    pub(super) fragments: bool,
}

/// The backends (id, address) a VIP's live ring was built over, and its fingerprint once asked
/// for.
pub(in crate::agent) struct RingPrint {
    pub(super) members: Vec<(u32, IpAddr)>,
    print: std::cell::OnceCell<String>,
}

impl RingPrint {
    pub(super) fn new(members: Vec<(u32, IpAddr)>) -> Self {
        RingPrint {
            members,
            print: std::cell::OnceCell::new(),
        }
    }

    /// The fingerprint of `ring` (backend ids per slot, the VIP's live ring).
    pub(in crate::agent) fn print(&self, ring: &[u32]) -> String {
        self.print
            .get_or_init(|| {
                // Backend id -> index into `members`, as a dense table: one lookup per slot.
                let top = self
                    .members
                    .iter()
                    .map(|m| m.0 as usize + 1)
                    .max()
                    .unwrap_or(0);
                let mut index = vec![NO_BACKEND; top];
                for (i, (id, _)) in self.members.iter().enumerate() {
                    index[*id as usize] = i as u32;
                }
                let slots: Vec<u32> = ring
                    .iter()
                    .map(|&id| index.get(id as usize).copied().unwrap_or(NO_BACKEND))
                    .collect();
                let addresses: Vec<IpAddr> = self.members.iter().map(|m| m.1).collect();
                maglev::fingerprint(&slots, &addresses)
            })
            .clone()
    }
}
