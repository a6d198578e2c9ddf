//! The XDP programs of lb: `xdp_lb` (the balancer), `xdp_decap` (for backends without the
//! kernel's ipip module), and the trivial `xdp_pass` / `xdp_tx` (a test fabric's ports, and
//! the benchmark baselines).
//!
//! The balancer's way reads like the packet's, one module a step, listed below in order:
//! `guard` → `parse` → `flow_table` → `vip` → `ring` → `encap` → `send`, with `count`
//! counting each packet's outcome exactly once (in `programs::finish`).
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
// Map keys are passed by reference on purpose: `get(key)` by value (`impl Borrow<K>`) copies
// the key into a second stack slot first, which costs the hit path instructions.
#![allow(clippy::needless_borrows_for_generic_args)]

// The ground floor: what a packet's fate is, header layouts and numbers, checksums, and
// bounds-checked access to the frame. It imports no step.
#[cfg(target_arch = "bpf")]
mod csum;
#[cfg(target_arch = "bpf")]
mod mem;
#[cfg(target_arch = "bpf")]
mod verdict;
#[cfg(target_arch = "bpf")]
mod wire;

// The maps, shared by the steps.
#[cfg(target_arch = "bpf")]
mod maps;

// The packet's way, in its order (the entry points in `programs` call them so).
// 1. Traffic for no VIP address turned away before parsing.
#[cfg(target_arch = "bpf")]
mod guard;
// 2. Ethernet, IPv4/IPv6, TCP/UDP ports; ICMP errors parsed through to their flows.
#[cfg(target_arch = "bpf")]
mod parse;
// 3. The flow table: an established flow keeps its backend.
#[cfg(target_arch = "bpf")]
mod flow_table;
// 4. The VIP, for a packet the table does not settle.
#[cfg(target_arch = "bpf")]
mod vip;
// 5. The VIP's Maglev ring picks the backend; the table records it.
#[cfg(target_arch = "bpf")]
mod ring;
// 6. The outer headers.
#[cfg(target_arch = "bpf")]
mod encap;
// 7. Where it goes: the cached next hop or the kernel's routes; too big: ICMP back.
#[cfg(target_arch = "bpf")]
mod icmp;
#[cfg(target_arch = "bpf")]
mod send;
// 8. Every packet's outcome counted once.
#[cfg(target_arch = "bpf")]
mod count;

// Beside the way: the entry points, the capture hook, the program's log lines, the backends'
// decapsulation, and the benchmarks' programs.
#[cfg(target_arch = "bpf")]
mod bench;
#[cfg(target_arch = "bpf")]
mod capture;
#[cfg(target_arch = "bpf")]
mod decap;
#[cfg(target_arch = "bpf")]
mod programs;
#[cfg(target_arch = "bpf")]
mod trace;

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
