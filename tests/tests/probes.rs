//! Health probes against real servers in a namespace of their own: HTTPS against
//! `openssl s_server` with a certificate from a test CA (verified against the CA, against the
//! wrong one, and not at all; a wrong status, a body match), and UDP against a server that
//! answers, answers something else, and stops.
use std::{net::SocketAddr, path::Path, time::Duration};

use lb::{
    config::{Health, HealthKind},
    health::Target,
};
use lb_tests::{Netns, TempDir, lab::wait_for, traffic};

/// A probe of `kind` made as the agent makes it, from inside `ns`.
fn probe(ns: &Netns, h: Health, target: SocketAddr) -> Result<(), String> {
    lb_tests::probe_from(ns, h, &Target::direct(target))
}

fn health(kind: HealthKind) -> Health {
    Health {
        kind,
        timeout: Duration::from_millis(500),
        ..Health::default()
    }
}

/// A CA and a server certificate it signs (for `backend.lb.test` and 198.18.0.1), and a second
/// CA that signs nothing here.
fn certificates(dir: &Path) {
    let d = dir.display();
    lb_tests::sh(&format!(
        "cd {d} \
         && openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=lb-test-ca 2>/dev/null \
         && openssl req -x509 -newkey rsa:2048 -nodes -keyout other.key -out other.pem -days 2 -subj /CN=lb-other-ca 2>/dev/null \
         && openssl req -newkey rsa:2048 -nodes -keyout srv.key -out srv.csr -subj /CN=backend.lb.test 2>/dev/null \
         && printf 'subjectAltName=DNS:backend.lb.test,IP:198.18.0.1\\n' > san.ext \
         && openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem -days 2 -extfile san.ext 2>/dev/null \
         && mkdir -p www \
         && printf 'HTTP/1.0 200 OK\\r\\n\\r\\nhealthy\\n' > www/ok \
         && printf 'HTTP/1.0 503 Service Unavailable\\r\\n\\r\\n' > www/sick"
    ));
}

#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn https_probes_verify_the_certificate_and_check_the_answer() {
    lb_tests::require_root();
    let ns = Netns::new("tls");
    ns.sh("ip addr add 198.18.0.1/32 dev lo");
    let tmp = TempDir::new("tls");
    certificates(&tmp.0);
    let dir = tmp.0.display().to_string();
    let _server = ns.spawn(
        &[
            "sh",
            "-c",
            &format!(
                "cd {dir}/www && exec openssl s_server -accept 198.18.0.1:8443 -cert ../srv.pem -key ../srv.key -HTTP -quiet"
            ),
        ],
        tmp.path("s_server.log"),
    );
    let target: SocketAddr = "198.18.0.1:8443".parse().unwrap();
    let https = |path: &str, f: &dyn Fn(&mut Health)| {
        let mut h = health(HealthKind::Https);
        h.path = path.into();
        h.ca = Some(tmp.path("ca.pem"));
        h.sni = Some("backend.lb.test".into());
        f(&mut h);
        probe(&ns, h, target)
    };
    wait_for(Duration::from_secs(10), "openssl s_server", || {
        https("/ok", &|_| {}).is_ok()
    });
    assert_eq!(https("/ok", &|h| h.body = Some("healthy".into())), Ok(()));
    // The certificate holds the address too: no name needed.
    assert_eq!(https("/ok", &|h| h.sni = None), Ok(()));
    // s_server -HTTP answers with the file as it is: a 503.
    let sick = https("/sick", &|_| {}).unwrap_err();
    assert!(sick.contains("status 503, expected 200"), "{sick}");
    let body = https("/ok", &|h| h.body = Some("sick".into())).unwrap_err();
    assert!(body.contains("lacks \"sick\""), "{body}");
    let wrong_ca = https("/ok", &|h| h.ca = Some(tmp.path("other.pem"))).unwrap_err();
    assert!(wrong_ca.contains("TLS with"), "{wrong_ca}");
    let wrong_name = https("/ok", &|h| h.sni = Some("other.lb.test".into())).unwrap_err();
    assert!(wrong_name.contains("TLS with"), "{wrong_name}");
    // Not verified: any certificate will do.
    assert_eq!(
        https("/ok", &|h| {
            h.ca = Some(tmp.path("other.pem"));
            h.verify = false;
        }),
        Ok(())
    );
    // Plain HTTP to a TLS port is no answer.
    let mut http = health(HealthKind::Http);
    http.path = "/ok".into();
    assert!(probe(&ns, http, target).is_err());
}

