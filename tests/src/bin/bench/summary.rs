//! The targets at a glance: each section records every target it checks, as it checks it,
//! and the report opens with the list.
use std::sync::Mutex;

struct Target {
    what: String,
    goal: String,
    measured: String,
    met: bool,
    /// What bounds it, with this run's numbers, where a section could say.
    bound: Option<String>,
}

static TARGETS: Mutex<Vec<Target>> = Mutex::new(Vec::new());

/// Records whether `what` met `goal` in this run (`measured`), and returns the tick the
/// section prints next to it.
pub fn check(what: &str, goal: &str, measured: String, met: bool) -> &'static str {
    TARGETS.lock().expect("targets").push(Target {
        what: what.to_string(),
        goal: goal.to_string(),
        measured,
        met,
        bound: None,
    });
    if met { "✓" } else { "✗ missed" }
}

/// Says what bounds the target `what` recorded before, in this run: the report lists it under
/// the table if the target was missed.
pub fn bound(what: &str, text: String) {
    let mut targets = TARGETS.lock().expect("targets");
    if let Some(t) = targets.iter_mut().rev().find(|t| t.what == what) {
        t.bound = Some(text);
    }
}

/// The table of every target recorded so far, in the order the sections checked them.
pub fn table() -> String {
    let targets = TARGETS.lock().expect("targets");
    let met = targets.iter().filter(|t| t.met).count();
    let mut out = format!(
        "## Targets at a glance\n\n{met} of {} met in this run; each section below says what bounds the ones missed. Ticks near a target move from run to run on this machine (other guests share the host).\n\n| what | target | this run | |\n|---|---|---|---|\n",
        targets.len()
    );
    for t in targets.iter() {
        out += &format!(
            "| {} | {} | {} | {} |\n",
            t.what,
            t.goal,
            t.measured,
            if t.met { "✓" } else { "✗ missed" }
        );
    }
    let bounds: Vec<String> = targets
        .iter()
        .filter(|t| !t.met)
        .filter_map(|t| {
            let b = t.bound.as_ref()?;
            Some(format!(
                "- {} ({}, target {}): {b}\n",
                t.what, t.measured, t.goal
            ))
        })
        .collect();
    if !bounds.is_empty() {
        out += "\nWhat bounds the misses, measured in this run (the sections below have the details):\n\n";
        out += &bounds.concat();
    }
    out + "\n"
}

#[cfg(test)]
mod tests {
    use super::{bound, check, table};

    #[test]
    fn the_table_says_what_bounds_a_missed_target_and_nothing_for_a_met_one() {
        assert_eq!(check("fast", "≤ 1×", "0.5×".into(), true), "✓");
        assert_eq!(check("slow", "≤ 1×", "2.0×".into(), false), "✗ missed");
        bound("fast", "never shown".into());
        bound("slow", "the floor is 1.9× here.".into());
        bound("not checked", "dropped".into());
        let t = table();
        assert!(t.contains("1 of 2 met"), "{t}");
        assert!(
            t.contains("- slow (2.0×, target ≤ 1×): the floor is 1.9× here.\n"),
            "{t}"
        );
        assert!(!t.contains("never shown") && !t.contains("dropped"), "{t}");
    }
}
