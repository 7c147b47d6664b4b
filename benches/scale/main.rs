//! Scaling benchmark: requests/s and CPU per request of ringway, nginx and HAProxy with one
//! and with two workers, round robin and least_conn, on a machine whose two CPUs are shared
//! by the proxy, wrk and the backends.
//!
//! `cargo bench --bench scale` runs it (README "Scaling" has the knobs); `-- marks` runs
//! the two-thread micro-benchmark of the balancer's shared counters instead ([`marks`]).
//! Without `--bench` (as under `cargo test --bench scale`) it only runs its self-checks.
//!
//! Layout of one run: every subject (proxy × workers × balancer) is started once, all of
//! them allowed on CPUs 0-1 (taskset; workers unpinned inside that), the two static nginx
//! backends (two workers) and `wrk -t2` on CPUs 0-1 as well. Round r runs wrk against each
//! subject in an order rotated by r. Reuses `benches/e2e`'s configs, process handling and
//! measurements, so a proxy here is configured exactly as there but for its workers and
//! balancer.

#[allow(dead_code)]
#[path = "../e2e/configs.rs"]
mod configs;
#[allow(dead_code)]
#[path = "../e2e/measure.rs"]
mod measure;
#[allow(dead_code)]
#[path = "../e2e/procs.rs"]
mod procs;

mod checks;
mod marks;
mod report;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use configs::Shape;
use procs::{Proc, check_interrupted, expect_sizes, nginx_args, write_file};
use report::{Sample, Subject};

