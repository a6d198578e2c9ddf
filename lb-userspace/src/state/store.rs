//! The runtime changes on disk: a snapshot (the compacted changes) and a journal of the changes
//! since, one JSON line each. The snapshot names its journal (`changes.journal.N`): a new
//! snapshot starts a new, empty journal, and its rename is the one moment the change takes
//! effect, so a crash at any point leaves one consistent pair (never a journal replayed twice). A change is acknowledged once its line is written and fsync'd;
//! when the journal holds [`JOURNAL_MAX`] lines the caller compacts, and the snapshot is
//! rewritten and the journal emptied. So what is on disk, and what a start reads, is bounded by
//! the keys changed plus one journal, not by history.
//!
//! Every file is opened without following symlinks (`O_NOFOLLOW`: a symlink planted at a
//! state file's name is an error, never a way to write elsewhere), created with mode 0600,
//! written whole to a fresh temporary file (`O_EXCL`, a unique name), fsync'd, renamed into
//! place and the directory fsync'd. A temporary file whose write failed (no space) is removed.
//! A state directory that another user, or anyone but its owner, can write is refused.
use std::{
    fs::{File, OpenOptions},
    io::Write,
    os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::Change;

/// Journal lines after which the changes are compacted into a new snapshot.
pub const JOURNAL_MAX: usize = 64;

const SNAPSHOT: &str = "changes.json";
const JOURNAL: &str = "changes.journal.";
/// What releases before the journal kept (the whole list, rewritten on every change).
const LEGACY: &str = "runtime-changes.json";

#[derive(Serialize, Deserialize)]
struct Snapshot {
    version: u32,
    /// The generation of the journal that continues this snapshot.
    journal: u64,
    changes: Vec<Change>,
}

/// The state directory, opened.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    /// The journal's generation.
    generation: u64,
    /// Lines in the journal.
    journal: usize,
}

fn journal_name(generation: u64) -> String {
    format!("{JOURNAL}{generation}")
}

/// Removes what a crash may leave: temporary files, and journals of other generations.
fn tidy(dir: &Path, generation: u64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let stale = (name.starts_with(".changes") && name.ends_with(".tmp"))
            || (name.starts_with(JOURNAL) && name != journal_name(generation));
        if stale {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Refuses a directory that others can write (or that is not the agent's own).
fn check_dir(dir: &Path) -> anyhow::Result<()> {
    let m = std::fs::metadata(dir).with_context(|| format!("reading {}", dir.display()))?;
    if !m.is_dir() {
        bail!("state directory {} is not a directory", dir.display());
    }
    // Safety: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if m.uid() != me {
        bail!(
            "state directory {} belongs to uid {}, not to this agent's (uid {me}): refusing it",
            dir.display(),
            m.uid()
        );
    }
    if m.mode() & 0o022 != 0 {
        bail!(
            "state directory {} can be written by others (mode {:o}): refusing it (chmod go-w {})",
            dir.display(),
            m.mode() & 0o7777,
            dir.display()
        );
    }
    Ok(())
}

fn open_nofollow(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Reads `path` if it exists, without following a symlink there.
fn read(path: &Path) -> anyhow::Result<Option<String>> {
    match open_nofollow(path) {
        Ok(mut f) => {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut f, &mut s)
                .with_context(|| format!("reading {}", path.display()))?;
            Ok(Some(s))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            bail!("{} is a symlink: refusing to follow it", path.display())
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))
}

/// Writes `bytes` to `dir/name` atomically: a fresh temporary file, fsync'd, renamed.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let (tmp, mut f) = loop {
        let tmp = dir.join(format!(
            ".{name}.{}.{}.tmp",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        // O_EXCL fails on any name that exists, a symlink included: never written through.
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
        {
            Ok(f) => break (tmp, f),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("creating {}", tmp.display())),
        }
    };
    let written = f
        .write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))
        .and_then(|()| {
            std::fs::rename(&tmp, dir.join(name))
                .with_context(|| format!("renaming {} to {name}", tmp.display()))
        });
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    sync_dir(dir)
}

impl Store {
    /// Opens `dir` (made, mode 0700, if missing) and reads the changes kept there: the
    /// snapshot, then the journal. A last journal line cut short (the agent killed while
    /// writing it) was never acknowledged and is dropped.
    pub fn open(dir: &Path) -> anyhow::Result<(Store, Vec<Change>)> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        check_dir(dir)?;
        let (generation, mut changes) = match read(&dir.join(SNAPSHOT))? {
            Some(text) => {
                let s: Snapshot = serde_json::from_str(&text)
                    .with_context(|| format!("reading {}", dir.join(SNAPSHOT).display()))?;
                (s.journal, s.changes)
            }
            None => match read(&dir.join(LEGACY))? {
                Some(text) => (
                    0,
                    serde_json::from_str(&text)
                        .with_context(|| format!("reading {}", dir.join(LEGACY).display()))?,
                ),
                None => (0, Vec::new()),
            },
        };
        tidy(dir, generation);
        let path = dir.join(journal_name(generation));
        let text = read(&path)?.unwrap_or_default();
        let mut journal = 0;
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        for (i, line) in lines.iter().enumerate() {
            match serde_json::from_str::<Change>(line.trim_end()) {
                Ok(c) => {
                    changes.push(c);
                    journal += 1;
                }
                Err(_) if i + 1 == lines.len() && !line.ends_with('\n') => {
                    tracing::warn!(file = %path.display(), "dropping a journal line cut short (never acknowledged)");
                }
                Err(e) => bail!("{}:{}: {e}", path.display(), i + 1),
            }
        }
        Ok((
            Store {
                dir: dir.to_path_buf(),
                generation,
                journal,
            },
            changes,
        ))
    }

    /// Lines in the journal since the last snapshot.
    pub fn journal_len(&self) -> usize {
        self.journal
    }

    /// Appends one change to the journal and fsyncs it: once this returns, it survives a crash.
    pub fn append(&mut self, c: &Change) -> anyhow::Result<()> {
        check_dir(&self.dir)?;
        let path = self.dir.join(journal_name(self.generation));
        let created = !path.exists();
        let mut f = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| {
                if e.raw_os_error() == Some(libc::ELOOP) {
                    anyhow::anyhow!("{} is a symlink: refusing to follow it", path.display())
                } else {
                    anyhow::Error::new(e).context(format!("opening {}", path.display()))
                }
            })?;
        let mut line = serde_json::to_vec(c)?;
        line.push(b'\n');
        f.write_all(&line)
            .and_then(|()| f.sync_data())
            .with_context(|| format!("writing {}", path.display()))?;
        if created {
            sync_dir(&self.dir)?;
        }
        self.journal += 1;
        Ok(())
    }

    /// Makes `changes` the snapshot, continued by a new, empty journal.
    pub fn rewrite(&mut self, changes: &[Change]) -> anyhow::Result<()> {
        check_dir(&self.dir)?;
        let next = self.generation + 1;
        write_atomic(&self.dir, &journal_name(next), b"")?;
        let snap = serde_json::to_vec(&Snapshot {
            version: 1,
            journal: next,
            changes: changes.to_vec(),
        })?;
        // The commit point: from this rename on, the new pair is the state.
        write_atomic(&self.dir, SNAPSHOT, &snap)?;
        self.generation = next;
        self.journal = 0;
        tidy(&self.dir, next);
        let legacy = self.dir.join(LEGACY);
        if std::fs::symlink_metadata(&legacy).is_ok() {
            std::fs::remove_file(&legacy)
                .with_context(|| format!("removing {}", legacy.display()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
