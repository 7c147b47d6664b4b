//! `ringway import-nginx` / `import-haproxy` as a user runs them: every config of the corpus
//! in tests/import/ converts, and its output passes `ringway -t`; broken input fails with
//! file:line; and real nginx and ringway, each with the same configuration (nginx's, and
//! ringway's conversion of it), in front of the same backends, spread and retry alike.
//! CI installs nginx and sets `RINGWAY_REQUIRE_TOOLS=1`: there a missing nginx is a failure.

use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::proxy::{TempDir, binary, run_command};
use crate::support::*;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/import")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `ringway import-KIND input -o OUT` and `ringway -t -c OUT`; returns the TOML and
/// the import's stderr.
fn convert_and_check(kind: &str, input: &Path) -> (String, String) {
    let dir = TempDir::new();
    let out_path = dir.path.join("out.toml");
    let out = run_command(
        Command::new(binary())
            .arg(format!("import-{kind}"))
            .arg(input)
            .arg("-o")
            .arg(&out_path),
        Duration::from_secs(10),
    );
    let stderr = text(&out.stderr);
    assert!(
        out.status.success(),
        "{}: {}\n{stderr}",
        input.display(),
        out.status
    );
    let toml = fs::read_to_string(&out_path).expect("the converted file");
    let check = Proxy::spawn_raw(&["-t", "-c", &out_path.to_string_lossy()]);
    assert!(
        check.status.success(),
        "{} converts to a config ringway rejects:\n{}{}\n--- converted:\n{toml}\n--- import said:\n{stderr}",
        input.display(),
        text(&check.stdout),
        text(&check.stderr)
    );
    (toml, stderr)
}

/// Every key line (`key = value` or `[table]`) has a `# file:line` comment right above it.
fn assert_every_key_has_an_origin(toml: &str, file_hint: &str) {
    let lines: Vec<&str> = toml.lines().collect();
    let mut keys = 0;
    let mut in_servers = false;
    for (i, line) in lines.iter().enumerate() {
        if line.starts_with("servers = [") {
            in_servers = true;
            continue;
        }
        if in_servers {
            in_servers = *line != "]";
            if line.trim_start().starts_with('{') {
                assert!(
                    lines[i - 1]
                        .trim_start()
                        .starts_with(&format!("# {file_hint}")),
                    "{line}\n{toml}"
                );
            }
            continue;
        }
        let is_key = line.contains(" = ") && !line.starts_with('#');
        let is_sub = line.starts_with('[') && !line.starts_with("[[") && line.contains('.');
        if is_key || is_sub {
            keys += 1;
            let above = lines[i - 1];
            assert!(
                above.starts_with(&format!("# {file_hint}")),
                "no origin above {line:?}:\n{toml}"
            );
            let line_no = above.split(':').nth(1).and_then(|n| n.split(' ').next());
            assert!(line_no.is_some_and(|n| n.parse::<u32>().is_ok()), "{above}");
        }
    }
    assert!(keys > 5, "too few keys:\n{toml}");
}

#[test]
fn every_nginx_config_of_the_corpus_converts_to_a_valid_ringway_config() {
    for name in [
        "llm/nginx.conf",
        "docker/nginx.conf",
        "stream/nginx.conf",
        "docker/conf.d/llm.conf",
    ] {
        let input = corpus().join(name);
        let (toml, _) = convert_and_check("nginx", &input);
        assert_every_key_has_an_origin(&toml, &corpus().display().to_string());
    }
}

#[test]
fn every_haproxy_config_of_the_corpus_converts_to_a_valid_ringway_config() {
    for name in ["haproxy/llm.cfg", "haproxy/tcp.cfg"] {
        let input = corpus().join(name);
        let (toml, _) = convert_and_check("haproxy", &input);
        assert_every_key_has_an_origin(&toml, &input.display().to_string());
    }
}

