//! What the BPF object embedded in `lb` holds, checked without loading it.

/// Each balancer program is one function: `#[xdp]` wraps a body that LLVM may outline, and a
/// BPF-to-BPF call costs every packet a return through the SRSO thunk on this kernel (~10 ns,
/// a third of a non-VIP packet's time). The object must hold no outlined body of an entry point
/// (v0 mangling names the inner function `programs::NAME::NAME`).
#[test]
fn no_entry_point_calls_an_outlined_body() {
    use object::{Object, ObjectSymbol};
    let obj =
        object::File::parse(lb::dataplane::OBJECT).expect("the BPF object (built by cargo xtask)");
    let names: Vec<String> = obj
        .symbols()
        .filter_map(|s| s.name().ok().map(str::to_string))
        .collect();
    assert!(
        names.iter().any(|n| n == "xdp_lb"),
        "no xdp_lb in {names:?}"
    );
    for p in ["xdp_lb", "xdp_lb_bench", "xdp_lb_bench_new", "xdp_decap"] {
        let inner = format!("8programs{}{p}{}{p}", p.len(), p.len());
        let outlined: Vec<&String> = names.iter().filter(|n| n.contains(&inner)).collect();
        assert!(outlined.is_empty(), "{p}'s body is outlined: {outlined:?}");
    }
}
