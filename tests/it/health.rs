//! Active health checks end to end: the real proxy probes real backends on 127.0.0.1 and
//! takes a server out after `fall` failed probes (a bad status, a POST probe the engine
//! fails, a stall past `timeout`, a refused connection) and back after `rise` passed
//! ones; the state survives a reload; `/metrics` shows it. Probes are told from client
//! requests by their path and `User-Agent: ringway-health`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use crate::admin::{scrape, sum};
use crate::support::*;

const WAIT: Duration = Duration::from_secs(5);

/// A backend answering `/health` with the status in `health` (a probe) and anything else
/// with 200 and its `name` (a client request).
fn checked(name: &'static str, health: &Arc<AtomicU16>) -> Backend {
    let health = health.clone();
    Backend::start(move |req, c| {
        if req.path() == "/health" {
            let status = health.load(Ordering::SeqCst);
            c.respond(status, &[], b"health");
        } else {
            c.ok(name);
        }
    })
}

/// Client requests (not probes) that reached `b`.
fn client_requests(b: &Backend) -> usize {
    b.requests()
        .iter()
        .filter(|r| r.header("user-agent") != Some("ringway-health"))
        .count()
}

/// Probes that reached `b`.
fn probes(b: &Backend) -> usize {
    b.requests().len() - client_requests(b)
}

/// Sends `n` requests on one connection; returns how many each backend name answered.
fn spread(proxy: std::net::SocketAddr, n: usize) -> (usize, usize) {
    let mut c = Client::connect(proxy);
    let mut a = 0;
    for _ in 0..n {
        let r = c.request("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(r.status, 200, "{}", r.head_text());
        if r.text() == "a" {
            a += 1;
        }
    }
    (a, n - a)
}

/// Group `u` (round robin) over `servers` with `check` as its health_check, and an
/// admin listener on `$BIND2`.
fn checked_config(servers: &[std::net::SocketAddr], check: &str) -> String {
    let list: Vec<String> = servers
        .iter()
        .map(|a| server(*a, "max_fails = 0"))
        .collect();
    format!(
        "[admin]\nbind = \"$BIND2\"\n\n{}",
        config("", &format!("health_check = {{ {check} }}"), &list)
    )
}

/// Waits (bounded) for `needle` in the proxy's stderr; panics with stderr if it never came.
#[track_caller]
fn wait_log(p: &Proxy, needle: &str, count: usize) {
    assert!(
        wait_until(WAIT, || p.stderr_count(needle) >= count),
        "no {needle:?} logged:\n{}",
        p.stderr()
    );
}

fn a_failing_health_endpoint_takes_the_server_out_after_fall_and_back_after_rise(driver: &str) {
    let b_health = Arc::new(AtomicU16::new(200));
    let (a, b) = (
        checked("a", &Arc::new(AtomicU16::new(200))),
        checked("b", &b_health),
    );
    let check = "path = \"/health\", interval = \"50ms\", timeout = \"1s\", rise = 2, fall = 3";
    let p = Proxy::start(driver, &checked_config(&[a.addr(), b.addr()], check));
    // Both passed a first probe (one probe at a time per server: a second one has come
    // only after the first was counted): from then on b needs `fall` failures, not one.
    assert!(wait_until(WAIT, || probes(&a) >= 2 && probes(&b) >= 2));
    assert_eq!(spread(p.addr, 4), (2, 2));

    b_health.store(500, Ordering::SeqCst);
    let down = format!(
        "upstream u server {} is down after 3 failed checks: status 500",
        b.addr()
    );
    wait_log(&p, &down, 1);
    let before = client_requests(&b);
    assert_eq!(spread(p.addr, 10), (10, 0));
    assert_eq!(
        client_requests(&b),
        before,
        "a request reached the server that is down"
    );

    b_health.store(200, Ordering::SeqCst);
    let up = format!(
        "upstream u server {} is up after 2 passed checks: status 200",
        b.addr()
    );
    wait_log(&p, &up, 1);
    assert_eq!(spread(p.addr, 4), (2, 2));
    assert_eq!(p.stderr_count("is down after"), 1, "{}", p.stderr());
}
both_drivers!(a_failing_health_endpoint_takes_the_server_out_after_fall_and_back_after_rise);

/// The 1-token generation probe: `/health` says 200, but the engine behind
/// `/v1/completions` is dead.
fn a_post_probe_with_a_body_takes_out_a_server_whose_engine_is_dead(driver: &str) {
    let engine_dead = |name: &'static str, dead: bool| {
        Backend::start(move |req, c| match (req.method.as_str(), req.path()) {
            ("GET", "/health") => {
                c.ok("ok");
            }
            ("POST", "/v1/completions") if dead => {
                c.respond(500, &[], b"engine dead");
            }
            _ => {
                c.ok(name);
            }
        })
    };
    let (a, b) = (engine_dead("a", false), engine_dead("b", true));
    let body = r#"{"prompt":"hi","max_tokens":1}"#;
    let check = format!(
        "path = \"/v1/completions\", method = \"POST\", body = '{body}', \
         headers = {{ Content-Type = \"application/json\" }}, interval = \"50ms\", fall = 1"
    );
    let p = Proxy::start(driver, &checked_config(&[a.addr(), b.addr()], &check));
    let down = format!(
        "upstream u server {} is down after 1 failed check: status 500",
        b.addr()
    );
    wait_log(&p, &down, 1);
    let before = client_requests(&b);
    assert_eq!(spread(p.addr, 6), (6, 0));
    assert_eq!(client_requests(&b), before);
    // What the probe sent: the configured request, framed by the prober.
    let probe = b
        .requests()
        .into_iter()
        .find(|r| r.header("user-agent") == Some("ringway-health"))
        .expect("a probe reached b");
    assert_eq!(
        (probe.method.as_str(), probe.target.as_str()),
        ("POST", "/v1/completions")
    );
    assert_eq!(probe.body, body.as_bytes());
    assert_eq!(probe.header("content-type"), Some("application/json"));
    assert_eq!(probe.header("host"), Some(b.addr().to_string().as_str()));
    assert_eq!(probe.header("connection"), Some("close"));
    // a's engine answers: it stays in.
    assert_eq!(p.stderr_count("is down after"), 1, "{}", p.stderr());
}
both_drivers!(a_post_probe_with_a_body_takes_out_a_server_whose_engine_is_dead);