#[test]
fn the_llm_layout_carries_its_upstreams_timeouts_and_logs_over() {
    let input = corpus().join("llm/nginx.conf");
    let (toml, stderr) = convert_and_check("nginx", &input);
    let doc: toml::Table = toml::from_str(&toml).unwrap();
    let vllm = &doc["upstreams"]["vllm"];
    assert_eq!(vllm["balance"].as_str(), Some("least_conn"));
    assert_eq!(
        vllm["read_timeout"].as_str(),
        Some("15m"),
        "proxy.conf's 900"
    );
    assert_eq!(
        vllm["next_upstream"].as_array().unwrap().len(),
        6,
        "error timeout http_500 http_502 http_503 http_504"
    );
    assert_eq!(vllm["servers"][0]["weight"].as_integer(), Some(3));
    assert_eq!(vllm["servers"][0]["max_fails"].as_integer(), Some(3));
    assert_eq!(vllm["servers"][2]["backup"].as_bool(), Some(true));
    assert_eq!(
        doc["upstreams"]["embed"]["balance"].as_str(),
        Some("ip_hash")
    );
    assert_eq!(
        doc["upstreams"]["cache_aware"]["hash_key"].as_str(),
        Some("$request_uri")
    );
    let listener = &doc["listener"][0];
    assert_eq!(listener["bind"].as_str(), Some("0.0.0.0:8080"));
    assert_eq!(listener["upstream"].as_str(), Some("vllm"));
    assert_eq!(listener["client_max_body_size"].as_str(), Some("48m"));
    assert_eq!(listener["gzip"]["level"].as_integer(), Some(6));
    assert_eq!(
        listener["route"][1]["path_prefix"].as_str(),
        Some("/v1/embeddings")
    );
    assert!(
        listener.get("request_headers").is_none(),
        "only headers ringway sets itself:\n{toml}"
    );
    let format = doc["log"]["access_format"].as_str().unwrap();
    assert!(format.contains("to: $upstream_addr"), "{format}");
    // Nothing dropped silently: each with its file and line.
    let conf = input.display().to_string();
    let proxy = corpus().join("llm/proxy.conf").display().to_string();
    for expected in [
        format!("{conf}:2: warning: user"),
        format!("{conf}:14: warning: sendfile"),
        format!("{proxy}:9: warning: proxy_buffers"),
        format!("{proxy}:10: warning: proxy_redirect"),
        format!("{proxy}:7: warning: proxy_set_header X-Request-Start: ringway has no $msec"),
        format!("{conf}:21: warning: log_format upstreamlog: ringway has no $remote_user"),
        format!("{conf}:83: warning: location ~ \\.php$: regex locations are not supported"),
        format!("{proxy}:3: note: proxy_set_header Host"),
    ] {
        assert!(stderr.contains(&expected), "no {expected:?} in:\n{stderr}");
    }
}

#[test]
fn a_docker_layout_reads_conf_d_beside_the_file_and_routes_virtual_hosts() {
    let (toml, stderr) = convert_and_check("nginx", &corpus().join("docker/nginx.conf"));
    assert!(
        stderr.contains("/etc/nginx/conf.d/*.conf is not on this machine"),
        "{stderr}"
    );
    let doc: toml::Table = toml::from_str(&toml).unwrap();
    let listener = &doc["listener"][0];
    // `location ~* ^(/)` is the listener's default.
    assert_eq!(listener["upstream"].as_str(), Some("chat"));
    assert_eq!(
        listener["route"][0]["host"].as_str(),
        Some("admin.example.com")
    );
    assert_eq!(
        listener["route"][0]["upstream"].as_str(),
        Some("127.0.0.1:9900")
    );
    assert_eq!(
        listener["route"][1]["path_prefix"].as_str(),
        Some("/rerank/")
    );
    assert_eq!(
        doc["upstreams"]["rerank"]["balance"].as_str(),
        Some("random_two")
    );
    assert_eq!(doc["upstreams"]["chat"]["keepalive"].as_integer(), Some(32));
}

#[test]
fn a_stream_block_becomes_tcp_listeners() {
    let (toml, stderr) = convert_and_check("nginx", &corpus().join("stream/nginx.conf"));
    let doc: toml::Table = toml::from_str(&toml).unwrap();
    let tcp: Vec<&toml::Value> = doc["listener"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l.get("mode").and_then(|m| m.as_str()) == Some("tcp"))
        .collect();
    assert_eq!(tcp.len(), 2, "{toml}");
    assert_eq!(tcp[0]["upstream"].as_str(), Some("pg"));
    assert_eq!(tcp[1]["proxy_protocol"].as_str(), Some("v1"));
    assert_eq!(
        doc["upstreams"]["pg"]["hash_key"].as_str(),
        Some("$remote_addr")
    );
    assert_eq!(doc["upstreams"]["pg"]["read_timeout"].as_str(), Some("1h"));
    // The http upstream of the same name is kept apart.
    assert!(doc["upstreams"].get("tokens-http").is_some(), "{toml}");
    assert!(stderr.contains("udp: ringway relays TCP only"), "{stderr}");
}

