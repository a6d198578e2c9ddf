//! The control API: HTTP/1.1 with JSON bodies on a unix socket (mode 0600: root only), and the
//! metrics port. Both are served by hyper ([`server`]); the CLI is a hyper client ([`client`]).
//!
//! A request becomes a typed [`Command`] here, at the edge; the control loop answers commands
//! and never sees HTTP. Routing knows every path, so a known path asked with the wrong method
//! is a 405, an unknown one a 404.
use std::net::IpAddr;

use tokio::sync::{mpsc, oneshot};

use crate::{
    capture,
    state::{BackendSpec, Change, VipSpec},
    stats::Stats,
};

pub mod client;
pub mod endpoints;
pub mod server;
mod session;

pub use client::{get, request};
pub use server::bind;

/// What the control loop is asked to do.
#[derive(Debug, PartialEq)]
pub enum Command {
    /// The metrics as OpenMetrics text (the edge turns it into what the scraper accepts).
    Metrics,
    /// Counters per VIP, backend and outcome; the flow table's entries are counted by the edge.
    Stats,
    Status,
    /// The effective configuration (file, discovery, DNS, runtime changes) as TOML.
    Config,
    Vips,
    Backends {
        vip: String,
    },
    Change(Change),
    /// What `lb flows` needs of a VIP to read the flow table: its address, protocol and
    /// backends by id.
    FlowScope {
        vip: String,
    },
    CaptureStart(capture::Request),
    CaptureStop,
}

/// The control loop's answer to a [`Command`].
#[derive(Debug)]
pub enum Answer {
    /// A JSON body, as the agent wrote it.
    Json(String),
    /// `lb stats`, still without the flow table's count.
    Stats(Box<Stats>),
    /// OpenMetrics text.
    Metrics(String),
    /// Plain text (the effective configuration, as TOML).
    Text(String),
    /// A capture session started: the data path's lost count at its start.
    CaptureStarted { lost: u64 },
    /// A VIP's address, protocol number and backends (id, address).
    FlowScope {
        address: std::net::SocketAddr,
        proto: u8,
        backends: Vec<(u32, String)>,
    },
}

/// A refusal, with the HTTP status it is sent with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub status: u16,
    pub message: String,
}

pub type Reply = Result<Answer, ApiError>;

/// A refusal with its status.
pub fn error(status: u16, msg: impl std::fmt::Display) -> Reply {
    Err(ApiError {
        status,
        message: msg.to_string(),
    })
}

/// A command and where its answer goes.
#[derive(Debug)]
pub struct Call {
    pub command: Command,
    pub reply: oneshot::Sender<Reply>,
}

/// The control loop's inbox, as the edges hold it.
#[derive(Clone)]
pub struct Inbox(pub mpsc::UnboundedSender<Call>);

impl Inbox {
    /// Asks the control loop and waits for its answer.
    pub async fn ask(&self, command: Command) -> Reply {
        let (tx, rx) = oneshot::channel();
        if self.0.send(Call { command, reply: tx }).is_err() {
            return error(503, "the agent is shutting down");
        }
        rx.await
            .unwrap_or_else(|_| error(503, "the agent is shutting down"))
    }
}

/// What a request asks for, once its path and method are known.
#[derive(Debug, PartialEq)]
pub enum Route {
    Command(Command),
    /// `POST /v1/capture`: a streaming session, run by the edge.
    Capture(capture::Request),
    /// `GET /v1/flows?vip=NAME[&from=ADDR:PORT][&limit=N]`: the edge reads the flow table.
    Flows {
        vip: String,
        from: Option<std::net::SocketAddr>,
        limit: usize,
    },
}

/// What `lb flows` shows of one flow.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FlowView {
    pub client: String,
    pub backend: String,
    pub idle_ms: u64,
}

/// The flows listed at most, and by default.
pub const FLOWS_MAX: usize = 10_000;
pub const FLOWS_DEFAULT: usize = 50;

