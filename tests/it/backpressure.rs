//! Backpressure end to end (SPEC "LLM inference fleets"): a 429 or 503 with `Retry-After`
//! marks a server busy for that long — new requests skip it, it is not failed
//! (`max_fails` ignores it, `ringway_upstream_server_up` stays 1, `/status` shows
//! `busy_until_ms`) — and ringway's own refusal when every server is busy is a 503 whose
//! `Retry-After` says when the first mark ends. Whether the busy answer itself is retried
//! follows `next_upstream`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::admin::{scrape, sum};
use crate::support::*;

const GET: &str = "GET / HTTP/1.1\r\nHost: t\r\n\r\n";

/// Answers `status` with `Retry-After: retry_after` while `busy` holds, else 200 `name`.
fn sometimes_busy(
    name: &'static str,
    status: u16,
    retry_after: &'static str,
    busy: &Arc<AtomicBool>,
) -> Backend {
    let busy = busy.clone();
    Backend::start(move |_, c| {
        if busy.load(Ordering::SeqCst) {
            c.respond(status, &[("Retry-After", retry_after)], b"busy");
        } else {
            c.ok(name);
        }
    })
}

/// Group `u` over `servers` (max_fails = 1 each, so one counted failure would show), with
/// `upstream` keys and an admin listener on `$BIND2`.
fn busy_config(servers: &[SocketAddr], upstream: &str) -> String {
    let list: Vec<String> = servers
        .iter()
        .map(|a| server(*a, "max_fails = 1, fail_timeout = \"30s\""))
        .collect();
    format!(
        "[admin]\nbind = \"$BIND2\"\n\n{}",
        config("", upstream, &list)
    )
}

fn series(admin: SocketAddr, name: &str, server: SocketAddr) -> f64 {
    let server = server.to_string();
    sum(&scrape(admin), name, &[("server", server.as_str())])
}

/// `busy_until_ms` of `server` in `/status` (its JSON, read without a parser: the fields of
/// one server follow its address).
fn busy_until_ms(admin: SocketAddr, server: SocketAddr) -> u64 {
    let status = get(admin, "/status").text();
    let at = status
        .find(&format!("\"address\":\"{server}\""))
        .unwrap_or_else(|| panic!("{server} not in {status}"));
    let rest = &status[at..];
    let value = &rest[rest.find("\"busy_until_ms\":").expect("busy_until_ms") + 16..];
    let digits: String = value.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().expect("a number")
}

fn retry_after(r: &Response) -> u64 {
    let value = r.header("retry-after").expect("a Retry-After header");
    value
        .parse()
        .unwrap_or_else(|_| panic!("Retry-After: {value}"))
}

/// The 429 reaches the client (next_upstream does not list it); the server is then skipped
/// for the 2 s it asked for, stays up, counts no failure, and takes traffic again after.
fn a_429_with_retry_after_marks_the_server_busy_not_failed(driver: &str) {
    let busy = Arc::new(AtomicBool::new(true));
    let a = sometimes_busy("a", 429, "2", &busy);
    let b = Backend::named("b");
    let p = Proxy::start(driver, &busy_config(&[a.addr(), b.addr()], ""));
    let admin = p.extra[0];
    let mut c = Client::connect(p.addr);
    // Round robin: one of the first two requests meets a.
    let first = (0..2)
        .map(|_| c.request(GET))
        .find(|r| r.status == 429)
        .expect("a answered 429");
    let marked = Instant::now();
    assert_eq!(
        retry_after(&first),
        2,
        "the server's own answer passes through"
    );
    busy.store(false, Ordering::SeqCst);
    let seen_by_a = a.request_count();
    for _ in 0..10 {
        assert_eq!(c.request(GET).text(), "b");
    }
    assert_eq!(a.request_count(), seen_by_a, "a busy server got a request");
    assert!(
        marked.elapsed() < Duration::from_millis(1500),
        "too slow to tell"
    );
    assert_eq!(series(admin, "ringway_upstream_server_up", a.addr()), 1.0);
    assert_eq!(series(admin, "ringway_upstream_server_busy", a.addr()), 1.0);
    assert_eq!(
        series(admin, "ringway_upstream_failures_total", a.addr()),
        0.0
    );
    let left = busy_until_ms(admin, a.addr());
    assert!((1..=2000).contains(&left), "busy_until_ms {left}");
    assert_eq!(busy_until_ms(admin, b.addr()), 0);
    // After the mark, a is back (round robin alternates again).
    assert!(
        wait_until(Duration::from_secs(4), || c.request(GET).text() == "a"),
        "a never came back"
    );
    assert!(marked.elapsed() >= Duration::from_millis(1900));
    assert_eq!(series(admin, "ringway_upstream_server_busy", a.addr()), 0.0);
}
both_drivers!(a_429_with_retry_after_marks_the_server_busy_not_failed);

