//! Reload under load (`cargo bench --bench e2e -- reload`): ringway, nginx and HAProxy under
//! a steady keep-alive wrk load, each run once with no reload and once with a reload every
//! 100 ms, in interleaved rounds; reports req/s, p99, failed requests, reloads sent and done,
//! and the proxy's CPU per request.
//!
//! Each reload rewrites the proxy's config file with the other of two variants (server
//! weights 4:1 and 1:4, see [`configs`]) and then signals it: ringway SIGHUP, nginx
//! `nginx -s reload`, HAProxy (master-worker, `-W`) SIGUSR2 to the master. After a reload run
//! the harness checks, from how requests split over the backends, that the proxy serves the
//! variant written last. Placement is the default run's: proxies on CPU 0, wrk, backends and
//! the reload driver's `nginx -s reload` on CPU 1.

pub mod checks;
pub mod configs;
pub mod driver;
pub mod report;

use crate::measure::{self, parse_wrk};
use crate::procs::{self, Proc, check_interrupted};
use crate::report::Sample;
use crate::{Env, Knobs, Running, TempDir};
use driver::{Reloader, Trigger, Witness};
use report::{Line, Run};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long the harness waits for a reload written last to show in the backend split. On a
/// loaded 2-core machine HAProxy's master, re-executing itself for queued reloads, once took
/// longer than 3 s; only a proxy that ignores the reload waits this out.
const TAKE_EFFECT_LIMIT: Duration = Duration::from_secs(8);

/// How long old workers may take to leave after a reload run before the next run starts.
const SETTLE_LIMIT: Duration = Duration::from_secs(12);

/// One proxy under test with what it takes to reload it and to see its reloads.
struct Subject {
    run: Running,
    reloader: Reloader,
    witness: Witness,
    backends: [SocketAddr; 2],
    /// Processes in the proxy's tree at rest; after a reload run the next run waits for the
    /// old workers to leave, so their exit does not land in the next measurement.
    idle_tree: usize,
}

pub fn run() -> Result<(), String> {
    let mut knobs = Knobs::from_env()?;
    // The baseline binary is for the throughput mode's before/after, and HAProxy in tcp mode
    // has no HTTP to reload weights for; neither is run here.
    knobs
        .proxies
        .retain(|p| *p != crate::BASELINE && *p != crate::HAPROXY_TCP);
    let interval = interval_from_env()?;
    let scratch = TempDir::create()?;
    let env = crate::prepare(knobs, &scratch.0)?;
    let k = &env.knobs;
    let runs = (k.rounds * k.proxies.len() * 2) as u64;
    eprintln!(
        "e2e reload: measuring for at most ~{} s ({} s × {} rounds × {} proxies × 2 modes)",
        runs * (k.secs + 2) + runs / 2 * TAKE_EFFECT_LIMIT.as_secs(),
        k.secs,
        k.rounds,
        k.proxies.len(),
    );
    let ports = procs::free_ports(3 + k.proxies.len())?;
    let local = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    let backends = [local(ports[0]), local(ports[1])];
    let admin = local(ports[2]);
    let _backend = crate::start_backend(&env, &backends)?;
    let mut notes = env.skipped.clone();
    let mut subjects = crate::start_each("e2e reload", &k.proxies, &mut notes, |i, name| {
        start_subject(&env, name, local(ports[3 + i]), admin, backends)
    })?;
    warm_up(&env, &mut subjects)?;
    let load_before = measure::load_average();
    let lines = rounds(&env, &mut subjects, interval)?;
    notes.push(measure::load_note(load_before, measure::load_average()));
    notes.extend(subjects.iter().filter_map(haproxy_handover));
    let mut text = header(&env, interval, &notes);
    text.push_str(&report::table(&lines, interval.as_millis() as u64));
    println!("\n{text}");
    let path = crate::report::write_results("reload", &text)?;
    eprintln!("e2e reload: written to {}", path.display());
    Ok(())
}

/// RINGWAY_BENCH_RELOAD_MS: time between two reloads (default 100).
fn interval_from_env() -> Result<Duration, String> {
    let name = "RINGWAY_BENCH_RELOAD_MS";
    let ms = match std::env::var(name).ok().filter(|v| !v.trim().is_empty()) {
        None => 100,
        Some(v) => v
            .trim()
            .parse::<u64>()
            .map_err(|e| format!("{name}={v}: {e}"))?,
    };
    Ok(Duration::from_millis(ms.max(10)))
}

