//! Desired state: the config file plus the runtime changes made through the API, kept in the
//! state directory ([`Store`]: a snapshot and a journal, [`compact`]ed as they grow) so that a
//! restart restores them. A change is applied to a copy and the
//! result validated exactly as a file is (it is rendered back to TOML and parsed), so the API
//! accepts nothing the file would refuse.
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::config::{self, Config, HealthKind, Vip};

/// A runtime change, as the API takes it and the state file keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Change {
    VipAdd(VipSpec),
    VipDel {
        name: String,
    },
    BackendAdd {
        vip: String,
        address: IpAddr,
        weight: Option<u32>,
    },
    BackendDel {
        vip: String,
        address: IpAddr,
    },
    Drain {
        vip: String,
        address: IpAddr,
    },
    Undrain {
        vip: String,
        address: IpAddr,
    },
    /// A backend's weight, changed in place: its health state and flows are kept.
    Weight {
        vip: String,
        address: IpAddr,
        weight: u32,
    },
}

/// A VIP added at runtime: the fields of a `[[vip]]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VipSpec {
    pub name: String,
    pub address: String,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub ring_size: Option<u32>,
    /// Health check kind: tcp (default), http or none.
    #[serde(default)]
    pub health: Option<String>,
    /// ipip (default), gue or l2dsr.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwarding: Option<String>,
    #[serde(default)]
    pub backends: Vec<BackendSpec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendSpec {
    pub address: IpAddr,
    #[serde(default)]
    pub weight: Option<u32>,
}

fn find_vip<'a>(c: &'a mut Config, name: &str) -> Result<&'a mut Vip, String> {
    c.vips
        .iter_mut()
        .find(|v| v.name == name)
        .ok_or_else(|| format!("no VIP named {name:?}"))
}

fn find_backend(v: &mut Vip, addr: IpAddr) -> Result<&mut config::Backend, String> {
    let name = v.name.clone();
    v.backends
        .iter_mut()
        .find(|b| b.address == addr)
        .ok_or_else(|| format!("VIP {name:?} has no backend {addr}"))
}

/// Applies one change to `c` (unvalidated: see [`validate`]).
fn apply_one(c: &mut Config, ch: &Change) -> Result<(), String> {
    match ch {
        Change::VipAdd(spec) => {
            if c.vips.iter().any(|v| v.name == spec.name) {
                return Err(format!("a VIP named {:?} exists", spec.name));
            }
            // Parse the spec as a one-VIP file: the same checks, the same defaults.
            let text = spec_toml(c, spec);
            // Errors name the field and reason only: the text parsed is ours, not the user's.
            let parsed = config::parse("vip add", &text).map_err(|e| runtime_error(&e))?;
            c.vips.extend(parsed.vips);
        }
        Change::VipDel { name } => {
            let before = c.vips.len();
            c.vips.retain(|v| &v.name != name);
            if c.vips.len() == before {
                return Err(format!("no VIP named {name:?}"));
            }
        }
        Change::BackendAdd {
            vip,
            address,
            weight,
        } => {
            let v = find_vip(c, vip)?;
            if v.backends.iter().any(|b| b.address == *address) {
                return Err(format!("VIP {vip:?} has backend {address} already"));
            }
            v.backends.push(config::Backend {
                address: *address,
                weight: weight.unwrap_or(100),
                drain: false,
            });
        }
        Change::BackendDel { vip, address } => {
            let v = find_vip(c, vip)?;
            find_backend(v, *address)?;
            v.backends.retain(|b| b.address != *address);
        }
        Change::Drain { vip, address } => find_backend(find_vip(c, vip)?, *address)?.drain = true,
        Change::Undrain { vip, address } => {
            find_backend(find_vip(c, vip)?, *address)?.drain = false
        }
        Change::Weight {
            vip,
            address,
            weight,
        } => find_backend(find_vip(c, vip)?, *address)?.weight = *weight,
    }
    Ok(())
}

fn spec_toml(c: &Config, spec: &VipSpec) -> String {
    let mut agent = render_agent(c);
    let mut vip = toml::Table::new();
    vip.insert("name".into(), spec.name.clone().into());
    vip.insert("address".into(), spec.address.clone().into());
    if let Some(p) = &spec.protocol {
        vip.insert("protocol".into(), p.clone().into());
    }
    if let Some(r) = spec.ring_size {
        vip.insert("ring_size".into(), (r as i64).into());
    }
    if let Some(f) = &spec.forwarding {
        vip.insert("forwarding".into(), f.clone().into());
    }
    if let Some(h) = &spec.health {
        let mut t = toml::Table::new();
        t.insert("kind".into(), h.clone().into());
        vip.insert("health".into(), t.into());
    }
    let backends: Vec<toml::Value> = spec
        .backends
        .iter()
        .map(|b| {
            let mut t = toml::Table::new();
            t.insert("address".into(), b.address.to_string().into());
            t.insert("weight".into(), (b.weight.unwrap_or(100) as i64).into());
            t.into()
        })
        .collect();
    vip.insert("backend".into(), backends.into());
    agent.insert("vip".into(), vec![toml::Value::from(vip)].into());
    toml::to_string(&agent).unwrap_or_default()
}

