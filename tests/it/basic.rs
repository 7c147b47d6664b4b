//! The everyday HTTP path through the proxy: methods, big bodies both ways, streaming (SSE),
//! pipelining, HTTP/1.0 clients (ab), `Expect: 100-continue` and Upgrade pass-through.

use std::time::{Duration, Instant};

use crate::support::*;

/// A backend that echoes what it saw: method, target and body length, plus a body hash.
fn echo_backend() -> Backend {
    Backend::start(|req, c| {
        let sha = sha256_hex(&req.body);
        let text = format!("{} {} {} {}", req.method, req.target, req.body.len(), sha);
        c.respond(
            200,
            &[("Content-Type", "text/plain"), ("X-Body-Sha256", &sha)],
            text.as_bytes(),
        );
    })
}

fn get_and_post_go_through_and_come_back(driver: &str) {
    let b = echo_backend();
    let p = Proxy::start(driver, &single(b.addr()));
    let mut c = Client::connect(p.addr);
    let r = c.request("GET /hello?x=1 HTTP/1.1\r\nHost: test\r\n\r\n");
    assert_eq!(r.status, 200, "{}", r.head_text());
    assert_eq!(r.text(), format!("GET /hello?x=1 0 {}", sha256_hex(b"")));
    let body = br#"{"prompt":"hi"}"#;
    let mut raw = format!(
        "POST /v1/chat HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    let r = c.request(&raw);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.text(),
        format!("POST /v1/chat {} {}", body.len(), sha256_hex(body))
    );
    let log = b.requests();
    assert_eq!(log.len(), 2);
    assert_eq!(log[1].body, body);
    assert_eq!(log[1].header("content-type"), Some("application/json"));
    assert_eq!(
        log[0].version,
        1,
        "upstream requests are HTTP/1.1:\n{}",
        log[0].head_text()
    );
}
both_drivers!(get_and_post_go_through_and_come_back);

const BIG: usize = 20 << 20;
const BIG_BODY_CONFIG: &str = "client_max_body_size = \"64m\"";

fn post_of_20_mib_with_content_length_arrives_intact(driver: &str) {
    let b = echo_backend();
    let p = Proxy::start(
        driver,
        &config(BIG_BODY_CONFIG, "", &[server(b.addr(), "")]),
    );
    let body = pattern(BIG, 1);
    let mut c = Client::connect(p.addr);
    c.send(format!(
        "POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: {BIG}\r\n\r\n"
    ));
    c.send(&body);
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}", r.head_text());
    assert_eq!(r.header("x-body-sha256"), Some(sha256_hex(&body).as_str()));
}
both_drivers!(post_of_20_mib_with_content_length_arrives_intact);

fn post_of_20_mib_chunked_arrives_intact(driver: &str) {
    let b = echo_backend();
    let p = Proxy::start(
        driver,
        &config(BIG_BODY_CONFIG, "", &[server(b.addr(), "")]),
    );
    let body = pattern(BIG, 2);
    let mut c = Client::connect(p.addr);
    c.send("POST /upload HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n");
    // Uneven chunk sizes so chunk boundaries never line up with read sizes.
    let mut sent = 0;
    let mut size = 1;
    while sent < body.len() {
        let n = size.min(body.len() - sent);
        let mut chunk = format!("{n:x}\r\n").into_bytes();
        chunk.extend_from_slice(&body[sent..sent + n]);
        chunk.extend_from_slice(b"\r\n");
        c.send(&chunk);
        sent += n;
        size = size * 3 % 200_003 + 1;
    }
    c.send("0\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}", r.head_text());
    assert_eq!(r.header("x-body-sha256"), Some(sha256_hex(&body).as_str()));
    assert_eq!(b.requests()[0].body.len(), BIG);
}
both_drivers!(post_of_20_mib_chunked_arrives_intact);

fn response_of_10_mib_arrives_intact_with_length_and_chunked(driver: &str) {
    let body = pattern(10 << 20, 3);
    let sha = sha256_hex(&body);
    let b = Backend::start(move |req, c| {
        if req.path() == "/chunked" {
            c.chunked_head(200, &[]);
            for piece in body.chunks(70_001) {
                c.chunk(piece);
            }
            c.end_chunks();
        } else {
            c.respond(200, &[("Content-Type", "application/octet-stream")], &body);
        }
    });
    let p = Proxy::start(driver, &single(b.addr()));
    let mut c = Client::connect(p.addr);
    for path in ["/length", "/chunked"] {
        let r = c.request(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n"));
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len(), 10 << 20, "{path}");
        assert_eq!(sha256_hex(&r.body), sha, "{path}");
    }
}
both_drivers!(response_of_10_mib_arrives_intact_with_length_and_chunked);

