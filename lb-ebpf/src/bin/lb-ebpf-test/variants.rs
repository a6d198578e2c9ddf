//! The balancer with one of its parts changed, to measure what that part costs.
use lb_common::FlowSlot;
use lb_ebpf::{
    count::Counting,
    flow_table::{self, Lookup, slots},
    packet::Packet,
};

use crate::maps::BENCH_FLOW;

/// No counters: the difference to the production program is what counting costs.
pub struct Uncounted;

impl Counting for Uncounted {
    const ON: bool = false;
}

impl Lookup for Uncounted {
    const CACHED: bool = true;
    #[inline(always)]
    fn find(pkt: &Packet) -> (Option<(*mut FlowSlot, u32)>, u64) {
        flow_table::find(pkt)
    }
}

/// One array entry, whatever the packet, where the flow cache and the flow-table lookup (and
/// the hash they start with) are: the difference to the production program is what the lookup costs. Every packet
/// shares that entry: never for traffic.
pub struct FixedFlow;

impl Counting for FixedFlow {
    const ON: bool = true;
}

impl Lookup for FixedFlow {
    const CACHED: bool = false;
    #[inline(always)]
    fn find(pkt: &Packet) -> (Option<(*mut FlowSlot, u32)>, u64) {
        match BENCH_FLOW.get_ptr_mut(0) {
            // The slot's own check stands in for the table hash (its low half).
            Some(slot) => {
                let t = slots::tag(slot);
                (Some((slot, t as u32)), t >> 32)
            }
            None => flow_table::find(pkt),
        }
    }
}
