//! TCP mode end to end: bytes both ways intact (8 MiB each way, hashed), half-close in both
//! directions, balancing by connection, failover on a refused connect, `max_conns`,
//! backups, the idle limit, reload (a running connection keeps its server, a removed
//! listener stops accepting), graceful drain, the access-log line and the metrics.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::*;

const WAIT: Duration = Duration::from_secs(10);

/// A raw TCP server on 127.0.0.1 running `handle` on a thread per connection.
pub(crate) struct TcpBackend {
    pub addr: SocketAddr,
    /// Connections accepted so far.
    pub accepted: Arc<AtomicUsize>,
}

impl TcpBackend {
    pub(crate) fn start(handle: impl Fn(TcpStream) + Send + Sync + 'static) -> TcpBackend {
        TcpBackend::start_on("127.0.0.1:0", handle)
    }

    pub(crate) fn start_on(
        bind: &str,
        handle: impl Fn(TcpStream) + Send + Sync + 'static,
    ) -> TcpBackend {
        let listener = TcpListener::bind(bind).expect("bind backend");
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let handle = Arc::new(handle);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                count.fetch_add(1, Ordering::SeqCst);
                let handle = handle.clone();
                thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(WAIT));
                    handle(stream);
                });
            }
        });
        TcpBackend { addr, accepted }
    }

    /// Echoes every byte until the client half-closes, then half-closes too.
    pub(crate) fn echo() -> TcpBackend {
        TcpBackend::start(|mut s| {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if s.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = s.shutdown(Shutdown::Write);
        })
    }

    /// Writes `name`, then waits for the client to close.
    pub(crate) fn named(name: &'static str) -> TcpBackend {
        TcpBackend::start(move |mut s| {
            let _ = s.write_all(name.as_bytes());
            let _ = s.read_to_end(&mut Vec::new());
        })
    }

    pub(crate) fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// Config body: one tcp listener on `$BIND` in front of upstream `u`.
pub(crate) fn tcp_config(listener: &str, upstream: &str, servers: &[String]) -> String {
    format!(
        "[[listener]]\nname = \"t\"\nbind = \"$BIND\"\nmode = \"tcp\"\nupstream = \"u\"\n\
         {listener}\n\n[upstreams.u]\n{upstream}\nservers = [{}]\n",
        servers.join(", ")
    )
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, WAIT).expect("connect to the proxy");
    s.set_read_timeout(Some(WAIT)).unwrap();
    s
}

/// Reads until end of stream (bounded by the read timeout).
fn read_all(s: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    got
}

/// The name a [`TcpBackend::named`] server sent on a new connection through the proxy;
/// the connection is kept open (returned) so it stays counted.
fn whom(addr: SocketAddr) -> (String, TcpStream) {
    try_whom(addr).expect("a name from the server")
}

/// Like [`whom`]; `None` when the proxy closed the connection without a byte.
fn try_whom(addr: SocketAddr) -> Option<(String, TcpStream)> {
    let mut s = connect(addr);
    let mut name = [0u8; 1];
    s.read_exact(&mut name).ok()?;
    Some((String::from_utf8_lossy(&name).into_owned(), s))
}

/// The harness's start-up probe (a connect and close on `$BIND`) is a tcp connection
/// too: waits until its relay has ended, so counts and caps start from zero.
fn settle(backend: &TcpBackend) {
    assert!(wait_until(WAIT, || backend.accepted() >= 1));
    thread::sleep(Duration::from_millis(100));
}

