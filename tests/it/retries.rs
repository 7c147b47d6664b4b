//! The bounds of `next_upstream`: how many tries, for how long, and `off`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::support::*;

fn failing(status: u16) -> Backend {
    Backend::start(move |_, c| {
        c.respond(status, &[], b"failed");
    })
}

fn stalling() -> Backend {
    Backend::start(|_, c| {
        // Longer than the read_timeout the tests set: the proxy gives up first.
        let _ = c.read_some(Duration::from_secs(3));
    })
}

fn total(backends: &[Backend]) -> usize {
    backends.iter().map(Backend::request_count).sum()
}

fn next_upstream_tries_bounds_the_attempts(driver: &str) {
    let backends = [failing(502), failing(502), failing(502), failing(502)];
    let servers: Vec<String> = backends
        .iter()
        .map(|b| server(b.addr(), "max_fails = 0"))
        .collect();
    let upstream = "next_upstream = [\"error\", \"http_502\"]\nnext_upstream_tries = 2";
    let p = Proxy::start(driver, &config("", upstream, &servers));
    let r = get(p.addr, "/");
    assert_eq!(r.status, 502, "{}", r.head_text());
    assert_eq!(total(&backends), 2, "two tries, then the last answer");
}
both_drivers!(next_upstream_tries_bounds_the_attempts);

fn zero_tries_means_every_server_once(driver: &str) {
    let backends = [failing(503), failing(503), failing(503)];
    let servers: Vec<String> = backends
        .iter()
        .map(|b| server(b.addr(), "max_fails = 0"))
        .collect();
    let upstream = "next_upstream = [\"http_503\"]\nnext_upstream_tries = 0";
    let p = Proxy::start(driver, &config("", upstream, &servers));
    assert_eq!(get(p.addr, "/").status, 503);
    for b in &backends {
        assert_eq!(b.request_count(), 1, "every server tried exactly once");
    }
}
both_drivers!(zero_tries_means_every_server_once);

fn next_upstream_timeout_stops_retrying_once_spent(driver: &str) {
    let backends = [stalling(), stalling(), stalling(), stalling()];
    let servers: Vec<String> = backends
        .iter()
        .map(|b| server(b.addr(), "max_fails = 0"))
        .collect();
    let upstream = "read_timeout = \"300ms\"\nnext_upstream_timeout = \"450ms\"";
    let p = Proxy::start(driver, &config("", upstream, &servers));
    let started = Instant::now();
    let r = get(p.addr, "/");
    assert_eq!(r.status, 504, "{}", r.head_text());
    // Tried at 0 ms and 300 ms; at 600 ms the 450 ms budget is spent.
    assert_eq!(total(&backends), 2);
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
}
both_drivers!(next_upstream_timeout_stops_retrying_once_spent);

fn next_upstream_off_never_tries_another_server(driver: &str) {
    let good = Backend::named("good");
    let dead = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let servers = [
        server(dead, "max_fails = 0"),
        server(good.addr(), "max_fails = 0"),
    ];
    let upstream = "balance = \"round_robin\"\nnext_upstream = [\"off\"]";
    let p = Proxy::start(driver, &config("", upstream, &servers));
    // Round robin alternates: one of two requests meets the dead server and fails.
    let statuses: Vec<u16> = (0..2).map(|_| get(p.addr, "/").status).collect();
    assert!(statuses.contains(&502), "{statuses:?}");
    assert!(statuses.contains(&200), "{statuses:?}");
    assert_eq!(good.request_count(), 1);
}
both_drivers!(next_upstream_off_never_tries_another_server);
