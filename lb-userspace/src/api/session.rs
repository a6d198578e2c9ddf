//! A capture session on the control socket (`POST /v1/capture`): the hook switched in through
//! the control loop, the ring buffer's records streamed as [`Frame`]s in the response body
//! until the count is reached or the CLI hangs up, the hook switched out again.
use std::time::Duration;

use aya::maps::{MapData, RingBuf};
use bytes::Bytes;
use http::Response;
use tokio::{io::unix::AsyncFd, sync::mpsc};

use super::{
    Answer, Command, Inbox,
    server::{Body, refuse},
};
use crate::capture::{Frame, Request, SharedRing, clock_ns, from_record};

/// How often a session with nothing to send sends a [`Frame::Tick`]: a CLI that hung up is
/// noticed on the write that fails, so within this time.
const TICK: Duration = Duration::from_millis(250);

/// A streamed response body: what the session task sends.
struct Stream(mpsc::Receiver<Bytes>);

impl http_body::Body for Stream {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|b| b.map(|b| Ok(http_body::Frame::data(b))))
    }
}

/// `POST /v1/capture`: starts a session (the hook in, through the control loop) and answers
/// with its stream, which a task feeds until the count is reached or the CLI hangs up.
pub async fn session(req: Request, inbox: Inbox, ring: SharedRing) -> Response<Body> {
    // A session that just ended may still be switching the hook off: wait a moment for it.
    let Ok(mut ring) = tokio::time::timeout(Duration::from_secs(1), ring.lock_owned()).await else {
        return refuse(409, "a capture is already running");
    };
    // Records a previous session left behind (it stopped at its count) are not this one's.
    while ring.get_mut().next().is_some() {}
    let lost_before = match inbox.ask(Command::CaptureStart(req.clone())).await {
        Ok(Answer::CaptureStarted { lost }) => lost,
        Ok(_) => 0,
        Err(e) => return refuse(e.status, &e.message),
    };
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(feed(req, inbox, ring, tx, lost_before));
    let mut resp = Response::new(http_body_util::BodyExt::boxed(Stream(rx)));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/octet-stream"),
    );
    resp
}

/// Copies the ring buffer's records into the session's stream until the count is reached or
/// the stream's reader is gone, then takes the hook out and sends the end.
async fn feed(
    req: Request,
    inbox: Inbox,
    mut ring: tokio::sync::OwnedMutexGuard<AsyncFd<RingBuf<MapData>>>,
    tx: mpsc::Sender<Bytes>,
    lost_before: u64,
) {
    let offset = clock_ns(libc::CLOCK_REALTIME) - clock_ns(libc::CLOCK_MONOTONIC);
    let mut captured = 0u64;
    let limit = req.count.unwrap_or(u64::MAX);
    let mut tick = tokio::time::interval(TICK);
    let mut ok = true;
    while ok && captured < limit {
        tokio::select! {
            guard = ring.readable_mut() => {
                // An error here must still end in the stop below (the hooked program out).
                let Ok(mut guard) = guard else {
                    ok = false;
                    continue;
                };
                let mut out = Vec::new();
                let mut drained = true;
                while captured < limit {
                    let Some(rec) = guard.get_inner_mut().next() else {
                        break;
                    };
                    if let Some(p) = from_record(&rec, offset) {
                        Frame::Packet(p).encode(&mut out);
                        captured += 1;
                    }
                    drained = false;
                }
                if captured < limit || drained {
                    guard.clear_ready();
                }
                if !out.is_empty() {
                    ok = tx.send(out.into()).await.is_ok();
                }
            }
            _ = tick.tick() => {
                let mut out = Vec::new();
                Frame::Tick.encode(&mut out);
                ok = tx.send(out.into()).await.is_ok();
            }
        }
    }
    let lost_after = match inbox.ask(Command::CaptureStop).await {
        Ok(Answer::CaptureStarted { lost }) => lost,
        _ => lost_before,
    };
    if ok {
        let mut out = Vec::new();
        Frame::End {
            captured,
            lost: lost_after.saturating_sub(lost_before),
        }
        .encode(&mut out);
        let _ = tx.send(out.into()).await;
    }
}