fn echo_8_mib_both_ways(driver: &str) {
    let echo = TcpBackend::echo();
    let proxy = Proxy::start(driver, &tcp_config("", "", &[server(echo.addr, "")]));
    let mut client = connect(proxy.addr);
    let data = pattern(8 << 20, 7);
    let want = sha256_hex(&data);
    let mut writer = client.try_clone().unwrap();
    let sender = thread::spawn(move || {
        writer.write_all(&data).unwrap();
        // Half-close: the echo server sees the end, answers with its own.
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let got = read_all(&mut client);
    sender.join().unwrap();
    assert_eq!(
        got.len(),
        8 << 20,
        "every byte came back, then end of stream"
    );
    assert_eq!(sha256_hex(&got), want);
}

fn half_close_from_the_server_side_keeps_the_client_sending(driver: &str) {
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = Mutex::new(tx);
    let backend = TcpBackend::start(move |mut s| {
        s.write_all(b"hello, then silence").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        let _ = tx.lock().unwrap().send(rest);
    });
    let proxy = Proxy::start(driver, &tcp_config("", "", &[server(backend.addr, "")]));
    let mut client = connect(proxy.addr);
    assert_eq!(
        read_all(&mut client),
        b"hello, then silence",
        "EOF passed on"
    );
    client.write_all(b"still talking").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    // The start-up probe's connection reports an empty rest first.
    let deadline = Instant::now() + WAIT;
    let mut rests = Vec::new();
    while let Ok(rest) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        let done = rest == b"still talking";
        rests.push(rest);
        if done {
            break;
        }
    }
    assert!(
        rests.last().is_some_and(|r| r == b"still talking"),
        "the server saw the client's bytes after its own end: {rests:?}"
    );
}

fn round_robin_and_least_conn_balance_connections(driver: &str) {
    let (a, b, c) = (
        TcpBackend::named("a"),
        TcpBackend::named("b"),
        TcpBackend::named("c"),
    );
    let servers = [server(a.addr, ""), server(b.addr, ""), server(c.addr, "")];
    let proxy = Proxy::start(driver, &tcp_config("", "", &servers));
    let mut seen = Vec::new();
    for _ in 0..6 {
        let (name, _s) = whom(proxy.addr);
        seen.push(name);
    }
    seen.sort();
    assert_eq!(seen, ["a", "a", "b", "b", "c", "c"], "two connections each");

    // least_conn counts open connections: a held connection keeps its server busiest.
    held_server_is_avoided(driver, "least_conn", &servers[..2], 3);
}

fn random_two_avoids_the_server_holding_a_connection(driver: &str) {
    let (a, b) = (TcpBackend::named("a"), TcpBackend::named("b"));
    // Two servers: the two distinct candidates are both, and the idle one wins each time.
    held_server_is_avoided(
        driver,
        "random_two",
        &[server(a.addr, ""), server(b.addr, "")],
        6,
    );
}

/// With one connection held open on a server of `servers` (two of them), each of `rounds`
/// new connections under `balance` goes to the other one.
fn held_server_is_avoided(driver: &str, balance: &str, servers: &[String], rounds: usize) {
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let body = format!(
        "[admin]\nbind = \"{admin}\"\n\n{}",
        tcp_config("", &format!("balance = \"{balance}\""), servers)
    );
    let proxy = Proxy::start(driver, &body);
    // Open connections on the servers, as the balancer counts them (the harness's start-up
    // probe and each closed connection are uncounted once their relay has ended).
    let active = || {
        let text = crate::admin::scrape(admin);
        crate::admin::sum(&text, "ringway_upstream_active_requests", &[])
    };
    assert!(wait_until(WAIT, || active() == 0.0));
    let (first, _held) = whom(proxy.addr);
    for _ in 0..rounds {
        let (next, s) = whom(proxy.addr);
        assert_ne!(next, first, "the server holding a connection is not picked");
        drop(s);
        assert!(
            wait_until(WAIT, || active() == 1.0),
            "only the held one left"
        );
    }
}

/// A listener whose accept queue holds one connection that nobody accepts until
/// `release` is sent: a connect to it meanwhile has its SYN dropped and completes only
/// on the client's retransmission, about a second later. The connections accepted after
/// that get `name`.
fn slow_to_connect(name: &'static str) -> (SocketAddr, std::sync::mpsc::Sender<()>, TcpStream) {
    use std::os::fd::AsRawFd;
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    // A second listen(2) only changes the backlog: 0 lets one connection wait.
    // SAFETY: listen on a socket this function owns.
    assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
    let addr = listener.local_addr().unwrap();
    let filler = TcpStream::connect(addr).expect("fill the accept queue");
    let (release, wait) = std::sync::mpsc::channel::<()>();
    thread::spawn(move || {
        let _ = wait.recv_timeout(WAIT);
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(WAIT));
                let _ = stream.write_all(name.as_bytes());
                let _ = stream.read_to_end(&mut Vec::new());
            });
        }
    });
    (addr, release, filler)
}

