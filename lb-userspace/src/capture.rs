//! `lb capture`: packets copied by the data path into a BPF ring buffer, streamed by the agent
//! to the CLI (`api::session`), written by the CLI into a pcap file (`cli::capture`). This
//! module holds what both sides share: the request, the stream's frames, the ring's records.
//!
//! The CLI sends `POST /v1/capture` with a [`Request`]; the agent answers `200` and then a
//! stream of frames until the count is reached or the CLI hangs up: each frame is a kind and a
//! length (u32, little endian) and that many bytes: a packet (its header, then its bytes), a
//! tick (nothing captured for a while; it lets the agent notice a CLI that hung up) or, last,
//! the end (packets captured and lost). Only one capture runs at a time. The program
//! the agent runs has no capture hook: for the session, the same program with the hook takes
//! its place on every interface (an atomic link update), and gives it back after.
use std::{io, sync::Arc, time::Duration};

use aya::maps::{MapData, RingBuf};
use lb_common::{CAPTURE_MAX, CaptureHeader};
use serde::{Deserialize, Serialize};
use tokio::{io::unix::AsyncFd, sync::Mutex};

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
    End {
        captured: u64,
        lost: u64,
    },
    /// Nothing captured for a while: sent so that a CLI that hung up is noticed.
    Tick,
}

const KIND_PACKET: u32 = 1;
const KIND_END: u32 = 2;
const KIND_TICK: u32 = 3;
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
            Frame::Tick => {
                out.extend(KIND_TICK.to_le_bytes());
                out.extend(0u32.to_le_bytes());
            }
        }
    }

    /// The first frame in `buf` and the bytes it took; `None` while `buf` holds no whole
    /// frame yet.
    pub fn decode(buf: &[u8]) -> io::Result<Option<(Frame, usize)>> {
        let Some(head) = buf.get(..8) else {
            return Ok(None);
        };
        let kind = u32::from_le_bytes(head[..4].try_into().unwrap());
        let len = u32::from_le_bytes(head[4..].try_into().unwrap()) as usize;
        if len > PACKET_HEAD + CAPTURE_MAX as usize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("capture frame of {len} bytes"),
            ));
        }
        let Some(body) = buf.get(8..8 + len) else {
            return Ok(None);
        };
        let u32_at = |i: usize| u32::from_le_bytes(body[i..i + 4].try_into().unwrap());
        let u64_at = |i: usize| u64::from_le_bytes(body[i..i + 8].try_into().unwrap());
        let frame = match kind {
            KIND_PACKET if len >= PACKET_HEAD => Frame::Packet(Packet {
                ts: Duration::from_nanos(u64_at(0)),
                len: u32_at(8),
                vip: u32_at(12),
                counter: u32_at(16),
                ifindex: u32_at(20),
                data: body[PACKET_HEAD..].to_vec(),
            }),
            KIND_END if len == 16 => Frame::End {
                captured: u64_at(0),
                lost: u64_at(8),
            },
            KIND_TICK if len == 0 => Frame::Tick,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("capture frame of kind {kind} and {len} bytes"),
                ));
            }
        };
        Ok(Some((frame, 8 + len)))
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

pub fn clock_ns(clock: libc::clockid_t) -> i128 {
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
        Frame::Tick.encode(&mut wire);
        let mut r = &wire[..];
        let mut next = || {
            let (f, n) = Frame::decode(r).unwrap()?;
            r = &r[n..];
            Some(f)
        };
        assert_eq!(next(), Some(Frame::Packet(p)));
        assert_eq!(
            next(),
            Some(Frame::End {
                captured: 1,
                lost: 4
            })
        );
        assert_eq!(next(), Some(Frame::Tick));
        assert_eq!(next(), None);
        // A frame cut short is not yet a frame.
        assert_eq!(Frame::decode(&wire[..30]).unwrap(), None);
        // A frame claiming more than a record can hold, and an unknown kind.
        let mut big = KIND_PACKET.to_le_bytes().to_vec();
        big.extend(u32::MAX.to_le_bytes());
        assert!(Frame::decode(&big).is_err());
        let mut odd = 9u32.to_le_bytes().to_vec();
        odd.extend(0u32.to_le_bytes());
        assert!(Frame::decode(&odd).is_err());
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
