//! Running the modes of a topology interleaved, round by round, and the agent as a mode.
use lb::dataplane::{Dataplane, Options};
use lb_tests::{Netns, TempDir, lab};

use super::{Rates, rates};

/// What a mode leaves set up on the balancer while it runs (programs, rules, an agent);
/// dropping it tears the mode down.
pub(super) type Up = Box<dyn std::any::Any>;

/// How many of the last rounds also time the balancer's program.
const PROG_ROUNDS: usize = 3;

/// A mode: its name, and how to set it up.
pub(super) type Mode<'a> = (&'a str, &'a mut dyn FnMut() -> Up);

/// Runs the modes interleaved: each round, every mode in turn (the order rotated by one each
/// round) is set up, measured with one burst and torn down, so that the machine's drift between rounds moves every mode alike
/// (ratios are then taken round by round). In the last three rounds, where `prog` reads the
/// balancer program's statistics, each mode gets one more burst with the kernel timing
/// every run (which costs a little, so not in the measured bursts); the program's time per
/// packet is the median of those three.
pub(super) fn interleaved(
    runs: usize,
    modes: &mut [Mode],
    mut burst: impl FnMut(&str) -> f64,
    mut prog: Option<&mut dyn FnMut() -> Option<(u64, u64)>>,
) -> Vec<Rates> {
    let mut rounds: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    let mut prog_ns: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    let stats_was = lb_tests::sh("sysctl -n kernel.bpf_stats_enabled");
    for round in 0..runs {
        // Each round starts one mode further on, so that no mode always comes first (after
        // the last round's teardown) or always follows the same one.
        for k in 0..modes.len() {
            let i = (k + round) % modes.len();
            let (what, up) = &mut modes[i];
            let _up = up();
            let r = burst(what);
            assert!(
                r > 0.0,
                "{what}: nothing came back to the sink: the harness is broken"
            );
            rounds[i].push(r);
            if round + PROG_ROUNDS >= runs
                && let Some(prog) = prog.as_mut()
            {
                lb_tests::sh("sysctl -qw kernel.bpf_stats_enabled=1");
                let before = prog();
                burst(what);
                if let (Some((t0, c0)), Some((t1, c1))) = (before, prog())
                    && c1 > c0
                {
                    prog_ns[i].push((t1 - t0) as f64 / (c1 - c0) as f64);
                }
                lb_tests::sh(&format!(
                    "sysctl -qw kernel.bpf_stats_enabled={}",
                    stats_was.trim()
                ));
            }
        }
    }
    rounds
        .into_iter()
        .zip(prog_ns)
        .map(|(v, mut p)| {
            p.sort_by(|a, b| a.total_cmp(b));
            Rates {
                prog_ns: p.get(p.len() / 2).copied(),
                ..rates(v)
            }
        })
        .collect()
}

/// The agent on the balancer, configured as an operator would, while this lives; it must
/// have sent frames out with `outcome` (`tx`, `redirect`) when it goes. Going: stopped, and
/// the links it leaves pinned removed, so that the next mode can attach; its maps stay pinned
/// (the next agent takes them up, flows and all), since freeing a table of a million flows is
/// kernel work that would land in the next mode's burst. [`detach`] removes them at the end.
pub(super) struct Agent {
    proc: lb_tests::Proc,
    sock: std::path::PathBuf,
    links: Vec<std::path::PathBuf>,
    outcome: &'static str,
}

impl Agent {
    pub(super) fn start(
        ns: &Netns,
        cfg: &str,
        tmp: &TempDir,
        interfaces: &[&str],
        outcome: &'static str,
    ) -> Self {
        let (proc, _) = lab::start_agent(ns, cfg, tmp);
        Agent {
            proc,
            sock: tmp.path("lb.sock"),
            links: interfaces
                .iter()
                .map(|i| tmp.pin_dir().join("links").join(i))
                .collect(),
            outcome,
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let stats = lab::stats(&self.sock);
            assert!(
                stats.outcome(self.outcome) > 0,
                "lb sent nothing out ({}): {stats:?}",
                self.outcome
            );
        }
        self.proc.stop();
        for link in &self.links {
            let _ = std::fs::remove_file(link);
        }
    }
}

/// The agent on the balancer's `l0` (configuration `cfg`, state in `tmp`), with `object`'s
/// `program` (`xdp_lb` or a variant) loaded with `opts` (on the agent's pinned maps) swapped
/// onto its link, as
/// `lb capture` swaps its program in. Dropped, the agent goes first (its counters must show
/// frames sent, then its link pins go), then this program, and with it the link.
pub(super) fn agent_swapped(
    lb_ns: &Netns,
    cfg: &str,
    tmp: &TempDir,
    object: &[u8],
    program: &'static str,
    opts: Options,
) -> (Agent, Dataplane) {
    let agent = Agent::start(lb_ns, cfg, tmp, &["l0"], "tx");
    let dp = lb_ns.run(|| {
        let opts = Options {
            pin_dir: Some(tmp.pin_dir()),
            ..opts
        };
        let mut dp = Dataplane::load_with(object, program, &opts)
            .unwrap_or_else(|e| panic!("load {program} to swap in: {e}"));
        dp.take_over(&["l0".to_string()], &tmp.pin_dir())
            .expect("swap it onto the agent's link");
        dp
    });
    super::pin_napi(lb_ns, "l0", 1);
    (agent, dp)
}

/// `lb detach` for the agent whose config is in `tmp`: its pinned maps go.
pub(super) fn detach(tmp: &TempDir) {
    let cfg = tmp.path("lb.toml");
    let (code, _, err) = lab::cli(&["detach", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 0, "lb detach: {err}");
}
