//! The config parser against hostile input: arbitrary text, and the README's example with
//! pieces cut, repeated or replaced. It must never panic; a refusal names the file and a line
//! of the text.
use proptest::prelude::*;

use super::parse;

fn example() -> &'static str {
    let readme = include_str!("../../../README.md");
    let start = readme.find("```toml\n").expect("a toml block") + 8;
    let len = readme[start..].find("```").unwrap();
    &readme[start..start + len]
}

/// Pieces a mutation puts in: TOML punctuation, keywords, and values of every kind.
const PIECES: &[&str] = &[
    "=",
    "[",
    "]",
    "[[",
    "]]",
    "\"",
    "'",
    ",",
    "{",
    "}",
    "\n",
    "#",
    ".",
    "-",
    ":",
    "0",
    "1",
    "65537",
    "65536",
    "-1",
    "99999999999999999999",
    "1.5",
    "true",
    "\"1s\"",
    "\"0s\"",
    "\"x\"",
    "\"198.19.0.1:80\"",
    "\"[fd00::1]:80\"",
    "\"fd00::1\"",
    "\"198.18.0.11\"",
    "\"tcp\"",
    "\"udp\"",
    "\"icmp\"",
    "[[vip]]",
    "[[vip.backend]]",
    "[vip.health]",
    "[agent]",
    "name",
    "address",
    "port",
    "weight",
    "ring_size",
    "udp_idle",
    "interval",
    "unknown_key",
    "\u{0}",
    "\u{feff}",
    "é",
];

/// The example with `edits` applied: (position as a fraction of the text, what to do).
fn mutate(edits: &[(f64, u8, usize, usize)]) -> String {
    let mut s = example().to_string();
    for &(at, op, piece, n) in edits {
        let mut i = ((s.len() as f64) * at) as usize;
        while !s.is_char_boundary(i) {
            i -= 1;
        }
        match op % 3 {
            // Cut up to n bytes.
            0 => {
                let mut j = (i + n).min(s.len());
                while !s.is_char_boundary(j) {
                    j -= 1;
                }
                s.replace_range(i..j, "");
            }
            // Put a piece in.
            1 => s.insert_str(i, PIECES[piece % PIECES.len()]),
            // Repeat the line it falls in (a duplicate key, VIP or backend).
            _ => {
                let start = s[..i].rfind('\n').map_or(0, |p| p + 1);
                let end = s[i..].find('\n').map_or(s.len(), |p| i + p + 1);
                let line = s[start..end].to_string();
                s.insert_str(end, &line);
            }
        }
    }
    s
}

fn judged(text: &str) {
    match parse("fuzz.toml", text) {
        Ok(_) => {}
        Err(e) => {
            let lines = text.lines().count().max(1);
            assert!(
                e.line <= lines + 1,
                "line {} of {lines}: {e}\n---\n{text}",
                e.line
            );
            assert!(e.to_string().starts_with("fuzz.toml:"), "{e}");
            assert!(!e.reason.is_empty(), "no reason: {e}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,600}") {
        judged(&text);
    }

    #[test]
    fn a_mutated_example_never_panics(
        edits in proptest::collection::vec((0.0..1.0f64, any::<u8>(), any::<usize>(), 1..40usize), 1..6)
    ) {
        judged(&mutate(&edits));
    }
}
