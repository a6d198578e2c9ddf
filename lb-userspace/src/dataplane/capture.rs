//! `lb capture`'s maps: the filter the program reads, its ring buffer and its lost count.
use aya::maps::{MapData, PerCpuArray, RingBuf};
use lb_common::{CaptureCtl, map_names};

use super::{Dataplane, DataplaneError, Result, error::map_err};

impl Dataplane {
    /// Starts (`on` set) or stops (all zero) copying packets into the capture ring buffer.
    pub fn set_capture(&mut self, ctl: CaptureCtl) -> Result<()> {
        self.map_array::<CaptureCtl>(map_names::CAPTURE_CTL)?
            .set(0, ctl, 0)
            .map_err(map_err(map_names::CAPTURE_CTL))
    }

    /// Packets that matched a capture but found its ring buffer full, since the load.
    pub fn capture_lost(&self) -> Result<u64> {
        let name = map_names::CAPTURE_LOST;
        let map = self
            .ebpf
            .map(name)
            .ok_or(DataplaneError::MissingMap(name))?;
        let m: PerCpuArray<_, u64> = PerCpuArray::try_from(map).map_err(map_err(name))?;
        Ok(m.get(&0, 0).map_err(map_err(name))?.iter().sum())
    }

    /// The same program loaded again with the capture hook compiled in, on the same pinned maps:
    /// the program a capture swaps in while it runs, so that no packet pays for the hook
    /// otherwise.
    pub fn with_capture_hook(&self) -> Result<Dataplane> {
        if self.opts.pin_dir.is_none() {
            return Err(DataplaneError::Limit(
                "a capture needs the pinned data path the agent runs".into(),
            ));
        }
        let opts = super::Options {
            capture_hook: true,
            ..self.opts.clone()
        };
        Dataplane::load_with(super::OBJECT, self.program, &opts)
    }

    /// Where the maps and links are pinned (the agent's data path).
    pub fn pin_dir(&self) -> Option<&std::path::Path> {
        self.opts.pin_dir.as_deref()
    }

    /// The capture ring buffer, taken out for its reader (once).
    pub fn take_capture_ring(&mut self) -> Result<RingBuf<MapData>> {
        let name = map_names::CAPTURE;
        let map = self
            .ebpf
            .take_map(name)
            .ok_or(DataplaneError::MissingMap(name))?;
        RingBuf::try_from(map).map_err(map_err(name))
    }
}

/// The program's log lines on their way to the agent's log (`lb run --program-log`).
pub type ProgramLogger = tokio::io::unix::AsyncFd<aya_log::EbpfLogger<&'static dyn log::Log>>;

impl Dataplane {
    /// Starts reading the program's log lines (aya-log) into the agent's log.
    pub fn program_logger(&mut self) -> Result<ProgramLogger> {
        let logger = aya_log::EbpfLogger::init(&mut self.ebpf)
            .map_err(|e| DataplaneError::Limit(format!("the program's log: {e}")))?;
        // Safety: the logger owns its ring buffer's descriptor, open and unchanged until it
        // is dropped, and the AsyncFd owns the logger.
        unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE)
        }
        .map_err(|e| {
            DataplaneError::Limit(format!("the program's log: {}", std::io::Error::from(e)))
        })
    }
}
