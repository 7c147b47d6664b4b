//! Balancing for LLM fleets through the real proxy: `balance = "prompt"` (conversation
//! affinity across connections, workers and proxies; spread under a shared system prompt),
//! `hash_balance_factor` (bounded load), `least_time` (away from slow servers, not drawn to
//! fast-failing ones) and `first_byte_timeout`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::support::*;

/// A system prompt every conversation shares (long, as real ones are).
fn system_prompt() -> String {
    format!(
        "You are a careful assistant. {}",
        "Follow the rules. ".repeat(60)
    )
}

/// The chat body of turn `turn` (1-based) of conversation `conv`: the system prompt, then
/// the user and assistant messages of every turn so far.
fn turn_body(conv: usize, turn: usize) -> String {
    let mut messages = vec![format!(
        r#"{{"role":"system","content":"{}"}}"#,
        system_prompt()
    )];
    for t in 1..=turn {
        messages.push(format!(
            r#"{{"role":"user","content":"conversation {conv}, question {t}"}}"#
        ));
        if t < turn {
            messages.push(format!(r#"{{"role":"assistant","content":"answer {t}"}}"#));
        }
    }
    format!(
        r#"{{"model":"m","messages":[{}],"stream":false}}"#,
        messages.join(",")
    )
}

fn post(body: &str) -> String {
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Sends `body` on a new connection; the name of the backend that answered.
fn who(p: &Proxy, body: &str) -> String {
    let r = Client::connect(p.addr).request(post(body));
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
}

fn three() -> [Backend; 3] {
    [
        Backend::named("a"),
        Backend::named("b"),
        Backend::named("c"),
    ]
}

fn servers(backends: &[Backend], extra: &str) -> Vec<String> {
    backends.iter().map(|b| server(b.addr(), extra)).collect()
}

fn conversation_turns_stay_on_one_server_across_connections_and_workers(driver: &str) {
    let backends = three();
    let toml = config("", "balance = \"prompt\"", &servers(&backends, ""));
    let p = Proxy::start_workers(driver, 2, &toml);
    // 30 conversations of 4 turns, every turn on a new connection, interleaved.
    let mut homes: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
    for turn in 1..=4 {
        for conv in 0..30 {
            homes
                .entry(conv)
                .or_default()
                .insert(who(&p, &turn_body(conv, turn)));
        }
    }
    for (conv, seen) in &homes {
        assert_eq!(seen.len(), 1, "conversation {conv} went to {seen:?}");
    }
    // Every conversation starts with the same long system prompt, yet they spread.
    let used: BTreeSet<&String> = homes.values().flatten().collect();
    assert_eq!(used.len(), 3, "{homes:?}");
    // Another proxy with the same servers (another node) sends each the same way.
    let q = Proxy::start(driver, &toml);
    for conv in 0..10 {
        let home = homes[&conv].iter().next().cloned();
        assert_eq!(
            Some(who(&q, &turn_body(conv, 5))),
            home,
            "conversation {conv}"
        );
    }
}
both_drivers!(conversation_turns_stay_on_one_server_across_connections_and_workers);

fn a_body_without_a_prompt_falls_back_and_is_still_served(driver: &str) {
    let backends = three();
    let toml = config("", "balance = \"prompt\"", &servers(&backends, ""));
    let p = Proxy::start(driver, &toml);
    let mut c = Client::connect(p.addr);
    for body in [r#"{"input":"embed me"}"#, "", "[1,2]"] {
        let r = c.request(post(body));
        assert_eq!(r.status, 200, "{body}");
    }
    let r = c.request("GET /v1/models HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.status, 200);
}
both_drivers!(a_body_without_a_prompt_falls_back_and_is_still_served);

/// `n` concurrent requests of one conversation to backends that hold each for a while;
/// how many each backend got.
fn flood(driver: &str, factor: u32, n: usize) -> Vec<usize> {
    let handler = |name: &'static str| {
        move |_: &Request, c: &mut Conn| {
            c.sleep_ms(1500);
            c.ok(name);
        }
    };
    let backends = [
        Backend::start(handler("a")),
        Backend::start(handler("b")),
        Backend::start(handler("c")),
    ];
    let upstream = format!("balance = \"prompt\"\nhash_balance_factor = {factor}");
    let p = Proxy::start_workers(driver, 2, &config("", &upstream, &servers(&backends, "")));
    let addr = p.addr;
    let body = turn_body(7, 1);
    let threads: Vec<_> = (0..n)
        .map(|i| {
            let raw = post(&body);
            std::thread::spawn(move || {
                // Staggered a little so that each pick sees the loads before it.
                std::thread::sleep(Duration::from_millis(20 * i as u64));
                Client::connect(addr).request(raw).status
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().expect("client thread"), 200);
    }
    backends.iter().map(Backend::request_count).collect()
}

fn bounded_load_holds_when_one_conversation_floods(driver: &str) {
    // Without a bound every request of the conversation goes to its server.
    let unbounded = flood(driver, 0, 12);
    assert_eq!(
        unbounded.iter().filter(|&&n| n > 0).count(),
        1,
        "{unbounded:?}"
    );
    // With 150%: request k (k in flight before it) finds its server full once that server
    // has ceil(1.5 x (k + 1) / 3) of them, so no server gets more than 6 of 12.
    let bounded = flood(driver, 150, 12);
    assert_eq!(bounded.iter().sum::<usize>(), 12);
    assert!(bounded.iter().all(|&n| n <= 6), "{bounded:?}");
    assert!(
        bounded.iter().filter(|&&n| n > 0).count() >= 2,
        "{bounded:?}"
    );
}
both_drivers!(bounded_load_holds_when_one_conversation_floods);

/// A backend that waits `delay_ms` before answering with its name.
fn delayed(name: &'static str, delay_ms: u64) -> Backend {
    Backend::start(move |_, c| {
        c.sleep_ms(delay_ms);
        c.ok(name);
    })
}

fn least_time_moves_traffic_away_from_a_slow_server(driver: &str) {
    let (fast, slow) = (delayed("fast", 0), delayed("slow", 400));
    let toml = config(
        "",
        "balance = \"least_time\"",
        &[server(fast.addr(), ""), server(slow.addr(), "")],
    );
    let p = Proxy::start_workers(driver, 2, &toml);
    let mut c = Client::connect(p.addr);
    for _ in 0..40 {
        assert_eq!(c.request("GET / HTTP/1.1\r\nHost: t\r\n\r\n").status, 200);
    }
    // The slow server is tried until measured (at most once per worker), then avoided.
    assert!(
        slow.request_count() <= 3,
        "slow got {}",
        slow.request_count()
    );
    assert!(fast.request_count() >= 37);
}
both_drivers!(least_time_moves_traffic_away_from_a_slow_server);

fn least_time_is_not_drawn_to_a_server_that_fails_fast(driver: &str) {
    let failing = Backend::start(|req, c| {
        let status = if req.seq % 2 == 0 { 500 } else { 503 };
        c.respond(status, &[], b"broken");
    });
    let (a, b) = (delayed("a", 20), delayed("b", 20));
    // max_fails = 0: no passive health marks, so only least_time keeps it away.
    let toml = config(
        "",
        "balance = \"least_time\"",
        &[
            server(failing.addr(), "max_fails = 0"),
            server(a.addr(), "max_fails = 0"),
            server(b.addr(), "max_fails = 0"),
        ],
    );
    let p = Proxy::start(driver, &toml);
    let mut c = Client::connect(p.addr);
    let mut errors = 0;
    for _ in 0..60 {
        let r = c.request("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        if r.status != 200 {
            errors += 1;
        }
    }
    assert_eq!(errors, failing.request_count());
    assert!(errors <= 3, "the failing server got {errors} of 60");
    assert!(a.request_count() > 10 && b.request_count() > 10);
}
both_drivers!(least_time_is_not_drawn_to_a_server_that_fails_fast);

fn a_head_later_than_first_byte_timeout_is_a_504_or_a_retry(driver: &str) {
    let hung = delayed("hung", 3000);
    let ok = Backend::named("ok");
    let upstream = "first_byte_timeout = \"300ms\"\nread_timeout = \"10s\"";
    let p = Proxy::start(driver, &config("", upstream, &[server(hung.addr(), "")]));
    let started = Instant::now();
    let r = get(p.addr, "/");
    assert_eq!(r.status, 504);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // With another server, a timed-out GET goes on to it (next_upstream has "timeout").
    let both = [server(hung.addr(), "max_fails = 0"), server(ok.addr(), "")];
    let p = Proxy::start(driver, &config("", upstream, &both));
    for _ in 0..4 {
        let started = Instant::now();
        let r = get(p.addr, "/");
        assert_eq!((r.status, r.text().as_str()), (200, "ok"));
        assert!(started.elapsed() < Duration::from_secs(2));
    }
    assert!(hung.request_count() >= 1);
}
both_drivers!(a_head_later_than_first_byte_timeout_is_a_504_or_a_retry);

fn first_byte_timeout_outlasts_read_timeout_for_the_head_only(driver: &str) {
    // The head takes 700ms (a whole non-streamed generation); then body bytes come every
    // 100ms. read_timeout (300ms) bounds the gaps, first_byte_timeout the head.
    let b = Backend::start(|_, c| {
        c.sleep_ms(700);
        c.chunked_head(200, &[]);
        for _ in 0..3 {
            c.sleep_ms(100);
            c.chunk(b"tok ");
        }
        c.end_chunks();
    });
    let upstream = "first_byte_timeout = \"3s\"\nread_timeout = \"300ms\"";
    let p = Proxy::start(driver, &config("", upstream, &[server(b.addr(), "")]));
    let r = get(p.addr, "/");
    assert_eq!((r.status, r.text().as_str()), (200, "tok tok tok "));
    // Without it the head is held to read_timeout.
    let p = Proxy::start(
        driver,
        &config("", "read_timeout = \"300ms\"", &[server(b.addr(), "")]),
    );
    assert_eq!(get(p.addr, "/").status, 504);
}
both_drivers!(first_byte_timeout_outlasts_read_timeout_for_the_head_only);