fn a_stalled_server_fails_by_timeout(driver: &str) {
    let a = checked("a", &Arc::new(AtomicU16::new(200)));
    // Accepts, reads the probe, never answers it (until the backend is dropped).
    let b = Backend::start(|req, c| {
        if req.path() == "/health" {
            c.sleep_ms(10_000);
        }
        c.ok("b");
    });
    let check = "path = \"/health\", interval = \"50ms\", timeout = \"300ms\", fall = 1";
    let started = Instant::now();
    let p = Proxy::start(driver, &checked_config(&[a.addr(), b.addr()], check));
    let down = format!(
        "upstream u server {} is down after 1 failed check: timed out after 300ms",
        b.addr()
    );
    wait_log(&p, &down, 1);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(spread(p.addr, 4), (4, 0));
}
both_drivers!(a_stalled_server_fails_by_timeout);

fn a_killed_server_fails_by_refused_connection(driver: &str) {
    let a = checked("a", &Arc::new(AtomicU16::new(200)));
    let b = checked("b", &Arc::new(AtomicU16::new(200)));
    let b_addr = b.addr();
    let check = "path = \"/health\", interval = \"50ms\", rise = 2, fall = 2";
    let p = Proxy::start(driver, &checked_config(&[a.addr(), b_addr], check));
    // A second probe means the first was counted: b passed before it goes away.
    assert!(wait_until(WAIT, || probes(&b) >= 2));
    drop(b);
    let down = format!(
        "upstream u server {b_addr} is down after 2 failed checks: connect: Connection refused"
    );
    wait_log(&p, &down, 1);
    assert_eq!(spread(p.addr, 4), (4, 0));
}
both_drivers!(a_killed_server_fails_by_refused_connection);

fn a_connect_check_without_path_takes_out_a_refusing_server(driver: &str) {
    let a = checked("a", &Arc::new(AtomicU16::new(200)));
    let dead = dead_addr();
    let p = Proxy::start(
        driver,
        &checked_config(&[a.addr(), dead], "interval = \"50ms\", fall = 1"),
    );
    let down = format!("upstream u server {dead} is down after 1 failed check: connect:");
    wait_log(&p, &down, 1);
    // A few more intervals: a connect check sends no request, yet a stays in.
    std::thread::sleep(Duration::from_millis(250));
    assert_eq!(p.stderr_count("is down after"), 1, "{}", p.stderr());
    assert_eq!(probes(&a), 0);
    assert_eq!(spread(p.addr, 3), (3, 0));
}
both_drivers!(a_connect_check_without_path_takes_out_a_refusing_server);

