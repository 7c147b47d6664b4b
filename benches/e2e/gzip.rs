//! gzip in the proxy (`cargo bench --bench e2e -- gzip`): the CPU each proxy spends per
//! request when it compresses a 16 KiB JSON answer (`benches/data/api-16k.json`) for a
//! client that sends `Accept-Encoding: gzip`, ringway's `gzip = { level = L, min_length =
//! "1k", types = ["application/json"] }` against nginx's `gzip on; gzip_comp_level L;
//! gzip_min_length 1k; gzip_types application/json; gzip_vary on;`, at levels 1 and 6, in
//! interleaved rounds of the same run.
//!
//! Placement is the default run's: proxies on CPU 0, wrk and the static nginx backends
//! (gzip off, so the answer reaches the proxy uncompressed) on CPU 1. Before measuring, each
//! proxy must answer gzip-encoded and its body must decode to the file.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use crate::configs::{self, NGINX_PROXY_LOCATION};
use crate::measure::{self, parse_wrk};
use crate::procs::{self, Proc, check_interrupted};
use crate::{Knobs, TempDir};

const LEVELS: [u32; 2] = [1, 6];
const BODY: &[u8] = include_bytes!("../data/api-16k.json");
const PATH: &str = "/api/api-16k.json";

/// One proxy at one level, started.
struct Subject {
    proxy: &'static str,
    level: u32,
    proc: Proc,
    listen: SocketAddr,
    /// CPU µs per request of each round.
    cpu: Vec<f64>,
    rps: Vec<f64>,
    failure: Option<String>,
}

pub fn run() -> Result<(), String> {
    let mut knobs = Knobs::from_env()?;
    knobs.proxies.retain(|p| matches!(*p, "ringway" | "nginx"));
    knobs.sizes = vec![BODY.len() as u64];
    knobs.half_core = false;
    let scratch = TempDir::create()?;
    let env = crate::prepare(knobs, &scratch.0)?;
    let k = &env.knobs;
    eprintln!(
        "gzip: measuring for at most ~{} s ({} s × {} rounds × {} levels × {} proxies)",
        (k.secs + 1) * (k.rounds * LEVELS.len() * k.proxies.len()) as u64,
        k.secs,
        k.rounds,
        LEVELS.len(),
        k.proxies.len()
    );
    let ports = procs::free_ports(2 + LEVELS.len() * k.proxies.len())?;
    let local = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    let backends = [local(ports[0]), local(ports[1])];
    let _backend = start_backend(&env, &backends)?;
    let mut subjects = Vec::new();
    let mut next_port = ports[2..].iter();
    for &level in &LEVELS {
        for &proxy in &k.proxies {
            let listen = local(*next_port.next().ok_or("ports")?);
            subjects.push(start(&env, proxy, level, listen, &backends)?);
        }
    }
    for s in subjects.iter_mut() {
        // Warm-up: pools filled, allocators and caches warm.
        let _ = wrk(&env, s, env.knobs.warmup_secs);
    }
    let load_before = measure::load_average();
    let n = subjects.len();
    for round in 0..k.rounds {
        for i in 0..n {
            let s = &mut subjects[(i + round) % n];
            if s.failure.is_some() {
                continue;
            }
            match wrk(&env, s, k.secs) {
                Ok((cpu, rps)) => {
                    s.cpu.push(cpu);
                    s.rps.push(rps);
                }
                Err(e) => {
                    check_interrupted()?;
                    eprintln!("gzip: {} level {}: {e}", s.proxy, s.level);
                    s.failure = Some(e);
                }
            }
        }
    }
    let load = measure::load_note(load_before, measure::load_average());
    let text = report(&env, &subjects, &load);
    println!("\n{text}");
    let path = crate::report::write_results("gzip", &text)?;
    eprintln!("gzip: written to {}", path.display());
    Ok(())
}

