//! The VIPs' live rings: what each was built from, so that the same inputs are not built
//! again and a ring built the same as the live one is not written again, and each one's
//! fingerprint, worked out once asked for (`lb status` shows it; balancers with the same one
//! send every 5-tuple alike).
use std::{collections::HashMap, net::IpAddr};

use lb_common::NO_BACKEND;

use crate::maglev;

/// A VIP's ring as written to the data path, and what it was built from.
struct LiveRing {
    ring: Vec<u32>,
    inputs: RingInputs,
}

/// Every VIP's live ring (by VIP id), and how many were built and written.
#[derive(Default)]
pub(in crate::agent) struct Rings {
    live: HashMap<u32, LiveRing>,
    prints: HashMap<u32, RingPrint>,
    /// Rings built (some turn out the same as the live one and are not written).
    pub builds: u64,
    /// Rings written to the data path.
    pub writes: u64,
}

/// A ring built and still to be written; [`Rings::commit`] once it is.
pub(super) struct Pending {
    pub(super) ring: Vec<u32>,
    inputs: RingInputs,
    members: Vec<(u32, IpAddr)>,
}

impl Pending {
    /// Backends in the ring, and backends in all.
    pub(super) fn live(&self) -> (usize, usize) {
        let live = self.inputs.eligible.iter().filter(|e| e.1 > 0).count();
        (live, self.inputs.ids.len())
    }
}

impl Rings {
    /// The ring `inputs` build for VIP `id`, if it must be written: `None` when the live ring
    /// was built from the same inputs (nothing is built), or the new one is the same as it.
    pub(super) fn build(&mut self, id: u32, inputs: RingInputs) -> Option<Pending> {
        // The same inputs build the same ring: a VIP that nothing touched (a reload, or a
        // next hop that changed another VIP) is not built again, which with many VIPs is
        // most of what a full sync would cost.
        if self.live.get(&id).is_some_and(|l| l.inputs == inputs) {
            return None;
        }
        let picks = maglev::build(&inputs.eligible, inputs.size);
        self.builds += 1;
        let ring: Vec<u32> = picks
            .iter()
            .map(|&i| inputs.ids.get(i as usize).copied().unwrap_or(NO_BACKEND))
            .collect();
        // The fingerprint is hashed when first asked for, not here (a change waits for
        // this), from the live ring and these ids' addresses.
        let members: Vec<(u32, IpAddr)> = inputs
            .ids
            .iter()
            .copied()
            .zip(inputs.eligible.iter().map(|e| e.0))
            .collect();
        // An unchanged ring is not written again (the backends' entries carry everything
        // else, the UDP idle time included).
        if let Some(live) = self.live.get_mut(&id)
            && live.ring == ring
            && live.inputs.fragments == inputs.fragments
        {
            live.inputs = inputs;
            // The same ids, perhaps for other addresses (an id freed and taken again).
            if self.prints.get(&id).is_none_or(|f| f.members != members) {
                self.prints.insert(id, RingPrint::new(members));
            }
            return None;
        }
        Some(Pending {
            ring,
            inputs,
            members,
        })
    }

    /// The pending ring is in the data path now.
    pub(super) fn commit(&mut self, id: u32, p: Pending) {
        self.prints.insert(id, RingPrint::new(p.members));
        self.live.insert(
            id,
            LiveRing {
                ring: p.ring,
                inputs: p.inputs,
            },
        );
        self.writes += 1;
    }

    pub(super) fn remove(&mut self, id: u32) {
        self.live.remove(&id);
        self.prints.remove(&id);
    }

    /// The VIP's ring fingerprint.
    pub(in crate::agent) fn fingerprint(&self, id: u32) -> Option<String> {
        Some(self.prints.get(&id)?.print(&self.live.get(&id)?.ring))
    }
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
    members: Vec<(u32, IpAddr)>,
    print: std::cell::OnceCell<String>,
}

impl RingPrint {
    fn new(members: Vec<(u32, IpAddr)>) -> Self {
        RingPrint {
            members,
            print: std::cell::OnceCell::new(),
        }
    }

    /// The fingerprint of `ring` (backend ids per slot, the VIP's live ring).
    fn print(&self, ring: &[u32]) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(weights: &[u32]) -> RingInputs {
        RingInputs {
            eligible: weights
                .iter()
                .enumerate()
                .map(|(i, w)| (IpAddr::from([198, 18, 0, 11 + i as u8]), *w))
                .collect(),
            size: 251,
            ids: (0..weights.len() as u32).collect(),
            fragments: false,
        }
    }

    #[test]
    fn a_ring_is_built_only_for_new_inputs_and_written_only_when_it_differs() {
        let mut r = Rings::default();
        let p = r
            .build(1, inputs(&[100, 100]))
            .expect("a first ring is written");
        assert_eq!(p.live(), (2, 2));
        r.commit(1, p);
        assert_eq!((r.builds, r.writes), (1, 1));
        assert!(r.build(1, inputs(&[100, 100])).is_none());
        assert_eq!((r.builds, r.writes), (1, 1), "same inputs: not even built");
        // A backend at weight 0 changes the ring.
        let p = r.build(1, inputs(&[100, 0])).expect("a changed ring");
        assert_eq!(p.live(), (1, 2));
        let print_before = r.fingerprint(1);
        r.commit(1, p);
        assert_eq!((r.builds, r.writes), (2, 2));
        assert_ne!(r.fingerprint(1), print_before);
        // Other inputs that build the same ring (the only live backend at another weight):
        // built, not written.
        assert!(r.build(1, inputs(&[50, 0])).is_none());
        assert_eq!((r.builds, r.writes), (3, 2));
        r.remove(1);
        assert_eq!(r.fingerprint(1), None);
        assert!(
            r.build(1, inputs(&[50, 0])).is_some(),
            "a removed VIP starts again"
        );
    }
}