fn sse_events_reach_the_client_as_they_are_written(driver: &str) {
    let b = Backend::start(|_, c| {
        c.chunked_head(
            200,
            &[
                ("Content-Type", "text/event-stream"),
                ("Cache-Control", "no-cache"),
            ],
        );
        for i in 0..5 {
            c.sleep_ms(200);
            // The write time travels inside the event; the test compares it with arrival.
            c.chunk(format!("data: {i} {}\n\n", now_us()).as_bytes());
        }
        c.end_chunks();
    });
    let p = Proxy::start(driver, &single(b.addr()));
    let mut c = Client::connect(p.addr);
    c.send("POST /v1/chat/completions HTTP/1.1\r\nHost: test\r\nContent-Length: 2\r\n\r\n{}");
    let r = c.read_head();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let mut data = Vec::new();
    let mut events = 0;
    while let Some(chunk) = c.next_chunk() {
        let arrived = now_us();
        data.extend_from_slice(&chunk);
        while let Some(end) = data.windows(2).position(|w| w == b"\n\n") {
            let event = String::from_utf8_lossy(&data[..end]).into_owned();
            data.drain(..end + 2);
            let written: u64 = event
                .rsplit(' ')
                .next()
                .and_then(|t| t.parse().ok())
                .expect(&event);
            let delay_ms = (arrived - written) / 1000;
            assert!(
                delay_ms < 100,
                "event {event:?} arrived {delay_ms} ms after it was written"
            );
            events += 1;
        }
    }
    assert_eq!(events, 5);
}
both_drivers!(sse_events_reach_the_client_as_they_are_written);

fn pipelined_requests_are_answered_in_order(driver: &str) {
    let b = echo_backend();
    let p = Proxy::start(driver, &single(b.addr()));
    let mut c = Client::connect(p.addr);
    c.send(
        "GET /one HTTP/1.1\r\nHost: test\r\n\r\n\
         POST /two HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\nhello\
         GET /three HTTP/1.1\r\nHost: test\r\n\r\n\
         GET /four HTTP/1.1\r\nHost: test\r\n\r\n",
    );
    for (method, path, len) in [
        ("GET", "/one", 0),
        ("POST", "/two", 5),
        ("GET", "/three", 0),
        ("GET", "/four", 0),
    ] {
        let r = c.read_response();
        assert_eq!(r.status, 200);
        assert!(
            r.text().starts_with(&format!("{method} {path} {len} ")),
            "expected {path}, got {}",
            r.text()
        );
    }
}
both_drivers!(pipelined_requests_are_answered_in_order);

/// Answers `/chunked` with a chunked body and anything else with Content-Length.
fn chunked_or_length_backend() -> Backend {
    Backend::start(|req, c| {
        if req.path() == "/chunked" {
            c.chunked_head(200, &[("Content-Type", "text/plain")]);
            c.chunk(b"hello, ");
            c.chunk(b"one-oh ");
            c.chunk(b"client");
            c.end_chunks();
        } else {
            c.ok("hello, one-oh client");
        }
    })
}

fn http10_client_never_gets_chunked_and_is_closed_without_keep_alive(driver: &str) {
    let b = chunked_or_length_backend();
    let p = Proxy::start(driver, &single(b.addr()));
    for path in ["/chunked", "/length"] {
        let mut c = Client::connect(p.addr);
        let r = c.request(format!(
            "GET {path} HTTP/1.0\r\nHost: test\r\nUser-Agent: ApacheBench/2.3\r\n\r\n"
        ));
        assert_eq!(r.status, 200, "{path}");
        assert_ne!(
            r.framing,
            Framing::Chunked,
            "chunked to a 1.0 client:\n{}",
            r.head_text()
        );
        assert_eq!(r.text(), "hello, one-oh client", "{path}");
        assert!(
            c.closed_within(Duration::from_secs(1)),
            "{path}: connection left open for a 1.0 client"
        );
    }
}
both_drivers!(http10_client_never_gets_chunked_and_is_closed_without_keep_alive);

