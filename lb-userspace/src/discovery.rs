//! Where VIPs and backends come from besides the file: etcd (`[discovery.etcd]`).
//!
//! Layout under the prefix (default `/lb/`), values JSON:
//! - `vips/NAME`: a VIP, with the fields of a `[[vip]]` table the API takes:
//!   `{"address": "198.19.0.100:80", "protocol": "tcp", "health": "tcp", "ring_size": 65537,
//!   "backends": [{"address": "198.18.0.11", "weight": 100}]}` (all but `address` optional);
//! - `backends/VIP/ADDRESS`: a backend of VIP `VIP` (from the file or from etcd), the value
//!   `{"weight": 100, "drain": false}` or empty for the defaults.
//!
//! A watcher task keeps a copy of every key under the prefix and hands the whole of it to the
//! control loop after every change; the agent turns it into changes applied on top of the
//! file (before the CLI's runtime changes), each validated like the file. While etcd cannot be
//! reached the last copy stays in force and `lb status` says discovery is stale.
use std::{collections::BTreeMap, net::IpAddr, time::Duration};

use etcd_client::{Client, ConnectOptions, EventType, GetOptions, WatchOptions};
use serde::{Deserialize, Serialize};
use tokio::{sync::mpsc::UnboundedSender, task::JoinHandle};

use crate::{
    config::Etcd,
    state::{BackendSpec, Change, VipSpec},
};

/// What the watcher reports.
#[derive(Debug, Clone)]
pub enum Event {
    /// Every key under the prefix (without it) and its value, as of now.
    Snapshot(BTreeMap<String, String>),
    /// etcd could not be reached (or the watch broke): why.
    Unreachable(String),
}

