//! nginx-style error answers: 400 for malformed or ambiguous framing (never forwarded),
//! 431, 413, 502 and 504, and streams that outlive `read_timeout` without a gap that long.

use std::time::{Duration, Instant};

use crate::support::*;

/// Requests SPEC says are ambiguous: each must get 400 and never reach a backend.
const AMBIGUOUS: &[(&str, &str)] = &[
    (
        "content-length and transfer-encoding",
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ),
    (
        "transfer-encoding then content-length",
        "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
    ),
    (
        "differing content-lengths",
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    ),
    (
        "differing content-length list",
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5, 6\r\n\r\nhello!",
    ),
    (
        "non-numeric content-length",
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n",
    ),
    (
        "negative content-length",
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n",
    ),
    (
        "signed content-length",
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: +5\r\n\r\nhello",
    ),
    (
        "hex content-length",
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 0x5\r\n\r\nhello",
    ),
    (
        "overflowing content-length",
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999999999999999999\r\n\r\n",
    ),
    (
        "chunked not last",
        "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    ),
    (
        "obs-fold",
        "GET / HTTP/1.1\r\nHost: t\r\nX-Folded: a\r\n b\r\n\r\n",
    ),
    (
        "NUL in a header value",
        "GET / HTTP/1.1\r\nHost: t\r\nX-Bad: a\0b\r\n\r\n",
    ),
    (
        "CR in a header value",
        "GET / HTTP/1.1\r\nHost: t\r\nX-Bad: a\rb\r\n\r\n",
    ),
    (
        "LF in a header value",
        "GET / HTTP/1.1\r\nHost: t\r\nX-Bad: a\nb\r\n\r\n",
    ),
    ("space before colon", "GET / HTTP/1.1\r\nHost : t\r\n\r\n"),
    (
        "space before colon in content-length",
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length : 5\r\n\r\nhello",
    ),
    ("garbage request line", "GARBAGE\r\n\r\n"),
];

fn ambiguous_framing_is_rejected_with_400_and_never_forwarded(driver: &str) {
    let b = Backend::named("a");
    let p = Proxy::start(driver, &single(b.addr()));
    let mut failures = Vec::new();
    for (name, raw) in AMBIGUOUS {
        let mut c = Client::connect(p.addr);
        c.send(raw);
        match c.try_read_response() {
            Ok(r) if r.status == 400 => {
                if !c.closed_within(Duration::from_secs(1)) {
                    failures.push(format!("{name}: connection kept open after 400"));
                }
            }
            Ok(r) => failures.push(format!("{name}: got {} instead of 400", r.status)),
            Err(e) => failures.push(format!("{name}: no response ({e})")),
        }
    }
    assert_eq!(b.connections(), 0, "the backend saw {:#?}", b.requests());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
both_drivers!(ambiguous_framing_is_rejected_with_400_and_never_forwarded);

fn transfer_encoding_without_chunked_is_refused(driver: &str) {
    let b = Backend::named("a");
    let p = Proxy::start(driver, &single(b.addr()));
    let mut c = Client::connect(p.addr);
    let r = c.request("POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\nxxxx");
    // SPEC says 400; nginx says 501. Either way the request must not be forwarded.
    assert!(r.status == 400 || r.status == 501, "{}", r.head_text());
    assert_eq!(b.connections(), 0);
}
both_drivers!(transfer_encoding_without_chunked_is_refused);

fn malformed_chunk_size_is_rejected_and_no_whole_request_reaches_the_backend(driver: &str) {
    let b = Backend::named("a");
    let p = Proxy::start(driver, &single(b.addr()));
    for body in [
        "zz\r\nhello\r\n0\r\n\r\n",
        "5\r\nhello\r\n-1\r\nx\r\n0\r\n\r\n",
        "fffffffffffffffffffff\r\nx\r\n0\r\n\r\n",
    ] {
        let mut c = Client::connect(p.addr);
        c.send(format!(
            "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n{body}"
        ));
        if let Ok(r) = c.try_read_response() {
            assert_eq!(r.status, 400, "body {body:?}");
        }
        assert!(
            c.closed_within(Duration::from_secs(1)),
            "body {body:?}: connection left open"
        );
    }
    assert_eq!(b.complete_requests(), 0, "{:#?}", b.requests());
}
both_drivers!(malformed_chunk_size_is_rejected_and_no_whole_request_reaches_the_backend);

fn oversized_head_gets_431(driver: &str) {
    let b = Backend::named("a");
    let p = Proxy::start(
        driver,
        &config("max_header_size = \"4k\"", "", &[server(b.addr(), "")]),
    );
    let mut c = Client::connect(p.addr);
    let big = "x".repeat(5000);
    let r = c.request(format!("GET / HTTP/1.1\r\nHost: t\r\nX-Big: {big}\r\n\r\n"));
    assert_eq!(r.status, 431);
    // Just under the limit still works.
    let mut c = Client::connect(p.addr);
    let r = c.request(format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        &big[..3000]
    ));
    assert_eq!(r.status, 200);
    assert_eq!(b.request_count(), 1);
}
both_drivers!(oversized_head_gets_431);

fn content_length_over_client_max_body_size_gets_413_without_the_backend(driver: &str) {
    let b = Backend::named("a");
    let p = Proxy::start(
        driver,
        &config("client_max_body_size = \"1k\"", "", &[server(b.addr(), "")]),
    );
    let mut c = Client::connect(p.addr);
    // The body is never sent: the answer must not wait for it.
    c.send("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2000\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 413);
    let mut c = Client::connect(p.addr);
    let r = c.request(format!(
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1024\r\n\r\n{}",
        "y".repeat(1024)
    ));
    assert_eq!(r.status, 200, "a body of exactly the limit is allowed");
    assert_eq!(b.request_count(), 1);
}
both_drivers!(content_length_over_client_max_body_size_gets_413_without_the_backend);

fn chunked_body_growing_past_client_max_body_size_gets_413(driver: &str) {
    let b = Backend::named("a");
    let p = Proxy::start(
        driver,
        &config("client_max_body_size = \"1k\"", "", &[server(b.addr(), "")]),
    );
    let mut c = Client::connect(p.addr);
    c.send("POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    let chunk = format!("258\r\n{}\r\n", "z".repeat(600));
    for _ in 0..3 {
        if c.try_send(&chunk).is_err() {
            break;
        }
    }
    let _ = c.try_send("0\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 413);
    assert_eq!(b.complete_requests(), 0, "{:#?}", b.requests());
}
both_drivers!(chunked_body_growing_past_client_max_body_size_gets_413);

fn no_listening_backend_gives_502(driver: &str) {
    let p = Proxy::start(driver, &config("", "", &[server(dead_addr(), "")]));
    let started = Instant::now();
    let r = Client::connect(p.addr).request("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.status, 502);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}
both_drivers!(no_listening_backend_gives_502);

fn stalled_backend_gives_504_after_read_timeout(driver: &str) {
    let b = Backend::start(|_, c| {
        c.sleep_ms(1500);
        c.ok("too late");
    });
    let p = Proxy::start(
        driver,
        &config("", "read_timeout = \"500ms\"", &[server(b.addr(), "")]),
    );
    let started = Instant::now();
    let r = Client::connect(p.addr).request("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let took = started.elapsed();
    assert_eq!(r.status, 504);
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_millis(1400),
        "{took:?}"
    );
}
both_drivers!(stalled_backend_gives_504_after_read_timeout);

fn stream_with_short_gaps_outlives_read_timeout(driver: &str) {
    let b = Backend::start(|_, c| {
        c.chunked_head(200, &[("Content-Type", "text/event-stream")]);
        for i in 0..8 {
            c.sleep_ms(200);
            c.chunk(format!("data: {i}\n\n").as_bytes());
        }
        c.end_chunks();
    });
    let p = Proxy::start(
        driver,
        &config("", "read_timeout = \"500ms\"", &[server(b.addr(), "")]),
    );
    let started = Instant::now();
    let r = Client::connect(p.addr).request("GET /stream HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.status, 200);
    let want: String = (0..8).map(|i| format!("data: {i}\n\n")).collect();
    assert_eq!(r.text(), want);
    assert!(started.elapsed() >= Duration::from_millis(1500));
}
both_drivers!(stream_with_short_gaps_outlives_read_timeout);
