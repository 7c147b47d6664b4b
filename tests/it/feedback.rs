//! Load feedback end to end (SPEC "LLM inference fleets"): the prober polls each server's
//! metrics page (a fake engine's, in vLLM's format or a custom one) and the balancers add
//! the requests it reports to the load they compare; a failing or stale poll is ignored,
//! never fatal; and two ringway processes in front of one fleet keep its queues even,
//! which each alone, blind to the other, does not.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use crate::admin::{scrape, sum};
use crate::support::*;

const WAIT: Duration = Duration::from_secs(5);
const GET: &str = "GET / HTTP/1.1\r\nHost: t\r\n\r\n";

/// What a fake engine reports and holds.
#[derive(Clone, Default)]
struct Engine {
    /// Reported as `vllm:num_requests_waiting` (on top of nothing: a queue someone else made).
    waiting: Arc<AtomicU64>,
    /// `/gen` requests open right now, reported as `vllm:num_requests_running`.
    running: Arc<AtomicU64>,
}

/// A fake vLLM: `/metrics` in its format (two engines' samples, to be summed); `/gen` runs
/// until its connection closes; anything else is answered 200 with `name`.
fn engine(name: &'static str, e: &Engine) -> Backend {
    let e = e.clone();
    Backend::start(move |req, c| match req.path() {
        "/metrics" => {
            let (w, r) = (
                e.waiting.load(Ordering::SeqCst),
                e.running.load(Ordering::SeqCst),
            );
            let page = format!(
                "# HELP vllm:num_requests_running Number of requests in model execution batches.\n\
                 # TYPE vllm:num_requests_running gauge\n\
                 vllm:num_requests_running{{engine=\"0\",model_name=\"m\"}} {r}.0\n\
                 vllm:num_requests_running{{engine=\"1\",model_name=\"m\"}} 0.0\n\
                 # TYPE vllm:num_requests_waiting gauge\n\
                 vllm:num_requests_waiting{{engine=\"0\",model_name=\"m\"}} {w}.0\n\
                 vllm:num_requests_waiting{{engine=\"1\",model_name=\"m\"}} NaN\n"
            );
            c.respond(200, &[("Content-Type", "text/plain")], page.as_bytes());
        }
        "/gen" => {
            e.running.fetch_add(1, Ordering::SeqCst);
            c.read_some(Duration::from_secs(20));
            e.running.fetch_sub(1, Ordering::SeqCst);
        }
        _ => {
            c.ok(name);
        }
    })
}

/// Group `u` (least_conn) over `servers` with `feedback` as its load_feedback (none when
/// empty), and an admin listener on `$BIND2`.
fn fleet_config(servers: &[SocketAddr], feedback: &str) -> String {
    let list: Vec<String> = servers.iter().map(|a| server(*a, "")).collect();
    let mut upstream = "balance = \"least_conn\"".to_string();
    if !feedback.is_empty() {
        upstream.push_str(&format!("\nload_feedback = {{ {feedback} }}"));
    }
    format!(
        "[admin]\nbind = \"$BIND2\"\n\n{}",
        config("", &upstream, &list)
    )
}

fn reported_series(server: SocketAddr) -> String {
    format!("ringway_upstream_reported_load{{upstream=\"u\",server=\"{server}\"}}")
}

/// Waits (bounded) until `/metrics` shows `server` reporting `load`.
#[track_caller]
fn wait_reported(admin: SocketAddr, server: SocketAddr, load: u64) {
    let line = format!("{} {load}\n", reported_series(server));
    assert!(
        wait_until(WAIT, || scrape(admin).contains(&line)),
        "never saw {line:?} in\n{}",
        scrape(admin)
    );
}

/// Sends `n` requests on one connection; the body of each (the server's name).
fn names(proxy: SocketAddr, n: usize) -> Vec<String> {
    let mut c = Client::connect(proxy);
    (0..n).map(|_| c.request(GET).text()).collect()
}

fn all(of: &[String], name: &str) -> bool {
    of.iter().all(|n| n == name)
}

/// A reports 20 waiting requests: every request goes to B, though least_conn alone sees
/// two idle servers. When the queue moves to B, traffic moves to A.
fn a_reported_queue_shifts_traffic_to_the_other_server(driver: &str) {
    let (ea, eb) = (Engine::default(), Engine::default());
    let (a, b) = (engine("a", &ea), engine("b", &eb));
    let feedback = "preset = \"vllm\", interval = \"100ms\"";
    let p = Proxy::start(driver, &fleet_config(&[a.addr(), b.addr()], feedback));
    let admin = p.extra[0];
    ea.waiting.store(20, Ordering::SeqCst);
    wait_reported(admin, a.addr(), 20);
    wait_reported(admin, b.addr(), 0);
    let seen = names(p.addr, 10);
    assert!(all(&seen, "b"), "{seen:?}");
    ea.waiting.store(0, Ordering::SeqCst);
    eb.waiting.store(20, Ordering::SeqCst);
    wait_reported(admin, b.addr(), 20);
    wait_reported(admin, a.addr(), 0);
    let seen = names(p.addr, 10);
    assert!(all(&seen, "a"), "{seen:?}");
    // The polls identify themselves and ask for the text format.
    let poll = a
        .requests()
        .into_iter()
        .find(|r| r.path() == "/metrics")
        .expect("a was polled");
    assert_eq!(poll.header("user-agent"), Some("ringway-feedback"));
    assert_eq!(poll.header("accept"), Some("text/plain"));
}
both_drivers!(a_reported_queue_shifts_traffic_to_the_other_server);

