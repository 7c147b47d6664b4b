//! Edges of the HTTP path: request bodies streamed before they end, close-delimited and
//! bodiless responses, exact targets, `Connection: close` on either side, and a client
//! that goes away in the middle of a stream.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::support::*;

fn request_body_is_streamed_before_it_ends(driver: &str) {
    let b = Backend::start(|req, c| {
        c.ok(&req.body.len().to_string());
    });
    let p = Proxy::start(driver, &single(b.addr()));
    let mut c = Client::connect(p.addr);
    c.send("POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 200000\r\n\r\n");
    c.send(vec![b'a'; 100_000]);
    // The backend has the head (and is reading the body) while half the body is unsent.
    assert!(
        wait_until(Duration::from_secs(1), || b.heads() == 1),
        "the proxy buffered the body"
    );
    c.send(vec![b'b'; 100_000]);
    let r = c.read_response();
    assert_eq!(r.text(), "200000");
}
both_drivers!(request_body_is_streamed_before_it_ends);

fn close_delimited_backend_response_reaches_the_client_whole(driver: &str) {
    let b = Backend::start(|_, c| {
        c.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nno length, ends at close");
        c.close();
    });
    let p = Proxy::start(driver, &single(b.addr()));
    let mut c = Client::connect(p.addr);
    let r = c.request("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "no length, ends at close");
    // A second request works (on this connection if it was chunked, else on a new one).
    let mut c = if r.framing == Framing::Close {
        Client::connect(p.addr)
    } else {
        c
    };
    assert_eq!(
        c.request("GET / HTTP/1.1\r\nHost: t\r\n\r\n").text(),
        "no length, ends at close"
    );
}
both_drivers!(close_delimited_backend_response_reaches_the_client_whole);

fn bodiless_204_and_304_keep_the_connection_in_sync(driver: &str) {
    let b = Backend::start(|req, c| match req.path() {
        "/204" => {
            c.write(b"HTTP/1.1 204 No Content\r\nX-Case: 204\r\n\r\n");
        }
        "/304" => {
            c.write(b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n\r\n");
        }
        _ => {
            c.ok("after");
        }
    });
    let p = Proxy::start(driver, &single(b.addr()));
    let mut c = Client::connect(p.addr);
    c.send(
        "GET /204 HTTP/1.1\r\nHost: t\r\n\r\nGET /304 HTTP/1.1\r\nHost: t\r\nIf-None-Match: \"v1\"\r\n\r\n\
         GET /after HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    let r = c.read_response();
    assert_eq!((r.status, r.header("x-case")), (204, Some("204")));
    assert!(r.header("transfer-encoding").is_none(), "{}", r.head_text());
    let r = c.read_response();
    assert_eq!((r.status, r.header("etag")), (304, Some("\"v1\"")));
    let r = c.read_response();
    assert_eq!((r.status, r.text().as_str()), (200, "after"));
}
both_drivers!(bodiless_204_and_304_keep_the_connection_in_sync);

fn request_target_is_forwarded_byte_for_byte(driver: &str) {
    let b = Backend::named("a");
    let p = Proxy::start(driver, &single(b.addr()));
    let mut c = Client::connect(p.addr);
    let targets = [
        "/a%20b/../c?x=1&y=%2F&z=%zz",
        "/%E2%82%AC/x",
        "/?",
        "/path;p=1?q=a+b",
        "//double//slash",
    ];
    for target in targets {
        assert_eq!(
            c.request(format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n"))
                .status,
            200
        );
    }
    let seen: Vec<String> = b.requests().iter().map(|r| r.target.clone()).collect();
    let sent: Vec<String> = targets.iter().map(|t| t.to_string()).collect();
    assert_eq!(seen, sent);
}
both_drivers!(request_target_is_forwarded_byte_for_byte);

fn client_connection_close_is_honoured(driver: &str) {
    let b = Backend::named("a");
    let p = Proxy::start(driver, &single(b.addr()));
    let mut c = Client::connect(p.addr);
    let r = c.request("GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 200);
    assert!(r.says_close(), "{}", r.head_text());
    assert!(c.closed_within(Duration::from_secs(1)));
}
both_drivers!(client_connection_close_is_honoured);

fn backend_connection_close_is_not_pooled_and_client_stays_open(driver: &str) {
    let b = Backend::start(|_, c| {
        c.keep_alive = false; // answers with `Connection: close`, then closes
        c.ok("bye");
    });
    let p = Proxy::start(driver, &single(b.addr()));
    let mut c = Client::connect(p.addr);
    for _ in 0..3 {
        let r = c.request("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!((r.status, r.text().as_str()), (200, "bye"));
        assert!(
            !r.says_close(),
            "the upstream's close leaked to the client:\n{}",
            r.head_text()
        );
    }
    assert_eq!(b.connections(), 3);
    assert_eq!(
        b.request_count(),
        3,
        "a request was sent on a connection the backend closed"
    );
}
both_drivers!(backend_connection_close_is_not_pooled_and_client_stays_open);

fn client_leaving_mid_stream_closes_the_upstream_connection(driver: &str) {
    let written = Arc::new(AtomicUsize::new(0));
    let cut = Arc::new(AtomicBool::new(false));
    let (w, k) = (written.clone(), cut.clone());
    let b = Backend::start(move |req, c| {
        if req.path() != "/stream" {
            c.ok("fresh");
            return;
        }
        c.chunked_head(200, &[("Content-Type", "text/event-stream")]);
        for i in 0..40 {
            if !c.chunk(format!("data: {i}\n\n").as_bytes()) {
                k.store(true, Ordering::SeqCst);
                return;
            }
            w.fetch_add(1, Ordering::SeqCst);
            c.sleep_ms(50);
        }
        c.end_chunks();
    });
    let p = Proxy::start(driver, &single(b.addr()));
    let mut c = Client::connect(p.addr);
    c.send("GET /stream HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.read_head().status, 200);
    assert!(c.next_chunk().is_some());
    drop(c);
    // The proxy drops the upstream side too, so the backend's writes start failing.
    assert!(
        wait_until(Duration::from_millis(1500), || cut.load(Ordering::SeqCst)),
        "backend still streaming"
    );
    assert!(written.load(Ordering::SeqCst) < 40);
    assert_eq!(get(p.addr, "/next").text(), "fresh");
    assert_eq!(
        b.connections(),
        2,
        "the abandoned stream's connection was reused"
    );
}
both_drivers!(client_leaving_mid_stream_closes_the_upstream_connection);

fn client_leaving_before_the_response_closes_the_server_connection(driver: &str) {
    use std::sync::{Arc, Mutex};
    // The backend "generates" for up to 5 s, but stops as soon as its connection closes.
    let waited: Arc<Mutex<Option<Duration>>> = Arc::new(Mutex::new(None));
    let seen = waited.clone();
    let b = Backend::start(move |_req, c| {
        let started = std::time::Instant::now();
        let data = c.read_some(Duration::from_secs(5));
        if data.is_empty() {
            *seen.lock().unwrap() = Some(started.elapsed());
        }
    });
    let p = Proxy::start(driver, &single(b.addr()));
    let mut c = Client::connect(p.addr);
    c.send("POST /v1/completions HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}");
    assert!(wait_until(Duration::from_secs(2), || b.request_count() == 1));
    std::thread::sleep(Duration::from_millis(100));
    drop(c);
    assert!(
        wait_until(Duration::from_secs(3), || waited.lock().unwrap().is_some()),
        "the server connection stayed open after the client left"
    );
    let took = waited.lock().unwrap().expect("waited");
    assert!(took < Duration::from_secs(2), "closed only after {took:?}");
    // Log lines reach stderr through the log thread, a moment later.
    assert!(wait_until(Duration::from_secs(5), || {
        p.stderr()
            .contains("client closed the connection before the response")
    }));
}
both_drivers!(client_leaving_before_the_response_closes_the_server_connection);

fn a_slow_answer_still_reaches_a_client_that_pipelines_meanwhile(driver: &str) {
    let b = Backend::start(|req, c| {
        if req.path() == "/slow" {
            c.sleep_ms(600);
        }
        c.ok(req.path());
    });
    let p = Proxy::start(driver, &single(b.addr()));
    let mut c = Client::connect(p.addr);
    c.send("GET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
    // Sent while the proxy waits on /slow: must not be taken for a client leaving.
    std::thread::sleep(Duration::from_millis(300));
    c.send("GET /next HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.read_response().text(), "/slow");
    assert_eq!(c.read_response().text(), "/next");
}
both_drivers!(a_slow_answer_still_reaches_a_client_that_pipelines_meanwhile);
