//! `lb capture`: packets copied by the data path into a BPF ring buffer, streamed by the agent
//! to the CLI, written by the CLI into a pcap file.
//!
//! The CLI sends `POST /v1/capture` with a [`Request`]; the agent answers `200` and then a
//! stream of frames until the count is reached or the CLI hangs up: each frame is a kind and a
//! length (u32, little endian) and that many bytes: a packet (its header, then its bytes) or,
//! last, the end (packets captured and lost). Only one capture runs at a time. The program
//! the agent runs has no capture hook: for the session, the same program with the hook takes
//! its place on every interface (an atomic link update), and gives it back after.
use std::{
    io::{self, Read},
    sync::Arc,
    time::Duration,
};

use aya::maps::{MapData, RingBuf};
use lb_common::{CAPTURE_MAX, CaptureHeader};
use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, unix::AsyncFd},
    sync::{Mutex, mpsc},
};

use crate::api::{self, Call, Reply};

mod client;
pub use client::{Summary, client};

/// What to capture.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Request {
    /// Only packets of this VIP (by name).
    #[serde(default)]
    pub vip: Option<String>,
    /// Only packets the program dropped.
    #[serde(default)]
    pub drops: bool,
    /// Stop after this many packets.
    #[serde(default)]
    pub count: Option<u64>,
    /// Bytes kept of each packet (1 to [`CAPTURE_MAX`]; 0: the most).
    #[serde(default)]
    pub snaplen: u32,
}

/// The agent's answer to the start of a session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Started {
    /// The data path's lost count when the session started.
    pub lost: u64,
}

/// One captured packet.
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    /// Wall-clock time since the Unix epoch.
    pub ts: Duration,
    /// The frame's length on the wire (the copy may be shorter).
    pub len: u32,
    /// The VIP id, or [`lb_common::CAPTURE_ANY`].
    pub vip: u32,
    /// What the program did with it (a [`lb_common::Counter`]).
    pub counter: u32,
    pub ifindex: u32,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Packet(Packet),
    End { captured: u64, lost: u64 },
}

const KIND_PACKET: u32 = 1;
const KIND_END: u32 = 2;
/// Packet header on the stream: ts (u64 ns), len, vip, counter, ifindex (u32).
const PACKET_HEAD: usize = 24;

impl Frame {
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Frame::Packet(p) => {
                out.extend(KIND_PACKET.to_le_bytes());
                out.extend(((PACKET_HEAD + p.data.len()) as u32).to_le_bytes());
                out.extend((p.ts.as_nanos() as u64).to_le_bytes());
                for v in [p.len, p.vip, p.counter, p.ifindex] {
                    out.extend(v.to_le_bytes());
                }
                out.extend(&p.data);
            }
            Frame::End { captured, lost } => {
                out.extend(KIND_END.to_le_bytes());
                out.extend(16u32.to_le_bytes());
                out.extend(captured.to_le_bytes());
                out.extend(lost.to_le_bytes());
            }
        }
    }

    /// The next frame, `None` at the end of the stream.
    pub fn read(r: &mut impl Read) -> io::Result<Option<Frame>> {
        let mut head = [0u8; 8];
        match r.read_exact(&mut head) {
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            r => r?,
        }
        let kind = u32::from_le_bytes(head[..4].try_into().unwrap());
        let len = u32::from_le_bytes(head[4..].try_into().unwrap()) as usize;
        if len > PACKET_HEAD + CAPTURE_MAX as usize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("capture frame of {len} bytes"),
            ));
        }
        let mut body = vec![0u8; len];
        r.read_exact(&mut body)?;
        let u32_at = |i: usize| u32::from_le_bytes(body[i..i + 4].try_into().unwrap());
        let u64_at = |i: usize| u64::from_le_bytes(body[i..i + 8].try_into().unwrap());
        match kind {
            KIND_PACKET if len >= PACKET_HEAD => Ok(Some(Frame::Packet(Packet {
                ts: Duration::from_nanos(u64_at(0)),
                len: u32_at(8),
                vip: u32_at(12),
                counter: u32_at(16),
                ifindex: u32_at(20),
                data: body[PACKET_HEAD..].to_vec(),
            }))),
            KIND_END if len == 16 => Ok(Some(Frame::End {
                captured: u64_at(0),
                lost: u64_at(8),
            })),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("capture frame of kind {kind} and {len} bytes"),
            )),
        }
    }
}

/// A ring-buffer record as a packet; `None` if it is too short to be one.
pub fn from_record(rec: &[u8], clock_offset_ns: i128) -> Option<Packet> {
    let h = size_of::<CaptureHeader>();
    if rec.len() < h {
        return None;
    }
    let u32_at = |i: usize| u32::from_le_bytes(rec[i..i + 4].try_into().unwrap());
    let mono = u64::from_le_bytes(rec[..8].try_into().unwrap());
    let caplen = (u32_at(12) as usize).min(rec.len() - h);
    let wall = (mono as i128 + clock_offset_ns).max(0) as u64;
    Some(Packet {
        ts: Duration::from_nanos(wall),
        len: u32_at(8),
        vip: u32_at(16),
        counter: u32_at(20),
        ifindex: u32_at(24),
        data: rec[h..h + caplen].to_vec(),
    })
}

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // Safety: a valid clock id and a timespec to fill.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

