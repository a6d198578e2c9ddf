//! Flap damping: a backend's penalty for changing state, and the hold it earns.
use std::time::{Duration, Instant};

/// Flap damping, after BGP's route-flap damping (RFC 2439): every change of a backend's state
/// adds [`PENALTY`], and the penalty halves every [`HALF_LIFE`]. Past [`SUPPRESS`] (three
/// changes in quick succession) the backend is held out of the ring, whatever its checks say,
/// until the penalty decays under [`REUSE`]; a backend that keeps flapping while held keeps
/// adding to it, so the hold grows with the flapping, up to the [`CEILING`] (about 40 s).
pub(super) const PENALTY: f64 = 1000.0;
pub(super) const SUPPRESS: f64 = 2500.0;
pub(super) const REUSE: f64 = 800.0;
pub(super) const CEILING: f64 = 16_000.0;
pub(super) const HALF_LIFE: Duration = Duration::from_secs(10);

/// A backend's flap penalty.
#[derive(Debug, Clone)]
pub(super) struct Damping {
    pub(super) penalty: f64,
    pub(super) at: Instant,
    pub(super) held: bool,
}

impl Damping {
    pub(super) fn decayed(&self, now: Instant) -> f64 {
        let halves = now.duration_since(self.at).as_secs_f64() / HALF_LIFE.as_secs_f64();
        self.penalty * 0.5f64.powf(halves)
    }

    /// A change of state; whether it put the backend on hold.
    pub(super) fn change(&mut self, now: Instant) -> bool {
        self.penalty = (self.decayed(now) + PENALTY).min(CEILING);
        self.at = now;
        let newly = !self.held && self.penalty >= SUPPRESS;
        self.held |= newly;
        newly
    }

    /// How long the hold lasts from `now` if nothing changes.
    pub(super) fn left(&self, now: Instant) -> Duration {
        let p = self.decayed(now);
        if !self.held || p < REUSE {
            return Duration::ZERO;
        }
        HALF_LIFE.mul_f64((p / REUSE).log2())
    }
}
