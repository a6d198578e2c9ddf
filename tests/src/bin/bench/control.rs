//! The control loop, timed on a live topology: how long from a backend's server dying to its
//! removal from the ring, and from a CLI change to the data path having it.
use std::time::{Duration, Instant};

use lb_tests::{
    TempDir,
    lab::{self, OneArm, VIP4, backend4},
    traffic,
};

const INTERVAL_MS: u64 = 200;
const FALL: u64 = 2;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Returns the report's section.
pub fn measure(quick: bool) -> String {
    let topo = OneArm::with_backends(3);
    let tmp = TempDir::new("bench-ctl");
    let vip: std::net::SocketAddr = format!("{VIP4}:80").parse().unwrap();
    let _decaps: Vec<_> = topo
        .backends
        .iter()
        .map(|b| lab::backend_host(b, "eth0", &tmp))
        .collect();
    let mut servers: Vec<Option<traffic::Server>> = (0..3)
        .map(|i| {
            Some(traffic::tcp_server(
                &topo.backends[i],
                vip,
                &format!("be{i}"),
            ))
        })
        .collect();
    let sock = tmp.path("lb.sock");
    let mut cfg = format!(
        "[agent]\ninterfaces = [\"eth0\"]\nsocket = \"{}\"\nstate_dir = \"{}\"\nsource_v4 = \"198.18.0.2\"\nflow_table_size = 65536\n\n\
         [[vip]]\nname = \"web\"\naddress = \"{VIP4}:80\"\n\n[vip.health]\nkind = \"tcp\"\ninterval = \"{INTERVAL_MS}ms\"\ntimeout = \"200ms\"\nrise = 2\nfall = {FALL}\ndamping = false\n",
        sock.display(),
        tmp.path("state").display()
    );
    for i in 0..3 {
        cfg += &format!("\n[[vip.backend]]\naddress = \"{}\"\n", backend4(i));
    }
    let (_agent, _) = lab::start_agent(&topo.lb, &cfg, &tmp);
    let rounds = if quick { 1 } else { 5 };

    // Failure to removal: kill a server, watch the agent's view every 5 ms.
    let mut removal = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        servers[1] = None;
        lab::wait_for(Duration::from_secs(5), "be1 out of the ring", || {
            std::thread::sleep(Duration::from_millis(5));
            !lab::status(&sock).vips[0].backends[1].in_ring
        });
        removal.push(t.elapsed().as_secs_f64() * 1000.0);
        servers[1] = Some(traffic::tcp_server(&topo.backends[1], vip, "be1"));
        lab::wait_for(Duration::from_secs(5), "be1 back", || {
            lab::status(&sock).vips[0].backends[1].in_ring
        });
    }

    // A CLI change: `lb backend drain` returns once the agent has written the data path.
    let mut cli = Vec::new();
    for i in 0..rounds * 2 {
        let verb = if i % 2 == 0 { "drain" } else { "undrain" };
        let t = Instant::now();
        lab::cli_ok(&sock, &["backend", verb, "--vip", "web", &backend4(0)]);
        cli.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    // The same change through the API, as the CLI sends it, without starting a process.
    let mut api = Vec::new();
    for i in 0..rounds * 2 {
        let verb = if i % 2 == 0 { "drain" } else { "undrain" };
        let t = Instant::now();
        lb::api::request(
            &sock,
            "POST",
            &format!("/v1/vips/web/backends/{}/{verb}", backend4(0)),
            None,
        )
        .expect("api");
        api.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    // And the change is in the data path: new connections avoid the drained backend.
    lab::cli_ok(&sock, &["backend", "drain", "--vip", "web", &backend4(0)]);
    let t = traffic::tcp_connects(&topo.client, vip, 30);
    assert!(
        t.failed.is_empty() && !t.by_server.contains_key("be0"),
        "drain not applied: {t:?}"
    );

    // A backend's neighbour changes its MAC (as the kernel learns it): the netlink event
    // reaches the backend's entry; seen through the API, polled every millisecond. The last
    // round puts the real MAC back.
    lab::cli_ok(&sock, &["backend", "undrain", "--vip", "web", &backend4(0)]);
    let real = topo.backends[0].sh("cat /sys/class/net/eth0/address");
    let real = real.trim().to_string();
    let mut neigh = Vec::new();
    for i in 0..rounds * 2 {
        let mac = if i % 2 == 0 {
            "02:00:00:00:aa:01"
        } else {
            real.as_str()
        };
        let t = Instant::now();
        topo.lb.sh(&format!(
            "ip neigh replace {} dev eth0 lladdr {mac}",
            backend4(0)
        ));
        lab::wait_for(
            Duration::from_secs(2),
            "the entry to follow the MAC",
            || {
                std::thread::sleep(Duration::from_millis(1));
                let body = lb::api::get(&sock, "/v1/status").expect("status");
                let st: lb::status::Status = serde_json::from_str(&body).unwrap();
                st.vips[0].backends[0].next_hop.as_deref() == Some(mac)
            },
        );
        neigh.push(t.elapsed().as_secs_f64() * 1000.0);
    }

    let bound = (INTERVAL_MS * FALL) as f64;
    let neigh_m = median(neigh.clone());
    let removal_m = median(removal.clone());
    let cli_m = median(cli.clone());
    let api_m = median(api.clone());
    format!(
        "Health checks every {INTERVAL_MS} ms, fall {FALL}: a dead backend can take up to interval × fall = {bound:.0} ms to detect (connecting to a closed port fails at once, so no timeout adds to it).\n\n\
         | what | median | all runs | target |\n|---|---|---|---|\n\
         | server killed → out of the ring (seen by `lb status`, polled every 5 ms) | {removal_m:.0} ms | {} | ≤ {:.0} ms {} |\n\
         | API drain/undrain request → applied in the data path (the agent answers after writing the maps) | {api_m:.2} ms | {} | ≤ 10 ms {} |\n\
         | `lb backend drain/undrain` (CLI wall time: the above plus starting the `lb` binary) | {cli_m:.1} ms | {} | ≤ 10 ms {} |\n\
         | a backend's neighbour gets a new MAC (`ip neigh replace`) → the backend's entry has it (the kernel's netlink event; seen through the API, polled every 1 ms) | {neigh_m:.1} ms | {} | ≤ 100 ms {} |\n",
        removal
            .iter()
            .map(|v| format!("{v:.0}"))
            .collect::<Vec<_>>()
            .join(", "),
        bound + 50.0,
        crate::summary::check(
            "a backend failing → out of the ring (median)",
            &format!("≤ interval × fall + 50 ms = {:.0} ms", bound + 50.0),
            format!("{removal_m:.0} ms"),
            removal_m <= bound + 50.0
        ),
        api.iter()
            .map(|v| format!("{v:.2}"))
            .collect::<Vec<_>>()
            .join(", "),
        crate::summary::check(
            "an API change → applied in the data path (median)",
            "≤ 10 ms",
            format!("{api_m:.2} ms"),
            api_m <= 10.0
        ),
        cli.iter()
            .map(|v| format!("{v:.1}"))
            .collect::<Vec<_>>()
            .join(", "),
        crate::summary::check(
            "a CLI change (`lb backend drain`) → applied, wall time (median)",
            "≤ 10 ms",
            format!("{cli_m:.1} ms"),
            cli_m <= 10.0
        ),
        neigh
            .iter()
            .map(|v| format!("{v:.1}"))
            .collect::<Vec<_>>()
            .join(", "),
        crate::summary::check(
            "a neighbour's new MAC → in the backend's entry (median)",
            "≤ 100 ms",
            format!("{neigh_m:.1} ms"),
            neigh_m <= 100.0
        ),
    )
}
