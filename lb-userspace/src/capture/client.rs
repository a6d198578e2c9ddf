//! `lb capture`'s side: asks the agent for a session and writes what it streams into a pcap
//! file, a whole packet at a time, until the count is reached or SIGINT/SIGTERM.
use std::{
    io::{self, Read},
    time::Duration,
};

use lb_common::CAPTURE_MAX;

use super::{Frame, Request};

/// Set by SIGINT/SIGTERM while `lb capture` runs: stop reading, close the file cleanly.
static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, std::sync::atomic::Ordering::SeqCst);
}

fn stopped() -> bool {
    STOP.load(std::sync::atomic::Ordering::SeqCst)
}

/// The socket, read with a timeout so that a signal is noticed; a timeout is retried unless
/// the capture was stopped (then it reads as the end).
struct Interruptible(std::os::unix::net::UnixStream);

impl Read for Interruptible {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.0.read(buf) {
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) =>
                {
                    if stopped() {
                        return Ok(0);
                    }
                }
                r => return r,
            }
        }
    }
}

/// What a capture got.
#[derive(Debug, Default)]
pub struct Summary {
    pub captured: u64,
    /// Matching packets the ring buffer had no room for.
    pub lost: u64,
    /// Packets per outcome name, in order of first appearance.
    pub outcomes: Vec<(String, u64)>,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} packet(s) captured", self.captured)?;
        if !self.outcomes.is_empty() {
            let parts: Vec<String> = self
                .outcomes
                .iter()
                .map(|(n, c)| format!("{n} {c}"))
                .collect();
            write!(f, " ({})", parts.join(", "))?;
        }
        if self.lost > 0 {
            write!(f, "; {} lost (the ring buffer was full)", self.lost)?;
        }
        Ok(())
    }
}

/// `lb capture`: runs a session against the agent on `socket`, writing a pcap file (`-`:
/// standard output) until the count is reached or SIGINT/SIGTERM.
pub fn client(
    socket: &std::path::Path,
    req: &Request,
    file: &std::path::Path,
) -> anyhow::Result<Summary> {
    use anyhow::Context;
    use pcap_file::{
        DataLink, Endianness, TsResolution,
        pcap::{PcapHeader, PcapPacket, PcapWriter},
    };
    use std::io::Write;

    // Safety: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let mut s = std::os::unix::net::UnixStream::connect(socket).with_context(|| {
        format!(
            "cannot reach the agent at {} (is `lb run` running? are you root?)",
            socket.display()
        )
    })?;
    let body = serde_json::to_string(req)?;
    write!(
        s,
        "POST /v1/capture HTTP/1.1\r\nHost: lb\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    s.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut r = io::BufReader::new(Interruptible(s));
    // The head, a line at a time.
    let mut status = String::new();
    io::BufRead::read_line(&mut r, &mut status)?;
    loop {
        let mut line = String::new();
        if io::BufRead::read_line(&mut r, &mut line)? == 0 || line == "\r\n" {
            break;
        }
    }
    if status.split_whitespace().nth(1) != Some("200") {
        let mut body = String::new();
        let _ = r.read_to_string(&mut body);
        let msg = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_else(|| format!("{} {body}", status.trim()));
        anyhow::bail!("{msg}");
    }
    let out: Box<dyn Write> = if file.as_os_str() == "-" {
        Box::new(io::stdout().lock())
    } else {
        Box::new(
            std::fs::File::create(file).with_context(|| format!("creating {}", file.display()))?,
        )
    };
    let header = PcapHeader {
        snaplen: if req.snaplen == 0 {
            CAPTURE_MAX
        } else {
            req.snaplen
        },
        datalink: DataLink::ETHERNET,
        ts_resolution: TsResolution::NanoSecond,
        endianness: Endianness::native(),
        ..Default::default()
    };
    eprintln!(
        "lb capture: capturing into {} (Ctrl-C stops)",
        file.display()
    );
    let mut out = out;
    let staging = Staging::default();
    let mut pcap = PcapWriter::with_header(staging.clone(), header)?;
    staging.drain_into(&mut out)?;
    let mut sum = Summary::default();
    loop {
        let frame = match Frame::read(&mut r) {
            Ok(Some(f)) => f,
            Ok(None) => break,
            // Cut short by a signal in the middle of a frame.
            Err(_) if stopped() => break,
            Err(e) => return Err(e).context("reading the capture stream"),
        };
        match frame {
            Frame::Packet(p) => {
                pcap.write_packet(&PcapPacket::new(p.ts, p.len, &p.data))?;
                // Whole packets on disk as they come: a stopped capture leaves a valid file.
                staging.drain_into(&mut out)?;
                sum.captured += 1;
                let name = lb_common::Counter::ALL
                    .get(p.counter as usize)
                    .map_or("unknown", |c| c.name());
                match sum.outcomes.iter_mut().find(|(n, _)| n == name) {
                    Some((_, c)) => *c += 1,
                    None => sum.outcomes.push((name.to_string(), 1)),
                }
            }
            Frame::End { lost, .. } => sum.lost = lost,
        }
    }
    Ok(sum)
}

/// What the pcap writer writes into: a buffer the capture drains into the file after every
/// packet, so that the file always ends on a whole packet.
#[derive(Clone, Default)]
struct Staging(std::rc::Rc<std::cell::RefCell<Vec<u8>>>);

impl std::io::Write for Staging {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Staging {
    /// Moves what was written into `out`, and flushes it.
    fn drain_into(&self, out: &mut dyn std::io::Write) -> io::Result<()> {
        let bytes = std::mem::take(&mut *self.0.borrow_mut());
        out.write_all(&bytes)?;
        out.flush()
    }
}
