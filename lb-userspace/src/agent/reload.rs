//! Reloading the config file, and the account of reloads: how many applied and refused,
//! the last refusal, the last success. An invalid file is refused and the running state stays.
use std::time::SystemTime;

use super::sync::Agent;
use crate::config;

/// The account of config reloads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloads {
    pub applied: u64,
    /// Refused: the file did not validate.
    pub refused: u64,
    /// Why the last reload was refused, until one applies.
    pub error: Option<String>,
    /// When the configuration was last loaded successfully (at start or by a reload).
    pub last_ok: SystemTime,
}

impl Default for Reloads {
    fn default() -> Self {
        Reloads {
            applied: 0,
            refused: 0,
            error: None,
            last_ok: SystemTime::now(),
        }
    }
}

impl Reloads {
    pub fn refuse(&mut self, why: String) {
        self.refused += 1;
        self.error = Some(why);
    }

    pub fn apply(&mut self, at: SystemTime) {
        self.applied += 1;
        self.error = None;
        self.last_ok = at;
    }
}

impl Agent {
    /// Reloads the config file; an invalid one is refused and the running state stays.
    pub fn reload(&mut self, why: &str) {
        let file = match config::load(&self.config_path) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(reason = why, error = %e, "config reload refused; running state unchanged");
                self.reloads.refuse(e.to_string());
                return;
            }
        };
        if file.agent.interfaces != self.sources.file.agent.interfaces
            || file.agent.flow_table_size != self.sources.file.agent.flow_table_size
            || file.agent.state_dir != self.sources.file.agent.state_dir
            || file.bgp != self.sources.file.bgp
            || file.etcd != self.sources.file.etcd
        {
            tracing::warn!(
                "agent.interfaces, state_dir, [bgp] and [discovery] take effect at the next start; flow_table_size after lb detach"
            );
        }
        self.sources.file = file;
        self.rebuild_effective();
        for s in &self.skipped {
            tracing::warn!(change = %s, "runtime change no longer applies; skipped");
        }
        self.reloads.apply(SystemTime::now());
        match self.sync(None) {
            Ok(()) => tracing::info!(reason = why, "config reloaded"),
            Err(e) => tracing::error!(error = %format!("{e:#}"), "applying the reloaded config"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_is_shown_until_a_reload_applies() {
        let mut r = Reloads::default();
        let start = r.last_ok;
        r.refuse("lb.toml:3: vip.address: not an address".into());
        r.refuse("lb.toml:4: vip.port: out of range".into());
        assert_eq!((r.applied, r.refused), (0, 2));
        assert_eq!(
            r.error.as_deref(),
            Some("lb.toml:4: vip.port: out of range")
        );
        assert_eq!(r.last_ok, start, "a refusal is not a load");
        let later = start + std::time::Duration::from_secs(5);
        r.apply(later);
        assert_eq!((r.applied, r.refused, r.error.clone()), (1, 2, None));
        assert_eq!(r.last_ok, later);
    }
}
