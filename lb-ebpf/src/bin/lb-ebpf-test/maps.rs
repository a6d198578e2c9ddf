//! The maps only the test object's programs use.
use aya_ebpf::{
    macros::map,
    maps::{Array, PerCpuArray},
};
use lb_common::{FlowSlot, GenConfig};

/// What the generator writes into every frame.
#[map(name = "LB_GEN_CONFIG")]
pub static GEN_CONFIG: Array<GenConfig> = Array::with_max_entries(1, 0);

/// The generator's sequence number and the sink's count (per CPU).
#[map(name = "LB_SINK_COUNT")]
pub static SINK_COUNT: PerCpuArray<u64> = PerCpuArray::with_max_entries(2, 0);

/// `xdp_lb_bench_new`'s sequence (per CPU).
#[map(name = "LB_BENCH_SEQ")]
pub static BENCH_SEQ: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

/// The one flow entry that stands in for the flow table in the fixed-flow variants.
#[map(name = "LB_BENCH_FLOW")]
pub static BENCH_FLOW: Array<FlowSlot> = Array::with_max_entries(1, 0);

/// Where `xdp_redirect_all` sends everything.
#[map(name = "LB_REDIRECT_TO")]
pub static REDIRECT_TO: Array<u32> = Array::with_max_entries(1, 0);
