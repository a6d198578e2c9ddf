//! `tc_probe` on the probes' device's egress: the health probes' way through the tunnel.
use aya::programs::{SchedClassifier, TcAttachType, tc};

use super::{Dataplane, DataplaneError, Result, error::load_error};

/// The probe program's name in the object.
pub const PROBE_PROGRAM: &str = "tc_probe";

impl Dataplane {
    /// Loads `tc_probe` (sharing the balancer's backend map) and attaches it to `device`'s
    /// egress; it stays there while this data path is loaded.
    pub fn attach_probe(&mut self, device: &str) -> Result<()> {
        let program_err = |source| DataplaneError::Program {
            program: PROBE_PROGRAM.into(),
            source: Box::new(source),
        };
        let prog: &mut SchedClassifier = self
            .ebpf
            .program_mut(PROBE_PROGRAM)
            .ok_or_else(|| program_err(aya::programs::ProgramError::NotLoaded))?
            .try_into()
            .map_err(program_err)?;
        prog.load().map_err(|e| load_error(PROBE_PROGRAM, e))?;
        // Kernels before 6.6 attach through a clsact qdisc; it may be there already.
        let _ = tc::qdisc_add_clsact(device);
        prog.attach(device, TcAttachType::Egress)
            .map_err(|source| DataplaneError::Attach {
                program: PROBE_PROGRAM.into(),
                interface: device.into(),
                mode: "tc egress",
                source: Box::new(source),
            })?;
        Ok(())
    }
}
