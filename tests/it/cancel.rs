//! Cancellation (SPEC "Balancing and failure", last bullet): a client that goes away while
//! its request is queued, while the server works on the response head, or in the middle
//! of a streamed body, has its server connection closed within 100 ms — so an inference
//! server stops generating for nobody. The backend records the moment its connection
//! ends; the test, the moment its client left.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::*;

/// How soon after the client leaves the server connection must be closed.
const WITHIN: Duration = Duration::from_millis(100);

type Closed = Arc<Mutex<Option<Instant>>>;

/// A backend that, for `/gen`, sends a response head and a first token first when `stream`
/// holds, then waits for its connection to end (up to 10 s) and records when it did.
/// Anything else gets 200 at once.
fn generating(stream: bool) -> (Backend, Closed) {
    let closed: Closed = Arc::new(Mutex::new(None));
    let seen = closed.clone();
    let b = Backend::start(move |req, c| {
        if req.path() != "/gen" {
            c.ok("quick");
            return;
        }
        if stream {
            c.chunked_head(200, &[("Content-Type", "text/event-stream")]);
            c.chunk(b"data: {\"token\":1}\n\n");
        }
        let started = Instant::now();
        let more = c.read_some(Duration::from_secs(10));
        if more.is_empty() && started.elapsed() < Duration::from_secs(9) {
            *seen.lock().unwrap() = Some(Instant::now());
        }
    });
    (b, closed)
}

/// Waits (bounded) for the backend to see its connection end; gives how long after `left`.
#[track_caller]
fn closed_after(closed: &Closed, left: Instant) -> Duration {
    assert!(
        wait_until(Duration::from_secs(3), || closed.lock().unwrap().is_some()),
        "the server connection stayed open after the client left"
    );
    let at = closed.lock().unwrap().expect("closed");
    at.saturating_duration_since(left)
}

const GEN: &str = "POST /gen HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}";

/// The client leaves right after the server got the request, while the proxy waits for
/// the response head: the first moments of a wait are watched too, not only long ones.
fn a_client_leaving_before_the_head_closes_the_server_connection_at_once(driver: &str) {
    let (b, closed) = generating(false);
    let p = Proxy::start(driver, &single(b.addr()));
    let mut c = Client::connect(p.addr);
    c.send(GEN);
    assert!(b.wait_requests(1, Duration::from_secs(2)));
    let left = Instant::now();
    drop(c);
    let took = closed_after(&closed, left);
    assert!(took < WITHIN, "closed {took:?} after the client left");
}
both_drivers!(a_client_leaving_before_the_head_closes_the_server_connection_at_once);

/// The client has the head and a first token, then leaves while the server "thinks" about
/// the next one: the proxy is waiting on the server, not writing to the client, and still
/// closes the server connection at once.
fn a_client_leaving_mid_stream_closes_a_silent_server_connection_at_once(driver: &str) {
    let (b, closed) = generating(true);
    let p = Proxy::start(driver, &single(b.addr()));
    let mut c = Client::connect(p.addr);
    c.send(GEN);
    assert_eq!(c.read_head().status, 200);
    assert!(c.next_chunk().is_some());
    // Long enough for the proxy to be deep in its wait for the next token.
    std::thread::sleep(Duration::from_millis(300));
    let left = Instant::now();
    drop(c);
    let took = closed_after(&closed, left);
    assert!(took < WITHIN, "closed {took:?} after the client left");
    // The abandoned connection was not pooled: the next request dials a new one.
    assert_eq!(get(p.addr, "/next").text(), "quick");
    assert_eq!(b.connections(), 2);
}
both_drivers!(a_client_leaving_mid_stream_closes_a_silent_server_connection_at_once);

fn queue_depth(admin: SocketAddr) -> f64 {
    crate::admin::sum(
        &crate::admin::scrape(admin),
        "ringway_queue_depth",
        &[("upstream", "u")],
    )
}

/// A queued request whose client leaves is out of the line at once and never reaches the
/// server, even when a slot frees afterwards.
fn a_client_leaving_while_queued_never_reaches_the_server(driver: &str) {
    let (b, closed) = generating(false);
    let body = config(
        "",
        "queue = { max = 4, timeout = \"10s\" }",
        &[server(b.addr(), "max_conns = 1")],
    );
    let p = Proxy::start(driver, &format!("[admin]\nbind = \"$BIND2\"\n\n{body}"));
    let admin = p.extra[0];
    let mut holder = Client::connect(p.addr);
    holder.send(GEN);
    assert!(b.wait_requests(1, Duration::from_secs(2)));
    let mut queued = Client::connect(p.addr);
    queued.send("GET /queued HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(wait_until(Duration::from_secs(3), || queue_depth(admin) == 1.0));
    let left = Instant::now();
    drop(queued);
    assert!(wait_until(Duration::from_secs(3), || queue_depth(admin) == 0.0));
    let took = left.elapsed();
    assert!(took < WITHIN, "still queued {took:?} after the client left");
    // The holder leaves too: its slot frees, and nobody is left to take it.
    let left = Instant::now();
    drop(holder);
    assert!(closed_after(&closed, left) < WITHIN);
    std::thread::sleep(Duration::from_millis(200));
    let paths: Vec<String> = b.requests().iter().map(|r| r.path().to_string()).collect();
    assert_eq!(paths, ["/gen"]);
}
both_drivers!(a_client_leaving_while_queued_never_reaches_the_server);
