//! Builds `lb-ebpf` for the BPF target and leaves its two objects in `OUT_DIR`: `lb-ebpf`, the
//! production object `lb` embeds with `include_bytes_aligned!`, and `lb-ebpf-test`, which only
//! the benchmarks and the tests load (its path goes to them as `DEP_LB_EBPF_TEST_OBJECT`, by
//! this package's `links` key). With `AYA_BUILD_SKIP=1` it writes empty stubs instead, so that
//! `cargo check` and clippy run without the nightly toolchain and bpf-linker.
//!
//! This is our own code rather than `aya_build::build_ebpf` for one reason: that helper sets
//! the BPF build's `CARGO_ENCODED_RUSTFLAGS` itself, which overrides every other way of giving
//! rustc flags, and the object must be built with `-C target-cpu=v3` (below).
//!
//! Code generation, and why:
//! - `target-cpu=v3`: 32-bit ALU and jump instructions (kernel 5.1+). Generic BPF has only
//!   64-bit ones, so every `u32` the programs compute (hashes, lengths, checksums, rotates)
//!   needed zero-extending shifts before a compare; v3 code is shorter and faster (the
//!   figures: BENCHMARKS.md).
//! - `allows-misaligned-mem-access` (`lb-ebpf/build.rs`, a link argument): the headers are
//!   byte arrays, and without it LLVM splits every multi-byte access into single bytes.
use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, bail};

const PACKAGE: &str = "lb-ebpf";
/// The binaries of `PACKAGE`: each is one object.
const OBJECTS: [&str; 2] = ["lb-ebpf", "lb-ebpf-test"];
const TARGET: &str = "bpfel-unknown-none";

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
    let out = PathBuf::from(env::var("OUT_DIR")?);
    let skip = env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if skip {
        for object in OBJECTS {
            fs::write(out.join(object), [])?;
        }
    } else {
        build_objects(&out)?;
    }
    println!("cargo:test_object={}", out.join("lb-ebpf-test").display());
    version(&fs::read(out.join(PACKAGE))?);
    Ok(())
}

/// `lb --version`: the version, the commit built (with `-dirty` for uncommitted changes), the
/// build date (`SOURCE_DATE_EPOCH` if set, for reproducible builds) and a hash of the BPF
/// object embedded (FNV-1a, 64 bits: two builds with the same hash run the same programs).
fn version(object: &[u8]) {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = match (
        git(&["rev-parse", "--short=12", "HEAD"]),
        git(&["status", "--porcelain", "--untracked-files=no"]),
    ) {
        (Some(c), Some(st)) if !st.is_empty() => format!("{c}-dirty"),
        (Some(c), _) => c,
        _ => "unknown".into(),
    };
    if let Some(top) = git(&["rev-parse", "--git-dir"]) {
        println!("cargo:rerun-if-changed={top}/HEAD");
        println!("cargo:rerun-if-changed={top}/index");
    }
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let secs = env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        });
    let hash = object.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    });
    println!(
        "cargo:rustc-env=LB_VERSION={} (commit {commit}, built {}, BPF object {hash:016x})",
        env::var("CARGO_PKG_VERSION").unwrap_or_default(),
        civil_date(secs / 86_400)
    );
}

/// The proleptic Gregorian date of `days` since 1970-01-01, as YYYY-MM-DD (Howard Hinnant's
/// civil_from_days).
fn civil_date(days: u64) -> String {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The toolchain lb-ebpf/rust-toolchain.toml names.
fn channel(root: &Path) -> anyhow::Result<String> {
    let path = root.join("lb-ebpf/rust-toolchain.toml");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .find_map(|l| l.trim().strip_prefix("channel"))
        .and_then(|v| v.split('"').nth(1))
        .map(str::to_string)
        .with_context(|| format!("{} names no channel", path.display()))
}

/// Builds lb-ebpf's objects for the BPF target into `out`.
fn build_objects(out: &Path) -> anyhow::Result<()> {
    if env::var("CARGO_CFG_TARGET_ENDIAN").as_deref() != Ok("little") {
        bail!("lb's BPF object is built for {TARGET}: little-endian hosts only");
    }
    let arch = env::var("CARGO_CFG_TARGET_ARCH")?;
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let root = manifest.join("..").canonicalize()?;
    // The object depends on these; naming them replaces cargo's default (this package only).
    for p in ["lb-ebpf", "lb-common", "Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(p).display());
    }

    let target_dir = out.join("bpf-target");
    let flags = [
        format!("--cfg=bpf_target_arch=\"{arch}\""),
        "-Cdebuginfo=2".into(),
        "-Ctarget-cpu=v3".into(),
        "-Clink-arg=--btf".into(),
    ]
    .join("\x1f");
    // The nightly through rustup; without rustup, whatever `cargo` is on the PATH (it must be a
    // nightly with rust-src for -Z build-std, and says so if it is not).
    let toolchain = channel(&root)?;
    println!(
        "cargo:rerun-if-changed={}",
        root.join("lb-ebpf/rust-toolchain.toml").display()
    );
    let has_rustup = Command::new("rustup").arg("--version").output().is_ok();
    let mut cmd = if has_rustup {
        let mut c = Command::new("rustup");
        c.args(["run", &toolchain, "cargo"]);
        c
    } else {
        println!("cargo:warning=no rustup on the PATH: building the BPF programs with `cargo`");
        Command::new("cargo")
    };
    cmd.args(["build", "--package", PACKAGE, "--bins", "--release"])
        .args(["--target", TARGET, "-Z", "build-std=core", "--target-dir"])
        .arg(&target_dir)
        .current_dir(&root)
        .env("CARGO_ENCODED_RUSTFLAGS", flags)
        // This build script's own toolchain must not leak into the nightly build.
        .env_remove("RUSTC")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO");
    let output = cmd
        .output()
        .with_context(|| format!("running {cmd:?} (`cargo xtask setup` installs what it needs)"))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!(
            "building the BPF programs failed ({}):\n{stderr}",
            output.status
        );
    }
    // Pass on what rustc warned about; cargo's progress lines are noise here.
    if stderr.contains("warning:") {
        for line in stderr.lines() {
            println!("cargo:warning={line}");
        }
    }
    for object in OBJECTS {
        copy(
            &target_dir.join(TARGET).join("release").join(object),
            &out.join(object),
        )?;
    }
    Ok(())
}

fn copy(from: &Path, to: &Path) -> anyhow::Result<()> {
    fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    Ok(())
}
