//! Rules shared by the checks: which addresses can be a backend or a source, the key a span
//! of the file stands under, and the known key nearest a misspelt one.
use std::{net::IpAddr, ops::Range};

/// A kind of address: what it is called, and the test for it.
type Kind = (&'static str, fn(&IpAddr) -> bool);

/// Kinds of address that can never be a backend or an outer source, and why.
pub(super) const UNUSABLE: &[Kind] = &[
    ("the unspecified address", IpAddr::is_unspecified),
    (
        "a loopback address (packets to it never leave this host)",
        IpAddr::is_loopback,
    ),
    ("a multicast address", IpAddr::is_multicast),
    (
        "the broadcast address",
        |ip| matches!(ip, IpAddr::V4(a) if a.is_broadcast()),
    ),
];

/// Why `ip` can be no host's unicast address, if it cannot.
pub(super) fn unusable(ip: &IpAddr) -> Option<&'static str> {
    UNUSABLE.iter().find(|(_, is)| is(ip)).map(|(why, _)| *why)
}

/// The dotted key the text at `span` is the value of: its table's header, then the key before
/// `=` on its line (`vip.backend.weight`).
pub(super) fn key_at(text: &str, span: &Range<usize>) -> Option<String> {
    let at = span.start.min(text.len());
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line = &text[line_start..];
    let line = &line[..line.find('\n').unwrap_or(line.len())];
    let (key, _) = line.split_once('=')?;
    let key = key.trim().trim_matches('"');
    if key.is_empty() || key.starts_with('[') || key.starts_with('#') {
        return None;
    }
    let table = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    Some(match table {
        Some(t) if !t.is_empty() => format!("{t}.{key}"),
        _ => key.to_string(),
    })
}

fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// For serde's "unknown field `x`, expected one of `a`, `b`": the known field nearest `x`,
/// if one is near enough to be what was meant.
pub(super) fn suggestion(msg: &str) -> Option<String> {
    let unknown = msg.split("unknown field `").nth(1)?.split('`').next()?;
    let known = msg.split("expected ").nth(1)?;
    known
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|k| (distance(unknown, k), k))
        // Near in spelling, or one a prefix of the other (`interval_ms` for `interval`).
        .filter(|(d, k)| {
            *d <= 2.max(k.len() / 3) || unknown.starts_with(k) || k.starts_with(unknown)
        })
        .min()
        .map(|(_, k)| k.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_backend_or_source_can_be_a_non_unicast_address() {
        for (ip, why) in [
            ("0.0.0.0", Some("unspecified")),
            ("::", Some("unspecified")),
            ("127.0.0.1", Some("loopback")),
            ("127.8.9.10", Some("loopback")),
            ("::1", Some("loopback")),
            ("224.0.0.5", Some("multicast")),
            ("ff02::1", Some("multicast")),
            ("255.255.255.255", Some("broadcast")),
            ("198.18.0.11", None),
            ("fd00:18::11", None),
        ] {
            let got = unusable(&ip.parse().unwrap());
            match why {
                None => assert_eq!(got, None, "{ip}"),
                Some(w) => assert!(got.is_some_and(|g| g.contains(w)), "{ip}: {got:?}"),
            }
        }
    }

    #[test]
    fn a_span_names_its_key_under_its_table() {
        let text = "[agent]\ninterfaces = [\"eth0\"]\n\n[[vip]]\nname = \"web\"\n\n[[vip.backend]]\nweight = \"heavy\"\n";
        let at = text.find("\"heavy\"").unwrap();
        assert_eq!(
            key_at(text, &(at..at + 7)).as_deref(),
            Some("vip.backend.weight")
        );
        let at = text.find("[\"eth0\"]").unwrap();
        assert_eq!(
            key_at(text, &(at..at + 1)).as_deref(),
            Some("agent.interfaces")
        );
        assert_eq!(key_at(text, &(0..1)), None, "a table header is no key");
    }

    #[test]
    fn a_misspelt_key_gets_the_nearest_known_one() {
        let msg = "unknown field `adress`, expected one of `name`, `address`, `protocol`";
        assert_eq!(suggestion(msg).as_deref(), Some("address"));
        let msg = "unknown field `interval_ms`, expected one of `kind`, `interval`, `timeout`";
        assert_eq!(suggestion(msg).as_deref(), Some("interval"));
        let msg = "unknown field `zzzzzz`, expected one of `name`, `address`";
        assert_eq!(suggestion(msg), None, "nothing near enough");
        assert_eq!(suggestion("invalid type: string"), None);
    }
}
