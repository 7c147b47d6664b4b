//! End-to-end benchmark: ringway, a tuned nginx and HAProxy proxying the same two static
//! nginx backends on 127.0.0.1, measured with wrk in interleaved rounds, reported as ratios
//! to the best of the peers and checked against issue 6's targets ([`targets`]).
//!
//! `cargo bench --bench e2e` runs it (see README "Benchmarks" for the knobs). Without
//! `--bench` (as under `cargo test --benches`) it only runs its own self-checks.
//! `cargo bench --bench e2e -- reload` runs the reload-under-load benchmark instead
//! ([`reload`]). `cargo bench --bench e2e -- gzip` measures gzip against nginx's ([`gzip`]).
//!
//! Layout of one run: each proxy is pinned to CPU 0 with one worker; wrk and the backends
//! share CPU 1. For every size, round r runs wrk against each proxy in an
//! order rotated by r, reading requests/s and latency from wrk and the proxy's CPU time from
//! /proc. A second pass repeats it with each proxy's processes capped at half a core.

mod cgroup;
mod checks;
mod configs;
mod gzip;
mod measure;
mod procs;
mod reload;
mod report;
mod targets;

use procs::{Proc, check_interrupted, expect_sizes, nginx_args, write_file};
use report::{Cell, Sample};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Every proxy the harness knows, in the order of round 0.
const PROXIES: [&str; 5] = ["ringway", BASELINE, "nginx", "haproxy", HAPROXY_TCP];

pub use configs::{BASELINE, HAPROXY_TCP};

/// The program a proxy needs besides ringway's own binaries.
fn tool_of(proxy: &str) -> Option<&'static str> {
    match proxy {
        "nginx" => Some("nginx"),
        "haproxy" | HAPROXY_TCP => Some("haproxy"),
        _ => None,
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        return checks::run();
    }
    procs::install_signal_handlers();
    let result = if args.iter().any(|a| a == "reload") {
        reload::run()
    } else if args.iter().any(|a| a == "gzip") {
        gzip::run()
    } else {
        run()
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("e2e: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Settings from the environment.
#[derive(Debug, Clone)]
struct Knobs {
    /// RINGWAY_BENCH_SECS: length of one wrk run.
    secs: u64,
    /// RINGWAY_BENCH_ROUNDS: runs per proxy and size; the table shows their median.
    rounds: usize,
    /// RINGWAY_BENCH_SIZES: response sizes in bytes ("16,4k,64k").
    sizes: Vec<u64>,
    /// RINGWAY_BENCH_PROXIES: subset of [`PROXIES`].
    proxies: Vec<&'static str>,
    /// RINGWAY_BENCH_HALF_CORE: run the second, half-core pass.
    half_core: bool,
    /// RINGWAY_BENCH_CONNECTIONS: wrk's -c.
    connections: u32,
    /// RINGWAY_BENCH_BACKEND: "nginx" (static files, the default) or "ringway"
    /// (`ringway backend`).
    backend: String,
    /// RINGWAY_BENCH_BASELINE: an older ringway binary, measured as [`BASELINE`].
    baseline: Option<PathBuf>,
    /// RINGWAY_BENCH_WARMUP_SECS: the unrecorded wrk run per proxy before the rounds.
    warmup_secs: u64,
}

impl Knobs {
    fn from_env() -> Result<Knobs, String> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let number = |name: &str, default: u64| -> Result<u64, String> {
            var(name).map_or(Ok(default), |v| {
                v.trim()
                    .parse::<u64>()
                    .map_err(|e| format!("{name}={v}: {e}"))
            })
        };
        let baseline = var("RINGWAY_BENCH_BASELINE").map(PathBuf::from);
        let knobs = Knobs {
            secs: number("RINGWAY_BENCH_SECS", 5)?.max(1),
            rounds: number("RINGWAY_BENCH_ROUNDS", 3)?.max(1) as usize,
            sizes: parse_sizes(&var("RINGWAY_BENCH_SIZES").unwrap_or("16,4k,64k".into()))?,
            proxies: parse_proxies(
                &var("RINGWAY_BENCH_PROXIES").unwrap_or_default(),
                baseline.is_some(),
            )?,
            half_core: var("RINGWAY_BENCH_HALF_CORE").is_none_or(|v| v.trim() != "0"),
            connections: number("RINGWAY_BENCH_CONNECTIONS", 64)?.clamp(1, 10_000) as u32,
            backend: var("RINGWAY_BENCH_BACKEND").unwrap_or("nginx".into()),
            baseline,
            warmup_secs: number("RINGWAY_BENCH_WARMUP_SECS", 1)?.max(1),
        };
        if !["ringway", "nginx"].contains(&knobs.backend.as_str()) {
            return Err(format!(
                "RINGWAY_BENCH_BACKEND={}: nginx or ringway",
                knobs.backend
            ));
        }
        Ok(knobs)
    }

    /// Upper bound of the measuring time, printed so nobody wonders whether it hangs.
    fn estimate_secs(&self) -> u64 {
        let passes = if self.half_core { 2 } else { 1 };
        let runs = self.sizes.len() * self.rounds * self.proxies.len() * passes;
        runs as u64 * (self.secs + 1) + self.proxies.len() as u64 * (self.warmup_secs + 1)
    }
}

/// "16,4k,64k" → [16, 4096, 65536]; k/m are binary (KiB/MiB).
fn parse_sizes(text: &str) -> Result<Vec<u64>, String> {
    let parse = |item: &str| -> Result<u64, String> {
        let item = item.trim().to_ascii_lowercase();
        let (digits, scale) = match item.strip_suffix('k') {
            Some(d) => (d.to_string(), 1 << 10),
            None => match item.strip_suffix('m') {
                Some(d) => (d.to_string(), 1 << 20),
                None => (item.clone(), 1),
            },
        };
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("RINGWAY_BENCH_SIZES: bad size {item:?}"))?;
        Ok(n * scale)
    };
    let sizes: Vec<u64> = text
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(parse)
        .collect::<Result<_, _>>()?;
    if sizes.is_empty() {
        return Err("RINGWAY_BENCH_SIZES: no sizes".into());
    }
    Ok(sizes)
}

