//! Code generation flags for bpf-linker, which turns the crate's bitcode into BPF.
//!
//! `allows-misaligned-mem-access`: the headers we read are byte arrays (align 1), and without
//! this LLVM splits every multi-byte load and store into single bytes put together with shifts,
//! several times the instructions on every packet. The kernel accepts misaligned packet and
//! map-value access on the architectures that handle it in hardware (x86-64, arm64), which are
//! the ones lb targets; it still insists on aligned stack access, which LLVM keeps.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("bpf") {
        println!("cargo:rustc-link-arg=--cpu-features=+allows-misaligned-mem-access");
    }
}
