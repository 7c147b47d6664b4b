//! Answers that come before the request body was all read, as wire transcripts against a
//! raw server that reads heads byte by byte and a body only when told to: which connection
//! is kept (the client's only once the rest of its body was read and dropped through its
//! framing, the server's never when it may not have read the body), interim `1xx` answers
//! that must not stop the body, and body bytes that are never parsed as a request.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::*;

/// What a request's body is made of: a request a confused hop would run, cut before its
/// end so that a server taking it for a head waits for the rest (the next request).
const SMUGGLED_PART: &str = "GET /smuggled HTTP/1.1\r\nX-Pad: ";

/// Per accepted connection: its request lines, and whether the peer closed it.
type ConnectionLog = Arc<Mutex<Vec<(Vec<String>, bool)>>>;

/// A raw server: for each head it reads (never more than the head), `answer` writes the
/// response; it may read a body itself. Logs each connection's request lines.
struct RawServer {
    addr: SocketAddr,
    log: ConnectionLog,
}

impl RawServer {
    fn start(answer: impl Fn(&str, &mut TcpStream) + Send + Sync + 'static) -> RawServer {
        let listener = TcpListener::bind(("127.0.0.1", free_port())).expect("bind");
        let addr = listener.local_addr().expect("addr");
        let log: ConnectionLog = Arc::default();
        let (seen, answer) = (log.clone(), Arc::new(answer));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { return };
                let (seen, answer) = (seen.clone(), answer.clone());
                std::thread::spawn(move || {
                    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
                    let at = {
                        let mut log = seen.lock().unwrap();
                        log.push((Vec::new(), false));
                        log.len() - 1
                    };
                    while let Some(head) = read_head(&mut s) {
                        let line = head.lines().next().unwrap_or("").to_string();
                        seen.lock().unwrap()[at].0.push(line);
                        answer(&head, &mut s);
                    }
                    seen.lock().unwrap()[at].1 = true;
                });
            }
        });
        RawServer { addr, log }
    }

    fn connections(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    /// Every request line the server read, on any connection.
    fn lines(&self) -> Vec<String> {
        let log = self.log.lock().unwrap();
        log.iter().flat_map(|(lines, _)| lines.clone()).collect()
    }

    fn closed(&self, connection: usize) -> bool {
        self.log.lock().unwrap()[connection].1
    }
}

/// Reads one head byte by byte (so the bytes behind it stay in the socket); `None` at the
/// end of the stream.
fn read_head(s: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

fn content_length(head: &str) -> usize {
    head.lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0)
}

