//! The admin listener end to end: `/metrics` counts exactly the requests sent (per server
//! and code, merged over two workers), gauges follow connections and server marks,
//! `/healthz` turns 503 when a graceful stop begins, `/status` is JSON, and the whole
//! `/metrics` page passes a real Prometheus text parser (Python's `prometheus_client`).
//! CI installs `prometheus_client` and sets `RINGWAY_REQUIRE_TOOLS=1`; elsewhere a machine
//! without it skips only the parser check, and says so.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use crate::support::proxy::{TempDir, run_command};
use crate::support::*;

/// One sample of a Prometheus text page: name, labels in order, value.
type Sample = (String, Vec<(String, String)>, f64);

/// Parses our own exposition lines (the real parser's check is separate, in Python).
fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("sample line");
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
            let Some((name, rest)) = series.split_once('{') else {
                return (series.to_string(), Vec::new(), value);
            };
            (name.to_string(), labels(rest.trim_end_matches('}')), value)
        })
        .collect()
}

/// `a="x",b="y\"z"` → pairs, unescaped.
fn labels(mut text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    while let Some((key, rest)) = text.split_once("=\"") {
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next().expect("unterminated label value") {
                (_, '\\') => match chars.next().expect("escape").1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        out.push((key.trim_start_matches(',').to_string(), value));
        text = &rest[end + 1..];
    }
    out
}

/// The sum of every `name` sample whose labels include all of `want`.
pub(crate) fn sum(text: &str, name: &str, want: &[(&str, &str)]) -> f64 {
    samples(text)
        .into_iter()
        .filter(|(n, labels, _)| {
            n == name
                && want
                    .iter()
                    .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|(_, _, v)| v)
        .sum()
}

pub(crate) fn scrape(admin: SocketAddr) -> String {
    let r = get(admin, "/metrics");
    assert_eq!(r.status, 200, "{}", r.head_text());
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    r.text()
}

/// Whether `python3` can import `module`; fails the test instead when CI requires it.
fn python_has(module: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("RINGWAY_REQUIRE_TOOLS").is_none(),
            "python3 with {module} is required (RINGWAY_REQUIRE_TOOLS is set) but missing: \
             python3 -m pip install {module}"
        );
        eprintln!("python3 module {module} is not installed; skipping that check (CI installs it)");
    }
    ok
}

/// Runs a Python `script` with the path of a file holding `input` as its argument.
fn python(script: &str, input: &str) -> String {
    let dir = TempDir::new();
    let path = dir.write("input", input);
    let out = run_command(
        Command::new("python3").args(["-c", script]).arg(&path),
        Duration::from_secs(20),
    );
    assert!(
        out.status.success(),
        "python3 failed on:\n{input}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Parses the page with prometheus_client and prints "name type samples" per family.
const PARSE: &str = "
import sys
from prometheus_client.parser import text_string_to_metric_families
for f in text_string_to_metric_families(open(sys.argv[1]).read()):
    print(f.name, f.type, len(f.samples))
";

/// Checks the whole page with a real Prometheus parser: every family with its type, and
/// not one sample lost.
fn assert_parses_as_prometheus(text: &str) {
    if !python_has("prometheus_client") {
        return;
    }
    let families: Vec<(String, String, usize)> = python(PARSE, text)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f[0].to_string(), f[1].to_string(), f[2].parse().unwrap())
        })
        .collect();
    let kind = |name: &str| {
        families
            .iter()
            .find(|f| f.0 == name)
            .map(|f| f.1.as_str())
            .unwrap_or_else(|| panic!("{name} missing from {families:?}"))
    };
    // The parser names counter families without `_total`.
    assert_eq!(kind("ringway_requests"), "counter");
    assert_eq!(kind("ringway_upstream_retries"), "counter");
    assert_eq!(kind("ringway_config_reloads"), "counter");
    assert_eq!(kind("ringway_upstream_first_byte_seconds"), "histogram");
    assert_eq!(kind("ringway_request_duration_seconds"), "histogram");
    for gauge in [
        "ringway_upstream_server_up",
        "ringway_upstream_active_requests",
        "ringway_queue_depth",
        "ringway_active_connections",
        "ringway_config_generation",
    ] {
        assert_eq!(kind(gauge), "gauge", "{gauge}");
    }
    let parsed: usize = families.iter().map(|f| f.2).sum();
    assert_eq!(parsed, samples(text).len(), "samples lost by the parser");
}

