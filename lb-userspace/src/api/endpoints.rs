//! What the two listeners answer: the control socket (every route of [`super::route`]) and
//! the metrics port (`GET /metrics` only). Each request becomes a [`Command`] for the control
//! loop; the answer becomes a response here.
use std::{path::PathBuf, sync::Arc};

use bytes::Bytes;
use http::{Response, header::ACCEPT, request::Parts};

use super::{
    Answer, Command, Inbox, Route,
    server::{Body, refuse, respond},
};
use crate::{capture, metrics};

const JSON: &str = "application/json";

/// What the control socket's handler needs besides the control loop.
pub struct Control {
    pub inbox: Inbox,
    pub capture: Option<capture::SharedRing>,
    /// The pinned flow table, counted here for `GET /v1/stats` (off the control loop).
    pub flows_pin: Option<PathBuf>,
}

/// The control socket's handler.
pub async fn control(ctx: Arc<Control>, parts: Parts, body: Bytes) -> Response<Body> {
    let target = parts
        .uri
        .path_and_query()
        .map_or(parts.uri.path(), |p| p.as_str());
    let route = match super::route(parts.method.as_str(), target, &body) {
        Ok(r) => r,
        Err(e) => return refuse(e.status, &e.message),
    };
    match route {
        Route::Command(Command::Metrics) => scrape(&ctx.inbox, &parts).await,
        Route::Command(c) => {
            let answer = ctx.inbox.ask(c).await;
            respond_with(answer, ctx.flows_pin.clone()).await
        }
        Route::Flows { vip, from, limit } => flows(&ctx, vip, from, limit).await,
        Route::Capture(req) => match &ctx.capture {
            Some(ring) => super::session::session(req, ctx.inbox.clone(), ring.clone()).await,
            None => refuse(404, "this agent has no capture ring"),
        },
    }
}

/// The metrics port's handler: `GET /metrics`, nothing else.
pub async fn metrics_port(inbox: Inbox, parts: Parts, _body: Bytes) -> Response<Body> {
    match (parts.method.as_str(), parts.uri.path()) {
        ("GET", "/metrics") => scrape(&inbox, &parts).await,
        (m, "/metrics") => refuse(
            405,
            &format!("{m} is not allowed on /metrics (allowed: GET)"),
        ),
        _ => refuse(404, "only GET /metrics here"),
    }
}

async fn respond_with(answer: super::Reply, flows_pin: Option<PathBuf>) -> Response<Body> {
    match answer {
        Err(e) => refuse(e.status, &e.message),
        Ok(Answer::Json(body)) => respond(200, JSON, body),
        Ok(Answer::Stats(mut stats)) => {
            if let Some(pin) = flows_pin {
                match tokio::task::spawn_blocking(move || crate::dataplane::count_flows(&pin)).await
                {
                    Ok(Ok(n)) => stats.flows = stats.flows.with_entries(n),
                    Ok(Err(e)) => return refuse(500, &format!("counting the flow table: {e}")),
                    Err(e) => return refuse(500, &format!("counting the flow table: {e}")),
                }
            }
            respond(200, JSON, serde_json::to_string(&stats).unwrap_or_default())
        }
        Ok(Answer::Metrics(text)) => respond(200, metrics::OPENMETRICS, text),
        Ok(Answer::Text(text)) => respond(200, "application/toml", text),
        Ok(Answer::FlowScope { .. }) => refuse(500, "a flow scope is the edge's"),
        Ok(Answer::CaptureStarted { lost }) => respond(
            200,
            JSON,
            serde_json::to_string(&capture::Started { lost }).unwrap_or_default(),
        ),
    }
}

/// `lb flows`: the VIP's scope from the control loop, then the flow table read off it.
async fn flows(
    ctx: &Control,
    vip: String,
    from: Option<std::net::SocketAddr>,
    limit: usize,
) -> Response<Body> {
    let Some(pin) = ctx.flows_pin.clone() else {
        return refuse(404, "this agent keeps no pinned flow table");
    };
    let (address, proto, backends) = match ctx.inbox.ask(Command::FlowScope { vip }).await {
        Ok(Answer::FlowScope {
            address,
            proto,
            backends,
        }) => (address, proto, backends),
        Ok(_) => return refuse(500, "the agent answered with something else"),
        Err(e) => return refuse(e.status, &e.message),
    };
    let read = tokio::task::spawn_blocking(move || {
        crate::dataplane::flows_to(&pin, address, proto, from, limit)
    })
    .await;
    let entries = match read {
        Ok(Ok(e)) => e,
        Ok(Err(e)) => return refuse(500, &format!("reading the flow table: {e}")),
        Err(e) => return refuse(500, &format!("reading the flow table: {e}")),
    };
    let views: Vec<super::FlowView> = entries
        .into_iter()
        .map(|e| super::FlowView {
            client: e.client,
            backend: backends
                .iter()
                .find(|(id, _)| *id == e.backend_id)
                .map_or_else(
                    || format!("(backend #{})", e.backend_id),
                    |(_, a)| a.clone(),
                ),
            idle_ms: e.idle_ms,
        })
        .collect();
    respond(200, JSON, serde_json::to_string(&views).unwrap_or_default())
}

/// A scrape: OpenMetrics where the scraper's `Accept` prefers it, the 0.0.4 text format
/// otherwise.
async fn scrape(inbox: &Inbox, parts: &Parts) -> Response<Body> {
    let accept = parts
        .headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    match inbox.ask(Command::Metrics).await {
        Ok(Answer::Metrics(text)) => match metrics::Format::negotiate(&accept) {
            metrics::Format::OpenMetrics => respond(200, metrics::OPENMETRICS, text),
            metrics::Format::Text => respond(200, metrics::TEXT, metrics::to_text(&text)),
        },
        Ok(_) => refuse(500, "the agent answered a scrape with something else"),
        Err(e) => refuse(e.status, &e.message),
    }
}
