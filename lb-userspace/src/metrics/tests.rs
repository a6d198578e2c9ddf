use super::*;
use crate::stats::BackendStats;

#[test]
fn names_labels_and_values() {
    let vips = [VipStats {
        name: "web".into(),
        address: "198.19.0.100:80".into(),
        protocol: "tcp".into(),
        forwarding: "ipip".into(),
        packets: 10,
        bytes: 640,
        pps: 0.0,
        bps: 0.0,
        new_flows: 2,
        backends: vec![BackendStats {
            address: "198.18.0.11".into(),
            weight: 100,
            packets: 10,
            bytes: 640,
            pps: 0.0,
            bps: 0.0,
            new_flows: 2,
            share: 100.0,
            health: "down".into(),
            drain: false,
            in_ring: false,
            active_flows: Some(4),
            syn_retries: 3,
            down_reason: Some("active".into()),
            ejections: 1,
        }],
    }];
    let outcomes = [Outcome {
        name: "drop_no_backend".into(),
        packets: 3,
        bytes: 192,
        pps: 0.0,
    }];
    let times = HealthTimes::default();
    let b: IpAddr = "198.18.0.11".parse().unwrap();
    times.observe("web", b, true, Duration::from_millis(3));
    times.observe("web", b, false, Duration::from_secs(1));
    times.local_fault("web", b);
    let control = ListenerCounts {
        evicted: 7,
        ..Default::default()
    };
    let metrics = ListenerCounts::default();
    let snapshot = |times| Snapshot {
        outcomes: &outcomes,
        vips: &vips,
        health_times: times,
        flows_inserted: 4,
        flow_hits: 6,
        flows_unrecorded: 0,
        flow_entries: Some(5),
        flow_cached: Some(3),
        flow_capacity: 1024,
        ring_builds: 3,
        ring_writes: 2,
        reloads: 1,
        reload_failures: 0,
        last_reload: std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        listeners: [("control", control), ("metrics", metrics)],
        interfaces: vec![("eth0".into(), true), ("eth1".into(), false)],
    };
    let text = render(&snapshot(&times));
    for line in [
        "lb_vip_packets_total{vip=\"web\",address=\"198.19.0.100:80\",protocol=\"tcp\",forwarding=\"ipip\"} 10",
        "lb_backend_bytes_total{vip=\"web\",backend=\"198.18.0.11\"} 640",
        "lb_dropped_packets_total{reason=\"no_backend\"} 3",
        "lb_outcome_packets_total{outcome=\"drop_no_backend\"} 3",
        "lb_flow_hits_total 6",
        "lb_ring_writes_total 2",
        "lb_ring_builds_total 3",
        "lb_vip_backends_live{vip=\"web\"} 0",
        "lb_vip_backends{vip=\"web\"} 1",
        "lb_flow_table_entries 5",
        "lb_flow_cache_entries 3",
        "lb_flow_table_capacity 1024",
        "lb_config_last_reload_success_timestamp_seconds 1700000000",
        "lb_api_connections_total{listener=\"control\",result=\"evicted\"} 7",
        "lb_api_connections_open{listener=\"metrics\"} 0",
        "lb_interface_attached{interface=\"eth1\"} 0",
        "lb_health_check_local_faults_total{vip=\"web\",backend=\"198.18.0.11\"} 1",
        "lb_config_reloads_total{result=\"applied\"} 1",
        "lb_build_info{version=",
        "lb_backend_new_flows_total{vip=\"web\",backend=\"198.18.0.11\"} 2",
        "lb_backend_up{vip=\"web\",backend=\"198.18.0.11\"} 0",
        "lb_backend_active_flows{vip=\"web\",backend=\"198.18.0.11\"} 4",
        "lb_health_check_duration_seconds_count{vip=\"web\",backend=\"198.18.0.11\",result=\"ok\"} 1",
        "lb_health_check_duration_seconds_bucket{le=\"0.0016\",vip=\"web\",backend=\"198.18.0.11\",result=\"ok\"} 0",
        "lb_health_check_duration_seconds_bucket{le=\"0.0032\",vip=\"web\",backend=\"198.18.0.11\",result=\"ok\"} 1",
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
    times.forget("web", b);
    let text = render(&snapshot(&times));
    assert!(!text.contains("result=\"ok\""), "{text}");
}

#[test]
fn the_text_format_names_counter_and_info_families_as_their_samples() {
    let om = "# HELP lb_build lb's \\\"build\\\"\n# TYPE lb_build info\nlb_build_info{version=\"1\"} 1\n\
              # HELP lb_x Xs.\n# TYPE lb_x counter\n# UNIT lb_x bytes\nlb_x_total 3\n\
              # HELP lb_g G.\n# TYPE lb_g gauge\nlb_g 2\n# EOF\n";
    assert_eq!(
        to_text(om),
        "# HELP lb_build_info lb's \"build\"\n# TYPE lb_build_info gauge\nlb_build_info{version=\"1\"} 1\n\
         # HELP lb_x_total Xs.\n# TYPE lb_x_total counter\nlb_x_total 3\n\
         # HELP lb_g G.\n# TYPE lb_g gauge\nlb_g 2\n"
    );
}

#[test]
fn negotiation_follows_the_scrapers_accept_header() {
    // What Prometheus 2.x sends.
    let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    for (accept, want) in [
        (prometheus, Format::OpenMetrics),
        ("text/plain;version=0.0.4", Format::Text),
        ("", Format::Text),
        ("*/*", Format::Text),
        ("application/openmetrics-text", Format::OpenMetrics),
        ("application/openmetrics-text;q=0", Format::Text),
        (
            "text/plain;q=0.9,application/openmetrics-text;q=0.5",
            Format::Text,
        ),
    ] {
        assert_eq!(Format::negotiate(accept), want, "{accept:?}");
    }
}