/// The proxies this benchmark knows, in the order of round 0.
const PROXIES: [&str; 3] = ["ringway", "nginx", "haproxy"];
/// Every process of the run may use these CPUs (taskset's list): all of a 2-core machine.
const CPUS: &str = "0,1";
/// The static nginx backends' workers: two, so that one backend worker is never what limits
/// two proxy workers.
const BACKEND_WORKERS: u32 = 2;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        return checks::run();
    }
    procs::install_signal_handlers();
    let result = if args.iter().any(|a| a == "marks") {
        marks::run()
    } else {
        run()
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scale: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Settings from the environment.
#[derive(Debug, Clone, PartialEq)]
struct Knobs {
    /// RINGWAY_BENCH_SECS: length of one wrk run.
    secs: u64,
    /// RINGWAY_BENCH_ROUNDS: runs per subject; tables show medians.
    rounds: usize,
    /// RINGWAY_BENCH_SIZE: response size in bytes (`/size/N`).
    size: u64,
    /// RINGWAY_BENCH_CONNECTIONS: wrk's -c.
    connections: u32,
    /// RINGWAY_BENCH_PROXIES: subset of [`PROXIES`].
    proxies: Vec<&'static str>,
    /// RINGWAY_BENCH_WORKERS: worker counts to run each proxy with.
    workers: Vec<u32>,
    /// RINGWAY_BENCH_BALANCES: `round_robin`, `least_conn` or both.
    least_conn: Vec<bool>,
}

impl Knobs {
    fn from_env() -> Result<Knobs, String> {
        Knobs::from_lookup(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
    }

    /// The knobs from `var` (the environment, or a table in the self-checks).
    fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Knobs, String> {
        let number = |name: &str, default: u64| -> Result<u64, String> {
            var(name).map_or(Ok(default), |v| {
                v.trim()
                    .parse::<u64>()
                    .map_err(|e| format!("{name}={v}: {e}"))
            })
        };
        let list = |name: &str, default: &str| -> Vec<String> {
            var(name)
                .unwrap_or_else(|| default.to_string())
                .split(',')
                .map(|s| s.trim().to_ascii_lowercase())
                .filter(|s| !s.is_empty())
                .collect()
        };
        let mut proxies = Vec::new();
        for name in list("RINGWAY_BENCH_PROXIES", "ringway,nginx,haproxy") {
            let known = PROXIES.iter().find(|p| **p == name).ok_or_else(|| {
                format!("RINGWAY_BENCH_PROXIES: unknown proxy {name:?} (ringway, nginx, haproxy)")
            })?;
            proxies.push(*known);
        }
        let mut workers = Vec::new();
        for w in list("RINGWAY_BENCH_WORKERS", "1,2") {
            match w.parse::<u32>() {
                Ok(n @ 1..=64) => workers.push(n),
                _ => return Err(format!("RINGWAY_BENCH_WORKERS: bad count {w:?} (1 to 64)")),
            }
        }
        let mut least_conn = Vec::new();
        for b in list("RINGWAY_BENCH_BALANCES", "round_robin,least_conn") {
            match b.as_str() {
                "round_robin" => least_conn.push(false),
                "least_conn" => least_conn.push(true),
                _ => {
                    return Err(format!(
                        "RINGWAY_BENCH_BALANCES: {b:?} is not round_robin or least_conn"
                    ));
                }
            }
        }
        if proxies.is_empty() || workers.is_empty() || least_conn.is_empty() {
            return Err("RINGWAY_BENCH_PROXIES, _WORKERS and _BALANCES may not be empty".into());
        }
        Ok(Knobs {
            secs: number("RINGWAY_BENCH_SECS", 5)?.max(1),
            rounds: number("RINGWAY_BENCH_ROUNDS", 3)?.max(1) as usize,
            size: number("RINGWAY_BENCH_SIZE", 16)?,
            connections: number("RINGWAY_BENCH_CONNECTIONS", 64)?.clamp(1, 10_000) as u32,
            proxies,
            workers,
            least_conn,
        })
    }

    /// Every proxy × balancer × worker count, workers innermost so that a proxy's one- and
    /// two-worker runs sit next to each other in a round.
    fn subjects(&self) -> Vec<Subject> {
        let mut subjects = Vec::new();
        for &proxy in &self.proxies {
            for &least_conn in &self.least_conn {
                for &workers in &self.workers {
                    subjects.push(Subject {
                        proxy,
                        shape: Shape {
                            workers,
                            least_conn,
                        },
                    });
                }
            }
        }
        subjects
    }
}

/// The run's scratch directory (configs, logs, pid files); removed on drop, after the
/// processes that write there (declared later, so dropped earlier) are gone.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One subject, started and answering.
struct Running {
    subject: Subject,
    proc: Proc,
    listen: SocketAddr,
    /// Set once the proxy has died; its remaining runs are skipped.
    dead: Option<String>,
}

/// What every run needs.
struct Env {
    knobs: Knobs,
    dir: PathBuf,
    wrk: PathBuf,
    nginx: Option<PathBuf>,
    haproxy: Option<PathBuf>,
}

fn run() -> Result<(), String> {
    let knobs = Knobs::from_env()?;
    let dir = std::env::temp_dir().join(format!("ringway-scale-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let scratch = TempDir(dir);
    let tools = procs::ensure_tools(&["wrk", "taskset", "nginx", "haproxy"], &scratch.0);
    let tool = |n: &str| tools.iter().find(|(t, _)| t == n).map(|(_, p)| p.clone());
    let env = Env {
        wrk: tool("wrk").ok_or("wrk is required")?,
        nginx: tool("nginx"),
        haproxy: tool("haproxy"),
        dir: scratch.0.clone(),
        knobs,
    };
    tool("taskset").ok_or("taskset (util-linux) is required")?;
    let nginx = env
        .nginx
        .as_deref()
        .ok_or("nginx is required (the backends)")?;
    let subjects = env.knobs.subjects();
    eprintln!(
        "scale: measuring for at most ~{} s ({} subjects × {} rounds × {} s)",
        subjects.len() as u64 * (env.knobs.rounds as u64 * (env.knobs.secs + 1) + 2),
        subjects.len(),
        env.knobs.rounds,
        env.knobs.secs,
    );
    let ports = procs::free_ports(2 + subjects.len())?;
    let local = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    let backends = [local(ports[0]), local(ports[1])];
    let _backend = start_backend(&env, nginx, &backends)?;
    let mut notes = Vec::new();
    let mut running = Vec::new();
    for (i, subject) in subjects.iter().enumerate() {
        match start_subject(&env, *subject, local(ports[2 + i]), &backends) {
            Ok(r) => running.push(r),
            Err(e) => {
                eprintln!("scale: skipping {}: {e}", subject.name());
                notes.push(format!("{} skipped: {e}", subject.name()));
            }
        }
    }
    if running.is_empty() {
        return Err("no proxy could be started".into());
    }
    for r in running.iter_mut() {
        if let Err(e) = wrk_run(&env, r, 1, &_backend, 0) {
            check_interrupted()?;
            eprintln!("scale: warm-up of {} failed: {e}", r.subject.name());
        }
    }
    let load_before = measure::load_average();
    let results = run_rounds(&env, &mut running, &_backend)?;
    notes.push(measure::load_note(load_before, measure::load_average()));
    let text = header(&env, &notes) + &report::tables(&results, &env.knobs.workers);
    println!("\n{text}");
    let path = write_results(&text)?;
    eprintln!("scale: written to {}", path.display());
    Ok(())
}

/// The two static nginx backends, with [`BACKEND_WORKERS`] workers, serving `/size/N`.
fn start_backend(env: &Env, nginx: &Path, backends: &[SocketAddr; 2]) -> Result<Proc, String> {
    let www = env.dir.join("www").join("size");
    std::fs::create_dir_all(&www).map_err(|e| e.to_string())?;
    let size = env.knobs.size;
    std::fs::write(www.join(size.to_string()), vec![b'x'; size as usize])
        .map_err(|e| e.to_string())?;
    let text = configs::nginx_backend_with(backends, &env.dir, BACKEND_WORKERS);
    let conf = write_file(&env.dir, "backend.conf", &text)?;
    let log = env.dir.join("backend.log");
    let args = nginx_args(&env.dir, &conf, "backend");
    let mut proc = Proc::spawn("nginx backend", CPUS, nginx, &args, &log)?;
    for b in backends {
        proc.wait_listening(*b, Duration::from_secs(10))?;
        expect_sizes(*b, &[size]).map_err(|e| format!("backend {b}: {e}"))?;
    }
    Ok(proc)
}

/// Writes the subject's config, starts it on [`CPUS`] and checks it proxies.
fn start_subject(
    env: &Env,
    subject: Subject,
    listen: SocketAddr,
    backends: &[SocketAddr],
) -> Result<Running, String> {
    let tag = subject.tag();
    let (program, args) = match subject.proxy {
        "ringway" => {
            let text = configs::ringway_shaped(listen, backends, &env.dir, &tag, subject.shape);
            let conf = write_file(&env.dir, &format!("{tag}.toml"), &text)?;
            let args = vec!["-c".to_string(), conf.display().to_string()];
            (PathBuf::from(env!("CARGO_BIN_EXE_ringway")), args)
        }
        "nginx" => {
            let nginx = env.nginx.clone().ok_or("nginx not installed")?;
            let text = configs::nginx_shaped(listen, backends, &env.dir, &tag, subject.shape);
            let conf = write_file(&env.dir, &format!("{tag}.conf"), &text)?;
            let args = nginx_args(&env.dir, &conf, &tag);
            (nginx, args)
        }
        "haproxy" => {
            let haproxy = env.haproxy.clone().ok_or("haproxy not installed")?;
            let text = configs::haproxy_shaped(listen, backends, subject.shape);
            let conf = write_file(&env.dir, &format!("{tag}.cfg"), &text)?;
            // -db: stay in the foreground, no daemon.
            let args = vec!["-f".into(), conf.display().to_string(), "-db".into()];
            (haproxy, args)
        }
        other => return Err(format!("no configuration for proxy {other}")),
    };
    let log = env.dir.join(format!("{tag}.log"));
    let mut proc = Proc::spawn(&subject.name(), CPUS, &program, &args, &log)?;
    proc.wait_listening(listen, Duration::from_secs(10))?;
    expect_sizes(listen, &[env.knobs.size])
        .map_err(|e| format!("{e}; log: {}", proc.log_tail()))?;
    Ok(Running {
        subject,
        proc,
        listen,
        dead: None,
    })
}

/// Every round × subject, the order rotated per round; one `Vec` of samples per subject.
fn run_rounds(
    env: &Env,
    running: &mut [Running],
    backend: &Proc,
) -> Result<Vec<(Subject, Vec<Sample>)>, String> {
    let n = running.len();
    let mut results: Vec<(Subject, Vec<Sample>)> =
        running.iter().map(|r| (r.subject, Vec::new())).collect();
    for round in 0..env.knobs.rounds {
        for k in 0..n {
            let i = (k + round) % n;
            let r = &mut running[i];
            if r.dead.is_some() {
                continue;
            }
            match wrk_run(env, r, env.knobs.secs, backend, round) {
                Ok(sample) => results[i].1.push(sample),
                Err(e) => {
                    check_interrupted()?;
                    eprintln!("scale: {}: {e}", r.subject.name());
                    r.dead = r.proc.exited();
                }
            }
        }
    }
    Ok(results)
}

/// One `wrk -t2` run on [`CPUS`] against `r`, with the CPU the proxy, wrk and the backends
/// spent over it and how busy the whole machine was.
fn wrk_run(
    env: &Env,
    r: &mut Running,
    secs: u64,
    backend: &Proc,
    round: usize,
) -> Result<Sample, String> {
    let url = format!("http://{}/size/{}", r.listen, env.knobs.size);
    let args: Vec<String> = vec![
        "-t2".into(),
        format!("-c{}", env.knobs.connections),
        format!("-d{secs}s"),
        "--latency".into(),
        url,
    ];
    let cmd = procs::pinned(CPUS, &env.wrk, &args);
    let proxy_before = measure::tree_cpu_seconds(r.proc.pid());
    let backend_before = measure::tree_cpu_seconds(backend.pid());
    let wrk_before = children_cpu_seconds();
    let machine_before = report::machine_ticks();
    let out = procs::run_bounded(
        cmd,
        &env.dir.join("wrk.log"),
        Duration::from_secs(secs + 30),
    )?;
    let machine_after = report::machine_ticks();
    let wrk_cpu = children_cpu_seconds() - wrk_before;
    let backend_cpu = measure::tree_cpu_seconds(backend.pid()) - backend_before;
    let proxy_cpu = measure::tree_cpu_seconds(r.proc.pid()) - proxy_before;
    if let Some(why) = r.proc.exited() {
        return Err(why);
    }
    let wrk = measure::parse_wrk(&out)?;
    if wrk.requests == 0 {
        return Err("wrk completed no request".into());
    }
    let per_request = |seconds: f64| seconds.max(0.0) * 1e6 / wrk.requests as f64;
    Ok(Sample {
        round,
        rps: wrk.rps,
        p99_us: wrk.p99_us,
        errors: wrk.errors,
        proxy_us: per_request(proxy_cpu),
        load_us: per_request(wrk_cpu + backend_cpu),
        busy: report::busy_share(machine_before, machine_after),
    })
}

/// CPU seconds of the harness's reaped children: wrk, once `run_bounded` has reaped it (the
/// proxies and backends are reaped only at the end, so they do not count here).
fn children_cpu_seconds() -> f64 {
    // SAFETY: getrusage writes only into the struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// What was measured, with what, under which conditions.
fn header(env: &Env, notes: &[String]) -> String {
    let k = &env.knobs;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut text = String::from("## ringway scaling benchmark\n\n");
    text.push_str(&format!(
        "- machine: {cores} CPUs, Linux {}\n- wrk -t2 -c{} -d{}s --latency on /size/{}, {} \
         rounds (median shown), order rotated each round, after a 1 s warm-up run each\n\
         - every process on CPUs {CPUS} (taskset): each proxy (workers unpinned within them), \
         wrk, and the two static nginx backends ({BACKEND_WORKERS} workers)\n- configs as in \
         benches/e2e (tuned nginx: `keepalive 256;`, `proxy_buffers 32 8k;`, \
         `proxy_max_temp_file_size 0;`, keep-alive never cut) but for the workers \
         (ringway `workers`, nginx `worker_processes`, HAProxy `nbthread`) and the balancer \
         (ringway `least_conn`, nginx `least_conn;` with `zone backends 64k;` so that its \
         counts are per process as ringway's, HAProxy `balance leastconn`)\n",
        kernel.trim(),
        k.connections,
        k.secs,
        k.size,
        k.rounds,
    ));
    for note in notes {
        text.push_str(&format!("- {note}\n"));
    }
    text.push('\n');
    text
}

/// Saves the report under `benches/results/scale-<unix seconds>.md`.
fn write_results(text: &str) -> Result<PathBuf, String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/results");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let path = dir.join(format!("scale-{secs}.md"));
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}