/// "nginx,haproxy" → that subset, in [`PROXIES`] order; empty → all, [`BASELINE`] only
/// when there is a baseline binary (`has_baseline`), which naming it requires.
fn parse_proxies(text: &str, has_baseline: bool) -> Result<Vec<&'static str>, String> {
    let wanted: Vec<String> = text
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    if let Some(bad) = wanted.iter().find(|w| !PROXIES.contains(&w.as_str())) {
        return Err(format!(
            "RINGWAY_BENCH_PROXIES: unknown proxy {bad:?} (ringway, {BASELINE}, nginx, haproxy, \
             {HAPROXY_TCP})"
        ));
    }
    if !has_baseline && wanted.iter().any(|w| w == BASELINE) {
        return Err(format!(
            "RINGWAY_BENCH_PROXIES: {BASELINE} needs RINGWAY_BENCH_BASELINE=/path/to/old/ringway"
        ));
    }
    Ok(PROXIES
        .into_iter()
        .filter(|p| wanted.is_empty() || wanted.iter().any(|w| w == p))
        .filter(|p| has_baseline || *p != BASELINE)
        .collect())
}

/// The run's scratch directory (configs, logs, pid files); removed on drop, after the
/// processes that write there (declared later, so dropped earlier) are gone.
struct TempDir(PathBuf);

