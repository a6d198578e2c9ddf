use std::os::unix::fs::PermissionsExt;

use super::*;

fn dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lb-store-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn drain(i: u8) -> Change {
    Change::Drain {
        vip: "web".into(),
        address: std::net::IpAddr::from([198, 18, 0, i]),
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn appended_changes_come_back_and_a_line_cut_short_is_dropped() {
    let d = dir("append");
    let (mut s, none) = Store::open(&d).unwrap();
    assert!(none.is_empty());
    assert_eq!(mode(&d), 0o700);
    for i in 0..3 {
        s.append(&drain(i)).unwrap();
    }
    let journal = d.join(journal_name(0));
    assert_eq!(mode(&journal), 0o600);
    let (s2, back) = Store::open(&d).unwrap();
    assert_eq!(back, vec![drain(0), drain(1), drain(2)]);
    assert_eq!(s2.journal_len(), 3);
    // Killed while writing a fourth: the cut line was never acknowledged.
    let mut f = OpenOptions::new().append(true).open(&journal).unwrap();
    f.write_all(b"{\"op\":\"drain\",\"vip\":\"we").unwrap();
    let (_, back) = Store::open(&d).unwrap();
    assert_eq!(back.len(), 3);
    // A bad line before others is not an accident of a crash: refused, with where.
    f.write_all(b"\n").unwrap();
    let mut f = OpenOptions::new().append(true).open(&journal).unwrap();
    f.write_all(b"{\"op\":\"undrain\",\"vip\":\"web\",\"address\":\"198.18.0.1\"}\n")
        .unwrap();
    let e = Store::open(&d).unwrap_err().to_string();
    assert!(e.contains(&format!("{}:4", journal.display())), "{e}");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_rewrite_starts_a_new_journal_and_a_crash_before_it_commits_changes_nothing() {
    let d = dir("rewrite");
    let (mut s, _) = Store::open(&d).unwrap();
    s.append(&drain(1)).unwrap();
    s.append(&drain(2)).unwrap();
    s.rewrite(&[drain(2)]).unwrap();
    assert_eq!(s.journal_len(), 0);
    s.append(&drain(3)).unwrap();
    let (_, back) = Store::open(&d).unwrap();
    assert_eq!(back, vec![drain(2), drain(3)]);
    assert_eq!(mode(&d.join(SNAPSHOT)), 0o600);
    assert!(!d.join(journal_name(0)).exists(), "the old journal is gone");
    // A crash after the next journal was made but before the snapshot was renamed: the pair
    // in force is still the old one, and the stray journal is tidied away.
    std::fs::write(d.join(journal_name(2)), "").unwrap();
    std::fs::write(d.join(".changes.json.1.2.tmp"), "").unwrap();
    let (_, back) = Store::open(&d).unwrap();
    assert_eq!(back, vec![drain(2), drain(3)]);
    assert!(!d.join(journal_name(2)).exists());
    assert!(!d.join(".changes.json.1.2.tmp").exists());
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn the_legacy_file_is_read_and_replaced() {
    let d = dir("legacy");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(d.join(LEGACY), serde_json::to_vec(&vec![drain(1)]).unwrap()).unwrap();
    let (mut s, back) = Store::open(&d).unwrap();
    assert_eq!(back, vec![drain(1)]);
    s.rewrite(&back).unwrap();
    assert!(!d.join(LEGACY).exists());
    assert_eq!(Store::open(&d).unwrap().1, vec![drain(1)]);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn symlinks_are_never_followed() {
    let d = dir("symlink");
    let (mut s, _) = Store::open(&d).unwrap();
    let victim = std::env::temp_dir().join(format!("lb-store-victim-{}", std::process::id()));
    std::fs::write(&victim, "precious").unwrap();
    // At the journal's name: the change is refused.
    std::os::unix::fs::symlink(&victim, d.join(journal_name(0))).unwrap();
    let e = s.append(&drain(1)).unwrap_err().to_string();
    assert!(e.contains("symlink"), "{e}");
    assert!(Store::open(&d).unwrap_err().to_string().contains("symlink"));
    std::fs::remove_file(d.join(journal_name(0))).unwrap();
    // At the temporary names a rewrite would try first: passed over.
    for seq in 0..64 {
        let _ = std::os::unix::fs::symlink(
            &victim,
            d.join(format!(".{SNAPSHOT}.{}.{seq}.tmp", std::process::id())),
        );
    }
    s.rewrite(&[drain(1)]).unwrap();
    // At the snapshot's name: a rewrite replaces the link, not what it points to; a start
    // refuses to read through one.
    std::fs::remove_file(d.join(SNAPSHOT)).unwrap();
    std::os::unix::fs::symlink(&victim, d.join(SNAPSHOT)).unwrap();
    assert!(Store::open(&d).unwrap_err().to_string().contains("symlink"));
    s.rewrite(&[drain(2)]).unwrap();
    assert!(
        !std::fs::symlink_metadata(d.join(SNAPSHOT))
            .unwrap()
            .is_symlink()
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    std::fs::remove_file(&victim).unwrap();
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_directory_others_can_write_is_refused() {
    let d = dir("perm");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
    let e = Store::open(&d).unwrap_err().to_string();
    assert!(e.contains("can be written by others"), "{e}");
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o770)).unwrap();
    assert!(Store::open(&d).is_err(), "group-writable too");
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    Store::open(&d).unwrap();
    std::fs::remove_dir_all(&d).unwrap();
}