/// Reloads in one run of `secs`: one per interval, the last before wrk stops, and an odd
/// number, so the variant written last differs from the one served at the start and the
/// check after the run tells a reload done from one ignored.
pub fn reload_count(secs: u64, interval: Duration) -> u64 {
    let ticks = (secs * 1000) / (interval.as_millis() as u64).max(1);
    let n = ticks.saturating_sub(1);
    if n.is_multiple_of(2) {
        n.saturating_sub(1)
    } else {
        n
    }
}

/// Writes variant 0, starts the proxy pinned to the proxy CPU, and checks it proxies.
fn start_subject(
    env: &Env,
    name: &'static str,
    listen: SocketAddr,
    admin: SocketAddr,
    backends: [SocketAddr; 2],
) -> Result<Subject, String> {
    let dir = env.dir.as_path();
    let log = dir.join(format!("reload-{name}.log"));
    let (variants, conf) = match name {
        "ringway" => (
            [0, 1].map(|v| configs::ringway(listen, admin, &backends, dir, v)),
            dir.join("reload-ringway.toml"),
        ),
        "nginx" => (
            [0, 1].map(|v| configs::nginx(listen, &backends, dir, v)),
            dir.join("reload-nginx.conf"),
        ),
        _ => (
            [0, 1].map(|v| configs::haproxy(listen, &backends, v)),
            dir.join("reload-haproxy.cfg"),
        ),
    };
    driver::write_atomically(&conf, &variants[0])?;
    let (program, args) = command_line(env, name, &conf)?;
    let mut proc = Proc::spawn(name, env.cpus.proxy, &program, &args, &log)?;
    proc.wait_listening(listen, Duration::from_secs(10))?;
    crate::expect_sizes(listen, &env.knobs.sizes[..1])
        .map_err(|e| format!("{e}; log: {}", proc.log_tail()))?;
    let (trigger, witness) = reload_means(env, name, &proc, &args, &log, admin)?;
    if !driver::await_variant(listen, &backends, 0, TAKE_EFFECT_LIMIT) {
        return Err("requests do not split 4:1 over the backends as configured".into());
    }
    let idle_tree = measure::process_tree(proc.pid()).len();
    Ok(Subject {
        run: Running {
            name,
            proc,
            listen,
            dead: None,
        },
        reloader: Reloader {
            conf,
            variants,
            current: 0,
            trigger,
        },
        witness,
        backends,
        idle_tree,
    })
}

/// The program and arguments that run `name` in the foreground with `conf`.
fn command_line(env: &Env, name: &str, conf: &Path) -> Result<(PathBuf, Vec<String>), String> {
    let conf_arg = conf.display().to_string();
    Ok(match name {
        "ringway" => (
            PathBuf::from(crate::ringway_bin()),
            vec!["-c".into(), conf_arg],
        ),
        "nginx" => {
            let nginx = env.tool("nginx").ok_or("nginx not installed")?;
            let args = crate::nginx_args(&env.dir, conf, "reload-nginx");
            (nginx.to_path_buf(), args)
        }
        _ => {
            let haproxy = env.tool("haproxy").ok_or("haproxy not installed")?;
            // -W: master-worker, the master stays in the foreground (no -D) and reloads on
            // SIGUSR2; -p: the pid file an init script would signal.
            let pid_file = env.dir.join("reload-haproxy.pid").display().to_string();
            let args = vec!["-W".into(), "-f".into(), conf_arg, "-p".into(), pid_file];
            (haproxy.to_path_buf(), args)
        }
    })
}

/// How `name` is told to reload, and where it says it did.
fn reload_means(
    env: &Env,
    name: &str,
    proc: &Proc,
    args: &[String],
    log: &Path,
    admin: SocketAddr,
) -> Result<(Trigger, Witness), String> {
    let signal = |signal| Trigger::Signal {
        pid: proc.pid(),
        signal,
    };
    Ok(match name {
        "ringway" => (signal(libc::SIGHUP), Witness::RingwayMetrics(admin)),
        "nginx" => {
            let mut args = args.to_vec();
            args.extend(["-s".to_string(), "reload".to_string()]);
            let trigger = Trigger::Command {
                program: env
                    .tool("nginx")
                    .ok_or("nginx not installed")?
                    .to_path_buf(),
                args,
                cpu: env.cpus.load,
                log: env.dir.join("nginx-signal.log"),
            };
            let witness = Witness::NginxLog(env.dir.join("reload-nginx-error.log"));
            (trigger, witness)
        }
        _ => (
            signal(libc::SIGUSR2),
            Witness::HaproxyLog(log.to_path_buf()),
        ),
    })
}

