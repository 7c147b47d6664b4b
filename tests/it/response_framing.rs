//! Responses with ambiguous framing, as wire transcripts: a head that cannot be trusted
//! becomes 502 before anything reaches the client, a body that breaks after its head went
//! down cuts the client connection, and that server connection is never used again. No
//! response can put the client connection (or a pooled one) out of step.

use std::time::Duration;

use crate::support::*;

/// Response heads that must become 502, never reach the client.
const BAD_HEADS: &[(&str, &str)] = &[
    (
        "CL and TE",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ),
    (
        "TE and CL",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ),
    (
        "CL and a non-chunked TE",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: gzip\r\n\r\nhello",
    ),
    (
        "differing Content-Lengths",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    ),
    (
        "differing Content-Length list",
        "HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello!",
    ),
    (
        "signed Content-Length",
        "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello",
    ),
    (
        "empty Content-Length",
        "HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\nhello",
    ),
    (
        "chunked twice",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
    ),
    (
        "obs-fold",
        "HTTP/1.1 200 OK\r\nX: a\r\n folded\r\nContent-Length: 2\r\n\r\nok",
    ),
    (
        "NUL in a value",
        "HTTP/1.1 200 OK\r\nX: a\0b\r\nContent-Length: 2\r\n\r\nok",
    ),
    (
        "CR in a value",
        "HTTP/1.1 200 OK\r\nX: a\rb\r\nContent-Length: 2\r\n\r\nok",
    ),
    (
        "space before colon",
        "HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok",
    ),
    (
        "four-digit status",
        "HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nok",
    ),
    (
        "two-digit status",
        "HTTP/1.1 20 OK\r\nContent-Length: 2\r\n\r\nok",
    ),
    (
        "status below 100",
        "HTTP/1.1 099 Odd\r\nContent-Length: 2\r\n\r\nok",
    ),
    (
        "HTTP/2 status line",
        "HTTP/2 200 OK\r\nContent-Length: 2\r\n\r\nok",
    ),
    (
        "HTTP/1.2 status line",
        "HTTP/1.2 200 OK\r\nContent-Length: 2\r\n\r\nok",
    ),
    ("no version", "200 OK\r\nContent-Length: 2\r\n\r\nok"),
    (
        "ICY status line",
        "ICY 200 OK\r\nContent-Length: 2\r\n\r\nok",
    ),
    (
        "header without colon",
        "HTTP/1.1 200 OK\r\nNoColon\r\nContent-Length: 2\r\n\r\nok",
    ),
    (
        "101 to a plain GET",
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n",
    ),
];

/// Each probe gets its own path so the backend knows what to answer; every other path
/// gets a clean `ok`.
fn scripted_backend() -> Backend {
    Backend::start(|req, c| {
        let probe = req
            .path()
            .strip_prefix("/bad/")
            .and_then(|i| i.parse::<usize>().ok());
        match probe.and_then(|i| BAD_HEADS.get(i)) {
            Some((_, wire)) => {
                c.write(wire.as_bytes());
            }
            None => {
                c.ok(&format!("ok {}", req.path()));
            }
        }
    })
}