/// The capture ring buffer as the agent's API tasks share it: one session holds it at a time.
pub type SharedRing = Arc<Mutex<AsyncFd<RingBuf<MapData>>>>;

pub fn shared(ring: RingBuf<MapData>) -> io::Result<SharedRing> {
    // Safety: the ring buffer owns its descriptor and keeps it open, unchanged, until dropped,
    // and the AsyncFd owns the ring buffer.
    let fd = unsafe {
        AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE)
            .map_err(io::Error::from)?
    };
    Ok(Arc::new(Mutex::new(fd)))
}

async fn call(calls: &mpsc::UnboundedSender<Call>, path: &str, body: String) -> Reply {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let call = Call {
        method: "POST".into(),
        path: path.into(),
        body,
        reply: tx,
    };
    if calls.send(call).is_err() {
        return api::error(503, "the agent is shutting down");
    }
    rx.await
        .unwrap_or_else(|_| api::error(503, "the agent is shutting down"))
}

/// One capture session on a control connection (the request read, nothing answered yet).
pub async fn session<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    body: String,
    calls: mpsc::UnboundedSender<Call>,
    ring: SharedRing,
) -> io::Result<()> {
    let req: Request = match serde_json::from_str(&body) {
        Ok(r) => r,
        Err(e) => {
            return api::respond(
                &mut stream,
                api::error(400, format!("bad request body: {e}")),
            )
            .await;
        }
    };
    // A session that just ended may still be switching the hook off: wait a moment for it.
    let Ok(mut ring) = tokio::time::timeout(Duration::from_secs(1), ring.lock()).await else {
        return api::respond(&mut stream, api::error(409, "a capture is already running")).await;
    };
    // Records a previous session left behind (it stopped at its count) are not this one's.
    while ring.get_mut().next().is_some() {}
    let (status, started) = call(&calls, "/v1/capture/start", body).await;
    if status != 200 {
        return api::respond(&mut stream, (status, started)).await;
    }
    let lost_before = serde_json::from_str::<Started>(&started).map_or(0, |s| s.lost);
    let offset = clock_ns(libc::CLOCK_REALTIME) - clock_ns(libc::CLOCK_MONOTONIC);
    let (mut rd, mut wr) = tokio::io::split(stream);
    let head =
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n";
    let mut captured = 0u64;
    let limit = req.count.unwrap_or(u64::MAX);
    let mut hangup = [0u8; 64];
    let mut ok = wr.write_all(head.as_bytes()).await.is_ok();
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
                    ok = wr.write_all(&out).await.is_ok();
                }
            }
            // The CLI sends nothing more: a read that returns is a hang-up (Ctrl-C).
            _ = rd.read(&mut hangup) => ok = false,
        }
    }
    let (_, stopped) = call(&calls, "/v1/capture/stop", String::new()).await;
    let lost_after = serde_json::from_str::<Started>(&stopped).map_or(lost_before, |s| s.lost);
    if ok {
        let mut out = Vec::new();
        Frame::End {
            captured,
            lost: lost_after.saturating_sub(lost_before),
        }
        .encode(&mut out);
        let _ = wr.write_all(&out).await;
        let _ = wr.shutdown().await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_bad_ones_are_refused() {
        let p = Packet {
            ts: Duration::new(1_700_000_000, 123_456_789),
            len: 98,
            vip: 3,
            counter: 2,
            ifindex: 7,
            data: (0..60).collect(),
        };
        let mut wire = Vec::new();
        Frame::Packet(p.clone()).encode(&mut wire);
        Frame::End {
            captured: 1,
            lost: 4,
        }
        .encode(&mut wire);
        let mut r = &wire[..];
        assert_eq!(Frame::read(&mut r).unwrap(), Some(Frame::Packet(p)));
        assert_eq!(
            Frame::read(&mut r).unwrap(),
            Some(Frame::End {
                captured: 1,
                lost: 4
            })
        );
        assert_eq!(Frame::read(&mut r).unwrap(), None);
        // A frame claiming more than a record can hold, and an unknown kind.
        let mut big = KIND_PACKET.to_le_bytes().to_vec();
        big.extend(u32::MAX.to_le_bytes());
        assert!(Frame::read(&mut &big[..]).is_err());
        let mut odd = 9u32.to_le_bytes().to_vec();
        odd.extend(0u32.to_le_bytes());
        assert!(Frame::read(&mut &odd[..]).is_err());
    }

    #[test]
    fn records_become_packets_on_the_wall_clock() {
        let mut rec = Vec::new();
        rec.extend(5_000u64.to_le_bytes()); // monotonic ns
        for v in [100u32, 4, 2, 1, 9, 0] {
            rec.extend(v.to_le_bytes()); // len, caplen, vip, counter, ifindex, pad
        }
        rec.extend([0xaa; 8]);
        let p = from_record(&rec, 1_000_000_000).unwrap();
        assert_eq!(p.ts, Duration::from_nanos(1_000_005_000));
        assert_eq!((p.len, p.vip, p.counter, p.ifindex), (100, 2, 1, 9));
        assert_eq!(p.data, vec![0xaa; 4]);
        assert!(from_record(&rec[..20], 0).is_none());
    }
}