/// Prints one line per server of `/status`: upstream address state requests failures.
const STATUS: &str = "
import json, sys
d = json.load(open(sys.argv[1]))
print('generation', d['generation'], d['draining'])
for u in d['upstreams']:
    for s in u['servers']:
        print(u['name'], s['address'], s['state'], s['active_requests'], s['requests'], s['failures'])
";

/// 200 "ok" for everything but `/missing`, which is a 404.
fn ok_or_404(name: &'static str) -> Backend {
    Backend::start(move |req, c| {
        if req.path() == "/missing" {
            c.respond(404, &[], b"no");
        } else {
            c.ok(name);
        }
    })
}

fn count_paths(b: &Backend, missing: bool) -> f64 {
    b.requests()
        .iter()
        .filter(|r| (r.path() == "/missing") == missing)
        .count() as f64
}

/// 24 requests to `u` over 4 connections (3 of them backend 404s), 3 to `dead` and 6 to
/// `flaky`.
fn send_mixed_traffic(proxy: SocketAddr) {
    // 4 connections × 6 requests to u, 3 of them 404s from the backends.
    for conn in 0..4 {
        let mut client = Client::connect(proxy);
        for i in 0..6 {
            let path = if conn == 0 && i < 3 { "/missing" } else { "/x" };
            let r = client.request(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n"));
            assert_eq!(r.status, if path == "/missing" { 404 } else { 200 });
        }
    }
    // Two connection failures mark the dead server (max_fails = 2); the third request
    // finds no server at all.
    for _ in 0..3 {
        assert_eq!(get(proxy, "/dead").status, 502);
    }
    // Each request that first picks the dead server of `flaky` is retried on c.
    for _ in 0..6 {
        assert_eq!(get(proxy, "/flaky").status, 200);
    }
}

fn requests_total_counts_exactly_what_was_sent_per_server_and_code(driver: &str) {
    let (a, b, c) = (ok_or_404("a"), ok_or_404("b"), ok_or_404("c"));
    let (dead, flaky_dead) = (dead_addr(), dead_addr());
    let toml = format!(
        "[admin]\nbind = \"$BIND2\"\n\n\
         [[listener]]\nname = \"it\"\nbind = \"$BIND\"\nupstream = \"u\"\n\
         [[listener.route]]\npath_prefix = \"/dead\"\nupstream = \"dead\"\n\
         [[listener.route]]\npath_prefix = \"/flaky\"\nupstream = \"flaky\"\n\n\
         [upstreams.u]\nbalance = \"round_robin\"\nservers = [{}, {}]\n\n\
         [upstreams.dead]\nservers = [{}]\n\n\
         [upstreams.flaky]\nservers = [{}, {}]\n",
        server(a.addr(), ""),
        server(b.addr(), ""),
        server(dead, "max_fails = 2, fail_timeout = \"60s\""),
        server(flaky_dead, "max_fails = 0"),
        server(c.addr(), ""),
    );
    // Two workers: the counters of both must be merged.
    let p = Proxy::start_workers(driver, 2, &toml);
    let admin = p.extra[0];
    let (dead_s, a_s, b_s, c_s) = (
        dead.to_string(),
        a.addr().to_string(),
        b.addr().to_string(),
        c.addr().to_string(),
    );
    let before = scrape(admin);
    let up = [("upstream", "dead"), ("server", dead_s.as_str())];
    assert_eq!(sum(&before, "ringway_upstream_server_up", &up), 1.0);

    send_mixed_traffic(p.addr);

    let text = scrape(admin);
    let total = "ringway_requests_total";
    let at = |up: &'static str, server: &str, code: &'static str| {
        sum(
            &text,
            total,
            &[
                ("listener", "it"),
                ("upstream", up),
                ("server", server),
                ("code", code),
            ],
        )
    };
    assert_eq!(at("u", &a_s, "200"), count_paths(&a, false), "{text}");
    assert_eq!(at("u", &b_s, "200"), count_paths(&b, false), "{text}");
    assert_eq!(at("u", &a_s, "404") + at("u", &b_s, "404"), 3.0, "{text}");
    assert_eq!(at("u", &a_s, "404"), count_paths(&a, true), "{text}");
    assert_eq!(at("dead", &dead_s, "502"), 2.0, "{text}");
    assert_eq!(at("dead", "", "502"), 1.0, "{text}");
    assert_eq!(at("flaky", &c_s, "200"), 6.0, "{text}");
    assert_eq!(sum(&text, total, &[]), 24.0 + 3.0 + 6.0, "{text}");
    assert_eq!(sum(&text, "ringway_upstream_server_up", &up), 0.0);
    let flaky_dead_s = flaky_dead.to_string();
    let flaky = [("upstream", "flaky"), ("server", flaky_dead_s.as_str())];
    let retries = sum(&text, "ringway_upstream_retries_total", &flaky);
    assert!(retries >= 1.0, "{text}");
    assert_eq!(
        sum(&text, "ringway_upstream_failures_total", &flaky),
        retries
    );
    let first_byte = [("upstream", "flaky"), ("server", c_s.as_str())];
    let first_byte_count = "ringway_upstream_first_byte_seconds_count";
    assert_eq!(sum(&text, first_byte_count, &first_byte), 6.0, "{text}");
    let durations = sum(&text, "ringway_request_duration_seconds_count", &[]);
    assert_eq!(durations, 33.0, "{text}");
    assert_eq!(sum(&text, "ringway_scrape_missing_workers", &[]), 0.0);
    assert_parses_as_prometheus(&text);
    check_status(admin, &[(&a, &a_s), (&b, &b_s)], &dead_s);
}

/// `/status` parses as JSON and names every server with its state and counts.
fn check_status(admin: SocketAddr, backends: &[(&Backend, &str)], dead: &str) {
    let r = get(admin, "/status");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    if !python_has("json") {
        return;
    }
    let lines = python(STATUS, &r.text());
    assert!(lines.starts_with("generation 1 False\n"), "{lines}");
    for (backend, addr) in backends {
        let want = format!("u {addr} up 0 {} 0\n", backend.request_count());
        assert!(lines.contains(&want), "{want:?} not in\n{lines}");
    }
    // Three requests answered 502 for `dead`: two through the server, one before any.
    assert!(
        lines.contains(&format!("dead {dead} failed 0 2 2\n")),
        "{lines}"
    );
}
both_drivers!(requests_total_counts_exactly_what_was_sent_per_server_and_code);

fn active_connections_go_up_and_back_down(driver: &str) {
    let b = Backend::named("a");
    let toml = format!("[admin]\nbind = \"$BIND2\"\n\n{}", single(b.addr()));
    let p = Proxy::start_workers(driver, 2, &toml);
    let admin = p.extra[0];
    let open = |text: &str| sum(text, "ringway_active_connections", &[("listener", "it")]);
    // The harness's own probe for "listening" may still be open for a moment.
    assert!(
        wait_until(Duration::from_secs(5), || open(&scrape(admin)) == 0.0),
        "connections open before any client"
    );
    let mut clients: Vec<Client> = (0..3).map(|_| Client::connect(p.addr)).collect();
    for c in &mut clients {
        assert_eq!(c.request("GET / HTTP/1.1\r\nHost: t\r\n\r\n").status, 200);
    }
    assert_eq!(open(&scrape(admin)), 3.0);
    drop(clients);
    assert!(
        wait_until(Duration::from_secs(5), || open(&scrape(admin)) == 0.0),
        "{}",
        scrape(admin)
    );
}
both_drivers!(active_connections_go_up_and_back_down);

fn admin_answers_get_only_and_404_elsewhere(driver: &str) {
    let b = Backend::named("a");
    let toml = format!("[admin]\nbind = \"$BIND2\"\n\n{}", single(b.addr()));
    let p = Proxy::start(driver, &toml);
    let admin = p.extra[0];
    let r = get(admin, "/healthz");
    assert_eq!((r.status, r.text().as_str()), (200, "ok\n"));
    assert_eq!(get(admin, "/nope").status, 404);
    let r = Client::connect(admin)
        .request("POST /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET"));
    let r = Client::connect(admin).request("NONSENSE\r\n\r\n");
    assert_eq!(r.status, 400);
    assert_eq!(b.request_count(), 0, "admin requests never reach a backend");
}
both_drivers!(admin_answers_get_only_and_404_elsewhere);