/// `file` with `changes` applied in order. A change that no longer applies (the file changed
/// under it) is skipped and reported.
pub fn effective(file: &Config, changes: &[Change]) -> (Config, Vec<String>) {
    let mut c = file.clone();
    let mut skipped = Vec::new();
    for ch in changes {
        let mut next = c.clone();
        match apply_one(&mut next, ch).and_then(|()| validate(&next)) {
            Ok(v) => c = v,
            Err(e) => skipped.push(format!("{ch:?}: {e}")),
        }
    }
    (c, skipped)
}

/// `current` with `ch` applied, validated like a file; the error says why not.
pub fn try_apply(current: &Config, ch: &Change) -> Result<Config, String> {
    let mut next = current.clone();
    apply_one(&mut next, ch)?;
    validate(&next)
}

/// Renders `c` to TOML and parses it again: every check of the file applies.
pub fn validate(c: &Config) -> Result<Config, String> {
    config::parse("runtime state", &render(c)).map_err(|e| runtime_error(&e))
}

/// A refusal of a runtime change, in the words of the change: the field and the reason
/// (the line is of text the agent rendered, which the user never saw).
fn runtime_error(e: &config::ConfigError) -> String {
    format!("{}: {}", e.field, e.reason)
}

fn ms(d: std::time::Duration) -> toml::Value {
    format!("{}ms", d.as_millis()).into()
}

fn render_agent(c: &Config) -> toml::Table {
    let a = &c.agent;
    let mut t = toml::Table::new();
    t.insert("interfaces".into(), a.interfaces.clone().into());
    t.insert(
        "xdp_mode".into(),
        format!("{:?}", a.xdp_mode).to_lowercase().into(),
    );
    t.insert("instance".into(), a.instance.clone().into());
    t.insert("socket".into(), a.socket.display().to_string().into());
    t.insert("state_dir".into(), a.state_dir.display().to_string().into());
    t.insert("pin_dir".into(), a.pin_dir.display().to_string().into());
    t.insert("flow_table_size".into(), (a.flow_table_size as i64).into());
    if let Some(m) = a.metrics {
        t.insert("metrics".into(), m.to_string().into());
    }
    if let Some(s) = a.source_v4 {
        t.insert("source_v4".into(), s.to_string().into());
    }
    if let Some(s) = a.source_v6 {
        t.insert("source_v6".into(), s.to_string().into());
    }
    t.insert("flow_active".into(), ms(a.flow_active));
    if let Some(m) = a.path_mtu {
        t.insert("path_mtu".into(), (m as i64).into());
    }
    if a.answer_echo {
        t.insert("answer_echo".into(), true.into());
    }
    let unbalanced = match a.unbalanced {
        config::Unbalanced::Pass => "pass",
        config::Unbalanced::Drop => "drop",
    };
    t.insert("unbalanced".into(), unbalanced.into());
    t.insert("tcp_idle".into(), ms(a.tcp_idle));
    if let Some(p) = a.source_v4_prefix {
        t.insert("source_v4_prefix".into(), p.to_string().into());
    }
    t.insert("gue_port".into(), i64::from(a.gue_port).into());
    if let Some(p) = a.source_v6_prefix {
        t.insert("source_v6_prefix".into(), p.to_string().into());
    }
    let mut root = toml::Table::new();
    root.insert("agent".into(), t.into());
    if let Some(b) = &c.bgp {
        let mut t = toml::Table::new();
        t.insert(
            "bird_socket".into(),
            b.bird_socket.display().to_string().into(),
        );
        t.insert(
            "routes_file".into(),
            b.routes_file.display().to_string().into(),
        );
        root.insert("bgp".into(), t.into());
    }
    if let Some(servers) = &c.dns_servers {
        let list: Vec<String> = servers.iter().map(|s| s.to_string()).collect();
        let mut t = toml::Table::new();
        t.insert("servers".into(), list.into());
        let d = root
            .entry("discovery")
            .or_insert_with(|| toml::Table::new().into());
        if let Some(d) = d.as_table_mut() {
            d.insert("dns".into(), t.into());
        }
    }
    if let Some(e) = &c.etcd {
        let mut t = toml::Table::new();
        t.insert("endpoints".into(), e.endpoints.clone().into());
        t.insert("prefix".into(), e.prefix.clone().into());
        let d = root
            .entry("discovery")
            .or_insert_with(|| toml::Table::new().into());
        if let Some(d) = d.as_table_mut() {
            d.insert("etcd".into(), t.into());
        }
    }
    root
}

/// The configuration as a TOML file that parses back to it.
pub fn render(c: &Config) -> String {
    let mut root = render_agent(c);
    let vips: Vec<toml::Value> = c.vips.iter().map(|v| render_vip(v).into()).collect();
    root.insert("vip".into(), vips.into());
    toml::to_string(&root).unwrap_or_default()
}

