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
