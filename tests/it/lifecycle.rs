//! Stopping as the SPEC says: SIGTERM/SIGINT now, SIGQUIT gracefully (shutdown_delay,
//! in-flight requests finish, idle keep-alive connections close, shutdown_timeout), from
//! whatever signal dispositions the process inherited, and never a connection accepted by
//! a process that is going away.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::*;

const GET: &str = "GET / HTTP/1.1\r\nHost: t\r\n\r\n";

fn exits_0_within(p: &mut Proxy, within: Duration) {
    let status = p
        .wait_exit(within)
        .unwrap_or_else(|| panic!("still running after {within:?}:\n{}", p.stderr()));
    assert_eq!(status.code(), Some(0), "{status}\n{}", p.stderr());
}

fn sigquit_lets_a_slow_request_finish_then_exits_0(driver: &str) {
    let slow = Backend::start(|_, c| {
        c.sleep_ms(700);
        c.ok("slow");
    });
    let mut p = Proxy::start_runtime(
        driver,
        "workers = 1\npin_workers = false\nshutdown_timeout = \"10s\"",
        &single(slow.addr()),
    );
    let mut c = Client::connect(p.addr);
    c.send(GET);
    assert!(slow.wait_requests(1, Duration::from_secs(2)));
    p.signal(libc::SIGQUIT);
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        p.is_running(),
        "SIGQUIT did not wait for the request in flight"
    );
    assert!(
        TcpStream::connect(p.addr).is_err(),
        "a draining process still accepts"
    );
    let r = c.read_response();
    assert_eq!((r.status, r.text().as_str()), (200, "slow"));
    assert!(r.says_close(), "{}", r.head_text());
    exits_0_within(&mut p, Duration::from_secs(3));
}
both_drivers!(sigquit_lets_a_slow_request_finish_then_exits_0);

fn sigquit_closes_idle_keepalive_connections_at_once(driver: &str) {
    let a = Backend::named("a");
    let mut p = Proxy::start_runtime(
        driver,
        "workers = 2\npin_workers = false\nshutdown_timeout = \"20s\"",
        &single(a.addr()),
    );
    let mut idle: Vec<Client> = (0..8).map(|_| Client::connect(p.addr)).collect();
    for c in &mut idle {
        assert_eq!(c.request(GET).status, 200);
    }
    let started = Instant::now();
    p.signal(libc::SIGQUIT);
    for c in &mut idle {
        assert!(
            c.closed_within(Duration::from_secs(2)),
            "an idle connection stayed open"
        );
    }
    exits_0_within(&mut p, Duration::from_secs(3));
    assert!(started.elapsed() < Duration::from_secs(3));
}
both_drivers!(sigquit_closes_idle_keepalive_connections_at_once);

fn shutdown_delay_keeps_accepting_before_draining(driver: &str) {
    let a = Backend::named("a");
    let mut p = Proxy::start_runtime(
        driver,
        "workers = 1\npin_workers = false\nshutdown_delay = \"800ms\"",
        &single(a.addr()),
    );
    let mut kept = Client::connect(p.addr);
    assert_eq!(kept.request(GET).status, 200);
    let quit = Instant::now();
    p.signal(libc::SIGQUIT);
    std::thread::sleep(Duration::from_millis(200));
    // Within the delay: new connections and kept ones are served.
    assert_eq!(get(p.addr, "/").status, 200);
    assert_eq!(kept.request(GET).status, 200);
    exits_0_within(&mut p, Duration::from_secs(3));
    assert!(
        quit.elapsed() >= Duration::from_millis(800),
        "left before shutdown_delay"
    );
    assert!(TcpStream::connect(p.addr).is_err());
}
both_drivers!(shutdown_delay_keeps_accepting_before_draining);

