//! `lb capture`'s side: asks the agent for a session and writes what it streams into a pcap
//! file, a whole packet at a time, until the count is reached or SIGINT/SIGTERM.
use std::io;

use http_body_util::BodyExt;
use lb_common::CAPTURE_MAX;
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    api,
    capture::{Frame, Request},
};

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
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(session(socket, req, file))
}

async fn session(
    socket: &std::path::Path,
    req: &Request,
    file: &std::path::Path,
) -> anyhow::Result<Summary> {
    use anyhow::Context;
    use pcap_file::{
        DataLink, Endianness, TsResolution,
        pcap::{PcapHeader, PcapWriter},
    };
    use std::io::Write;

    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let body = serde_json::to_string(req)?;
    let resp = api::client::send(socket, "POST", "/v1/capture", Some(&body)).await?;
    let status = resp.status();
    let mut body = resp.into_body();
    if status != http::StatusCode::OK {
        let bytes = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        return Err(api::client::refusal(status, &bytes));
    }
    let mut out: Box<dyn Write> = if file.as_os_str() == "-" {
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
    let staging = Staging::default();
    let mut pcap = PcapWriter::with_header(staging.clone(), header)?;
    staging.drain_into(&mut out)?;
    let mut sum = Summary::default();
    let mut buf = Vec::new();
    loop {
        let chunk = tokio::select! {
            f = body.frame() => f,
            _ = int.recv() => break,
            _ = term.recv() => break,
        };
        match chunk {
            None => break,
            Some(Err(e)) => return Err(e).context("reading the capture stream"),
            Some(Ok(f)) => {
                if let Ok(data) = f.into_data() {
                    buf.extend_from_slice(&data);
                }
            }
        }
        let mut used = 0;
        while let Some((frame, n)) =
            Frame::decode(&buf[used..]).context("reading the capture stream")?
        {
            used += n;
            sum.add(frame, &mut pcap)?;
        }
        buf.drain(..used);
        // Whole packets on disk as they come: a stopped capture leaves a valid file.
        staging.drain_into(&mut out)?;
    }
    Ok(sum)
}

impl Summary {
    fn add(
        &mut self,
        frame: Frame,
        pcap: &mut pcap_file::pcap::PcapWriter<Staging>,
    ) -> anyhow::Result<()> {
        match frame {
            Frame::Packet(p) => {
                pcap.write_packet(&pcap_file::pcap::PcapPacket::new(p.ts, p.len, &p.data))?;
                self.captured += 1;
                let name = lb_common::Counter::ALL
                    .get(p.counter as usize)
                    .map_or("unknown", |c| c.name());
                match self.outcomes.iter_mut().find(|(n, _)| n == name) {
                    Some((_, c)) => *c += 1,
                    None => self.outcomes.push((name.to_string(), 1)),
                }
            }
            Frame::End { lost, .. } => self.lost = lost,
            Frame::Tick => {}
        }
        Ok(())
    }
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
