//! Long response bodies relayed with splice (`http::spliced`): bodies of mixed lengths, long
//! and short, follow each other on one client connection and one pooled server connection
//! unchanged; a head that does not fit the small head read after a long body is still read
//! whole; a slow client still gets every byte.

use std::io::Read;
use std::time::Duration;

use crate::support::*;

/// A body that differs with its length, so a byte from the wrong response shows.
fn body(n: usize) -> Vec<u8> {
    (0..n).map(|i| b'a' + ((i * 7 + n) % 26) as u8).collect()
}

/// `/n/LEN` answers LEN bytes of [`body`]; `/big-head/LEN` the same behind a 12 KiB header.
fn sized_backend() -> Backend {
    Backend::start(|req, c| {
        let (big, len) = match req.path().strip_prefix("/big-head/") {
            Some(len) => (true, len),
            None => (false, req.path().trim_start_matches("/n/")),
        };
        let n: usize = len.parse().unwrap();
        let filler = "h".repeat(12 * 1024);
        let headers: &[(&str, &str)] = if big { &[("X-Filler", &filler)] } else { &[] };
        c.respond(200, headers, &body(n));
    })
}

fn mixed_lengths_follow_each_other_on_one_client_and_one_server_connection(driver: &str) {
    let b = sized_backend();
    let p = Proxy::start(driver, &single(b.addr()));
    let mut c = Client::connect(p.addr);
    let paths = [
        "/n/3145728",
        "/n/71680",
        "/n/100",
        "/big-head/5000",
        "/n/1048576",
        "/n/5",
        "/big-head/300000",
        "/n/204800",
        "/n/61440",
        "/n/9000",
        "/n/2097152",
    ];
    for round in 0..2 {
        for path in paths {
            let r = c.request(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n"));
            assert_eq!(r.status, 200, "round {round} {path}");
            let n: usize = path.rsplit('/').next().unwrap().parse().unwrap();
            assert_eq!(r.body.len(), n, "round {round} {path}");
            assert!(r.body == body(n), "round {round} {path}: bytes differ");
            if path.starts_with("/big-head/") {
                assert_eq!(r.header("X-Filler").map(str::len), Some(12 * 1024));
            }
        }
    }
    assert_eq!(
        b.connections(),
        1,
        "one pooled server connection carried them all"
    );
}
both_drivers!(mixed_lengths_follow_each_other_on_one_client_and_one_server_connection);

fn a_slow_reader_gets_a_long_body_whole(driver: &str) {
    let b = sized_backend();
    let p = Proxy::start(driver, &single(b.addr()));
    let n = 4 * 1024 * 1024;
    // Twice: the second body comes after a long one (the small head read).
    for _ in 0..2 {
        let mut c = Client::connect_with_small_window(p.addr);
        c.send(format!(
            "GET /n/{n} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        ));
        let mut stream = c.try_clone_stream();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut got = Vec::new();
        let mut piece = vec![0u8; 8 * 1024];
        loop {
            match stream.read(&mut piece) {
                Ok(0) => break,
                Ok(k) => got.extend_from_slice(&piece[..k]),
                Err(e) => panic!("read: {e}"),
            }
            // Reads slower than the proxy could write: the splice waits for the client.
            if got.len() % (256 * 1024) < 8 * 1024 {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let at = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert!(got[..at].starts_with(b"HTTP/1.1 200"));
        assert!(got[at..] == body(n)[..], "{} body bytes", got.len() - at);
    }
}
both_drivers!(a_slow_reader_gets_a_long_body_whole);
