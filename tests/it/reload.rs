//! Hot reload (SIGHUP): new settings take effect on the next request, an invalid file
//! changes nothing, listeners follow the file, and nothing in flight is dropped.

use std::time::{Duration, Instant};

use crate::support::*;

const GET: &str = "GET / HTTP/1.1\r\nHost: t\r\n\r\n";

/// How many of `n` keep-alive requests each backend name answered.
fn spread(addr: std::net::SocketAddr, n: usize) -> (usize, usize) {
    let mut c = Client::connect(addr);
    let mut a = 0;
    for _ in 0..n {
        let r = c.request(GET);
        assert_eq!(r.status, 200, "{}", r.head_text());
        if r.text() == "a" {
            a += 1;
        }
    }
    (a, n - a)
}

fn weighted(a: &Backend, b: &Backend, wa: u32, wb: u32) -> String {
    config(
        "",
        "",
        &[
            server(a.addr(), &format!("weight = {wa}")),
            server(b.addr(), &format!("weight = {wb}")),
        ],
    )
}

fn weights_changed_by_reload_take_effect(driver: &str) {
    let (a, b) = (Backend::named("a"), Backend::named("b"));
    let mut p = Proxy::start(driver, &weighted(&a, &b, 3, 1));
    assert_eq!(spread(p.addr, 8), (6, 2));
    p.reload(&weighted(&a, &b, 1, 3));
    assert_eq!(spread(p.addr, 8), (2, 6));
}
both_drivers!(weights_changed_by_reload_take_effect);

fn invalid_file_keeps_the_running_configuration_and_names_line_and_key(driver: &str) {
    let (a, b) = (Backend::named("a"), Backend::named("b"));
    let mut p = Proxy::start(driver, &single(a.addr()));
    let mut c = Client::connect(p.addr);
    assert_eq!(c.request(GET).text(), "a");
    let broken = single(b.addr()).replace("[upstreams.u]", "[upstreams.u]\nbalance = \"fastest\"");
    p.rewrite(&broken);
    p.signal(libc::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(5), || p.stderr_count("keeps serving")
            >= 1),
        "no reload error logged:\n{}",
        p.stderr()
    );
    let err = p.stderr();
    assert!(
        err.contains("ringway.toml:") && err.contains("upstreams.u.balance"),
        "the error does not name file, line and key:\n{err}"
    );
    // The open connection and new ones still reach the old server.
    assert_eq!(c.request(GET).text(), "a");
    assert_eq!(get(p.addr, "/").text(), "a");
    assert_eq!(b.request_count(), 0);
    // A good file afterwards still applies.
    p.reload(&single(b.addr()));
    assert_eq!(c.request(GET).text(), "b");
}
both_drivers!(invalid_file_keeps_the_running_configuration_and_names_line_and_key);

fn removed_server_loses_its_idle_pooled_connections(driver: &str) {
    let (a, b) = (Backend::named("a"), Backend::named("b"));
    let mut p = Proxy::start(driver, &single(a.addr()));
    assert_eq!(get(p.addr, "/").text(), "a");
    assert!(
        wait_until(Duration::from_secs(2), || a.active() == 1),
        "not pooled"
    );
    p.reload(&single(b.addr()));
    assert!(
        wait_until(Duration::from_secs(2), || a.active() == 0),
        "the pooled connection to the removed server stayed open"
    );
    assert_eq!(get(p.addr, "/").text(), "b");
}
both_drivers!(removed_server_loses_its_idle_pooled_connections);

fn request_in_flight_finishes_on_the_configuration_it_started_with(driver: &str) {
    let slow = Backend::start(|_, c| {
        c.sleep_ms(500);
        c.ok("slow");
    });
    let b = Backend::named("b");
    let mut p = Proxy::start(driver, &single(slow.addr()));
    let mut c = Client::connect(p.addr);
    c.send(GET);
    assert!(slow.wait_requests(1, Duration::from_secs(2)));
    p.reload(&single(b.addr()));
    let r = c.read_response();
    assert_eq!((r.status, r.text().as_str()), (200, "slow"));
    // The next request on the same connection uses the new configuration.
    assert_eq!(c.request(GET).text(), "b");
}
both_drivers!(request_in_flight_finishes_on_the_configuration_it_started_with);

fn failure_marks_survive_a_reload(driver: &str) {
    let dead = dead_addr();
    let b = Backend::named("b");
    let servers = |wb: u32| {
        config(
            "",
            "next_upstream = [\"error\"]",
            &[
                server(dead, "max_fails = 1, fail_timeout = \"30s\""),
                server(b.addr(), &format!("weight = {wb}")),
            ],
        )
    };
    let mut p = Proxy::start(driver, &servers(1));
    for _ in 0..4 {
        assert_eq!(get(p.addr, "/").text(), "b");
    }
    let failed = format!("attempt on {dead} failed");
    assert_eq!(p.stderr_count(&failed), 1, "{}", p.stderr());
    p.reload(&servers(2));
    for _ in 0..6 {
        assert_eq!(get(p.addr, "/").text(), "b");
    }
    assert_eq!(
        p.stderr_count(&failed),
        1,
        "the reload forgot that the server is marked failed:\n{}",
        p.stderr()
    );
}
both_drivers!(failure_marks_survive_a_reload);

