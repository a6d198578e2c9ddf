//! The interfaces the balancer is attached to, as the netlink watcher sees them come and go.
//! One that disappears is reported (status, metrics, log); when an interface of that name
//! returns, `xdp_lb` is attached to it again, with the same maps.
use std::collections::BTreeMap;

use super::sync::Agent;
use crate::neigh::Link;

/// One of the interfaces the balancer attaches to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interface {
    /// Its index while it exists.
    pub ifindex: Option<u32>,
    pub attached: bool,
    /// Why attaching again failed, if it did.
    pub error: Option<String>,
}

/// What a link change asks of the agent.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Not one of ours, or the same device as attached (an MTU or MAC change: the next
    /// hops follow by themselves).
    Nothing,
    /// The device is gone.
    Gone,
    /// A device of that name with this index, not attached yet.
    Attach(u32),
}

/// The configured interfaces, by name.
#[derive(Debug, Default)]
pub struct Interfaces(BTreeMap<String, Interface>);

impl Interfaces {
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Interface)> {
        self.0.iter()
    }

    pub fn set(&mut self, name: &str, state: Interface) {
        self.0.insert(name.to_string(), state);
    }

    /// What `link` (the kernel's word on interface `name`) asks for, given `configured`.
    pub fn step(&self, configured: &[String], name: &str, link: Option<&Link>) -> Step {
        if !configured.iter().any(|c| c == name) {
            return Step::Nothing;
        }
        let was = self.0.get(name);
        match link {
            None if was.is_some_and(|w| w.ifindex.is_none()) => Step::Nothing,
            None => Step::Gone,
            Some(l) if was.is_some_and(|w| w.attached && w.ifindex == Some(l.ifindex)) => {
                Step::Nothing
            }
            Some(l) => Step::Attach(l.ifindex),
        }
    }
}

impl Agent {
    /// Interfaces that appeared, went away or changed.
    pub fn on_links(&mut self, changes: Vec<(String, Option<Link>)>) -> anyhow::Result<()> {
        let mut reattached = false;
        for (name, link) in changes {
            let step = self
                .interfaces
                .step(&self.effective.agent.interfaces, &name, link.as_ref());
            let now = match step {
                Step::Nothing => continue,
                Step::Gone => {
                    tracing::error!(interface = %name, "an attached interface is gone: the balancer is detached there until an interface of that name returns");
                    Interface::default()
                }
                Step::Attach(ifindex) => {
                    reattached = true;
                    self.attach_again(&name, ifindex)
                }
            };
            self.interfaces.set(&name, now);
        }
        // The devmap and the next hops name the new interface's index now.
        if reattached { self.sync(None) } else { Ok(()) }
    }

    fn attach_again(&mut self, name: &str, ifindex: u32) -> Interface {
        let failed = |error: String| Interface {
            ifindex: Some(ifindex),
            attached: false,
            error: Some(error),
        };
        let Some(pin_dir) = self.dp.pin_dir().map(std::path::Path::to_path_buf) else {
            return failed("the data path is not pinned".into());
        };
        let mode = self.effective.agent.xdp_mode;
        let attached = self
            .dp
            .reattach(name, mode, &pin_dir)
            .and_then(|m| self.dp.allow_egress(ifindex).map(|()| m));
        match attached {
            Ok(mode) => {
                tracing::info!(interface = %name, ifindex, mode, "xdp_lb attached again");
                Interface {
                    ifindex: Some(ifindex),
                    attached: true,
                    error: None,
                }
            }
            Err(e) => {
                tracing::error!(interface = %name, ifindex, error = %e, "attaching xdp_lb again failed");
                failed(e.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::neigh::Mac;

    fn link(ifindex: u32) -> Link {
        Link {
            name: "eth0".into(),
            ifindex,
            mtu: 1500,
            mac: Mac([2, 0, 0, 0, 0, 2]),
        }
    }

    #[test]
    fn an_interface_that_goes_is_reported_once_and_attached_again_when_it_returns() {
        let configured = ["eth0".to_string()];
        let mut i = Interfaces::default();
        i.set(
            "eth0",
            Interface {
                ifindex: Some(2),
                attached: true,
                error: None,
            },
        );
        assert_eq!(i.step(&configured, "eth0", Some(&link(2))), Step::Nothing);
        assert_eq!(i.step(&configured, "eth1", None), Step::Nothing, "not ours");
        assert_eq!(i.step(&configured, "eth0", None), Step::Gone);
        i.set("eth0", Interface::default());
        assert_eq!(
            i.step(&configured, "eth0", None),
            Step::Nothing,
            "gone already"
        );
        assert_eq!(i.step(&configured, "eth0", Some(&link(7))), Step::Attach(7));
        // Gone and back between two looks: another index, so attached again.
        i.set(
            "eth0",
            Interface {
                ifindex: Some(7),
                attached: true,
                error: None,
            },
        );
        assert_eq!(i.step(&configured, "eth0", Some(&link(9))), Step::Attach(9));
        // An attach that failed is tried again on the next word of the device.
        i.set(
            "eth0",
            Interface {
                ifindex: Some(9),
                attached: false,
                error: Some("busy".into()),
            },
        );
        assert_eq!(i.step(&configured, "eth0", Some(&link(9))), Step::Attach(9));
    }
}
