//! What the BPF objects hold, checked without loading them: the production object embedded in
//! `lb`, and the test object only the benchmarks and the tests load.
use object::{Object, ObjectSection, ObjectSymbol, SymbolKind};

/// The names of `object`'s symbols defined in section `section` (functions and data alike).
fn defined_in(object: &[u8], section: &str) -> std::collections::BTreeSet<String> {
    let obj = object::File::parse(object).expect("a BPF object (built by cargo xtask)");
    let Some(index) = obj.section_by_name(section).map(|s| s.index()) else {
        return Default::default();
    };
    obj.symbols()
        .filter(|s| s.section_index() == Some(index) && s.is_global())
        .filter(|s| {
            matches!(
                s.kind(),
                SymbolKind::Text | SymbolKind::Data | SymbolKind::Unknown
            )
        })
        .filter_map(|s| s.name().ok().map(str::to_string))
        .collect()
}

/// The production object holds what the agent attaches and nothing else: `xdp_lb` (loaded a
/// second time, hook on, for a capture), `xdp_decap` and `tc_probe`; every map the agent pins and the
/// per-CPU clock cache; the load-time constants the agent sets. No benchmark or test program,
/// no benchmark map.
#[test]
fn the_production_object_holds_exactly_what_the_agent_attaches() {
    let object = lb::dataplane::OBJECT;
    let programs = defined_in(object, "xdp");
    assert_eq!(
        programs.iter().map(String::as_str).collect::<Vec<_>>(),
        ["xdp_decap", "xdp_lb"],
        "programs"
    );
    assert_eq!(
        defined_in(object, "classifier")
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        ["tc_probe"],
        "classifiers"
    );
    let mut want: Vec<&str> = lb::dataplane::PINNED_MAPS.to_vec();
    want.push("LB_CLOCK");
    want.sort_unstable();
    let maps = defined_in(object, "maps");
    assert_eq!(
        maps.iter().map(String::as_str).collect::<Vec<_>>(),
        want,
        "maps"
    );
    let constants = defined_in(object, ".rodata");
    assert_eq!(
        constants.iter().map(String::as_str).collect::<Vec<_>>(),
        [
            "AYA_LOG_LEVEL",
            "LB_CAPTURE_HOOK",
            "LB_FLOW_SETS",
            "LB_TCP_IDLE_S"
        ],
        "load-time constants"
    );
    // What the tests and benchmarks load is in the other object.
    let test_programs = defined_in(lb_tests::test_object::OBJECT, "xdp");
    for p in [
        "xdp_lb",
        "xdp_lb_bench",
        "xdp_tx",
        "xdp_pass",
        "xdp_gen",
        "xdp_reject",
    ] {
        assert!(
            test_programs.contains(p),
            "{p} not in the test object: {test_programs:?}"
        );
    }
    assert!(defined_in(lb_tests::test_object::OBJECT, "maps").contains("LB_GEN_CONFIG"));
}

/// Each balancer program is one function: `#[xdp]` wraps a body that LLVM may outline, and a
/// BPF-to-BPF call costs every packet a return through the SRSO thunk on this kernel (what
/// that costs: BENCHMARKS.md). Neither object may hold an outlined body of an entry point (v0
/// mangling names the inner function `programs::NAME::NAME`).
#[test]
fn no_entry_point_calls_an_outlined_body() {
    for (object, entries) in [
        (lb::dataplane::OBJECT, &["xdp_lb", "xdp_decap"][..]),
        (
            lb_tests::test_object::OBJECT,
            &[
                "xdp_lb",
                "xdp_lb_fixed_flow",
                "xdp_lb_bench",
                "xdp_lb_bench_new",
                "xdp_lb_bench_uncounted",
                "xdp_lb_bench_fixed_flow",
            ][..],
        ),
    ] {
        let obj = object::File::parse(object).expect("a BPF object (built by cargo xtask)");
        let names: Vec<String> = obj
            .symbols()
            .filter_map(|s| s.name().ok().map(str::to_string))
            .collect();
        for p in entries {
            assert!(names.iter().any(|n| n == p), "no {p} in {names:?}");
            let inner = format!("8programs{}{p}{}{p}", p.len(), p.len());
            let outlined: Vec<&String> = names.iter().filter(|n| n.contains(&inner)).collect();
            assert!(outlined.is_empty(), "{p}'s body is outlined: {outlined:?}");
        }
    }
}