fn flows_query(query: &str) -> Result<Route, ApiError> {
    let bad = |m: String| ApiError {
        status: 400,
        message: m,
    };
    let (mut vip, mut from, mut limit) = (None, None, FLOWS_DEFAULT);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "vip" => vip = Some(v.to_string()),
            "from" => {
                from = Some(v.parse().map_err(|_| {
                    bad(format!(
                        "from={v:?}: not ADDRESS:PORT ([ADDRESS]:PORT for IPv6)"
                    ))
                })?)
            }
            "limit" => {
                limit = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=FLOWS_MAX).contains(n))
                    .ok_or_else(|| bad(format!("limit={v:?}: 1 to {FLOWS_MAX}")))?
            }
            other => return Err(bad(format!("unknown parameter {other:?}"))),
        }
    }
    let vip = vip.ok_or_else(|| bad("name the VIP: ?vip=NAME".into()))?;
    Ok(Route::Flows { vip, from, limit })
}

/// `PUT /v1/vips/NAME/backends/ADDR/weight`'s body.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct WeightSpec {
    pub weight: u32,
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError {
        status: 400,
        message: format!("bad request body: {e}"),
    })
}

fn addr(s: &str) -> Result<IpAddr, ApiError> {
    s.parse().map_err(|_| ApiError {
        status: 400,
        message: format!("{s:?} is not an IP address"),
    })
}

