//! Self-checks of the harness's pure parts (wrk and /proc parsing, medians, configs, the
//! best peer, the table and the verdicts; the reload benchmark's are in `reload/checks.rs`),
//! run when the binary is started
//! without `--bench`, e.g. by `cargo test --bench e2e`: a bench target with
//! `harness = false` has no #[test] runner.

use crate::cgroup::{Hierarchy, cgroup_path};
use crate::measure::{
    WrkReport, load_note, median, parse_duration_us, parse_loadavg, parse_wrk, stat_cpu_ticks,
    stat_ppid,
};
use crate::report::{Cell, Sample, before_after, size_name, table, timestamp};
use crate::targets::{Best, best_peer, verdict};
use crate::{configs, parse_proxies, parse_sizes, procs};
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

type Check = (&'static str, fn() -> Result<(), String>);

const CHECKS: [Check; 22] = [
    (
        "wrk_report_gives_rate_latencies_and_errors",
        wrk_report_gives_rate_latencies_and_errors,
    ),
    (
        "wrk_report_without_latency_is_rejected",
        wrk_report_without_latency_is_rejected,
    ),
    (
        "wrk_durations_convert_to_microseconds",
        wrk_durations_convert_to_microseconds,
    ),
    (
        "proc_stat_fields_counted_after_last_paren",
        proc_stat_fields_counted_after_last_paren,
    ),
    (
        "median_of_even_count_is_mean_of_middle",
        median_of_even_count_is_mean_of_middle,
    ),
    (
        "cgroup_path_picks_v2_and_v1_lines",
        cgroup_path_picks_v2_and_v1_lines,
    ),
    (
        "timestamp_is_utc_calendar_time",
        timestamp_is_utc_calendar_time,
    ),
    (
        "sizes_and_proxies_knobs_parse",
        sizes_and_proxies_knobs_parse,
    ),
    (
        "configs_carry_the_settings_made_alike",
        configs_carry_the_settings_made_alike,
    ),
    ("nginx_proxy_is_tuned", nginx_proxy_is_tuned),
    (
        "static_backends_are_nginx_and_cheap",
        static_backends_are_nginx_and_cheap,
    ),
    (
        "haproxy_tcp_relays_without_http",
        haproxy_tcp_relays_without_http,
    ),
    (
        "header_descriptions_quote_the_configs",
        header_descriptions_quote_the_configs,
    ),
    (
        "best_peer_is_picked_per_metric_among_peers_only",
        best_peer_is_picked_per_metric_among_peers_only,
    ),
    (
        "table_shows_ratios_to_best_peer_and_each",
        table_shows_ratios_to_best_peer_and_each,
    ),
    (
        "verdict_holds_each_target_at_its_bound",
        verdict_holds_each_target_at_its_bound,
    ),
    (
        "response_parse_splits_status_and_body",
        response_parse_splits_status_and_body,
    ),
    ("size_names_are_binary_units", size_names_are_binary_units),
    (
        "baseline_is_a_proxy_only_with_its_binary",
        baseline_is_a_proxy_only_with_its_binary,
    ),
    (
        "before_after_pairs_rounds_and_shows_spread",
        before_after_pairs_rounds_and_shows_spread,
    ),
    ("load_average_read_and_noted", load_average_read_and_noted),
    ("gzip_configs_compress_alike", gzip_configs_compress_alike),
];

/// Runs every check and prints the closing line test runners print.
pub fn run() -> ExitCode {
    let mut failed = 0;
    let all = CHECKS.iter().chain(crate::reload::checks::CHECKS.iter());
    for &(name, check) in all {
        match check() {
            Ok(()) => println!("check {name} ... ok"),
            Err(e) => {
                failed += 1;
                println!("check {name} ... FAILED: {e}");
            }
        }
    }
    println!(
        "e2e self-checks: {} passed, {failed} failed",
        CHECKS.len() + crate::reload::checks::CHECKS.len() - failed
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn ensure(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok { Ok(()) } else { Err(what()) }
}

const WRK_OUT: &str = "Running 5s test @ http://127.0.0.1:8080/size/16
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   621.53us  101.22us   3.12ms   90.11%
    Req/Sec    79.12k     2.31k   83.40k    72.00%
  Latency Distribution
     50%  605.00us
     75%  650.00us
     90%  700.00us
     99%    1.05ms
  393620 requests in 5.00s, 55.18MB read
  Non-2xx or 3xx responses: 3
  Socket errors: connect 0, read 2, write 0, timeout 1
Requests/sec:  78720.55
Transfer/sec:     11.04MB
";

fn wrk_report_gives_rate_latencies_and_errors() -> Result<(), String> {
    let r = parse_wrk(WRK_OUT)?;
    let want = WrkReport {
        requests: 393_620,
        rps: 78_720.55,
        p50_us: 605.0,
        p99_us: 1050.0,
        errors: 6,
    };
    ensure(r == want, || format!("{r:?}"))
}

fn wrk_report_without_latency_is_rejected() -> Result<(), String> {
    let without: String = WRK_OUT
        .lines()
        .filter(|l| !l.contains("99%"))
        .collect::<Vec<_>>()
        .join("\n");
    ensure(parse_wrk(&without).is_err(), || {
        "accepted output without p99".into()
    })
}

fn wrk_durations_convert_to_microseconds() -> Result<(), String> {
    let cases = [
        ("812.00us", 812.0),
        ("1.50ms", 1500.0),
        ("2.00s", 2e6),
        ("1.00m", 60e6),
    ];
    for (text, us) in cases {
        let got = parse_duration_us(text);
        ensure(got == Some(us), || format!("{text} -> {got:?}"))?;
    }
    ensure(parse_duration_us("12").is_none(), || {
        "unitless accepted".into()
    })
}

fn proc_stat_fields_counted_after_last_paren() -> Result<(), String> {
    // comm "nginx: a) (b" contains both parentheses and spaces.
    let stat = "42 (nginx: a) (b) S 7 42 42 0 -1 4194560 100 0 0 0 250 31 0 0 20 0 1 0 5 0";
    ensure(stat_cpu_ticks(stat) == Some(281), || {
        format!("{:?}", stat_cpu_ticks(stat))
    })?;
    ensure(stat_ppid(stat) == Some(7), || {
        format!("{:?}", stat_ppid(stat))
    })
}

fn median_of_even_count_is_mean_of_middle() -> Result<(), String> {
    ensure(median(&[4.0, 1.0, 3.0, 2.0]) == 2.5, || "even".into())?;
    ensure(median(&[9.0, 1.0, 5.0]) == 5.0, || "odd".into())?;
    ensure(median(&[]).is_nan(), || "empty".into())
}

fn cgroup_path_picks_v2_and_v1_lines() -> Result<(), String> {
    let text = "4:memory:/a\n2:cpu,cpuacct:/bench\n1:cpuset:/c\n0::/user.slice\n";
    let v2 = Hierarchy::V2 {
        root: "/sys/fs/cgroup".into(),
    };
    let v1 = Hierarchy::V1 {
        root: "/sys/fs/cgroup/cpu".into(),
    };
    ensure(cgroup_path(&v2, text) == Some("/user.slice"), || {
        "v2".into()
    })?;
    ensure(cgroup_path(&v1, text) == Some("/bench"), || {
        "v1 (cpu,cpuacct)".into()
    })?;
    ensure(cgroup_path(&v1, "1:cpuset:/c\n").is_none(), || {
        "cpuset is not cpu".into()
    })
}

fn timestamp_is_utc_calendar_time() -> Result<(), String> {
    // 2024-02-29 13:05:09 UTC: a leap day.
    let got = timestamp(1_709_211_909);
    ensure(got == "20240229-130509", || got.clone())?;
    ensure(timestamp(0) == "19700101-000000", || timestamp(0))
}

fn sizes_and_proxies_knobs_parse() -> Result<(), String> {
    ensure(
        parse_sizes("16, 4k,64K,1m")? == [16, 4096, 65536, 1 << 20],
        || "sizes".into(),
    )?;
    ensure(parse_sizes("4x").is_err(), || "bad size accepted".into())?;
    ensure(
        parse_proxies("haproxy,nginx", false)? == ["nginx", "haproxy"],
        || "subset order".into(),
    )?;
    ensure(
        parse_proxies("", false)? == ["ringway", "nginx", "haproxy", "haproxy-tcp"],
        || "empty = all but the baseline".into(),
    )?;
    ensure(parse_proxies("envoy", false).is_err(), || {
        "unknown proxy accepted".into()
    })
}

const LISTEN: ([u8; 4], u16) = ([127, 0, 0, 1], 9000);

fn two_backends() -> [SocketAddr; 2] {
    [([127, 0, 0, 1], 9001).into(), ([127, 0, 0, 1], 9002).into()]
}

/// `text` has every line of `wanted`, each as a whole line (leading spaces aside), so that
/// `keepalive 256;` is not found inside `keepalive_requests 256;` by accident.
fn has_lines(what: &str, text: &str, wanted: &[&str]) -> Result<(), String> {
    for line in wanted {
        ensure(text.lines().any(|l| l.trim() == *line), || {
            format!("{what}: missing line {line:?} in:\n{text}")
        })?;
    }
    Ok(())
}

fn configs_carry_the_settings_made_alike() -> Result<(), String> {
    let listen: SocketAddr = LISTEN.into();
    let backends = two_backends();
    let dir = Path::new("/tmp/x");
    let nginx = configs::nginx(listen, &backends, dir);
    let haproxy = configs::haproxy(listen, &backends);
    let ringway = configs::ringway(listen, &backends, dir, "ringway");
    // The same upstream idle pool everywhere: 256 per worker, HAProxy's split per server.
    has_lines(
        "nginx",
        &nginx,
        &[
            "worker_processes 1;",
            "keepalive 256;",
            "access_log off;",
            "pid /tmp/x/nginx.pid;",
        ],
    )?;
    has_lines(
        "haproxy",
        &haproxy,
        &[
            "nbthread 1",
            "http-reuse always",
            "default-server pool-max-conn 128",
            "server s2 127.0.0.1:9002",
        ],
    )?;
    has_lines(
        "ringway",
        &ringway,
        &[
            "workers = 1",
            "access_log = \"off\"",
            "keepalive = 256",
            "keepalive_requests = 1000000",
        ],
    )?;
    // Once on the listener (client side), once on the upstream.
    ensure(
        ringway.matches("keepalive_requests = 1000000").count() == 2,
        || format!("ringway keepalive_requests not on both sides:\n{ringway}"),
    )?;
    ensure(!haproxy.contains("log "), || "haproxy config logs".into())?;
    toml_keys_are_known(&ringway)
}

/// The tuning guides' settings, on the lines where nginx reads them: keep-alive upstreams,
/// in-memory buffers for a 64 KiB answer, never a temp file, keep-alive not cut.
fn nginx_proxy_is_tuned() -> Result<(), String> {
    let nginx = configs::nginx(LISTEN.into(), &two_backends(), Path::new("/tmp/x"));
    has_lines(
        "nginx",
        &nginx,
        &[
            "keepalive 256;",
            "proxy_http_version 1.1;",
            "proxy_set_header Connection \"\";",
            "proxy_buffers 32 8k;",
            "proxy_max_temp_file_size 0;",
            "keepalive_requests 1000000;",
            "worker_connections 4096;",
        ],
    )?;
    // keepalive_requests in the upstream block (upstream side) and in the server (client).
    let upstream = section(&nginx, "upstream backends {");
    let server = section(&nginx, "server {");
    ensure(upstream.contains("keepalive 256;"), || {
        format!("keepalive not in upstream: {upstream}")
    })?;
    ensure(
        upstream.contains("keepalive_requests 1000000;")
            && server.contains("keepalive_requests 1000000;"),
        || format!("keepalive_requests not on both sides:\n{nginx}"),
    )?;
    ensure(server.contains("proxy_buffers 32 8k;"), || {
        format!("proxy_buffers not in server: {server}")
    })
}

/// The text from `opening` to the line that closes it, by brace count.
fn section<'a>(text: &'a str, opening: &str) -> &'a str {
    let Some(start) = text.find(opening) else {
        return "";
    };
    let mut depth = 0;
    for (i, c) in text[start..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return &text[start..start + i + 1];
                }
            }
            _ => {}
        }
    }
    &text[start..]
}