fn least_time_scores_servers_by_connect_time(driver: &str) {
    let (slow, release, _filler) = slow_to_connect("s");
    let fast = TcpBackend::named("f");
    let body = tcp_config(
        "",
        "balance = \"least_time\"\nconnect_timeout = \"5s\"",
        &[server(slow, ""), server(fast.addr, "")],
    );
    let proxy = Proxy::start(driver, &body);
    // Released once the first dials are under way: whichever of them goes to `slow` (the
    // start-up probe's or the first connection below) takes ~1 s to connect.
    let releaser = thread::spawn(move || {
        thread::sleep(Duration::from_millis(300));
        let _ = release.send(());
    });
    let mut names = Vec::new();
    for _ in 0..12 {
        let (name, _s) = whom(proxy.addr);
        names.push(name);
    }
    releaser.join().unwrap();
    // A server never measured scores best while idle, so `slow` is tried once (by the
    // probe or by one of these); once its ~1 s connect is measured it is never picked
    // again within the 10 s the estimate takes to decay. Without connect times feeding
    // least_time both servers tie and about half the connections would go to `slow`.
    let slow_picks = names.iter().filter(|n| *n == "s").count();
    assert!(slow_picks <= 1, "{names:?}");
}

fn hash_on_remote_addr_keeps_a_client_on_one_server(driver: &str) {
    let backends: Vec<TcpBackend> = ["a", "b", "c", "d"]
        .into_iter()
        .map(TcpBackend::named)
        .collect();
    let servers: Vec<String> = backends.iter().map(|b| server(b.addr, "")).collect();
    let upstream = "balance = \"hash\"\nhash_key = \"$remote_addr\"";
    let proxy = Proxy::start(driver, &tcp_config("", upstream, &servers));
    let mut spread = std::collections::HashSet::new();
    for last in 2..12u8 {
        let from = Ipv4Addr::new(127, 0, 0, last);
        let mut names = Vec::new();
        for _ in 0..3 {
            let mut c = Client::connect_from(from, proxy.addr);
            names.push(String::from_utf8_lossy(&c.read_exact_within(1, WAIT)).into_owned());
        }
        assert!(names.iter().all(|n| *n == names[0]), "{from}: {names:?}");
        spread.insert(names[0].clone());
    }
    assert!(
        spread.len() >= 2,
        "ten clients all on one server: {spread:?}"
    );
}

fn a_refused_connect_goes_to_the_next_server(driver: &str) {
    let live = TcpBackend::named("l");
    let dead = dead_addr();
    let log = proxy_log_dir();
    let body = format!(
        "{}\n{}",
        access_log_keys(&log),
        tcp_config("", "", &[server(dead, ""), server(live.addr, "")])
    );
    let proxy = Proxy::start(driver, &body);
    for _ in 0..4 {
        let (name, _s) = whom(proxy.addr);
        assert_eq!(name, "l");
    }
    let lines = wait_log_lines(&log, 4);
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("\"{dead}, {}\"", live.addr))),
        "a line lists both attempts: {lines:?}"
    );
    // With one try the refused server ends the connection without a byte.
    let proxy = Proxy::start(
        driver,
        &tcp_config(
            "",
            "next_upstream_tries = 1\nbalance = \"round_robin\"",
            &[server(dead, "max_fails = 0"), server(live.addr, "")],
        ),
    );
    let outcomes: Vec<Vec<u8>> = (0..2)
        .map(|_| {
            let mut s = connect(proxy.addr);
            let mut byte = [0u8; 1];
            match s.read(&mut byte) {
                Ok(n) => byte[..n].to_vec(),
                Err(_) => Vec::new(),
            }
        })
        .collect();
    assert!(
        outcomes.contains(&Vec::new()) && outcomes.contains(&b"l".to_vec()),
        "one connection closed at once, one served: {outcomes:?}"
    );
}

