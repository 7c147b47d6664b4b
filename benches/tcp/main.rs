//! TCP-mode benchmark: ringway `mode = "tcp"` (each copier: buffer, ready, splice) against
//! HAProxy `mode tcp` and nginx `stream`, each relaying to the same static nginx backend on
//! 127.0.0.1, driven by wrk in interleaved rounds.
//!
//! `cargo bench --bench tcp` runs it; without `--bench` (as under `cargo test --benches`)
//! it does nothing. Three loads, each proxy pinned to CPU 0 with one worker/thread, wrk and
//! the backend on CPU 1:
//! - `bulk`: keep-alive GETs of a 4 MiB file (MB/s relayed, CPU per MB);
//! - `short`: `Connection: close` GETs of a short answer (connections/s, CPU per
//!   connection);
//! - `keepalive`: keep-alive GETs of a short answer, HTTP relayed at L4 (CPU per request).
//!
//! Knobs: RINGWAY_BENCH_SECS (default 5), RINGWAY_BENCH_ROUNDS (default 3),
//! RINGWAY_BENCH_PROXIES (comma list of ringway, ringway-ready, ringway-splice, haproxy,
//! nginx), RINGWAY_BENCH_LOADS (comma list of bulk, short, keepalive).

#[allow(dead_code)]
#[path = "../e2e/configs.rs"]
mod configs;
#[allow(dead_code)]
#[path = "../e2e/measure.rs"]
mod measure;
#[allow(dead_code)]
#[path = "../e2e/procs.rs"]
mod procs;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use procs::Proc;

const PROXIES: [&str; 5] = [
    "ringway",
    "ringway-ready",
    "ringway-splice",
    "haproxy",
    "nginx",
];
/// The bulk file: large enough that relaying, not request handling, is what is measured.
const BULK: u64 = 4 << 20;
const PROXY_CPU: usize = 0;
const LOAD_CPU: usize = 1;

/// One load: a wrk command line (past the URL's host) and what a request is worth.
struct Load {
    name: &'static str,
    path: String,
    connections: u32,
    /// `Connection: close` on every request: each one is a new connection.
    close: bool,
}

fn loads() -> Vec<Load> {
    vec![
        Load {
            name: "bulk",
            path: format!("/size/{BULK}"),
            connections: 8,
            close: false,
        },
        Load {
            name: "short",
            path: "/".into(),
            connections: 32,
            close: true,
        },
        Load {
            name: "keepalive",
            path: "/".into(),
            connections: 64,
            close: false,
        },
    ]
}

