//! `max_conns` and `queue` through the real proxy: requests that find every server at its
//! cap wait in line (FIFO), are served as slots free (also a slot freed on another worker),
//! and get 503 with `Retry-After` when the line is full or their wait times out; a client
//! that leaves gives up its place at once; a reload keeps the line; `/metrics` shows it.
//!
//! Arrival order is made certain by waiting for `ringway_queue_depth` to count each
//! request before the next is sent.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::support::*;

const GET_CLOSE: &str = "HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";

/// A backend that holds `/hold...` requests for `ms` before answering; answers others at
/// once. The body is the path.
fn holding(ms: u64) -> Backend {
    Backend::start(move |req, c| {
        if req.path().starts_with("/hold") {
            c.sleep_ms(ms);
        }
        c.respond(
            200,
            &[("Content-Type", "text/plain")],
            req.path().as_bytes(),
        );
    })
}

/// One server with `max_conns = 1`, upstream keys `upstream`, and an admin listener.
fn capped(b: &Backend, listener: &str, upstream: &str) -> String {
    let body = config(listener, upstream, &[server(b.addr(), "max_conns = 1")]);
    format!("[admin]\nbind = \"$BIND2\"\n\n{body}")
}

/// The value of one series on the admin listener's `/metrics` page (0 when absent).
fn metric(admin: SocketAddr, series: &str) -> f64 {
    let page = get(admin, "/metrics").text();
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.parse().expect("a number"))
}

fn depth(admin: SocketAddr) -> f64 {
    metric(admin, "ringway_queue_depth{upstream=\"u\"}")
}

/// Waits (bounded) until `n` requests wait in the queue.
fn wait_depth(admin: SocketAddr, n: usize) {
    assert!(
        wait_until(Duration::from_secs(5), || depth(admin) == n as f64),
        "queue depth stayed {} (want {n})",
        depth(admin)
    );
}

/// Sends `GET path` on a fresh connection without reading the answer.
fn send(p: &Proxy, path: &str) -> Client {
    let mut c = Client::connect(p.addr);
    c.send(format!("GET {path} {GET_CLOSE}"));
    c
}

fn paths_seen(b: &Backend) -> Vec<String> {
    b.requests().iter().map(|r| r.path().to_string()).collect()
}

fn retry_after(r: &Response) -> u32 {
    let value = r.header("retry-after").expect("a Retry-After header");
    value
        .parse()
        .unwrap_or_else(|_| panic!("Retry-After: {value}"))
}

fn queued_requests_are_served_in_arrival_order(driver: &str) {
    let b = holding(150);
    let p = Proxy::start(
        driver,
        &capped(&b, "", "queue = { max = 10, timeout = \"10s\" }"),
    );
    let admin = p.extra[0];
    let mut clients = vec![send(&p, "/hold/0")];
    assert!(b.wait_requests(1, Duration::from_secs(5)));
    for i in 1..5 {
        clients.push(send(&p, &format!("/hold/{i}")));
        wait_depth(admin, i);
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let r = c.read_response();
        assert_eq!((r.status, r.text()), (200, format!("/hold/{i}")));
    }
    assert_eq!(
        paths_seen(&b),
        ["/hold/0", "/hold/1", "/hold/2", "/hold/3", "/hold/4"]
    );
    assert_eq!(depth(admin), 0.0);
}
both_drivers!(queued_requests_are_served_in_arrival_order);