/// Keep-alive clients must reconnect during the delay, not after it: behind a moving virtual
/// IP (keepalived), only a new connection reaches the node that now holds the address.
fn responses_during_shutdown_delay_say_connection_close(driver: &str) {
    let a = Backend::named("a");
    let mut p = Proxy::start_runtime(
        driver,
        "workers = 2\npin_workers = false\nshutdown_delay = \"2s\"",
        &single(a.addr()),
    );
    let mut kept = Client::connect(p.addr);
    let before = kept.request(GET);
    assert!(!before.says_close(), "{}", before.head_text());
    p.signal(libc::SIGQUIT);
    // The control thread takes the signal asynchronously; 2 s of delay leave ample margin.
    std::thread::sleep(Duration::from_millis(300));
    assert!(p.is_running(), "left before shutdown_delay");
    let during = kept.request(GET);
    assert_eq!(during.status, 200);
    assert!(during.says_close(), "{}", during.head_text());
    assert!(kept.closed_within(Duration::from_secs(1)));
    // A fresh connection is still served, and told to close too.
    let fresh = Client::connect(p.addr).request(GET);
    assert_eq!(fresh.status, 200);
    assert!(fresh.says_close(), "{}", fresh.head_text());
    exits_0_within(&mut p, Duration::from_secs(5));
}
both_drivers!(responses_during_shutdown_delay_say_connection_close);

fn shutdown_timeout_ends_a_stream_that_runs_too_long(driver: &str) {
    let b = Backend::start(|_, c| {
        c.chunked_head(200, &[("Content-Type", "text/event-stream")]);
        for i in 0..100 {
            if !c.chunk(format!("data: {i}\n\n").as_bytes()) {
                return;
            }
            c.sleep_ms(100);
        }
        c.end_chunks();
    });
    let mut p = Proxy::start(driver, &single(b.addr()));
    let mut c = Client::connect(p.addr);
    c.send(GET);
    assert_eq!(c.read_head().status, 200);
    let quit = Instant::now();
    p.signal(libc::SIGQUIT);
    // The harness sets shutdown_timeout = 1s.
    exits_0_within(&mut p, Duration::from_secs(4));
    assert!(
        quit.elapsed() >= Duration::from_millis(900),
        "the stream was cut before shutdown_timeout"
    );
}
both_drivers!(shutdown_timeout_ends_a_stream_that_runs_too_long);

fn signals_work_when_started_with_them_ignored(driver: &str) {
    let a = Backend::named("a");
    let runtime = "workers = 1\npin_workers = false";
    // `-s quit` through the pid file, as an operator would.
    let mut p = Proxy::start_with_ignored(driver, runtime, &single(a.addr()), "INT QUIT HUP");
    assert_eq!(get(p.addr, "/").status, 200);
    let config = p.config.to_string_lossy().into_owned();
    let out = Proxy::spawn_raw(&["-s", "quit", "-c", &config]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    exits_0_within(&mut p, Duration::from_secs(3));
    // SIGINT and SIGHUP (reload) too.
    let mut p = Proxy::start_with_ignored(driver, runtime, &single(a.addr()), "INT QUIT HUP");
    p.reload(&single(a.addr()));
    p.signal(libc::SIGINT);
    exits_0_within(&mut p, Duration::from_secs(3));
}
both_drivers!(signals_work_when_started_with_them_ignored);

/// Right after the process is gone, its port refuses connections: none is accepted into a
/// queue nobody will read (a pending io_uring accept must not outlive the process).
fn port_refuses_connections_as_soon_as_the_process_exited(driver: &str) {
    let a = Backend::named("a");
    for sig in [
        libc::SIGTERM,
        libc::SIGQUIT,
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGINT,
    ] {
        let mut p = Proxy::start_runtime(
            driver,
            "workers = 2\npin_workers = false",
            &single(a.addr()),
        );
        assert_eq!(get(p.addr, "/").status, 200);
        p.signal(sig);
        let status = p.wait_exit_closely(Duration::from_secs(3));
        assert_eq!(status.and_then(|s| s.code()), Some(0), "signal {sig}");
        for _ in 0..20 {
            assert!(
                TcpStream::connect(p.addr).is_err(),
                "signal {sig}: the port accepted a connection after the process exited"
            );
        }
    }
}
both_drivers!(port_refuses_connections_as_soon_as_the_process_exited);