/// One short unrecorded run per proxy, without reloads: pools, caches and allocators warm.
fn warm_up(env: &Env, subjects: &mut [Subject]) -> Result<(), String> {
    for s in subjects.iter_mut() {
        if let Err(e) = wrk(env, &s.run, 1) {
            check_interrupted()?;
            eprintln!("e2e reload: warm-up of {} failed: {e}", s.run.name);
        }
    }
    Ok(())
}

/// Every round runs each proxy without and with reloads; the proxy order rotates every round
/// and so does which of the two modes goes first, so neither mode always follows the other.
fn rounds(env: &Env, subjects: &mut [Subject], interval: Duration) -> Result<Vec<Line>, String> {
    let mut lines: Vec<Line> = subjects
        .iter()
        .flat_map(|s| {
            [false, true].map(|reloading| Line {
                proxy: s.run.name,
                reloading,
                runs: Vec::new(),
                failure: None,
            })
        })
        .collect();
    let n = subjects.len();
    for round in 0..env.knobs.rounds {
        for k in 0..n {
            let i = (k + round) % n;
            for mode in 0..2 {
                let reloading = (mode + round) % 2 == 1;
                let line = &mut lines[2 * i + usize::from(reloading)];
                let s = &mut subjects[i];
                if let Some(why) = &s.run.dead {
                    line.failure = Some(why.clone());
                    continue;
                }
                match measured_run(env, s, reloading, interval) {
                    Ok(mut run) => {
                        run.sample.round = round;
                        line.runs.push(Run { round, ..run });
                    }
                    Err(e) => {
                        check_interrupted()?;
                        eprintln!("e2e reload: {} (reload {reloading}): {e}", s.run.name);
                        s.run.dead = s.run.proc.exited();
                        line.failure = Some(e);
                    }
                }
            }
        }
    }
    Ok(lines)
}

/// One wrk run, with the reload driver in a thread beside it when `reloading`; the proxy's
/// CPU time over the run (old workers reaped meanwhile included), and what the reloads did.
fn measured_run(
    env: &Env,
    s: &mut Subject,
    reloading: bool,
    interval: Duration,
) -> Result<Run, String> {
    let count = if reloading {
        // Start from the variant in effect, so the run ends on the other one (see reload_count).
        if let Some(v) = driver::variant_in_effect(s.run.listen, &s.backends) {
            s.reloader.current = v;
        }
        reload_count(env.knobs.secs, interval)
    } else {
        0
    };
    let pid = s.run.proc.pid();
    let tally_before = s.witness.tally();
    let cpu_before = measure::tree_cpu_seconds_with_reaped(pid);
    let done = AtomicBool::new(false);
    let (out, driven) = std::thread::scope(|scope| {
        let (reloader, done) = (&mut s.reloader, &done);
        let driver = scope.spawn(move || driver::drive(reloader, count, interval, done));
        let out = wrk(env, &s.run, env.knobs.secs);
        done.store(true, Ordering::SeqCst);
        (out, driver.join().unwrap_or_default())
    });
    let cpu = measure::tree_cpu_seconds_with_reaped(pid) - cpu_before;
    if let Some(why) = s.run.proc.exited() {
        return Err(why);
    }
    let wrk = parse_wrk(&out?)?;
    if wrk.requests == 0 {
        return Err("wrk completed no request".into());
    }
    let in_effect = reloading.then(|| {
        driver::await_variant(
            s.run.listen,
            &s.backends,
            s.reloader.current,
            TAKE_EFFECT_LIMIT,
        )
    });
    let tally = match (tally_before, s.witness.tally()) {
        (Some(b), Some(a)) => Some(driver::Tally {
            ok: a.ok.saturating_sub(b.ok),
            failed: a.failed.saturating_sub(b.failed),
        }),
        _ => None,
    };
    if reloading {
        settle(s);
    }
    let cpu_us_per_req = cpu.max(0.0) * 1e6 / wrk.requests as f64;
    Ok(Run {
        round: 0,
        sample: Sample {
            round: 0,
            wrk,
            cpu_us_per_req,
            // The reload report shows CPU whole (reaped workers' time comes unsplit).
            kernel_us_per_req: f64::NAN,
        },
        driven,
        tally,
        in_effect,
    })
}