fn health_state_survives_a_reload_for_a_server_that_stays(driver: &str) {
    let b_health = Arc::new(AtomicU16::new(500));
    let (a, b) = (
        checked("a", &Arc::new(AtomicU16::new(200))),
        checked("b", &b_health),
    );
    let check = "path = \"/health\", interval = \"50ms\", rise = 3, fall = 1";
    let mut p = Proxy::start(driver, &checked_config(&[a.addr(), b.addr()], check));
    wait_log(&p, &format!("server {} is down after 1", b.addr()), 1);
    // The reload changes the group (a third server) and keeps b: b stays out...
    let c = checked("c", &Arc::new(AtomicU16::new(200)));
    p.reload(&checked_config(&[a.addr(), b.addr(), c.addr()], check));
    let before = client_requests(&b);
    let mut client = Client::connect(p.addr);
    for _ in 0..6 {
        let r = client.request("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_ne!(r.text(), "b");
    }
    assert_eq!(client_requests(&b), before);
    // ...and its count goes on: it comes back after `rise` passes, logged once.
    b_health.store(200, Ordering::SeqCst);
    wait_log(
        &p,
        &format!("server {} is up after 3 passed checks", b.addr()),
        1,
    );
    assert!(wait_until(WAIT, || {
        let r = client.request("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        r.text() == "b"
    }));
    assert_eq!(p.stderr_count("is down after"), 1, "{}", p.stderr());
}
both_drivers!(health_state_survives_a_reload_for_a_server_that_stays);

fn metrics_show_server_up_and_health_changes(driver: &str) {
    let b_health = Arc::new(AtomicU16::new(200));
    let (a, b) = (
        checked("a", &Arc::new(AtomicU16::new(200))),
        checked("b", &b_health),
    );
    let check = "path = \"/health\", interval = \"50ms\", rise = 1, fall = 1";
    let p = Proxy::start(driver, &checked_config(&[a.addr(), b.addr()], check));
    let admin = p.extra[0];
    let b_s = b.addr().to_string();
    let server = |to: &'static str| [("upstream", "u"), ("server", b_s.as_str()), ("to", to)];
    let up = [("upstream", "u"), ("server", b_s.as_str())];
    let changes = "ringway_upstream_health_changes_total";
    let text = scrape(admin);
    assert_eq!(sum(&text, "ringway_upstream_server_up", &up), 1.0, "{text}");
    assert_eq!(sum(&text, changes, &server("down")), 0.0, "{text}");
    assert!(text.contains(&format!(
        "{changes}{{upstream=\"u\",server=\"{b_s}\",to=\"up\"}} 0\n"
    )));

    b_health.store(503, Ordering::SeqCst);
    wait_log(&p, &format!("server {b_s} is down after"), 1);
    let text = scrape(admin);
    assert_eq!(sum(&text, "ringway_upstream_server_up", &up), 0.0, "{text}");
    assert_eq!(sum(&text, changes, &server("down")), 1.0, "{text}");
    assert_eq!(sum(&text, changes, &server("up")), 0.0, "{text}");

    b_health.store(200, Ordering::SeqCst);
    wait_log(&p, &format!("server {b_s} is up after"), 1);
    let text = scrape(admin);
    assert_eq!(sum(&text, "ringway_upstream_server_up", &up), 1.0, "{text}");
    assert_eq!(sum(&text, changes, &server("up")), 1.0, "{text}");
    let a_s = a.addr().to_string();
    let a_down = [("upstream", "u"), ("server", a_s.as_str()), ("to", "down")];
    assert_eq!(sum(&text, changes, &a_down), 0.0, "{text}");
}
both_drivers!(metrics_show_server_up_and_health_changes);

/// Hang detection: the engine keeps `/health` at 200 but its generations hang. A `/health`
/// probe keeps such a server in; a 1-token generation probe with a `timeout` takes it out.
fn a_generation_probe_with_a_timeout_takes_out_a_server_whose_generations_hang(driver: &str) {
    let engine = |name: &'static str, hangs: bool| {
        Backend::start(move |req, c| match (req.method.as_str(), req.path()) {
            ("GET", "/health") => {
                c.ok("ok");
            }
            ("POST", "/v1/completions") if hangs => {
                // No token ever comes (until the prober gives up and closes).
                c.read_some(Duration::from_secs(10));
            }
            _ => {
                c.ok(name);
            }
        })
    };
    let (a, b) = (engine("a", false), engine("b", true));
    let body = r#"{"prompt":"hi","max_tokens":1}"#;
    let generation = format!(
        "path = \"/v1/completions\", method = \"POST\", body = '{body}', \
         interval = \"100ms\", timeout = \"300ms\", fall = 1"
    );
    let servers = [a.addr(), b.addr()].map(|s| server(s, "max_fails = 0"));
    // Group `u` probes generations; group `plain` probes /health on the same servers.
    let text = format!(
        "[admin]\nbind = \"$BIND2\"\n\n{}\n[upstreams.plain]\nservers = [{}]\n\
         health_check = {{ path = \"/health\", interval = \"100ms\", fall = 1 }}\n",
        config("", &format!("health_check = {{ {generation} }}"), &servers),
        servers.join(", ")
    );
    let p = Proxy::start(driver, &text);
    let down = format!(
        "upstream u server {} is down after 1 failed check: timed out after 300ms",
        b.addr()
    );
    wait_log(&p, &down, 1);
    assert_eq!(spread(p.addr, 6), (6, 0));
    let b_s = b.addr().to_string();
    let text = scrape(p.extra[0]);
    let up = |group: &str| {
        let labels = [("upstream", group), ("server", b_s.as_str())];
        sum(&text, "ringway_upstream_server_up", &labels)
    };
    assert_eq!((up("u"), up("plain")), (0.0, 1.0), "{text}");
}
both_drivers!(a_generation_probe_with_a_timeout_takes_out_a_server_whose_generations_hang);
