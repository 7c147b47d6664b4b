//! The upstream side: pooled keep-alive connections (reuse, stale ones, broken ones,
//! `keepalive`, `keepalive_requests`) and `next_upstream` retries.

use std::time::Duration;

use crate::support::*;

fn get_ok(p: &Proxy, path: &str) -> Response {
    let r = get(p.addr, path);
    assert_eq!(r.status, 200, "GET {path}:\n{}{}", r.head_text(), r.text());
    r
}

fn sequential_requests_reuse_one_upstream_connection(driver: &str) {
    let b = Backend::named("a");
    let p = Proxy::start(driver, &single(b.addr()));
    for _ in 0..3 {
        get_ok(&p, "/");
    }
    // Also on one client connection.
    let mut c = Client::connect(p.addr);
    for _ in 0..2 {
        assert_eq!(c.request("GET / HTTP/1.1\r\nHost: t\r\n\r\n").status, 200);
    }
    assert_eq!(
        b.connections(),
        1,
        "{:#?}",
        b.requests().iter().map(|r| r.conn).collect::<Vec<_>>()
    );
}
both_drivers!(sequential_requests_reuse_one_upstream_connection);

fn pooled_connection_closed_by_the_backend_is_retried_on_a_fresh_one(driver: &str) {
    // Answers keep-alive, then closes behind the proxy's back.
    let b = Backend::start(|req, c| {
        c.ok(req.path());
        c.close();
    });
    let p = Proxy::start(driver, &single(b.addr()));
    for path in ["/one", "/two", "/three"] {
        assert_eq!(get_ok(&p, path).text(), path);
        // Let the FIN reach the proxy's idle socket, as it would in real life.
        std::thread::sleep(Duration::from_millis(50));
    }
    let paths: Vec<String> = b.requests().iter().map(|r| r.target.clone()).collect();
    assert_eq!(
        paths,
        ["/one", "/two", "/three"],
        "each request reaches the backend exactly once"
    );
}
both_drivers!(pooled_connection_closed_by_the_backend_is_retried_on_a_fresh_one);

fn response_cut_mid_body_is_not_passed_off_as_whole_and_its_connection_not_reused(driver: &str) {
    let b = Backend::start(|req, c| {
        if req.path() == "/cut" {
            c.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly fifty bytes of the hundred promised.........");
            c.close();
        } else {
            c.ok("whole");
        }
    });
    let p = Proxy::start(driver, &single(b.addr()));
    let mut c = Client::connect(p.addr);
    c.send("GET /cut HTTP/1.1\r\nHost: t\r\n\r\n");
    match c.try_read_response() {
        Ok(r) => assert_ne!(
            r.status,
            200,
            "a cut body was delivered as complete: {:?}",
            r.text()
        ),
        Err(_) => assert!(c.closed_within(Duration::from_secs(1))),
    }
    assert_eq!(get_ok(&p, "/next").text(), "whole");
    assert_eq!(b.connections(), 2);
}
both_drivers!(response_cut_mid_body_is_not_passed_off_as_whole_and_its_connection_not_reused);