fn http10_keep_alive_client_like_ab_k_gets_length_or_close(driver: &str) {
    let b = chunked_or_length_backend();
    let p = Proxy::start(driver, &single(b.addr()));
    // With Content-Length from the backend, ab -k needs `Connection: keep-alive` and a
    // connection that stays usable.
    let mut c = Client::connect(p.addr);
    let raw = "GET /length HTTP/1.0\r\nHost: test\r\nConnection: Keep-Alive\r\nUser-Agent: ApacheBench/2.3\r\n\r\n";
    for round in 0..2 {
        let r = c.request(raw);
        assert_eq!(r.status, 200);
        assert_eq!(
            r.framing,
            Framing::Length,
            "round {round}:\n{}",
            r.head_text()
        );
        assert_eq!(r.text(), "hello, one-oh client");
        let keep = r
            .header_all("connection")
            .iter()
            .any(|v| v.eq_ignore_ascii_case("keep-alive"));
        assert!(
            keep,
            "round {round}: no Connection: keep-alive for a 1.0 keep-alive client:\n{}",
            r.head_text()
        );
    }
    // A chunked backend answer is de-chunked; without a length it can only end by close.
    let mut c = Client::connect(p.addr);
    let r = c.request(raw.replace("/length", "/chunked"));
    assert_eq!(r.status, 200);
    assert_ne!(r.framing, Framing::Chunked, "{}", r.head_text());
    assert_eq!(r.text(), "hello, one-oh client");
    if r.framing == Framing::Close {
        assert!(
            !r.header_all("connection")
                .iter()
                .any(|v| v.eq_ignore_ascii_case("keep-alive"))
        );
    } else {
        let again = c.request(raw);
        assert_eq!(again.status, 200);
    }
}
both_drivers!(http10_keep_alive_client_like_ab_k_gets_length_or_close);

fn expect_continue_gets_100_then_the_final_response(driver: &str) {
    let b = echo_backend();
    let p = Proxy::start(driver, &single(b.addr()));
    let mut c = Client::connect(p.addr);
    c.send(
        "POST /upload HTTP/1.1\r\nHost: test\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n",
    );
    // The client waits for 100 before it sends the body (curl waits 1 s, then sends anyway).
    let first = c.read_response();
    assert_eq!(first.status, 100, "{}", first.head_text());
    c.send("0123456789");
    let mut r = c.read_response();
    while r.status == 100 {
        r = c.read_response();
    }
    assert_eq!(r.status, 200);
    assert!(r.text().starts_with("POST /upload 10 "), "{}", r.text());
    assert_eq!(b.requests()[0].body, b"0123456789");
}
both_drivers!(expect_continue_gets_100_then_the_final_response);

fn websocket_upgrade_becomes_a_two_way_byte_stream(driver: &str) {
    let b = Backend::start(|req, c| {
        let upgrading = req
            .header("upgrade")
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
        if !upgrading {
            c.respond(400, &[], b"no upgrade header reached the backend");
            return;
        }
        c.respond(
            101,
            &[
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            ],
            b"",
        );
        c.write(b"hello");
        loop {
            let data = c.read_some(Duration::from_secs(2));
            if data.is_empty() || !c.write(&data) {
                break;
            }
        }
        c.close();
    });
    let p = Proxy::start(driver, &single(b.addr()));
    let mut c = Client::connect(p.addr);
    c.send(
        "GET /ws HTTP/1.1\r\nHost: test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    let r = c.read_head();
    assert_eq!(r.status, 101, "{}", r.head_text());
    assert_eq!(r.header("upgrade"), Some("websocket"));
    assert_eq!(c.read_exact_within(5, Duration::from_secs(1)), b"hello");
    for message in [&b"ping"[..], b"\x81\x05frame", &[0u8, 255, 13, 10, 13, 10]] {
        c.send(message);
        assert_eq!(
            c.read_exact_within(message.len(), Duration::from_secs(1)),
            message
        );
    }
    assert_eq!(b.connections(), 1);
}
both_drivers!(websocket_upgrade_becomes_a_two_way_byte_stream);

fn head_request_gets_headers_and_no_body(driver: &str) {
    let b = Backend::start(|req, c| {
        // A HEAD answer announces the length of the GET body but carries none.
        let mut head = b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n".to_vec();
        if req.method != "HEAD" {
            head.extend_from_slice(&[b'x'; 1234]);
        }
        c.write(&head);
    });
    let p = Proxy::start(driver, &single(b.addr()));
    let mut c = Client::connect(p.addr);
    c.send("HEAD / HTTP/1.1\r\nHost: test\r\n\r\n");
    let r = c.read_head_response();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("1234"));
    // The connection is still in sync: the next answer is a whole GET response.
    let started = Instant::now();
    let r = c.request("GET / HTTP/1.1\r\nHost: test\r\n\r\n");
    assert_eq!(r.body.len(), 1234);
    assert!(started.elapsed() < Duration::from_secs(2));
}
both_drivers!(head_request_gets_headers_and_no_body);