/// `wrk -t1 -cN -dS --latency` against the proxy, pinned to the load CPU; its output.
fn wrk(env: &Env, p: &Running, secs: u64) -> Result<String, String> {
    let url = format!("http://{}/size/{}", p.listen, env.knobs.sizes[0]);
    let args: Vec<String> = vec![
        "-t1".into(),
        format!("-c{}", env.knobs.connections),
        format!("-d{secs}s"),
        "--latency".into(),
        url,
    ];
    let cmd = procs::pinned(env.cpus.load, &env.wrk, &args);
    procs::run_bounded(
        cmd,
        &env.dir.join("wrk.log"),
        Duration::from_secs(secs + 30),
    )
}

/// Waits until the old workers a reload run left behind have exited.
fn settle(s: &Subject) {
    let deadline = Instant::now() + SETTLE_LIMIT;
    while measure::process_tree(s.run.proc.pid()).len() > s.idle_tree {
        if Instant::now() >= deadline || check_interrupted().is_err() {
            eprintln!("e2e reload: {} still has old workers", s.run.name);
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// For HAProxy: the `-x` argument its master gave the newest worker, i.e. how listening
/// sockets were handed over on reload (`sockpair@N`: from the old worker, seamless).
fn haproxy_handover(s: &Subject) -> Option<String> {
    if s.run.name != "haproxy" {
        return None;
    }
    let x = measure::process_tree(s.run.proc.pid())
        .iter()
        .filter_map(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).ok())
        .find_map(|raw| {
            let args: Vec<String> = raw
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let at = args.iter().position(|a| a == "-x")?;
            args.get(at + 1).cloned()
        });
    Some(match x {
        Some(x) => format!(
            "HAProxy reloads re-executed the master with `-x {x}`: listening sockets taken from the running worker (seamless; no stats socket needed)"
        ),
        None => {
            "HAProxy: no `-x` on its workers' command line; reloads bound the listeners anew".into()
        }
    })
}

/// What was measured, with what, how each proxy was reloaded.
fn header(env: &Env, interval: Duration, notes: &[String]) -> String {
    let k = &env.knobs;
    let ms = interval.as_millis();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut text = String::from("## ringway reload under load\n\n");
    text.push_str(&format!(
        "- machine: {} CPUs, Linux {}\n- wrk -t1 -c{} -d{}s --latency on /size/{}, {} rounds \
         (median shown; failed requests and reloads summed), proxy order and mode order \
         rotated each round\n- a reload every {ms} ms ({} per run), each writing the other of \
         two configs (server weights 4:1 / 1:4) then signalling: ringway `kill -HUP`, nginx \
         `nginx -s reload`, HAProxy `-W` master `kill -USR2`\n- proxies on CPU {}, wrk, \
         backends and `nginx -s reload` on CPU {}; one worker each; upstream keep-alive {}\n",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        kernel.trim(),
        k.connections,
        k.secs,
        k.sizes[0],
        k.rounds,
        reload_count(k.secs, interval),
        env.cpus.proxy,
        env.cpus.load,
        configs::KEEPALIVE,
    ));
    for tool in ["nginx", "haproxy", "wrk"] {
        if let Some(path) = env.tool(tool) {
            text.push_str(&format!("- {}\n", crate::version(env, path, "-v")));
        }
    }
    for note in notes {
        text.push_str(&format!("- {note}\n"));
    }
    text.push_str(
        "- failed requests: wrk's socket errors (connect, read, write, timeout) plus non-2xx/3xx \
         answers; reloads done (refused): the proxy's own count (nginx `reconfiguring` log \
         lines, HAProxy `Loading success.`/`Loading failure!`, ringway \
         `ringway_config_reloads_total{result}`; – where it gives none); CPU from /proc, \
         reaped old workers included\n\n",
    );
    text
}
