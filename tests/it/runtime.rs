//! The runtime as the issue names it: one named worker thread per core, pinned, on the
//! configured driver; the process-wide connection cap; `max_conns` per server.

use std::time::Duration;

use crate::support::*;

/// (thread name, CPUs it may run on) for every thread of `pid`.
fn threads(pid: u32) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("task dir") {
        let dir = task.expect("task").path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        let cpus = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .unwrap_or("")
            .trim()
            .to_string();
        out.push((name.trim().to_string(), cpus));
    }
    out
}

fn workers_are_named_threads_pinned_to_their_own_cores(driver: &str) {
    let b = Backend::named("a");
    let p = Proxy::start_runtime(driver, "workers = 2\npin_workers = true", &single(b.addr()));
    assert_eq!(get(p.addr, "/").status, 200);
    let mut workers: Vec<(String, String)> = threads(p.pid())
        .into_iter()
        .filter(|(name, _)| name.starts_with("ringway-w"))
        .collect();
    workers.sort();
    let names: Vec<&str> = workers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["ringway-w0", "ringway-w1"], "{workers:?}");
    let allowed = std::thread::available_parallelism().map_or(1, |n| n.get());
    if allowed >= 2 {
        for (name, cpus) in &workers {
            assert!(
                !cpus.contains(',') && !cpus.contains('-'),
                "{name} may run on {cpus}: not pinned to one core"
            );
        }
        assert_ne!(
            workers[0].1, workers[1].1,
            "both workers on one core: {workers:?}"
        );
    }
    // The driver asked for is the driver that runs. Log lines reach stderr through the log
    // thread, a moment after the workers listen.
    assert!(
        wait_until(Duration::from_secs(5), || p
            .stderr()
            .contains(&format!("on {driver}"))),
        "stderr does not name the {driver} driver:\n{}",
        p.stderr()
    );
}
both_drivers!(workers_are_named_threads_pinned_to_their_own_cores);

fn unpinned_workers_may_run_anywhere(driver: &str) {
    let b = Backend::named("a");
    let p = Proxy::start_runtime(
        driver,
        "workers = 2\npin_workers = false",
        &single(b.addr()),
    );
    assert_eq!(get(p.addr, "/").status, 200);
    let allowed = std::thread::available_parallelism().map_or(1, |n| n.get());
    for (name, cpus) in threads(p.pid()) {
        if name.starts_with("ringway-w") && allowed >= 2 {
            assert!(
                cpus.contains(',') || cpus.contains('-'),
                "{name} pinned to {cpus}"
            );
        }
    }
}
both_drivers!(unpinned_workers_may_run_anywhere);

fn connections_beyond_max_connections_are_closed_at_once(driver: &str) {
    let b = Backend::named("a");
    let p = Proxy::start_runtime(
        driver,
        "workers = 1\nmax_connections = 1",
        &single(b.addr()),
    );
    // The harness's own readiness probe may hold the one slot for a moment.
    let mut first = None;
    assert!(wait_until(Duration::from_secs(2), || {
        let mut c = Client::connect(p.addr);
        let ok = c.try_send("GET / HTTP/1.1\r\nHost: t\r\n\r\n").is_ok()
            && c.try_read_response().is_ok_and(|r| r.status == 200);
        first = ok.then_some(c);
        ok
    }));
    let mut first = first.expect("a first connection");
    let mut second = Client::connect(p.addr);
    assert!(
        second.closed_within(Duration::from_secs(2)),
        "a connection over max_connections stayed open"
    );
    // The first one is still served, and once it is gone a new one is accepted.
    assert_eq!(
        first.request("GET / HTTP/1.1\r\nHost: t\r\n\r\n").status,
        200
    );
    drop(first);
    assert!(wait_until(Duration::from_secs(2), || {
        let mut c = Client::connect(p.addr);
        c.try_send("GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .is_ok()
            && c.try_read_response().is_ok_and(|r| r.status == 200)
    }));
}
both_drivers!(connections_beyond_max_connections_are_closed_at_once);

fn server_at_max_conns_is_skipped_and_a_full_group_gets_503(driver: &str) {
    let slow = |name: &'static str| {
        move |req: &Request, c: &mut Conn| {
            if req.path() == "/slow" {
                c.sleep_ms(800);
            }
            c.respond(200, &[("X-Backend", name)], name.as_bytes());
        }
    };
    let (a, b) = (Backend::start(slow("a")), Backend::start(slow("b")));
    let servers = [
        server(a.addr(), "max_conns = 1"),
        server(b.addr(), "max_conns = 1"),
    ];
    let p = Proxy::start(driver, &config("", "balance = \"round_robin\"", &servers));
    let addr = p.addr;
    let first = std::thread::spawn(move || get(addr, "/slow").text());
    assert!(wait_until(Duration::from_secs(2), || a.request_count()
        + b.request_count()
        == 1));
    // One server is busy at its cap: every quick request goes to the other one.
    let free = if a.request_count() == 1 { "b" } else { "a" };
    for _ in 0..3 {
        assert_eq!(get(p.addr, "/quick").text(), free);
    }
    let second = std::thread::spawn(move || get(addr, "/slow").text());
    assert!(wait_until(Duration::from_secs(2), || a.request_count()
        + b.request_count()
        == 5));
    // Both at their cap and no queue configured: 503 at once, the backends never see it.
    let r = get(p.addr, "/quick");
    assert_eq!(r.status, 503, "{}", r.head_text());
    assert_eq!(a.request_count() + b.request_count(), 5);
    first.join().expect("first slow request");
    second.join().expect("second slow request");
    assert_eq!(get(p.addr, "/quick").status, 200);
}
both_drivers!(server_at_max_conns_is_skipped_and_a_full_group_gets_503);

fn an_open_websocket_counts_as_active_for_least_conn(driver: &str) {
    let handler = |name: &'static str| {
        move |req: &Request, c: &mut Conn| {
            if req.header("upgrade").is_some() {
                c.respond(
                    101,
                    &[("Upgrade", "websocket"), ("Connection", "Upgrade")],
                    b"",
                );
                // Hold the upgraded connection open until the client goes away.
                while !c.read_some(Duration::from_secs(3)).is_empty() {}
                c.close();
                return;
            }
            c.respond(200, &[("X-Backend", name)], name.as_bytes());
        }
    };
    let (a, b) = (Backend::start(handler("a")), Backend::start(handler("b")));
    let servers = [server(a.addr(), ""), server(b.addr(), "")];
    let p = Proxy::start(driver, &config("", "balance = \"least_conn\"", &servers));
    let mut ws = Client::connect(p.addr);
    ws.send("GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
    assert_eq!(ws.read_head().status, 101);
    let busy = if a.request_count() == 1 { "a" } else { "b" };
    // While the WebSocket lives, its server is busy: every plain request goes elsewhere.
    for _ in 0..4 {
        let who = get(p.addr, "/").text();
        assert_ne!(who, busy, "{busy} holds an open WebSocket");
    }
    drop(ws);
    // Once it is closed, both servers take requests again.
    assert!(wait_until(Duration::from_secs(3), || {
        (0..4).any(|_| get(p.addr, "/").text() == busy)
    }));
}
both_drivers!(an_open_websocket_counts_as_active_for_least_conn);
