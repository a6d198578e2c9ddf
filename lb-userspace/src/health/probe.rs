//! One probe of each kind: a TCP connect, an HTTP or HTTPS request whose status (and body) is
//! checked, or a UDP datagram whose answer is; straight to the backend, or through the tunnel
//! (a socket marked for the backend, bound to the balancer's own address, to VIP:port).
use std::net::SocketAddr;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpStream, UdpSocket},
    time::timeout,
};

use super::{Failure, Target, tls};
use crate::config::{Health, HealthKind};

/// Most of an answer read for a body match.
const BODY_MAX: usize = 64 * 1024;

/// A backend's probe, with what it needs built once (the TLS client's configuration).
pub struct Prober {
    pub health: Health,
    tls: Option<Result<tokio_rustls::TlsConnector, String>>,
}

impl Prober {
    pub fn new(health: Health) -> Self {
        let tls = (health.kind == HealthKind::Https).then(|| tls::connector(&health));
        Prober { health, tls }
    }

    /// One probe: `Ok` if healthy, else why not.
    pub async fn probe(&self, target: &Target) -> Result<(), Failure> {
        let h = &self.health;
        match h.kind {
            HealthKind::Udp => udp(h, target).await,
            HealthKind::Tcp | HealthKind::None => connect(h, target).await.map(|_| ()),
            HealthKind::Http => http(h, target, connect(h, target).await?).await,
            HealthKind::Https => {
                let connector = match &self.tls {
                    Some(Ok(c)) => c,
                    // The roots could not be read: this host's fault, not the backend's.
                    Some(Err(e)) => {
                        return Err(Failure {
                            local: true,
                            message: e.clone(),
                        });
                    }
                    None => unreachable!("an https prober has its TLS configuration"),
                };
                let s = connect(h, target).await?;
                let name = tls::server_name(h, target.to());
                let handshake = timeout(h.timeout, connector.connect(name, s));
                let s = match handshake.await {
                    Err(_) => {
                        return Err(Failure::remote(format!(
                            "TLS with {}: no handshake within {:?}",
                            target.describe(),
                            h.timeout
                        )));
                    }
                    Ok(Err(e)) => {
                        return Err(Failure::remote(format!(
                            "TLS with {}: {e}",
                            target.describe()
                        )));
                    }
                    Ok(Ok(s)) => s,
                };
                http(h, target, s).await
            }
        }
    }
}

/// A socket for a probe to `target`: through the tunnel, marked for the backend and bound to
/// the balancer's source address.
fn socket(target: &Target, ty: Type, proto: Protocol) -> Result<Socket, Failure> {
    let to = target.to();
    let what = || format!("a socket for {}", target.describe());
    let s = Socket::new(Domain::for_address(to), ty, Some(proto))
        .map_err(|e| Failure::io(what(), &e))?;
    s.set_nonblocking(true)
        .map_err(|e| Failure::io(what(), &e))?;
    if let Some(t) = &target.tunnel {
        let Some(mark) = t.mark else {
            return Err(Failure {
                local: true,
                message: format!(
                    "{}: the backend is not in the data path yet",
                    target.describe()
                ),
            });
        };
        s.set_mark(mark).map_err(|e| Failure::io(what(), &e))?;
        if let Some(src) = t.source {
            s.bind(&SockAddr::from(SocketAddr::new(src, 0)))
                .map_err(|e| Failure::io(format!("binding a probe to {src}"), &e))?;
        }
    }
    Ok(s)
}

/// Connects to `target`. An error of the `connect` call itself is this host's to judge (no
/// route from here is a local fault); one that comes back later is the far end's answer (a
/// refusal, or an ICMP error from the backend or a router on the way: "no route to the VIP"
/// from a backend without it), whatever its errno.
async fn connect(h: &Health, target: &Target) -> Result<TcpStream, Failure> {
    let what = || format!("connect to {}", target.describe());
    let s = socket(target, Type::STREAM, Protocol::TCP)?;
    match s.connect(&SockAddr::from(target.to())) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(Failure::io(what(), &e)),
    }
    let s =
        TcpStream::from_std(std::net::TcpStream::from(s)).map_err(|e| Failure::io(what(), &e))?;
    match timeout(h.timeout, s.writable()).await {
        Err(_) => {
            return Err(Failure::remote(format!(
                "{}: timed out after {:?}",
                what(),
                h.timeout
            )));
        }
        Ok(Err(e)) => return Err(Failure::io(what(), &e)),
        Ok(Ok(())) => {}
    }
    match s.take_error() {
        Ok(None) => Ok(s),
        Ok(Some(e)) | Err(e) => Err(Failure::remote(format!("{}: {e}", what()))),
    }
}

