//! How backends are checked: actively (`[vip.health]`: the probe, its kind and the way it goes)
//! and passively (`[vip.outlier]`).
use std::{path::PathBuf, time::Duration};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthKind {
    Tcp,
    Http,
    /// HTTP over TLS (rustls).
    Https,
    /// A datagram sent, an answer expected.
    Udp,
    None,
}

/// Which way a probe goes to its backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// To VIP:port, encapsulated to the backend as the clients' packets are: a pass proves
    /// the backend's decapsulation, the VIP on it and the service listening there.
    Tunnel,
    /// To the backend's own address and port.
    Direct,
}

impl Via {
    pub const fn name(self) -> &'static str {
        match self {
            Via::Tunnel => "tunnel",
            Via::Direct => "direct",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Health {
    pub kind: HealthKind,
    /// Through the tunnel to VIP:port (the default), or straight to the backend.
    pub via: Via,
    /// Port to check; the VIP's port when not given.
    pub port: Option<u16>,
    pub path: String,
    /// HTTP status that counts as healthy.
    pub expect_status: u16,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
    /// Whether a flapping backend is held out of the ring (flap damping).
    pub damping: bool,
    /// http, https: a string the answer's body must contain.
    pub body: Option<String>,
    /// https: the name sent (SNI) and verified; the backend's address when not given.
    pub sni: Option<String>,
    /// https: whether the backend's certificate is verified (against `ca`, else the system's
    /// roots).
    pub verify: bool,
    /// https: the certificates (PEM) that sign the backends'.
    pub ca: Option<PathBuf>,
    /// udp: the datagram sent.
    pub send: Vec<u8>,
    /// udp: what the answer must contain (any answer passes when not given).
    pub expect: Option<Vec<u8>>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            kind: HealthKind::Tcp,
            via: Via::Tunnel,
            port: None,
            path: "/".into(),
            expect_status: 200,
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
            rise: 2,
            fall: 3,
            damping: true,
            body: None,
            sni: None,
            verify: true,
            ca: None,
            send: Vec::new(),
            expect: None,
        }
    }
}

/// `[vip.outlier]`: passive health. Every `interval`, a backend whose clients repeated more
/// than `retry_percent` of its new flows' SYNs (with at least `min_flows` new flows) is
/// ejected from the ring for `base_ejection_time` × the times it was ejected (at most
/// `max_ejection_time`), never more than `max_ejection_percent` of the VIP's backends at once
/// (at least one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Outlier {
    pub interval: Duration,
    pub retry_percent: u32,
    pub min_flows: u32,
    pub base_ejection_time: Duration,
    pub max_ejection_time: Duration,
    pub max_ejection_percent: u32,
}

impl Default for Outlier {
    fn default() -> Self {
        Outlier {
            interval: Duration::from_secs(2),
            retry_percent: 25,
            min_flows: 10,
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 50,
        }
    }
}
