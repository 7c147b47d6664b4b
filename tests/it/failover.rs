//! Failover end to end: servers that refuse or hang up while request bodies are in flight,
//! and what is replayed on the next server.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::*;

/// What a [`Raw`] server does after a read, given every byte its connection got so far.
enum Next {
    Read,
    /// Write these bytes and close.
    Answer(&'static [u8]),
    /// Hang up without a word.
    Close,
}

const OK_CLOSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";

type Step = dyn Fn(&[u8]) -> Next + Send + Sync;

/// Reads as they arrived: when (`now_us`) and what.
type Reads = Mutex<Vec<(u64, Vec<u8>)>>;

/// A bare TCP server for what [`Backend`] cannot do: see request bytes as they arrive, or
/// hang up in the middle of a request body. One thread per connection.
struct Raw {
    addr: SocketAddr,
    /// Every read on every connection: when (`now_us`) and what.
    reads: Arc<Reads>,
    stop: Arc<AtomicBool>,
}

impl Raw {
    fn start(step: impl Fn(&[u8]) -> Next + Send + Sync + 'static) -> Raw {
        let listener = TcpListener::bind(("127.0.0.1", free_port())).expect("bind raw server");
        let addr = listener.local_addr().expect("addr");
        let reads = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let step: Arc<Step> = Arc::new(step);
        let (log, halt) = (reads.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if halt.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let (log, step) = (log.clone(), step.clone());
                std::thread::spawn(move || serve_raw(stream, &log, &*step));
            }
        });
        Raw { addr, reads, stop }
    }

    /// Everything received, all connections, in arrival order.
    fn received(&self) -> Vec<u8> {
        let reads = self.reads.lock().unwrap_or_else(|e| e.into_inner());
        reads.iter().flat_map(|(_, b)| b.iter().copied()).collect()
    }

    fn has(&self, needle: &[u8]) -> bool {
        self.received().windows(needle.len()).any(|w| w == needle)
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

fn serve_raw(mut stream: TcpStream, log: &Reads, step: &Step) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut all = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        all.extend_from_slice(&buf[..n]);
        log.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((now_us(), buf[..n].to_vec()));
        match step(&all) {
            Next::Read => {}
            Next::Answer(bytes) => {
                let _ = stream.write_all(bytes);
                let _ = stream.shutdown(std::net::Shutdown::Both);
                return;
            }
            Next::Close => return,
        }
    }
}

/// Answers once a whole chunked body has arrived.
fn answers_after_chunked_body(all: &[u8]) -> Next {
    if all.ends_with(b"0\r\n\r\n") {
        Next::Answer(OK_CLOSE)
    } else {
        Next::Read
    }
}

/// The body bytes of the first request `raw` received (all after the head).
fn body_seen(raw: &Raw) -> Vec<u8> {
    let all = raw.received();
    let at = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a request head");
    all[at + 4..].to_vec()
}

/// A proxy config whose first server is tried first and `backup` only after it failed.
fn primary_then_backup(
    listener: &str,
    upstream: &str,
    primary: SocketAddr,
    backup: SocketAddr,
) -> String {
    config(
        listener,
        upstream,
        &[
            server(primary, "max_fails = 0"),
            server(backup, "backup = true"),
        ],
    )
}

fn streamed_chunked_post_reaches_the_server_before_it_ends_and_survives_a_refused_connect(
    driver: &str,
) {
    let raw = Raw::start(answers_after_chunked_body);
    let p = Proxy::start(driver, &primary_then_backup("", "", dead_addr(), raw.addr));
    let mut c = Client::connect(p.addr);
    c.send("POST /gen HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
    // The client pauses here; the first chunk must not wait for the rest.
    assert!(
        wait_until(Duration::from_secs(2), || raw.has(b"hello")),
        "the server saw {:?} while the client paused",
        String::from_utf8_lossy(&raw.received())
    );
    let paused_until = now_us();
    c.send("6\r\n world\r\n0\r\n\r\n");
    let r = c.read_response();
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    let first = raw.reads.lock().unwrap()[0].0;
    assert!(first < paused_until, "the first bytes came with the rest");
    assert_eq!(body_seen(&raw), b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
}
both_drivers!(
    streamed_chunked_post_reaches_the_server_before_it_ends_and_survives_a_refused_connect
);

fn put_body_streamed_to_a_server_that_hung_up_is_replayed_whole_from_its_copy(driver: &str) {
    // The first server takes the first chunk, then hangs up while the client pauses.
    let quitter = Raw::start(|all| {
        if all.windows(5).any(|w| w == b"hello") {
            Next::Close
        } else {
            Next::Read
        }
    });
    let raw = Raw::start(answers_after_chunked_body);
    let p = Proxy::start(driver, &primary_then_backup("", "", quitter.addr, raw.addr));
    let mut c = Client::connect(p.addr);
    c.send("PUT /doc HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
    assert!(wait_until(Duration::from_secs(2), || quitter.has(b"hello")));
    std::thread::sleep(Duration::from_millis(100));
    c.send("6\r\n world\r\n0\r\n\r\n");
    let r = c.read_response();
    assert_eq!((r.status, r.text().as_str()), (200, "ok"), "{}", p.stderr());
    assert_eq!(body_seen(&raw), b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
}
both_drivers!(put_body_streamed_to_a_server_that_hung_up_is_replayed_whole_from_its_copy);

/// A server that hangs up once it has received `n` bytes of a connection.
fn hangs_up_after(n: usize) -> Raw {
    Raw::start(move |all| {
        if all.len() >= n {
            Next::Close
        } else {
            Next::Read
        }
    })
}

fn body_larger_than_its_copy_is_not_replayed_once_bytes_beyond_it_reached_a_server(driver: &str) {
    let quitter = hangs_up_after(8 * 1024);
    let b = Backend::named("b");
    let listener = "client_body_buffer_size = \"1k\"";
    let p = Proxy::start(
        driver,
        &primary_then_backup(listener, "", quitter.addr, b.addr()),
    );
    let body = pattern(64 * 1024, 7);
    let mut c = Client::connect(p.addr);
    let _ = c.try_send(format!(
        "PUT /big HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        body.len()
    ));
    let _ = c.try_send(&body);
    // The proxy may close before the client's last bytes are read (the kernel then resets),
    // so an answer is not certain; a wrong one, or a replay, is what must never happen.
    if let Ok(r) = c.try_read_response() {
        assert_eq!(r.status, 502, "{}", r.head_text());
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(b.request_count(), 0, "a partly sent body was replayed");
}
both_drivers!(body_larger_than_its_copy_is_not_replayed_once_bytes_beyond_it_reached_a_server);

fn body_within_its_copy_is_replayed_after_the_server_read_it_and_hung_up(driver: &str) {
    let quitter = hangs_up_after(600);
    let b = Backend::start(|req, c| {
        c.ok(&format!("{} bytes", req.body.len()));
    });
    let listener = "client_body_buffer_size = \"1k\"";
    let p = Proxy::start(
        driver,
        &primary_then_backup(listener, "", quitter.addr, b.addr()),
    );
    let body = pattern(700, 8);
    let mut c = Client::connect(p.addr);
    c.send(format!(
        "PUT /small HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        body.len()
    ));
    c.send(&body);
    let r = c.read_response();
    assert_eq!((r.status, r.text().as_str()), (200, "700 bytes"));
    assert_eq!(b.requests()[0].body, body);
}
both_drivers!(body_within_its_copy_is_replayed_after_the_server_read_it_and_hung_up);