/// With `http_429` in `next_upstream` the busy answer is retried on the other server at
/// once, and the busy server is not asked again during its mark; without Retry-After the
/// same 429 is an ordinary failure that counts against max_fails.
fn a_listed_busy_answer_is_retried_and_the_server_skipped(driver: &str) {
    let busy = Arc::new(AtomicBool::new(true));
    let a = sometimes_busy("a", 429, "30", &busy);
    let b = Backend::named("b");
    let upstream = "next_upstream = [\"error\", \"http_429\"]";
    let p = Proxy::start(driver, &busy_config(&[a.addr(), b.addr()], upstream));
    let admin = p.extra[0];
    let mut c = Client::connect(p.addr);
    for _ in 0..8 {
        let r = c.request(GET);
        assert_eq!((r.status, r.text()), (200, "b".to_string()));
    }
    assert_eq!(a.request_count(), 1, "asked again while busy");
    assert_eq!(series(admin, "ringway_upstream_server_up", a.addr()), 1.0);
    assert_eq!(
        series(admin, "ringway_upstream_failures_total", a.addr()),
        0.0
    );
    assert_eq!(
        series(admin, "ringway_upstream_retries_total", a.addr()),
        1.0
    );
    // The same answer without a (valid) Retry-After: a failure, and max_fails = 1 marks it.
    let plain = Backend::start(|_, c| {
        c.respond(429, &[("Retry-After", "soon")], b"no");
    });
    let p = Proxy::start(driver, &busy_config(&[plain.addr(), b.addr()], upstream));
    let mut c = Client::connect(p.addr);
    for _ in 0..4 {
        assert_eq!(c.request(GET).text(), "b");
    }
    let admin = p.extra[0];
    assert_eq!(
        series(admin, "ringway_upstream_server_up", plain.addr()),
        0.0
    );
    assert_eq!(
        series(admin, "ringway_upstream_failures_total", plain.addr()),
        1.0
    );
}
both_drivers!(a_listed_busy_answer_is_retried_and_the_server_skipped);

/// Every server busy: ringway answers 503 itself, at once, with `Retry-After` = the seconds
/// until the first mark ends (7 s here, 1 s elapsed at most), and the server sees nothing.
fn every_server_busy_gets_ringways_own_503_with_retry_after(driver: &str) {
    let busy = Arc::new(AtomicBool::new(true));
    let a = sometimes_busy("a", 503, "7", &busy);
    let p = Proxy::start(driver, &busy_config(&[a.addr()], ""));
    let first = get(p.addr, "/");
    assert_eq!((first.status, first.text()), (503, "busy".to_string()));
    let started = Instant::now();
    let refused = get(p.addr, "/");
    assert!(started.elapsed() < Duration::from_millis(800));
    assert_eq!(refused.status, 503);
    assert_ne!(
        refused.text(),
        "busy",
        "ringway's own answer, not the server's"
    );
    assert!(
        (6..=7).contains(&retry_after(&refused)),
        "{}",
        refused.head_text()
    );
    assert_eq!(a.request_count(), 1);
    let admin = p.extra[0];
    assert_eq!(series(admin, "ringway_upstream_server_up", a.addr()), 1.0);
}
both_drivers!(every_server_busy_gets_ringways_own_503_with_retry_after);

/// With a queue, a request that finds every server busy waits, and is served when the
/// first busy mark ends (1 s), not at its queue timeout (10 s): no request ending frees
/// that room, so the waiter looks again by itself.
fn a_queued_request_is_served_when_the_busy_mark_ends(driver: &str) {
    let answered = Arc::new(AtomicUsize::new(0));
    let seen = answered.clone();
    let a = Backend::start(move |_, c| {
        if seen.fetch_add(1, Ordering::SeqCst) == 0 {
            c.respond(503, &[("Retry-After", "1")], b"busy");
        } else {
            c.ok("a");
        }
    });
    let upstream = "queue = { max = 4, timeout = \"10s\" }";
    let p = Proxy::start(driver, &busy_config(&[a.addr()], upstream));
    assert_eq!(get(p.addr, "/").status, 503);
    let started = Instant::now();
    let r = get(p.addr, "/");
    let waited = started.elapsed();
    assert_eq!((r.status, r.text()), (200, "a".to_string()));
    assert!(
        waited >= Duration::from_millis(700) && waited < Duration::from_millis(3000),
        "{waited:?}"
    );
    assert_eq!(answered.load(Ordering::SeqCst), 2);
}
both_drivers!(a_queued_request_is_served_when_the_busy_mark_ends);
