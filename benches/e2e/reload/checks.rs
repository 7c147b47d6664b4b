//! Self-checks of the reload benchmark's pure parts (config variants, the reload counts read
//! from logs and metrics, the backend-split probe, the table), run with the e2e self-checks.

use super::configs::{self, WEIGHTS};
use super::driver::{
    Driven, Tally, haproxy_tally, header_port, nginx_tally, ringway_tally, variant_of_split,
};
use super::reload_count;
use super::report::{Line, Run, table};
use crate::measure::{WrkReport, stat_reaped_ticks};
use crate::report::Sample;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

type Check = (&'static str, fn() -> Result<(), String>);

pub const CHECKS: [Check; 6] = [
    (
        "reload_variants_differ_only_in_weights",
        reload_variants_differ_only_in_weights,
    ),
    (
        "reload_counts_read_from_logs_and_metrics",
        reload_counts_read_from_logs_and_metrics,
    ),
    (
        "reload_count_is_odd_and_inside_the_run",
        reload_count_is_odd_and_inside_the_run,
    ),
    (
        "backend_split_names_the_variant",
        backend_split_names_the_variant,
    ),
    (
        "reaped_children_cpu_read_from_stat",
        reaped_children_cpu_read_from_stat,
    ),
    (
        "reload_table_shows_loss_and_goal",
        reload_table_shows_loss_and_goal,
    ),
];

fn ensure(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok { Ok(()) } else { Err(what()) }
}

/// Lines of `a` not in `b`.
fn changed<'a>(a: &'a str, b: &str) -> Vec<&'a str> {
    a.lines().filter(|l| !b.lines().any(|m| m == *l)).collect()
}

fn reload_variants_differ_only_in_weights() -> Result<(), String> {
    let listen: SocketAddr = ([127, 0, 0, 1], 9000).into();
    let admin: SocketAddr = ([127, 0, 0, 1], 9003).into();
    let b: [SocketAddr; 2] = [([127, 0, 0, 1], 9001).into(), ([127, 0, 0, 1], 9002).into()];
    let dir = Path::new("/tmp/x");
    let pairs = [
        [0, 1].map(|v| configs::ringway(listen, admin, &b, dir, v)),
        [0, 1].map(|v| configs::nginx(listen, &b, dir, v)),
        [0, 1].map(|v| configs::haproxy(listen, &b, v)),
    ];
    for [v0, v1] in &pairs {
        let diff = changed(v0, v1);
        ensure(
            diff.len() == 2 && diff.iter().all(|l| l.contains("weight")),
            || format!("variants differ in {diff:?}"),
        )?;
    }
    // Both ringway variants must pass ringway's own validation, or every reload is refused.
    for text in &pairs[0] {
        ringway::config::load_str(text, Path::new("reload.toml"), 1).map_err(|errors| {
            let e: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            e.join("; ")
        })?;
    }
    let nginx = &pairs[1][0];
    for line in [
        "keepalive 256;",
        "proxy_http_version 1.1;",
        "proxy_set_header Connection \"\";",
        "proxy_buffers 32 8k;",
        "proxy_max_temp_file_size 0;",
        "reload-nginx-error.log notice;",
        "weight=4;",
    ] {
        ensure(nginx.contains(line), || format!("nginx lacks {line:?}"))?;
    }
    let haproxy = &pairs[2][0];
    ensure(haproxy.contains("option idle-close-on-response"), || {
        "haproxy lacks idle-close-on-response".into()
    })
}

fn reload_counts_read_from_logs_and_metrics() -> Result<(), String> {
    let nginx = "2026/01/01 [notice] 9#9: signal 1 (SIGHUP) received from 12, reconfiguring\n\
                 2026/01/01 [notice] 9#9: reconfiguring\n\
                 2026/01/01 [emerg] 9#9: unknown directive \"x\"\n";
    let got = nginx_tally(nginx);
    ensure(got == Tally { ok: 1, failed: 1 }, || {
        format!("nginx {got:?}")
    })?;
    let haproxy = "[NOTICE]   (7) : New worker (8) forked\n[NOTICE]   (7) : Loading success.\n\
                   [NOTICE]   (7) : Reloading HAProxy\n[NOTICE]   (7) : Loading success.\n\
                   [ALERT]    (7) : Loading failure!\n";
    let got = haproxy_tally(haproxy);
    ensure(got == Tally { ok: 1, failed: 1 }, || {
        format!("haproxy {got:?}")
    })?;
    let metrics = "# TYPE ringway_config_reloads_total counter\n\
                   ringway_config_reloads_total{result=\"ok\"} 49\n\
                   ringway_config_reloads_total{result=\"error\"} 0\n";
    let got = ringway_tally(metrics);
    ensure(got == Some(Tally { ok: 49, failed: 0 }), || {
        format!("ringway {got:?}")
    })?;
    ensure(
        ringway_tally("ringway_requests_total 3\n").is_none(),
        || "tally without the metric".into(),
    )
}