/// A connection's worker, from the `X-Worker` header of a quick request on it.
fn worker_of(c: &mut Client) -> String {
    let r = c.request("GET /quick HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.status, 200);
    r.header("x-worker").expect("X-Worker").to_string()
}

/// Two keep-alive connections that landed on different workers (SO_REUSEPORT spreads
/// connections by their addresses; a bounded number of tries finds both).
fn on_two_workers(p: &Proxy) -> (Client, Client) {
    let mut first = Client::connect(p.addr);
    let first_worker = worker_of(&mut first);
    for _ in 0..64 {
        let mut other = Client::connect(p.addr);
        if worker_of(&mut other) != first_worker {
            return (first, other);
        }
    }
    panic!("64 connections all landed on worker {first_worker}");
}

/// The slot frees on one worker; the request queued on the other is served at once, not
/// at its timeout (10 s): the freeing worker grants the slot and rings the waiter's bell.
fn a_slot_freed_on_one_worker_serves_a_request_queued_on_another(driver: &str) {
    let b = holding(1500);
    let listener = "response_headers = { \"X-Worker\" = \"$worker\" }";
    let upstream = "queue = { max = 10, timeout = \"10s\" }";
    let p = Proxy::start_workers(driver, 2, &capped(&b, listener, upstream));
    let admin = p.extra[0];
    let (mut holder, mut waiter) = on_two_workers(&p);
    let seen = b.request_count();
    holder.send("GET /hold HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(b.wait_requests(seen + 1, Duration::from_secs(5)));
    let started = Instant::now();
    waiter.send("GET /next HTTP/1.1\r\nHost: t\r\n\r\n");
    wait_depth(admin, 1);
    let held = holder.read_response();
    let freed = Instant::now();
    let next = waiter.read_response();
    let served = Instant::now();
    assert_eq!((held.status, next.status), (200, 200));
    assert_ne!(held.header("x-worker"), next.header("x-worker"));
    let lag = served.saturating_duration_since(freed);
    assert!(
        lag < Duration::from_secs(1),
        "served {lag:?} after the slot freed"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}
both_drivers!(a_slot_freed_on_one_worker_serves_a_request_queued_on_another);

fn a_full_queue_answers_503_with_retry_after_at_once(driver: &str) {
    let b = holding(1500);
    let p = Proxy::start(
        driver,
        &capped(&b, "", "queue = { max = 1, timeout = \"5s\" }"),
    );
    let admin = p.extra[0];
    let mut first = send(&p, "/hold/0");
    assert!(b.wait_requests(1, Duration::from_secs(5)));
    let mut second = send(&p, "/hold/1");
    wait_depth(admin, 1);
    let started = Instant::now();
    let refused = get(p.addr, "/hold/2");
    assert_eq!(refused.status, 503);
    assert!(started.elapsed() < Duration::from_millis(800));
    // Nothing was served from the queue yet: the estimate is the longest wait, 5 s.
    assert_eq!(retry_after(&refused), 5);
    assert_eq!(first.read_response().status, 200);
    assert_eq!(second.read_response().status, 200);
    assert_eq!(paths_seen(&b), ["/hold/0", "/hold/1"]);
    let full = "ringway_queue_rejected_total{upstream=\"u\",reason=\"full\"}";
    assert_eq!(metric(admin, full), 1.0);
}
both_drivers!(a_full_queue_answers_503_with_retry_after_at_once);

fn a_request_that_waits_out_the_timeout_gets_503(driver: &str) {
    let b = holding(3000);
    let p = Proxy::start(
        driver,
        &capped(&b, "", "queue = { max = 4, timeout = \"300ms\" }"),
    );
    let admin = p.extra[0];
    let _first = send(&p, "/hold/0");
    assert!(b.wait_requests(1, Duration::from_secs(5)));
    let started = Instant::now();
    let r = get(p.addr, "/late");
    let waited = started.elapsed();
    assert_eq!(r.status, 503);
    assert!(retry_after(&r) >= 1);
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_millis(2500),
        "{waited:?}"
    );
    assert_eq!(paths_seen(&b), ["/hold/0"]);
    let timeouts = "ringway_queue_rejected_total{upstream=\"u\",reason=\"timeout\"}";
    assert_eq!(metric(admin, timeouts), 1.0);
    assert_eq!(depth(admin), 0.0);
}
both_drivers!(a_request_that_waits_out_the_timeout_gets_503);

/// With room for one waiter: the waiter's client closes, its place frees at once, and the
/// next request waits (instead of finding the queue full) and is served.
fn a_client_that_leaves_the_queue_frees_its_place(driver: &str) {
    let b = holding(3000);
    let p = Proxy::start(
        driver,
        &capped(&b, "", "queue = { max = 1, timeout = \"10s\" }"),
    );
    let admin = p.extra[0];
    let mut first = send(&p, "/hold/0");
    assert!(b.wait_requests(1, Duration::from_secs(5)));
    let gone = send(&p, "/gone");
    wait_depth(admin, 1);
    drop(gone);
    wait_depth(admin, 0);
    let mut next = send(&p, "/next");
    wait_depth(admin, 1);
    assert_eq!(first.read_response().status, 200);
    assert_eq!(next.read_response().status, 200);
    assert_eq!(paths_seen(&b), ["/hold/0", "/next"]);
}
both_drivers!(a_client_that_leaves_the_queue_frees_its_place);

/// A reload while requests wait: the line carries over (same upstream name), so the one
/// queued before and the one queued after are both served, in order.
fn a_reload_keeps_the_queue(driver: &str) {
    let b = holding(2000);
    let upstream = "queue = { max = 4, timeout = \"10s\" }";
    let mut p = Proxy::start(driver, &capped(&b, "", upstream));
    let admin = p.extra[0];
    let mut clients = vec![send(&p, "/hold/0")];
    assert!(b.wait_requests(1, Duration::from_secs(5)));
    clients.push(send(&p, "/hold/1"));
    wait_depth(admin, 1);
    p.reload(&capped(&b, "", &format!("{upstream}\nkeepalive = 8")));
    clients.push(send(&p, "/hold/2"));
    wait_depth(admin, 2);
    for (i, c) in clients.iter_mut().enumerate() {
        let r = c.read_response();
        assert_eq!(
            (r.status, r.text()),
            (200, format!("/hold/{i}")),
            "request {i}"
        );
    }
    assert_eq!(paths_seen(&b), ["/hold/0", "/hold/1", "/hold/2"]);
}
both_drivers!(a_reload_keeps_the_queue);

/// Without `queue`, a request that finds every server at its cap is refused at once.
fn without_a_queue_a_capped_server_gives_503_with_retry_after(driver: &str) {
    let b = holding(1500);
    let p = Proxy::start(driver, &capped(&b, "", ""));
    let mut first = send(&p, "/hold/0");
    assert!(b.wait_requests(1, Duration::from_secs(5)));
    let started = Instant::now();
    let r = get(p.addr, "/busy");
    assert_eq!((r.status, retry_after(&r)), (503, 1));
    assert!(started.elapsed() < Duration::from_millis(800));
    assert_eq!(first.read_response().status, 200);
    assert_eq!(depth(p.extra[0]), 0.0);
}
both_drivers!(without_a_queue_a_capped_server_gives_503_with_retry_after);
