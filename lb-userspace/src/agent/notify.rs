//! Telling systemd (`Type=notify-reload` or `notify`) where the agent stands, through
//! `$NOTIFY_SOCKET`: ready once the program is attached and the API serves, reloading while a
//! configuration is read, stopping at the end. Without `$NOTIFY_SOCKET` these do nothing.
use sd_notify::NotifyState;

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "telling the service manager");
    }
}

/// The program is attached and the API serves.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A reload begins (systemd 253+ needs the monotonic time with it).
pub fn reloading() {
    let mut states = vec![NotifyState::Reloading];
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        states.push(now);
    }
    send(&states);
}

pub fn stopping() {
    send(&[NotifyState::Stopping]);
}
