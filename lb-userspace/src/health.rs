//! Health checks: one tokio task per backend. `rise` passes in a row bring a backend up,
//! `fall` failures in a row take it down; only a change of state is reported.
//!
//! A probe that fails for a reason of this host (no file descriptors, no buffers, no route
//! from here) says nothing about the backend: it is a local fault, counted and reported as
//! such, and neither a pass nor a failure of the backend.
use std::{
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use tokio::{sync::mpsc::UnboundedSender, task::JoinHandle};

use crate::{config::Health, metrics::HealthTimes};

mod probe;
mod tls;

pub use probe::Prober;

/// Where a checker's probes go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The backend's address and the probed port: the backend the checker speaks for, and
    /// where a direct probe goes.
    pub backend: SocketAddr,
    /// Through the tunnel (`via = "tunnel"`), else direct.
    pub tunnel: Option<Tunnel>,
}

/// A probe through the tunnel: to the VIP, its packets marked for the backend, so that the
/// probe program encapsulates them to it as the balancer does the clients'.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tunnel {
    /// The VIP's address and the probed port.
    pub vip: SocketAddr,
    /// [`lb_common::PROBE_MARK`] | the backend's id; `None` while it has no id in the data
    /// path (its probes cannot go yet).
    pub mark: Option<u32>,
    /// The balancer's own address the probes leave from (`agent.source_v4`/`source_v6`);
    /// the kernel's choice when not configured.
    pub source: Option<IpAddr>,
}

impl Target {
    /// A direct probe to `backend`.
    pub fn direct(backend: SocketAddr) -> Target {
        Target {
            backend,
            tunnel: None,
        }
    }

    /// Where the probe's packets are addressed: the VIP through the tunnel, else the backend.
    pub fn to(&self) -> SocketAddr {
        self.tunnel.as_ref().map_or(self.backend, |t| t.vip)
    }

    /// How the probe's errors name where it went.
    pub fn describe(&self) -> String {
        match &self.tunnel {
            Some(t) => format!("{} through the tunnel to {}", t.vip, self.backend.ip()),
            None => self.backend.to_string(),
        }
    }
}

/// A backend's health, or its checker's local fault, changed.
#[derive(Debug, Clone)]
pub struct Report {
    pub vip: String,
    pub target: SocketAddr,
    pub up: bool,
    /// Why the last probe failed (when down).
    pub error: Option<String>,
    /// Why probes cannot run from this host now (EMFILE, ENOBUFS, no route), if they cannot.
    pub local_fault: Option<String>,
}

/// Why a probe failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The cause is this host's, not the backend's.
    pub local: bool,
    pub message: String,
}

impl Failure {
    pub(crate) fn remote(message: String) -> Failure {
        Failure {
            local: false,
            message,
        }
    }

    /// From an I/O error: local where the error is this host's own.
    pub(crate) fn io(what: String, e: &std::io::Error) -> Failure {
        Failure {
            local: is_local(e),
            message: format!("{what}: {e}"),
        }
    }
}

/// Errors that say this host cannot make the probe, not that the backend failed it. (A
/// connect answered EHOSTUNREACH is the backend's: the kernel says so when its neighbour
/// does not answer.)
pub fn is_local(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::EMFILE
                | libc::ENFILE
                | libc::ENOBUFS
                | libc::ENOMEM
                | libc::ENETUNREACH
                | libc::EADDRNOTAVAIL
                | libc::EAFNOSUPPORT
        )
    )
}

/// Starts checking `target` every `interval`, starting from state `up`.
pub fn spawn(
    vip: String,
    target: Target,
    h: Health,
    up: bool,
    tx: UnboundedSender<Report>,
    times: HealthTimes,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let prober = Prober::new(h.clone());
        let mut tally = Tally::new(up);
        let mut tick = tokio::time::interval(h.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let started = Instant::now();
            let result = prober.probe(&target).await;
            let ip = target.backend.ip();
            match &result {
                Err(f) if f.local => times.local_fault(&vip, ip),
                r => times.observe(&vip, ip, r.is_ok(), started.elapsed()),
            }
            if let Some((up, error, local_fault)) = tally.take(&h, result) {
                let _ = tx.send(Report {
                    vip: vip.clone(),
                    target: target.backend,
                    up,
                    error,
                    local_fault,
                });
            }
        }
    })
}

/// What a checker knows of its backend between probes.
#[derive(Debug)]
struct Tally {
    up: bool,
    passes: u32,
    fails: u32,
    local_fault: Option<String>,
}

impl Tally {
    fn new(up: bool) -> Tally {
        Tally {
            up,
            passes: 0,
            fails: 0,
            local_fault: None,
        }
    }

