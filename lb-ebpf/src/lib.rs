//! The data path of lb: the balancer's way through the packet, one module a step, and the
//! backends' decapsulation. The objects are built from the binaries: `main.rs`, the programs
//! the agent attaches; `bin/lb-ebpf-test`, those and the programs only the benchmarks and the
//! tests load.
//!
//! The balancer's way reads like the packet's, its steps listed below in order:
//! `guard` → `parse` → `flow_table` → `vip` → `admit` → `ring` → `encap` → `send`, with `count`
//! counting each packet's outcome exactly once; [`way`] walks them.
#![cfg_attr(target_arch = "bpf", no_std)]
// Map keys are passed by reference on purpose: `get(key)` by value (`impl Borrow<K>`) copies
// the key into a second stack slot first, which costs the hit path instructions.
#![allow(clippy::needless_borrows_for_generic_args)]

// The ground floor: what a packet's fate is, what the parser makes of it, header layouts and
// numbers, checksums, and bounds-checked access to the frame. It imports no step.
#[cfg(target_arch = "bpf")]
mod csum;
#[cfg(target_arch = "bpf")]
pub mod mem;
#[cfg(target_arch = "bpf")]
pub mod packet;
#[cfg(target_arch = "bpf")]
mod verdict;
#[cfg(target_arch = "bpf")]
mod wire;

// The maps, shared by the steps.
#[cfg(target_arch = "bpf")]
pub mod maps;

// The packet's way, in its order ([`way`] calls them so).
// 1. Traffic for no VIP address turned away before parsing.
#[cfg(target_arch = "bpf")]
mod guard;
// 2. Ethernet, IPv4/IPv6, TCP/UDP ports; ICMP to a VIP handed to `icmp`.
#[cfg(target_arch = "bpf")]
mod parse;
// 3. The flow table: an established flow keeps its backend.
#[cfg(target_arch = "bpf")]
pub mod flow_table;
// 4. The VIP, for a packet the table does not settle.
#[cfg(target_arch = "bpf")]
mod vip;
// 5. The VIP's source ACL and per-source new-flow limit.
#[cfg(target_arch = "bpf")]
mod admit;
// 6. The VIP's Maglev ring picks the backend; the table records it.
#[cfg(target_arch = "bpf")]
mod ring;
// 7. The outer headers.
#[cfg(target_arch = "bpf")]
mod encap;
// 8. Where it goes: the cached next hop or the kernel's routes; too big: ICMP back.
#[cfg(target_arch = "bpf")]
mod send;
// 9. Every packet's outcome counted once.
#[cfg(target_arch = "bpf")]
pub mod count;

// The way walked: each step called in its order, the outcome counted once.
#[cfg(target_arch = "bpf")]
pub mod way;

// Beside the way: ICMP (errors to their flows, echo answers, too-big replies), the capture
// hook, the program's log lines, the backends' decapsulation, the health probes' tunnel.
#[cfg(target_arch = "bpf")]
mod capture;
#[cfg(target_arch = "bpf")]
mod decap;
#[cfg(target_arch = "bpf")]
mod icmp;
#[cfg(target_arch = "bpf")]
pub mod probe;
#[cfg(target_arch = "bpf")]
mod trace;

/// The verifier rejects any program from which this is reachable, so it never runs.
#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
