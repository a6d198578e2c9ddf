//! `cargo xtask setup | build | test | demo`: everything a fresh machine needs, from one
//! entry point.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

mod package;

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what is missing (idempotent): the nightly lb-ebpf/rust-toolchain.toml pins,
    /// with rust-src and clippy, bpf-linker (--locked), Debian packages.
    Setup,
    /// Build the agent with its embedded BPF programs.
    Build,
    /// Unit tests, BPF_PROG_TEST_RUN fixtures and namespace tests (needs root).
    Test {
        /// Extra arguments for the test binaries (a filter, --nocapture, ...).
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// A throwaway topology with real traffic through the balancer (needs root).
    Demo,
    /// A Debian package (lb-xdp) under target/package/: binary, systemd units, default
    /// config, manual pages, completions, licenses, changelog.
    Package {
        /// Package this binary rather than a fresh release build.
        #[arg(long)]
        binary: Option<PathBuf>,
        /// Where the .deb goes (default target/package).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Measure, next to baselines from the same run, and write BENCHMARKS.md (needs root).
    Bench {
        /// Fewer repetitions, report to target/bench-quick.md (CI: proves the harness works).
        #[arg(long)]
        quick: bool,
        /// Some sections only (per-packet, maglev, e2e, conn, control; comma-separated, run in
        /// that order in one process), printed, not written. `ab`: this build's data path
        /// against the object in LB_AB_OBJECT (not in the report).
        #[arg(long)]
        only: Option<String>,
    },
}

/// Commands the tests, the demo and the benchmarks run (or, where it starts with `/`, a file
/// the build reads), and the Debian package of each.
const PACKAGES: &[(&str, &str)] = &[
    ("ip", "iproute2"),
    ("nft", "nftables"),
    ("ethtool", "ethtool"),
    ("setpriv", "util-linux"),
    ("sysctl", "procps"),
    ("haproxy", "haproxy"),
    ("taskset", "util-linux"),
    ("pgrep", "procps"),
    ("ping", "iputils-ping"),
    ("tcpdump", "tcpdump"),
    ("bird", "bird2"),
    ("etcd", "etcd-server"),
    ("etcdctl", "etcd-client"),
    ("protoc", "protobuf-compiler"),
    // etcd-client's build compiles protos that import protobuf's own well-known types; they
    // come with protoc only as a recommendation, which `--no-install-recommends` leaves out.
    (
        "/usr/include/google/protobuf/descriptor.proto",
        "libprotobuf-dev",
    ),
    ("dnsmasq", "dnsmasq-base"),
    // The upgrade test makes an older release's pinned map with it; the e2e bench reads
    // program stats with it.
    ("bpftool", "bpftool"),
    // The package: built with dpkg-deb, stripped, checked by lintian, its units by
    // systemd-analyze, its pages by man.
    ("dpkg-deb", "dpkg"),
    ("strip", "binutils"),
    ("lintian", "lintian"),
    ("systemd-analyze", "systemd"),
    ("man", "man-db"),
    // A real Prometheus scrapes the agent in the tests; promtool lints the 0.0.4 exposition.
    ("prometheus", "prometheus"),
    ("promtool", "prometheus"),
    // The Prometheus project's reference OpenMetrics parser, for the OpenMetrics exposition.
    (
        "/usr/lib/python3/dist-packages/prometheus_client/openmetrics/parser.py",
        "python3-prometheus-client",
    ),
];

fn main() -> std::process::ExitCode {
    match xtask(Cli::parse().command) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn xtask(cmd: Cmd) -> Result<()> {
    match cmd {
        Cmd::Setup => setup(),
        Cmd::Package { binary, out } => {
            let lb = match binary {
                Some(b) => b,
                None => {
                    setup()?;
                    release_lb()?
                }
            };
            let out = out.unwrap_or_else(|| root().join("target/package"));
            let deb = package::package(&lb, &out)?;
            println!("{}", deb.display());
            Ok(())
        }
        Cmd::Build => {
            setup()?;
            build()
        }
        Cmd::Test { args } => {
            setup()?;
            build()?;
            test(&args)
        }
        Cmd::Bench { quick, only } => {
            setup()?;
            build()?;
            // Numbers come from an optimised build; --quick only proves the harness works, so it
            // spares CI a second (release) build.
            // The agent measured is an optimised one too, as users run it.
            let lb = if quick {
                root().join("target/debug/lb")
            } else {
                release_lb()?
            };
            let mut cmd = Command::new("cargo");
            cmd.current_dir(root()).arg("run");
            if !quick {
                cmd.arg("--release");
            }
            cmd.args(["--quiet", "--package", "lb-tests", "--bin", "bench", "--"])
                .env("LB_BIN", lb);
            if quick {
                cmd.arg("--quick");
            }
            if let Some(section) = only {
                cmd.args(["--only", &section]);
            }
            run(&mut cmd)
        }
        Cmd::Demo => {
            setup()?;
            build()?;
            // The demo lives with the test harness (tests/src/bin/demo.rs), whose namespace and
            // traffic guards it shares.
            run(Command::new("cargo")
                .current_dir(root())
                .args(["run", "--quiet", "--package", "lb-tests", "--bin", "demo"])
                .env("LB_BIN", root().join("target/debug/lb")))
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

fn quiet_ok(cmd: &mut Command) -> bool {
    cmd.output().map(|o| o.status.success()).unwrap_or(false)
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Builds the optimised `lb` (as users run it); its path.
fn release_lb() -> Result<PathBuf> {
    run(Command::new("cargo").current_dir(root()).args([
        "build",
        "--release",
        "--package",
        "lb-userspace",
        "--bin",
        "lb",
    ]))?;
    Ok(root().join("target/release/lb"))
}

/// The nightly lb-ebpf/rust-toolchain.toml names (the one place it is pinned).
fn nightly() -> Result<String> {
    let path = root().join("lb-ebpf/rust-toolchain.toml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .find_map(|l| l.trim().strip_prefix("channel"))
        .and_then(|v| v.split('"').nth(1))
        .map(str::to_string)
        .with_context(|| format!("{} names no channel", path.display()))
}

fn setup() -> Result<()> {
    let nightly = nightly()?;
    // The pinned nightly, with rust-src (`-Z build-std=core` for the BPF target) and clippy
    // (CI lints the BPF programs).
    let toolchains = output(Command::new("rustup").args(["toolchain", "list"]))?;
    if !toolchains
        .lines()
        .any(|l| l.starts_with(&format!("{nightly}-")) || l.starts_with(&format!("{nightly} ")))
    {
        eprintln!("xtask: installing the {nightly} toolchain");
        run(Command::new("rustup").args([
            "toolchain",
            "install",
            &nightly,
            "--profile",
            "minimal",
        ]))?;
    }
    let installed = output(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        &nightly,
        "--installed",
    ]))?;
    for component in ["rust-src", "clippy"] {
        if !installed.lines().any(|l| l.starts_with(component)) {
            eprintln!("xtask: installing {component} for {nightly}");
            run(Command::new("rustup").args([
                "component",
                "add",
                component,
                "--toolchain",
                &nightly,
            ]))?;
        }
    }
    ensure_bpf_linker(&nightly)?;
    ensure_packages()
}

/// bpf-linker has no prebuilt download here: build it against the nightly's own LLVM, whose
/// major version we read off the library's file name.
fn ensure_bpf_linker(nightly: &str) -> Result<()> {
    if quiet_ok(Command::new("rustup").args(["run", nightly, "bpf-linker", "--version"])) {
        return Ok(());
    }
    let sysroot = PathBuf::from(output(Command::new("rustc").args([
        &format!("+{nightly}"),
        "--print",
        "sysroot",
    ]))?);
    let lib = std::fs::read_dir(sysroot.join("lib"))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM.so."))
        })
        .context("the nightly toolchain has no libLLVM.so.*")?;
    let name = lib
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();
    let major: String = name
        .trim_start_matches("libLLVM.so.")
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    if major.is_empty() {
        bail!("cannot read the LLVM major version from {name}");
    }
    // A durable prefix: the linker's runpath points here.
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cargo")
        });
    let prefix = cargo_home.join(format!("lb-llvm-{major}"));
    let libdir = prefix.join("lib");
    std::fs::create_dir_all(&libdir)?;
    for link in ["libLLVM.so".to_string(), name.clone()] {
        let l = libdir.join(link);
        let _ = std::fs::remove_file(&l);
        std::os::unix::fs::symlink(&lib, &l)?;
    }
    eprintln!("xtask: building bpf-linker against the nightly's LLVM {major} (about a minute)");
    run(Command::new("cargo")
        .args([
            &format!("+{nightly}"),
            "install",
            "bpf-linker",
            // The dependency versions bpf-linker was released and tested with.
            "--locked",
            "--no-default-features",
            "--features",
            &format!("llvm-{major}"),
        ])
        .env("LLVM_PREFIX", &prefix))?;
    if !quiet_ok(Command::new("rustup").args(["run", nightly, "bpf-linker", "--version"])) {
        bail!("bpf-linker was installed but does not run (is ~/.cargo/bin on PATH?)");
    }
    Ok(())
}

fn ensure_packages() -> Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .filter(|(cmd, _)| {
            if cmd.starts_with('/') {
                !std::path::Path::new(cmd).exists()
            } else {
                !quiet_ok(Command::new("sh").args(["-c", &format!("command -v {cmd}")]))
            }
        })
        .map(|(_, pkg)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing Debian packages: {}", missing.join(" "));
    run(Command::new("apt-get").arg("update").arg("-qq"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn build() -> Result<()> {
    run(Command::new("cargo").current_dir(root()).args([
        "build",
        "--package",
        "lb-userspace",
        "--bin",
        "lb",
    ]))
}

fn test(args: &[String]) -> Result<()> {
    if effective_uid() != 0 {
        bail!(
            "cargo xtask test needs root: the tests make network namespaces and load BPF programs"
        );
    }
    let lb = root().join("target/debug/lb");
    // Every test binary runs even when one fails: the run shows all that is broken at once.
    let mut child = Command::new("cargo")
        .current_dir(root())
        .args([
            "test",
            "--workspace",
            "--no-fail-fast",
            "--",
            "--include-ignored",
        ])
        .args(args)
        .env("LB_BIN", &lb)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("running cargo test")?;
    // Pass the output through and add up the test binaries' results, so the run ends on one
    // line that says how many tests ran.
    let (mut passed, mut failed) = (0u64, 0u64);
    let stdout = child.stdout.take().context("cargo test stdout")?;
    for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
        let line = line?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            for part in rest.split(';') {
                let mut words = part.split_whitespace().rev();
                let (Some(what), Some(n)) = (words.next(), words.next()) else {
                    continue;
                };
                let n: u64 = n.parse().unwrap_or(0);
                match what {
                    "passed" => passed += n,
                    "failed" => failed += n,
                    _ => {}
                }
            }
        }
    }
    let status = child.wait()?;
    println!("{passed} passed, {failed} failed");
    if !status.success() {
        bail!("cargo test failed: {status}");
    }
    if passed == 0 {
        bail!("no test ran");
    }
    Ok(())
}

fn effective_uid() -> u32 {
    // Read from /proc to keep this crate free of libc.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2)?.parse().ok())
        })
        .unwrap_or(u32::MAX)
}