fn ambiguous_response_heads_become_502_and_the_connection_is_not_reused(driver: &str) {
    let b = scripted_backend();
    // Every probe is a server failure: keep the server in the running all the same.
    let p = Proxy::start(
        driver,
        &config("", "", &[server(b.addr(), "max_fails = 0")]),
    );
    let mut failures = Vec::new();
    for (i, (name, _)) in BAD_HEADS.iter().enumerate() {
        let mut c = Client::connect(p.addr);
        // A clean request first, so that a pooled connection exists to be (not) reused.
        let r = c.request("GET /warm HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(r.text(), "ok /warm", "before {name}");
        c.send(format!("GET /bad/{i} HTTP/1.1\r\nHost: t\r\n\r\n"));
        match c.try_read_response() {
            Ok(r) if r.status == 502 => {}
            Ok(r) => failures.push(format!("{name}: got {} {:?}", r.status, r.text())),
            Err(e) => failures.push(format!("{name}: {e}")),
        }
        // The client connection is still in step: the next answer is its own.
        c.send("GET /after HTTP/1.1\r\nHost: t\r\n\r\n");
        match c.try_read_response() {
            Ok(r) if r.text() == "ok /after" => {}
            Ok(r) => failures.push(format!(
                "{name}: next request got {} {:?}",
                r.status,
                r.text()
            )),
            Err(e) => failures.push(format!("{name}: next request: {e}")),
        }
        // The connection that carried the bad response was not used again.
        let requests = b.requests();
        let conn_of = |path: &str| {
            requests
                .iter()
                .rev()
                .find(|r| r.path() == path)
                .map(|r| r.conn)
        };
        let bad = conn_of(&format!("/bad/{i}"));
        if bad.is_none() || bad == conn_of("/after") {
            failures.push(format!("{name}: the connection was reused"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
both_drivers!(ambiguous_response_heads_become_502_and_the_connection_is_not_reused);

/// A chunked body that breaks after the head went down: the client sees valid chunks up
/// to the break, then the connection closes; nothing after the break reaches it.
fn a_bad_chunk_after_the_head_went_down_cuts_the_client_connection(driver: &str) {
    let bad_chunks = [
        "zz\r\n",
        "0x5\r\nhello\r\n",
        "5\nhello\r\n",
        "5\r\nhelloXX",
        "5;a\rb\r\nhello\r\n",
        "10000000000000000\r\n",
    ];
    let b = Backend::start(move |req, c| {
        let Some(i) = req
            .path()
            .strip_prefix("/cut/")
            .and_then(|i| i.parse::<usize>().ok())
        else {
            c.ok("fresh");
            return;
        };
        c.chunked_head(200, &[]);
        c.chunk(b"good");
        c.sleep_ms(50);
        let forged = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged";
        c.write(format!("{}0\r\n\r\n{forged}", bad_chunks[i]).as_bytes());
        c.sleep_ms(50);
    });
    let p = Proxy::start(driver, &single(b.addr()));
    for (i, bad) in bad_chunks.iter().enumerate() {
        let mut c = Client::connect(p.addr);
        c.send(format!("GET /cut/{i} HTTP/1.1\r\nHost: t\r\n\r\n"));
        let r = c.read_head();
        assert_eq!((r.status, r.framing), (200, Framing::Chunked), "{bad:?}");
        assert_eq!(c.next_chunk().as_deref(), Some(&b"good"[..]), "{bad:?}");
        assert!(c.try_next_chunk().is_err(), "{bad:?}: the body went on");
        assert!(c.closed_within(Duration::from_secs(2)), "{bad:?}");
        assert!(
            !String::from_utf8_lossy(c.leftover()).contains("forged"),
            "{bad:?}"
        );
    }
    let connections = b.connections();
    assert_eq!(get(p.addr, "/next").text(), "fresh");
    assert_eq!(
        b.connections(),
        connections + 1,
        "a broken connection was reused"
    );
}
both_drivers!(a_bad_chunk_after_the_head_went_down_cuts_the_client_connection);

/// Bytes a server sends on an idle pooled connection (a late second response) would be
/// read as the answer to the next request sent on it: such a connection is never reused.
fn a_late_extra_response_never_answers_the_next_request(driver: &str) {
    let b = Backend::start(|req, c| {
        c.ok(&format!("real {}", req.path()));
        if req.path() == "/late" {
            c.sleep_ms(100);
            c.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged");
        }
    });
    let p = Proxy::start(driver, &single(b.addr()));
    let mut c = Client::connect(p.addr);
    assert_eq!(
        c.request("GET /late HTTP/1.1\r\nHost: t\r\n\r\n").text(),
        "real /late"
    );
    // The forged bytes are waiting on the pooled connection by now.
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..3 {
        let r = c.request(format!("GET /n{i} HTTP/1.1\r\nHost: t\r\n\r\n"));
        assert_eq!(
            r.text(),
            format!("real /n{i}"),
            "a stale response was served"
        );
    }
    assert_eq!(b.connections(), 2);
}
both_drivers!(a_late_extra_response_never_answers_the_next_request);

/// A response head that arrives before the request body was all sent: the rest of the
/// body is not sent (the server would read it as a request of its own), the client gets
/// the answer and, its large rest unread, is closed; that server connection is never
/// pooled.
fn an_early_response_stops_the_body_and_is_never_pooled(driver: &str) {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    // A raw server that answers as soon as it has a head, without reading any body, and
    // then logs everything else it reads on that connection.
    let listener = TcpListener::bind(("127.0.0.1", free_port())).expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen: Arc<Mutex<Vec<u8>>> = Arc::new(Mutex::new(Vec::new()));
    let closed = Arc::new(AtomicBool::new(false));
    let (log, ended) = (seen.clone(), closed.clone());
    std::thread::spawn(move || {
        let Ok((mut s, _)) = listener.accept() else {
            return;
        };
        s.set_read_timeout(Some(Duration::from_secs(3))).ok();
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let _ = s.write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 4\r\n\r\nnope");
        let end = head.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        log.lock().unwrap().extend_from_slice(&head[end..]);
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Err(_) => return,
                Ok(n) => log.lock().unwrap().extend_from_slice(&buf[..n]),
            }
        }
        ended.store(true, Ordering::SeqCst);
    });
    let p = Proxy::start(driver, &single(addr));
    let mut c = Client::connect(p.addr);
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n";
    let body = format!("{smuggled}{}", "x".repeat(64 - smuggled.len()));
    // More than ringway drops to keep a connection: the client's is closed too (a
    // smaller rest is dropped and the connection kept: see `early_answers`).
    c.send("POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n");
    // The server answers while the body is still on its way.
    std::thread::sleep(Duration::from_millis(300));
    let _ = c.try_send(&body);
    let _ = c.try_send(&body);
    let r = c.read_response();
    assert_eq!((r.status, r.text().as_str()), (401, "nope"));
    assert!(r.says_close(), "{}", r.head_text());
    assert!(c.closed_within(Duration::from_secs(3)));
    // Not pooled: the proxy closed that server connection.
    assert!(
        wait_until(Duration::from_secs(2), || closed.load(Ordering::SeqCst)),
        "the server connection stayed open"
    );
    let seen = seen.lock().unwrap().clone();
    assert!(
        !String::from_utf8_lossy(&seen).contains("/smuggled"),
        "the server got the body after answering: {:?}",
        String::from_utf8_lossy(&seen)
    );
}
both_drivers!(an_early_response_stops_the_body_and_is_never_pooled);