fn reload_count_is_odd_and_inside_the_run() -> Result<(), String> {
    let ms = Duration::from_millis;
    let cases = [
        (5, ms(100), 49),
        (2, ms(100), 19),
        (5, ms(1000), 3),
        (1, ms(1000), 0),
    ];
    for (secs, interval, want) in cases {
        let got = reload_count(secs, interval);
        ensure(got == want, || format!("{secs} s / {interval:?}: {got}"))?;
    }
    Ok(())
}

fn backend_split_names_the_variant() -> Result<(), String> {
    ensure(
        WEIGHTS[0][0] > WEIGHTS[0][1] && WEIGHTS[1][1] > WEIGHTS[1][0],
        || "weights do not flip".into(),
    )?;
    let cases = [([8, 2], Some(0)), ([2, 8], Some(1)), ([5, 5], None)];
    for (hits, want) in cases {
        let got = variant_of_split(hits);
        ensure(got == want, || format!("{hits:?}: {got:?}"))?;
    }
    let response = "HTTP/1.1 200 OK\r\nx-backend: 4242\r\n\r\nX-Backend: 1\r\n";
    ensure(header_port(response) == Some(4242), || {
        format!("{:?}", header_port(response))
    })
}

fn reaped_children_cpu_read_from_stat() -> Result<(), String> {
    let stat = "42 (nginx: a) (b) S 7 42 42 0 -1 4194560 100 0 0 0 250 31 5 6 20 0 1 0 5 0";
    ensure(stat_reaped_ticks(stat) == Some(11), || {
        format!("{:?}", stat_reaped_ticks(stat))
    })
}

fn run(rps: f64, errors: u64, sent: u64, in_effect: Option<bool>) -> Run {
    let wrk = WrkReport {
        requests: 1000,
        rps,
        p50_us: 500.0,
        p99_us: 2000.0,
        errors,
    };
    Run {
        round: 0,
        sample: Sample {
            round: 0,
            wrk,
            cpu_us_per_req: 10.0,
            kernel_us_per_req: f64::NAN,
        },
        driven: Driven {
            sent,
            ..Driven::default()
        },
        tally: (sent > 0).then_some(Tally {
            ok: sent,
            failed: 0,
        }),
        in_effect,
    }
}

fn reload_table_shows_loss_and_goal() -> Result<(), String> {
    let line = |proxy, reloading, runs| Line {
        proxy,
        reloading,
        runs,
        failure: None,
    };
    let lines = [
        line("ringway", false, vec![run(1000.0, 0, 0, None)]),
        line("ringway", true, vec![run(980.0, 0, 49, Some(true))]),
        line("nginx", false, vec![run(800.0, 0, 0, None)]),
        line("nginx", true, vec![run(600.0, 7, 49, Some(true))]),
    ];
    let text = table(&lines, 100);
    let want = "| ringway | every 100 ms | 980 | 2.00 ms | 0 | 49 | 49 (0) | 10.0 | 2.0% |";
    ensure(text.lines().any(|l| l == want), || {
        format!("no {want:?} in:\n{text}")
    })?;
    for part in [
        "nginx 25.0% (25.0% to 25.0%)",
        "- nginx per round, req/s none → reloading: 800 → 600 (25.0%)",
        "goal (ringway",
        "): met (2.0%, 0 failed)",
    ] {
        ensure(text.contains(part), || format!("no {part:?} in:\n{text}"))?;
    }
    // Rounds pair up: 5% then 0% lost is 2.5%, where medians over rounds would say 3.3%.
    let at = |round, rps| Run {
        round,
        ..run(rps, 0, 0, None)
    };
    let drifting = [
        line("ringway", false, vec![at(0, 1000.0), at(1, 500.0)]),
        line("ringway", true, vec![at(1, 500.0), at(0, 950.0)]),
    ];
    let loss = super::report::loss_pct(&drifting, "ringway");
    ensure(loss == Some(2.5), || format!("paired loss {loss:?}"))?;
    let mut broken = lines.clone();
    broken[1].runs[0].in_effect = Some(false);
    let text = table(&broken, 100);
    ensure(text.contains("not shown"), || {
        format!("goal met without reloads:\n{text}")
    })
}
