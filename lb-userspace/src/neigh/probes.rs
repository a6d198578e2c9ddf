//! The health probes' way: a device of their own, and a policy rule that sends packets with a
//! probe's mark to a table of their own, whose default routes (IPv4 and IPv6) lead to that
//! device, on whose egress `tc_probe` encapsulates them to their backends.
//!
//! The device is one end of a veth pair, ARP off (its neighbours need no resolving), the other
//! end left down: a packet the program did not take has nowhere to go and is dropped. (Not the
//! loopback device: IPv6 turns a route through it into an unreachable one. Not a dummy: it is
//! a module some kernels lack; veth is there wherever containers run.)
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use lb_common::{PROBE_MARK, PROBE_MARK_MASK};
use rtnetlink::{
    LinkUnspec, LinkVeth, RouteMessageBuilder,
    packet_route::{
        route::RouteScope,
        rule::{RuleAction, RuleAttribute},
    },
};

use super::{Kernel, NeighError, netlink};

/// The probes' device, and its veth peer (kept down).
pub const PROBE_DEVICE: &str = "lbprobe0";
pub const PROBE_PEER: &str = "lbprobe1";
/// The probes' routing table ("LB").
pub const PROBE_TABLE: u32 = 0x4c42;
/// The rule's priority: before the main table's (32766), after the local table's (0).
pub const PROBE_RULE_PRIORITY: u32 = 100;

impl Kernel {
    /// The probes' device, made if it is not there, up and without ARP; its index.
    pub async fn probe_device(&self) -> Result<u32, NeighError> {
        if self.link_by_name(PROBE_DEVICE).await?.is_none() {
            let pair = LinkVeth::new(PROBE_DEVICE, PROBE_PEER).build();
            exists_is_fine(self.handle.link().add(pair).execute().await)?;
        }
        let link = self
            .link_by_name(PROBE_DEVICE)
            .await?
            .ok_or_else(|| NeighError::Netlink(format!("{PROBE_DEVICE} did not appear")))?;
        let set = LinkUnspec::new_with_index(link.ifindex)
            .arp(false)
            .up()
            .build();
        self.handle
            .link()
            .set(set)
            .execute()
            .await
            .map_err(netlink)?;
        Ok(link.ifindex)
    }

    /// Installs the rule and routes (both families) to device `dev`; what is there already is
    /// kept.
    pub async fn probe_routes(&self, dev: u32) -> Result<(), NeighError> {
        for v6 in [false, true] {
            let rule = self.handle.rule().add();
            if v6 {
                add_rule(rule.v6()).await?;
            } else {
                add_rule(rule.v4()).await?;
            }
            let unspecified = if v6 {
                IpAddr::V6(Ipv6Addr::UNSPECIFIED)
            } else {
                IpAddr::V4(Ipv4Addr::UNSPECIFIED)
            };
            let route = RouteMessageBuilder::<IpAddr>::new()
                .destination_prefix(unspecified, 0)
                .map_err(|e| NeighError::Netlink(e.to_string()))?
                .output_interface(dev)
                .table_id(PROBE_TABLE)
                .scope(RouteScope::Link)
                .build();
            self.handle
                .route()
                .add(route)
                .replace()
                .execute()
                .await
                .map_err(netlink)?;
        }
        Ok(())
    }
}

/// `fwmark PROBE_MARK/PROBE_MARK_MASK lookup PROBE_TABLE`, unless it is there already.
async fn add_rule<T>(r: rtnetlink::RuleAddRequest<T>) -> Result<(), NeighError> {
    let mut r = r
        .fw_mark(PROBE_MARK)
        .table_id(PROBE_TABLE)
        .priority(PROBE_RULE_PRIORITY)
        .action(RuleAction::ToTable);
    r.message_mut()
        .attributes
        .push(RuleAttribute::FwMask(PROBE_MARK_MASK));
    exists_is_fine(r.execute().await)
}

/// A rule (or device) that exists already is the one wanted.
fn exists_is_fine(r: Result<(), rtnetlink::Error>) -> Result<(), NeighError> {
    match r {
        Err(rtnetlink::Error::NetlinkError(m))
            if m.code.map(|c| c.get()) == Some(-libc::EEXIST) =>
        {
            Ok(())
        }
        r => r.map_err(netlink),
    }
}