fn healthz_turns_503_when_a_graceful_stop_begins(driver: &str) {
    let b = Backend::named("a");
    let toml = format!("[admin]\nbind = \"$BIND2\"\n\n{}", single(b.addr()));
    let mut p = Proxy::start_runtime(
        driver,
        "workers = 1\npin_workers = false\nshutdown_delay = \"2s\"",
        &toml,
    );
    let admin = p.extra[0];
    assert_eq!(get(admin, "/healthz").status, 200);
    p.signal(libc::SIGQUIT);
    assert!(
        wait_until(Duration::from_secs(1), || get(admin, "/healthz").status
            == 503),
        "healthz still 200 after SIGQUIT"
    );
    // Still serving traffic (shutdown_delay) while it says so.
    assert_eq!(get(p.addr, "/").status, 200);
    assert!(p.wait_exit(Duration::from_secs(10)).is_some());
}
both_drivers!(healthz_turns_503_when_a_graceful_stop_begins);

#[test]
fn a_busy_admin_port_fails_start_up_clearly() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let at = taken.local_addr().expect("addr");
    let dir = TempDir::new();
    let b = dead_addr();
    let config = dir.write(
        "ringway.toml",
        &format!(
            "[admin]\nbind = \"{at}\"\n\n[[listener]]\nbind = \"127.0.0.1:{}\"\nupstream = \"u\"\n\n\
             [upstreams.u]\nservers = [{{ addr = \"{b}\" }}]\n",
            free_port()
        ),
    );
    let out = Proxy::spawn_raw(&["-c", config.to_str().expect("utf-8 path")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("admin listener on {at}: cannot bind")),
        "{err}"
    );
}

