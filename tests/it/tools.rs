//! The proxy as users meet it: ab (with and without -k) and curl (streaming with -N, HTTP/1.0,
//! a large POST with `Expect: 100-continue`) in front of the demo backends.
//! CI installs ab and curl and sets `RINGWAY_REQUIRE_TOOLS=1`, so there a missing tool is a
//! failure; elsewhere (a fresh machine without them) these tests say so and pass.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use crate::support::proxy::run_command;
use crate::support::*;

const RUN: Duration = Duration::from_secs(30);

fn have(tool: &str) -> bool {
    let found = Command::new(tool).arg("-V").output().is_ok();
    if !found {
        assert!(
            std::env::var_os("RINGWAY_REQUIRE_TOOLS").is_none(),
            "{tool} is required (RINGWAY_REQUIRE_TOOLS is set) but not installed"
        );
        eprintln!("{tool} is not installed; skipping (CI installs it)");
    }
    found
}

/// Two demo backends and a proxy (round robin) in front of them.
fn demo_proxy(driver: &str) -> (Proxy, Vec<SocketAddr>) {
    let addrs: Vec<SocketAddr> = (0..2)
        .map(|_| SocketAddr::from(([127, 0, 0, 1], free_port())))
        .collect();
    ringway::demo::spawn_backends(addrs.clone()).expect("demo backends");
    let servers: Vec<String> = addrs.iter().map(|a| server(*a, "")).collect();
    let toml = config(
        "client_max_body_size = \"16m\"",
        "balance = \"round_robin\"",
        &servers,
    );
    (Proxy::start(driver, &toml), addrs)
}

/// The number after `label` in ab's report.
fn ab_field(report: &str, label: &str) -> Option<u64> {
    let line = report.lines().find(|l| l.starts_with(label))?;
    line[label.len()..].split_whitespace().next()?.parse().ok()
}

fn ab(args: &[&str]) -> String {
    let out = run_command(Command::new("ab").args(args), RUN);
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "ab {args:?}: {}\n{report}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    report
}

fn ab_completes_every_request_with_and_without_keep_alive(driver: &str) {
    if !have("ab") {
        return;
    }
    let (p, _) = demo_proxy(driver);
    let url = format!("http://{}/", p.addr);
    let report = ab(&["-q", "-n", "400", "-c", "8", &url]);
    assert_eq!(
        ab_field(&report, "Complete requests:"),
        Some(400),
        "{report}"
    );
    assert_eq!(ab_field(&report, "Failed requests:"), Some(0), "{report}");
    assert_eq!(ab_field(&report, "Non-2xx responses:"), None, "{report}");
    let report = ab(&["-q", "-k", "-n", "400", "-c", "8", &url]);
    assert_eq!(
        ab_field(&report, "Complete requests:"),
        Some(400),
        "{report}"
    );
    assert_eq!(ab_field(&report, "Failed requests:"), Some(0), "{report}");
    assert_eq!(
        ab_field(&report, "Keep-Alive requests:"),
        Some(400),
        "ab -k fell back to new connections:\n{report}"
    );
}
both_drivers!(ab_completes_every_request_with_and_without_keep_alive);

fn curl(args: &[&str]) -> (String, String) {
    let out = run_command(
        Command::new("curl")
            .args(["-sS", "--max-time", "10"])
            .args(args),
        RUN,
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "curl {args:?}: {}\n{stdout}{stderr}",
        out.status
    );
    (stdout, stderr)
}

fn curl_streams_sse_and_speaks_http10(driver: &str) {
    if !have("curl") {
        return;
    }
    let (p, addrs) = demo_proxy(driver);
    let (stream, _) = curl(&[
        "-N",
        "-d",
        "{\"stream\":true}",
        &format!("http://{}/v1/chat/completions", p.addr),
    ]);
    assert_eq!(stream.matches("data: ").count(), 10, "{stream}");
    assert!(stream.ends_with("data: [DONE]\n\n"), "{stream}");
    let (head, _) = curl(&["--http1.0", "-i", &format!("http://{}/chat", p.addr)]);
    assert!(head.starts_with("HTTP/1."), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding"),
        "{head}"
    );
    let ports: Vec<String> = addrs.iter().map(|a| a.port().to_string()).collect();
    assert!(
        ports
            .iter()
            .any(|port| head.contains(&format!("\"backend\":{port}"))),
        "{head}"
    );
}
both_drivers!(curl_streams_sse_and_speaks_http10);

fn curl_posts_a_large_body_with_expect_100_continue(driver: &str) {
    if !have("curl") {
        return;
    }
    let (p, _) = demo_proxy(driver);
    let dir = crate::support::proxy::TempDir::new();
    let body = dir.path.join("body.bin");
    std::fs::write(&body, pattern(3 << 20, 9)).expect("write body");
    let data = format!("@{}", body.display());
    // curl adds `Expect: 100-continue` to a body this large and waits for the 100.
    let (out, err) = curl(&[
        "-v",
        "--data-binary",
        &data,
        &format!("http://{}/chat", p.addr),
    ]);
    assert!(err.contains("Expect: 100-continue"), "{err}");
    assert!(
        out.contains(&format!("\"request_bytes\":{}", 3 << 20)),
        "{out}"
    );
}
both_drivers!(curl_posts_a_large_body_with_expect_100_continue);
