//! Health checks: one tokio task per backend. `rise` passes in a row bring a backend up,
//! `fall` failures in a row take it down; only a change of state is reported.
use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::mpsc::UnboundedSender,
    task::JoinHandle,
    time::timeout,
};

use crate::{
    config::{Health, HealthKind},
    metrics::HealthTimes,
};

/// A backend's health changed.
#[derive(Debug, Clone)]
pub struct Report {
    pub vip: String,
    pub target: SocketAddr,
    pub up: bool,
    /// Why the last probe failed (when down).
    pub error: Option<String>,
}

/// One probe: `Ok` if healthy, else why not.
pub async fn probe(h: &Health, target: SocketAddr) -> Result<(), String> {
    let connect = timeout(h.timeout, TcpStream::connect(target));
    let mut s = match connect.await {
        Err(_) => {
            return Err(format!(
                "connect to {target}: timed out after {:?}",
                h.timeout
            ));
        }
        Ok(Err(e)) => return Err(format!("connect to {target}: {e}")),
        Ok(Ok(s)) => s,
    };
    if h.kind != HealthKind::Http {
        return Ok(());
    }
    let req = format!(
        "GET {} HTTP/1.0\r\nHost: {}\r\nUser-Agent: lb-health\r\n\r\n",
        h.path,
        target.ip()
    );
    let exchange = async {
        s.write_all(req.as_bytes()).await?;
        let mut buf = vec![0u8; 256];
        let mut n = 0;
        while n < 12 {
            let k = s.read(&mut buf[n..]).await?;
            if k == 0 {
                break;
            }
            n += k;
        }
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&buf[..n]).into_owned())
    };
    let head = match timeout(h.timeout, exchange).await {
        Err(_) => return Err(format!("GET {}: no answer within {:?}", h.path, h.timeout)),
        Ok(Err(e)) => return Err(format!("GET {}: {e}", h.path)),
        Ok(Ok(head)) => head,
    };
    let status: Option<u16> = head.split_whitespace().nth(1).and_then(|s| s.parse().ok());
    match status {
        Some(st) if st == h.expect_status => Ok(()),
        Some(st) => Err(format!(
            "GET {}: status {st}, expected {}",
            h.path, h.expect_status
        )),
        None => Err(format!("GET {}: not an HTTP answer", h.path)),
    }
}

/// Starts checking `target` every `interval`, starting from state `up`.
pub fn spawn(
    vip: String,
    target: SocketAddr,
    h: Health,
    mut up: bool,
    tx: UnboundedSender<Report>,
    times: HealthTimes,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let (mut passes, mut fails) = (0u32, 0u32);
        let mut tick = tokio::time::interval(h.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let started = Instant::now();
            let result = probe(&h, target).await;
            times.observe(&vip, target.ip(), result.is_ok(), started.elapsed());
            match result {
                Ok(()) => {
                    (passes, fails) = (passes + 1, 0);
                    if !up && passes >= h.rise {
                        up = true;
                        let _ = tx.send(Report {
                            vip: vip.clone(),
                            target,
                            up,
                            error: None,
                        });
                    }
                }
                Err(e) => {
                    (passes, fails) = (0, fails + 1);
                    if up && fails >= h.fall {
                        up = false;
                        let _ = tx.send(Report {
                            vip: vip.clone(),
                            target,
                            up,
                            error: Some(e),
                        });
                    }
                }
            }
        }
    })
}

/// The check period after which a backend that stopped answering is down: `interval × fall`
/// plus one probe timeout.
pub fn detection_time(h: &Health) -> Duration {
    h.interval * h.fall + h.timeout
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

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
        assert!(
            probe(&http, addr)
                .await
                .unwrap_err()
                .contains("status 503, expected 200")
        );
        // Nobody listening.
        let closed: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert!(
            probe(&cfg(HealthKind::Tcp), closed)
                .await
                .unwrap_err()
                .contains("connect")
        );
    }

    #[tokio::test]
    async fn fall_then_rise_report_once_each() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l); // nothing listens: the backend falls
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let times = HealthTimes::default();
        let task = spawn(
            "web".into(),
            addr,
            cfg(HealthKind::Tcp),
            true,
            tx,
            times.clone(),
        );
        let down = timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(!down.up && down.error.is_some(), "{down:?}");
        let _l = std::net::TcpListener::bind(addr).unwrap(); // it comes back
        let up = timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(up.up && up.error.is_none(), "{up:?}");
        task.abort();
    }
}
