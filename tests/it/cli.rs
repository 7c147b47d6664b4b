//! The command line: `-t` on good and broken files, `--version`, `--help`, and the signals
//! that stop a running proxy (SIGTERM, SIGINT, and `-s stop` through the pid file).

use std::path::Path;
use std::time::Duration;

use crate::support::proxy::TempDir;
use crate::support::*;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_accepts_every_example_config() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut examples: Vec<_> = std::fs::read_dir(&dir)
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    examples.retain(|p| p.extension().is_some_and(|e| e == "toml"));
    examples.sort();
    assert!(
        !examples.is_empty(),
        "no example configs in {}",
        dir.display()
    );
    for example in examples {
        let path = example.to_string_lossy();
        let out = Proxy::spawn_raw(&["-t", "-c", &path]);
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(out.status.success(), "{path}: {}\n{all}", out.status);
        assert!(all.contains("configuration ok"), "{path}:\n{all}");
    }
}

#[test]
fn check_reports_file_line_and_key_of_a_broken_config() {
    let dir = TempDir::new();
    let broken = "[[listener]]\nname = \"it\"\nbind = \"127.0.0.1:1\"\nupstream = \"u\"\n\
                  [upstreams.u]\nservers = [{ addr = \"127.0.0.1:2\" }]\nbogus_setting = 7\n";
    let file = dir.write("broken.toml", broken);
    let path = file.to_string_lossy();
    let out = Proxy::spawn_raw(&["-t", "-c", &path]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("{path}:7")), "no {path}:7 in:\n{err}");
    assert!(
        err.contains("bogus_setting"),
        "the key is not named:\n{err}"
    );
    assert!(!text(&out.stdout).contains("configuration ok"));
}

#[test]
fn check_reports_a_bad_value_with_its_key_path() {
    let dir = TempDir::new();
    let broken = "[[listener]]\nname = \"it\"\nbind = \"127.0.0.1:1\"\nupstream = \"u\"\n\n\
                  [upstreams.u]\nservers = [\n  { addr = \"127.0.0.1:2\" },\n  { addr = \"127.0.0.1:3\", weight = \"heavy\" },\n]\n";
    let file = dir.write("broken.toml", broken);
    let path = file.to_string_lossy();
    let out = Proxy::spawn_raw(&["-t", "-c", &path]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("{path}:9")), "no {path}:9 in:\n{err}");
    assert!(err.contains("weight"), "{err}");
}

