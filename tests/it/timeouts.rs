//! Client-side limits in time and count: client_header_timeout, client_body_timeout,
//! keepalive_timeout and keepalive_requests.

use std::time::{Duration, Instant};

use crate::support::*;

/// Checks that what arrived before the close, if anything, is a response with `status`.
fn assert_answer_before_close(c: &Client, status: u16) {
    let got = String::from_utf8_lossy(c.leftover()).into_owned();
    if !got.is_empty() {
        let want = format!("HTTP/1.1 {status} ");
        assert!(
            got.starts_with(&want),
            "expected {status} or a bare close, got:\n{got}"
        );
    }
}

fn slow_request_head_gets_408_or_close_after_client_header_timeout(driver: &str) {
    let b = Backend::named("a");
    let p = Proxy::start(
        driver,
        &config(
            "client_header_timeout = \"1s\"",
            "",
            &[server(b.addr(), "")],
        ),
    );
    let mut c = Client::connect(p.addr);
    let started = Instant::now();
    c.send("GET / HTTP/1.1\r\nHost: t\r\n");
    assert!(
        !c.closed_within(Duration::from_millis(600)),
        "closed before the timeout"
    );
    assert!(
        c.closed_within(Duration::from_secs(2)),
        "still open {:?} after the head began",
        started.elapsed()
    );
    assert_answer_before_close(&c, 408);
    assert_eq!(b.connections(), 0);
}
both_drivers!(slow_request_head_gets_408_or_close_after_client_header_timeout);

fn stalled_request_body_is_cut_after_client_body_timeout(driver: &str) {
    let b = Backend::named("a");
    let p = Proxy::start(
        driver,
        &config("client_body_timeout = \"1s\"", "", &[server(b.addr(), "")]),
    );
    let mut c = Client::connect(p.addr);
    c.send("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n0123456789");
    assert!(
        !c.closed_within(Duration::from_millis(600)),
        "closed before the timeout"
    );
    assert!(
        c.closed_within(Duration::from_secs(2)),
        "a stalled body was not timed out"
    );
    assert_answer_before_close(&c, 408);
    assert_eq!(b.complete_requests(), 0);
}
both_drivers!(stalled_request_body_is_cut_after_client_body_timeout);

fn body_with_gaps_shorter_than_client_body_timeout_is_accepted(driver: &str) {
    let b = Backend::start(|req, c| {
        c.ok(&String::from_utf8_lossy(&req.body));
    });
    let p = Proxy::start(
        driver,
        &config("client_body_timeout = \"1s\"", "", &[server(b.addr(), "")]),
    );
    let mut c = Client::connect(p.addr);
    c.send("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n\r\n");
    for part in ["ab", "cd", "ef"] {
        std::thread::sleep(Duration::from_millis(500));
        c.send(part);
    }
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "abcdef");
}
both_drivers!(body_with_gaps_shorter_than_client_body_timeout_is_accepted);

fn idle_keep_alive_connection_is_closed_after_keepalive_timeout(driver: &str) {
    let b = Backend::named("a");
    let p = Proxy::start(
        driver,
        &config("keepalive_timeout = \"1s\"", "", &[server(b.addr(), "")]),
    );
    let mut c = Client::connect(p.addr);
    let r = c.request("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.status, 200);
    assert!(
        !c.closed_within(Duration::from_millis(500)),
        "closed well before keepalive_timeout"
    );
    assert!(
        c.closed_within(Duration::from_secs(2)),
        "idle connection kept past keepalive_timeout"
    );
    assert!(
        c.leftover().is_empty(),
        "{:?}",
        String::from_utf8_lossy(c.leftover())
    );
}
both_drivers!(idle_keep_alive_connection_is_closed_after_keepalive_timeout);

fn keepalive_requests_closes_after_the_last_allowed_request(driver: &str) {
    let b = Backend::named("a");
    let p = Proxy::start(
        driver,
        &config("keepalive_requests = 3", "", &[server(b.addr(), "")]),
    );
    let mut c = Client::connect(p.addr);
    for i in 1..=3 {
        let r = c.request("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(r.status, 200);
        assert_eq!(r.says_close(), i == 3, "request {i}:\n{}", r.head_text());
    }
    assert!(
        c.closed_within(Duration::from_secs(1)),
        "socket open after the last allowed request"
    );
}
both_drivers!(keepalive_requests_closes_after_the_last_allowed_request);

fn keepalive_timeout_zero_turns_client_keep_alive_off(driver: &str) {
    let b = Backend::named("a");
    let p = Proxy::start(
        driver,
        &config("keepalive_timeout = \"0s\"", "", &[server(b.addr(), "")]),
    );
    let mut c = Client::connect(p.addr);
    let r = c.request("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.status, 200);
    assert!(r.says_close(), "keep-alive is off, yet:\n{}", r.head_text());
    assert!(c.closed_within(Duration::from_secs(1)));
}
both_drivers!(keepalive_timeout_zero_turns_client_keep_alive_off);
