//! Following the config file without ever applying half of it. inotify (through `notify`)
//! says when the file is written, closed after writing, or replaced; a change is applied only
//! once the file has been closed and left alone for [`SETTLE`]. A file written in place in
//! two goes (an editor's save, `cat > lb.toml`, a tool writing in pieces) is applied once,
//! whole; a file replaced atomically (write elsewhere, rename over) is applied after the same
//! short wait. A slow poll of the file's size and time stands in where inotify says nothing
//! (a network filesystem, a watch that could not be set).
use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime},
};

use notify::{
    EventKind, RecursiveMode, Watcher,
    event::{AccessKind, AccessMode, ModifyKind},
};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

/// How long the file must be left alone, after it was last closed or replaced.
pub const SETTLE: Duration = Duration::from_secs(1);
/// A writer that holds the file open this long without writing is taken as done.
const STALLED: Duration = Duration::from_secs(10);

/// What happened to the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Touch {
    /// Written to, and still open.
    Written,
    /// Closed after writing, created, renamed into place or removed.
    Closed,
}

/// Whether a change is waiting, and since when the file has been quiet.
#[derive(Debug, Default)]
pub struct Settle {
    pending: bool,
    writing: bool,
    last: Option<Instant>,
}

impl Settle {
    pub fn touch(&mut self, t: Touch, now: Instant) {
        self.pending = true;
        self.writing = t == Touch::Written;
        self.last = Some(now);
    }

    /// Whether to apply the file now; a yes clears the change.
    pub fn due(&mut self, now: Instant) -> bool {
        let quiet = self.last.map_or(Duration::ZERO, |l| now.duration_since(l));
        let due = self.pending && quiet >= if self.writing { STALLED } else { SETTLE };
        if due {
            self.pending = false;
        }
        due
    }
}

/// The file's identity for the fallback poll: modification time and length.
pub fn file_stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// What inotify says about the config file, as [`Touch`]es. The watch is on the file's
/// directory, so that a file replaced by a rename is still followed.
pub struct FileEvents {
    _watcher: notify::RecommendedWatcher,
    pub touches: UnboundedReceiver<Touch>,
}

fn touch_of(kind: &EventKind) -> Option<Touch> {
    match kind {
        EventKind::Modify(ModifyKind::Data(_)) => Some(Touch::Written),
        EventKind::Access(AccessKind::Close(AccessMode::Write))
        | EventKind::Create(_)
        | EventKind::Modify(ModifyKind::Name(_))
        | EventKind::Remove(_) => Some(Touch::Closed),
        _ => None,
    }
}

impl FileEvents {
    pub fn watch(file: &Path) -> notify::Result<FileEvents> {
        let file: PathBuf = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
        let dir = file.parent().unwrap_or(Path::new("/")).to_path_buf();
        let (tx, touches): (UnboundedSender<Touch>, _) = unbounded_channel();
        let name = file.file_name().map(|n| n.to_os_string());
        let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
            let Ok(ev) = ev else { return };
            let ours = ev
                .paths
                .iter()
                .any(|p| p.file_name().map(|n| n.to_os_string()) == name);
            if let (true, Some(t)) = (ours, touch_of(&ev.kind)) {
                let _ = tx.send(t);
            }
        })?;
        watcher.watch(&dir, RecursiveMode::NonRecursive)?;
        Ok(FileEvents {
            _watcher: watcher,
            touches,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_written_in_two_goes_is_due_once_after_it_settles() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut s = Settle::default();
        assert!(!s.due(ms(0)), "nothing happened");
        // The first half, closed; the second 300 ms later.
        s.touch(Touch::Written, ms(0));
        s.touch(Touch::Closed, ms(1));
        assert!(!s.due(ms(300)));
        s.touch(Touch::Written, ms(301));
        assert!(!s.due(ms(1200)), "still being written");
        s.touch(Touch::Closed, ms(302));
        assert!(!s.due(ms(1200)), "not settled yet");
        assert!(s.due(ms(1302)));
        assert!(!s.due(ms(5000)), "applied once");
        // A writer that stalls with the file open is taken as done after a long while.
        s.touch(Touch::Written, ms(6000));
        assert!(!s.due(ms(8000)));
        assert!(s.due(ms(16000)));
    }

    #[tokio::test]
    async fn inotify_reports_writes_closes_and_renames_of_the_file_only() {
        let dir = std::env::temp_dir().join(format!("lb-settle-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("lb.toml");
        std::fs::write(&file, "a").unwrap();
        let mut ev = FileEvents::watch(&file).unwrap();
        std::fs::write(dir.join("other.toml"), "x").unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            ev.touches.try_recv().is_err(),
            "another file's events are not ours"
        );
        std::fs::write(&file, "b").unwrap();
        async fn next(ev: &mut FileEvents) -> Option<Touch> {
            tokio::time::timeout(Duration::from_secs(2), ev.touches.recv())
                .await
                .ok()
                .flatten()
        }
        let mut seen = Vec::new();
        while let Some(t) = next(&mut ev).await {
            seen.push(t);
            if t == Touch::Closed {
                break;
            }
        }
        assert_eq!(seen.last(), Some(&Touch::Closed), "{seen:?}");
        assert!(seen.contains(&Touch::Written), "{seen:?}");
        // Replaced by a rename: still followed.
        std::fs::write(dir.join("new.tmp"), "c").unwrap();
        while ev.touches.try_recv().is_ok() {}
        std::fs::rename(dir.join("new.tmp"), &file).unwrap();
        assert_eq!(next(&mut ev).await, Some(Touch::Closed));
        std::fs::write(&file, "d").unwrap();
        assert!(
            next(&mut ev).await.is_some(),
            "the renamed file is followed too"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
