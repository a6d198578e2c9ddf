//! The pinned data path: the bpf filesystem it lives on, and `lb detach`, which takes it
//! away once no agent runs.
use std::path::Path;

use anyhow::{Context, bail};

use crate::config::Config;

/// `BPF_FS_MAGIC`: the pin directory must be on a bpf filesystem.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

fn is_bpffs(path: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    unsafe { libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == BPF_FS_MAGIC }
}

/// Makes `pin_dir` (mounting the bpf filesystem at /sys/fs/bpf where nobody has, as systemd
/// usually does at boot).
pub fn ensure_bpffs(pin_dir: &Path) -> anyhow::Result<()> {
    let sys = Path::new("/sys/fs/bpf");
    if pin_dir.starts_with(sys) && !is_bpffs(sys) {
        let (src, dst, fs) = (c"bpf", c"/sys/fs/bpf", c"bpf");
        let rc =
            unsafe { libc::mount(src.as_ptr(), dst.as_ptr(), fs.as_ptr(), 0, std::ptr::null()) };
        if rc != 0 {
            bail!(
                "mounting the bpf filesystem at /sys/fs/bpf: {}",
                std::io::Error::last_os_error()
            );
        }
        tracing::info!("mounted the bpf filesystem at /sys/fs/bpf");
    }
    std::fs::create_dir_all(pin_dir.join("maps"))
        .with_context(|| format!("creating {}", pin_dir.display()))?;
    if !is_bpffs(pin_dir) {
        bail!(
            "{} is not on a bpf filesystem (mount one: mount -t bpf bpf DIR)",
            pin_dir.display()
        );
    }
    Ok(())
}

/// `lb detach`: removes the pinned data path of the instance `cfg` names: the links (the
/// program leaves the interfaces) and the maps. Refuses while an agent serves its socket.
pub fn detach(cfg: &Config, socket: Option<&Path>) -> anyhow::Result<usize> {
    let socket = socket.unwrap_or(&cfg.agent.socket);
    if std::os::unix::net::UnixStream::connect(socket).is_ok() {
        bail!("an agent is running on {}: stop it first", socket.display());
    }
    let dir = &cfg.agent.pin_dir;
    let mut removed = 0;
    for sub in ["links", "maps"] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for e in entries.flatten() {
            std::fs::remove_file(e.path())
                .with_context(|| format!("removing {}", e.path().display()))?;
            removed += 1;
        }
        let _ = std::fs::remove_dir(dir.join(sub));
    }
    let _ = std::fs::remove_dir(dir);
    if let Some(b) = &cfg.bgp {
        // A stopped agent has withdrawn already; one that died has not.
        match crate::bgp::write_and_configure(b, &cfg.agent.instance, &Default::default()) {
            Ok(()) => tracing::info!("BGP announcements withdrawn"),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "withdrawing the BGP announcements")
            }
        }
    }
    tracing::info!(pin_dir = %dir.display(), removed, interfaces = %cfg.agent.interfaces.join(","), "xdp_lb detached");
    Ok(removed)
}
