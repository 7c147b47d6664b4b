//! Limits in time and count: on the client side client_header_timeout,
//! client_body_timeout, keepalive_timeout and keepalive_requests; on the server side
//! read_timeout and send_timeout, and what a client sees of a response cut by them or by
//! a server that dies.

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

// Server-side timeouts and cut responses: a response whose body stops coming (a stall past
// read_timeout, or a server that dies) is never handed to the client as complete, and
// peers that take nothing are let go after send_timeout.

/// Starts `GET /` and reads the head and first chunk of a chunked response.
fn first_chunk_of(p: &Proxy) -> Client {
    let mut c = Client::connect(p.addr);
    c.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_head();
    assert_eq!(
        (r.status, r.framing),
        (200, Framing::Chunked),
        "{}",
        r.head_text()
    );
    assert_eq!(c.next_chunk().as_deref(), Some(&b"first"[..]));
    c
}

/// The rest of a cut chunked body: no last chunk, then the connection ends.
fn assert_cut_without_last_chunk(p: &Proxy, mut c: Client) {
    match c.try_next_chunk() {
        Err(_) => {}
        Ok(chunk) => panic!("after the cut the client got {chunk:?}"),
    }
    assert!(c.closed_within(Duration::from_secs(1)), "connection kept");
    wait_until(Duration::from_secs(3), || {
        p.stderr_count("cut after 10 body bytes") == 1
    });
    assert_eq!(
        p.stderr_count("cut after 10 body bytes"),
        1,
        "{}",
        p.stderr()
    );
}

fn chunked_response_stalled_past_read_timeout_ends_without_its_last_chunk(driver: &str) {
    let b = Backend::start(|_, c| {
        c.chunked_head(200, &[]);
        c.chunk(b"first");
        c.sleep_ms(1500);
        c.chunk(b"late");
        c.end_chunks();
    });
    let p = Proxy::start(
        driver,
        &config("", "read_timeout = \"500ms\"", &[server(b.addr(), "")]),
    );
    let c = first_chunk_of(&p);
    assert_cut_without_last_chunk(&p, c);
}
both_drivers!(chunked_response_stalled_past_read_timeout_ends_without_its_last_chunk);

fn chunked_response_of_a_server_that_dies_ends_without_its_last_chunk(driver: &str) {
    let b = Backend::start(|_, c| {
        c.chunked_head(200, &[]);
        c.chunk(b"first");
        c.close();
    });
    let p = Proxy::start(driver, &single(b.addr()));
    let c = first_chunk_of(&p);
    assert_cut_without_last_chunk(&p, c);
}
both_drivers!(chunked_response_of_a_server_that_dies_ends_without_its_last_chunk);

fn cut_body_read_until_close_ends_in_a_reset_not_an_end(driver: &str) {
    use std::io::{ErrorKind, Read, Write};
    let b = Backend::start(|req, c| {
        c.chunked_head(200, &[]);
        c.chunk(b"first");
        if req.path() == "/cut" {
            c.sleep_ms(1500);
        }
        c.end_chunks();
    });
    let p = Proxy::start(
        driver,
        &config("", "read_timeout = \"500ms\"", &[server(b.addr(), "")]),
    );
    // An HTTP/1.0 client gets the body until the connection ends: only the way it ends
    // tells a whole body from a cut one.
    let read_to_end = |path: &str| {
        let mut s = std::net::TcpStream::connect(p.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: t\r\n\r\n").as_bytes())
            .unwrap();
        let mut got = Vec::new();
        let end = s.read_to_end(&mut got).map_err(|e| e.kind());
        (String::from_utf8_lossy(&got).into_owned(), end)
    };
    let (whole, end) = read_to_end("/whole");
    assert!(whole.ends_with("\r\n\r\nfirst"), "{whole:?}");
    assert!(end.is_ok(), "{end:?}");
    let (cut, end) = read_to_end("/cut");
    assert!(cut.contains(" 200 ") && cut.ends_with("first"), "{cut:?}");
    assert_eq!(end, Err(ErrorKind::ConnectionReset), "got {cut:?}");
}
both_drivers!(cut_body_read_until_close_ends_in_a_reset_not_an_end);

fn client_that_takes_no_response_is_let_go_after_send_timeout(driver: &str) {
    const SIZE: usize = 64 << 20;
    let b = Backend::start(|_, c| {
        c.respond(200, &[], &vec![b'x'; SIZE]);
    });
    let p = Proxy::start(
        driver,
        &config("", "send_timeout = \"500ms\"", &[server(b.addr(), "")]),
    );
    let mut c = Client::connect_with_small_window(p.addr);
    c.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        c.closed_within(Duration::from_secs(3)),
        "the proxy still waits"
    );
    assert!(
        c.leftover().len() < SIZE,
        "all {} bytes came",
        c.leftover().len()
    );
    wait_until(Duration::from_secs(3), || {
        p.stderr_count("within send_timeout") == 1
    });
    assert_eq!(p.stderr_count("within send_timeout"), 1, "{}", p.stderr());
    assert!(
        wait_until(Duration::from_secs(3), || b.active() == 0),
        "the server connection was kept"
    );
}
both_drivers!(client_that_takes_no_response_is_let_go_after_send_timeout);

fn server_that_reads_no_request_body_gives_504_after_send_timeout(driver: &str) {
    use std::io::Write;
    // Accepts, then reads nothing: the proxy's writes fill the socket buffers and stall.
    let listener = std::net::TcpListener::bind(("127.0.0.1", free_port())).unwrap();
    let addr = listener.local_addr().unwrap();
    let holder = std::thread::spawn(move || {
        let held = listener.accept();
        std::thread::sleep(Duration::from_secs(4));
        drop(held);
    });
    let p = Proxy::start(
        driver,
        &config(
            "client_max_body_size = \"64m\"",
            "send_timeout = \"500ms\"",
            &[server(addr, "")],
        ),
    );
    const SIZE: usize = 32 << 20;
    let mut c = Client::connect(p.addr);
    let mut writer = c.try_clone_stream();
    let sender = std::thread::spawn(move || {
        let head = format!("PUT / HTTP/1.1\r\nHost: t\r\nContent-Length: {SIZE}\r\n\r\n");
        let _ = writer.write_all(head.as_bytes());
        let _ = writer.write_all(&vec![b'y'; SIZE]);
    });
    let started = Instant::now();
    let r = c.read_response();
    assert_eq!(r.status, 504, "{}", r.head_text());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(
        c.closed_within(Duration::from_secs(1)),
        "body unread, connection kept"
    );
    let _ = sender.join();
    let _ = holder.join();
}
both_drivers!(server_that_reads_no_request_body_gives_504_after_send_timeout);
