//! Both crates' modules import each other in no cycle. In the agent each module owns its
//! concern and the edges (api, capture, cli) sit on top of the core; in the data path each
//! step of the packet's way stands on a ground floor (verdict, packet, wire, csum, mem) and none
//! imports the module that walks the way (`way`).
use std::collections::{BTreeMap, BTreeSet};

/// The top-level modules `text` names: `crate::x` paths and the names of `use crate::{...}`,
/// outside comments.
fn uses(text: &str) -> BTreeSet<String> {
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let text = code.as_str();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Names at the group's own depth, each after `{` or `,`.
            let (mut depth, mut start) = (1, true);
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 1 => break,
                    '}' => depth -= 1,
                    ',' if depth == 1 => start = true,
                    c if c.is_whitespace() => {}
                    _ if start && depth == 1 => {
                        out.insert(ident(&group[j..]));
                        start = false;
                    }
                    _ => {}
                }
            }
        } else {
            out.insert(ident(rest));
        }
    }
    out
}

/// Each top-level module of the crate at `src` (relative to the workspace) and the modules it
/// imports; `skip` are not modules of the graph (entry files).
fn graph(src: &str, skip: &[&str]) -> BTreeMap<String, BTreeSet<String>> {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(src);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut dirs = vec![src.clone()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
                continue;
            }
            let rel = p.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
            let module = rel.split('/').next().unwrap().trim_end_matches(".rs");
            if skip.contains(&module) || !rel.ends_with(".rs") {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            // Tests may reach anywhere.
            let code = text.split("#[cfg(test)]").next().unwrap();
            let deps = uses(code)
                .into_iter()
                .filter(|m| m != module && !m.is_empty());
            graph.entry(module.to_string()).or_default().extend(deps);
        }
    }
    graph
}

/// Panics with the first cycle found: a module that reaches itself through others.
fn assert_acyclic(graph: &BTreeMap<String, BTreeSet<String>>) {
    for start in graph.keys() {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<(String, Vec<String>)> = vec![(start.clone(), vec![start.clone()])];
        while let Some((m, path)) = stack.pop() {
            for d in graph.get(&m).into_iter().flatten() {
                assert!(d != start, "import cycle: {} -> {d}", path.join(" -> "));
                if seen.insert(d.clone()) {
                    let mut p = path.clone();
                    p.push(d.clone());
                    stack.push((d.clone(), p));
                }
            }
        }
    }
}

#[test]
fn the_agents_modules_import_each_other_in_no_cycle() {
    let g = graph("lb-userspace/src", &["lib", "main"]);
    assert!(g.len() > 15, "{g:?}");
    assert!(g["agent"].contains("api"), "{g:?}");
    assert_acyclic(&g);
}

#[test]
fn the_data_paths_steps_stand_on_a_ground_floor() {
    // The library's modules; the binaries (the two objects' entry points) stand on top.
    let g = graph("lb-ebpf/src", &["lib", "main", "bin"]);
    assert!(g.len() > 10 && g["parse"].contains("verdict"), "{g:?}");
    for (m, deps) in &g {
        assert!(!deps.contains("way"), "{m} imports the way that calls it");
    }
    const FLOOR: [&str; 5] = ["verdict", "packet", "wire", "csum", "mem"];
    for floor in FLOOR {
        let steps: Vec<&String> = g[floor]
            .iter()
            .filter(|d| !FLOOR.contains(&d.as_str()))
            .collect();
        assert!(steps.is_empty(), "{floor} stands on {steps:?}");
    }
    assert_acyclic(&g);
}

#[test]
fn names_in_use_groups_are_found() {
    let text = "use crate::{\n    api::{Answer, Command},\n    capture,\n    state::{self, Change},\n};\nlet x = crate::metrics::render(s);";
    let got: Vec<String> = uses(text).into_iter().collect();
    assert_eq!(got, ["api", "capture", "metrics", "state"]);
}