/// Answers `status` with `body` (keep-alive, framed by a length).
fn answer(s: &mut TcpStream, status: &str, body: &str) {
    let _ = write!(
        s,
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
}

/// Refuses every POST from its head alone (the body is never read), serves the rest with
/// their path: a server that answers early.
fn refusing_server() -> RawServer {
    RawServer::start(|head, s| {
        let path = head.split(' ').nth(1).unwrap_or("").to_string();
        if head.starts_with("POST") {
            answer(s, "401 Unauthorized", "nope");
        } else {
            answer(s, "200 OK", &path);
        }
    })
}

/// The body went out with its head in one write, so no early answer can be seen; the
/// server refused it from the head alone and would take the body for the start of its next
/// request. That connection is not pooled: the next request goes on a fresh one and gets
/// its own answer. (Pooled, the next request's head would complete the body's `GET
/// /smuggled` and the client would get that answer.)
fn a_refused_body_that_went_with_its_head_never_frames_the_next_request(driver: &str) {
    let srv = refusing_server();
    let p = Proxy::start(driver, &single(srv.addr));
    let mut c = Client::connect(p.addr);
    c.send(format!(
        "POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{SMUGGLED_PART}",
        SMUGGLED_PART.len()
    ));
    let r = c.read_response();
    assert_eq!((r.status, r.text().as_str()), (401, "nope"));
    assert!(
        !r.says_close(),
        "the whole body was read: {}",
        r.head_text()
    );
    let r = c.request("GET /next HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.text(), "/next", "the next request was framed by the body");
    assert_eq!(srv.connections(), 2);
    assert!(
        wait_until(Duration::from_secs(2), || srv.closed(0)),
        "the refused request's server connection stayed open"
    );
    // A request without a body refused alike leaves nothing unread: its connection is kept.
    let srv = RawServer::start(|_, s| answer(s, "404 Not Found", "none"));
    let p = Proxy::start(driver, &single(srv.addr));
    let mut c = Client::connect(p.addr);
    for _ in 0..3 {
        assert_eq!(c.request("GET /x HTTP/1.1\r\nHost: t\r\n\r\n").status, 404);
    }
    assert_eq!(srv.connections(), 1, "a bodiless 404 costs no connection");
}
both_drivers!(a_refused_body_that_went_with_its_head_never_frames_the_next_request);

/// An interim answer (`103 Early Hints`, `102 Processing`) while the body is still coming
/// is not an answer: the body goes on to the server, which reads it and answers, and both
/// connections are kept.
fn an_interim_answer_before_the_whole_body_lets_the_body_go_on(driver: &str) {
    let srv = RawServer::start(|head, s| {
        if head.starts_with("POST") {
            let _ = s.write_all(b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n");
            let mut body = vec![0u8; content_length(head)];
            let got = s.read_exact(&mut body).is_ok();
            let _ = s.write_all(b"HTTP/1.1 102 Processing\r\n\r\n");
            let text = format!(
                "got {} {}",
                body.len(),
                got && body.iter().all(|&b| b == b'x')
            );
            answer(s, "200 OK", &text);
        } else {
            answer(s, "200 OK", "get");
        }
    });
    let p = Proxy::start(
        driver,
        &config("", "first_byte_timeout = \"2s\"", &[server(srv.addr, "")]),
    );
    let mut c = Client::connect(p.addr);
    c.send("POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 3000\r\n\r\n");
    c.send("x".repeat(1000));
    // The 103 arrives while the rest of the body is on its way.
    std::thread::sleep(Duration::from_millis(300));
    c.send("x".repeat(2000));
    let r = c.read_response();
    assert_eq!((r.status, r.text().as_str()), (200, "got 3000 true"));
    assert!(!r.says_close(), "{}", r.head_text());
    assert_eq!(c.request("GET / HTTP/1.1\r\nHost: t\r\n\r\n").text(), "get");
    assert_eq!(srv.connections(), 1, "the server connection was kept");
}
both_drivers!(an_interim_answer_before_the_whole_body_lets_the_body_go_on);

/// A server that refuses while the client has not sent its body yet: the answer reaches
/// the client at once (not when more body bytes come), with keep-alive since the rest is
/// small; the rest of the body is read and dropped through its framing, never forwarded or
/// parsed, and the request behind it is served on the same connection.
fn an_early_answer_keeps_the_connection_once_a_small_rest_is_dropped(driver: &str) {
    let srv = refusing_server();
    let p = Proxy::start(driver, &single(srv.addr));
    let body = format!("{SMUGGLED_PART}x\r\n\r\n{}", "y".repeat(5000));
    let chunked = format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len());
    let cases = [
        (format!("Content-Length: {}\r\n", body.len()), body.clone()),
        ("Transfer-Encoding: chunked\r\n".to_string(), chunked),
    ];
    for (framing, rest) in &cases {
        let mut c = Client::connect(p.addr);
        c.send(format!("POST /up HTTP/1.1\r\nHost: t\r\n{framing}\r\n"));
        let r = c.read_response();
        assert_eq!(r.status, 401, "{framing}");
        assert!(!r.says_close(), "{framing}: {}", r.head_text());
        c.send(format!("{rest}GET /next HTTP/1.1\r\nHost: t\r\n\r\n"));
        let r = c.read_response();
        assert_eq!(r.text(), "/next", "{framing}");
        assert!(
            c.read_raw(Duration::from_millis(200)).is_empty(),
            "{framing}: the body was answered as a request"
        );
    }
    assert!(!srv.lines().iter().any(|l| l.contains("smuggled")));
}
both_drivers!(an_early_answer_keeps_the_connection_once_a_small_rest_is_dropped);

/// A rest too large to drop says `Connection: close`; one that does not come within the
/// bound closes the kept connection; either way nothing of it is parsed.
fn an_early_answer_closes_when_the_rest_is_large_or_late(driver: &str) {
    let srv = refusing_server();
    let p = Proxy::start(driver, &single(srv.addr));
    let mut c = Client::connect(p.addr);
    c.send("POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 401);
    assert!(r.says_close(), "{}", r.head_text());
    let _ = c.try_send(format!("{SMUGGLED_PART}x\r\n\r\n"));
    assert!(c.closed_within(Duration::from_secs(4)));
    assert!(c.leftover().is_empty());
    // Small, but the client never sends it.
    let mut c = Client::connect(p.addr);
    c.send("POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 401);
    assert!(!r.says_close());
    let started = std::time::Instant::now();
    assert!(c.closed_within(Duration::from_secs(4)));
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert!(!srv.lines().iter().any(|l| l.contains("smuggled")));
}
both_drivers!(an_early_answer_closes_when_the_rest_is_large_or_late);

/// ringway's own error before the body was read (no server to take it: 502) keeps the
/// connection the same way: the rest is dropped, and only the request after it is
/// answered.
fn an_own_error_before_the_body_drops_the_rest_and_keeps_the_connection(driver: &str) {
    let p = Proxy::start(driver, &single(dead_addr()));
    let mut c = Client::connect(p.addr);
    let body = format!("{SMUGGLED_PART}x\r\n\r\n");
    c.send(format!(
        "POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        body.len()
    ));
    let r = c.read_response();
    assert_eq!(r.status, 502);
    assert!(!r.says_close(), "{}", r.head_text());
    c.send(format!("{body}GET /next HTTP/1.1\r\nHost: t\r\n\r\n"));
    assert_eq!(c.read_response().status, 502);
    assert!(
        c.read_raw(Duration::from_millis(300)).is_empty(),
        "the body was answered as a request"
    );
}
both_drivers!(an_own_error_before_the_body_drops_the_rest_and_keeps_the_connection);