fn upstream_connection_timed_out_mid_body_is_not_reused(driver: &str) {
    let b = Backend::start(|req, c| {
        if req.path() == "/stall" {
            c.write(b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\nfirst half");
            // The rest comes after the proxy gave up: it must never reach another client.
            c.sleep_ms(1200);
            c.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged");
        } else {
            c.ok("fresh");
        }
    });
    let p = Proxy::start(
        driver,
        &config("", "read_timeout = \"500ms\"", &[server(b.addr(), "")]),
    );
    let mut c = Client::connect(p.addr);
    c.send("GET /stall HTTP/1.1\r\nHost: t\r\n\r\n");
    let first = c.try_read_response();
    assert!(
        first.is_err(),
        "a half body was delivered as whole: {first:?}"
    );
    std::thread::sleep(Duration::from_millis(900));
    assert_eq!(get_ok(&p, "/next").text(), "fresh");
    assert_eq!(b.connections(), 2);
}
both_drivers!(upstream_connection_timed_out_mid_body_is_not_reused);

fn keepalive_zero_opens_a_connection_per_request(driver: &str) {
    let b = Backend::named("a");
    let p = Proxy::start(
        driver,
        &config("", "keepalive = 0", &[server(b.addr(), "")]),
    );
    for _ in 0..3 {
        get_ok(&p, "/");
    }
    assert_eq!(b.connections(), 3);
}
both_drivers!(keepalive_zero_opens_a_connection_per_request);

fn upstream_keepalive_requests_limits_requests_per_connection(driver: &str) {
    let b = Backend::named("a");
    let p = Proxy::start(
        driver,
        &config("", "keepalive_requests = 2", &[server(b.addr(), "")]),
    );
    for _ in 0..5 {
        get_ok(&p, "/");
    }
    let conns: Vec<usize> = b.requests().iter().map(|r| r.conn).collect();
    assert_eq!(conns, [0, 0, 1, 1, 2]);
}
both_drivers!(upstream_keepalive_requests_limits_requests_per_connection);

/// Server `bad` answers 502 to everything, `good` 200.
fn bad_and_good() -> (Backend, Backend) {
    let bad = Backend::start(|_, c| {
        c.respond(502, &[("X-Backend", "bad")], b"bad");
    });
    (bad, Backend::named("good"))
}

fn get_answered_502_is_retried_on_the_next_server(driver: &str) {
    let (bad, good) = bad_and_good();
    let servers = [
        server(bad.addr(), "max_fails = 0"),
        server(good.addr(), "max_fails = 0"),
    ];
    let upstream =
        "balance = \"round_robin\"\nnext_upstream = [\"error\", \"timeout\", \"http_502\"]";
    let p = Proxy::start(driver, &config("", upstream, &servers));
    for _ in 0..4 {
        assert_eq!(get_ok(&p, "/").text(), "good");
    }
    assert!(
        bad.request_count() >= 1,
        "the failing server was never tried"
    );
    assert_eq!(good.request_count(), 4);
}
both_drivers!(get_answered_502_is_retried_on_the_next_server);

fn post(p: &Proxy) -> Response {
    Client::connect(p.addr)
        .request("POST /submit HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nbody")
}

fn post_answered_502_is_not_retried_by_default(driver: &str) {
    let (bad, good) = bad_and_good();
    let servers = [
        server(bad.addr(), "max_fails = 0"),
        server(good.addr(), "max_fails = 0"),
    ];
    let upstream =
        "balance = \"round_robin\"\nnext_upstream = [\"error\", \"timeout\", \"http_502\"]";
    let p = Proxy::start(driver, &config("", upstream, &servers));
    let statuses: Vec<u16> = (0..2).map(|_| post(&p).status).collect();
    let mut sorted = statuses.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [200, 502],
        "round robin over two servers, no retry of a sent POST"
    );
    assert_eq!((bad.request_count(), good.request_count()), (1, 1));
}
both_drivers!(post_answered_502_is_not_retried_by_default);

fn post_is_retried_when_retry_non_idempotent_is_set(driver: &str) {
    let (bad, good) = bad_and_good();
    let servers = [
        server(bad.addr(), "max_fails = 0"),
        server(good.addr(), "max_fails = 0"),
    ];
    let upstream = "balance = \"round_robin\"\nretry_non_idempotent = true\n\
                    next_upstream = [\"error\", \"timeout\", \"http_502\"]";
    let p = Proxy::start(driver, &config("", upstream, &servers));
    for _ in 0..2 {
        assert_eq!(post(&p).status, 200);
    }
    assert!(bad.request_count() >= 1);
    assert_eq!(good.request_count(), 2);
    assert!(
        good.requests().iter().all(|r| r.body == b"body"),
        "retried requests carry the body"
    );
}
both_drivers!(post_is_retried_when_retry_non_idempotent_is_set);

fn connect_failure_moves_get_and_post_to_the_next_server(driver: &str) {
    let good = Backend::named("good");
    let servers = [
        server(dead_addr(), "max_fails = 0"),
        server(good.addr(), "max_fails = 0"),
    ];
    let p = Proxy::start(driver, &config("", "balance = \"round_robin\"", &servers));
    for _ in 0..2 {
        assert_eq!(get_ok(&p, "/").text(), "good");
        let r = post(&p);
        assert_eq!((r.status, r.text().as_str()), (200, "good"));
    }
    assert_eq!(good.request_count(), 4);
}
both_drivers!(connect_failure_moves_get_and_post_to_the_next_server);