#[test]
fn haproxy_routes_health_checks_and_retries_carry_over() {
    let input = corpus().join("haproxy/llm.cfg");
    let (toml, stderr) = convert_and_check("haproxy", &input);
    let doc: toml::Table = toml::from_str(&toml).unwrap();
    let vllm = &doc["upstreams"]["vllm"];
    assert_eq!(vllm["health_check"]["path"].as_str(), Some("/health"));
    assert_eq!(vllm["health_check"]["interval"].as_str(), Some("3s"));
    assert_eq!(
        vllm["next_upstream_tries"].as_integer(),
        Some(3),
        "retries 2 + the first try"
    );
    assert_eq!(vllm["servers"][0]["max_conns"].as_integer(), Some(64));
    assert_eq!(
        doc["upstreams"]["embed"]["servers"][1]["down"].as_bool(),
        Some(true)
    );
    let listener = &doc["listener"][0];
    assert_eq!(
        listener["route"][0]["path_prefix"].as_str(),
        Some("/v1/embeddings")
    );
    assert_eq!(
        listener["route"][1]["host"].as_str(),
        Some("api.example.com")
    );
    assert!(
        stderr.contains(&format!("{}:23: warning: bind ... ssl", input.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{}:29: warning: use_backend admin",
            input.display()
        )),
        "{stderr}"
    );
}

fn import_error(kind: &str, name: &str, body: &str) -> (Output, String) {
    let dir = TempDir::new();
    let file = dir.write(name, body);
    let out = run_command(
        Command::new(binary())
            .arg(format!("import-{kind}"))
            .arg(&file),
        Duration::from_secs(10),
    );
    let expected_file = file.display().to_string();
    (out, expected_file)
}

#[test]
fn broken_input_fails_with_file_and_line() {
    let cases = [
        (
            "nginx",
            "braces.conf",
            "http {\n  server {\n    listen 80;\n}\n",
            ":1: this { is never closed",
        ),
        ("nginx", "close.conf", "events {}\n}\n", ":2: unexpected }"),
        (
            "nginx",
            "quote.conf",
            "http {\n  log_format x '$a;\n}\n",
            ":2: unterminated",
        ),
        (
            "nginx",
            "include.conf",
            "events {}\nhttp {\n  include proxy.conf;\n}\n",
            ":3: include proxy.conf: no such file",
        ),
        (
            "haproxy",
            "quote.cfg",
            "global\n  log \"x\n",
            ":2: unterminated",
        ),
    ];
    for (kind, name, body, expected) in cases {
        let (out, file) = import_error(kind, name, body);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert!(
            stderr.contains(&format!("{file}{expected}")),
            "{name}: no {expected:?} in:\n{stderr}"
        );
        assert!(out.stdout.is_empty(), "{name}: wrote TOML anyway");
    }
}

/// Whether nginx is here; with `RINGWAY_REQUIRE_TOOLS` set (CI) its absence fails.
fn have_nginx() -> bool {
    let found = Command::new("nginx").arg("-v").output().is_ok();
    if !found {
        assert!(
            std::env::var_os("RINGWAY_REQUIRE_TOOLS").is_none(),
            "nginx is required (RINGWAY_REQUIRE_TOOLS is set) but not installed"
        );
        eprintln!("nginx is not installed; skipping (CI installs it)");
    }
    found
}

/// A child process (nginx or ringway) killed on drop. nginx runs without its master
/// process (`master_process off`) so that killing the child leaves no worker behind.
struct Running {
    child: Child,
    stderr: PathBuf,
}