    /// Counts one probe. A local failure counts neither way. Returns what to report when the
    /// backend's state or the local fault changed: (up, why down, local fault).
    fn take(
        &mut self,
        h: &Health,
        result: Result<(), Failure>,
    ) -> Option<(bool, Option<String>, Option<String>)> {
        let (was_up, had_fault) = (self.up, self.local_fault.is_some());
        let mut error = None;
        match result {
            Ok(()) => {
                self.local_fault = None;
                (self.passes, self.fails) = (self.passes + 1, 0);
                self.up |= self.passes >= h.rise;
            }
            Err(f) if f.local => self.local_fault = Some(f.message),
            Err(f) => {
                self.local_fault = None;
                (self.passes, self.fails) = (0, self.fails + 1);
                self.up &= self.fails < h.fall;
                error = Some(f.message);
            }
        }
        (self.up != was_up || self.local_fault.is_some() != had_fault).then(|| {
            (
                self.up,
                if self.up { None } else { error },
                self.local_fault.clone(),
            )
        })
    }
}

/// The check period after which a backend that stopped answering is down: `interval × fall`
/// plus one probe timeout.
pub fn detection_time(h: &Health) -> Duration {
    h.interval * h.fall + h.timeout
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HealthKind;
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpListener,
    };

    fn cfg(kind: HealthKind) -> Health {
        Health {
            kind,
            interval: Duration::from_millis(20),
            timeout: Duration::from_millis(200),
            rise: 2,
            fall: 2,
            ..Health::default()
        }
    }

    async fn probe(h: &Health, target: SocketAddr) -> Result<(), Failure> {
        Prober::new(h.clone()).probe(&Target::direct(target)).await
    }

    #[tokio::test]
    async fn tcp_and_http_probes() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                let mut buf = [0u8; 512];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).into_owned();
                let status = if req.starts_with("GET /ok ") {
                    "200 OK"
                } else {
                    "503 Unavailable"
                };
                let _ = s
                    .write_all(format!("HTTP/1.0 {status}\r\n\r\n").as_bytes())
                    .await;
            }
        });
        assert_eq!(probe(&cfg(HealthKind::Tcp), addr).await, Ok(()));
        let mut http = cfg(HealthKind::Http);
        http.path = "/ok".into();
        assert_eq!(probe(&http, addr).await, Ok(()));
        http.path = "/sick".into();
        let sick = probe(&http, addr).await.unwrap_err();
        assert!(
            sick.message.contains("status 503, expected 200"),
            "{sick:?}"
        );
        assert!(!sick.local);
        // Nobody listening.
        let closed: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let refused = probe(&cfg(HealthKind::Tcp), closed).await.unwrap_err();
        assert!(refused.message.contains("connect"), "{refused:?}");
        assert!(!refused.local, "a refused connection is the backend's");
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        use probe::host_header;
        assert_eq!(host_header("198.18.0.11".parse().unwrap()), "198.18.0.11");
        assert_eq!(host_header("fd00:18::11".parse().unwrap()), "[fd00:18::11]");
    }

    #[test]
    fn exhaustion_and_no_route_here_are_local_faults() {
        for (errno, local) in [
            (libc::EMFILE, true),
            (libc::ENFILE, true),
            (libc::ENOBUFS, true),
            (libc::ENETUNREACH, true),
            (libc::ECONNREFUSED, false),
            (libc::EHOSTUNREACH, false),
            (libc::ETIMEDOUT, false),
            (libc::ECONNRESET, false),
        ] {
            let e = std::io::Error::from_raw_os_error(errno);
            assert_eq!(is_local(&e), local, "{e}");
        }
    }

    /// Local faults count neither as passes nor as failures, however many: the backend keeps
    /// its state, and the fault is reported when it starts and when it clears.
    #[test]
    fn local_faults_never_move_a_backend() {
        let h = Health {
            rise: 2,
            fall: 2,
            ..Health::default()
        };
        let local = || {
            Err(Failure {
                local: true,
                message: "connect: Too many open files (os error 24)".into(),
            })
        };
        let remote = || Err(Failure::remote("connect: refused".into()));
        let mut t = Tally::new(true);
        let fault = t.take(&h, local()).expect("the fault is reported");
        assert!(fault.0, "a local fault keeps the backend up");
        assert!(fault.2.unwrap().contains("Too many open files"));
        for _ in 0..100 {
            assert_eq!(t.take(&h, local()), None, "{t:?}");
        }
        assert!(t.up, "{t:?}");
        // One real failure after the fault: the fault clears; the backend is still up (fall 2).
        assert_eq!(t.take(&h, remote()), Some((true, None, None)));
        // A local fault between two real failures does not reset their count, nor add to it.
        assert!(t.take(&h, local()).is_some());
        let down = t.take(&h, remote()).expect("down after fall failures");
        assert_eq!(down, (false, Some("connect: refused".into()), None));
        // Coming back takes rise passes; local faults in between do not count as passes.
        assert!(t.take(&h, Ok(())).is_none());
        assert!(t.take(&h, local()).is_some());
        assert_eq!(t.take(&h, Ok(())), Some((true, None, None)));
    }
}