/// The static backends: nginx (gzip off) serving the JSON file as application/json.
fn start_backend(env: &crate::Env, backends: &[SocketAddr; 2]) -> Result<Proc, String> {
    let api = env.dir.join("www").join("api");
    std::fs::create_dir_all(&api).map_err(|e| e.to_string())?;
    std::fs::write(api.join("api-16k.json"), BODY).map_err(|e| e.to_string())?;
    let www = env.dir.join("www");
    let servers: String = backends
        .iter()
        .map(|b| {
            format!(
                "    server {{\n        listen {b};\n        location /api/ {{ root {}; \
                 default_type application/json; }}\n    }}\n",
                www.display()
            )
        })
        .collect();
    let body = format!(
        "    sendfile on;\n    tcp_nopush on;\n    open_file_cache max=64 inactive=1h;\n    \
         keepalive_requests {};\n{servers}",
        configs::KEEPALIVE_REQUESTS
    );
    let conf = configs::nginx_main(&env.dir, "backend", "warn", "", &body);
    let conf = crate::write_file(&env.dir, "backend.conf", &conf)?;
    let nginx = env
        .tool("nginx")
        .ok_or("nginx is needed for the backends")?;
    let args = crate::nginx_args(&env.dir, &conf, "backend");
    let log = env.dir.join("backend.log");
    let mut proc = Proc::spawn("nginx backend", env.cpus.load, nginx, &args, &log)?;
    for b in backends {
        proc.wait_listening(*b, Duration::from_secs(10))?;
    }
    Ok(proc)
}

/// ringway's config: the benchmark's usual one with the listener's `gzip`.
pub fn ringway_config(
    listen: SocketAddr,
    backends: &[SocketAddr],
    dir: &Path,
    level: u32,
) -> String {
    let tag = format!("ringway-gzip{level}");
    let base = configs::ringway(listen, backends, dir, &tag);
    let gzip = format!(
        "upstream = \"backends\"\ngzip = {{ level = {level}, min_length = \"1k\", types = \
         [\"application/json\"] }}\n"
    );
    base.replacen("upstream = \"backends\"\n", &gzip, 1)
}

/// nginx's: the tuned proxy of the benchmark with `gzip on` at the same level and types.
pub fn nginx_config(listen: SocketAddr, backends: &[SocketAddr], dir: &Path, level: u32) -> String {
    let servers: String = backends
        .iter()
        .map(|b| format!("        server {b};\n"))
        .collect();
    let body = format!(
        "    gzip on;\n    gzip_comp_level {level};\n    gzip_min_length 1k;\n    \
         gzip_types application/json;\n    gzip_vary on;\n    upstream backends {{\n{servers}        \
         keepalive {};\n        keepalive_requests {};\n    }}\n    server {{\n        listen \
         {listen};\n        keepalive_requests {};\n{NGINX_PROXY_LOCATION}    }}\n",
        configs::UPSTREAM_KEEPALIVE,
        configs::KEEPALIVE_REQUESTS,
        configs::KEEPALIVE_REQUESTS,
    );
    configs::nginx_main(dir, &format!("nginx-gzip{level}"), "warn", "", &body)
}

fn start(
    env: &crate::Env,
    proxy: &'static str,
    level: u32,
    listen: SocketAddr,
    backends: &[SocketAddr],
) -> Result<Subject, String> {
    let name = format!("{proxy}-gzip{level}");
    let log = env.dir.join(format!("{name}.log"));
    let (program, args) = if proxy == "ringway" {
        let conf = ringway_config(listen, backends, &env.dir, level);
        let conf = crate::write_file(&env.dir, &format!("{name}.toml"), &conf)?;
        let program = std::path::PathBuf::from(crate::ringway_bin());
        (program, vec!["-c".to_string(), conf.display().to_string()])
    } else {
        let conf = nginx_config(listen, backends, &env.dir, level);
        let conf = crate::write_file(&env.dir, &format!("{name}.conf"), &conf)?;
        let nginx = env.tool("nginx").ok_or("nginx not installed")?;
        (
            nginx.to_path_buf(),
            crate::nginx_args(&env.dir, &conf, &name),
        )
    };
    let mut proc = Proc::spawn(&name, env.cpus.proxy, &program, &args, &log)?;
    proc.wait_listening(listen, Duration::from_secs(10))?;
    expect_gzip(listen).map_err(|e| format!("{name}: {e}; log: {}", proc.log_tail()))?;
    Ok(Subject {
        proxy,
        level,
        proc,
        listen,
        cpu: Vec::new(),
        rps: Vec::new(),
        failure: None,
    })
}