impl Running {
    fn start(cmd: &mut Command, dir: &Path, addr: SocketAddr) -> Running {
        let stderr = dir.join(format!("stderr-{}.log", addr.port()));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("spawn");
        let mut running = Running { child, stderr };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            let exited = running.child.try_wait().ok().flatten();
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "{cmd:?} did not listen on {addr} ({exited:?}):\n{}",
                fs::read_to_string(&running.stderr).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        running
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Which backend answered each of `n` GETs of `path` (its body), or the status when not 200.
fn answers(addr: SocketAddr, path: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            let r = get(addr, path);
            if r.status == 200 {
                r.text()
            } else {
                format!("status {}", r.status)
            }
        })
        .collect()
}

fn count(list: &[String], name: &str) -> usize {
    list.iter().filter(|a| *a == name).count()
}

fn nginx_and_ringway_spread_and_retry_alike(driver: &str) {
    if !have_nginx() {
        return;
    }
    let heavy = Backend::named("heavy");
    let light = Backend::named("light");
    let good = Backend::named("good");
    let bad = Backend::start(|_, c| {
        c.respond(502, &[("Content-Type", "text/plain")], b"bad");
    });
    let dead = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let nginx_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let ringway_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let dir = TempDir::new();
    let conf = format!(
        "events {{}}\n\
         http {{\n\
         \x20   access_log off;\n\
         \x20   upstream weighted {{\n\
         \x20       server {} weight=3;\n\
         \x20       server {} weight=1;\n\
         \x20   }}\n\
         \x20   upstream failing {{\n\
         \x20       server {dead} max_fails=1 fail_timeout=30s;\n\
         \x20       server {} max_fails=1 fail_timeout=30s;\n\
         \x20       server {};\n\
         \x20   }}\n\
         \x20   server {{\n\
         \x20       listen {nginx_addr};\n\
         \x20       proxy_http_version 1.1;\n\
         \x20       proxy_set_header Connection \"\";\n\
         \x20       location / {{\n\
         \x20           proxy_pass http://weighted;\n\
         \x20       }}\n\
         \x20       location /retry/ {{\n\
         \x20           proxy_pass http://failing;\n\
         \x20           proxy_next_upstream error timeout http_502;\n\
         \x20       }}\n\
         \x20   }}\n\
         }}\n",
        heavy.addr(),
        light.addr(),
        bad.addr(),
        good.addr()
    );
    let nginx_conf = dir.write("nginx.conf", &conf);
    let (toml, _) = convert_and_check("nginx", &nginx_conf);
    // Same config, ringway's own port, the driver under test, one worker like nginx's default.
    let toml = toml.replace(&format!("\"{nginx_addr}\""), &format!("\"{ringway_addr}\""));
    let runtime = format!("[runtime]\ndriver = \"{driver}\"\nworkers = 1\npin_workers = false\n");
    let ringway_conf = dir.write("ringway.toml", &format!("{runtime}{toml}"));
    let pid = dir.path.join("nginx.pid");
    let _nginx = Running::start(
        Command::new("nginx")
            .arg("-p")
            .arg(&dir.path)
            .arg("-c")
            .arg(&nginx_conf)
            .args(["-e", "stderr", "-g"])
            .arg(format!(
                "daemon off; master_process off; pid {};",
                pid.display()
            )),
        &dir.path,
        nginx_addr,
    );
    let _ringway = Running::start(
        Command::new(binary()).arg("-c").arg(&ringway_conf),
        &dir.path,
        ringway_addr,
    );
    for (name, addr) in [("nginx", nginx_addr), ("ringway", ringway_addr)] {
        let spread = answers(addr, "/v1/chat", 80);
        assert_eq!(
            (count(&spread, "heavy"), count(&spread, "light")),
            (60, 20),
            "{name}: weights 3:1 over 80 requests: {spread:?}"
        );
    }
    let before = bad.request_count();
    let nginx_retry = answers(nginx_addr, "/retry/x", 20);
    let nginx_bad = bad.request_count() - before;
    let ringway_retry = answers(ringway_addr, "/retry/x", 20);
    let ringway_bad = bad.request_count() - before - nginx_bad;
    assert_eq!(count(&nginx_retry, "good"), 20, "nginx: {nginx_retry:?}");
    assert_eq!(
        count(&ringway_retry, "good"),
        20,
        "ringway: {ringway_retry:?}"
    );
    // The 502 server is tried, fails once, and rests for fail_timeout in both.
    assert_eq!(
        nginx_bad, ringway_bad,
        "requests the 502 server saw: nginx {nginx_bad}, ringway {ringway_bad}"
    );
    assert!(nginx_bad >= 1);
}
both_drivers!(nginx_and_ringway_spread_and_retry_alike);

