use super::*;

#[test]
fn fingerprints_follow_the_addresses_not_their_order() {
    let a: Vec<IpAddr> = ["198.18.0.11", "198.18.0.12", "198.18.0.13"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    let w: Vec<(IpAddr, u32)> = a.iter().map(|x| (*x, 1)).collect();
    let mut rev = w.clone();
    rev.reverse();
    let ra: Vec<IpAddr> = rev.iter().map(|x| x.0).collect();
    let f1 = fingerprint(&build(&w, 65537), &a);
    // The same set listed in another order: other indices, the same ring, the same print.
    assert_eq!(fingerprint(&build(&rev, 65537), &ra), f1);
    // One backend fewer: another ring.
    assert_ne!(fingerprint(&build(&w[..2], 65537), &a[..2]), f1);
    // No backend at all still prints.
    assert_eq!(fingerprint(&build(&[], 7), &[]).len(), 16);
}
use std::net::Ipv4Addr;

fn addrs(n: usize) -> Vec<(IpAddr, u32)> {
    (0..n)
        .map(|i| {
            (
                IpAddr::V4(Ipv4Addr::new(
                    198,
                    18,
                    1 + (i / 200) as u8,
                    (i % 200) as u8 + 10,
                )),
                100,
            )
        })
        .collect()
}

#[test]
fn equal_weights_differ_by_at_most_one_slot() {
    for n in [1, 2, 3, 10, 100] {
        let ring = build(&addrs(n), 65537);
        let counts = slot_counts(&ring, n);
        let (lo, hi) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(hi - lo <= 1, "n={n}: {lo}..{hi}");
        assert_eq!(counts.iter().sum::<u64>(), 65537);
    }
}

#[test]
fn weights_are_respected_within_one_percent() {
    let mut b = addrs(4);
    for (i, w) in [100, 50, 25, 300].into_iter().enumerate() {
        b[i].1 = w;
    }
    let counts = slot_counts(&build(&b, 65537), 4);
    let total_w: u32 = b.iter().map(|x| x.1).sum();
    for (i, c) in counts.iter().enumerate() {
        let want = 65537.0 * b[i].1 as f64 / total_w as f64;
        assert!(
            (*c as f64 - want).abs() <= 0.01 * want,
            "backend {i}: {c} slots, want {want:.0}"
        );
    }
}

#[test]
fn zero_weight_takes_no_slot_and_no_backend_means_empty() {
    let mut b = addrs(3);
    b[1].1 = 0;
    let counts = slot_counts(&build(&b, 251), 3);
    assert_eq!(counts[1], 0);
    assert!(counts[0] > 0 && counts[2] > 0);
    b.iter_mut().for_each(|x| x.1 = 0);
    assert!(build(&b, 251).iter().all(|&s| s == NO_BACKEND));
    assert!(build(&[], 7).iter().all(|&s| s == NO_BACKEND));
}

#[test]
fn removing_one_of_n_moves_at_most_its_share_plus_one_percent() {
    for n in [3, 10, 50] {
        let all = addrs(n);
        let before = build(&all, 65537);
        for gone in [0, n / 2, n - 1] {
            let rest: Vec<_> = all
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != gone)
                .map(|(_, b)| *b)
                .collect();
            let after = build(&rest, 65537);
            let moved = before
                .iter()
                .zip(&after)
                .filter(|(b, a)| all[**b as usize].0 != rest[**a as usize].0)
                .count();
            let share = moved as f64 / 65537.0;
            assert!(
                share <= 1.0 / n as f64 + 0.01,
                "n={n} without {gone}: {share:.4} moved"
            );
        }
    }
}

#[test]
fn the_ring_depends_on_the_set_not_the_order() {
    let b = addrs(10);
    let mut rev = b.clone();
    rev.reverse();
    let (r1, r2) = (build(&b, 65537), build(&rev, 65537));
    // Same backend (by address) in every slot.
    assert!(
        r1.iter()
            .zip(&r2)
            .all(|(x, y)| b[*x as usize].0 == rev[*y as usize].0)
    );
}

/// Maglev as first written here, step by step with `%`: the reference the faster walk
/// must match slot for slot, since balancers of different versions share a fleet.
fn reference(backends: &[(IpAddr, u32)], m: u32) -> Vec<u32> {
    let mut order: Vec<usize> = (0..backends.len()).filter(|&i| backends[i].1 > 0).collect();
    let mut ring = vec![NO_BACKEND; m as usize];
    if order.is_empty() {
        return ring;
    }
    order.sort_by_key(|&i| key(&backends[i].0));
    let max_w = order.iter().map(|&i| backends[i].1).max().unwrap() as u64;
    let m = m as u64;
    let mut walk: Vec<(u64, u64, u64)> = order
        .iter()
        .map(|&i| {
            let k = key(&backends[i].0);
            let skip = hash_bytes(SKIP_SEED, &k) as u64 % (m - 1) + 1;
            (0, skip, 0)
        })
        .collect();
    let offsets: Vec<u64> = order
        .iter()
        .map(|&i| hash_bytes(OFFSET_SEED, &key(&backends[i].0)) as u64 % m)
        .collect();
    let mut filled = 0;
    loop {
        for (pos, &i) in order.iter().enumerate() {
            walk[pos].2 += backends[i].1 as u64;
            while walk[pos].2 >= max_w {
                walk[pos].2 -= max_w;
                loop {
                    let (j, skip, _) = walk[pos];
                    walk[pos].0 += 1;
                    let c = ((offsets[pos] + j * skip) % m) as usize;
                    if ring[c] == NO_BACKEND {
                        ring[c] = i as u32;
                        break;
                    }
                }
                filled += 1;
                if filled == m {
                    return ring;
                }
            }
        }
    }
}

