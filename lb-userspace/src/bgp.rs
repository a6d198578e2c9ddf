//! Announcing VIPs over BGP through BIRD (`[bgp]`). The agent owns one file, `routes_file`,
//! which the operator's bird.conf includes: a static protocol per address family holding a
//! route for each VIP address this balancer can serve. When that set changes the agent
//! rewrites the file and has BIRD re-read its configuration through BIRD's own control socket
//! (the protocol `birdc` speaks); BIRD's BGP sessions then announce or withdraw. An address is
//! announced while the agent runs with the program attached and at least one VIP on it has a
//! live backend; everything is withdrawn when the agent stops and by `lb detach`.
use std::{
    collections::BTreeSet,
    io::{BufRead, BufReader, Write},
    net::IpAddr,
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, bail};

use crate::config::Bgp;

/// The routes file for `addrs`: two static protocols (IPv4, IPv6), named after the instance.
pub fn render(instance: &str, addrs: &BTreeSet<IpAddr>) -> String {
    let name: String = instance
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let mut out = format!(
        "# Written by lb (instance {instance}): the VIP addresses this balancer announces.\n\
         # Include it in bird.conf; lb rewrites it and reconfigures BIRD when it changes.\n"
    );
    for (family, v6) in [("ipv4", false), ("ipv6", true)] {
        out += &format!("protocol static lb_{name}_{family} {{\n  {family};\n");
        for a in addrs.iter().filter(|a| a.is_ipv6() == v6) {
            let len = if v6 { 128 } else { 32 };
            out += &format!("  route {a}/{len} blackhole;\n");
        }
        out += "}\n";
    }
    out
}

/// Sends one command to BIRD over its control socket and returns its answer; an error answer
/// (codes 8xxx and 9xxx) is an error.
pub fn bird_command(socket: &Path, cmd: &str) -> anyhow::Result<String> {
    let s = UnixStream::connect(socket)
        .with_context(|| format!("connecting to BIRD's control socket {}", socket.display()))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut r = BufReader::new(s.try_clone()?);
    // The greeting: "0001 BIRD 2.0.12 ready."
    read_reply(&mut r).context("BIRD's greeting")?;
    (&s).write_all(format!("{cmd}\n").as_bytes())?;
    read_reply(&mut r).with_context(|| format!("BIRD: {cmd}"))
}

/// One reply: lines "CODE-text" (more follow), " text" (continuation), up to "CODE text".
fn read_reply(r: &mut impl BufRead) -> anyhow::Result<String> {
    let mut text = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            bail!("BIRD closed the connection");
        }
        let line = line.trim_end_matches(['\n', '\r']);
        let (code, rest) = match line.get(..4) {
            Some(c) if c.bytes().all(|b| b.is_ascii_digit()) => (Some(c), &line[4..]),
            _ => (None, line),
        };
        let (last, body) = match rest.as_bytes().first() {
            Some(b' ') if code.is_some() => (true, &rest[1..]),
            Some(b'-') => (false, &rest[1..]),
            _ => (false, rest.trim_start()),
        };
        if !text.is_empty() {
            text.push('\n');
        }
        text += body;
        if last {
            let code = code.unwrap_or("0000");
            if code.starts_with('8') || code.starts_with('9') {
                bail!("{text}");
            }
            return Ok(text);
        }
    }
}

/// What the agent has announced, and what it wants announced.
pub struct Announcer {
    cfg: Bgp,
    instance: String,
    /// What BIRD was last told (None: nothing yet, or the last attempt failed).
    told: Option<BTreeSet<IpAddr>>,
    pub wanted: BTreeSet<IpAddr>,
    pub last_error: Option<String>,
}

impl Announcer {
    pub fn new(cfg: Bgp, instance: &str) -> Self {
        Announcer {
            cfg,
            instance: instance.to_string(),
            told: None,
            wanted: BTreeSet::new(),
            last_error: None,
        }
    }

    /// Announces exactly `addrs` (a no-op when BIRD already has them). On failure the error is
    /// kept (`lb status` shows it) and [`Announcer::retry`] tries again.
    pub fn announce(&mut self, addrs: BTreeSet<IpAddr>) {
        if self.told.as_ref() == Some(&addrs) {
            self.wanted = addrs;
            return;
        }
        self.wanted = addrs;
        self.push();
    }

    /// Tries again after a failure.
    pub fn retry(&mut self) {
        if self.told.as_ref() != Some(&self.wanted) {
            self.push();
        }
    }

    fn push(&mut self) {
        match write_and_configure(&self.cfg, &self.instance, &self.wanted) {
            Ok(()) => {
                let list: Vec<String> = self.wanted.iter().map(IpAddr::to_string).collect();
                tracing::info!(announced = %list.join(","), "BGP announcements updated");
                self.told = Some(self.wanted.clone());
                self.last_error = None;
            }
            Err(e) => {
                let e = format!("{e:#}");
                if self.last_error.as_deref() != Some(&e) {
                    tracing::error!(error = %e, "BGP announcements not updated; retrying");
                }
                self.told = None;
                self.last_error = Some(e);
            }
        }
    }
}

/// Writes the routes file (atomically: a new file renamed over the old) and has BIRD read it.
pub fn write_and_configure(
    cfg: &Bgp,
    instance: &str,
    addrs: &BTreeSet<IpAddr>,
) -> anyhow::Result<()> {
    let path = &cfg.routes_file;
    let tmp: PathBuf = path.with_extension("lb-tmp");
    std::fs::write(&tmp, render(instance, addrs))
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
    bird_command(&cfg.bird_socket, "configure")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_routes_file_has_both_families_and_only_their_routes() {
        let addrs: BTreeSet<IpAddr> = ["198.19.0.100", "fd00:19::100", "198.19.0.101"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let f = render("edge-1", &addrs);
        assert!(f.contains("protocol static lb_edge_1_ipv4 {\n  ipv4;\n  route 198.19.0.100/32 blackhole;\n  route 198.19.0.101/32 blackhole;\n}"), "{f}");
        assert!(
            f.contains(
                "protocol static lb_edge_1_ipv6 {\n  ipv6;\n  route fd00:19::100/128 blackhole;\n}"
            ),
            "{f}"
        );
        // Nothing to announce: both protocols stay, empty (BIRD then withdraws).
        let empty = render("edge-1", &BTreeSet::new());
        assert!(
            empty.contains("protocol static lb_edge_1_ipv4 {\n  ipv4;\n}"),
            "{empty}"
        );
    }

    #[test]
    fn replies_are_read_to_their_last_line_and_errors_are_errors() {
        let ok = "0002-Reading configuration from /etc/bird.conf\n0003 Reconfigured\n";
        assert_eq!(
            read_reply(&mut ok.as_bytes()).unwrap(),
            "Reading configuration from /etc/bird.conf\nReconfigured"
        );
        let cont = "1000-BIRD 2.0.12\n Router ID is 1.2.3.4\n0000 \n";
        assert!(
            read_reply(&mut cont.as_bytes())
                .unwrap()
                .contains("Router ID")
        );
        let err = "0002-Reading configuration from /etc/bird.conf\n8002 /etc/lb-vips.conf:3:1 syntax error\n";
        let e = read_reply(&mut err.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("syntax error"), "{e}");
        assert!(read_reply(&mut "0002-cut".as_bytes()).is_err());
    }
}