fn max_conns_caps_open_connections_and_backup_takes_over(driver: &str) {
    let only = TcpBackend::named("o");
    let proxy = Proxy::start(
        driver,
        &tcp_config("", "", &[server(only.addr, "max_conns = 1")]),
    );
    settle(&only);
    let (first, held) = whom(proxy.addr);
    assert_eq!(first, "o");
    // At max_conns with no queue: the connection is closed without reaching the server.
    let mut second = connect(proxy.addr);
    assert!(read_all(&mut second).is_empty(), "refused at max_conns");
    assert_eq!(only.accepted(), 2, "the probe's and the first");
    drop(held);
    assert!(
        wait_until(WAIT, || try_whom(proxy.addr).is_some_and(|(n, _)| n == "o")),
        "room again once the first connection closed"
    );

    // A primary that is down, or refuses: the backup serves; never while the primary works.
    let (primary, backup) = (TcpBackend::named("p"), TcpBackend::named("b"));
    let servers = [
        server(primary.addr, ""),
        server(backup.addr, "backup = true"),
    ];
    let proxy = Proxy::start(driver, &tcp_config("", "", &servers));
    for _ in 0..3 {
        assert_eq!(whom(proxy.addr).0, "p");
    }
    let servers = [
        server(primary.addr, "down = true"),
        server(backup.addr, "backup = true"),
    ];
    let proxy = Proxy::start(driver, &tcp_config("", "", &servers));
    assert_eq!(whom(proxy.addr).0, "b");
    let servers = [
        server(dead_addr(), ""),
        server(backup.addr, "backup = true"),
    ];
    let proxy = Proxy::start(driver, &tcp_config("", "", &servers));
    assert_eq!(whom(proxy.addr).0, "b", "failover to the backup");
}

fn an_idle_connection_is_closed_after_read_timeout(driver: &str) {
    let echo = TcpBackend::echo();
    let proxy = Proxy::start(
        driver,
        &tcp_config("", "read_timeout = \"300ms\"", &[server(echo.addr, "")]),
    );
    let mut client = connect(proxy.addr);
    client.write_all(b"ping").unwrap();
    let mut four = [0u8; 4];
    client.read_exact(&mut four).unwrap();
    let started = Instant::now();
    assert!(read_all(&mut client).is_empty());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(5),
        "closed after {waited:?}"
    );
}

fn reload_keeps_running_connections_and_closes_a_removed_listener(driver: &str) {
    let (old, new) = (TcpBackend::echo(), TcpBackend::named("n"));
    let two = |s: &str| {
        format!(
            "{}\n[[listener]]\nname = \"t2\"\nbind = \"$BIND2\"\nmode = \"tcp\"\nupstream = \"u\"\n",
            tcp_config("", "", &[s.to_string()])
        )
    };
    let mut proxy = Proxy::start(driver, &two(&server(old.addr, "")));
    let second = proxy.bind("$BIND2");
    let mut running = connect(proxy.addr);
    let mut on_removed = connect(second);
    for s in [&mut running, &mut on_removed] {
        s.write_all(b"before").unwrap();
        let mut got = [0u8; 6];
        s.read_exact(&mut got).unwrap();
    }
    // New server, and the second listener gone.
    proxy.reload(&tcp_config("", "", &[server(new.addr, "")]));
    assert_eq!(
        whom(proxy.addr).0,
        "n",
        "new connections use the new config"
    );
    assert!(
        wait_until(WAIT, || TcpStream::connect_timeout(&second, WAIT).is_err()),
        "the removed listener refuses connections"
    );
    for s in [&mut running, &mut on_removed] {
        s.write_all(b"after").unwrap();
        let mut got = [0u8; 5];
        s.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"after", "still relayed to the old server");
        s.shutdown(Shutdown::Write).unwrap();
        assert!(read_all(s).is_empty());
    }
}

