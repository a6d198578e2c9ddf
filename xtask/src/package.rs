//! `cargo xtask package`: a Debian package of lb, built with dpkg-deb from what the project
//! has: the binary, the units, the default config, the manual pages and completions the
//! binary generates, the licenses and the changelog. Named `lb-xdp`: Debian's live-build
//! owns the name `lb` (and /usr/bin/lb, and lb(1)); this one installs /usr/sbin/lb beside it.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use crate::{root, run};

pub const NAME: &str = "lb-xdp";
const MAINTAINER: &str = "lb developers <lb-devel@lists.example.org>";

fn write(path: &Path, text: &str, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn install(from: &Path, to: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(d) = to.parent() {
        std::fs::create_dir_all(d)?;
    }
    std::fs::copy(from, to).with_context(|| format!("copying {}", from.display()))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn output(cmd: &mut Command) -> Result<Vec<u8>> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(out.stdout)
}

/// gzip -9n (no name or time in the header: the same input makes the same file).
fn gzip(path: &Path) -> Result<()> {
    run(Command::new("gzip").args(["-9nf"]).arg(path))
}

/// Builds the package from `lb` (a built binary) into `out`; returns the .deb's path.
pub fn package(lb: &Path, out: &Path) -> Result<PathBuf> {
    let version = env!("CARGO_PKG_VERSION");
    let arch = String::from_utf8(output(Command::new("dpkg").arg("--print-architecture"))?)?
        .trim()
        .to_string();
    let stage = out.join("stage");
    let _ = std::fs::remove_dir_all(&stage);
    let packaging = root().join("packaging");
    let doc = stage.join("usr/share/doc").join(NAME);

    let bin = stage.join("usr/sbin/lb");
    install(lb, &bin, 0o755)?;
    run(Command::new("strip")
        .args([
            "--strip-unneeded",
            "--remove-section=.comment",
            "--remove-section=.note",
        ])
        .arg(&bin))?;
    for unit in ["lb.service", "lb-decap@.service"] {
        install(
            &packaging.join(unit),
            &stage.join("lib/systemd/system").join(unit),
            0o644,
        )?;
    }
    install(
        &packaging.join("lb.toml"),
        &stage.join("etc/lb/lb.toml"),
        0o644,
    )?;
    let man = stage.join("usr/share/man/man8");
    run(Command::new(&bin).arg("manpages").arg(&man))?;
    for page in std::fs::read_dir(&man)? {
        gzip(&page?.path())?;
    }
    for (shell, path) in [
        ("bash", "usr/share/bash-completion/completions/lb"),
        ("zsh", "usr/share/zsh/vendor-completions/_lb"),
        ("fish", "usr/share/fish/vendor_completions.d/lb.fish"),
    ] {
        let script = output(Command::new(&bin).args(["completions", shell]))?;
        write(&stage.join(path), &String::from_utf8(script)?, 0o644)?;
    }
    write(&doc.join("copyright"), &copyright(), 0o644)?;
    write(&doc.join("changelog"), &changelog(version)?, 0o644)?;
    gzip(&doc.join("changelog"))?;

    let debian = stage.join("DEBIAN");
    std::fs::create_dir_all(&debian)?;
    write(&debian.join("conffiles"), "/etc/lb/lb.toml\n", 0o644)?;
    write(&debian.join("postinst"), POSTINST, 0o755)?;
    write(&debian.join("md5sums"), &md5sums(&stage)?, 0o644)?;
    let size = output(
        Command::new("du")
            .args(["-sk", "--exclude=DEBIAN"])
            .arg(&stage),
    )?;
    let size = String::from_utf8(size)?;
    let size = size.split_whitespace().next().unwrap_or("0");
    write(
        &debian.join("control"),
        &control(version, &arch, size, &glibc(&bin)?),
        0o644,
    )?;

    let deb = out.join(format!("{NAME}_{version}_{arch}.deb"));
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zxz", "--build"])
        .arg(&stage)
        .arg(&deb))?;
    Ok(deb)
}