fn main() -> ExitCode {
    if !std::env::args().any(|a| a == "--bench") {
        return ExitCode::SUCCESS;
    }
    procs::install_signal_handlers();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tcp bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn run() -> Result<(), String> {
    let secs = knob("RINGWAY_BENCH_SECS", 5);
    let rounds = knob("RINGWAY_BENCH_ROUNDS", 3) as usize;
    let wanted = std::env::var("RINGWAY_BENCH_PROXIES").unwrap_or_default();
    let proxies: Vec<&str> = PROXIES
        .into_iter()
        .filter(|p| wanted.is_empty() || wanted.split(',').any(|w| w.trim() == *p))
        .collect();
    let dir = std::env::temp_dir().join(format!("ringway-tcp-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let tools = ["nginx", "haproxy", "wrk"];
    let mut found = Vec::new();
    for tool in tools {
        found.push(procs::find_tool(tool).ok_or(format!("{tool} is not installed"))?);
    }
    let [nginx, haproxy, wrk] = [&found[0], &found[1], &found[2]];
    let ports = procs::free_ports(1 + proxies.len())?;
    let addr = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    let backend = addr(ports[0]);
    let _backend = start_backend(&dir, nginx, backend)?;
    let mut running = Vec::new();
    for (i, name) in proxies.iter().enumerate() {
        let listen = addr(ports[1 + i]);
        let mut p = start_proxy(name, &dir, listen, backend, nginx, haproxy)?;
        p.wait_listening(listen, Duration::from_secs(10))?;
        running.push((*name, listen, p));
    }
    println!(
        "tcp bench: {rounds} round(s) of {secs}s per load and proxy, proxy on CPU {PROXY_CPU}, \
         wrk and backend on CPU {LOAD_CPU}"
    );
    let loads_wanted = std::env::var("RINGWAY_BENCH_LOADS").unwrap_or_default();
    let wanted_load =
        |l: &Load| loads_wanted.is_empty() || loads_wanted.split(',').any(|w| w.trim() == l.name);
    for load in loads().into_iter().filter(wanted_load) {
        let mut results: Vec<(&str, Vec<(f64, f64)>)> =
            proxies.iter().map(|p| (*p, Vec::new())).collect();
        for round in 0..rounds {
            for k in 0..running.len() {
                let i = (k + round) % running.len();
                let (name, listen, proc) = &running[i];
                procs::check_interrupted()?;
                let before = measure::tree_cpu_seconds(proc.pid());
                let report = wrk_run(wrk, &dir, *listen, &load, secs)?;
                let cpu = measure::tree_cpu_seconds(proc.pid()) - before;
                if report.errors > 0 {
                    return Err(format!("{name} {}: {} errors", load.name, report.errors));
                }
                let per = cpu / report.requests.max(1) as f64;
                results[i].1.push((report.rps, per));
                eprintln!(
                    "  {} {name}: {:.0} req/s, {:.1} us CPU/req",
                    load.name,
                    report.rps,
                    per * 1e6
                );
            }
        }
        print_table(&load, &results);
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn print_table(load: &Load, results: &[(&str, Vec<(f64, f64)>)]) {
    let medians: Vec<(&str, f64, f64)> = results
        .iter()
        .map(|(name, runs)| {
            let rps: Vec<f64> = runs.iter().map(|r| r.0).collect();
            let cpu: Vec<f64> = runs.iter().map(|r| r.1).collect();
            (*name, measure::median(&rps), measure::median(&cpu))
        })
        .collect();
    let best_cpu = medians
        .iter()
        .filter(|m| !m.0.starts_with("ringway"))
        .map(|m| m.2)
        .fold(f64::INFINITY, f64::min);
    println!("\n{} ({}):", load.name, describe(load));
    let unit = if load.name == "bulk" { "MB/s" } else { "req/s" };
    println!("| proxy | {unit} | CPU µs per request | CPU vs best peer |");
    println!("|---|---:|---:|---:|");
    for (name, rps, cpu) in medians {
        let rate = if load.name == "bulk" {
            rps * BULK as f64 / 1e6
        } else {
            rps
        };
        println!(
            "| {name} | {rate:.0} | {:.1} | {:.2} |",
            cpu * 1e6,
            cpu / best_cpu
        );
    }
}

fn describe(load: &Load) -> String {
    format!(
        "wrk -t1 -c{} {}GET {}",
        load.connections,
        if load.close {
            "-H 'Connection: close' "
        } else {
            ""
        },
        load.path
    )
}

fn wrk_run(
    wrk: &Path,
    dir: &Path,
    listen: SocketAddr,
    load: &Load,
    secs: u64,
) -> Result<measure::WrkReport, String> {
    let mut args = vec![
        "-t1".to_string(),
        format!("-c{}", load.connections),
        format!("-d{secs}s"),
        "--latency".to_string(),
    ];
    if load.close {
        args.push("-H".into());
        args.push("Connection: close".into());
    }
    args.push(format!("http://{listen}{}", load.path));
    let cmd = procs::pinned(LOAD_CPU, wrk, &args);
    let log = dir.join("wrk.log");
    let out = procs::run_bounded(cmd, &log, Duration::from_secs(secs + 30))?;
    measure::parse_wrk(&out)
}

/// The static nginx backend serving `/` and `/size/N`.
fn start_backend(dir: &Path, nginx: &Path, addr: SocketAddr) -> Result<Proc, String> {
    let www = dir.join("www").join("size");
    std::fs::create_dir_all(&www).map_err(|e| e.to_string())?;
    std::fs::write(www.join(BULK.to_string()), vec![b'x'; BULK as usize])
        .map_err(|e| e.to_string())?;
    let conf = write(dir, "backend.conf", &configs::nginx_backend(&[addr], dir))?;
    let args = nginx_args(dir, &conf, "backend");
    let mut p = Proc::spawn("backend", LOAD_CPU, nginx, &args, &dir.join("backend.log"))?;
    p.wait_listening(addr, Duration::from_secs(10))?;
    Ok(p)
}

fn start_proxy(
    name: &str,
    dir: &Path,
    listen: SocketAddr,
    backend: SocketAddr,
    nginx: &Path,
    haproxy: &Path,
) -> Result<Proc, String> {
    let log = dir.join(format!("{name}.log"));
    match name {
        "ringway" | "ringway-ready" | "ringway-splice" => {
            let conf = write(dir, &format!("{name}.toml"), &ringway_tcp(listen, backend))?;
            let program = PathBuf::from(env!("CARGO_BIN_EXE_ringway"));
            let mut cmd = procs::pinned(PROXY_CPU, &program, &["-c".into(), path_arg(&conf)]);
            let copier = name.strip_prefix("ringway-").unwrap_or("buffer");
            cmd.env("RINGWAY_TCP_COPIER", copier);
            spawn_logged(name, cmd, &log)
        }
        "haproxy" => {
            let conf = write(
                dir,
                "haproxy.cfg",
                &configs::haproxy_tcp(listen, &[backend]),
            )?;
            Proc::spawn(
                name,
                PROXY_CPU,
                haproxy,
                &["-f".into(), path_arg(&conf)],
                &log,
            )
        }
        "nginx" => {
            // Debian builds the stream module as a dynamic module (libnginx-mod-stream).
            let module = Path::new("/usr/lib/nginx/modules/ngx_stream_module.so");
            let load = if module.is_file() {
                format!("load_module {};\n", module.display())
            } else {
                String::new()
            };
            let stream = format!(
                "{load}stream {{\n    upstream b {{ server {backend}; }}\n    \
                 server {{ listen {listen}; proxy_pass b; }}\n}}\n"
            );
            let conf = configs::nginx_main(dir, "stream", "warn", &stream, "");
            let conf = write(dir, "nginx-stream.conf", &conf)?;
            Proc::spawn(
                name,
                PROXY_CPU,
                nginx,
                &nginx_args(dir, &conf, "stream"),
                &log,
            )
        }
        other => Err(format!("unknown proxy {other}")),
    }
}

/// ringway with one worker, a tcp listener, no access log.
fn ringway_tcp(listen: SocketAddr, backend: SocketAddr) -> String {
    format!(
        "[runtime]\nworkers = 1\npin_workers = false\n\n[log]\nlevel = \"warn\"\n\
         access_log = \"off\"\n\n[[listener]]\nname = \"tcp\"\nbind = \"{listen}\"\n\
         mode = \"tcp\"\nupstream = \"b\"\n\n[upstreams.b]\nservers = [{{ addr = \"{backend}\" }}]\n"
    )
}

fn spawn_logged(name: &str, mut cmd: Command, log: &Path) -> Result<Proc, String> {
    let out = std::fs::File::create(log).map_err(|e| e.to_string())?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    cmd.stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err);
    Proc::spawn_command(name, cmd, log)
}

fn write(dir: &Path, name: &str, text: &str) -> Result<PathBuf, String> {
    let path = dir.join(name);
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

/// `-p DIR -e DIR/TAG-error.log -c CONF`: nothing outside the run's directory.
fn nginx_args(dir: &Path, conf: &Path, tag: &str) -> Vec<String> {
    let error_log = dir.join(format!("{tag}-error.log"));
    vec![
        "-p".into(),
        path_arg(dir),
        "-e".into(),
        path_arg(&error_log),
        "-c".into(),
        path_arg(conf),
    ]
}

fn path_arg(p: &Path) -> String {
    p.display().to_string()
}
