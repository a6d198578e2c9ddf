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

/// A TCP server in `ns` on every address at `addr`'s port (so that health checks to the
/// backend's own address reach it, as well as clients' connections to the VIP). It greets
/// every connection with `name` and a newline, then answers every line it receives with
/// `name` again, until the client closes or the server stops.
pub fn tcp_server(ns: &Netns, addr: SocketAddr, name: &str) -> Server {
    let name = format!("{name}\n");
    let any: SocketAddr = if addr.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], addr.port()))
    } else {
        SocketAddr::from(([0u16; 8], addr.port()))
    };
    spawn_in(ns, move |stop, ready| {
        let l = TcpListener::bind(any).expect("bind tcp");
        l.set_nonblocking(true).expect("nonblocking");
        ready.send(()).expect("ready");
        while !stop.load(Ordering::Relaxed) {
            match l.accept() {
                Ok((s, _)) => {
                    let (name, stop) = (name.clone(), stop.clone());
                    std::thread::spawn(move || serve_lines(s, &name, &stop));
                }
                Err(_) => wait_readable(&l, 50),
            }
        }
    })
}

/// Waits until `l` has a connection to accept, or `ms` pass (so the stop flag is seen).
fn wait_readable(l: &TcpListener, ms: i32) {
    let mut p = libc::pollfd {
        fd: std::os::fd::AsRawFd::as_raw_fd(l),
        events: libc::POLLIN,
        revents: 0,
    };
    unsafe { libc::poll(&mut p, 1, ms) };
}

fn serve_lines(mut s: TcpStream, name: &str, stop: &AtomicBool) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
    if s.write_all(name.as_bytes()).is_err() {
        return;
    }
    let mut buf = [0u8; 256];
    while !stop.load(Ordering::Relaxed) {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                for _ in buf[..n].iter().filter(|&&b| b == b'\n') {
                    if s.write_all(name.as_bytes()).is_err() {
                        return;
                    }
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

/// Reads one line (the server's name).
fn read_line(s: &mut TcpStream) -> std::io::Result<String> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    loop {
        match s.read(&mut b)? {
            0 => break,
            _ if b[0] == b'\n' => break,
            _ => line.push(b[0]),
        }
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

/// Long-lived TCP connections from a client namespace, each knowing which server greeted it.
pub struct LongLived {
    pub conns: Vec<(String, TcpStream)>,
}

impl LongLived {
    /// Opens `n` connections to `addr` from `ns`; panics if any fails.
    pub fn open(ns: &Netns, addr: SocketAddr, n: u32) -> Self {
        let conns = ns.run(|| {
            (0..n)
                .map(|i| {
                    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
                        .unwrap_or_else(|e| panic!("long-lived connection #{i}: {e}"));
                    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
                    let name = read_line(&mut s).unwrap_or_else(|e| panic!("greeting #{i}: {e}"));
                    assert!(!name.is_empty(), "connection #{i} got no greeting");
                    (name, s)
                })
                .collect()
        });
        LongLived { conns }
    }

    /// Sends a line on every connection and reads the answer: the connections that failed
    /// (reset, timed out) or are answered by another server than the one that greeted them.
    pub fn exchange(&mut self) -> Vec<String> {
        let mut bad = Vec::new();
        for (i, (name, s)) in self.conns.iter_mut().enumerate() {
            let r = s.write_all(b"ping\n").and_then(|()| read_line(s));
            match r {
                Ok(n) if n == *name => {}
                Ok(n) => bad.push(format!("#{i}: greeted by {name:?}, now answered by {n:?}")),
                Err(e) => bad.push(format!("#{i} ({name}): {e}")),
            }
        }
        bad
    }

    /// How many connections each server holds.
    pub fn by_server(&self) -> BTreeMap<String, u32> {
        let mut m = BTreeMap::new();
        for (n, _) in &self.conns {
            *m.entry(n.clone()).or_default() += 1;
        }
        m
    }
}

/// A UDP server on `addr` in `ns` that answers every datagram with `reply`.
pub fn udp_server(ns: &Netns, addr: SocketAddr, reply: &str) -> Server {
    let reply = reply.to_string();
    udp_server_with(ns, addr, move |_| reply.clone())
}

/// A UDP server that answers every datagram with `name` and the datagram's length, as
/// "be0 3000": whether a fragmented datagram arrived whole.
pub fn udp_size_server(ns: &Netns, addr: SocketAddr, name: &str) -> Server {
    let name = name.to_string();
    udp_server_with(ns, addr, move |len| format!("{name} {len}"))
}

fn udp_server_with(
    ns: &Netns,
    addr: SocketAddr,
    reply: impl Fn(usize) -> String + Send + 'static,
) -> Server {
    spawn_in(ns, move |stop, ready| {
        let s = UdpSocket::bind(addr).expect("bind udp");
        s.set_read_timeout(Some(Duration::from_millis(20)))
            .expect("timeout");
        ready.send(()).expect("ready");
        let mut buf = vec![0u8; 65536];
        while !stop.load(Ordering::Relaxed) {
            if let Ok((len, from)) = s.recv_from(&mut buf) {
                let _ = s.send_to(reply(len).as_bytes(), from);
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

    /// Counts attempt `i`: who answered, or why it failed.
    pub fn record(&mut self, i: u32, r: std::io::Result<String>) {
        match r {
            Ok(name) if !name.is_empty() => *self.by_server.entry(name).or_default() += 1,
            Ok(_) => self.failed.push(format!("#{i}: empty answer")),
            Err(e) => self.failed.push(format!("#{i}: {e}")),
        }
    }
}

/// One TCP connection to `addr`: the server's greeting (its name).
fn connect_once(addr: SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    read_line(&mut s)
}

/// `n` TCP connections from `ns` to `addr`, each reading the server's name.
pub fn tcp_connects(ns: &Netns, addr: SocketAddr, n: u32) -> Tally {
    ns.run(|| {
        let mut t = Tally::default();
        for i in 0..n {
            t.record(i, connect_once(addr));
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

/// Connects to `addr` from `ns` again and again on a background thread until `stop` is set
/// (or 120 s pass); join it for the tally.
pub fn background_connects(
    ns: &Netns,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
) -> JoinHandle<Tally> {
    let path = format!("/run/netns/{}", ns.name);
    std::thread::spawn(move || {
        let f = std::fs::File::open(&path).expect("open netns");
        let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns");
        let mut t = Tally::default();
        let end = std::time::Instant::now() + Duration::from_secs(120);
        let mut i = 0u32;
        while !stop.load(Ordering::Relaxed) && std::time::Instant::now() < end {
            t.record(i, connect_once(addr));
            i += 1;
            std::thread::sleep(Duration::from_millis(5));
        }
        t
    })
}