fn listeners_follow_the_file(driver: &str) {
    let a = Backend::start(|req, c| {
        if req.path() == "/slow" {
            c.sleep_ms(300);
        }
        c.ok("a");
    });
    let one = single(a.addr());
    let two =
        format!("{one}\n[[listener]]\nname = \"second\"\nbind = \"$BIND2\"\nupstream = \"u\"\n");
    let workers = "workers = 2\npin_workers = false";
    let mut p = Proxy::start_runtime(driver, workers, &one);
    p.reload(&two);
    let second = p.bind("$BIND2");
    // Accepted on every worker: many fresh connections all succeed.
    for _ in 0..20 {
        assert_eq!(get(second, "/").text(), "a");
    }
    let mut idle = Client::connect(second);
    assert_eq!(idle.request(GET).status, 200);
    let mut busy = Client::connect(second);
    busy.send("GET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
    std::thread::sleep(Duration::from_millis(50));
    p.reload(&one);
    assert!(
        std::net::TcpStream::connect(second).is_err(),
        "a removed listener still accepts"
    );
    assert!(
        idle.closed_within(Duration::from_secs(2)),
        "an idle keep-alive connection on a removed listener stayed open"
    );
    let r = busy.read_response();
    assert_eq!(r.status, 200);
    assert!(r.says_close(), "{}", r.head_text());
    assert_eq!(get(p.addr, "/").status, 200);
}
both_drivers!(listeners_follow_the_file);

fn sse_stream_and_websocket_opened_before_a_reload_run_to_their_end(driver: &str) {
    let b = Backend::start(|req, c| {
        if req.path() == "/ws" {
            c.respond(
                101,
                &[("Upgrade", "websocket"), ("Connection", "Upgrade")],
                b"",
            );
            loop {
                let data = c.read_some(Duration::from_secs(3));
                if data.is_empty() || !c.write(&data) {
                    break;
                }
            }
            c.close();
            return;
        }
        c.chunked_head(200, &[("Content-Type", "text/event-stream")]);
        for i in 0..8 {
            c.sleep_ms(100);
            c.chunk(format!("data: {i}\n\n").as_bytes());
        }
        c.end_chunks();
    });
    let other = Backend::named("other");
    let mut p = Proxy::start(driver, &single(b.addr()));
    let mut sse = Client::connect(p.addr);
    sse.send("GET /events HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut r = sse.read_head();
    assert_eq!(r.status, 200);
    let mut ws = Client::connect(p.addr);
    ws.send("GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
    assert_eq!(ws.read_head().status, 101);
    // The reload even removes the server both are on.
    p.reload(&single(other.addr()));
    p.reload(&single(b.addr()));
    p.reload(&single(other.addr()));
    ws.send("after reload");
    assert_eq!(
        ws.read_exact_within(12, Duration::from_secs(2)),
        b"after reload"
    );
    sse.read_body(&mut r).expect("the stream was cut");
    let events = r.text().matches("data: ").count();
    assert_eq!(events, 8, "{}", r.text());
    assert_eq!(get(p.addr, "/").text(), "other");
}
both_drivers!(sse_stream_and_websocket_opened_before_a_reload_run_to_their_end);

/// Keep-alive clients send requests while the file is reloaded every 100 ms (alternating
/// two valid files, with an invalid one now and then): no request fails.
fn reload_every_100ms_under_load_fails_no_request(driver: &str) {
    let (a, b) = (Backend::named("a"), Backend::named("b"));
    let valid = [weighted(&a, &b, 3, 1), weighted(&a, &b, 1, 3)];
    let invalid = weighted(&a, &b, 1, 1).replace("weight = 1", "weight = \"heavy\"");
    let mut p = Proxy::start_runtime(driver, "workers = 2\npin_workers = false", &valid[0]);
    let load = Load::start(p.addr, 6, 50);
    let started = Instant::now();
    let mut reloads = 0;
    while started.elapsed() < Duration::from_secs(3) {
        reloads += 1;
        if reloads % 7 == 0 {
            p.rewrite(&invalid);
        } else {
            p.rewrite(&valid[reloads % 2]);
        }
        p.signal(libc::SIGHUP);
        std::thread::sleep(Duration::from_millis(100));
    }
    let (ok, failures) = load.stop();
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(ok > 200, "too little traffic: {ok}");
    assert!(
        wait_until(Duration::from_secs(2), || p.stderr_count("reloaded ")
            >= reloads * 2 / 3),
        "only {} of {reloads} reloads took effect",
        p.stderr_count("reloaded ")
    );
    assert!(
        p.stderr_count("keeps serving") >= 1,
        "the invalid file was never tried"
    );
    assert!(p.is_running());
}
both_drivers!(reload_every_100ms_under_load_fails_no_request);

fn reloads_are_counted_by_result(driver: &str) {
    let a = Backend::named("a");
    let body = format!("[admin]\nbind = \"$BIND2\"\n\n{}", single(a.addr()));
    let mut p = Proxy::start(driver, &body);
    p.reload(&body);
    p.rewrite(&body.replace("[upstreams.u]", "[upstreams.u]\nbalance = \"fastest\""));
    p.signal(libc::SIGHUP);
    assert!(wait_until(Duration::from_secs(5), || p
        .stderr_count("keeps serving")
        == 1));
    let metrics = get(p.extra[0], "/metrics").text();
    for line in [
        "ringway_config_reloads_total{result=\"ok\"} 1",
        "ringway_config_reloads_total{result=\"error\"} 1",
        "ringway_config_generation 2",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line:?} in\n{metrics}"
        );
    }
}
both_drivers!(reloads_are_counted_by_result);
