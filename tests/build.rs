//! The test object's path, from lb-userspace's build script (its `links` metadata), for
//! `include_bytes_aligned!` in `src/test_object.rs`.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_LB_EBPF_TEST_OBJECT");
    let path = std::env::var("DEP_LB_EBPF_TEST_OBJECT")
        .expect("lb-userspace's build script names the test object");
    println!("cargo:rustc-env=LB_TEST_OBJECT={path}");
}
