//! Binary upgrade (SIGUSR2, `ringway -s upgrade`): the new process takes the listening
//! sockets and the pid file, the old one drains; under load nothing fails, a stream opened
//! before runs to its end, and a new binary that cannot start leaves the old one serving.

use std::time::Duration;

use crate::support::*;

/// Waits (bounded) until the pid file names a process other than `old_pid`.
fn wait_new_pid(p: &Proxy, old_pid: u32) {
    let taken = || p.pid_file_pid().is_some_and(|pid| pid != old_pid);
    assert!(
        wait_until(Duration::from_secs(10), taken),
        "the new process never took the pid file:\n{}",
        p.stderr()
    );
}

fn upgrade_under_load_fails_nothing_and_a_stream_runs_to_its_end(driver: &str) {
    let b = Backend::start(|req, c| {
        if req.path() == "/events" {
            c.chunked_head(200, &[("Content-Type", "text/event-stream")]);
            for i in 0..10 {
                c.sleep_ms(100);
                c.chunk(format!("data: {i}\n\n").as_bytes());
            }
            c.end_chunks();
            return;
        }
        c.ok("a");
    });
    let mut p = Proxy::start_runtime(
        driver,
        "workers = 2\npin_workers = false\nshutdown_timeout = \"10s\"",
        &single(b.addr()),
    );
    let old_pid = p.pid();
    let load = Load::start(p.addr, 4, 20);
    let mut sse = Client::connect(p.addr);
    sse.send("GET /events HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut stream = sse.read_head();
    assert_eq!(stream.status, 200);
    std::thread::sleep(Duration::from_millis(200));
    let config = p.config.to_string_lossy().into_owned();
    let out = Proxy::spawn_raw(&["-s", "upgrade", "-c", &config]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_new_pid(&p, old_pid);
    sse.read_body(&mut stream)
        .expect("the stream was cut by the upgrade");
    assert_eq!(stream.text().matches("data: ").count(), 10);
    let status = p
        .wait_exit(Duration::from_secs(5))
        .expect("the old process did not exit");
    assert_eq!(status.code(), Some(0), "{}", p.stderr());
    std::thread::sleep(Duration::from_millis(300));
    let (ok, failures) = load.stop();
    assert!(
        failures.is_empty(),
        "{} failed: {:?}\n{}",
        failures.len(),
        &failures[..failures.len().min(5)],
        p.stderr()
    );
    assert!(ok > 100, "too little traffic: {ok}");
    // The new process serves, and it is the one the pid file names.
    assert_eq!(get(p.addr, "/").text(), "a");
    let new_pid = p.pid_file_pid().expect("pid file");
    assert!(std::path::Path::new(&format!("/proc/{new_pid}")).exists());
}
both_drivers!(upgrade_under_load_fails_nothing_and_a_stream_runs_to_its_end);

fn failed_upgrade_leaves_the_old_process_serving(driver: &str) {
    let a = Backend::named("a");
    let mut p = Proxy::start(driver, &single(a.addr()));
    let old_pid = p.pid();
    // The new binary reads the same file: make it fail its configuration check.
    let good = std::fs::read_to_string(&p.config).expect("config");
    p.rewrite_raw(&good.replace("[upstreams.u]", "[upstreams.u]\nbalance = \"fastest\""));
    p.signal(libc::SIGUSR2);
    assert!(
        wait_until(Duration::from_secs(10), || p.stderr_count("upgrade failed")
            == 1),
        "no upgrade failure logged:\n{}",
        p.stderr()
    );
    assert!(p.is_running());
    assert_eq!(p.pid_file_pid(), Some(old_pid));
    assert_eq!(get(p.addr, "/").text(), "a");
    // Once the file is right again, the upgrade goes through.
    p.rewrite_raw(&good);
    p.signal(libc::SIGUSR2);
    wait_new_pid(&p, old_pid);
    let status = p
        .wait_exit(Duration::from_secs(5))
        .expect("old process still running");
    assert_eq!(status.code(), Some(0));
    assert_eq!(get(p.addr, "/").text(), "a");
}
both_drivers!(failed_upgrade_leaves_the_old_process_serving);

/// Under systemd (`Type=notify`, `NotifyAccess=all`): ready, reloading, and after an
/// upgrade the new process names itself the main process.
fn systemd_hears_ready_reload_and_the_new_main_pid(driver: &str) {
    use std::os::unix::net::UnixDatagram;
    let a = Backend::named("a");
    let dir = crate::support::proxy::TempDir::new();
    let path = dir.path.join("notify.sock");
    let systemd = UnixDatagram::bind(&path).expect("bind notify socket");
    systemd
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let next = || {
        let mut buf = [0u8; 512];
        let n = systemd.recv(&mut buf).expect("no sd_notify message");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let socket = path.to_string_lossy().into_owned();
    let mut p = Proxy::start_env(
        driver,
        "workers = 1\npin_workers = false",
        &single(a.addr()),
        &[("NOTIFY_SOCKET", &socket)],
    );
    assert_eq!(next(), format!("READY=1\nMAINPID={}", p.pid()));
    p.reload(&single(a.addr()));
    assert!(next().starts_with("RELOADING=1\nMONOTONIC_USEC="));
    assert_eq!(next(), format!("READY=1\nMAINPID={}", p.pid()));
    p.signal(libc::SIGUSR2);
    let ready = next();
    let new_pid: u32 = ready
        .strip_prefix("READY=1\nMAINPID=")
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("{ready:?}"));
    assert_ne!(new_pid, p.pid());
    assert!(
        p.wait_exit(Duration::from_secs(5)).is_some(),
        "the old process did not exit"
    );
    assert_eq!(get(p.addr, "/").text(), "a");
}
both_drivers!(systemd_hears_ready_reload_and_the_new_main_pid);

/// While the old process drains after an upgrade, health checks reach only the new one:
/// the old process has shut its admin socket.
fn health_checks_never_meet_the_draining_old_process(driver: &str) {
    let b = Backend::start(|req, c| {
        if req.path() == "/slow" {
            c.sleep_ms(1500);
        }
        c.ok("a");
    });
    let toml = format!("[admin]\nbind = \"$BIND2\"\n\n{}", single(b.addr()));
    let mut p = Proxy::start_runtime(
        driver,
        "workers = 1\npin_workers = false\nshutdown_timeout = \"10s\"",
        &toml,
    );
    let admin = p.extra[0];
    let old_pid = p.pid();
    // Keeps the old process draining for a while.
    let mut slow = Client::connect(p.addr);
    slow.send("GET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(b.wait_requests(1, Duration::from_secs(2)));
    p.signal(libc::SIGUSR2);
    wait_new_pid(&p, old_pid);
    assert!(p.is_running(), "the old process should still be draining");
    for _ in 0..30 {
        assert_eq!(get(admin, "/healthz").status, 200);
    }
    assert_eq!(slow.read_response().status, 200);
    assert!(p.wait_exit(Duration::from_secs(5)).is_some());
}
both_drivers!(health_checks_never_meet_the_draining_old_process);
