//! Attaching `xdp_lb` to interfaces, and keeping the attachment across agent restarts.
use std::path::Path;

use aya::programs::{
    XdpMode,
    links::{FdLink, PinnedLink},
    xdp::{XdpLink, XdpLinkId},
};

use super::{Dataplane, DataplaneError, Result, nix_ifindex};
use crate::config::XdpMode as ConfigMode;

impl Dataplane {
    /// Attaches to `interface`. Returns the mode it ended up in: `auto` falls back from native
    /// to generic, and says so.
    pub fn attach(&mut self, interface: &str, mode: ConfigMode) -> Result<&'static str> {
        if nix_ifindex(interface).is_none() {
            return Err(DataplaneError::UnknownInterface(interface.into()));
        }
        let program = self.program;
        let try_mode = |dp: &mut Self, m: XdpMode, name: &'static str| -> Result<XdpLinkId> {
            dp.xdp()?
                .attach(interface, m)
                .map_err(|source| DataplaneError::Attach {
                    program: program.into(),
                    interface: interface.into(),
                    mode: name,
                    source: Box::new(source),
                })
        };
        let (id, used) = match mode {
            ConfigMode::Native => (try_mode(self, XdpMode::Driver, "native")?, "native"),
            ConfigMode::Generic => (try_mode(self, XdpMode::Skb, "generic")?, "generic"),
            ConfigMode::Auto => match try_mode(self, XdpMode::Driver, "native") {
                Ok(id) => (id, "native"),
                Err(e) => {
                    tracing::warn!(interface, error = %e, "native XDP failed; FALLING BACK TO GENERIC XDP (slow: every packet pays for an skb)");
                    (try_mode(self, XdpMode::Skb, "generic")?, "generic")
                }
            },
        };
        self.links.push((interface.to_string(), id));
        Ok(used)
    }

    /// Attaches to `interface`, keeping the attachment across agent restarts: if an earlier
    /// run left its link pinned under `pin_dir/links/`, the link is kept and only its program
    /// is replaced, atomically (`bpf_link_update`): traffic never sees an interface without
    /// the balancer, and an upgraded program takes over the same maps. Returns the mode, or
    /// "adopted".
    pub fn attach_pinned(
        &mut self,
        interface: &str,
        mode: ConfigMode,
        pin_dir: &Path,
    ) -> Result<&'static str> {
        let path = pin_dir.join("links").join(interface);
        if !path.exists() {
            return self.attach(interface, mode);
        }
        let program = self.program;
        let link_err = |e: String| {
            DataplaneError::Limit(format!("adopting the pinned link {}: {e}", path.display()))
        };
        let pinned = PinnedLink::from_pin(&path).map_err(|e| link_err(e.to_string()))?;
        let link = XdpLink::try_from(FdLink::from(pinned)).map_err(|e| link_err(e.to_string()))?;
        let id = self
            .xdp()?
            .attach_to_link(link)
            .map_err(|source| DataplaneError::Attach {
                program: program.into(),
                interface: interface.into(),
                mode: "pinned link",
                source: Box::new(source),
            })?;
        self.links.push((interface.to_string(), id));
        if !self.pinned.iter().any(|i| i == interface) {
            self.pinned.push(interface.to_string());
        }
        Ok("adopted")
    }

    /// Pins every link this run made (call once the start has succeeded: a start that fails
    /// earlier leaves nothing attached).
    pub fn pin_links(&mut self, pin_dir: &Path) -> Result<()> {
        let dir = pin_dir.join("links");
        std::fs::create_dir_all(&dir)
            .map_err(|e| DataplaneError::Limit(format!("creating {}: {e}", dir.display())))?;
        let fresh: Vec<(String, XdpLinkId)> = std::mem::take(&mut self.links)
            .into_iter()
            .filter(|(i, _)| !self.pinned.contains(i))
            .collect();
        for (interface, id) in fresh {
            let link = self
                .xdp()?
                .take_link(id)
                .map_err(|e| DataplaneError::Limit(format!("{interface}: {e}")))?;
            match FdLink::try_from(link) {
                Ok(fd) => {
                    fd.pin(dir.join(&interface)).map_err(|e| {
                        DataplaneError::Limit(format!("pinning the link of {interface}: {e}"))
                    })?;
                    self.pinned.push(interface);
                }
                Err(e) => {
                    tracing::warn!(interface, error = %e, "this attachment (netlink, not a BPF link) cannot be pinned: stopping the agent will detach it");
                }
            }
        }
        Ok(())
    }

    /// Puts this program on every pinned link under `pin_dir` of `interfaces`, atomically per
    /// interface (for a capture's program, and back).
    pub fn take_over(&mut self, interfaces: &[String], pin_dir: &Path) -> Result<()> {
        for i in interfaces {
            if !pin_dir.join("links").join(i).exists() {
                return Err(DataplaneError::Limit(format!(
                    "{i}: its attachment is not a pinned BPF link, so no other program can be swapped in"
                )));
            }
            self.attach_pinned(i, ConfigMode::Native, pin_dir)?;
        }
        Ok(())
    }

    /// Attaches again to an interface that went away and came back under the same name. The
    /// old device took its attachment with it (its link, pinned or not, is defunct): that link
    /// is forgotten and unpinned, a fresh one made and pinned. The maps are untouched, so the
    /// flow table and every backend entry carry on.
    pub fn reattach(
        &mut self,
        interface: &str,
        mode: ConfigMode,
        pin_dir: &Path,
    ) -> Result<&'static str> {
        self.pinned.retain(|i| i != interface);
        self.links.retain(|(i, _)| i != interface);
        let pin = pin_dir.join("links").join(interface);
        match std::fs::remove_file(&pin) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(DataplaneError::Limit(format!(
                    "removing the defunct link {}: {e}",
                    pin.display()
                )));
            }
        }
        let used = self.attach(interface, mode)?;
        self.pin_links(pin_dir)?;
        Ok(used)
    }

    /// Interfaces attached so far.
    pub fn attached(&self) -> impl Iterator<Item = &str> {
        self.links
            .iter()
            .map(|(i, _)| i.as_str())
            .chain(self.pinned.iter().map(String::as_str))
    }
}
