//! The targets at a glance: each section records every target it checks, as it checks it,
//! and the report opens with the list.
use std::sync::Mutex;

struct Target {
    what: String,
    goal: String,
    measured: String,
    met: bool,
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
    });
    if met { "✓" } else { "✗ missed" }
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
    out + "\n"
}