fn static_backends_are_nginx_and_cheap() -> Result<(), String> {
    let conf = configs::nginx_backend(&two_backends(), Path::new("/tmp/x"));
    has_lines(
        "backend",
        &conf,
        &[
            "sendfile on;",
            "tcp_nopush on;",
            "open_file_cache max=64 inactive=1h;",
            "keepalive_requests 1000000;",
            "access_log off;",
            "listen 127.0.0.1:9001;",
            "listen 127.0.0.1:9002;",
            "add_header X-Backend $server_port;",
            "pid /tmp/x/backend.pid;",
        ],
    )?;
    ensure(conf.matches("server {").count() == 2, || {
        format!("not one server per backend:\n{conf}")
    })?;
    ensure(conf.contains("root /tmp/x/www;"), || {
        format!("files not served from the run's dir:\n{conf}")
    })
}

fn haproxy_tcp_relays_without_http() -> Result<(), String> {
    let conf = configs::haproxy_tcp(LISTEN.into(), &two_backends());
    has_lines(
        "haproxy-tcp",
        &conf,
        &[
            "mode tcp",
            "nbthread 1",
            "balance roundrobin",
            "server s1 127.0.0.1:9001",
        ],
    )?;
    for http_only in [
        "mode http",
        "http-reuse",
        "http-keep-alive",
        "pool-max-conn",
    ] {
        ensure(!conf.contains(http_only), || {
            format!("haproxy-tcp has {http_only:?}:\n{conf}")
        })?;
    }
    ensure(!conf.contains("log "), || "haproxy-tcp config logs".into())
}