#[test]
fn check_of_a_missing_file_fails() {
    let out = Proxy::spawn_raw(&["-t", "-c", "/nonexistent/ringway.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("/nonexistent/ringway.toml"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn version_prints_the_crate_version() {
    let out = Proxy::spawn_raw(&["--version"]);
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("ringway ") && stdout.contains(env!("CARGO_PKG_VERSION")),
        "{stdout}"
    );
}

#[test]
fn help_lists_the_main_options() {
    let out = Proxy::spawn_raw(&["--help"]);
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    for want in ["--config", "-t", "-s", "demo"] {
        assert!(stdout.contains(want), "--help lacks {want}:\n{stdout}");
    }
}

/// Starts a proxy, sends `sig`, expects exit status 0 within 2 s.
fn stops_on(driver: &str, sig: i32) {
    let b = Backend::named("a");
    let mut p = Proxy::start(driver, &single(b.addr()));
    assert_eq!(get(p.addr, "/").status, 200);
    p.signal(sig);
    let status = p.wait_exit(Duration::from_secs(2));
    let status = status.unwrap_or_else(|| panic!("still running 2 s after signal {sig}"));
    assert_eq!(status.code(), Some(0), "{status}");
}

fn sigterm_stops_the_proxy_with_status_0(driver: &str) {
    stops_on(driver, libc::SIGTERM);
}
both_drivers!(sigterm_stops_the_proxy_with_status_0);

fn sigint_stops_the_proxy_with_status_0(driver: &str) {
    stops_on(driver, libc::SIGINT);
}
both_drivers!(sigint_stops_the_proxy_with_status_0);

fn signal_stop_through_the_pid_file_stops_the_proxy(driver: &str) {
    let b = Backend::named("a");
    let mut p = Proxy::start(driver, &single(b.addr()));
    let pid_file = p.dir.path.join("ringway.pid");
    assert!(
        wait_until(Duration::from_secs(2), || pid_file.exists()),
        "no pid file"
    );
    let pid = std::fs::read_to_string(&pid_file).unwrap_or_default();
    assert_eq!(pid.trim(), p.pid().to_string());
    let config = p.config.to_string_lossy().into_owned();
    let out = Proxy::spawn_raw(&["-s", "stop", "-c", &config]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let status = p
        .wait_exit(Duration::from_secs(2))
        .expect("still running after -s stop");
    assert_eq!(status.code(), Some(0));
    assert!(
        !pid_file.exists(),
        "pid file left behind after a clean stop"
    );
}
both_drivers!(signal_stop_through_the_pid_file_stops_the_proxy);

fn sighup_and_sigusr1_keep_the_proxy_serving(driver: &str) {
    let b = Backend::named("a");
    let mut p = Proxy::start(driver, &single(b.addr()));
    let mut c = Client::connect(p.addr);
    assert_eq!(c.request("GET / HTTP/1.1\r\nHost: t\r\n\r\n").status, 200);
    for sig in [libc::SIGHUP, libc::SIGUSR1] {
        p.signal(sig);
        std::thread::sleep(Duration::from_millis(100));
        assert!(p.is_running(), "signal {sig} stopped the proxy");
        // Both the open keep-alive connection and new ones still work.
        assert_eq!(c.request("GET / HTTP/1.1\r\nHost: t\r\n\r\n").status, 200);
        assert_eq!(get(p.addr, "/").status, 200);
    }
}
both_drivers!(sighup_and_sigusr1_keep_the_proxy_serving);

/// `ringway demo` as the README's quick start runs it: the proxy on 127.0.0.1:1700 in front
/// of three backends on 1701-1703, each answer naming its backend, Ctrl-C stops everything.
/// The only test on those fixed ports (the demo's ports are part of its contract).
#[test]
fn demo_serves_on_1700_over_three_backends_and_stops_on_ctrl_c() {
    use std::process::{Command, Stdio};
    for port in 1700..=1703 {
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "port {port} is taken: the demo test needs 1700-1703 free"
        );
    }
    let out = TempDir::new();
    let stdout_path = out.path.join("demo.out");
    let mut child = Command::new(crate::support::proxy::binary())
        .arg("demo")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).expect("stdout file"))
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ringway demo");
    let addr: std::net::SocketAddr = "127.0.0.1:1700".parse().unwrap();
    let up = wait_until(Duration::from_secs(10), || {
        std::net::TcpStream::connect(addr).is_ok()
    });
    let stop = |child: &mut std::process::Child| {
        // SAFETY: signalling the child we spawned, by its pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    };
    if !up {
        let _ = child.kill();
        panic!("the demo never listened on 1700");
    }
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..9 {
        let r = get(addr, "/");
        assert_eq!(r.status, 200);
        let backend = r.header("x-backend").expect("X-Backend").to_string();
        assert!(r.text().contains(&backend), "body does not name {backend}");
        seen.insert(backend);
    }
    assert!(
        seen.len() >= 2,
        "least_conn over three backends used only {seen:?}"
    );
    let mut c = Client::connect(addr);
    let sse = c.request("GET /v1/chat/completions HTTP/1.1\r\nHost: demo\r\n\r\n");
    assert_eq!(sse.status, 200);
    assert!(sse.text().contains("data: [DONE]"), "{}", sse.text());
    let printed = std::fs::read_to_string(&stdout_path).unwrap_or_default();
    for hint in ["curl", "ab -n 1000 -c 10", "wrk"] {
        assert!(
            printed.contains(hint),
            "the demo does not show {hint:?}:\n{printed}"
        );
    }
    stop(&mut child);
    let exited = wait_until(Duration::from_secs(3), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    if !exited {
        let _ = child.kill();
        panic!("the demo did not stop on Ctrl-C");
    }
    // Backends stopped too: nothing listens on the demo ports any more. The kernel tears
    // an exited process's io_uring down asynchronously, and a pending accept keeps its
    // listener alive until then, so allow it a moment.
    for port in 1700..=1703 {
        assert!(
            wait_until(Duration::from_secs(3), || {
                std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
            }),
            "{port} still open"
        );
    }
}
