//! `lb stats --watch`, the live view, driven through a pseudo-terminal as a person would.
use std::{
    io::{Read, Write},
    net::SocketAddr,
    time::Duration,
};

use lb_tests::{
    TempDir,
    lab::{self, BACKENDS4, OneArm, VIP4},
    traffic,
};

/// `lb stats --watch` in a pseudo-terminal, its screen rebuilt by a terminal emulator
/// (vt100): it renders every VIP and backend, refreshes each second with the new counts, and
/// quits on `q` (leaving the alternate screen) or Ctrl-C.
#[test]
#[ignore = "needs root and network namespaces: run through `cargo xtask test`"]
fn watch_renders_refreshes_and_quits_on_q_or_ctrl_c() {
    use std::sync::mpsc;

    let topo = OneArm::new();
    let tmp = TempDir::new("watch");
    let sock = tmp.path("lb.sock");
    let cfg = lab::dns_config(&sock);
    let vip: SocketAddr = format!("{VIP4}:53").parse().unwrap();
    let _serving = lab::serve(&topo.backends, vip, true, &tmp, |i| format!("be{i}"));
    let (_agent, _) = lab::start_agent(&topo.lb, &cfg, &tmp);

    let (rows, cols) = (40, 150);
    let (mut child, rx, mut writer) = watch_in_pty(&sock, rows, cols);
    let mut term = vt100::Parser::new(rows, cols, 0);
    let mut until = |what: &str, cond: &dyn Fn(&str) -> bool| {
        let end = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let screen = term.screen().contents();
            if cond(&screen) {
                return screen;
            }
            let left = end.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(bytes) => term.process(&bytes),
                Err(_) => panic!("the view never showed {what}; screen:\n{screen}"),
            }
        }
    };

    let first = until("the VIP and its backends", &|s| {
        s.contains("dns") && BACKENDS4.iter().all(|b| s.contains(b)) && s.contains("update 1")
    });
    assert!(first.contains("0 packets"), "{first}");
    assert!(first.contains("unchecked"), "{first}");
    assert!(first.contains("flow table"), "{first}");
    until("a refresh", &|s| s.contains("update 3"));

    const N: u32 = 60;
    let t = traffic::udp_requests(&topo.client, vip, N);
    assert_eq!(t.ok(), N, "{t:?}");
    let after = until("the burst's packets", &|s| {
        s.contains(&format!("{N} packets")) && !s.contains(" 0 new flows")
    });
    // Every backend got some, and its bar and share are drawn.
    assert!(after.contains('█'), "{after}");
    assert!(after.contains('%'), "{after}");

    writer.write_all(b"q").unwrap();
    writer.flush().unwrap();
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(child.wait());
    });
    let status = done_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("lb stats --watch did not quit on q")
        .unwrap();
    assert!(status.success(), "{status:?}");
    // Whatever it wrote last is in; the terminal is back on its normal screen.
    while let Ok(bytes) = rx.recv_timeout(Duration::from_millis(500)) {
        term.process(&bytes);
    }
    assert!(
        !term.screen().alternate_screen(),
        "the view left the terminal on the alternate screen"
    );

    // Ctrl-C quits too (in raw mode it arrives as a key, not as a signal).
    let (mut child, rx, mut writer) = watch_in_pty(&sock, rows, cols);
    let mut term = vt100::Parser::new(rows, cols, 0);
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while !term.screen().contents().contains("update 1") {
        let left = end.saturating_duration_since(std::time::Instant::now());
        term.process(&rx.recv_timeout(left).expect("the view never rendered"));
    }
    writer.write_all(b"\x03").unwrap();
    writer.flush().unwrap();
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(child.wait());
    });
    let status = done_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("lb stats --watch did not quit on Ctrl-C")
        .unwrap();
    assert!(status.success(), "{status:?}");
}

/// `lb stats --watch` in a pseudo-terminal of `rows` × `cols`: the child, what it writes (in
/// chunks), and the keyboard.
#[allow(clippy::type_complexity)]
fn watch_in_pty(
    sock: &std::path::Path,
    rows: u16,
    cols: u16,
) -> (
    Box<dyn portable_pty::Child + Send + Sync>,
    std::sync::mpsc::Receiver<Vec<u8>>,
    Box<dyn Write + Send>,
) {
    use portable_pty::{CommandBuilder, PtySize, native_pty_system};
    let pair = native_pty_system()
        .openpty(PtySize {
            rows,
            cols,
            pixel_width: 0,
            pixel_height: 0,
        })
        .expect("a pseudo-terminal");
    let mut cmd = CommandBuilder::new(lb_tests::lb_bin());
    cmd.args(["stats", "--watch", "--socket", sock.to_str().unwrap()]);
    cmd.env("TERM", "xterm-256color");
    let child = pair
        .slave
        .spawn_command(cmd)
        .expect("start lb stats --watch");
    drop(pair.slave);
    let mut reader = pair.master.try_clone_reader().unwrap();
    let writer = pair.master.take_writer().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    (child, rx, writer)
}