/// The header names settings in backquotes; each must be text of the config that ran.
fn header_descriptions_quote_the_configs() -> Result<(), String> {
    let listen: SocketAddr = LISTEN.into();
    let backends = two_backends();
    let dir = Path::new("/tmp/x");
    let cases = [
        (
            configs::described("ringway", 2),
            configs::ringway(listen, &backends, dir, "ringway"),
        ),
        (
            configs::described("nginx", 2),
            configs::nginx(listen, &backends, dir),
        ),
        (
            configs::described("haproxy", 2),
            configs::haproxy(listen, &backends),
        ),
        (
            configs::described("haproxy-tcp", 2),
            configs::haproxy_tcp(listen, &backends),
        ),
        (
            configs::backend_described("nginx"),
            configs::nginx_backend(&backends, dir),
        ),
    ];
    for (description, conf) in &cases {
        let quoted: Vec<&str> = description.split('`').skip(1).step_by(2).collect();
        ensure(quoted.len() >= 3, || {
            format!("few settings in {description}")
        })?;
        for q in quoted {
            ensure(conf.contains(q), || {
                format!("{description:?} quotes {q:?}, not in:\n{conf}")
            })?;
        }
    }
    Ok(())
}

/// The ringway config must parse as TOML and only use keys SPEC names.
fn toml_keys_are_known(text: &str) -> Result<(), String> {
    let value: toml::Table = text.parse().map_err(|e| format!("ringway config: {e}"))?;
    let sections: Vec<&String> = value.keys().collect();
    ensure(
        sections
            .iter()
            .all(|k| ["runtime", "log", "listener", "upstreams"].contains(&k.as_str())),
        || format!("sections {sections:?}"),
    )
}