/// The object is built for BPF CPU v3 (`lb-userspace/build.rs`): 32-bit ALU and jump
/// instructions, without which every `u32` the program computes is zero-extended by two
/// shifts before it is compared (shorter and faster code: BENCHMARKS.md). A build
/// that lost the flag still loads and passes every other test, so the instructions are
/// counted here: generic BPF has no JMP32 class at all.
#[test]
fn xdp_lb_is_built_for_cpu_v3() {
    const BPF_ALU: u8 = 0x04;
    const BPF_JMP32: u8 = 0x06;
    let obj =
        object::File::parse(lb::dataplane::OBJECT).expect("the BPF object (built by cargo xtask)");
    let sym = obj
        .symbols()
        .find(|s| s.name() == Ok("xdp_lb"))
        .expect("xdp_lb in the object");
    let section = obj
        .section_by_index(sym.section_index().expect("xdp_lb's section"))
        .expect("xdp_lb's section");
    let data = section.data().expect("section data");
    let start = (sym.address() - section.address()) as usize;
    let code = &data[start..start + sym.size() as usize];
    let (mut alu32, mut jmp32) = (0, 0);
    for insn in code.chunks_exact(8) {
        match insn[0] & 0x07 {
            BPF_ALU => alu32 += 1,
            BPF_JMP32 => jmp32 += 1,
            _ => {}
        }
    }
    let total = code.len() / 8;
    assert!(
        jmp32 > 20 && alu32 > 100,
        "xdp_lb ({total} instructions) has {jmp32} JMP32 and {alu32} 32-bit ALU instructions: \
         not built for BPF CPU v3"
    );
}

/// The object declares its license (a `license` section; without one aya would say "GPL"
/// for it), GPL-compatible for the kernel, and the same as lb-ebpf's Cargo.toml says.
#[test]
fn the_object_declares_the_license_its_crate_has() {
    for object in [lb::dataplane::OBJECT, lb_tests::test_object::OBJECT] {
        let obj = object::File::parse(object).expect("a BPF object (built by cargo xtask)");
        let section = obj.section_by_name("license").expect("a license section");
        assert_eq!(section.data().unwrap(), b"Dual MIT/GPL\0");
    }
    let manifest = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../lb-ebpf/Cargo.toml"
    ))
    .unwrap();
    let license = manifest
        .lines()
        .find_map(|l| l.strip_prefix("license = "))
        .expect("lb-ebpf declares a license");
    assert_eq!(
        license, "\"MIT OR GPL-2.0-only\"",
        "the crate and the object disagree"
    );
}

/// `lb --version` names the version, the commit, the build date and the embedded object's
/// hash (FNV-1a 64 of its bytes): two binaries with the same hash run the same programs.
#[test]
fn the_version_names_the_object_it_embeds() {
    let out = std::process::Command::new(lb_tests::lb_bin())
        .arg("--version")
        .output()
        .expect("run lb --version");
    let text = String::from_utf8_lossy(&out.stdout);
    let hash = lb::dataplane::OBJECT
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ *b as u64).wrapping_mul(0x0000_0100_0000_01b3)
        });
    assert!(
        text.starts_with(&format!("lb {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    assert!(text.contains(&format!("BPF object {hash:016x})")), "{text}");
    let date = text
        .split("built ")
        .nth(1)
        .unwrap_or("")
        .get(..10)
        .unwrap_or("");
    let ok = date.len() == 10
        && date.chars().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                c == '-'
            } else {
                c.is_ascii_digit()
            }
        });
    assert!(ok && date.starts_with("20"), "{text}");
}

/// Every XDP program of the test object passes the verifier (but the one made to fail): a
/// benchmark variant the suite does not otherwise load would first fail in `cargo xtask bench`.
/// (LLVM's code for one variant spilled a register it had not written on one path, which the
/// verifier refuses, while the production program verified.)
#[test]
#[ignore = "needs root (BPF): run through `cargo xtask test`"]
fn every_program_of_the_test_object_verifies() {
    let obj = object::File::parse(lb_tests::test_object::OBJECT).expect("the test object");
    let programs: Vec<String> = obj
        .sections()
        .filter_map(|s| s.name().ok().map(str::to_string))
        .filter(|n| n.starts_with("xdp"))
        .collect();
    let names: Vec<String> = obj
        .symbols()
        .filter(|s| {
            s.section_index()
                .and_then(|i| obj.section_by_index(i).ok())
                .and_then(|sec| sec.name().ok().map(|n| n.starts_with("xdp")))
                .unwrap_or(false)
                && s.kind() == object::SymbolKind::Text
                && s.is_global()
        })
        .filter_map(|s| s.name().ok().map(str::to_string))
        .collect();
    assert!(!programs.is_empty() && names.len() >= 10, "{names:?}");
    let mut failed = Vec::new();
    for name in &names {
        if name == "xdp_reject" {
            continue;
        }
        let leaked: &'static str = Box::leak(name.clone().into_boxed_str());
        if let Err(e) = lb_tests::test_object::load(leaked) {
            failed.push(format!("{name}: {e}"));
        }
    }
    assert!(failed.is_empty(), "{failed:#?}");
    eprintln!("verified: {names:?}");
}
