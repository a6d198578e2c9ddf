//! `xdp_decap` through BPF_PROG_TEST_RUN: what the balancer sends in each tunnel mode (the
//! fixtures' expected frames: IP-in-IP and GUE, v4 in v4, v6 in v6, v4 in v6) comes out as the
//! client's packet under the frame's Ethernet addresses, with the inner packet's EtherType;
//! what is not ours, or is cut short, passes unchanged and is counted.
use lb::dataplane::{Dataplane, nix_ifindex};
use lb_common::{Counter, PROTO_TCP, PROTO_UDP, program_names};
use lb_tests::fixture::*;

/// The decapsulated frame a tunnelled `frame` must become: its MACs, the inner packet's type,
/// the inner packet (at `inner` bytes into `frame`).
fn stripped(frame: &[u8], inner: usize) -> Vec<u8> {
    let mut out = frame[..12].to_vec();
    let ether_type: u16 = if frame[inner] >> 4 == 4 {
        0x0800
    } else {
        0x86dd
    };
    out.extend_from_slice(&ether_type.to_be_bytes());
    out.extend_from_slice(&frame[inner..]);
    out
}

/// The fixtures' backends, every one this host's for the decapsulation.
fn lab_backends() -> Vec<std::net::IpAddr> {
    ["198.18.0.11", "198.18.0.12", "198.18.0.13"]
        .into_iter()
        .chain(["fd00:18::11", "fd00:18::12", "fd00:18::13"])
        .map(|a| a.parse().unwrap())
        .collect()
}

#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn every_tunnel_the_balancer_sends_is_stripped_and_the_rest_passes() {
    let env = env();
    env.ns.run(|| {
        let mut lb = Dataplane::load(program_names::LB).expect("load xdp_lb");
        let vips = program(&mut lb);
        let mut dp = Dataplane::load(program_names::DECAP).expect("load xdp_decap");
        for a in lab_backends() {
            dp.add_decap_address(a).unwrap();
        }
        dp.set_gue_port(GUE_PORT).unwrap();
        let ifindex = nix_ifindex("eth0").unwrap();
        // (name, VIP, destination, port, protocol, outer headers' length)
        let modes = [
            ("ipip v4", 0, "198.19.0.100", 80, PROTO_TCP, 20),
            ("ipip v6", 3, "fd00:19::100", 53, PROTO_UDP, 40),
            ("gue v4", 14, "198.19.0.107", 80, PROTO_TCP, 28),
            ("gue v4 udp", 15, "198.19.0.107", 54, PROTO_UDP, 28),
            ("gue v6", 16, "fd00:19::107", 80, PROTO_TCP, 48),
            ("ipip v4-in-v6", 18, "198.19.0.108", 80, PROTO_TCP, 40),
            ("gue v4-in-v6", 21, "198.19.0.109", 54, PROTO_UDP, 48),
        ];
        let mut failures = Vec::new();
        let mut run = |name: String, input: Vec<u8>, want: Vec<u8>, counter: Counter| {
            let (action, out, moved) = test_run_counted(&mut dp, ifindex, &input);
            if action != XDP_PASS || out != want || moved != [(counter, 1)] {
                failures.push(format!(
                    "{name}: action {action}, counters {moved:?} (want {counter:?})\n  got  {out:02x?}\n  want {want:02x?}"
                ));
            }
        };
        let mut cases = 0;
        for (name, vip, dst, port, proto, outer) in modes {
            for sport in [40000, 40001, 51234] {
                let p = Pkt::new(dst, port, proto).sport(sport);
                let (_, _, frame) = encapsulated(&vips[vip], &p.build(), p.l3_off(), &p);
                cases += 1;
                let want = stripped(&frame, 14 + outer);
                run(format!("{name}, sport {sport}"), frame.clone(), want, Counter::Decap);
                // Cut inside the inner header: what is left of it is passed on as it is; a GUE
                // packet cut right after its UDP header is not stripped.
                if name.starts_with("gue") {
                    let cut = frame[..14 + outer].to_vec();
                    run(format!("{name}, nothing after UDP"), cut.clone(), cut, Counter::PassMalformed);
                    // Another port is not GUE; another version nibble is not IP.
                    let mut other = frame.clone();
                    other[14 + outer - 6] ^= 1;
                    run(format!("{name}, another port"), other.clone(), other, Counter::PassNotVip);
                    let mut bad = frame.clone();
                    bad[14 + outer] = 0x55;
                    run(format!("{name}, version 5 inside"), bad.clone(), bad, Counter::PassMalformed);
                }
            }
        }
        assert_eq!(cases, 21);
        // To an address that is not this host's: passed unchanged.
        let p = Pkt::new("198.19.0.107", 80, PROTO_TCP).sport(40000);
        let (_, _, mut frame) = encapsulated(&vips[14], &p.build(), p.l3_off(), &p);
        frame[14 + 19] = 99;
        run("gue to another host".into(), frame.clone(), frame, Counter::PassNotVip);
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    });
}