fn sample(rps: f64, cpu: f64) -> Sample {
    sample_in(0, rps, cpu)
}

fn sample_in(round: usize, rps: f64, cpu: f64) -> Sample {
    let wrk = WrkReport {
        requests: 1000,
        rps,
        p50_us: 500.0,
        p99_us: 2000.0,
        errors: 0,
    };
    Sample {
        round,
        wrk,
        cpu_us_per_req: cpu,
        kernel_us_per_req: cpu * 0.5,
    }
}

fn cell_at(proxy: &'static str, size: u64, rps: f64, cpu: f64, p99: f64) -> Cell {
    let mut sample = sample(rps, cpu);
    sample.wrk.p99_us = p99;
    Cell {
        proxy,
        size,
        samples: vec![sample],
        failure: None,
    }
}

/// Each metric has its own winner, per size; the TCP relay and ringway beat both peers on
/// everything and must never be taken as the best peer; a peer without runs does not count.
fn best_peer_is_picked_per_metric_among_peers_only() -> Result<(), String> {
    let cells = [
        cell_at("ringway", 16, 400.0, 4.0, 500.0),
        cell_at("nginx", 16, 100.0, 10.0, 3000.0),
        cell_at("haproxy", 16, 150.0, 12.0, 2000.0),
        cell_at("haproxy-tcp", 16, 300.0, 5.0, 1000.0),
        cell_at("ringway-before", 16, 390.0, 4.5, 600.0),
        // At 4 KiB the roles swap, and HAProxy's CPU reading is a failed zero.
        cell_at("nginx", 4096, 90.0, 11.0, 1500.0),
        cell_at("haproxy", 4096, 80.0, 0.0, 1800.0),
        Cell {
            proxy: "nginx",
            size: 65536,
            samples: Vec::new(),
            failure: Some("died".into()),
        },
        cell_at("haproxy", 65536, 50.0, 30.0, 4000.0),
        cell_at("haproxy-tcp", 1 << 20, 50.0, 30.0, 4000.0),
    ];
    let best = |proxy, value| Best { proxy, value };
    let at16 = best_peer(&cells, 16).ok_or("no best peer at 16")?;
    ensure(
        at16.cpu == best("nginx", 10.0)
            && at16.rps == best("haproxy", 150.0)
            && at16.p99 == best("haproxy", 2000.0),
        || format!("16: {at16:?}"),
    )?;
    let at4k = best_peer(&cells, 4096).ok_or("no best peer at 4096")?;
    ensure(
        at4k.cpu == best("nginx", 11.0)
            && at4k.rps == best("nginx", 90.0)
            && at4k.p99 == best("nginx", 1500.0),
        || format!("4096: {at4k:?}"),
    )?;
    let at64k = best_peer(&cells, 65536).ok_or("no best peer at 65536")?;
    ensure(
        at64k.cpu == best("haproxy", 30.0) && at64k.rps == best("haproxy", 50.0),
        || format!("65536: {at64k:?}"),
    )?;
    ensure(best_peer(&cells, 1 << 20).is_none(), || {
        "haproxy-tcp alone taken as a peer".into()
    })?;
    // A tie goes to the first peer, whatever the order of the cells.
    let tie = [
        cell_at("haproxy", 16, 100.0, 10.0, 1000.0),
        cell_at("nginx", 16, 100.0, 10.0, 1000.0),
    ];
    let t = best_peer(&tie, 16).ok_or("no best peer in a tie")?;
    ensure(t.cpu.proxy == "nginx" && t.rps.proxy == "nginx", || {
        format!("tie: {t:?}")
    })
}

