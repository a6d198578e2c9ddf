//! The CLI's side of the control socket: a hyper HTTP/1.1 client on the unix socket.
use std::{path::Path, time::Duration};

use anyhow::{Context, bail};
use bytes::Bytes;
use http::{Request, Response, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

/// How long a whole request may take (a change waits for the data path to be written).
const TIMEOUT: Duration = Duration::from_secs(30);

/// Sends one request and returns the response with its body still to be read (a capture
/// streams it). Runs inside a tokio runtime.
pub async fn send(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> anyhow::Result<Response<Incoming>> {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .with_context(|| {
            format!(
                "cannot reach the agent at {} (is `lb run` running? are you root?)",
                socket.display()
            )
        })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("talking to the agent")?;
    tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "lb")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.unwrap_or("").to_owned())))
        .context("building the request")?;
    sender
        .send_request(req)
        .await
        .context("the agent closed the connection without answering")
}

/// The agent's refusal as an error: its JSON `error` field, or the body as it came.
pub fn refusal(status: http::StatusCode, body: &[u8]) -> anyhow::Error {
    let msg = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{status}: {}", String::from_utf8_lossy(body)));
    anyhow::Error::new(super::ApiError {
        status: status.as_u16(),
        message: msg,
    })
}

/// Sends a request to the agent on `socket`; returns the JSON body of a 200 answer, or the
/// agent's error (an [`super::ApiError`] with its status).
pub fn request(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> anyhow::Result<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let exchange = async {
            let resp = send(socket, method, path, body).await?;
            let status = resp.status();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .context("reading the agent's answer")?
                .to_bytes();
            if status != http::StatusCode::OK {
                return Err(refusal(status, &bytes));
            }
            String::from_utf8(bytes.to_vec()).context("the agent's answer is not UTF-8")
        };
        match tokio::time::timeout(TIMEOUT, exchange).await {
            Ok(r) => r,
            Err(_) => bail!("the agent did not answer within {TIMEOUT:?}"),
        }
    })
}

/// `GET path`.
pub fn get(socket: &Path, path: &str) -> anyhow::Result<String> {
    request(socket, "GET", path, None)
}
