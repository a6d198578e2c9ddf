//! What an operator installs besides the binary, checked by the tools their system runs:
//! systemd's own verifier accepts the units, `man` renders every page, and bash completes
//! `lb backend ` with its subcommands.
use std::{path::Path, process::Command};

use lb_tests::{TempDir, lb_bin};

const PACKAGING: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../packaging");

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Writes lb's manual pages into `dir/man1`.
fn manpages(dir: &Path) {
    let (ok, text) = run(Command::new(lb_bin()).arg("manpages").arg(dir.join("man1")));
    assert!(ok, "{text}");
}

/// `systemd-analyze verify` over a root holding the system's units, the commands where the
/// units run them and the units themselves (the decap template as an instance): it must say
/// nothing at all (a bad setting is only a warning, and a warning fails this test too). The
/// units' man pages are found through MANPATH.
#[test]
fn systemd_accepts_the_units() {
    let tmp = TempDir::new("units");
    let root = tmp.path("root");
    let units = root.join("etc/systemd/system");
    std::fs::create_dir_all(root.join("usr/lib/systemd")).unwrap();
    std::fs::create_dir_all(root.join("usr/sbin")).unwrap();
    std::fs::create_dir_all(&units).unwrap();
    let (ok, text) = run(Command::new("cp")
        .args(["-a", "/usr/lib/systemd/system"])
        .arg(root.join("usr/lib/systemd")));
    assert!(ok, "{text}");
    std::fs::copy(lb_bin(), root.join("usr/sbin/lb")).unwrap();
    // What the units run besides lb.
    std::fs::create_dir_all(root.join("bin")).unwrap();
    for tool in ["sh", "kill"] {
        std::fs::copy(format!("/bin/{tool}"), root.join("bin").join(tool)).unwrap();
    }
    std::fs::copy(format!("{PACKAGING}/lb.service"), units.join("lb.service")).unwrap();
    std::fs::copy(
        format!("{PACKAGING}/lb-decap@.service"),
        units.join("lb-decap@.service"),
    )
    .unwrap();
    std::fs::copy(
        format!("{PACKAGING}/lb-decap@.service"),
        units.join("lb-decap@eth0.service"),
    )
    .unwrap();
    let man = tmp.path("man");
    manpages(&man);
    for unit in ["lb.service", "lb-decap@eth0.service"] {
        let (ok, text) = run(Command::new("systemd-analyze")
            .arg("verify")
            .arg(format!("--root={}", root.display()))
            .arg(units.join(unit))
            .env("MANPATH", &man));
        assert!(ok && text.trim().is_empty(), "{unit}: {text}");
    }
    // The check has teeth: a setting systemd does not know is reported.
    let bad = std::fs::read_to_string(units.join("lb.service"))
        .unwrap()
        .replace("Type=notify", "Type=notifyy");
    std::fs::write(units.join("lb-bad.service"), bad).unwrap();
    let (_, text) = run(Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .arg(units.join("lb-bad.service"))
        .env("MANPATH", &man));
    assert!(text.contains("notifyy"), "{text}");
}

/// Every manual page renders with `man -l`, and names its command.
#[test]
fn every_manual_page_renders() {
    let tmp = TempDir::new("man");
    manpages(&tmp.0);
    let pages: Vec<_> = std::fs::read_dir(tmp.path("man1"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(pages.len() >= 20, "{pages:?}");
    for page in &pages {
        let name = page.file_stem().unwrap().to_string_lossy().into_owned();
        let (ok, text) = run(Command::new("man")
            .args(["-l", "-P", "cat"])
            .arg(page)
            .env("MANWIDTH", "100"));
        assert!(ok, "{name}: {text}");
        assert!(text.contains(&name), "{name} does not name itself:\n{text}");
    }
}

/// bash completes `lb backend ` with the backend subcommands (through clap's completion
/// function, which calls compgen), and zsh and fish scripts are produced.
#[test]
fn bash_completes_subcommands() {
    let script = format!(
        "source <({} completions bash)\nCOMP_WORDS=(lb backend '')\nCOMP_CWORD=2\nCOMP_LINE='lb backend '\nCOMP_POINT=${{#COMP_LINE}}\n_lb lb '' backend\necho \"${{COMPREPLY[@]}}\"",
        lb_bin().display()
    );
    let (ok, text) = run(Command::new("bash").args(["-c", &script]));
    assert!(ok, "{text}");
    let offered: Vec<&str> = text.split_whitespace().collect();
    for sub in ["list", "add", "del", "drain", "undrain", "set"] {
        assert!(offered.contains(&sub), "{sub} not offered: {offered:?}");
    }
    for shell in ["zsh", "fish"] {
        let (ok, text) = run(Command::new(lb_bin()).args(["completions", shell]));
        assert!(
            ok && text.contains("backend") && text.contains("drain"),
            "{shell}: {text}"
        );
    }
}

/// The default configuration the package installs is one `lb check` accepts.
#[test]
fn the_default_configuration_checks() {
    let (ok, text) = run(Command::new(lb_bin())
        .args(["check", "--config"])
        .arg(format!("{PACKAGING}/lb.toml")));
    assert!(ok && text.contains("ok"), "{text}");
}
