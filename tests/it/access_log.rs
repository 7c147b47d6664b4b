//! The access log and the error log, end to end: one line per request (ringway's own errors
//! included) with what each request really got, the `combined` and `upstream` shapes, stdout,
//! logrotate's move-then-SIGUSR1, the error log in a file, the 1-second flush, and complete
//! lines after SIGTERM.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::proxy::TempDir;
use crate::support::*;

/// A proxy whose `[log]` table also gets the keys in `log` (the harness opens `[log]` right
/// before the body it is given).
fn start(driver: &str, log: &str, body: &str) -> Proxy {
    Proxy::start(driver, &format!("{log}\n{body}"))
}

/// `access_log = PATH` and `access_format = FORMAT`, as `[log]` keys.
fn access(path: &Path, format: &str) -> String {
    format!(
        "access_log = \"{}\"\naccess_format = \"{}\"",
        path.display(),
        format.replace('"', "\\\"")
    )
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Waits (bounded) until `path` holds at least `n` lines; returns them.
fn wait_lines(path: &Path, n: usize, within: Duration) -> Vec<String> {
    wait_until(within, || read_lines(path).len() >= n);
    read_lines(path)
}

/// A backend that answers `/missing...` with 404 and everything else with 200, naming
/// itself in `X-Backend`.
fn backend(name: &'static str) -> Backend {
    Backend::start(move |req, c| {
        let status = if req.path().starts_with("/missing") {
            404
        } else {
            200
        };
        c.respond(status, &[("X-Backend", name)], name.as_bytes());
    })
}

/// Checks `[21/Nov/2026:08:41:44 +0000]` at the start of `rest` and returns what follows.
fn after_stamp(rest: &str) -> &str {
    let stamp = rest
        .get(1..27)
        .unwrap_or_else(|| panic!("no stamp in {rest:?}"));
    let shape: String = stamp
        .chars()
        .map(|c| if c.is_ascii_digit() { '9' } else { c })
        .collect();
    assert!(rest.starts_with('[') && &rest[27..28] == "]", "{rest:?}");
    assert_eq!(&shape[..3], "99/", "{stamp}");
    assert_eq!(&shape[6..], "/9999:99:99:99 +9999", "{stamp}");
    &rest[28..]
}

fn every_request_gets_one_line_with_what_it_got(driver: &str) {
    let (a, b) = (backend("a"), backend("b"));
    let dir = TempDir::new();
    let log = dir.path.join("access.log");
    let servers = [server(a.addr(), ""), server(b.addr(), "")];
    let p = start(
        driver,
        &access(&log, "$status $upstream_addr $request_uri"),
        &config("", "", &servers),
    );
    let mut keep = Client::connect(p.addr);
    let mut want = Vec::new();
    for i in 0..16 {
        let uri = if i % 3 == 0 {
            format!("/missing/{i}")
        } else {
            format!("/ok/{i}?q={i}")
        };
        let resp = if i % 2 == 0 {
            get(p.addr, &uri)
        } else {
            keep.request(format!("GET {uri} HTTP/1.1\r\nHost: t\r\n\r\n"))
        };
        let addr = match resp.header("X-Backend") {
            Some("a") => a.addr(),
            Some("b") => b.addr(),
            other => panic!("no X-Backend: {other:?}"),
        };
        want.push(format!("{} {addr} {uri}", resp.status));
    }
    assert!(want.iter().any(|l| l.starts_with("404 ")));
    let lines = wait_lines(&log, want.len(), Duration::from_secs(5));
    assert_eq!(lines, want);
}
both_drivers!(every_request_gets_one_line_with_what_it_got);

fn combined_and_upstream_formats_have_nginx_shapes(driver: &str) {
    let a = Backend::named("a");
    for format in ["combined", "upstream"] {
        let dir = TempDir::new();
        let log = dir.path.join("access.log");
        let p = start(driver, &access(&log, format), &single(a.addr()));
        let resp = Client::connect(p.addr).request(
            "GET /x?y=1 HTTP/1.1\r\nHost: t\r\nUser-Agent: it/1.0\r\n\
             Referer: http://ref/\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(resp.status, 200);
        let lines = wait_lines(&log, 1, Duration::from_secs(5));
        assert_eq!(lines.len(), 1, "{lines:?}");
        let rest = lines[0]
            .strip_prefix("127.0.0.1 - - ")
            .unwrap_or_else(|| panic!("{format}: {:?}", lines[0]));
        let tail = match format {
            "upstream" => format!(" to: {}", a.addr()),
            _ => String::new(),
        };
        assert_eq!(
            after_stamp(rest),
            format!(" \"GET /x?y=1 HTTP/1.1\" 200 1 \"http://ref/\" \"it/1.0\"{tail}"),
            "{format}"
        );
    }
}
both_drivers!(combined_and_upstream_formats_have_nginx_shapes);

fn ringways_own_errors_get_lines(driver: &str) {
    let dead = dead_addr();
    let dir = TempDir::new();
    let log = dir.path.join("access.log");
    let format = "$status \"$request\" $upstream_addr $upstream_status $body_bytes_sent";
    let p = start(
        driver,
        &access(&log, format),
        &config("client_max_body_size = \"1k\"", "", &[server(dead, "")]),
    );
    let bad = Client::connect(p.addr).request("GARBAGE\r\n\r\n");
    assert_eq!(bad.status, 400);
    let big = Client::connect(p.addr)
        .request("POST /big HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n");
    assert_eq!(big.status, 413);
    let gone = get(p.addr, "/dead");
    assert_eq!(gone.status, 502);
    let lines = wait_lines(&log, 3, Duration::from_secs(5));
    assert_eq!(
        lines,
        [
            format!("400 \"GARBAGE\" - - {}", bad.body.len()),
            format!("413 \"POST /big HTTP/1.1\" - - {}", big.body.len()),
            format!("502 \"GET /dead HTTP/1.1\" {dead} 502 {}", gone.body.len()),
        ]
    );
}
both_drivers!(ringways_own_errors_get_lines);

fn access_log_to_stdout(driver: &str) {
    let a = Backend::named("a");
    let p = start(
        driver,
        "access_log = \"stdout\"\naccess_format = \"$request_uri $status\"",
        &single(a.addr()),
    );
    assert_eq!(get(p.addr, "/to-stdout").status, 200);
    assert!(
        wait_until(Duration::from_secs(5), || p.stdout() == "/to-stdout 200\n"),
        "stdout: {:?}",
        p.stdout()
    );
}
both_drivers!(access_log_to_stdout);

fn reopen_after_a_move_writes_a_new_file(driver: &str) {
    let a = Backend::named("a");
    let dir = TempDir::new();
    let (log, moved) = (dir.path.join("access.log"), dir.path.join("access.log.1"));
    let p = start(driver, &access(&log, "$request_uri"), &single(a.addr()));
    assert_eq!(get(p.addr, "/before").status, 200);
    assert_eq!(wait_lines(&log, 1, Duration::from_secs(5)), ["/before"]);
    std::fs::rename(&log, &moved).expect("mv access.log access.log.1");
    p.signal(libc::SIGUSR1);
    assert!(
        wait_until(Duration::from_secs(5), || log.exists()),
        "no new access.log after SIGUSR1"
    );
    assert_eq!(get(p.addr, "/after").status, 200);
    assert_eq!(wait_lines(&log, 1, Duration::from_secs(5)), ["/after"]);
    assert_eq!(read_lines(&moved), ["/before"]);
}
both_drivers!(reopen_after_a_move_writes_a_new_file);

fn error_log_file_gets_the_failed_attempt(driver: &str) {
    let dead = dead_addr();
    let dir = TempDir::new();
    let errors: PathBuf = dir.path.join("error.log");
    let p = start(
        driver,
        &format!("error_log = \"{}\"", errors.display()),
        &single(dead),
    );
    assert_eq!(get(p.addr, "/").status, 502);
    let want = "warn: 127.0.0.1:";
    let said = format!("attempt on {dead} failed");
    assert!(
        wait_until(Duration::from_secs(5), || {
            std::fs::read_to_string(&errors).is_ok_and(|t| t.contains(&said))
        }),
        "error.log: {:?}",
        std::fs::read_to_string(&errors)
    );
    let text = std::fs::read_to_string(&errors).unwrap_or_default();
    let line = text.lines().find(|l| l.contains(&said)).unwrap_or_default();
    assert!(line.contains(want), "{line}");
    assert!(!p.stderr().contains(&said), "went to stderr too");
}
both_drivers!(error_log_file_gets_the_failed_attempt);

fn a_line_is_written_within_a_second_without_more_traffic(driver: &str) {
    let a = Backend::named("a");
    let dir = TempDir::new();
    let log = dir.path.join("access.log");
    let p = start(driver, &access(&log, "$status"), &single(a.addr()));
    let sent = Instant::now();
    assert_eq!(get(p.addr, "/").status, 200);
    assert!(
        wait_until(Duration::from_secs(3), || read_lines(&log).len() == 1),
        "no line"
    );
    // Lines go out on the worker's 1 s tick; the margin is for a loaded CI machine (the
    // failure this guards against is a line that waits for more traffic: never).
    let took = sent.elapsed();
    assert!(took < Duration::from_millis(2500), "line after {took:?}");
}
both_drivers!(a_line_is_written_within_a_second_without_more_traffic);

/// Every line of the requests served is in the file once the process has gone away by
/// `sig`: stop now, a graceful stop, or an upgrade (the old process's lines).
fn lines_are_complete_after(driver: &str, sig: i32) {
    let a = Backend::named("a");
    let dir = TempDir::new();
    let log = dir.path.join("access.log");
    let mut p = start(
        driver,
        &access(&log, "$request_uri $status"),
        &single(a.addr()),
    );
    let mut c = Client::connect(p.addr);
    for i in 0..40 {
        let resp = c.request(format!("GET /r/{i} HTTP/1.1\r\nHost: t\r\n\r\n"));
        assert_eq!(resp.status, 200);
    }
    drop(c);
    p.signal(sig);
    let status = p.wait_exit(Duration::from_secs(5)).expect("still running");
    assert_eq!(status.code(), Some(0), "signal {sig}");
    let want: Vec<String> = (0..40).map(|i| format!("/r/{i} 200")).collect();
    assert_eq!(read_lines(&log), want, "signal {sig}");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.ends_with('\n'));
}

fn lines_are_complete_after_sigterm(driver: &str) {
    lines_are_complete_after(driver, libc::SIGTERM);
}
both_drivers!(lines_are_complete_after_sigterm);

fn lines_are_complete_after_a_graceful_stop(driver: &str) {
    lines_are_complete_after(driver, libc::SIGQUIT);
}
both_drivers!(lines_are_complete_after_a_graceful_stop);

fn lines_are_complete_after_an_upgrade(driver: &str) {
    lines_are_complete_after(driver, libc::SIGUSR2);
}
both_drivers!(lines_are_complete_after_an_upgrade);

fn model_and_upstream_times_render(driver: &str) {
    let slow = Backend::start(|_, c| {
        c.sleep_ms(60);
        c.ok("done");
    });
    let dir = TempDir::new();
    let log = dir.path.join("access.log");
    let format = "$request_model $upstream_connect_time $upstream_first_byte_time \
                  $upstream_first_token_time $upstream_response_time $request_time";
    let p = start(driver, &access(&log, format), &single(slow.addr()));
    let body = r#"{"stream":false,"model":"llama-3-8b","messages":[]}"#;
    let resp = Client::connect(p.addr).request(format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    assert_eq!(resp.status, 200);
    assert_eq!(get(p.addr, "/no-body-model").status, 200);
    let lines = wait_lines(&log, 2, Duration::from_secs(5));
    let fields: Vec<&str> = lines[0].split(' ').collect();
    assert_eq!(fields[0], "llama-3-8b", "{lines:?}");
    let secs: Vec<f64> = fields[1..]
        .iter()
        .map(|f| {
            assert!(
                f.len() >= 5 && f.as_bytes()[f.len() - 4] == b'.',
                "{f} in {lines:?}"
            );
            f.parse().unwrap_or_else(|_| panic!("{f} in {lines:?}"))
        })
        .collect();
    let [connect, first_byte, first_token, response, request] = secs[..] else {
        panic!("{lines:?}")
    };
    assert!(connect < 1.0 && first_byte >= 0.06, "{lines:?}");
    assert!(
        first_token >= first_byte && response >= first_token,
        "{lines:?}"
    );
    assert!(request >= response, "{lines:?}");
    assert!(lines[1].starts_with("- "), "{lines:?}");
}
both_drivers!(model_and_upstream_times_render);