/// How discovery stands, for `lb status`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub source: String,
    /// `connecting`, `current` (watching), or `stale` (etcd unreachable: the last state kept).
    pub state: String,
    pub error: Option<String>,
    /// Keys under the prefix in the state in force.
    pub keys: usize,
    /// Entries that do not apply, and why.
    pub skipped: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EtcdVip {
    address: String,
    #[serde(default)]
    protocol: Option<String>,
    #[serde(default)]
    ring_size: Option<u32>,
    #[serde(default)]
    health: Option<String>,
    #[serde(default)]
    forwarding: Option<String>,
    #[serde(default)]
    backends: Vec<BackendSpec>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct EtcdBackend {
    #[serde(default)]
    weight: Option<u32>,
    #[serde(default)]
    drain: bool,
}

/// The changes a snapshot makes to the file (VIPs first, then backends), and the entries
/// that cannot be read, each with its key and why.
pub fn changes(prefix: &str, snapshot: &BTreeMap<String, String>) -> (Vec<Change>, Vec<String>) {
    let (mut vips, mut backends, mut bad) = (Vec::new(), Vec::new(), Vec::new());
    for (key, value) in snapshot {
        let parts: Vec<&str> = key.split('/').collect();
        let r: Result<(), String> = match parts.as_slice() {
            ["vips", name] => serde_json::from_str::<EtcdVip>(value)
                .map_err(|e| e.to_string())
                .map(|v| {
                    vips.push(Change::VipAdd(VipSpec {
                        name: name.to_string(),
                        address: v.address,
                        protocol: v.protocol,
                        ring_size: v.ring_size,
                        health: v.health,
                        forwarding: v.forwarding,
                        backends: v.backends,
                    }))
                }),
            ["backends", vip, addr] => addr
                .parse::<IpAddr>()
                .map_err(|_| format!("{addr:?} is not an IP address"))
                .and_then(|address| {
                    let b: EtcdBackend = if value.trim().is_empty() {
                        EtcdBackend::default()
                    } else {
                        serde_json::from_str(value).map_err(|e| e.to_string())?
                    };
                    backends.push(Change::BackendAdd {
                        vip: vip.to_string(),
                        address,
                        weight: b.weight,
                    });
                    if b.drain {
                        backends.push(Change::Drain {
                            vip: vip.to_string(),
                            address,
                        });
                    }
                    Ok(())
                }),
            _ => Err("not vips/NAME or backends/VIP/ADDRESS".into()),
        };
        if let Err(e) = r {
            bad.push(format!("etcd {prefix}{key}: {e}"));
        }
    }
    vips.extend(backends);
    (vips, bad)
}

/// Watches `cfg.prefix` and reports every change, reconnecting (every second) when etcd goes.
pub fn spawn(cfg: Etcd, tx: UnboundedSender<Event>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let e = watch(&cfg, &tx).await;
            if tx.send(Event::Unreachable(format!("{e:#}"))).is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

/// Reads the prefix, then follows it; returns only on an error.
async fn watch(cfg: &Etcd, tx: &UnboundedSender<Event>) -> anyhow::Error {
    let run = async {
        let opts = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(Duration::from_secs(5))
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2));
        let mut client = Client::connect(&cfg.endpoints, Some(opts)).await?;
        let resp = client
            .get(cfg.prefix.as_str(), Some(GetOptions::new().with_prefix()))
            .await?;
        let mut keys = BTreeMap::new();
        for kv in resp.kvs() {
            if let (Ok(k), Ok(v)) = (kv.key_str(), kv.value_str()) {
                keys.insert(k.trim_start_matches(&cfg.prefix).to_string(), v.to_string());
            }
        }
        let rev = resp.header().map_or(0, |h| h.revision());
        let _ = tx.send(Event::Snapshot(keys.clone()));
        let mut stream = client
            .watch(
                cfg.prefix.as_str(),
                Some(
                    WatchOptions::new()
                        .with_prefix()
                        .with_start_revision(rev + 1),
                ),
            )
            .await?;
        while let Some(resp) = stream.message().await? {
            if resp.canceled() {
                anyhow::bail!("etcd cancelled the watch: {}", resp.cancel_reason());
            }
            let mut changed = false;
            for ev in resp.events() {
                let Some(kv) = ev.kv() else { continue };
                let Ok(k) = kv.key_str() else { continue };
                let k = k.trim_start_matches(&cfg.prefix).to_string();
                match ev.event_type() {
                    EventType::Put => {
                        keys.insert(k, kv.value_str().unwrap_or("").to_string());
                    }
                    EventType::Delete => {
                        keys.remove(&k);
                    }
                }
                changed = true;
            }
            if changed {
                let _ = tx.send(Event::Snapshot(keys.clone()));
            }
        }
        anyhow::bail!("etcd ended the watch")
    };
    let r: anyhow::Result<()> = run.await;
    match r {
        Err(e) => e.context(format!("etcd {}", cfg.endpoints.join(","))),
        Ok(()) => anyhow::anyhow!("etcd watch ended"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_become_changes_and_bad_ones_are_named() {
        let snap: BTreeMap<String, String> = [
            ("backends/web/198.18.0.13", ""),
            ("backends/web/198.18.0.14", r#"{"weight": 50, "drain": true}"#),
            (
                "vips/dns",
                r#"{"address": "198.19.0.100:53", "protocol": "udp", "backends": [{"address": "198.18.0.11"}]}"#,
            ),
            ("backends/web/not-an-ip", ""),
            ("vips/bad", r#"{"adress": "x"}"#),
            ("other", "x"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let (ch, bad) = changes("/lb/", &snap);
        assert!(matches!(&ch[0], Change::VipAdd(v) if v.name == "dns" && v.backends.len() == 1));
        let b13: IpAddr = "198.18.0.13".parse().unwrap();
        let b14: IpAddr = "198.18.0.14".parse().unwrap();
        assert!(ch.contains(&Change::BackendAdd {
            vip: "web".into(),
            address: b13,
            weight: None
        }));
        assert!(ch.contains(&Change::BackendAdd {
            vip: "web".into(),
            address: b14,
            weight: Some(50)
        }));
        assert!(ch.contains(&Change::Drain {
            vip: "web".into(),
            address: b14
        }));
        assert_eq!(bad.len(), 3, "{bad:?}");
        assert!(
            bad.iter().any(|b| b.starts_with("etcd /lb/other:")),
            "{bad:?}"
        );
        assert!(bad.iter().any(|b| b.contains("not-an-ip")), "{bad:?}");
    }
}