#[test]
fn the_walk_matches_the_reference_slot_for_slot() {
    let v6 = |i: u16| IpAddr::from([0xfd00, 0, 0, 0, 0, 0, 7, i]);
    for (n, m) in [
        (1, 7),
        (3, 251),
        (10, 65537),
        (100, 65537),
        (257, 65537),
        (40, 655373),
    ] {
        let mut b = addrs(n);
        assert_eq!(build(&b, m), reference(&b, m), "n={n} m={m}");
        // Uneven weights, a zero among them, and IPv6 next to IPv4.
        for (i, x) in b.iter_mut().enumerate() {
            x.1 = [1, 7, 100, 0, 33][i % 5];
            if i % 3 == 1 {
                x.0 = v6(i as u16);
            }
        }
        assert_eq!(build(&b, m), reference(&b, m), "weighted n={n} m={m}");
    }
}

#[test]
fn inverses_are_inverses() {
    for (a, m) in [
        (1u64, 7u64),
        (3, 7),
        (40503, 65537),
        (65536, 65537),
        (12345, 655373),
    ] {
        assert_eq!(a * inverse(a, m) % m, 1, "{a} mod {m}");
    }
    // No inverse where a and m share a factor: the endgame is then left out.
    assert_eq!(inverse(6, 9), 0);
}

#[test]
fn the_endgame_picks_what_integer_arithmetic_picks() {
    // The doubles must be exact up to the largest ring the endgame takes (m < 2^24),
    // with and without AVX2, for free lists as long as a key can index.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for m in [7u64, 65537, 655373, 16_777_213] {
        let c = endgame::Consts::new(m);
        let longest = (1u64 << ((m - 1).leading_zeros() - 32)).min(4096);
        for round in 0..300 {
            let (offset, inv) = (rnd() % m, 1 + rnd() % (m - 1));
            let len = if round % 10 == 0 {
                longest
            } else {
                1 + rnd() % longest.min(300)
            };
            let free: Vec<f64> = (0..len).map(|_| (rnd() % m) as f64).collect();
            let j = |s: f64| (s as u64 + m - offset) as u128 * inv as u128 % m as u128;
            let want = (0..free.len()).min_by_key(|&i| (j(free[i]), i)).unwrap();
            let back = (m - offset) as f64;
            assert_eq!(
                endgame::first_in(&free, back, inv as f64, &c),
                want,
                "m={m}"
            );
            assert_eq!(
                endgame::first_in_portable(&free, back, inv as f64, &c),
                want,
                "m={m}"
            );
        }
    }
}

#[test]
fn rings_are_those_of_earlier_versions() {
    // Fingerprints of rings built by earlier releases: a balancer upgraded in a fleet must
    // keep sending every 5-tuple where the others do.
    let b = addrs(10);
    let a: Vec<IpAddr> = b.iter().map(|x| x.0).collect();
    assert_eq!(fingerprint(&build(&b, 65537), &a), "42b105a043041142");
    let mut w = addrs(5);
    for (i, x) in w.iter_mut().enumerate() {
        x.1 = 1 + i as u32 * 10;
    }
    let a: Vec<IpAddr> = w.iter().map(|x| x.0).collect();
    assert_eq!(fingerprint(&build(&w, 251), &a), "5ba3dbd32dcbe9b5");
}

#[test]
fn different_sets_give_different_rings() {
    let a = build(&addrs(3), 251);
    let b = build(&addrs(4)[1..], 251);
    assert_ne!(a, b);
}

#[test]
fn the_step_is_the_portable_step() {
    // The hand-written step against the plain one, at the wrap and around it, for rings as
    // small as 2 slots and as large as u32 allows.
    for m in [2u32, 7, 251, 65537, 655373, 16_777_213, u32::MAX - 4] {
        for skip in [1, 2, m / 3 + 1, m / 2, m - 2, m - 1] {
            if skip == 0 || skip >= m {
                continue;
            }
            let wrap_at = m - skip;
            let around = |x: u32| [x.saturating_sub(1), x, x.saturating_add(1)];
            for c in [0, 1, m / 2]
                .into_iter()
                .chain(around(wrap_at))
                .chain([m - 1])
                .filter(|&c| c < m)
            {
                let want = ((c as u64 + skip as u64) % m as u64) as u32;
                assert_eq!(
                    step_portable(c, skip, wrap_at),
                    want,
                    "m={m} skip={skip} c={c}"
                );
                assert_eq!(step(c, skip, wrap_at), want, "m={m} skip={skip} c={c}");
            }
        }
    }
}
