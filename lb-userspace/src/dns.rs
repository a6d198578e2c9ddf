//! Backends named by hostname (`host = "app.example.com"` in a `[[vip.backend]]`): a task
//! resolves every such name (A and AAAA, hickory-resolver), again when the shortest TTL of its
//! answers runs out, and reports the addresses; the agent turns each address of the VIP's
//! family into a backend, like any other change. A name that cannot be resolved keeps its last
//! addresses (and `lb status` says why); a name that has no records has no backends.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    time::Duration,
};

use hickory_resolver::{
    Resolver,
    config::{NameServerConfig, ResolverConfig},
    net::{NetError, runtime::TokioRuntimeProvider},
};
use serde::{Deserialize, Serialize};
use tokio::{
    sync::{mpsc::UnboundedSender, watch},
    task::JoinHandle,
    time::Instant,
};

/// What the resolver reports: every name's addresses, and the names it could not resolve.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resolved {
    pub addrs: BTreeMap<String, Vec<IpAddr>>,
    pub errors: BTreeMap<String, String>,
}

/// How the names stand, for `lb status`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub hosts: BTreeMap<String, Vec<String>>,
    pub errors: BTreeMap<String, String>,
}

/// The shortest and longest wait between two resolutions of a name.
const MIN_WAIT: Duration = Duration::from_secs(1);
const MAX_WAIT: Duration = Duration::from_secs(300);
/// The wait after a failure.
const RETRY: Duration = Duration::from_secs(5);

fn resolver(servers: Option<&[IpAddr]>) -> Result<Resolver<TokioRuntimeProvider>, NetError> {
    let mut b = match servers {
        Some(list) => Resolver::builder_with_config(
            ResolverConfig::from_name_servers(
                list.iter()
                    .map(|ip| NameServerConfig::udp_and_tcp(*ip))
                    .collect(),
            ),
            TokioRuntimeProvider::default(),
        ),
        None => Resolver::builder_tokio()?,
    };
    // No cache: the task asks again exactly when the TTL says, and must see the new answer.
    b.options_mut().cache_size = 0;
    b.build()
}

/// Resolves the names `hosts` holds (and again when it changes), sending each result.
pub fn spawn(
    servers: Option<Vec<IpAddr>>,
    mut hosts: watch::Receiver<BTreeSet<String>>,
    tx: UnboundedSender<Resolved>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let r = match resolver(servers.as_deref()) {
            Ok(r) => r,
            Err(e) => {
                let names = hosts.borrow().clone();
                let _ = tx.send(Resolved {
                    addrs: BTreeMap::new(),
                    errors: names
                        .into_iter()
                        .map(|n| (n, format!("no resolver: {e}")))
                        .collect(),
                });
                return;
            }
        };
        let mut last = Resolved::default();
        loop {
            let names = hosts.borrow_and_update().clone();
            let mut now = Resolved::default();
            let mut next = Instant::now() + MAX_WAIT;
            for name in &names {
                let fqdn = format!("{}.", name.trim_end_matches('.'));
                match r.lookup_ip(fqdn.as_str()).await {
                    Ok(l) => {
                        let mut a: Vec<IpAddr> = l.iter().collect();
                        a.sort();
                        a.dedup();
                        now.addrs.insert(name.clone(), a);
                        next = next
                            .min(Instant::from_std(l.valid_until()).max(Instant::now() + MIN_WAIT));
                    }
                    Err(e) if is_no_records(&e) => {
                        now.addrs.insert(name.clone(), Vec::new());
                        next = next.min(Instant::now() + RETRY);
                    }
                    Err(e) => {
                        // Keep what it resolved to last.
                        if let Some(a) = last.addrs.get(name) {
                            now.addrs.insert(name.clone(), a.clone());
                        }
                        now.errors.insert(name.clone(), e.to_string());
                        next = next.min(Instant::now() + RETRY);
                    }
                }
            }
            if now != last {
                if tx.send(now.clone()).is_err() {
                    return;
                }
                last = now;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                changed = hosts.changed() => if changed.is_err() { return },
            }
        }
    })
}

fn is_no_records(e: &NetError) -> bool {
    matches!(
        e,
        NetError::Dns(hickory_resolver::net::DnsError::NoRecordsFound(_))
    )
}