/// A TCP server that answers each connection's first line with `NAME:line` and closes;
/// counts its connections.
fn line_server(name: &'static str) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{BufRead, BufReader, Write};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let listener = std::net::TcpListener::bind(addr).expect("bind line server");
    let seen = std::sync::Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut line = String::new();
            let mut reader = BufReader::new(&stream);
            // Counted only when a line came: the readiness probes of `Running::start` are
            // relayed too, as connections that send nothing, and may arrive late.
            if reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                count.fetch_add(1, Ordering::SeqCst);
                let _ = (&stream).write_all(format!("{name}:{line}").as_bytes());
            }
        }
    });
    (addr, seen)
}

/// One connection: send `hello\n`, read the answer to the end.
fn relay_once(addr: SocketAddr) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(3)) else {
        return "refused".into();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.write_all(b"hello\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn nginx_and_ringway_relay_a_stream_block_alike(driver: &str) {
    if !have_nginx() {
        return;
    }
    let (a, a_seen) = line_server("a");
    let (b, _) = line_server("b");
    let dead = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let nginx_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let ringway_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let dir = TempDir::new();
    // Debian builds the stream module as a dynamic module (libnginx-mod-stream).
    let module = Path::new("/usr/lib/nginx/modules/ngx_stream_module.so");
    let load = if module.exists() {
        format!("load_module {};\n", module.display())
    } else {
        String::new()
    };
    let conf = format!(
        "{load}events {{}}\n\
         stream {{\n\
         \x20   upstream lines {{\n\
         \x20       server {dead};\n\
         \x20       server {a} weight=3;\n\
         \x20       server {b};\n\
         \x20   }}\n\
         \x20   server {{\n\
         \x20       listen {nginx_addr};\n\
         \x20       proxy_pass lines;\n\
         \x20       proxy_connect_timeout 2s;\n\
         \x20   }}\n\
         }}\n"
    );
    let nginx_conf = dir.write("nginx.conf", &conf);
    let (toml, _) = convert_and_check("nginx", &nginx_conf);
    let toml = toml.replace(&format!("\"{nginx_addr}\""), &format!("\"{ringway_addr}\""));
    let runtime = format!("[runtime]\ndriver = \"{driver}\"\nworkers = 1\npin_workers = false\n");
    let ringway_conf = dir.write("ringway.toml", &format!("{runtime}{toml}"));
    let pid = dir.path.join("nginx.pid");
    let _nginx = Running::start(
        Command::new("nginx")
            .arg("-p")
            .arg(&dir.path)
            .arg("-c")
            .arg(&nginx_conf)
            .args(["-e", "stderr", "-g"])
            .arg(format!(
                "daemon off; master_process off; pid {};",
                pid.display()
            )),
        &dir.path,
        nginx_addr,
    );
    let _ringway = Running::start(
        Command::new(binary()).arg("-c").arg(&ringway_conf),
        &dir.path,
        ringway_addr,
    );
    let mut splits = Vec::new();
    for (name, addr) in [("nginx", nginx_addr), ("ringway", ringway_addr)] {
        let before = a_seen.load(std::sync::atomic::Ordering::SeqCst);
        let answers: Vec<String> = (0..20).map(|_| relay_once(addr)).collect();
        let from_a = answers.iter().filter(|x| *x == "a:hello\n").count();
        let from_b = answers.iter().filter(|x| *x == "b:hello\n").count();
        // Every connection is relayed: the dead server's failed connects go to the next one.
        assert_eq!(from_a + from_b, 20, "{name}: {answers:?}");
        assert_eq!(
            a_seen.load(std::sync::atomic::Ordering::SeqCst) - before,
            from_a,
            "{name}: lines a answered"
        );
        splits.push((from_a, from_b));
    }
    assert_eq!(
        splits[0], splits[1],
        "nginx vs ringway split over a (weight 3) and b"
    );
}

mod stream_relay {
    #[test]
    fn io_uring() {
        super::nginx_and_ringway_relay_a_stream_block_alike("io_uring")
    }

    #[test]
    fn epoll() {
        super::nginx_and_ringway_relay_a_stream_block_alike("epoll")
    }
}
