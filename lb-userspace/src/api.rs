//! The control API: HTTP/1.1 with JSON bodies on a unix socket (mode 0600: root only). The
//! agent serves it; the CLI is its client. One request per connection (`Connection: close`).
use std::{
    io::{Read, Write},
    os::unix::{fs::PermissionsExt, net::UnixStream},
    path::Path,
    time::Duration,
};

use anyhow::{Context, bail};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, UnixListener},
    sync::{mpsc, oneshot},
};

/// A request the agent's control loop answers.
#[derive(Debug)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub body: String,
    pub reply: oneshot::Sender<Reply>,
}

/// Status and JSON body.
pub type Reply = (u16, String);

/// A JSON error body.
pub fn error(status: u16, msg: impl std::fmt::Display) -> Reply {
    (
        status,
        serde_json::json!({ "error": msg.to_string() }).to_string(),
    )
}

/// Largest request accepted.
const MAX_REQUEST: usize = 1 << 20;

/// Binds the socket: creates its folder, replaces a stale socket file (one nobody answers
/// on), refuses to steal one that a running agent serves.
pub fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            bail!("{} is served by another running agent", path.display());
        }
        std::fs::remove_file(path).with_context(|| format!("removing stale {}", path.display()))?;
    }
    let l = UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

/// Accepts connections and hands each request to `calls`, until the task is dropped; a
/// capture session (`POST /v1/capture`) reads `capture` itself.
pub async fn serve(
    listener: UnixListener,
    calls: mpsc::UnboundedSender<Call>,
    capture: Option<crate::capture::SharedRing>,
    flows_pin: Option<std::path::PathBuf>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let calls = calls.clone();
        let control = Endpoint::Control {
            capture: capture.clone(),
            flows_pin: flows_pin.clone(),
        };
        tokio::spawn(async move {
            let _ = handle(stream, calls, control).await;
        });
    }
}

/// Which socket a connection came in on.
enum Endpoint {
    Control {
        capture: Option<crate::capture::SharedRing>,
        /// The pinned flow table, counted here for `GET /v1/stats` (off the control loop).
        flows_pin: Option<std::path::PathBuf>,
    },
    Metrics,
}

/// The metrics endpoint (`agent.metrics`, TCP): GET /metrics only; the control API stays on
/// the unix socket.
pub async fn serve_metrics(listener: TcpListener, calls: mpsc::UnboundedSender<Call>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let calls = calls.clone();
        tokio::spawn(async move {
            let _ = handle(stream, calls, Endpoint::Metrics).await;
        });
    }
}

async fn handle<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    calls: mpsc::UnboundedSender<Call>,
    endpoint: Endpoint,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_REQUEST {
            return Ok(());
        }
        match stream.read(&mut chunk).await? {
            0 => return Ok(()),
            n => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0)
        .min(MAX_REQUEST);
    while buf.len() < head_end + len {
        match stream.read(&mut chunk).await? {
            0 => break,
            n => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body =
        String::from_utf8_lossy(&buf[head_end..(head_end + len).min(buf.len())]).into_owned();
    let mut first = head.lines().next().unwrap_or("").split_whitespace();
    let (method, path) = (
        first.next().unwrap_or("").to_string(),
        first.next().unwrap_or("").to_string(),
    );
    let is_metrics = method == "GET" && path == "/metrics";
    let mut flows_pin = None;
    match endpoint {
        Endpoint::Metrics if !is_metrics => {
            return respond(&mut stream, error(404, "only GET /metrics here")).await;
        }
        Endpoint::Control {
            capture: Some(ring),
            ..
        } if method == "POST" && path == "/v1/capture" => {
            return crate::capture::session(stream, body, calls, ring).await;
        }
        Endpoint::Control {
            flows_pin: Some(p), ..
        } if method == "GET" && path == "/v1/stats" => flows_pin = Some(p),
        _ => {}
    }
    let (tx, rx) = oneshot::channel();
    let (status, body) = if calls
        .send(Call {
            method,
            path,
            body,
            reply: tx,
        })
        .is_ok()
    {
        rx.await
            .unwrap_or_else(|_| error(503, "the agent is shutting down"))
    } else {
        error(503, "the agent is shutting down")
    };
    let (status, body) = match flows_pin {
        Some(p) if status == 200 => with_flow_count(body, p).await,
        _ => (status, body),
    };
    let kind = if is_metrics {
        "text/plain; version=0.0.4; charset=utf-8"
    } else {
        "application/json"
    };
    respond_as(&mut stream, (status, body), kind).await
}

/// `lb stats` with the flow table's entries counted (and its evictions derived from them):
/// the count (a read of every slot) runs on a blocking thread with its own handle of the pinned
/// table.
async fn with_flow_count(body: String, pin: std::path::PathBuf) -> Reply {
    let Ok(mut s) = serde_json::from_str::<crate::stats::Stats>(&body) else {
        return (200, body);
    };
    match tokio::task::spawn_blocking(move || crate::dataplane::count_flows(&pin)).await {
        Ok(Ok(n)) => {
            s.flows = s.flows.with_entries(n);
            (200, serde_json::to_string(&s).unwrap_or(body))
        }
        Ok(Err(e)) => error(500, format!("counting the flow table: {e}")),
        Err(e) => error(500, format!("counting the flow table: {e}")),
    }
}

/// Answers with a JSON body.
pub async fn respond<S: AsyncWrite + Unpin>(stream: &mut S, reply: Reply) -> std::io::Result<()> {
    respond_as(stream, reply, "application/json").await
}

async fn respond_as<S: AsyncWrite + Unpin>(
    stream: &mut S,
    (status, body): Reply,
    content_type: &str,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    };
    let resp = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(resp.as_bytes()).await
}

/// Sends a request to the agent on `socket`; returns the JSON body of a 200 answer, or the
/// agent's error.
pub fn request(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> anyhow::Result<String> {
    let mut s = UnixStream::connect(socket).with_context(|| {
        format!(
            "cannot reach the agent at {} (is `lb run` running? are you root?)",
            socket.display()
        )
    })?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: lb\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let (head, body) = resp
        .split_once("\r\n\r\n")
        .context("malformed response from the agent")?;
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        let msg = serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_else(|| body.to_string());
        bail!("{msg}");
    }
    Ok(body.to_string())
}

/// `GET path`.
pub fn get(socket: &Path, path: &str) -> anyhow::Result<String> {
    request(socket, "GET", path, None)
}
