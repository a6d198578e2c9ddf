//! The test object: lb-ebpf's second binary, which only the benchmarks and the tests load.
//! It holds `xdp_lb` as the production object does, the balancer's benchmark variants, the
//! baselines, a test fabric's ports, a live-frames generator and sink, and a program the
//! verifier must refuse.
use aya::maps::{Array, PerCpuArray};
use lb::dataplane::{Dataplane, DataplaneError, Options, Result};
use lb_common::GenConfig;

/// The object, built with the production one (`lb-userspace/build.rs`).
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(env!("LB_TEST_OBJECT"));

/// Its programs.
pub mod programs {
    /// The balancer, as in the production object (for comparisons of two builds).
    pub const LB: &str = "xdp_lb";
    /// `xdp_lb` with one fixed flow entry in place of the flow table.
    pub const LB_FIXED_FLOW: &str = "xdp_lb_fixed_flow";
    /// `xdp_lb` that restores the frame after each run (BPF_PROG_TEST_RUN's repeat loop).
    pub const LB_BENCH: &str = "xdp_lb_bench";
    /// `xdp_lb_bench` on a new 5-tuple every run.
    pub const LB_BENCH_NEW: &str = "xdp_lb_bench_new";
    /// `xdp_lb_bench` without counters.
    pub const LB_BENCH_UNCOUNTED: &str = "xdp_lb_bench_uncounted";
    /// `xdp_lb_bench` with one fixed flow entry in place of the flow table.
    pub const LB_BENCH_FIXED_FLOW: &str = "xdp_lb_bench_fixed_flow";
    /// The restoring after a grow of the head, and the same with a second grow and shrink
    /// (their difference: what a grow and a shrink cost).
    pub const BENCH_FLOOR: &str = "xdp_bench_floor";
    pub const BENCH_FLOOR_TWICE: &str = "xdp_bench_floor_twice";
    /// A switch port of the test fabric; the non-VIP baseline.
    pub const PASS: &str = "xdp_pass";
    /// The XDP_TX ceiling.
    pub const TX: &str = "xdp_tx";
    /// `xdp_tx` after reading a word of the frame's IP header.
    pub const TOUCH_TX: &str = "xdp_touch_tx";
    /// `xdp_tx` after an encapsulation with fixed headers, no lookup.
    pub const ENCAP_TX: &str = "xdp_encap_tx";
    /// A traffic generator (run with live frames), a counting sink, and the redirect ceiling.
    pub const GEN: &str = "xdp_gen";
    pub const SINK: &str = "xdp_sink";
    pub const REDIRECT_ALL: &str = "xdp_redirect_all";
    /// A program the verifier refuses, for the tests of how lb reports that.
    pub const REJECT: &str = "xdp_reject";
}

/// The maps only its programs use.
pub mod maps {
    pub const GEN_CONFIG: &str = "LB_GEN_CONFIG";
    pub const SINK_COUNT: &str = "LB_SINK_COUNT";
    pub const REDIRECT_TO: &str = "LB_REDIRECT_TO";
}

/// Loads `program` from the test object.
pub fn load(program: &'static str) -> Result<Dataplane> {
    Dataplane::load_from(OBJECT, program)
}

/// Loads `program` from the test object with `opts`.
pub fn load_with(program: &'static str, opts: &Options) -> Result<Dataplane> {
    Dataplane::load_with(OBJECT, program, opts)
}

/// The test object's own maps, on a data path loaded from it.
pub trait Fabric {
    /// What `xdp_gen` writes into every frame.
    fn set_gen_config(&mut self, cfg: GenConfig) -> Result<()>;
    /// Where `xdp_redirect_all` sends every frame.
    fn set_redirect_to(&mut self, ifindex: u32) -> Result<()>;
    /// Frames `xdp_sink` has counted (over all CPUs).
    fn sink_count(&self) -> Result<u64>;
}

fn map_err(name: &'static str) -> impl Fn(aya::maps::MapError) -> DataplaneError {
    move |e| DataplaneError::Limit(format!("map {name}: {e}"))
}

impl Fabric for Dataplane {
    fn set_gen_config(&mut self, cfg: GenConfig) -> Result<()> {
        let name = maps::GEN_CONFIG;
        let mut m: Array<_, GenConfig> =
            Array::try_from(self.map_mut(name)?).map_err(map_err(name))?;
        m.set(0, cfg, 0).map_err(map_err(name))
    }

    fn set_redirect_to(&mut self, ifindex: u32) -> Result<()> {
        self.allow_egress(ifindex)?;
        let name = maps::REDIRECT_TO;
        let mut m: Array<_, u32> = Array::try_from(self.map_mut(name)?).map_err(map_err(name))?;
        m.set(0, ifindex, 0).map_err(map_err(name))
    }

    fn sink_count(&self) -> Result<u64> {
        let name = maps::SINK_COUNT;
        let m: PerCpuArray<_, u64> =
            PerCpuArray::try_from(self.map(name)?).map_err(map_err(name))?;
        Ok(m.get(&0, 0).map_err(map_err(name))?.iter().sum())
    }
}