fn render_vip(v: &Vip) -> toml::Table {
    let mut t = toml::Table::new();
    t.insert("name".into(), v.name.clone().into());
    t.insert("address".into(), v.address.to_string().into());
    t.insert("protocol".into(), v.protocol.to_string().into());
    t.insert("forwarding".into(), v.forwarding.name().into());
    t.insert("ring_size".into(), (v.ring_size as i64).into());
    t.insert("udp_idle".into(), ms(v.udp_idle));
    if v.fragments {
        t.insert("fragments".into(), true.into());
    }
    let on_down = match v.on_down {
        config::OnDown::Keep => "keep",
        config::OnDown::Move => "move",
    };
    t.insert("on_down".into(), on_down.into());
    t.insert("hash".into(), v.hash.name().into());
    if let Some(p) = v.affinity_prefix {
        let key = if v.address.is_ipv4() {
            "affinity_prefix_v4"
        } else {
            "affinity_prefix_v6"
        };
        t.insert(key.into(), (p as i64).into());
    }
    if !v.acl.is_empty() {
        let list =
            |nets: &[ipnet::IpNet]| -> Vec<String> { nets.iter().map(|n| n.to_string()).collect() };
        let mut at = toml::Table::new();
        at.insert("allow".into(), list(&v.acl.allow).into());
        at.insert("deny".into(), list(&v.acl.deny).into());
        t.insert("acl".into(), at.into());
    }
    if let Some(l) = v.limits {
        let mut lt = toml::Table::new();
        lt.insert(
            "new_flows_per_source".into(),
            (l.new_flows_per_source as i64).into(),
        );
        lt.insert("burst".into(), (l.burst as i64).into());
        t.insert("limits".into(), lt.into());
    }
    if let Some(o) = v.outlier {
        let mut ot = toml::Table::new();
        ot.insert("interval".into(), ms(o.interval));
        ot.insert("retry_percent".into(), (o.retry_percent as i64).into());
        ot.insert("min_flows".into(), (o.min_flows as i64).into());
        ot.insert("base_ejection_time".into(), ms(o.base_ejection_time));
        ot.insert("max_ejection_time".into(), ms(o.max_ejection_time));
        ot.insert(
            "max_ejection_percent".into(),
            (o.max_ejection_percent as i64).into(),
        );
        t.insert("outlier".into(), ot.into());
    }
    let h = &v.health;
    let mut ht = toml::Table::new();
    let kind = match h.kind {
        HealthKind::Tcp => "tcp",
        HealthKind::Http => "http",
        HealthKind::Https => "https",
        HealthKind::Udp => "udp",
        HealthKind::None => "none",
    };
    ht.insert("kind".into(), kind.into());
    let hex = |b: &[u8]| -> String { b.iter().map(|x| format!("{x:02x}")).collect() };
    if let Some(b) = &h.body {
        ht.insert("body".into(), b.clone().into());
    }
    if h.kind == HealthKind::Https {
        if let Some(n) = &h.sni {
            ht.insert("sni".into(), n.clone().into());
        }
        ht.insert("verify".into(), h.verify.into());
        if let Some(c) = &h.ca {
            ht.insert("ca".into(), c.display().to_string().into());
        }
    }
    if h.kind == HealthKind::Udp {
        ht.insert("send_hex".into(), hex(&h.send).into());
        if let Some(e) = &h.expect {
            ht.insert("expect_hex".into(), hex(e).into());
        }
    }
    ht.insert("via".into(), h.via.name().into());
    if let Some(p) = h.port {
        ht.insert("port".into(), (p as i64).into());
    }
    ht.insert("path".into(), h.path.clone().into());
    ht.insert("expect_status".into(), (h.expect_status as i64).into());
    ht.insert("interval".into(), ms(h.interval));
    ht.insert("timeout".into(), ms(h.timeout));
    ht.insert("rise".into(), (h.rise as i64).into());
    ht.insert("fall".into(), (h.fall as i64).into());
    ht.insert("damping".into(), h.damping.into());
    t.insert("health".into(), ht.into());
    let backends: Vec<toml::Value> = v
        .backends
        .iter()
        .map(|b| {
            let mut bt = toml::Table::new();
            bt.insert("address".into(), b.address.to_string().into());
            bt.insert("weight".into(), (b.weight as i64).into());
            bt.insert("drain".into(), b.drain.into());
            bt.into()
        })
        .chain(v.hosts.iter().map(|h| {
            let mut bt = toml::Table::new();
            bt.insert("host".into(), h.host.clone().into());
            bt.insert("weight".into(), (h.weight as i64).into());
            bt.into()
        }))
        .collect();
    t.insert("backend".into(), backends.into());
    t
}

mod compact;
mod store;
pub use compact::compact;
pub use store::{JOURNAL_MAX, Store};

#[cfg(test)]
mod tests;
