use super::{damping::*, *};
use crate::health::Target;

fn report(target: SocketAddr, up: bool, error: Option<&str>, fault: Option<&str>) -> Report {
    Report {
        vip: "web".into(),
        target,
        up,
        error: error.map(str::to_string),
        local_fault: fault.map(str::to_string),
    }
}

#[tokio::test]
async fn reports_move_backends_keep_the_last_error_and_stale_ones_are_dropped() {
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let mut c = Checks::new(tx);
    let a: IpAddr = "127.0.0.1".parse().unwrap();
    let slow = Health {
        kind: HealthKind::Tcp,
        interval: Duration::from_secs(3600),
        ..Health::default()
    };
    let port1 = SocketAddr::new(a, 1);
    let wanted = |t: SocketAddr| {
        HashMap::from([(("web".to_string(), a), (slow.clone(), Target::direct(t)))])
    };
    c.sync(wanted(port1), true);
    assert!(c.get("web", a).unwrap().up, "a new backend starts as asked");
    assert_eq!(
        c.record(report(port1, false, Some("refused"), None)),
        Some(true)
    );
    // A local fault moves nothing and keeps why it went down.
    assert_eq!(
        c.record(report(port1, false, None, Some("EMFILE"))),
        Some(false)
    );
    let h = c.get("web", a).unwrap();
    assert_eq!(
        (h.up, h.last_error.as_deref(), h.local_fault.as_deref()),
        (false, Some("refused"), Some("EMFILE"))
    );
    // The check moves to another port: the old checker's reports are stale.
    let port2 = SocketAddr::new(a, 2);
    c.sync(wanted(port2), true);
    assert_eq!(c.record(report(port1, true, None, None)), None);
    assert!(
        !c.get("web", a).unwrap().up,
        "the state carries over to the new checker"
    );
    assert_eq!(c.record(report(port2, true, None, None)), Some(true));
    // Not wanted any more: no state, no checker, reports dropped.
    c.sync(HashMap::new(), true);
    assert!(c.get("web", a).is_none());
    assert_eq!(c.record(report(port2, false, Some("x"), None)), None);
    // Wanted again soon after (a VIP removed and re-added): its state is back, not the
    // state of a new backend.
    c.record(report(port2, false, None, None));
    c.ensure("web", a, false);
    assert!(c.get("web", a).unwrap().up, "kept from before");
    c.stop();
}

#[test]
fn a_flapping_backend_is_held_for_longer_the_more_it_flaps() {
    let t0 = Instant::now();
    let s = |n: u64| t0 + Duration::from_secs(n);
    let mut d = Damping {
        penalty: 0.0,
        at: t0,
        held: false,
    };
    // Two changes: a blip, not flapping.
    assert!(!d.change(s(0)));
    assert!(!d.change(s(1)));
    assert!(!d.held);
    // The third in quick succession holds it.
    assert!(d.change(s(2)));
    let first = d.left(s(2));
    assert!(
        first > Duration::from_secs(5) && first < Duration::from_secs(30),
        "{first:?}"
    );
    // Flapping on while held: the hold grows, up to the ceiling.
    for i in 3..40 {
        d.change(s(i));
    }
    let longer = d.left(s(40));
    assert!(longer > first, "{longer:?} after {first:?}");
    assert!(
        longer <= HALF_LIFE.mul_f64((CEILING / REUSE).log2()),
        "{longer:?}"
    );
    // Left alone, it decays and the hold ends.
    assert_eq!(
        d.left(s(40) + longer + Duration::from_secs(1)),
        Duration::ZERO
    );
}

#[tokio::test]
async fn a_held_backend_is_out_of_service_until_released() {
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let mut c = Checks::new(tx);
    let a: IpAddr = "127.0.0.1".parse().unwrap();
    let t = SocketAddr::new(a, 1);
    let slow = Health {
        kind: HealthKind::Tcp,
        interval: Duration::from_secs(3600),
        ..Health::default()
    };
    c.sync(
        HashMap::from([(("web".to_string(), a), (slow, Target::direct(t)))]),
        true,
    );
    assert_eq!(c.record(report(t, false, Some("x"), None)), Some(true));
    assert_eq!(c.record(report(t, true, None, None)), Some(true));
    // The third change takes it down and holds it...
    assert_eq!(c.record(report(t, false, Some("x"), None)), Some(true));
    assert!(c.held_for("web", a).is_some());
    // ...so coming up changes nothing: held.
    assert_eq!(c.record(report(t, true, None, None)), Some(false));
    assert!(!c.in_service("web", a));
    assert!(c.release_held(Instant::now()).is_empty(), "not decayed yet");
    let later = Instant::now() + Duration::from_secs(120);
    assert_eq!(c.release_held(later), vec!["web".to_string()]);
    assert!(c.in_service("web", a));
    c.stop();
}

#[tokio::test]
async fn without_damping_a_flapping_backend_is_never_held() {
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let mut c = Checks::new(tx);
    let a: IpAddr = "127.0.0.1".parse().unwrap();
    let t = SocketAddr::new(a, 1);
    let undamped = Health {
        kind: HealthKind::Tcp,
        interval: Duration::from_secs(3600),
        damping: false,
        ..Health::default()
    };
    c.sync(
        HashMap::from([(("web".to_string(), a), (undamped, Target::direct(t)))]),
        true,
    );
    for i in 0..10 {
        let up = i % 2 == 1;
        assert_eq!(
            c.record(report(t, up, None, None)),
            Some(true),
            "change {i}"
        );
    }
    assert!(c.held_for("web", a).is_none() && c.in_service("web", a));
    c.stop();
}
