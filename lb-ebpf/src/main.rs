//! The production object: the programs the agent attaches and nothing else. `xdp_lb` balances
//! (the agent loads it a second time, capture hook on, for `lb capture`); `xdp_decap`
//! decapsulates on backends without the kernel's ipip module; `tc_probe` sends the health
//! probes through the tunnel, as the clients' packets go. Their way, step by step, is the
//! library's (`lib.rs` lists the steps in order).
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod programs {
    use aya_ebpf::{
        macros::{classifier, xdp},
        programs::{TcContext, XdpContext},
    };
    use lb_ebpf::way::{self, Production};

    // `inline(always)` on the entry points: `#[xdp]` wraps the function in the program's
    // entry and leaves the inlining of one into the other to LLVM, which outlines a big body:
    // every packet would then pay a BPF-to-BPF call and its return through the SRSO thunk.
    #[xdp]
    #[inline(always)]
    pub fn xdp_lb(ctx: XdpContext) -> u32 {
        way::run_lb::<Production>(&ctx)
    }

    #[xdp]
    #[inline(always)]
    pub fn xdp_decap(ctx: XdpContext) -> u32 {
        way::run_decap(&ctx)
    }

    #[classifier]
    pub fn tc_probe(ctx: TcContext) -> i32 {
        lb_ebpf::probe::probe(&ctx)
    }
}

/// The programs' license as the kernel reads it: GPL-compatible, as the helpers they call
/// (`bpf_fib_lookup`, the ring buffer's) require. The same as `license` in this crate's
/// Cargo.toml (`MIT OR GPL-2.0-only`); a test checks that the two agree.
#[cfg(target_arch = "bpf")]
#[unsafe(no_mangle)]
#[unsafe(link_section = "license")]
pub static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

#[cfg(not(target_arch = "bpf"))]
fn main() {}