/// The config body for the reload test: listener "it" → group "u" with `servers`, plus
/// `extra` tables.
fn reload_body(servers: &[String], extra: &str, admin: SocketAddr, bind: SocketAddr) -> String {
    format!(
        "[admin]\nbind = \"{admin}\"\n\n[[listener]]\nname = \"it\"\nbind = \"{bind}\"\n\
         upstream = \"u\"\n\n{extra}\n[upstreams.u]\nbalance = \"round_robin\"\nservers = [{}]\n",
        servers.join(", ")
    )
}

fn counters_survive_reloads_that_renumber_groups_and_servers(driver: &str) {
    let (a, b) = (Backend::named("a"), Backend::named("b"));
    let (sa, sb) = (server(a.addr(), ""), server(b.addr(), ""));
    let toml = format!(
        "[admin]\nbind = \"$BIND2\"\n\n{}",
        config("", "balance = \"round_robin\"", &[sa.clone(), sb.clone()])
    );
    let p = Proxy::start_workers(driver, 2, &toml);
    let admin = p.extra[0];
    let original = std::fs::read_to_string(&p.config).expect("config");
    let runtime = &original[..original.find("[admin]").expect("admin table")];
    let mut kept = Client::connect(p.addr);
    let send = |c: &mut Client| {
        for _ in 0..4 {
            assert_eq!(c.request("GET / HTTP/1.1\r\nHost: t\r\n\r\n").status, 200);
        }
    };
    send(&mut kept);
    let reloads = |result: &str| {
        sum(
            &scrape(admin),
            "ringway_config_reloads_total",
            &[("result", result)],
        )
    };
    // A broken file: counted as an error, nothing changes.
    std::fs::write(&p.config, format!("{runtime}[[listener]]\nbind = 5\n")).expect("write");
    p.signal(libc::SIGHUP);
    assert!(wait_until(Duration::from_secs(5), || reloads("error") == 1.0));
    // Group "a0" now sorts before "u", and "u" lists its servers the other way round.
    let extra = format!("[upstreams.a0]\nservers = [{sb}]\n");
    let body = reload_body(&[sb.clone(), sa.clone()], &extra, admin, p.addr);
    std::fs::write(&p.config, format!("{runtime}{body}")).expect("write");
    p.signal(libc::SIGHUP);
    assert!(wait_until(Duration::from_secs(5), || reloads("ok") == 1.0));
    send(&mut kept);
    send(&mut Client::connect(p.addr));
    let text = scrape(admin);
    let at = |server: SocketAddr| {
        let server = server.to_string();
        let labels = [
            ("upstream", "u"),
            ("server", server.as_str()),
            ("code", "200"),
        ];
        sum(&text, "ringway_requests_total", &labels)
    };
    assert_eq!(at(a.addr()), a.request_count() as f64, "{text}");
    assert_eq!(at(b.addr()), b.request_count() as f64, "{text}");
    assert_eq!(sum(&text, "ringway_requests_total", &[]), 12.0, "{text}");
    assert!(sum(&text, "ringway_config_generation", &[]) > 1.0, "{text}");
    assert!(
        text.contains("\nringway_queue_depth{upstream=\"a0\"} 0\n"),
        "{text}"
    );
    // The connection opened before the reload is still counted on its listener (the
    // other one, just closed by the client, leaves the gauge once the proxy reads the end).
    let open = |text: &str| sum(text, "ringway_active_connections", &[("listener", "it")]);
    assert!(
        wait_until(Duration::from_secs(5), || open(&scrape(admin)) == 1.0),
        "{}",
        scrape(admin)
    );
    drop(kept);
    assert!(wait_until(Duration::from_secs(5), || open(&scrape(admin)) == 0.0));
}
both_drivers!(counters_survive_reloads_that_renumber_groups_and_servers);
