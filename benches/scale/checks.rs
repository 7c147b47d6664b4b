//! Self-checks of the scaling harness's own logic (knobs, the configs of each shape, the
//! machine's CPU counters, the paired ratios and the tables), run when the binary is started
//! without `--bench`, e.g. by `cargo test --bench scale`: a bench target with
//! `harness = false` has no #[test] runner.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

use crate::Knobs;
use crate::configs::{self, Shape};
use crate::report::{Sample, Subject, busy_share, paired_ratio, parse_machine_ticks, tables};

type Check = (&'static str, fn() -> Result<(), String>);

const CHECKS: [Check; 8] = [
    ("knobs_default_and_parse", knobs_default_and_parse),
    ("bad_knobs_are_refused", bad_knobs_are_refused),
    (
        "each_config_carries_its_shape",
        each_config_carries_its_shape,
    ),
    (
        "one_worker_shape_is_the_e2e_config",
        one_worker_shape_is_the_e2e_config,
    ),
    (
        "machine_ticks_count_busy_and_total",
        machine_ticks_count_busy_and_total,
    ),
    ("ratios_pair_samples_by_round", ratios_pair_samples_by_round),
    (
        "tables_show_scaling_and_balancer_ratios",
        tables_show_scaling_and_balancer_ratios,
    ),
    ("subject_names_are_file_safe", subject_names_are_file_safe),
];

pub fn run() -> ExitCode {
    let mut failed = 0;
    for &(name, check) in &CHECKS {
        match check() {
            Ok(()) => println!("check {name} ... ok"),
            Err(e) => {
                failed += 1;
                println!("check {name} ... FAILED: {e}");
            }
        }
    }
    println!(
        "scale self-checks: {} passed, {failed} failed",
        CHECKS.len() - failed
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

fn knobs(pairs: &[(&str, &str)]) -> Result<Knobs, String> {
    Knobs::from_lookup(|name| {
        pairs
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.to_string())
    })
}

fn knobs_default_and_parse() -> Result<(), String> {
    let k = knobs(&[])?;
    ensure(
        (k.secs, k.rounds, k.size, k.connections) == (5, 3, 16, 64)
            && k.proxies == ["ringway", "nginx", "haproxy"]
            && k.workers == [1, 2]
            && k.least_conn == [false, true],
        || format!("defaults: {k:?}"),
    )?;
    // Workers innermost: a proxy's one- and two-worker runs are neighbours in a round.
    let names: Vec<String> = k.subjects().iter().map(Subject::name).collect();
    ensure(
        names.len() == 12
            && names[..4]
                == [
                    "ringway w1 round_robin",
                    "ringway w2 round_robin",
                    "ringway w1 least_conn",
                    "ringway w2 least_conn",
                ],
        || format!("subjects: {names:?}"),
    )?;
    let k = knobs(&[
        ("RINGWAY_BENCH_PROXIES", " Nginx "),
        ("RINGWAY_BENCH_WORKERS", "2"),
        ("RINGWAY_BENCH_BALANCES", "least_conn"),
        ("RINGWAY_BENCH_SIZE", "4096"),
    ])?;
    let names: Vec<String> = k.subjects().iter().map(Subject::name).collect();
    ensure(names == ["nginx w2 least_conn"] && k.size == 4096, || {
        format!("subset: {names:?} size {}", k.size)
    })
}

fn bad_knobs_are_refused() -> Result<(), String> {
    for (name, value, says) in [
        ("RINGWAY_BENCH_PROXIES", "envoy", "unknown proxy"),
        ("RINGWAY_BENCH_WORKERS", "0", "bad count"),
        ("RINGWAY_BENCH_BALANCES", "random", "is not round_robin"),
        ("RINGWAY_BENCH_SECS", "five", "RINGWAY_BENCH_SECS"),
        ("RINGWAY_BENCH_WORKERS", ",", "may not be empty"),
    ] {
        match knobs(&[(name, value)]) {
            Err(e) if e.contains(says) => {}
            other => return Err(format!("{name}={value}: {other:?}")),
        }
    }
    Ok(())
}

fn backends() -> [SocketAddr; 2] {
    [
        SocketAddr::from(([127, 0, 0, 1], 9001)),
        SocketAddr::from(([127, 0, 0, 1], 9002)),
    ]
}

/// `text` has `line` as a whole line (leading spaces aside).
fn has_line(what: &str, text: &str, line: &str) -> Result<(), String> {
    ensure(text.lines().any(|l| l.trim() == line), || {
        format!("{what}: no line {line:?} in:\n{text}")
    })
}

fn each_config_carries_its_shape() -> Result<(), String> {
    let listen = SocketAddr::from(([127, 0, 0, 1], 8080));
    let dir = Path::new("/tmp/x");
    let two_lc = Shape {
        workers: 2,
        least_conn: true,
    };
    let ringway = configs::ringway_shaped(listen, &backends(), dir, "r", two_lc);
    has_line("ringway", &ringway, "workers = 2")?;
    has_line("ringway", &ringway, "balance = \"least_conn\"")?;
    has_line("ringway", &ringway, "pin_workers = false")?;
    let nginx = configs::nginx_shaped(listen, &backends(), dir, "n-w2", two_lc);
    has_line("nginx", &nginx, "worker_processes 2;")?;
    has_line("nginx", &nginx, "least_conn;")?;
    // Counts per process, as ringway's: only with a shared zone.
    has_line("nginx", &nginx, "zone backends 64k;")?;
    has_line("nginx", &nginx, "pid /tmp/x/n-w2.pid;")?;
    has_line("nginx", &nginx, "proxy_buffers 32 8k;")?;
    let haproxy = configs::haproxy_shaped(listen, &backends(), two_lc);
    has_line("haproxy", &haproxy, "nbthread 2")?;
    has_line("haproxy", &haproxy, "balance leastconn")?;
    let backend = configs::nginx_backend_with(&backends(), dir, 2);
    has_line("backend", &backend, "worker_processes 2;")?;
    let rr = Shape {
        workers: 2,
        least_conn: false,
    };
    let nginx_rr = configs::nginx_shaped(listen, &backends(), dir, "n", rr);
    ensure(
        !nginx_rr.contains("least_conn") && !nginx_rr.contains("zone"),
        || format!("round robin nginx has least_conn or a zone:\n{nginx_rr}"),
    )?;
    has_line(
        "ringway",
        &configs::ringway_shaped(listen, &backends(), dir, "r", rr),
        "balance = \"round_robin\"",
    )
}

/// One worker and round robin is exactly what `benches/e2e` measures.
fn one_worker_shape_is_the_e2e_config() -> Result<(), String> {
    let listen = SocketAddr::from(([127, 0, 0, 1], 8080));
    let dir = Path::new("/tmp/x");
    let one = configs::ONE_WORKER;
    ensure(
        configs::ringway_shaped(listen, &backends(), dir, "ringway", one)
            == configs::ringway(listen, &backends(), dir, "ringway")
            && configs::nginx_shaped(listen, &backends(), dir, "nginx", one)
                == configs::nginx(listen, &backends(), dir)
            && configs::haproxy_shaped(listen, &backends(), one)
                == configs::haproxy(listen, &backends()),
        || "a one-worker round robin config differs from e2e's".into(),
    )
}

fn machine_ticks_count_busy_and_total() -> Result<(), String> {
    let stat = "cpu  100 5 50 800 20 3 2 10 0 0\ncpu0 50 2 25 400 10 1 1 5 0 0\n";
    ensure(parse_machine_ticks(stat) == Some((170, 990)), || {
        format!("{:?}", parse_machine_ticks(stat))
    })?;
    ensure(parse_machine_ticks("cpu0 1 2 3\n").is_none(), || {
        "no `cpu ` line must give None".into()
    })?;
    let share = busy_share((170, 990), (270, 1190));
    ensure((share - 0.5).abs() < 1e-9, || format!("busy share {share}"))?;
    ensure(busy_share((5, 5), (5, 5)).is_nan(), || {
        "no time passed: no share".into()
    })
}

fn sample(round: usize, rps: f64, proxy_us: f64) -> Sample {
    Sample {
        round,
        rps,
        p99_us: 1000.0,
        errors: 0,
        proxy_us,
        load_us: 20.0,
        busy: 0.9,
    }
}

fn ratios_pair_samples_by_round() -> Result<(), String> {
    // Round 1 of `b` is missing: only rounds 0 and 2 pair up (2.0 and 1.5), whatever the
    // order the samples were collected in.
    let a = [
        sample(2, 300.0, 1.0),
        sample(0, 200.0, 1.0),
        sample(1, 999.0, 1.0),
    ];
    let b = [sample(0, 100.0, 1.0), sample(2, 200.0, 1.0)];
    let r = paired_ratio(&a, &b, |s| s.rps);
    ensure(r == Some((1.75, 1.5, 2.0)), || format!("{r:?}"))?;
    ensure(paired_ratio(&a, &[], |s| s.rps).is_none(), || {
        "nothing to pair with must give None".into()
    })?;
    let zero = [sample(0, 0.0, 1.0)];
    ensure(paired_ratio(&a, &zero, |s| s.rps).is_none(), || {
        "a zero divisor must not count".into()
    })
}

fn tables_show_scaling_and_balancer_ratios() -> Result<(), String> {
    let subject = |proxy, workers, least_conn| Subject {
        proxy,
        shape: Shape {
            workers,
            least_conn,
        },
    };
    let results = vec![
        (subject("ringway", 1, false), vec![sample(0, 100.0, 30.0)]),
        (subject("ringway", 2, false), vec![sample(0, 150.0, 33.0)]),
        (subject("ringway", 1, true), vec![sample(0, 100.0, 30.0)]),
        (subject("ringway", 2, true), vec![sample(0, 120.0, 36.0)]),
        (subject("nginx", 1, false), vec![]),
    ];
    let text = tables(&results, &[1, 2]);
    for wanted in [
        "| ringway | 2 | round_robin | 150 | 1.00 ms | 33.0 | 20.0 | 90% | 0 |",
        "| nginx | 1 | round_robin | failed |",
        "| ringway | round_robin | 1.50 (1.50–1.50) | 1.10 (1.10–1.10) |",
        "| ringway | least_conn | 1.20 (1.20–1.20) | 1.20 (1.20–1.20) |",
        "| ringway | 2 | 0.80 (0.80–0.80) | 1.09 (1.09–1.09) |",
    ] {
        ensure(text.contains(wanted), || {
            format!("missing {wanted:?} in:\n{text}")
        })?;
    }
    Ok(())
}

fn subject_names_are_file_safe() -> Result<(), String> {
    let s = Subject {
        proxy: "nginx",
        shape: Shape {
            workers: 2,
            least_conn: true,
        },
    };
    ensure(
        s.name() == "nginx w2 least_conn" && s.tag() == "nginx-w2-least_conn",
        || format!("{} / {}", s.name(), s.tag()),
    )
}
