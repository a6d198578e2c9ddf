//! Waiting until every program run that may have read a map before now has ended: the kernel's
//! RCU grace period (XDP programs run inside RCU read-side sections). User space has no call
//! for it, but one it can cause: an update of an array-of-maps entry returns only after
//! `synchronize_rcu()`, so that its caller knows no program still uses the old inner map. A
//! private one-entry array of maps, updated with a private inner map, is that wait.
use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use super::sys::{Attr, BPF_MAP_CREATE, BPF_MAP_UPDATE_ELEM, bpf};

const BPF_MAP_TYPE_ARRAY: u32 = 2;
const BPF_MAP_TYPE_ARRAY_OF_MAPS: u32 = 12;

/// The maps the wait updates.
#[derive(Debug)]
pub struct Grace {
    outer: OwnedFd,
    inner: OwnedFd,
}

/// A map of `map_type` with 4-byte keys and values and one entry.
fn create(map_type: u32, inner: Option<&OwnedFd>) -> io::Result<OwnedFd> {
    let mut a = Attr::new();
    // map_type, key_size, value_size, max_entries, map_flags, inner_map_fd.
    a.0[..4].copy_from_slice(&[map_type, 4, 4, 1]);
    a.0[5] = inner.map_or(0, |fd| fd.as_raw_fd() as u32);
    let fd = bpf(BPF_MAP_CREATE, &a)?;
    // Safety: the kernel returned a new descriptor, owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

impl Grace {
    pub fn new() -> io::Result<Self> {
        let inner = create(BPF_MAP_TYPE_ARRAY, None)?;
        let outer = create(BPF_MAP_TYPE_ARRAY_OF_MAPS, Some(&inner))?;
        Ok(Grace { outer, inner })
    }

    /// Returns once every program run that began before the call has ended.
    pub fn wait(&self) -> io::Result<()> {
        let key = 0u32;
        let value = self.inner.as_raw_fd() as u32;
        let mut a = Attr::new();
        // map_fd, pad, key (pointer), value (pointer), flags 0 (BPF_ANY).
        a.0[0] = self.outer.as_raw_fd() as u32;
        a.ptr(2, &key);
        a.ptr(4, &value);
        bpf(BPF_MAP_UPDATE_ELEM, &a).map(|_| ())
    }
}

/// Returns once every program run that began before the call has ended (a fresh [`Grace`]'s
/// wait), for the data path's callers.
pub(super) fn wait_grace() -> super::Result<()> {
    Grace::new().and_then(|g| g.wait()).map_err(|e| {
        super::DataplaneError::Limit(format!("waiting for running programs to end: {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[ignore = "needs CAP_BPF: cargo xtask test runs it as root"]
    fn the_wait_returns_after_a_grace_period() {
        let g = Grace::new().expect("creating the maps");
        let t = std::time::Instant::now();
        for _ in 0..3 {
            g.wait().expect("waiting");
        }
        // A grace period is never instant: an update that did not wait would take a few µs.
        eprintln!("three grace periods: {:?}", t.elapsed());
        assert!(t.elapsed() >= std::time::Duration::from_micros(100));
    }
}
