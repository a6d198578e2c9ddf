//! The XDP programs of lb: `xdp_lb` (the balancer), `xdp_decap` (for backends without the
//! kernel's ipip module), and the trivial `xdp_pass` / `xdp_tx` (a test fabric's ports, and
//! the benchmark baselines).
//!
//! The balancer's way reads like the packet's: `parse` → `lookup` → `pick` → `rewrite` →
//! `send`, with `stats` counting each packet's outcome exactly once, in `finish`.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
// Map keys are passed by reference on purpose: `get(key)` by value (`impl Borrow<K>`) copies
// the key into a second stack slot first, which costs the hit path instructions.
#![allow(clippy::needless_borrows_for_generic_args)]

#[cfg(target_arch = "bpf")]
mod bench;
#[cfg(target_arch = "bpf")]
mod capture;
#[cfg(target_arch = "bpf")]
mod csum;
#[cfg(target_arch = "bpf")]
mod decap;
#[cfg(target_arch = "bpf")]
mod flows;
#[cfg(target_arch = "bpf")]
mod icmp;
#[cfg(target_arch = "bpf")]
mod lookup;
#[cfg(target_arch = "bpf")]
mod maps;
#[cfg(target_arch = "bpf")]
mod mem;
#[cfg(target_arch = "bpf")]
mod parse;
#[cfg(target_arch = "bpf")]
mod pick;
#[cfg(target_arch = "bpf")]
mod programs;
#[cfg(target_arch = "bpf")]
mod rewrite;
#[cfg(target_arch = "bpf")]
mod send;
#[cfg(target_arch = "bpf")]
mod stats;
#[cfg(target_arch = "bpf")]
mod trace;
#[cfg(target_arch = "bpf")]
mod verdict;
#[cfg(target_arch = "bpf")]
mod wire;

/// The programs' license as the kernel reads it: GPL-compatible, as the helpers they call
/// (`bpf_fib_lookup`, the ring buffer's) require. The same as `license` in this crate's
/// Cargo.toml (`MIT OR GPL-2.0-only`); a test checks that the two agree.
#[cfg(target_arch = "bpf")]
#[unsafe(no_mangle)]
#[unsafe(link_section = "license")]
pub static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

/// The verifier rejects any program from which this is reachable, so it never runs.
#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[cfg(not(target_arch = "bpf"))]
fn main() {}
