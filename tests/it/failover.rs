//! Failover end to end: servers that die, refuse, hang up mid-body or fail while requests
//! and request bodies are in flight. What is retried (and said in the log), what is not,
//! how passive health marks a server, and what the client sees: never an error a retry
//! could have hidden, never a retried request that a server may already have acted on.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// Waits (bounded) for the error log, written by the proxy's log thread a moment after the
/// client got its answer, to hold `n` lines with `needle`; then checks there are exactly `n`.
fn assert_logged(p: &Proxy, needle: &str, n: usize) {
    wait_until(Duration::from_secs(3), || p.stderr_count(needle) >= n);
    assert_eq!(p.stderr_count(needle), n, "{needle:?} in:\n{}", p.stderr());
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

fn backend_killed_under_keep_alive_load_costs_no_client_a_request(driver: &str) {
    let a = Backend::named("a");
    let b = Backend::named("b");
    let servers = [server(a.addr(), ""), server(b.addr(), "")];
    let p = Proxy::start(driver, &config("", "balance = \"round_robin\"", &servers));
    let load = Load::start(p.addr, 4, 50);
    assert!(
        wait_until(Duration::from_secs(10), || load.ok() >= 150),
        "the load did not get going"
    );
    // Dropping a backend closes its listener and cuts every connection it has, requests
    // in flight included.
    drop(a);
    let at = load.ok();
    let more = wait_until(Duration::from_secs(10), || load.ok() >= at + 250);
    let (ok, failures) = load.stop();
    assert!(more, "only {ok} requests answered");
    assert!(
        failures.is_empty(),
        "{} failures: {failures:?}",
        failures.len()
    );
    assert!(b.request_count() >= 250);
}
both_drivers!(backend_killed_under_keep_alive_load_costs_no_client_a_request);

fn get_answered_502_is_retried_and_the_log_says_why(driver: &str) {
    let bad = Backend::start(|_, c| {
        c.respond(502, &[], b"bad");
    });
    let good = Backend::named("good");
    let log = "access_log = \"stdout\"\naccess_format = \"$upstream_status $status\"\n";
    let upstream = "next_upstream = [\"error\", \"http_502\"]";
    let p = Proxy::start(
        driver,
        &format!(
            "{log}{}",
            primary_then_backup("", upstream, bad.addr(), good.addr())
        ),
    );
    let r = get(p.addr, "/");
    assert_eq!((r.status, r.text().as_str()), (200, "good"));
    assert!(
        wait_until(Duration::from_secs(3), || p
            .stdout()
            .contains("502, 200 200")),
        "access log: {:?}",
        p.stdout()
    );
    let line = format!(
        "GET attempt on {} failed: answered 502; retrying",
        bad.addr()
    );
    assert_logged(&p, &line, 1);
}
both_drivers!(get_answered_502_is_retried_and_the_log_says_why);

fn post_is_not_retried_once_a_server_read_it(driver: &str) {
    // GETs are answered (and leave a pooled connection); a POST is read whole, then the
    // server hangs up without answering.
    let reader = Backend::start(|req, c| {
        if req.method == "POST" {
            c.close();
        } else {
            c.ok("got");
        }
    });
    let other = Backend::named("other");
    let upstream = "next_upstream = [\"error\", \"timeout\", \"http_502\"]";
    let p = Proxy::start(
        driver,
        &primary_then_backup("", upstream, reader.addr(), other.addr()),
    );
    let post = "POST /submit HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nbody";
    // On a fresh connection, then on the pooled one the GET left: a server that read a
    // request and went silent may have acted on it, pooled connection or not.
    let r = Client::connect(p.addr).request(post);
    assert_eq!(r.status, 502, "{}", r.head_text());
    assert_eq!(get(p.addr, "/").text(), "got");
    let r = Client::connect(p.addr).request(post);
    assert_eq!(r.status, 502, "{}", r.head_text());
    let posts: Vec<Request> = reader
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .collect();
    assert_eq!(posts.len(), 2, "each POST reached the server exactly once");
    assert!(posts.iter().all(|r| r.complete && r.body == b"body"));
    assert_eq!(other.request_count(), 0, "{:#?}", other.requests());
    assert_logged(&p, "not retried: non-idempotent request already sent", 2);
}
both_drivers!(post_is_not_retried_once_a_server_read_it);

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
    assert_logged(&p, "POST attempt on", 1);
    assert_logged(&p, "retrying on another server", 1);
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
    assert_logged(
        &p,
        "not retried: body larger than client_body_buffer_size already streamed",
        1,
    );
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

/// `max_fails = 2, fail_timeout = 1s` on a server answering 502, and a backup that serves
/// whenever it is skipped: the failing server's request count shows whether it was marked.
fn marked_window(driver: &str) -> (Backend, Backend, Proxy) {
    let failing = Backend::start(|_, c| {
        c.respond(502, &[], b"failed");
    });
    let backup = Backend::named("backup");
    let servers = [
        server(failing.addr(), "max_fails = 2, fail_timeout = \"1s\""),
        server(backup.addr(), "backup = true"),
    ];
    let upstream = "next_upstream = [\"error\", \"timeout\", \"http_502\"]";
    let p = Proxy::start(driver, &config("", upstream, &servers));
    (failing, backup, p)
}

fn failures_further_apart_than_fail_timeout_do_not_mark_a_server(driver: &str) {
    let (failing, _backup, p) = marked_window(driver);
    assert_eq!(get(p.addr, "/").text(), "backup");
    std::thread::sleep(Duration::from_millis(1300));
    // The first failure's window is over: this one starts a new count of one.
    assert_eq!(get(p.addr, "/").text(), "backup");
    assert_eq!(get(p.addr, "/").text(), "backup");
    assert_eq!(failing.request_count(), 3, "marked by failures 1.3 s apart");
    // The last two were within the window: now it is marked.
    assert_eq!(get(p.addr, "/").text(), "backup");
    assert_eq!(
        failing.request_count(),
        3,
        "two failures within 1 s did not mark"
    );
}
both_drivers!(failures_further_apart_than_fail_timeout_do_not_mark_a_server);

fn a_mark_lasts_fail_timeout_then_the_server_gets_traffic_again(driver: &str) {
    let (failing, _backup, p) = marked_window(driver);
    for _ in 0..2 {
        assert_eq!(get(p.addr, "/").text(), "backup");
    }
    let marked = Instant::now();
    assert_eq!(failing.request_count(), 2);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(get(p.addr, "/").text(), "backup");
    assert_eq!(failing.request_count(), 2, "skipped while marked");
    std::thread::sleep(Duration::from_millis(1200).saturating_sub(marked.elapsed()));
    assert_eq!(get(p.addr, "/").text(), "backup");
    assert_eq!(
        failing.request_count(),
        3,
        "still skipped after fail_timeout"
    );
}
both_drivers!(a_mark_lasts_fail_timeout_then_the_server_gets_traffic_again);

fn listed_404_moves_on_but_never_marks_the_server(driver: &str) {
    let missing = Backend::start(|_, c| {
        c.respond(404, &[], b"missing");
    });
    let backup = Backend::named("backup");
    let servers = [
        server(missing.addr(), "max_fails = 1, fail_timeout = \"60s\""),
        server(backup.addr(), "backup = true"),
    ];
    let upstream = "next_upstream = [\"error\", \"http_404\"]";
    let p = Proxy::start(driver, &config("", upstream, &servers));
    for _ in 0..3 {
        assert_eq!(get(p.addr, "/").text(), "backup");
    }
    assert_eq!(missing.request_count(), 3, "a 404 marked the server");
}
both_drivers!(listed_404_moves_on_but_never_marks_the_server);

fn listed_502_on_the_last_try_reaches_the_client_and_marks_the_server(driver: &str) {
    let failing = Backend::start(|_, c| {
        c.respond(502, &[("X-From", "server")], b"the server's own 502");
    });
    let servers = [server(
        failing.addr(),
        "max_fails = 1, fail_timeout = \"60s\"",
    )];
    let upstream = "next_upstream = [\"error\", \"http_502\"]";
    let p = Proxy::start(driver, &config("", upstream, &servers));
    let r = get(p.addr, "/");
    assert_eq!(r.status, 502);
    assert_eq!(r.header("x-from"), Some("server"), "{}", r.head_text());
    assert_eq!(r.text(), "the server's own 502");
    assert_logged(&p, "answered 502; not retried: tries exhausted", 1);
    // Now every server is unavailable: 502 at once, the server is not asked.
    let started = Instant::now();
    assert_eq!(get(p.addr, "/").status, 502);
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(failing.request_count(), 1);
}
both_drivers!(listed_502_on_the_last_try_reaches_the_client_and_marks_the_server);

/// A listening socket whose accept queue is full: connects to it hang (the kernel drops
/// the SYNs), as with a server that is down behind a firewall. Keep the listener and the
/// queued connections alive while used.
fn blackhole() -> (TcpListener, Vec<TcpStream>, SocketAddr) {
    use std::os::fd::AsRawFd;
    let listener = TcpListener::bind(("127.0.0.1", free_port())).expect("bind");
    // SAFETY: listen(2) on a socket we own; shrinks its backlog to the minimum.
    let rc = unsafe { libc::listen(listener.as_raw_fd(), 0) };
    assert_eq!(rc, 0);
    let addr = listener.local_addr().expect("addr");
    let queued = (0..4)
        .filter_map(|_| TcpStream::connect_timeout(&addr, Duration::from_millis(100)).ok())
        .collect();
    (listener, queued, addr)
}

fn connect_timeout_moves_on_when_listed_and_gives_504_when_not(driver: &str) {
    let (_listener, _queued, hole) = blackhole();
    let good = Backend::named("good");
    let upstream = "connect_timeout = \"300ms\"";
    let p = Proxy::start(
        driver,
        &primary_then_backup("", upstream, hole, good.addr()),
    );
    let started = Instant::now();
    let r = get(p.addr, "/");
    assert_eq!((r.status, r.text().as_str()), (200, "good"));
    assert!(started.elapsed() >= Duration::from_millis(250));

    let upstream = "connect_timeout = \"300ms\"\nnext_upstream = [\"error\"]";
    let p = Proxy::start(
        driver,
        &primary_then_backup("", upstream, hole, good.addr()),
    );
    let started = Instant::now();
    assert_eq!(get(p.addr, "/").status, 504);
    assert!(started.elapsed() < Duration::from_millis(1500));
    assert_eq!(good.request_count(), 1, "a timeout not listed was retried");
    assert_logged(&p, "not retried: next_upstream does not list it", 1);
}
both_drivers!(connect_timeout_moves_on_when_listed_and_gives_504_when_not);

/// GET /metrics on the admin listener.
fn scrape(admin: SocketAddr) -> String {
    let r = Client::connect(admin)
        .request("GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 200);
    r.text()
}

/// The value of the one sample of `name` whose labels contain `labels`; 0 when absent.
fn sample(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(labels))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

fn retries_total_counts_each_retry_that_happened(driver: &str) {
    let good = Backend::named("good");
    let (dead, lone) = (dead_addr(), dead_addr());
    let toml = format!(
        "[admin]\nbind = \"$BIND2\"\n\n\
         [[listener]]\nname = \"it\"\nbind = \"$BIND\"\nupstream = \"u\"\n\
         [[listener.route]]\npath_prefix = \"/lone\"\nupstream = \"lone\"\n\n\
         [upstreams.u]\nservers = [{}, {}]\n\n\
         [upstreams.lone]\nservers = [{}, {}]\n",
        server(dead, "max_fails = 0"),
        server(good.addr(), "backup = true"),
        server(lone, "max_fails = 0"),
        server(dead_addr(), "down = true"),
    );
    let p = Proxy::start(driver, &toml);
    for _ in 0..3 {
        assert_eq!(get(p.addr, "/").text(), "good");
    }
    // Tries are left, but no server to try: nothing was retried.
    for _ in 0..2 {
        assert_eq!(get(p.addr, "/lone").status, 502);
    }
    let text = scrape(p.extra[0]);
    let retries = "ringway_upstream_retries_total";
    let at = |up: &str, addr: SocketAddr| {
        sample(
            &text,
            retries,
            &format!("upstream=\"{up}\",server=\"{addr}\""),
        )
    };
    assert_eq!(at("u", dead), 3.0, "{text}");
    assert_eq!(at("u", good.addr()), 0.0, "{text}");
    assert_eq!(at("lone", lone), 0.0, "{text}");
    assert_logged(&p, "no other server to retry on", 2);
}
both_drivers!(retries_total_counts_each_retry_that_happened);