fn drain_waits_for_open_tcp_connections(driver: &str) {
    let echo = TcpBackend::echo();
    let mut proxy = Proxy::start_runtime(
        driver,
        "workers = 1\npin_workers = false\nshutdown_timeout = \"20s\"",
        &tcp_config("", "", &[server(echo.addr, "")]),
    );
    let mut client = connect(proxy.addr);
    proxy.signal(libc::SIGQUIT);
    assert!(
        wait_until(WAIT, || TcpStream::connect_timeout(&proxy.addr, WAIT)
            .is_err()),
        "stops accepting"
    );
    thread::sleep(Duration::from_millis(300));
    assert!(proxy.is_running(), "still relaying the open connection");
    client.write_all(b"during the drain").unwrap();
    let mut got = [0u8; 16];
    client.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"during the drain");
    client.shutdown(Shutdown::Write).unwrap();
    assert!(read_all(&mut client).is_empty());
    let status = proxy.wait_exit(Duration::from_secs(5));
    assert!(
        status.is_some_and(|s| s.success()),
        "exits once the connection ended, well before shutdown_timeout: {status:?}"
    );
}

fn access_log_line_and_metrics_per_connection(driver: &str) {
    let echo = TcpBackend::echo();
    let log = proxy_log_dir();
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let body = format!(
        "{}\n[admin]\nbind = \"{admin}\"\n\n{}",
        access_log_keys(&log),
        tcp_config("", "", &[server(echo.addr, "")])
    );
    let proxy = Proxy::start(driver, &body);
    settle(&echo);
    let served = |text: &str| {
        crate::admin::sum(
            text,
            "ringway_requests_total",
            &[("listener", "t"), ("code", "200")],
        )
    };
    let open =
        |text: &str| crate::admin::sum(text, "ringway_active_connections", &[("listener", "t")]);
    let before = served(&crate::admin::scrape(admin));
    let mut client = connect(proxy.addr);
    client.write_all(&[b'x'; 1000]).unwrap();
    let mut got = vec![0u8; 1000];
    client.read_exact(&mut got).unwrap();
    let text = crate::admin::scrape(admin);
    assert_eq!(open(&text), 1.0, "{text}");
    let server_label = echo.addr.to_string();
    let active = crate::admin::sum(
        &text,
        "ringway_upstream_active_requests",
        &[("server", &server_label)],
    );
    assert_eq!(active, 1.0, "the open connection is active on its server");
    client.write_all(b"12345").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_all(&mut client), b"12345");
    let want = "TCP 200 1005 1005 ";
    assert!(wait_until(WAIT, || read_lines(&log)
        .iter()
        .any(|l| l.contains(want))));
    let lines = read_lines(&log);
    let line = lines.iter().find(|l| l.contains(want)).unwrap();
    assert!(line.starts_with("127.0.0.1 ["), "{line}");
    assert!(
        line.contains(want),
        "status, bytes sent, bytes received: {line}"
    );
    assert!(line.contains(&format!("\"{}\"", echo.addr)), "{line}");
    assert!(
        wait_until(WAIT, || {
            let text = crate::admin::scrape(admin);
            served(&text) == before + 1.0 && open(&text) == 0.0
        }),
        "the connection counted once it ended, none open"
    );
}

