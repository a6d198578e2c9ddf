//! The test object: what only the benchmarks and the tests load, beside the balancer as the
//! agent runs it. The balancer's benchmark variants (the frame restored after each run, a new
//! flow every run, no counters, one fixed flow entry in place of the table), the baselines
//! (`xdp_tx`, `xdp_pass` and the floors), a test fabric's ports, a live-frames generator and
//! sink, and a program the verifier must refuse. Never attached by the agent.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod bench;
#[cfg(target_arch = "bpf")]
mod maps;
#[cfg(target_arch = "bpf")]
mod programs;
#[cfg(target_arch = "bpf")]
mod variants;

/// The same license as the production object's.
#[cfg(target_arch = "bpf")]
#[unsafe(no_mangle)]
#[unsafe(link_section = "license")]
pub static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

#[cfg(not(target_arch = "bpf"))]
fn main() {}
