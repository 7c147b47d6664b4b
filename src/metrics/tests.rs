//! Metrics without a network: per-worker counting, the fold on reload, merging, and the
//! exact text of both outputs.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::render::{Gauges, QueueGauge, ServerGauge, ServerState, prometheus, status_json};
use super::*;
use crate::control::health::changes::ChangeCount;
use crate::snapshot::Snapshot;

fn snapshot(text: &str, generation: u64) -> Arc<Snapshot> {
    match crate::config::load_str(text, Path::new("t.toml"), generation) {
        Ok(s) => Arc::new(s),
        Err(e) => panic!("{e:#?}"),
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

const L: &str = "127.0.0.1:1700";

/// The index of listener `L` in `snap`.
fn at(snap: &Snapshot) -> usize {
    snap.listener_index(addr(L)).expect("listener L")
}
const X: &str = "127.0.0.1:1801";
const Y: &str = "127.0.0.1:1802";
const Z: &str = "127.0.0.1:1803";

/// Generation 1: listener "web" → group "b" with servers X, Y.
fn gen1() -> Arc<Snapshot> {
    snapshot(
        &format!(
            "[[listener]]\nname = \"web\"\nbind = \"{L}\"\nupstream = \"b\"\n\n\
             [upstreams.b]\nservers = [{{ addr = \"{X}\" }}, {{ addr = \"{Y}\" }}]\n"
        ),
        1,
    )
}

/// Generation 2 renumbers everything: a group "a" sorts before "b", and "b" lists its
/// servers the other way round.
fn gen2() -> Arc<Snapshot> {
    snapshot(
        &format!(
            "[[listener]]\nname = \"web\"\nbind = \"{L}\"\nupstream = \"b\"\n\n\
             [upstreams.a]\nservers = [{{ addr = \"{Z}\" }}]\n\n\
             [upstreams.b]\nservers = [{{ addr = \"{Y}\" }}, {{ addr = \"{X}\" }}]\n"
        ),
        2,
    )
}

fn key(upstream: &str, server: &str, code: u16) -> RequestKey {
    RequestKey {
        listener: "web".into(),
        upstream: upstream.into(),
        server: server.into(),
        code,
    }
}

fn skey(upstream: &str, server: &str) -> ServerKey {
    ServerKey {
        upstream: upstream.into(),
        server: server.into(),
    }
}

#[test]
fn requests_are_counted_per_listener_group_server_and_code() {
    let s1 = gen1();
    let stats = LocalStats::new(s1.clone());
    let b = s1.group_by_name("b").unwrap();
    let now = Some(Instant::now());
    stats.request(&s1, at(&s1), Some((b, Some(addr(X)))), 200, now);
    stats.request(&s1, at(&s1), Some((b, Some(addr(X)))), 200, now);
    stats.request(&s1, at(&s1), Some((b, Some(addr(Y)))), 404, now);
    stats.request(&s1, at(&s1), Some((b, None)), 502, now);
    stats.request(&s1, at(&s1), None, 400, None);
    let r = stats.report();
    assert_eq!(r.requests.get(&key("b", X, 200)), Some(&2));
    assert_eq!(r.requests.get(&key("b", Y, 404)), Some(&1));
    assert_eq!(r.requests.get(&key("b", "", 502)), Some(&1));
    assert_eq!(r.requests.get(&key("", "", 400)), Some(&1));
    assert_eq!(r.requests.len(), 4);
    // Only requests whose head was read are timed.
    assert_eq!(r.duration.count(), 4);
}

#[test]
fn counters_survive_a_reload_that_renumbers_groups_and_servers() {
    let (s1, s2) = (gen1(), gen2());
    let stats = LocalStats::new(s1.clone());
    let b1 = s1.group_by_name("b").unwrap();
    stats.request(&s1, at(&s1), Some((b1, Some(addr(X)))), 200, None);
    stats.retry(b1, &s1.groups[b1], 1);
    stats.first_byte(b1, &s1.groups[b1], 0, Duration::from_millis(3));
    stats.follow(&s2);
    let b2 = s2.group_by_name("b").unwrap();
    assert_ne!(
        b1, b2,
        "the reload must renumber for this test to mean anything"
    );
    stats.request(&s2, at(&s2), Some((b2, Some(addr(X)))), 200, None);
    stats.retry(b2, &s2.groups[b2], 0); // Y in generation 2
    stats.first_byte(b2, &s2.groups[b2], 1, Duration::from_millis(30)); // X
    let r = stats.report();
    assert_eq!(r.requests.get(&key("b", X, 200)), Some(&2));
    assert_eq!(r.requests.len(), 1);
    assert_eq!(r.servers[&skey("b", Y)].retries, 2);
    assert_eq!(r.servers[&skey("b", X)].retries, 0);
    assert_eq!(r.servers[&skey("b", X)].first_byte.count(), 2);
    assert!(
        !r.servers.contains_key(&skey("a", Z)),
        "nothing was counted on Z"
    );
}

#[test]
fn an_event_from_a_request_still_on_the_old_snapshot_is_counted_by_name() {
    let (s1, s2) = (gen1(), gen2());
    let stats = LocalStats::new(s1.clone());
    stats.follow(&s2);
    // A request that started before the reload ends after it, with generation 1's indexes.
    let b1 = s1.group_by_name("b").unwrap();
    stats.failure(b1, &s1.groups[b1], 1);
    stats.request(&s1, at(&s1), Some((b1, Some(addr(Y)))), 503, None);
    let r = stats.report();
    assert_eq!(r.servers[&skey("b", Y)].failures, 1);
    assert_eq!(r.requests.get(&key("b", Y, 503)), Some(&1));
}

#[test]
fn a_newer_snapshot_seen_on_the_data_path_moves_the_tables() {
    let (s1, s2) = (gen1(), gen2());
    let stats = LocalStats::new(s1.clone());
    stats.request(&s1, at(&s1), None, 400, None);
    let a2 = s2.group_by_name("a").unwrap();
    stats.request(&s2, at(&s2), Some((a2, Some(addr(Z)))), 200, None);
    stats.first_byte(a2, &s2.groups[a2], 0, Duration::from_millis(1));
    let r = stats.report();
    assert_eq!(r.requests.get(&key("", "", 400)), Some(&1));
    assert_eq!(r.requests.get(&key("a", Z, 200)), Some(&1));
    assert_eq!(r.servers[&skey("a", Z)].first_byte.count(), 1);
}

#[test]
fn connection_gauge_follows_its_listener_across_reloads() {
    let (s1, s2) = (gen1(), gen2());
    let stats = LocalStats::new(s1.clone());
    let first = stats.open_connection(&s1, addr(L));
    let second = stats.open_connection(&s1, addr(L));
    assert_eq!(stats.report().connections["web"], 2);
    stats.follow(&s2);
    let third = stats.open_connection(&s2, addr(L));
    assert_eq!(stats.report().connections["web"], 3);
    drop((first, second));
    assert_eq!(stats.report().connections["web"], 1);
    drop(third);
    assert_eq!(stats.report().connections["web"], 0);
}

#[test]
fn reports_merge_by_name() {
    let mut a = StatsReport::default();
    a.requests.insert(key("b", X, 200), 3);
    a.server_mut("b", X).retries = 1;
    a.duration.observe(Duration::from_millis(1));
    a.connections.insert("web".into(), 2);
    let mut b = StatsReport::default();
    b.requests.insert(key("b", X, 200), 4);
    b.requests.insert(key("b", Y, 502), 1);
    b.server_mut("b", X).retries = 2;
    b.server_mut("b", Y).failures = 5;
    b.duration.observe(Duration::from_secs(1));
    b.connections.insert("web".into(), 1);
    a.merge(&b);
    assert_eq!(a.requests[&key("b", X, 200)], 7);
    assert_eq!(a.requests[&key("b", Y, 502)], 1);
    assert_eq!(a.servers[&skey("b", X)].retries, 3);
    assert_eq!(a.servers[&skey("b", Y)].failures, 5);
    assert_eq!(a.duration.count(), 2);
    assert_eq!(a.duration.sum_us, 1_001_000);
    assert_eq!(a.connections["web"], 3);
    assert_eq!(a.requests_for("b", X), 7);
}

#[test]
fn histogram_bounds_are_inclusive_like_prometheus_le() {
    let mut h = Histogram::default();
    h.observe(Duration::from_millis(5));
    h.observe(Duration::from_micros(5_001));
    h.observe(Duration::from_secs(301));
    assert_eq!(h.counts[0], 1);
    assert_eq!(h.counts[1], 1);
    assert_eq!(h.counts[BUCKET_BOUNDS_US.len()], 1);
}

/// The bucket lines of `name` in `text`, as (le, value).
fn buckets(text: &str, name: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}_bucket")))
        .map(|l| {
            let le = l.split("le=\"").nth(1).unwrap().split('"').next().unwrap();
            let value = l.rsplit(' ').next().unwrap().parse().unwrap();
            (le.to_string(), value)
        })
        .collect()
}

#[test]
fn histogram_buckets_are_cumulative_and_end_with_inf() {
    let mut r = StatsReport::default();
    for ms in [3, 7, 2_000, 400_000] {
        r.duration.observe(Duration::from_millis(ms));
    }
    let text = prometheus(&r, &Gauges::default());
    let b = buckets(&text, "ringway_request_duration_seconds");
    assert_eq!(b.len(), BUCKET_BOUNDS_US.len() + 1);
    assert_eq!(b[0], ("0.005".to_string(), 1));
    assert_eq!(b[1], ("0.01".to_string(), 2));
    assert_eq!(b[7], ("1".to_string(), 2));
    assert_eq!(b[8], ("2.5".to_string(), 3));
    assert_eq!(b[14], ("300".to_string(), 3));
    assert_eq!(b[15], ("+Inf".to_string(), 4));
    assert!(b.windows(2).all(|w| w[0].1 <= w[1].1));
    assert!(text.contains("\nringway_request_duration_seconds_sum 402.01\n"));
    assert!(text.contains("\nringway_request_duration_seconds_count 4\n"));
}

#[test]
fn label_values_are_escaped() {
    let mut r = StatsReport::default();
    r.requests.insert(
        RequestKey {
            listener: "a\"b\\c\nd".into(),
            upstream: "u".into(),
            server: String::new(),
            code: 200,
        },
        1,
    );
    let text = prometheus(&r, &Gauges::default());
    assert!(
        text.contains(
            "ringway_requests_total{listener=\"a\\\"b\\\\c\\nd\",upstream=\"u\",server=\"\",code=\"200\"} 1\n"
        ),
        "{text}"
    );
}

fn small_gauges() -> Gauges {
    Gauges {
        generation: 3,
        draining: false,
        reloads: (2, 1),
        listeners: vec!["web".into()],
        upstreams: vec!["b".into()],
        queues: vec![QueueGauge {
            upstream: "b".into(),
            depth: 3,
            full: 5,
            timed_out: 1,
        }],
        servers: vec![ServerGauge {
            upstream: "b".into(),
            server: X.into(),
            state: ServerState::Failed,
            active: 4,
            busy_ms: 2500,
        }],
        missing_workers: 0,
        access_log_dropped: 7,
        health_changes: vec![ChangeCount {
            upstream: "b".into(),
            server: X.into(),
            to: "down",
            count: 1,
        }],
    }
}

/// Every line of `text` that is not a bucket of a histogram (those are checked above).
fn without_buckets(text: &str) -> String {
    text.lines()
        .filter(|l| !l.contains("_bucket{"))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn a_small_scrape_renders_exactly() {
    let mut r = StatsReport::default();
    r.requests.insert(key("b", X, 200), 5);
    r.requests.insert(key("", "", 400), 1);
    r.server_mut("b", X).retries = 2;
    r.server_mut("b", X).failures = 3;
    r.server_mut("b", X)
        .first_byte
        .observe(Duration::from_micros(1500));
    r.connections.insert("web".into(), 1);
    let text = prometheus(&r, &small_gauges());
    let expected = "\
# HELP ringway_requests_total Requests answered, by listener, upstream group, server of the last attempt and status code (\"\" where ringway answered before choosing one).
# TYPE ringway_requests_total counter
ringway_requests_total{listener=\"web\",upstream=\"\",server=\"\",code=\"400\"} 1
ringway_requests_total{listener=\"web\",upstream=\"b\",server=\"127.0.0.1:1801\",code=\"200\"} 5
# HELP ringway_upstream_retries_total Failed attempts on a server that were retried on another server.
# TYPE ringway_upstream_retries_total counter
ringway_upstream_retries_total{upstream=\"b\",server=\"127.0.0.1:1801\"} 2
# HELP ringway_upstream_failures_total Failed attempts on a server that count against its max_fails.
# TYPE ringway_upstream_failures_total counter
ringway_upstream_failures_total{upstream=\"b\",server=\"127.0.0.1:1801\"} 3
# HELP ringway_upstream_first_byte_seconds Time from a request sent to a server to its response head.
# TYPE ringway_upstream_first_byte_seconds histogram
ringway_upstream_first_byte_seconds_sum{upstream=\"b\",server=\"127.0.0.1:1801\"} 0.0015
ringway_upstream_first_byte_seconds_count{upstream=\"b\",server=\"127.0.0.1:1801\"} 1
# HELP ringway_request_duration_seconds Time from a request head read to its response done.
# TYPE ringway_request_duration_seconds histogram
ringway_request_duration_seconds_sum 0
ringway_request_duration_seconds_count 0
# HELP ringway_active_connections Client connections open now, by listener.
# TYPE ringway_active_connections gauge
ringway_active_connections{listener=\"web\"} 1
# HELP ringway_upstream_server_up 1 if the server takes requests, 0 while it is down, failed max_fails or failing active checks.
# TYPE ringway_upstream_server_up gauge
ringway_upstream_server_up{upstream=\"b\",server=\"127.0.0.1:1801\"} 0
# HELP ringway_upstream_server_busy 1 while the server is skipped because it answered 429 or 503 with Retry-After (busy, not failed).
# TYPE ringway_upstream_server_busy gauge
ringway_upstream_server_busy{upstream=\"b\",server=\"127.0.0.1:1801\"} 1
# HELP ringway_upstream_health_changes_total Times active health checks took a server down or brought it back, by the state it changed to.
# TYPE ringway_upstream_health_changes_total counter
ringway_upstream_health_changes_total{upstream=\"b\",server=\"127.0.0.1:1801\",to=\"down\"} 1
# HELP ringway_upstream_active_requests Requests in flight on the server, process-wide.
# TYPE ringway_upstream_active_requests gauge
ringway_upstream_active_requests{upstream=\"b\",server=\"127.0.0.1:1801\"} 4
# HELP ringway_queue_depth Requests waiting for a server below max_conns.
# TYPE ringway_queue_depth gauge
ringway_queue_depth{upstream=\"b\"} 3
# HELP ringway_queue_rejected_total Requests answered 503 by the queue: it was full, or they waited queue.timeout.
# TYPE ringway_queue_rejected_total counter
ringway_queue_rejected_total{upstream=\"b\",reason=\"full\"} 5
ringway_queue_rejected_total{upstream=\"b\",reason=\"timeout\"} 1
# HELP ringway_config_reloads_total Configuration reloads, by result.
# TYPE ringway_config_reloads_total counter
ringway_config_reloads_total{result=\"ok\"} 2
ringway_config_reloads_total{result=\"error\"} 1
# HELP ringway_config_generation Generation of the configuration serving now (1 at start; every reload attempt takes the next number).
# TYPE ringway_config_generation gauge
ringway_config_generation 3
# HELP ringway_scrape_missing_workers Workers that did not answer this scrape in time; their counters are missing from it.
# TYPE ringway_scrape_missing_workers gauge
ringway_scrape_missing_workers 0
# HELP ringway_access_log_dropped_total Access-log lines dropped because the log thread fell behind (workers never wait for it).
# TYPE ringway_access_log_dropped_total counter
ringway_access_log_dropped_total 7
";
    assert_eq!(without_buckets(&text), expected);
    let first_byte = buckets(&text, "ringway_upstream_first_byte_seconds");
    assert_eq!(first_byte[0], ("0.005".to_string(), 1));
    assert!(text.contains(
        "ringway_upstream_first_byte_seconds_bucket{upstream=\"b\",server=\"127.0.0.1:1801\",le=\"+Inf\"} 1\n"
    ));
}

#[test]
fn status_renders_exactly() {
    let mut r = StatsReport::default();
    r.requests.insert(key("b", X, 200), 5);
    r.requests.insert(key("b", X, 502), 2);
    r.server_mut("b", X).failures = 2;
    let mut g = small_gauges();
    g.upstreams.push("q\"uoted".into());
    assert_eq!(
        status_json(&r, &g),
        "{\"generation\":3,\"draining\":false,\"missing_workers\":0,\"upstreams\":[\
         {\"name\":\"b\",\"servers\":[{\"address\":\"127.0.0.1:1801\",\"state\":\"failed\",\
         \"active_requests\":4,\"requests\":7,\"failures\":2,\"busy_until_ms\":2500}]},\
         {\"name\":\"q\\\"uoted\",\"servers\":[]}]}\n"
    );
}

#[test]
fn json_strings_escape_quotes_backslashes_and_control_characters() {
    let mut out = String::new();
    render::json_string(&mut out, "a\"b\\c\n\u{1}é");
    assert_eq!(out, "\"a\\\"b\\\\c\\n\\u0001é\"");
}

#[test]
fn gauges_read_server_states_and_merge_a_listed_twice_address() {
    let s = snapshot(
        &format!(
            "[[listener]]\nname = \"web\"\nbind = \"{L}\"\nupstream = \"b\"\n\n\
             [upstreams.b]\nservers = [{{ addr = \"{X}\", max_fails = 1 }}, \
             {{ addr = \"{Y}\", down = true }}, {{ addr = \"{Z}\" }}, {{ addr = \"{Z}\" }}]\n"
        ),
        5,
    );
    let peers = &s.groups[0].peers;
    let now = crate::clock::now_ms();
    peers.failed(0, now);
    peers.begin(2);
    peers.begin(3);
    let g = Gauges::read(&s, now);
    let states: Vec<(&str, ServerState, u32)> = g
        .servers
        .iter()
        .map(|s| (s.server.as_str(), s.state, s.active))
        .collect();
    assert_eq!(
        states,
        [
            (X, ServerState::Failed, 0),
            (Y, ServerState::Down, 0),
            (Z, ServerState::Up, 2)
        ]
    );
    assert_eq!(g.generation, 5);
    assert_eq!(g.listeners, ["web"]);
    assert_eq!(g.upstreams, ["b"]);
    assert_eq!(g.queues.len(), 1);
    assert_eq!((g.queues[0].upstream.as_str(), g.queues[0].depth), ("b", 0));
}
