//! Serving HTTP/1.1 on hyper with limits a client cannot talk its way past.
//!
//! - Headers must arrive within `header_timeout` of the connection's first byte being awaited
//!   (hyper restarts that clock between keep-alive requests, so it also bounds idle time); a
//!   client trickling one byte a second is cut off.
//! - A request body must arrive whole within `body_timeout` and be at most `max_body` bytes.
//! - At most `max_connections` connections at once per listener. A new connection beyond that
//!   takes the place of the connection that has been idle longest (no request in flight); when
//!   every connection is busy, the new one is closed at once. Idle connections can therefore
//!   never keep a client out, and file descriptors stay bounded.
//! - A failing `accept` (EMFILE, ENFILE, ENOBUFS) backs off, from 5 ms up to 1 s, and is logged
//!   once per run of failures: nothing spins.
use std::{
    collections::HashMap,
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{Request, Response, StatusCode, request::Parts};
use http_body_util::{BodyExt, Full, Limited, combinators::BoxBody};
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, UnixListener},
    sync::oneshot,
};

/// A response body: whole, or streamed (a capture).
pub type Body = BoxBody<Bytes, Infallible>;

/// A whole body.
pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed()
}

/// How much a listener lets its clients take.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub max_body: usize,
}

/// The control socket: root's CLI and tools; bodies are VIP specs.
pub const CONTROL: Limits = Limits {
    max_connections: 64,
    header_timeout: Duration::from_secs(5),
    body_timeout: Duration::from_secs(5),
    max_body: 1 << 20,
};

/// The metrics port: scrapers, reachable by any local user; requests carry no body.
pub const METRICS: Limits = Limits {
    max_connections: 32,
    header_timeout: Duration::from_secs(10),
    body_timeout: Duration::from_secs(1),
    max_body: 4096,
};

/// What a listener has seen, for the metrics.
#[derive(Debug, Default)]
pub struct ListenerStats {
    pub accepted: AtomicU64,
    /// Idle connections closed to make room for a new one.
    pub evicted: AtomicU64,
    /// New connections closed at once because every connection was busy.
    pub refused: AtomicU64,
    /// `accept` failures (file descriptors or buffers exhausted).
    pub accept_errors: AtomicU64,
    pub open: AtomicU64,
}

/// Binds the control socket: creates its folder, replaces a stale socket file (one nobody
/// answers on), refuses to steal one that a running agent serves. Mode 0600: root only.
pub fn bind(path: &std::path::Path) -> anyhow::Result<UnixListener> {
    use anyhow::Context;
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            anyhow::bail!("{} is served by another running agent", path.display());
        }
        std::fs::remove_file(path).with_context(|| format!("removing stale {}", path.display()))?;
    }
    let l = UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

impl ListenerStats {
    /// The counters as they are now, for a scrape.
    pub fn counts(&self) -> crate::metrics::ListenerCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        crate::metrics::ListenerCounts {
            accepted: get(&self.accepted),
            evicted: get(&self.evicted),
            refused: get(&self.refused),
            accept_errors: get(&self.accept_errors),
            open: get(&self.open),
        }
    }
}

/// Something connections come from.
pub trait Listener: Send + 'static {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn accept(&self) -> impl Future<Output = std::io::Result<Self::Io>> + Send;
}

impl Listener for UnixListener {
    type Io = tokio::net::UnixStream;
    async fn accept(&self) -> std::io::Result<Self::Io> {
        UnixListener::accept(self).await.map(|(s, _)| s)
    }
}

impl Listener for TcpListener {
    type Io = tokio::net::TcpStream;
    async fn accept(&self) -> std::io::Result<Self::Io> {
        TcpListener::accept(self).await.map(|(s, _)| s)
    }
}

struct Slot {
    busy: u32,
    idle_since: Instant,
    kill: Option<oneshot::Sender<()>>,
}

/// The listener's open connections.
#[derive(Default)]
struct Table {
    next: u64,
    slots: HashMap<u64, Slot>,
}

type Shared = Arc<Mutex<Table>>;

fn lock(t: &Shared) -> std::sync::MutexGuard<'_, Table> {
    // A panic while holding this lock leaves the table as consistent as before it.
    t.lock().unwrap_or_else(|p| p.into_inner())
}

impl Table {
    /// Makes room for a new connection (closing the longest-idle one if full), or `None` if
    /// every connection is busy.
    fn admit(&mut self, max: usize, stats: &ListenerStats) -> Option<(u64, oneshot::Receiver<()>)> {
        if self.slots.len() >= max {
            let oldest = self
                .slots
                .iter()
                .filter(|(_, s)| s.busy == 0)
                .min_by_key(|(_, s)| s.idle_since)
                .map(|(id, _)| *id)?;
            if let Some(kill) = self.slots.remove(&oldest).and_then(|s| s.kill) {
                let _ = kill.send(());
            }
            stats.evicted.fetch_add(1, Ordering::Relaxed);
        }
        let (tx, rx) = oneshot::channel();
        let id = self.next;
        self.next += 1;
        self.slots.insert(
            id,
            Slot {
                busy: 0,
                idle_since: Instant::now(),
                kill: Some(tx),
            },
        );
        Some((id, rx))
    }
}

