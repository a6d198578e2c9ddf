//! Real sockets inside namespaces: small servers that answer with their name, and clients
//! that count who answered. Every loop is bounded in count and time.
use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread::JoinHandle,
    time::Duration,
};

use crate::Netns;

/// A server thread inside a namespace; stopped and joined on drop.
pub struct Server {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn spawn_in(
    ns: &Netns,
    body: impl FnOnce(Arc<AtomicBool>, mpsc::Sender<()>) + Send + 'static,
) -> Server {
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = mpsc::channel();
    let path = format!("/run/netns/{}", ns.name);
    let s = stop.clone();
    let handle = std::thread::spawn(move || {
        let f = std::fs::File::open(&path).expect("open netns");
        let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns");
        body(s, ready_tx)
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("server ready");
    Server {
        stop,
        handle: Some(handle),
    }
}

/// A TCP server on `addr` in `ns` that writes `reply` to every connection and closes it.
pub fn tcp_server(ns: &Netns, addr: SocketAddr, reply: &str) -> Server {
    let reply = reply.to_string();
    spawn_in(ns, move |stop, ready| {
        let l = TcpListener::bind(addr).expect("bind tcp");
        l.set_nonblocking(true).expect("nonblocking");
        ready.send(()).expect("ready");
        while !stop.load(Ordering::Relaxed) {
            match l.accept() {
                Ok((mut s, _)) => {
                    let _ = s.set_nonblocking(false);
                    let _ = s.write_all(reply.as_bytes());
                }
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    })
}

/// A UDP server on `addr` in `ns` that answers every datagram with `reply`.
pub fn udp_server(ns: &Netns, addr: SocketAddr, reply: &str) -> Server {
    let reply = reply.to_string();
    spawn_in(ns, move |stop, ready| {
        let s = UdpSocket::bind(addr).expect("bind udp");
        s.set_read_timeout(Some(Duration::from_millis(20)))
            .expect("timeout");
        ready.send(()).expect("ready");
        let mut buf = [0u8; 1500];
        while !stop.load(Ordering::Relaxed) {
            if let Ok((_, from)) = s.recv_from(&mut buf) {
                let _ = s.send_to(reply.as_bytes(), from);
            }
        }
    })
}

/// Who answered how often, and how many attempts failed.
#[derive(Debug, Default)]
pub struct Tally {
    pub by_server: BTreeMap<String, u32>,
    pub failed: Vec<String>,
}

impl Tally {
    pub fn ok(&self) -> u32 {
        self.by_server.values().sum()
    }
}

/// `n` TCP connections from `ns` to `addr`, each reading the server's name.
pub fn tcp_connects(ns: &Netns, addr: SocketAddr, n: u32) -> Tally {
    ns.run(|| {
        let mut t = Tally::default();
        for i in 0..n {
            let r = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).and_then(|mut s| {
                s.set_read_timeout(Some(Duration::from_secs(3)))?;
                let mut name = String::new();
                s.read_to_string(&mut name)?;
                Ok(name)
            });
            match r {
                Ok(name) if !name.is_empty() => *t.by_server.entry(name).or_default() += 1,
                Ok(_) => t.failed.push(format!("#{i}: empty answer")),
                Err(e) => t.failed.push(format!("#{i}: {e}")),
            }
        }
        t
    })
}

/// `n` UDP requests from `ns` to `addr`, each from its own socket (its own source port, so
/// its own flow), each waiting for the answer.
pub fn udp_requests(ns: &Netns, addr: SocketAddr, n: u32) -> Tally {
    ns.run(|| {
        let mut t = Tally::default();
        let any: SocketAddr = if addr.is_ipv4() {
            "0.0.0.0:0".parse().unwrap()
        } else {
            "[::]:0".parse().unwrap()
        };
        for i in 0..n {
            let r = UdpSocket::bind(any).and_then(|s| {
                s.set_read_timeout(Some(Duration::from_secs(2)))?;
                s.connect(addr)?;
                s.send(format!("request {i}").as_bytes())?;
                let mut buf = [0u8; 1500];
                let len = s.recv(&mut buf)?;
                Ok(String::from_utf8_lossy(&buf[..len]).into_owned())
            });
            match r {
                Ok(name) => *t.by_server.entry(name).or_default() += 1,
                Err(e) => t.failed.push(format!("#{i}: {e}")),
            }
        }
        t
    })
}
