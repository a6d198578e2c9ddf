//! The interfaces the balancer is attached to, as the netlink watcher sees them come and go.
//! One that disappears is reported (status, metrics, log); when an interface of that name
//! returns, `xdp_lb` is attached to it again, with the same maps.
use crate::neigh::Link;

use super::sync::{Agent, Interface};

impl Agent {
    /// Interfaces that appeared, went away or changed.
    pub fn on_links(&mut self, changes: Vec<(String, Option<Link>)>) -> anyhow::Result<()> {
        let mut reattached = false;
        for (name, link) in changes {
            if !self.effective.agent.interfaces.contains(&name) {
                continue;
            }
            let was = self.interfaces.get(&name).cloned().unwrap_or_default();
            let now = match link {
                None => {
                    tracing::error!(interface = %name, "an attached interface is gone: the balancer is detached there until an interface of that name returns");
                    Interface::default()
                }
                Some(l) if was.attached && was.ifindex == Some(l.ifindex) => continue,
                Some(l) => {
                    reattached = true;
                    self.attach_again(&name, l.ifindex)
                }
            };
            self.interfaces.insert(name, now);
        }
        // The devmap and the next hops name the new interface's index now.
        if reattached { self.sync(None) } else { Ok(()) }
    }

    fn attach_again(&mut self, name: &str, ifindex: u32) -> Interface {
        let Some(pin_dir) = self.dp.pin_dir().map(std::path::Path::to_path_buf) else {
            return Interface {
                ifindex: Some(ifindex),
                attached: false,
                error: Some("the data path is not pinned".into()),
            };
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
                Interface {
                    ifindex: Some(ifindex),
                    attached: false,
                    error: Some(e.to_string()),
                }
            }
        }
    }
}
