//! Compaction of the runtime changes: the changes a later change makes moot are dropped, so
//! that what is kept grows with the VIPs and backends changed, not with the number of
//! changes. What is dropped, per VIP or backend:
//! - everything about a VIP before a `VipDel` of it (the VIP goes, whatever it was);
//! - a backend's add, delete, drain and undrain before a `BackendDel` of it (a `VipAdd` in
//!   between does not matter: before a `VipAdd` that applies, its VIP was absent, so the
//!   changes to its backends were skipped, or a `VipDel` dropped them already);
//! - a backend's drain or undrain before a later drain or undrain of it, and a weight
//!   before a later weight of it (the last says).
//!
//! Every rule holds whatever the file under the changes is: a dropped change either had no
//! effect or one that a kept change overwrites. Only a limit shared between keys (a VIP's
//! ring full of backends, two VIPs on one address) can tell the difference; the caller checks
//! the result against the config in force before using it.
use super::Change;

/// The VIP and backend a change is about.
fn about(c: &Change) -> (&str, Option<std::net::IpAddr>) {
    match c {
        Change::VipAdd(s) => (&s.name, None),
        Change::VipDel { name } => (name, None),
        Change::BackendAdd { vip, address, .. }
        | Change::BackendDel { vip, address }
        | Change::Drain { vip, address }
        | Change::Undrain { vip, address }
        | Change::Weight { vip, address, .. } => (vip, Some(*address)),
    }
}

/// `changes` without the ones later changes make moot, in the same order.
pub fn compact(changes: &[Change]) -> Vec<Change> {
    let mut out: Vec<Change> = Vec::with_capacity(changes.len());
    for c in changes {
        let (vip, addr) = about(c);
        match c {
            Change::VipDel { .. } => out.retain(|o| about(o).0 != vip),
            Change::BackendDel { .. } => out.retain(|o| about(o) != (vip, addr)),
            Change::Drain { .. } | Change::Undrain { .. } => out.retain(|o| {
                !(matches!(o, Change::Drain { .. } | Change::Undrain { .. })
                    && about(o) == (vip, addr))
            }),
            Change::Weight { .. } => {
                out.retain(|o| !(matches!(o, Change::Weight { .. }) && about(o) == (vip, addr)))
            }
            Change::VipAdd(_) | Change::BackendAdd { .. } => {}
        }
        out.push(c.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        config::{self, Config},
        state::{BackendSpec, VipSpec, effective},
    };
    use proptest::prelude::*;
    use std::net::IpAddr;

    fn addr(i: u8) -> IpAddr {
        IpAddr::from([198, 18, 0, 11 + i])
    }

    /// A base config: VIP "a" always, "b" when `with_b`, each with backends from `present`.
    fn base(with_b: bool, present: &[u8], drained: &[u8]) -> Config {
        let mut text = "[agent]\ninterfaces = [\"eth0\"]\nsource_v4 = \"198.18.0.2\"\n".to_string();
        let vips: &[(&str, u8)] = if with_b {
            &[("a", 1), ("b", 2)]
        } else {
            &[("a", 1)]
        };
        for (name, n) in vips {
            text += &format!(
                "\n[[vip]]\nname = \"{name}\"\naddress = \"198.19.0.{n}:80\"\n[vip.health]\nkind = \"none\"\n"
            );
            for p in present {
                text += &format!(
                    "\n[[vip.backend]]\naddress = \"{}\"\ndrain = {}\n",
                    addr(*p),
                    drained.contains(p)
                );
            }
        }
        config::parse("base", &text).unwrap()
    }

    fn change() -> impl Strategy<Value = Change> {
        let vip = prop_oneof![Just("a".to_string()), Just("b".to_string())];
        (0u8..7, vip, 0u8..3, 1u32..4).prop_map(|(kind, vip, a, w)| {
            let address = addr(a);
            match kind {
                0 => Change::BackendAdd {
                    vip,
                    address,
                    weight: Some(w * 10),
                },
                1 => Change::BackendDel { vip, address },
                2 => Change::Drain { vip, address },
                3 => Change::Undrain { vip, address },
                4 => Change::VipDel { name: vip },
                5 => Change::Weight {
                    vip,
                    address,
                    weight: w * 7,
                },
                _ => Change::VipAdd(VipSpec {
                    address: if vip == "a" {
                        "198.19.0.1:80"
                    } else {
                        "198.19.0.2:80"
                    }
                    .into(),
                    name: vip,
                    protocol: None,
                    ring_size: None,
                    health: Some("none".into()),
                    forwarding: None,
                    backends: vec![BackendSpec {
                        address,
                        weight: Some(w),
                    }],
                }),
            }
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Whatever the file under them, the compacted changes make the same config as all of
        /// them.
        #[test]
        fn compaction_never_changes_the_effective_config(
            changes in proptest::collection::vec(change(), 0..40),
            with_b in any::<bool>(),
            present in proptest::sample::subsequence(vec![0u8, 1, 2], 0..=3),
            drained in proptest::sample::subsequence(vec![0u8, 1, 2], 0..=3),
        ) {
            let file = base(with_b, &present, &drained);
            let compacted = compact(&changes);
            prop_assert!(compacted.len() <= changes.len());
            prop_assert_eq!(effective(&file, &compacted).0, effective(&file, &changes).0);
        }
    }

    #[test]
    fn what_grows_is_the_keys_not_the_history() {
        let mut all = Vec::new();
        for round in 0..500u32 {
            for a in 0..3 {
                let (vip, address) = ("a".to_string(), addr(a));
                all.push(Change::Drain {
                    vip: vip.clone(),
                    address,
                });
                all.push(Change::Undrain {
                    vip: vip.clone(),
                    address,
                });
                all.push(Change::BackendDel {
                    vip: vip.clone(),
                    address,
                });
                all.push(Change::BackendAdd {
                    vip,
                    address,
                    weight: Some(round % 7 + 1),
                });
            }
        }
        let c = compact(&all);
        assert!(c.len() <= 6, "{} left of {}: {c:?}", c.len(), all.len());
        let file = base(false, &[0, 1], &[]);
        assert_eq!(effective(&file, &c).0, effective(&file, &all).0);
    }
}
