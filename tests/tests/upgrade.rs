//! An upgrade from a release whose flow table was the kernel's LRU hash map (`LB_FLOWS`): its
//! flows move into today's table at start and keep their backends. One whose configuration
//! map was smaller (before the GUE port): it is made anew, and GUE works.
use lb::dataplane::nix_ifindex;
use lb_common::{FAMILY_V4, FlowKey, FlowValue, PROTO_TCP, map_names};
use lb_tests::{TempDir, fixture::*};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x} ")).collect()
}

#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn flows_of_the_old_lru_table_keep_their_backend() {
    let env = env();
    let tmp = TempDir::new("upgrade");
    let maps = tmp.pin_dir().join("maps");
    std::fs::create_dir_all(&maps).unwrap();
    let old = maps.join(map_names::FLOWS_LRU);
    // The old table as the release before pinned it, holding 40 flows that the ring spreads
    // over three backends, every one recorded for the third (id 2, as `program` numbers them).
    lb_tests::sh(&format!(
        "bpftool map create {} type lru_hash key 40 value 16 entries 4096 name {}",
        old.display(),
        map_names::FLOWS_LRU
    ));
    let ports: Vec<u16> = (0..40).map(|i| 31000 + i).collect();
    for &p in &ports {
        let mut key = FlowKey {
            proto: PROTO_TCP,
            family: FAMILY_V4,
            ..Default::default()
        };
        key.src[..4].copy_from_slice(&CLIENT4);
        key.dst[..4].copy_from_slice(&v4("198.19.0.100"));
        key.ports[..2].copy_from_slice(&p.to_be_bytes());
        key.ports[2..].copy_from_slice(&80u16.to_be_bytes());
        let value = FlowValue {
            backend: 2,
            hash: 0,
            last_seen_ns: 0,
        };
        // Safety: both are plain repr(C) data without padding bytes of their own.
        let (k, v) = unsafe {
            (
                std::slice::from_raw_parts(&key as *const FlowKey as *const u8, 40),
                std::slice::from_raw_parts(&value as *const FlowValue as *const u8, 16),
            )
        };
        lb_tests::sh(&format!(
            "bpftool map update pinned {} key hex {} value hex {}",
            old.display(),
            hex(k),
            hex(v)
        ));
    }
    env.ns.run(|| {
        let mut dp = load_pinned(&tmp.pin_dir(), "load xdp_lb");
        assert_eq!(dp.adopted_flows(), Some((40, 40)));
        assert!(!old.exists(), "the old table's pin is still there");
        let vips = program(&mut dp);
        let (third_id, third_mac) = (vips[0].backends[2].0, vips[0].backends[2].2);
        assert_eq!(third_id, 2);
        let ifindex = nix_ifindex("eth0").unwrap();
        let mut send = |p: Pkt| {
            let (action, out) = test_run(&mut dp, ifindex, &p.build());
            assert_eq!(action, XDP_TX);
            <[u8; 6]>::try_from(&out[..6]).unwrap()
        };
        let tcp = |p: u16| Pkt::new("198.19.0.100", 80, PROTO_TCP).sport(p);
        for &p in &ports {
            assert_eq!(send(tcp(p).established()), third_mac, "flow from port {p}");
        }
        // The ring alone would have spread them: SYNs of the same 5-tuples take it.
        let fresh: Vec<[u8; 6]> = ports.iter().map(|&p| send(tcp(p))).collect();
        assert!(
            fresh.iter().any(|m| *m != third_mac),
            "the ring sends all 40 to the third backend: the test proves nothing"
        );
        let f = dp.flow_table().unwrap();
        assert_eq!((f.entries, f.hits, f.inserted), (40, 40, 0), "{f:?}");
    });
}

#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn a_configuration_map_of_an_older_size_is_made_anew() {
    let env = env();
    let tmp = TempDir::new("upgrade-config");
    let maps = tmp.pin_dir().join("maps");
    std::fs::create_dir_all(&maps).unwrap();
    let old = maps.join(map_names::CONFIG);
    // The release before had 28-byte values (no GUE port).
    lb_tests::sh(&format!(
        "bpftool map create {} type array key 4 value 28 entries 1 name {}",
        old.display(),
        map_names::CONFIG
    ));
    let value_size = || {
        let out = lb_tests::sh(&format!("bpftool -j map show pinned {}", old.display()));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["bytes_value"].as_u64().unwrap()
    };
    assert_eq!(value_size(), 28);
    env.ns.run(|| {
        let mut dp = load_pinned(
            &tmp.pin_dir(),
            "load xdp_lb over the older configuration map",
        );
        let vips = program(&mut dp);
        let ifindex = nix_ifindex("eth0").unwrap();
        let p = Pkt::new("198.19.0.107", 80, PROTO_TCP).sport(40000);
        let (action, out) = test_run(&mut dp, ifindex, &p.build());
        let (_, _, want) = encapsulated(&vips[14], &p.build(), p.l3_off(), &p);
        assert_eq!(action, XDP_TX);
        assert_eq!(out, want, "GUE through the new configuration map");
    });
    assert_eq!(value_size(), size_of::<lb_common::Config>() as u64);
}