/// The control socket's routes. A path that exists with other methods is a 405 (with the
/// methods it takes), one that does not a 404.
pub fn route(method: &str, target: &str, body: &[u8]) -> Result<Route, ApiError> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let cmd = |c| Ok(Route::Command(c));
    let change = |c| Ok(Route::Command(Command::Change(c)));
    let allowed: &str = match (method, parts.as_slice()) {
        ("GET", ["metrics"]) => return cmd(Command::Metrics),
        ("GET", ["v1", "stats"]) => return cmd(Command::Stats),
        ("GET", ["v1", "status"]) => return cmd(Command::Status),
        ("GET", ["v1", "config"]) => return cmd(Command::Config),
        ("GET", ["v1", "vips"]) => return cmd(Command::Vips),
        ("POST", ["v1", "vips"]) => return change(Change::VipAdd(parse_body::<VipSpec>(body)?)),
        ("DELETE", ["v1", "vips", name]) => {
            return change(Change::VipDel {
                name: name.to_string(),
            });
        }
        ("GET", ["v1", "vips", name, "backends"]) => {
            return cmd(Command::Backends {
                vip: name.to_string(),
            });
        }
        ("POST", ["v1", "vips", name, "backends"]) => {
            let b = parse_body::<BackendSpec>(body)?;
            return change(Change::BackendAdd {
                vip: name.to_string(),
                address: b.address,
                weight: b.weight,
            });
        }
        ("DELETE", ["v1", "vips", name, "backends", a]) => {
            return change(Change::BackendDel {
                vip: name.to_string(),
                address: addr(a)?,
            });
        }
        ("POST", ["v1", "vips", name, "backends", a, "drain"]) => {
            return change(Change::Drain {
                vip: name.to_string(),
                address: addr(a)?,
            });
        }
        ("POST", ["v1", "vips", name, "backends", a, "undrain"]) => {
            return change(Change::Undrain {
                vip: name.to_string(),
                address: addr(a)?,
            });
        }
        ("PUT", ["v1", "vips", name, "backends", a, "weight"]) => {
            let w = parse_body::<WeightSpec>(body)?;
            return change(Change::Weight {
                vip: name.to_string(),
                address: addr(a)?,
                weight: w.weight,
            });
        }
        ("POST", ["v1", "capture"]) => return Ok(Route::Capture(parse_body(body)?)),
        ("GET", ["v1", "flows"]) => return flows_query(query),
        (_, ["v1", "vips", _, "backends", _, "weight"]) => "PUT",
        (
            _,
            ["metrics"] | ["v1", "stats" | "status" | "config"] | ["v1", "vips", _, "backends", _],
        ) => {
            if parts.len() == 5 {
                "DELETE"
            } else {
                "GET"
            }
        }
        (_, ["v1", "vips"] | ["v1", "vips", _, "backends"]) => "GET, POST",
        (_, ["v1", "vips", _]) => "DELETE",
        (_, ["v1", "vips", _, "backends", _, "drain" | "undrain"] | ["v1", "capture"]) => "POST",
        _ => {
            return Err(ApiError {
                status: 404,
                message: format!("no such endpoint: {method} {path}"),
            });
        }
    };
    Err(ApiError {
        status: 405,
        message: format!("{method} is not allowed on {path} (allowed: {allowed})"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_known_paths_refuse_wrong_methods_and_unknown_paths() {
        let ok = |m: &str, p: &str, b: &str| route(m, p, b.as_bytes()).unwrap();
        let status = |m: &str, p: &str, b: &str| route(m, p, b.as_bytes()).unwrap_err().status;
        assert_eq!(ok("GET", "/v1/status", ""), Route::Command(Command::Status));
        assert_eq!(ok("GET", "/metrics", ""), Route::Command(Command::Metrics));
        assert_eq!(
            ok("POST", "/v1/vips/web/backends/198.18.0.11/drain", ""),
            Route::Command(Command::Change(Change::Drain {
                vip: "web".into(),
                address: "198.18.0.11".parse().unwrap()
            }))
        );
        assert_eq!(
            ok("POST", "/v1/capture", r#"{"count":3}"#),
            Route::Capture(capture::Request {
                count: Some(3),
                ..Default::default()
            })
        );
        assert_eq!(ok("GET", "/v1/config", ""), Route::Command(Command::Config));
        assert_eq!(
            ok("GET", "/v1/flows?vip=web&from=198.18.0.1:4000&limit=5", ""),
            Route::Flows {
                vip: "web".into(),
                from: Some("198.18.0.1:4000".parse().unwrap()),
                limit: 5
            }
        );
        assert_eq!(status("GET", "/v1/flows", ""), 400, "no VIP named");
        assert_eq!(status("GET", "/v1/flows?vip=web&limit=0", ""), 400);
        assert_eq!(status("GET", "/v1/flows?vip=web&from=nowhere", ""), 400);
        assert_eq!(
            ok(
                "PUT",
                "/v1/vips/web/backends/198.18.0.11/weight",
                r#"{"weight":300}"#
            ),
            Route::Command(Command::Change(Change::Weight {
                vip: "web".into(),
                address: "198.18.0.11".parse().unwrap(),
                weight: 300
            }))
        );
        for (m, p) in [
            ("GET", "/v1/vips/web/backends/198.18.0.11/weight"),
            ("POST", "/v1/config"),
            ("POST", "/v1/status"),
            ("DELETE", "/v1/stats"),
            ("PUT", "/v1/vips"),
            ("GET", "/v1/vips/web"),
            ("GET", "/v1/vips/web/backends/198.18.0.11/drain"),
            ("GET", "/v1/capture"),
            ("POST", "/metrics"),
        ] {
            assert_eq!(status(m, p, ""), 405, "{m} {p}");
        }
        for (m, p) in [("GET", "/"), ("GET", "/v2/status"), ("POST", "/v1/nothing")] {
            assert_eq!(status(m, p, ""), 404, "{m} {p}");
        }
        assert_eq!(status("POST", "/v1/vips", "{"), 400);
        assert_eq!(status("DELETE", "/v1/vips/web/backends/not-an-ip", ""), 400);
        let e = route("PUT", "/v1/vips/web/backends", b"").unwrap_err();
        assert!(e.message.contains("GET, POST"), "{e}");
    }
}