/// A custom metric on a custom path. Once A's page starts failing (500, then a page
/// without the metric), its last report goes stale after three intervals and is ignored:
/// traffic spreads again, and A is never marked down for it.
fn a_failing_or_stale_poll_is_ignored_never_fatal(driver: &str) {
    let mode = Arc::new(AtomicU8::new(0));
    let m = mode.clone();
    let a = Backend::start(move |req, c| match (req.path(), m.load(Ordering::SeqCst)) {
        ("/stats", 0) => {
            c.respond(200, &[], b"# a custom engine\nqueue_len 20\n");
        }
        ("/stats", 1) => {
            c.respond(500, &[], b"queue_len 0\n");
        }
        ("/stats", _) => {
            c.respond(200, &[], b"other_metric 0\n");
        }
        _ => {
            c.ok("a");
        }
    });
    let b = Backend::start(|req, c| match req.path() {
        "/stats" => {
            c.respond(200, &[], b"queue_len 0\n");
        }
        _ => {
            c.ok("b");
        }
    });
    let feedback = "path = \"/stats\", waiting = \"queue_len\", interval = \"100ms\"";
    let p = Proxy::start(driver, &fleet_config(&[a.addr(), b.addr()], feedback));
    let admin = p.extra[0];
    wait_reported(admin, a.addr(), 20);
    let seen = names(p.addr, 8);
    assert!(all(&seen, "b"), "{seen:?}");
    for failing in [1, 2] {
        mode.store(failing, Ordering::SeqCst);
        let stale = reported_series(a.addr());
        assert!(
            wait_until(WAIT, || !scrape(admin).contains(&stale)),
            "mode {failing}: the last report never went stale"
        );
        let seen = names(p.addr, 8);
        assert!(
            seen.iter().any(|n| n == "a") && seen.iter().any(|n| n == "b"),
            "mode {failing}: {seen:?}"
        );
        let up = sum(
            &scrape(admin),
            "ringway_upstream_server_up",
            &[("server", a.addr().to_string().as_str())],
        );
        assert_eq!(up, 1.0);
        // Back to a good page between the two failures: the report is used again.
        mode.store(0, Ordering::SeqCst);
        wait_reported(admin, a.addr(), 20);
    }
}
both_drivers!(a_failing_or_stale_poll_is_ignored_never_fatal);

/// Two ringway processes, each least_conn over the same two engines, take turns sending
/// a long generation (six in all), a few polls apart. Returns the generations running on
/// each engine at the end.
fn two_proxies_take_turns(driver: &str, feedback: &str) -> (u64, u64) {
    let (ea, eb) = (Engine::default(), Engine::default());
    let (a, b) = (engine("a", &ea), engine("b", &eb));
    let text = fleet_config(&[a.addr(), b.addr()], feedback);
    let proxies = [Proxy::start(driver, &text), Proxy::start(driver, &text)];
    let total = || ea.running.load(Ordering::SeqCst) + eb.running.load(Ordering::SeqCst);
    let mut clients = Vec::new();
    for i in 0..6 {
        let mut c = Client::connect(proxies[i % 2].addr);
        c.send("POST /gen HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}");
        clients.push(c);
        assert!(wait_until(WAIT, || total() == i as u64 + 1));
        // Three poll intervals: both processes have polled since this one started.
        std::thread::sleep(Duration::from_millis(350));
    }
    let spread = (
        ea.running.load(Ordering::SeqCst),
        eb.running.load(Ordering::SeqCst),
    );
    drop(clients);
    spread
}

/// With load feedback the fleet stays even (3 and 3); without it each process balances
/// only its own three and, both breaking ties the same way, they pile onto one engine.
fn two_proxies_keep_one_fleets_queues_even(driver: &str) {
    let even = two_proxies_take_turns(driver, "preset = \"vllm\", interval = \"100ms\"");
    assert_eq!(even, (3, 3), "with load_feedback");
    let (a, b) = two_proxies_take_turns(driver, "");
    assert!(a.abs_diff(b) >= 2, "without load_feedback: {a} and {b}");
}
both_drivers!(two_proxies_keep_one_fleets_queues_even);