/// The proxy answers the file gzip-encoded, and it decodes to the file.
fn expect_gzip(addr: SocketAddr) -> Result<(), String> {
    let timeout = Duration::from_secs(5);
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let req = format!(
        "GET {PATH} HTTP/1.1\r\nHost: bench\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no response head")?;
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    if !head.contains("content-encoding: gzip") || !head.contains("transfer-encoding: chunked") {
        return Err(format!("not a chunked gzip answer: {head}"));
    }
    let z = dechunk(&raw[end + 4..])?;
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&z[..])
        .read_to_end(&mut plain)
        .map_err(|e| format!("gzip body: {e}"))?;
    if plain != BODY {
        return Err(format!("decoded body differs ({} bytes)", plain.len()));
    }
    Ok(())
}

fn dechunk(mut wire: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = wire
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("cut chunk line")?;
        let size_text = String::from_utf8_lossy(&wire[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        wire = &wire[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if wire.len() < size + 2 {
            return Err("cut chunk".into());
        }
        out.extend_from_slice(&wire[..size]);
        wire = &wire[size + 2..];
    }
}

/// One wrk run with `Accept-Encoding: gzip`: the proxy's CPU µs per request and req/s.
fn wrk(env: &crate::Env, s: &mut Subject, secs: u64) -> Result<(f64, f64), String> {
    let args: Vec<String> = vec![
        "-t1".into(),
        format!("-c{}", env.knobs.connections),
        format!("-d{secs}s"),
        "--latency".into(),
        "-H".into(),
        "Accept-Encoding: gzip".into(),
        format!("http://{}{PATH}", s.listen),
    ];
    let cmd = procs::pinned(env.cpus.load, &env.wrk, &args);
    let before = measure::tree_cpu_seconds(s.proc.pid());
    let out = procs::run_bounded(
        cmd,
        &env.dir.join("wrk.log"),
        Duration::from_secs(secs + 30),
    )?;
    let after = measure::tree_cpu_seconds(s.proc.pid());
    if let Some(why) = s.proc.exited() {
        return Err(why);
    }
    let w = parse_wrk(&out)?;
    if w.requests == 0 || w.errors > 0 {
        return Err(format!("{} requests, {} errors", w.requests, w.errors));
    }
    Ok(((after - before).max(0.0) * 1e6 / w.requests as f64, w.rps))
}

fn report(env: &crate::Env, subjects: &[Subject], load: &str) -> String {
    let k = &env.knobs;
    let mut t = String::from("## gzip: CPU per request compressing a 16 KiB JSON answer\n\n");
    t.push_str(&format!(
        "- wrk -t1 -c{} -d{}s -H 'Accept-Encoding: gzip', {} rounds (median), order rotated \
         each round; proxies on CPU {}, wrk and two static nginx backends on CPU {}\n- \
         ringway: `gzip = {{ level = L, min_length = \"1k\", types = [\"application/json\"] }}`; \
         nginx (tuned as in the main run): `gzip on; gzip_comp_level L; gzip_min_length 1k; \
         gzip_types application/json; gzip_vary on;`\n- {load}\n\n",
        k.connections, k.secs, k.rounds, env.cpus.proxy, env.cpus.load
    ));
    t.push_str("| level | ringway CPU µs/req | nginx CPU µs/req | ringway / nginx | ringway req/s | nginx req/s |\n");
    t.push_str("|---|---|---|---|---|---|\n");
    for level in LEVELS {
        let find = |proxy: &str| {
            subjects
                .iter()
                .find(|s| s.proxy == proxy && s.level == level)
        };
        let cell = |s: Option<&Subject>, f: fn(&Subject) -> &Vec<f64>| match s {
            Some(s) if s.failure.is_none() && !f(s).is_empty() => Some(measure::median(f(s))),
            _ => None,
        };
        let (r, n) = (find("ringway"), find("nginx"));
        let (rc, nc) = (cell(r, |s| &s.cpu), cell(n, |s| &s.cpu));
        let (rr, nr) = (cell(r, |s| &s.rps), cell(n, |s| &s.rps));
        let show = |v: Option<f64>, d: usize| v.map_or("-".to_string(), |v| format!("{v:.d$}"));
        let ratio = match (rc, nc) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
            _ => "-".into(),
        };
        t.push_str(&format!(
            "| {level} | {} | {} | {ratio} | {} | {} |\n",
            show(rc, 1),
            show(nc, 1),
            show(rr, 0),
            show(nr, 0)
        ));
    }
    for s in subjects.iter().filter(|s| s.failure.is_some()) {
        t.push_str(&format!(
            "\n- {} level {} failed: {}\n",
            s.proxy,
            s.level,
            s.failure.as_deref().unwrap_or("")
        ));
    }
    t
}
