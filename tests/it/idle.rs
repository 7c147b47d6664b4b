//! Idle keep-alive clients: a connection idle for a moment is parked (an entry in its
//! worker's table, not a task; `worker/parked.rs`), costs less memory than nginx's, and is
//! served again when its next request comes, closed at `keepalive_timeout`, and closed by
//! a graceful stop like any idle connection.

use std::net::Ipv4Addr;
use std::thread;
use std::time::Duration;

use crate::support::*;

const GET: &str = "GET / HTTP/1.1\r\nHost: t\r\n\r\n";
/// Longer than the proxy's park time (100 ms) plus one of its ticks.
const PARKED: Duration = Duration::from_millis(400);

fn a_client_idle_past_the_park_time_is_served_again(driver: &str) {
    let b = Backend::named("a");
    let p = Proxy::start(driver, &single(b.addr()));
    let mut c = Client::connect(p.addr);
    for round in 0..3 {
        let r = c.request(GET);
        assert_eq!((r.status, r.text().as_str()), (200, "a"), "round {round}");
        assert!(!r.says_close(), "{}", r.head_text());
        thread::sleep(PARKED);
    }
    // Two requests in one write after a parked wait: both answered, in order.
    c.send(format!("{GET}GET /second HTTP/1.1\r\nHost: t\r\n\r\n"));
    assert_eq!(c.read_response().status, 200);
    assert_eq!(c.read_response().status, 200);
    let paths: Vec<String> = b.requests().iter().map(|r| r.path().to_string()).collect();
    assert_eq!(paths.last().map(String::as_str), Some("/second"));
    // A parked client that leaves is let go (the proxy keeps no task for it to notice).
    drop(c);
    let mut again = Client::connect(p.addr);
    assert_eq!(again.request(GET).status, 200);
}
both_drivers!(a_client_idle_past_the_park_time_is_served_again);

/// 2,000 idle clients (source addresses 127.0.2.1 and up), one request each: the proxy's
/// memory grows by a few hundred bytes per client once they are parked (as waiting tasks
/// they cost 1,300-1,500; nginx 526 in `benches/idle`), and every one of them is served
/// again.
fn idle_clients_cost_little_and_are_all_served_again(driver: &str) {
    const CLIENTS: usize = 2000;
    raise_own_fd_limit(2 * CLIENTS as u64 + 200);
    let b = Backend::named("a");
    let p = Proxy::start_runtime(
        driver,
        "workers = 1\npin_workers = false",
        &config("keepalive_timeout = \"60s\"", "", &[server(b.addr(), "")]),
    );
    // What the first connections allocate once (tables, pools) is not per connection.
    for _ in 0..50 {
        assert_eq!(Client::connect(p.addr).request(GET).status, 200);
    }
    thread::sleep(PARKED);
    let before = rss_kib(p.pid());
    // In batches of 250 (one source address block each), a batch every 250 ms: SDK
    // clients arrive at some pace, and what is measured is the parked state, not the
    // tasks of the clients that arrived in the last 100 ms.
    let mut clients: Vec<Client> = Vec::with_capacity(CLIENTS);
    for i in 0..CLIENTS {
        if i > 0 && i % 250 == 0 {
            thread::sleep(Duration::from_millis(250));
        }
        let from = Ipv4Addr::new(127, 0, 2 + (i / 250) as u8, 1 + (i % 250) as u8);
        let mut c = Client::connect_from(from, p.addr);
        assert_eq!(c.request(GET).status, 200, "client {i}");
        clients.push(c);
    }
    thread::sleep(PARKED * 2);
    assert_rss_growth_below(p.pid(), before, CLIENTS, 600, "idle client");
    for (i, c) in clients.iter_mut().enumerate() {
        let r = c.request(GET);
        assert_eq!(r.status, 200, "client {i}, second request");
        assert!(!r.says_close(), "client {i}: {}", r.head_text());
    }
}
both_drivers!(idle_clients_cost_little_and_are_all_served_again);

fn a_graceful_stop_closes_parked_clients_and_answers_one_that_asks_in_time(driver: &str) {
    let a = Backend::named("a");
    let mut p = Proxy::start_runtime(
        driver,
        "workers = 1\npin_workers = false\nshutdown_timeout = \"20s\"",
        &single(a.addr()),
    );
    let mut idle: Vec<Client> = (0..4).map(|_| Client::connect(p.addr)).collect();
    for c in &mut idle {
        assert_eq!(c.request(GET).status, 200);
    }
    thread::sleep(Duration::from_millis(250));
    p.signal(libc::SIGQUIT);
    // A client idle for less than the drain's grace (1 s) may still send its request:
    // answered, and told the connection closes.
    thread::sleep(Duration::from_millis(100));
    let r = idle[0].request(GET);
    assert_eq!(r.status, 200);
    assert!(r.says_close(), "{}", r.head_text());
    for c in &mut idle {
        assert!(
            c.closed_within(Duration::from_secs(3)),
            "a parked connection stayed open through a graceful stop"
        );
    }
    let status = p
        .wait_exit(Duration::from_secs(4))
        .unwrap_or_else(|| panic!("still running:\n{}", p.stderr()));
    assert_eq!(status.code(), Some(0), "{}", p.stderr());
}
both_drivers!(a_graceful_stop_closes_parked_clients_and_answers_one_that_asks_in_time);
