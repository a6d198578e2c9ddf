//! The agent's promise that no packet is lost for want of a neighbour entry: it makes the
//! kernel resolve each backend's next hop before programming it, and marks the entry managed
//! so that the kernel keeps it resolved.
use std::{net::IpAddr, time::Duration};

use lb::neigh::{self, NeighError};
use lb_tests::{Netns, require_root};

fn pair() -> (Netns, Netns) {
    require_root();
    let a = Netns::new("na");
    let b = Netns::new("nb");
    lb_tests::sh(&format!(
        "ip link add eth0 netns {} type veth peer name eth0 netns {}",
        a.name, b.name
    ));
    a.sh("ip link set eth0 up && ip addr add 198.18.0.2/24 dev eth0 && ip addr add fd00:18::2/64 dev eth0 nodad");
    b.sh("ip link set eth0 address 02:00:00:00:00:11 && ip link set eth0 up && ip addr add 198.18.0.11/24 dev eth0 && ip addr add fd00:18::11/64 dev eth0 nodad");
    (a, b)
}

#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn next_hops_are_resolved_managed_and_re_resolved() {
    let (a, _b) = pair();
    for backend in ["198.18.0.11", "fd00:18::11"] {
        let ip: IpAddr = backend.parse().unwrap();
        let hop = a
            .run(|| neigh::ensure(ip, Duration::from_secs(5)))
            .expect(backend);
        assert_eq!(
            (hop.dev.as_str(), hop.hop, hop.lladdr.to_string().as_str()),
            ("eth0", ip, "02:00:00:00:00:11")
        );
        let table = a.sh(&format!("ip neigh show to {backend}"));
        assert!(table.contains("managed"), "{table}");
        // Gone (flushed by an operator, say): asked again, it comes back.
        a.sh(&format!("ip neigh del {backend} dev eth0"));
        let hop = a
            .run(|| neigh::ensure(ip, Duration::from_secs(5)))
            .expect(backend);
        assert_eq!(hop.lladdr.to_string(), "02:00:00:00:00:11");
    }
}

#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn unreachable_next_hops_are_reported() {
    let (a, _b) = pair();
    let silent: IpAddr = "198.18.0.77".parse().unwrap();
    let err = a
        .run(|| neigh::ensure(silent, Duration::from_millis(300)))
        .unwrap_err();
    assert!(matches!(err, NeighError::Unresolved { .. }), "{err}");
    let nowhere: IpAddr = "198.18.9.9".parse().unwrap();
    let err = a
        .run(|| neigh::ensure(nowhere, Duration::from_millis(300)))
        .unwrap_err();
    assert!(err.to_string().contains("198.18.9.9"), "{err}");
}
