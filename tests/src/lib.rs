//! The test harness: network namespaces, child processes and a switch fabric behind RAII
//! guards with unique names, so tests clean up when they fail and can run side by side.
//!
//! Addresses come only from 198.18.0.0/15 and fd00::/8; nothing is routed out of the
//! namespaces.
use std::{
    fs::File,
    io::{BufRead, BufReader},
    os::fd::AsRawFd,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

pub mod fixture;
pub mod flood;
pub mod lab;
pub mod life;
pub mod test_object;
pub mod traffic;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Runs a shell command in the root namespace; panics with its output if it fails.
pub fn sh(cmd: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .expect("spawn sh");
    assert!(
        out.status.success(),
        "`{cmd}` failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `lb` binary under test (`LB_BIN`, or the workspace's debug build).
pub fn lb_bin() -> PathBuf {
    std::env::var_os("LB_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/lb"))
}

/// A scratch folder removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!(
            "lbt-{}-{}-{tag}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// A folder on the tests' bpf filesystem for this scratch folder's pins (removed with
    /// it). The agent runs under `ip netns exec`, which gives it its own /sys: pins there
    /// would vanish with the process. This bpffs is mounted in the root mount namespace,
    /// which `ip netns exec` shares.
    pub fn pin_dir(&self) -> PathBuf {
        test_bpffs().join(self.0.file_name().expect("temp dir name"))
    }
}

/// Where the tests' bpf filesystem is mounted (once per machine).
const TEST_BPFFS: &str = "/run/lbt-bpffs";

fn test_bpffs() -> PathBuf {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        if !mounts
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some(TEST_BPFFS))
        {
            sh(&format!(
                "mkdir -p {TEST_BPFFS} && mount -t bpf bpf {TEST_BPFFS}"
            ));
        }
    });
    PathBuf::from(TEST_BPFFS)
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        // Unpinning the links and maps detaches and frees what an agent left behind.
        let pins = test_bpffs().join(self.0.file_name().expect("temp dir name"));
        let _ = std::fs::remove_dir_all(pins);
    }
}

/// A network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(role: &str) -> Self {
        let name = format!(
            "lbt{}-{}-{role}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        sh(&format!(
            "ip netns add {name} && ip -n {name} link set lo up"
        ));
        Netns { name }
    }

    /// Runs `cmd` with `sh -c` inside the namespace; panics if it fails.
    pub fn sh(&self, cmd: &str) -> String {
        sh(&format!(
            "ip netns exec {} sh -c '{}'",
            self.name,
            cmd.replace('\'', r"'\''")
        ))
    }

    /// Runs `f` on a thread that has entered the namespace: sockets it makes and interfaces
    /// it names are the namespace's.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| {
            s.spawn(|| {
                self.enter();
                f()
            })
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
        })
    }

    /// Moves the calling thread into the namespace (setns affects only this thread).
    pub fn enter(&self) {
        let f = File::open(format!("/run/netns/{}", self.name)).expect("open netns");
        let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(
            rc,
            0,
            "setns {}: {}",
            self.name,
            std::io::Error::last_os_error()
        );
    }

    /// Starts a process inside the namespace.
    pub fn spawn(&self, args: &[&str], log: PathBuf) -> Proc {
        let err = File::create(&log).expect("log file");
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .expect("spawn");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Proc {
            child,
            lines: rx,
            log,
            what: args.join(" "),
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A child process, stopped (SIGTERM, then SIGKILL) on drop.
pub struct Proc {
    pub child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    pub log: PathBuf,
    what: String,
}

impl Proc {
    /// Waits for a stdout line starting with `prefix` (the process's readiness signal).
    /// Panics with the process's log if it exits or the time runs out first.
    pub fn wait_for(&mut self, prefix: &str, timeout: Duration) -> String {
        let end = Instant::now() + timeout;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self
                .lines
                .recv_timeout(left.min(Duration::from_millis(200)))
            {
                Ok(l) if l.starts_with(prefix) => return l,
                Ok(_) => {}
                Err(_) => {
                    if let Ok(Some(st)) = self.child.try_wait() {
                        panic!(
                            "`{}` exited ({st}) before {prefix:?}:\n{}",
                            self.what,
                            self.log_text()
                        );
                    }
                    if left.is_zero() {
                        panic!(
                            "`{}` said no {prefix:?} within {timeout:?}:\n{}",
                            self.what,
                            self.log_text()
                        );
                    }
                }
            }
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        self.child.wait().ok()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

/// Holds the tests of one binary that take it to one at a time. A test that measures a rate
/// takes it, and so do its siblings: on a two-core machine a sibling's agent and traffic
/// moved a measured rate by a quarter (148 new flows where 204 were due, and 188-194 alone).
pub fn alone() -> std::sync::MutexGuard<'static, ()> {
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ONE.lock().unwrap_or_else(|p| p.into_inner())
}

/// One health probe as the agent makes it, from inside `ns`: `Ok`, or why it failed.
pub fn probe_from(
    ns: &Netns,
    h: lb::config::Health,
    target: &lb::health::Target,
) -> Result<(), String> {
    ns.run(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(lb::health::Prober::new(h).probe(target))
            .map_err(|f| f.message)
    })
}

/// Panics unless running as root: the namespace tests need it (CI runs them as root).
pub fn require_root() {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test needs root and network namespaces: run it through `cargo xtask test`"
    );
}

/// A small deterministic generator: no seed from the environment, so a failure reproduces.
pub struct Lcg(pub u64);

impl Lcg {
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }

    /// A value in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        self.next() as usize % n
    }
}