/// `GET path` over `s`: the status must be `expect_status`, and the body hold `body` if given.
async fn http(
    h: &Health,
    target: &Target,
    mut s: impl AsyncRead + AsyncWrite + Unpin,
) -> Result<(), Failure> {
    let host = match &h.sni {
        Some(name) => name.clone(),
        None => host_header(target.to().ip()),
    };
    let req = format!(
        "GET {} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: lb-health\r\nConnection: close\r\n\r\n",
        h.path
    );
    let whole = h.body.is_some();
    let exchange = async {
        s.write_all(req.as_bytes()).await?;
        let mut buf = vec![0u8; if whole { BODY_MAX } else { 256 }];
        let mut n = 0;
        // The status line; with a body to match, the answer up to its end (or BODY_MAX).
        while n < buf.len() && (whole || n < 12) {
            let k = s.read(&mut buf[n..]).await?;
            if k == 0 {
                break;
            }
            n += k;
        }
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&buf[..n]).into_owned())
    };
    let answer = match timeout(h.timeout, exchange).await {
        Err(_) => {
            return Err(Failure::remote(format!(
                "GET {}: no answer within {:?}",
                h.path, h.timeout
            )));
        }
        Ok(Err(e)) => return Err(Failure::io(format!("GET {}", h.path), &e)),
        Ok(Ok(a)) => a,
    };
    let status: Option<u16> = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok());
    match status {
        Some(st) if st == h.expect_status => {}
        Some(st) => {
            return Err(Failure::remote(format!(
                "GET {}: status {st}, expected {}",
                h.path, h.expect_status
            )));
        }
        None => {
            return Err(Failure::remote(format!(
                "GET {}: not an HTTP answer",
                h.path
            )));
        }
    }
    match &h.body {
        Some(want)
            if !answer
                .split_once("\r\n\r\n")
                .is_some_and(|(_, b)| b.contains(want.as_str())) =>
        {
            Err(Failure::remote(format!(
                "GET {}: the body lacks {want:?}",
                h.path
            )))
        }
        _ => Ok(()),
    }
}

/// `send` to the backend; the answer must come within the timeout and hold `expect`.
async fn udp(h: &Health, target: &Target) -> Result<(), Failure> {
    let s = socket(target, Type::DGRAM, Protocol::UDP)?;
    let s = UdpSocket::from_std(s.into()).map_err(|e| Failure::io("a UDP socket".into(), &e))?;
    let to = target.describe();
    s.connect(target.to())
        .await
        .map_err(|e| Failure::io(format!("UDP to {to}"), &e))?;
    s.send(&h.send)
        .await
        .map_err(|e| Failure::io(format!("UDP to {to}"), &e))?;
    let mut buf = vec![0u8; 65536];
    let n = match timeout(h.timeout, s.recv(&mut buf)).await {
        Err(_) => {
            return Err(Failure::remote(format!(
                "UDP to {to}: no answer within {:?}",
                h.timeout
            )));
        }
        // An ICMP error comes back on the socket (port unreachable as a refusal, a backend
        // without the VIP as no route): the far end's answer, not this host's fault.
        Ok(Err(e)) => return Err(Failure::remote(format!("UDP to {to}: {e}"))),
        Ok(Ok(n)) => n,
    };
    match &h.expect {
        Some(want) if !buf[..n].windows(want.len()).any(|w| w == want.as_slice()) => Err(
            Failure::remote(format!("UDP to {to}: the answer lacks what is expected")),
        ),
        _ => Ok(()),
    }
}

/// The `Host` header for an address: an IPv6 one in brackets (RFC 7230, section 5.4).
pub(super) fn host_header(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(a) => a.to_string(),
        std::net::IpAddr::V6(a) => format!("[{a}]"),
    }
}