fn table_shows_ratios_to_best_peer_and_each() -> Result<(), String> {
    let cells = [
        cell_at("ringway", 16, 300.0, 5.0, 1000.0),
        cell_at("nginx", 16, 150.0, 10.0, 4000.0),
        cell_at("haproxy", 16, 200.0, 20.0, 2000.0),
        cell_at("haproxy-tcp", 16, 400.0, 4.0, 500.0),
    ];
    let names = ["ringway", "nginx", "haproxy", "haproxy-tcp"];
    let text = table("t", &cells, &[16], &names);
    let row = |start: &str| {
        text.lines()
            .find(|l| l.starts_with(start))
            .ok_or(format!("no {start} row in:\n{text}"))
    };
    // CPU against nginx (10), req/s and p99 against HAProxy (200, 2 ms).
    let want = "| ringway | 16 B | 300 | 500 µs | 1.00 ms | 5.0 | 2.5 | 0 | 0.50 | 1.50 | 0.50 | 0.50 | 0.25 |";
    let got = row("| ringway ")?;
    ensure(got == want, || format!("got  {got}\nwant {want}"))?;
    let want = "| nginx | 16 B | 150 | 500 µs | 4.00 ms | 10.0 | 5.0 | 0 | 1.00 | 0.75 | 2.00 | 1.00 | 0.50 |";
    let got = row("| nginx ")?;
    ensure(got == want, || format!("got  {got}\nwant {want}"))?;
    let got = row("| haproxy-tcp (reference) ")?;
    ensure(got.contains("| 0.40 | 2.00 | 0.25 |"), || got.to_string())?;
    ensure(
        text.contains("Best peer per size: 16 B: CPU nginx (10.0 µs/req), req/s haproxy (200), p99 haproxy (2.00 ms)."),
        || text.clone(),
    )?;
    ensure(text.contains("never a peer"), || text.clone())
}

