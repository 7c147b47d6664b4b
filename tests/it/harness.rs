//! Self-tests of the harness: the scriptable backend and the client against each other,
//! with no proxy in between, so a failing e2e test points at the proxy, not the tooling.

use std::time::Duration;

use crate::support::{Backend, Client, Framing, pattern, sha256_hex};

#[test]
fn backend_logs_heads_bodies_and_connections() {
    let b = Backend::start(|req, c| {
        let body = format!("{} {} {}", req.method, req.target, req.body.len());
        c.ok(&body);
    });
    let mut c = Client::connect(b.addr());
    let r = c.request("POST /a?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "POST /a?x=1 3");
    let r = c.request("POST /b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n3;e=1\r\nabc\r\n0\r\nT: 1\r\n\r\n");
    assert_eq!(r.text(), "POST /b 5");
    let log = b.requests();
    assert_eq!(log.len(), 2);
    assert_eq!(log[1].body, b"hiabc");
    assert!(log[1].chunked && log[1].complete);
    assert_eq!(
        (log[0].conn, log[0].seq, log[1].conn, log[1].seq),
        (0, 0, 0, 1)
    );
    assert_eq!(log[0].header("HOST"), Some("h"));
    assert!(log[0].head_text().starts_with("POST /a?x=1 HTTP/1.1\r\n"));
    assert_eq!(log[0].peer, c.local_addr());
    assert_eq!(b.connections(), 1);
}

#[test]
fn client_reads_pipelined_chunked_and_close_delimited_responses() {
    let b = Backend::start(|req, c| match req.path() {
        "/chunked" => {
            c.chunked_head(200, &[]);
            c.chunk(b"hello ");
            c.chunk(b"world");
            c.end_chunks();
        }
        "/close" => {
            c.write(b"HTTP/1.1 200 OK\r\n\r\nuntil close");
            c.close();
        }
        _ => {
            c.ok(req.path());
        }
    });
    let mut c = Client::connect(b.addr());
    c.send("GET /one HTTP/1.1\r\nHost: h\r\n\r\nGET /chunked HTTP/1.1\r\nHost: h\r\n\r\nGET /close HTTP/1.1\r\nHost: h\r\n\r\n");
    let r = c.read_response();
    assert_eq!((r.text().as_str(), r.framing), ("/one", Framing::Length));
    let r = c.read_response();
    assert_eq!(
        (r.text().as_str(), r.framing),
        ("hello world", Framing::Chunked)
    );
    let r = c.read_response();
    assert_eq!(
        (r.text().as_str(), r.framing),
        ("until close", Framing::Close)
    );
}

#[test]
fn backend_answers_expect_continue_and_big_bodies_hash_the_same() {
    let b = Backend::start(|req, c| {
        c.ok(&sha256_hex(&req.body));
    });
    let body = pattern(3 << 20, 7);
    let mut c = Client::connect(b.addr());
    c.send(format!(
        "PUT /x HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    ));
    assert_eq!(c.read_response().status, 100);
    c.send(&body);
    assert_eq!(c.read_response().text(), sha256_hex(&body));
}

#[test]
fn client_sees_a_close_and_an_open_connection() {
    let b = Backend::start(|_, c| {
        c.ok("bye");
        c.close();
    });
    let mut c = Client::connect(b.addr());
    assert!(!c.closed_within(Duration::from_millis(100)));
    c.request("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert!(c.closed_within(Duration::from_millis(500)));
}

#[test]
fn connect_from_binds_the_chosen_loopback_address() {
    let b = Backend::start(|req, c| {
        c.ok(&req.peer.ip().to_string());
    });
    let mut c = Client::connect_from("127.0.9.1".parse().unwrap(), b.addr());
    let r = c.request("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(r.text(), "127.0.9.1");
}