/// A request in flight on connection `id`: the connection is busy until the response body
/// is done (sent, or dropped).
struct Busy {
    table: Shared,
    id: u64,
}

impl Busy {
    fn new(table: &Shared, id: u64) -> Busy {
        if let Some(s) = lock(table).slots.get_mut(&id) {
            s.busy += 1;
        }
        Busy {
            table: table.clone(),
            id,
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if let Some(s) = lock(&self.table).slots.get_mut(&self.id) {
            s.busy = s.busy.saturating_sub(1);
            s.idle_since = Instant::now();
        }
    }
}

/// A response body that keeps its connection busy while it is being sent.
struct Tracked {
    inner: Body,
    _busy: Busy,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A plain-text or JSON response.
pub fn respond(status: u16, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    r
}

/// A JSON error body.
pub fn refuse(status: u16, message: &str) -> Response<Body> {
    respond(
        status,
        "application/json",
        serde_json::json!({ "error": message }).to_string(),
    )
}

/// Reads a request's body within the listener's limits.
async fn read_body(body: Incoming, limits: &Limits) -> Result<Bytes, Response<Body>> {
    let collect = Limited::new(body, limits.max_body).collect();
    match tokio::time::timeout(limits.body_timeout, collect).await {
        Err(_) => Err(refuse(408, "the request body did not arrive in time")),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(refuse(
            413,
            &format!("request body over {} bytes", limits.max_body),
        )),
        Ok(Err(e)) => Err(refuse(400, &format!("reading the request body: {e}"))),
        Ok(Ok(c)) => Ok(c.to_bytes()),
    }
}

/// Serves `listener` until the task is dropped: each request's head and whole body go to
/// `handle`.
pub async fn serve<L, H, F>(listener: L, limits: Limits, stats: Arc<ListenerStats>, handle: H)
where
    L: Listener,
    H: Fn(Parts, Bytes) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let table: Shared = Default::default();
    let mut backoff = BACKOFF_MIN;
    loop {
        let io = match listener.accept().await {
            Ok(io) => {
                backoff = BACKOFF_MIN;
                io
            }
            Err(e) => {
                stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                if backoff == BACKOFF_MIN {
                    tracing::warn!(error = %e, "accepting a connection failed; backing off");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        let admitted = lock(&table).admit(limits.max_connections, &stats);
        let Some((id, killed)) = admitted else {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            drop(io);
            continue;
        };
        tokio::spawn(connection(
            io,
            limits,
            table.clone(),
            id,
            killed,
            stats.clone(),
            handle.clone(),
        ));
        // One connection at a time, then the other tasks' turn: a flood of connections must
        // not hold off the health checks and the control loop sharing this thread.
        tokio::task::yield_now().await;
    }
}

const BACKOFF_MIN: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

async fn connection<Io, H, F>(
    io: Io,
    limits: Limits,
    table: Shared,
    id: u64,
    killed: oneshot::Receiver<()>,
    stats: Arc<ListenerStats>,
    handle: H,
) where
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(Parts, Bytes) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    stats.open.fetch_add(1, Ordering::Relaxed);
    let service_table = table.clone();
    let service = service_fn(move |req: Request<Incoming>| {
        let busy = Busy::new(&service_table, id);
        let handle = handle.clone();
        async move {
            let (parts, body) = req.into_parts();
            let resp = match read_body(body, &limits).await {
                Ok(body) => handle(parts, body).await,
                Err(refusal) => refusal,
            };
            let (parts, inner) = resp.into_parts();
            Ok::<_, Infallible>(Response::from_parts(parts, Tracked { inner, _busy: busy }))
        }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(64 * 1024)
        .serve_connection(TokioIo::new(io), service);
    tokio::select! {
        _ = conn => {}
        _ = killed => {}
    }
    lock(&table).slots.remove(&id);
    stats.open.fetch_sub(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_table_evicts_the_longest_idle_and_refuses_when_all_are_busy() {
        let stats = ListenerStats::default();
        let table: Shared = Default::default();
        let (a, mut a_killed) = lock(&table).admit(2, &stats).unwrap();
        let (b, mut b_killed) = lock(&table).admit(2, &stats).unwrap();
        // b serves a request; a has been idle longest.
        let busy_b = Busy::new(&table, b);
        let (c, _c_killed) = lock(&table).admit(2, &stats).unwrap();
        assert!(a_killed.try_recv().is_ok(), "a was idle longest");
        assert!(b_killed.try_recv().is_err(), "b is busy");
        assert_eq!(stats.evicted.load(Ordering::Relaxed), 1);
        let _busy_c = Busy::new(&table, c);
        assert!(lock(&table).admit(2, &stats).is_none(), "b and c are busy");
        // b's response is done: b is idle again and can make room.
        drop(busy_b);
        assert!(lock(&table).admit(2, &stats).is_some());
        assert!(b_killed.try_recv().is_ok());
        assert!(!lock(&table).slots.contains_key(&a));
    }
}