/// Each target is met exactly at its bound and missed just past it; the req/s target is
/// taken from the half-core pass only, and says so when that pass did not run.
fn verdict_holds_each_target_at_its_bound() -> Result<(), String> {
    let full = |cpu: f64, p99: f64| {
        vec![
            // ringway's full-core req/s would meet 1.33x; it must not be what is judged.
            cell_at("ringway", 16, 1000.0, cpu, p99),
            cell_at("nginx", 16, 100.0, 10.0, 2000.0),
            cell_at("haproxy", 16, 100.0, 12.0, 1000.0),
        ]
    };
    let half = |rps: f64| {
        vec![
            cell_at("ringway", 16, rps, 9.0, 50_000.0),
            cell_at("nginx", 16, 90.0, 10.0, 50_000.0),
            cell_at("haproxy", 16, 100.0, 12.0, 50_000.0),
        ]
    };
    let at_bound = verdict(&full(7.5, 1000.0), Some(&half(133.0)), 16);
    ensure(
        at_bound.starts_with("**all met**")
            && at_bound.contains(
                "CPU 0.750× nginx (10.0 µs/req): ≤ 0.75, met (ringway's kernel time alone 0.375×)",
            )
            && at_bound.contains("p99 1.000× haproxy (1.00 ms): ≤ 1.00, met")
            && at_bound.contains("half-core req/s 1.330× haproxy (100): ≥ 1.33, met"),
        || at_bound.clone(),
    )?;
    let past = verdict(&full(7.6, 1001.0), Some(&half(132.0)), 16);
    ensure(
        past.starts_with("**3 missed**")
            && past.contains("≤ 0.75, missed")
            && past.contains("≤ 1.00, missed")
            && past.contains("≥ 1.33, missed"),
        || past.clone(),
    )?;
    let no_half = verdict(&full(5.0, 900.0), None, 16);
    ensure(
        no_half.starts_with("**met so far**") && no_half.contains("half-core req/s not measured"),
        || no_half.clone(),
    )?;
    let no_ringway = verdict(&full(5.0, 900.0)[1..], None, 16);
    ensure(no_ringway.starts_with("not judged"), || no_ringway.clone())
}

fn response_parse_splits_status_and_body() -> Result<(), String> {
    let (status, body) = procs::parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")?;
    ensure(status == 200 && body == b"hi", || {
        format!("{status} {body:?}")
    })?;
    ensure(
        procs::parse_response(b"HTTP/1.1 200 OK\r\n").is_err(),
        || "partial head".into(),
    )
}

fn size_names_are_binary_units() -> Result<(), String> {
    let got = [
        size_name(16),
        size_name(4096),
        size_name(65536),
        size_name(1000),
    ];
    ensure(got == ["16 B", "4 KiB", "64 KiB", "1000 B"], || {
        format!("{got:?}")
    })
}