/// A fresh directory for an access log (kept alive by the returned guard's path).
fn proxy_log_dir() -> std::path::PathBuf {
    let dir = crate::support::proxy::TempDir::new();
    let path = dir.path.join("access.log");
    // The proxy creates the file; the directory must outlive the test, so it is leaked.
    std::mem::forget(dir);
    path
}

fn access_log_keys(path: &std::path::Path) -> String {
    format!("access_log = \"{}\"", path.display())
}

/// 1,000 idle tcp connections (source addresses 127.0.20.1 and up), one exchange each:
/// the proxy's memory grows by about 7 KB per connection (nginx `stream` ~9.9 KB in the
/// README's measurement). Each relay's two directions are boxed apart from the future that
/// runs them, which otherwise held each direction twice: 8.7-9.3 KB then.
fn idle_tcp_connections_cost_little(driver: &str) {
    const CLIENTS: usize = 1000;
    raise_own_fd_limit(2 * CLIENTS as u64 + 200);
    // The backend answers each "ping" on a short-lived thread and hands the socket to
    // `held`, which keeps it open until the test ends.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let backend = listener.local_addr().unwrap();
    let (keep, held) = std::sync::mpsc::channel::<TcpStream>();
    thread::spawn(move || {
        for stream in listener.incoming().take(CLIENTS + 50) {
            let Ok(mut s) = stream else { continue };
            let keep = keep.clone();
            thread::spawn(move || {
                let _ = s.set_read_timeout(Some(WAIT));
                let mut ping = [0u8; 4];
                if s.read_exact(&mut ping).is_ok() && s.write_all(b"pong").is_ok() {
                    let _ = keep.send(s);
                }
            });
        }
    });
    let p = Proxy::start_runtime(
        driver,
        "workers = 1\npin_workers = false",
        &tcp_config("", "read_timeout = \"60s\"", &[server(backend, "")]),
    );
    let exchange = |from: Ipv4Addr| {
        let mut c = Client::connect_from(from, p.addr);
        c.send("ping");
        assert_eq!(c.read_exact_within(4, WAIT), b"pong", "{}", p.stderr());
        c
    };
    // What the first connections allocate once (tables, spare buffers) is not per
    // connection.
    let warm: Vec<Client> = (0..20).map(|_| exchange(Ipv4Addr::LOCALHOST)).collect();
    thread::sleep(Duration::from_millis(200));
    let before = rss_kib(p.pid());
    let clients: Vec<Client> = (0..CLIENTS)
        .map(|i| {
            exchange(Ipv4Addr::new(
                127,
                0,
                20 + (i / 250) as u8,
                1 + (i % 250) as u8,
            ))
        })
        .collect();
    thread::sleep(Duration::from_millis(300));
    assert_rss_growth_below(p.pid(), before, CLIENTS, 8000, "idle tcp connection");
    drop((warm, clients, held));
}

fn read_lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn wait_log_lines(path: &std::path::Path, n: usize) -> Vec<String> {
    wait_until(WAIT, || read_lines(path).len() >= n);
    let lines = read_lines(path);
    assert!(lines.len() >= n, "{n} access-log lines expected: {lines:?}");
    lines
}

both_drivers!(
    echo_8_mib_both_ways,
    half_close_from_the_server_side_keeps_the_client_sending,
    round_robin_and_least_conn_balance_connections,
    random_two_avoids_the_server_holding_a_connection,
    least_time_scores_servers_by_connect_time,
    hash_on_remote_addr_keeps_a_client_on_one_server,
    a_refused_connect_goes_to_the_next_server,
    max_conns_caps_open_connections_and_backup_takes_over,
    an_idle_connection_is_closed_after_read_timeout,
    reload_keeps_running_connections_and_closes_a_removed_listener,
    drain_waits_for_open_tcp_connections,
    access_log_line_and_metrics_per_connection,
    idle_tcp_connections_cost_little,
);