/// The newest glibc symbol version the binary needs: the libc6 it depends on.
fn glibc(bin: &Path) -> Result<String> {
    let syms = String::from_utf8(output(Command::new("objdump").arg("-T").arg(bin))?)?;
    let mut newest = (2u32, 17u32);
    for word in syms.split(|c: char| c.is_whitespace() || c == '(' || c == ')') {
        if let Some(v) = word.strip_prefix("GLIBC_") {
            let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
            let v = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
            newest = newest.max(v);
        }
    }
    Ok(format!("{}.{}", newest.0, newest.1))
}

fn control(version: &str, arch: &str, size_kib: &str, glibc: &str) -> String {
    format!(
        "Package: {NAME}\n\
         Version: {version}\n\
         Architecture: {arch}\n\
         Maintainer: {MAINTAINER}\n\
         Installed-Size: {size_kib}\n\
         Depends: libc6 (>= {glibc}), adduser\n\
         Section: net\n\
         Priority: optional\n\
         Description: XDP layer-4 load balancer with Maglev hashing\n \
         lb balances TCP and UDP services from an XDP program attached at the network\n \
         driver: it picks a backend for every packet by Maglev consistent hashing of its\n \
         5-tuple, remembers the choice per flow, encapsulates the packet IP-in-IP and\n \
         sends it on before the kernel stack sees it; backends answer clients directly.\n \
         .\n \
         A userspace agent (lb run) loads the program, runs health checks, follows its\n \
         configuration file and keeps the BPF maps current; the same binary is the CLI\n \
         that manages VIPs and backends at runtime.\n"
    )
}

const POSTINST: &str = "#!/bin/sh\n\
set -e\n\
# The agent runs as this system user, with only the capabilities lb.service grants.\n\
if [ \"$1\" = configure ]; then\n\
    adduser --system --group --quiet --no-create-home --home /nonexistent lb\n\
fi\n";

fn copyright() -> String {
    format!(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
         Upstream-Name: lb\n\
         \n\
         Files: *\n\
         Copyright: 2026 the lb developers\n\
         License: MIT or Apache-2.0\n\
         \n\
         Files: lb-ebpf/*\n\
         Copyright: 2026 the lb developers\n\
         Comment: the programs loaded into the kernel (their license section says \"Dual MIT/GPL\")\n\
         License: MIT or GPL-2\n\
         \n\
         License: MIT\n{}\n\
         \n\
         License: Apache-2.0\n \
         On Debian systems, the full text of the Apache License, Version 2.0, is in\n \
         /usr/share/common-licenses/Apache-2.0.\n\
         \n\
         License: GPL-2\n \
         On Debian systems, the full text of the GNU General Public License, version 2,\n \
         is in /usr/share/common-licenses/GPL-2.\n",
        indent(MIT)
    )
}

/// A license text as a copyright file's field continuation: each line indented, blank lines
/// as " .".
fn indent(text: &str) -> String {
    text.lines()
        .map(|l| {
            if l.is_empty() {
                " .".to_string()
            } else {
                format!(" {l}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The MIT license, as LICENSE-MIT has it.
const MIT: &str = include_str!("../../LICENSE-MIT");

/// The package's changelog in Debian's format, dated SOURCE_DATE_EPOCH (or now).
fn changelog(version: &str) -> Result<String> {
    let mut date = Command::new("date");
    date.arg("-uR");
    if let Ok(epoch) = std::env::var("SOURCE_DATE_EPOCH") {
        date.arg("-d").arg(format!("@{epoch}"));
    }
    let date = String::from_utf8(output(&mut date)?)?;
    Ok(format!(
        "{NAME} ({version}) unstable; urgency=medium\n\n  \
         * Release {version}: see CHANGELOG.md in the source for what changed.\n\n \
         -- {MAINTAINER}  {}\n",
        date.trim()
    ))
}

/// md5sums of every file of the package, as dpkg keeps them.
fn md5sums(stage: &Path) -> Result<String> {
    let mut files = Vec::new();
    let mut dirs = vec![stage.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d)? {
            let p = e?.path();
            if p.file_name().is_some_and(|n| n == "DEBIAN") {
                continue;
            }
            if p.is_dir() {
                dirs.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files.sort();
    let mut out = String::new();
    for f in files {
        let sum = String::from_utf8(output(Command::new("md5sum").arg(&f))?)?;
        let sum = sum
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        out += &format!("{sum}  {}\n", f.strip_prefix(stage)?.display());
    }
    Ok(out)
}