#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn udp_probes_expect_an_answer() {
    lb_tests::require_root();
    let ns = Netns::new("udp");
    ns.sh("ip addr add 198.18.0.1/32 dev lo");
    let target: SocketAddr = "198.18.0.1:5353".parse().unwrap();
    let udp = |expect: Option<&str>| {
        let mut h = health(HealthKind::Udp);
        h.send = b"ping".to_vec();
        h.expect = expect.map(|e| e.as_bytes().to_vec());
        probe(&ns, h, target)
    };
    let server = traffic::udp_server(&ns, target, "pong from be0");
    assert_eq!(udp(Some("pong")), Ok(()));
    assert_eq!(udp(None), Ok(()));
    let other = udp(Some("dns")).unwrap_err();
    assert!(other.contains("lacks"), "{other}");
    drop(server);
    // Nobody listening: the kernel's port unreachable comes back as a refusal.
    let refused = udp(Some("pong")).unwrap_err();
    assert!(refused.contains("refused"), "{refused}");
    let _again = traffic::udp_server(&ns, target, "pong from be0");
    assert_eq!(udp(Some("pong")), Ok(()));
}

/// Through the agent: a UDP service that stops answering is down within interval × fall, and
/// up again after `rise` answers.
#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn a_udp_backend_that_stops_answering_goes_down_and_comes_back() {
    use lb_tests::{
        lab::{self, VIP4, backend4},
        life::Setup,
    };
    let s = Setup::custom(
        3,
        3,
        |_| {},
        |c| {
            let mut c = c + &format!(
                "\n[[vip]]\nname = \"dns\"\naddress = \"{VIP4}:53\"\nprotocol = \"udp\"\n\n\
                 [vip.health]\nkind = \"udp\"\nsend = \"ping\"\nexpect = \"be\"\n\
                 interval = \"200ms\"\ntimeout = \"200ms\"\nrise = 2\nfall = 2\ndamping = false\n"
            );
            for i in 0..3 {
                c += &format!("\n[[vip.backend]]\naddress = \"{}\"\n", backend4(i));
            }
            c
        },
    );
    // Bound to the VIP: a UDP server on the wildcard address answers from the backend's own
    // address, which neither the clients nor the probe through the tunnel accept.
    let vip: SocketAddr = format!("{VIP4}:53").parse().unwrap();
    let mut servers: Vec<Option<traffic::Server>> = (0..3)
        .map(|i| {
            Some(traffic::udp_server(
                &s.topo.backends[i],
                vip,
                &format!("be{i}"),
            ))
        })
        .collect();
    let health = |addr: &str| {
        lab::status(&s.socket)
            .vips
            .iter()
            .find(|v| v.name == "dns")
            .and_then(|v| v.backends.iter().find(|b| b.address == addr).cloned())
            .map(|b| b.health)
            .unwrap_or_default()
    };
    let be0 = backend4(0);
    wait_for(Duration::from_secs(5), "be0 up", || health(&be0) == "up");
    // Its last probe's time, in the status (a UDP round trip here: well under the timeout).
    let last = lab::status(&s.socket).vips[1].backends[0].last_probe_ms;
    assert!(last.is_some_and(|ms| ms > 0.0 && ms < 200.0), "{last:?}");
    servers[0] = None;
    let took = wait_for(Duration::from_secs(2), "be0 down", || {
        health(&be0) == "down"
    });
    assert!(
        took <= Duration::from_millis(200 * 2 + 200 + 500),
        "{took:?}"
    );
    assert_eq!(health(&backend4(1)), "up");
    servers[0] = Some(traffic::udp_server(&s.topo.backends[0], vip, "be0"));
    wait_for(Duration::from_secs(2), "be0 up again", || {
        health(&be0) == "up"
    });
}