impl TempDir {
    fn create() -> Result<TempDir, String> {
        let dir = std::env::temp_dir().join(format!("ringway-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Which CPU the proxies get and which the load (wrk, backends) gets.
#[derive(Debug, Clone, Copy)]
struct Cpus {
    proxy: usize,
    load: usize,
}

/// Everything a run needs to start processes.
struct Env {
    knobs: Knobs,
    dir: PathBuf,
    cpus: Cpus,
    tools: Vec<(String, PathBuf)>,
    wrk: PathBuf,
    /// Proxies left out because their program could not be had.
    skipped: Vec<String>,
}

impl Env {
    fn tool(&self, name: &str) -> Option<&Path> {
        self.tools
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p.as_path())
    }
}

/// One proxy under test, started and answering.
struct Running {
    name: &'static str,
    proc: Proc,
    listen: SocketAddr,
    /// Set once the proxy has died; its remaining runs are skipped.
    dead: Option<String>,
}

fn run() -> Result<(), String> {
    let knobs = Knobs::from_env()?;
    let scratch = TempDir::create()?;
    let env = prepare(knobs, &scratch.0)?;
    eprintln!(
        "e2e: measuring for at most ~{} s ({} s × {} rounds × {} sizes × {} proxies)",
        env.knobs.estimate_secs(),
        env.knobs.secs,
        env.knobs.rounds,
        env.knobs.sizes.len(),
        env.knobs.proxies.len(),
    );
    let ports = procs::free_ports(2 + env.knobs.proxies.len())?;
    let local = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    let backends = [local(ports[0]), local(ports[1])];
    let _backend = start_backend(&env, &backends)?;
    let mut notes = env.skipped.clone();
    let mut proxies = start_each("e2e", &env.knobs.proxies, &mut notes, |i, name| {
        start_proxy(&env, name, local(ports[2 + i]), &backends)
    })?;
    warm_up(&env, &mut proxies)?;
    let names: Vec<&str> = proxies.iter().map(|p| p.name).collect();
    let load_before = measure::load_average();
    let full = run_pass(&env, &mut proxies)?;
    let mut text = String::new();
    text.push_str(&report::table(
        "One full core",
        &full,
        &env.knobs.sizes,
        &names,
    ));
    if names.contains(&"ringway") && names.contains(&BASELINE) {
        text.push('\n');
        text.push_str(&report::before_after(
            "ringway before/after (one full core)",
            &full,
            &env.knobs.sizes,
        ));
    }
    let mut half = None;
    if env.knobs.half_core {
        let (section, cells) = half_core_pass(&env, &mut proxies, &names)?;
        text.push('\n');
        text.push_str(&section);
        half = cells;
    }
    if names.contains(&"ringway") {
        text.push('\n');
        text.push_str(&targets::verdicts(&full, half.as_deref(), &env.knobs.sizes));
    }
    notes.push(measure::load_note(load_before, measure::load_average()));
    let text = header(&env, &notes) + &text;
    println!("\n{text}");
    let path = report::write_results("e2e", &text)?;
    eprintln!("e2e: written to {}", path.display());
    Ok(())
}

/// Tools (installed if missing), CPUs, and the checks that make a run pointless if they fail.
fn prepare(knobs: Knobs, dir: &Path) -> Result<Env, String> {
    let mut wanted = vec!["wrk", "taskset"];
    let backend_tool = (knobs.backend == "nginx").then_some("nginx");
    for tool in knobs
        .proxies
        .iter()
        .filter_map(|p| tool_of(p))
        .chain(backend_tool)
    {
        if !wanted.contains(&tool) {
            wanted.push(tool);
        }
    }
    let tools = procs::ensure_tools(&wanted, dir);
    let have = |n: &str| tools.iter().any(|(t, _)| t == n);
    let mut skipped = Vec::new();
    for missing in wanted.iter().filter(|n| !have(n)) {
        eprintln!("e2e: {missing} is not installed and could not be installed");
        for proxy in knobs.proxies.iter().filter(|p| tool_of(p) == Some(missing)) {
            skipped.push(format!(
                "{proxy} skipped: {missing} not installed, apt-get could not install it"
            ));
        }
    }
    let wrk = procs::find_tool("wrk").ok_or("wrk is required")?;
    procs::find_tool("taskset").ok_or("taskset (util-linux) is required")?;
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let cpus = if cores >= 2 {
        Cpus { proxy: 0, load: 1 }
    } else {
        Cpus { proxy: 0, load: 0 }
    };
    if cores < 2 {
        eprintln!("e2e: one CPU only: proxy, wrk and backends share it");
    }
    let mut knobs = knobs;
    if let Some(old) = &knobs.baseline {
        let full = std::fs::canonicalize(old)
            .map_err(|e| format!("RINGWAY_BENCH_BASELINE={}: {e}", old.display()))?;
        knobs.baseline = Some(full);
    }
    knobs.proxies.retain(|p| tool_of(p).is_none_or(have));
    Ok(Env {
        knobs,
        dir: dir.to_path_buf(),
        cpus,
        tools,
        wrk,
        skipped,
    })
}

/// Starts the two backends on the load CPU and checks they serve `/size/N`.
fn start_backend(env: &Env, backends: &[SocketAddr; 2]) -> Result<Proc, String> {
    let log = env.dir.join("backend.log");
    let mut proc = if env.knobs.backend == "ringway" {
        let mut args = vec!["backend".to_string()];
        for b in backends {
            args.extend(["--bind".to_string(), b.to_string()]);
        }
        Proc::spawn(
            "ringway backend",
            env.cpus.load,
            Path::new(ringway_bin()),
            &args,
            &log,
        )?
    } else {
        let nginx = env
            .tool("nginx")
            .ok_or("RINGWAY_BENCH_BACKEND=nginx needs nginx")?;
        let www = env.dir.join("www").join("size");
        std::fs::create_dir_all(&www).map_err(|e| e.to_string())?;
        for &size in &env.knobs.sizes {
            std::fs::write(www.join(size.to_string()), vec![b'x'; size as usize])
                .map_err(|e| e.to_string())?;
        }
        let conf = write_file(
            &env.dir,
            "backend.conf",
            &configs::nginx_backend(backends, &env.dir),
        )?;
        Proc::spawn(
            "nginx backend",
            env.cpus.load,
            nginx,
            &nginx_args(&env.dir, &conf, "backend"),
            &log,
        )?
    };
    for b in backends {
        proc.wait_listening(*b, Duration::from_secs(10))
            .map_err(|e| format!("{e} (RINGWAY_BENCH_BACKEND={})", env.knobs.backend))?;
        expect_sizes(*b, &env.knobs.sizes).map_err(|e| format!("backend {b}: {e}"))?;
    }
    Ok(proc)
}

/// Starts each proxy of `names` with `start` (given its position and name); one that cannot
/// start is skipped with a note, and the run fails only when none could start.
pub fn start_each<T>(
    run: &str,
    names: &[&'static str],
    notes: &mut Vec<String>,
    mut start: impl FnMut(usize, &'static str) -> Result<T, String>,
) -> Result<Vec<T>, String> {
    let mut started = Vec::new();
    for (i, &name) in names.iter().enumerate() {
        match start(i, name) {
            Ok(p) => started.push(p),
            Err(e) => {
                eprintln!("{run}: skipping {name}: {e}");
                notes.push(format!("{name} skipped: {e}"));
            }
        }
    }
    if started.is_empty() {
        return Err("no proxy could be started".into());
    }
    Ok(started)
}

fn ringway_bin() -> &'static str {
    env!("CARGO_BIN_EXE_ringway")
}

/// Writes the proxy's config, starts it pinned to the proxy CPU and checks it proxies.
fn start_proxy(
    env: &Env,
    name: &'static str,
    listen: SocketAddr,
    backends: &[SocketAddr],
) -> Result<Running, String> {
    let log = env.dir.join(format!("{name}.log"));
    let (program, args) = match name {
        "ringway" | BASELINE => {
            let conf = configs::ringway(listen, backends, &env.dir, name);
            let conf = write_file(&env.dir, &format!("{name}.toml"), &conf)?;
            let program = match (name, &env.knobs.baseline) {
                (BASELINE, Some(old)) => {
                    config_accepted(env, old, &conf)?;
                    old.clone()
                }
                _ => PathBuf::from(ringway_bin()),
            };
            (program, vec!["-c".to_string(), conf.display().to_string()])
        }
        "nginx" => {
            let conf = write_file(
                &env.dir,
                "nginx.conf",
                &configs::nginx(listen, backends, &env.dir),
            )?;
            let nginx = env.tool("nginx").ok_or("nginx not installed")?;
            (nginx.to_path_buf(), nginx_args(&env.dir, &conf, "nginx"))
        }
        "haproxy" | HAPROXY_TCP => {
            let text = if name == HAPROXY_TCP {
                configs::haproxy_tcp(listen, backends)
            } else {
                configs::haproxy(listen, backends)
            };
            let conf = write_file(&env.dir, &format!("{name}.cfg"), &text)?;
            let haproxy = env.tool("haproxy").ok_or("haproxy not installed")?;
            // -db: stay in the foreground, no daemon.
            (
                haproxy.to_path_buf(),
                vec!["-f".into(), conf.display().to_string(), "-db".into()],
            )
        }
        other => return Err(format!("no configuration for proxy {other}")),
    };
    let mut proc = Proc::spawn(name, env.cpus.proxy, &program, &args, &log)?;
    proc.wait_listening(listen, Duration::from_secs(10))?;
    expect_sizes(listen, &env.knobs.sizes).map_err(|e| format!("{e}; log: {}", proc.log_tail()))?;
    Ok(Running {
        name,
        proc,
        listen,
        dead: None,
    })
}

/// `program -t -c conf` says `configuration ok`: an older ringway must accept the config as
/// it is, or the comparison would not be of the same job.
fn config_accepted(env: &Env, program: &Path, conf: &Path) -> Result<(), String> {
    let mut cmd = std::process::Command::new(program);
    cmd.arg("-t").arg("-c").arg(conf);
    let log = env.dir.join("config-test.log");
    let (status, out) = procs::run_capture(cmd, &log, Duration::from_secs(10))?;
    if !status.success() {
        return Err(format!(
            "{} -t rejects the config: {}",
            program.display(),
            procs::tail(&out, 600)
        ));
    }
    Ok(())
}

/// One short unrecorded wrk run per proxy: connections pooled, caches and allocators warm.
fn warm_up(env: &Env, proxies: &mut [Running]) -> Result<(), String> {
    for p in proxies.iter_mut() {
        if let Err(e) = wrk_run(env, p, env.knobs.sizes[0], env.knobs.warmup_secs, 0) {
            check_interrupted()?;
            eprintln!("e2e: warm-up of {} failed: {e}", p.name);
        }
    }
    Ok(())
}

/// Every size × round × proxy, proxies interleaved within a round, order rotated per round.
fn run_pass(env: &Env, proxies: &mut [Running]) -> Result<Vec<Cell>, String> {
    let n = proxies.len();
    let mut cells = Vec::new();
    for &size in &env.knobs.sizes {
        let first = cells.len();
        cells.extend(proxies.iter().map(|p| Cell {
            proxy: p.name,
            size,
            samples: Vec::new(),
            failure: None,
        }));
        for round in 0..env.knobs.rounds {
            for k in 0..n {
                let i = (k + round) % n;
                let p = &mut proxies[i];
                if let Some(why) = &p.dead {
                    cells[first + i].failure = Some(why.clone());
                    continue;
                }
                match wrk_run(env, p, size, env.knobs.secs, round) {
                    Ok(sample) => cells[first + i].samples.push(sample),
                    Err(e) => {
                        check_interrupted()?;
                        eprintln!("e2e: {} {}: {e}", p.name, report::size_name(size));
                        p.dead = p.proc.exited();
                        cells[first + i].failure = Some(e);
                    }
                }
            }
        }
    }
    Ok(cells)
}

/// One wrk run against `p` in `round` and the proxy's CPU time over it.
fn wrk_run(
    env: &Env,
    p: &mut Running,
    size: u64,
    secs: u64,
    round: usize,
) -> Result<Sample, String> {
    let url = format!("http://{}/size/{size}", p.listen);
    let args: Vec<String> = vec![
        "-t1".into(),
        format!("-c{}", env.knobs.connections),
        format!("-d{secs}s"),
        "--latency".into(),
        url,
    ];
    let cmd = procs::pinned(env.cpus.load, &env.wrk, &args);
    let before = measure::tree_cpu(p.proc.pid());
    let out = procs::run_bounded(
        cmd,
        &env.dir.join("wrk.log"),
        Duration::from_secs(secs + 30),
    )?;
    let after = measure::tree_cpu(p.proc.pid());
    if let Some(why) = p.proc.exited() {
        return Err(why);
    }
    let wrk = measure::parse_wrk(&out)?;
    if wrk.requests == 0 {
        return Err("wrk completed no request".into());
    }
    let per_req = |seconds: f64| seconds.max(0.0) * 1e6 / wrk.requests as f64;
    let kernel_us_per_req = per_req(after.kernel - before.kernel);
    let cpu_us_per_req = per_req(after.user - before.user) + kernel_us_per_req;
    Ok(Sample {
        round,
        wrk,
        cpu_us_per_req,
        kernel_us_per_req,
    })
}

/// The second pass with each proxy in a cgroup capped at half a core: the section's text
/// and its cells, or a note saying why it could not run and no cells.
fn half_core_pass(
    env: &Env,
    proxies: &mut [Running],
    names: &[&str],
) -> Result<(String, Option<Vec<Cell>>), String> {
    let unavailable = |why: String| {
        eprintln!("e2e: half-core pass unavailable: {why}");
        Ok((format!("### Half a core\n\nUnavailable: {why}\n"), None))
    };
    let hierarchy = match cgroup::Hierarchy::detect() {
        Ok(h) => h,
        Err(e) => return unavailable(e),
    };
    let mut limits = Vec::new();
    for p in proxies.iter().filter(|p| p.dead.is_none()) {
        let name = format!("ringway-bench-{}-{}", std::process::id(), p.name);
        let pids = measure::process_tree(p.proc.pid());
        match cgroup::HalfCore::new(&hierarchy, &name, &pids) {
            Ok(limit) => limits.push(limit),
            Err(e) => return unavailable(e),
        }
    }
    let cells = run_pass(env, proxies)?;
    drop(limits);
    let title = format!("Half a core ({})", hierarchy.describe());
    let section = report::table(&title, &cells, &env.knobs.sizes, names);
    Ok((section, Some(cells)))
}

/// What was measured, with what, under which conditions.
fn header(env: &Env, notes: &[String]) -> String {
    let k = &env.knobs;
    let mut text = String::from("## ringway end-to-end benchmark\n\n");
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    text.push_str(&format!(
        "- machine: {} CPUs, Linux {}\n- wrk -t1 -c{} -d{}s --latency, {} rounds (median shown), \
         order rotated each round, after a {} s warm-up run per proxy\n- proxies on CPU {}, wrk \
         and backends on CPU {}; one worker each, round robin over two backends\n",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        kernel.trim(),
        k.connections,
        k.secs,
        k.rounds,
        k.warmup_secs,
        env.cpus.proxy,
        env.cpus.load,
    ));
    for proxy in &k.proxies {
        text.push_str(&format!("- {}\n", configs::described(proxy, 2)));
    }
    text.push_str(&format!("- {}\n", configs::backend_described(&k.backend)));
    for (tool, arg) in [("nginx", "-v"), ("haproxy", "-v"), ("wrk", "-v")] {
        if let Some(path) = env.tool(tool) {
            text.push_str(&format!("- {}\n", version(env, path, arg)));
        }
    }
    if let (Some(old), true) = (&k.baseline, k.proxies.contains(&BASELINE)) {
        text.push_str(&format!(
            "- {BASELINE}: `{}` ({}), with ringway's config; ringway: this build ({})\n",
            old.display(),
            version(env, old, "--version"),
            version(env, Path::new(ringway_bin()), "--version"),
        ));
    }
    for note in notes {
        text.push_str(&format!("- {note}\n"));
    }
    text.push_str(
        "- ratio columns: this proxy's figure divided by the best peer's (the better of tuned \
         nginx and HAProxy at that size: lowest CPU µs/req, highest req/s, lowest p99), and its \
         CPU µs/req divided by nginx's and by HAProxy's\n\n",
    );
    text
}

fn version(env: &Env, program: &Path, arg: &str) -> String {
    let mut cmd = std::process::Command::new(program);
    cmd.arg(arg);
    let log = env.dir.join("version.log");
    match procs::run_capture(cmd, &log, Duration::from_secs(10)) {
        Ok((_, out)) => out.lines().next().unwrap_or("").trim().to_string(),
        Err(e) => e,
    }
}