fn baseline_is_a_proxy_only_with_its_binary() -> Result<(), String> {
    ensure(
        parse_proxies("", true)?
            == [
                "ringway",
                "ringway-before",
                "nginx",
                "haproxy",
                "haproxy-tcp",
            ],
        || "empty with a baseline = all five, ringway-before beside ringway".into(),
    )?;
    ensure(
        !parse_proxies("", false)?.contains(&"ringway-before"),
        || "ringway-before without a baseline binary".into(),
    )?;
    ensure(parse_proxies("ringway-before", false).is_err(), || {
        "ringway-before named without RINGWAY_BENCH_BASELINE accepted".into()
    })?;
    // Same job for both binaries: the configs differ only in where the error log goes.
    let listen: SocketAddr = ([127, 0, 0, 1], 9000).into();
    let backends: [SocketAddr; 1] = [([127, 0, 0, 1], 9001).into()];
    let dir = Path::new("/tmp/x");
    let now = configs::ringway(listen, &backends, dir, "ringway");
    let old = configs::ringway(listen, &backends, dir, "ringway-before");
    let diff: Vec<&str> = old
        .lines()
        .filter(|l| !now.lines().any(|m| m == *l))
        .collect();
    ensure(
        diff == ["error_log = \"/tmp/x/ringway-before-error.log\""],
        || format!("configs differ in {diff:?}"),
    )?;
    ensure(
        !old.contains("[admin]") && !old.contains("shutdown_delay"),
        || "baseline config has keys an older build rejects".into(),
    )
}

fn before_after_pairs_rounds_and_shows_spread() -> Result<(), String> {
    let cell = |proxy, samples| Cell {
        proxy,
        size: 16,
        samples,
        failure: None,
    };
    // ringway-before's round 1 failed: its round-2 run pairs with ringway's round 2 only.
    let cells = [
        cell(
            "ringway",
            vec![
                sample_in(0, 110.0, 9.0),
                sample_in(1, 100.0, 10.0),
                sample_in(2, 90.0, 12.0),
            ],
        ),
        cell(
            "ringway-before",
            vec![sample_in(0, 100.0, 10.0), sample_in(2, 100.0, 10.0)],
        ),
    ];
    let text = before_after("t", &cells, &[16]);
    let row = text
        .lines()
        .find(|l| l.starts_with("| 16 B"))
        .ok_or("no 16 B row")?;
    let want = "| 16 B | 10.0 (10.0–10.0) | 10.0 (9.0–12.0) | 1.050 (0.900–1.200) \
                | 100 (100–100) | 100 (90–110) | 1.000 (0.900–1.100) | 2 |";
    ensure(row == want, || format!("got {row}"))
}

fn load_average_read_and_noted() -> Result<(), String> {
    ensure(
        parse_loadavg("0.85 1.20 2.55 1/84 22720\n") == Some(0.85),
        || "loadavg".into(),
    )?;
    ensure(parse_loadavg("").is_none(), || "empty loadavg".into())?;
    let note = load_note(Some(0.851), None);
    ensure(
        note.starts_with("load average (1 min) 0.85 before the first run, ? after"),
        || note.clone(),
    )
}

/// The gzip run's two configs ask for the same compression: ringway's is valid and sets
/// the level, min_length and types that nginx's lines set.
fn gzip_configs_compress_alike() -> Result<(), String> {
    let listen: SocketAddr = ([127, 0, 0, 1], 9000).into();
    let dir = std::path::Path::new("/tmp/ringway-bench");
    for level in [1u32, 6] {
        let text = crate::gzip::ringway_config(listen, &two_backends(), dir, level);
        let snap = ringway::config::load_str(&text, std::path::Path::new("gzip.toml"), 1)
            .map_err(|e| format!("ringway gzip config rejected: {e:?}\n{text}"))?;
        let g = snap.listeners[0]
            .gzip
            .as_ref()
            .ok_or("ringway config has no gzip")?;
        ensure(
            g.level == level && g.min_length == 1024 && g.types == ["application/json"],
            || format!("ringway gzip at level {level}: {}", text),
        )?;
        let nginx = crate::gzip::nginx_config(listen, &two_backends(), dir, level);
        has_lines(
            "nginx gzip",
            &nginx,
            &[
                "gzip on;",
                &format!("gzip_comp_level {level};"),
                "gzip_min_length 1k;",
                "gzip_types application/json;",
                "gzip_vary on;",
            ],
        )?;
    }
    Ok(())
}
