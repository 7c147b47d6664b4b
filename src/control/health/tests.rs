//! The prober's loop against real sockets on 127.0.0.1: marks follow probes, a stalled
//! server holds up no other, reloads are followed, a stop ends the thread.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use super::changes::ChangeCounts;
use super::{Prober, schedule, set_marks};
use crate::snapshot::Snapshot;

fn load(text: &str, generation: u64) -> Snapshot {
    crate::config::load_str(text, std::path::Path::new("t.toml"), generation).expect("valid")
}

/// Group `u` with `servers` (addresses) and `check` inside its `health_check`.
fn config(servers: &[SocketAddr], check: &str) -> String {
    let list: Vec<String> = servers
        .iter()
        .map(|a| format!("{{ addr = \"{a}\" }}"))
        .collect();
    format!(
        "[[listener]]\nbind = \"127.0.0.1:1700\"\nupstream = \"u\"\n\
         [upstreams.u]\nservers = [{}]\nhealth_check = {{ {check} }}\n",
        list.join(", ")
    )
}

/// Whether server `idx` of the current snapshot's first group takes requests.
fn available(current: &ArcSwap<Snapshot>, idx: usize) -> bool {
    current.load().groups[0]
        .peers
        .available(idx, crate::clock::now_ms())
}

fn wait_until(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    done()
}

/// Runs `schedule` on its own thread until the returned flag is set.
fn run(current: &Arc<ArcSwap<Snapshot>>, counts: &'static ChangeCounts) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let (current, flag) = (current.clone(), stop.clone());
    std::thread::spawn(move || {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("runtime");
        rt.block_on(schedule(current, flag, counts));
    });
    stop
}

fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

#[test]
fn a_stalled_server_holds_up_no_other_and_fails_by_its_timeout() {
    // Accepts (the kernel completes the handshake) and never answers.
    let stalled = TcpListener::bind("127.0.0.1:0").unwrap();
    let refused = dead_addr();
    let text = config(
        &[stalled.local_addr().unwrap(), refused],
        "path = \"/\", interval = \"50ms\", timeout = \"1500ms\", fall = 1",
    );
    let current = Arc::new(ArcSwap::from_pointee(load(&text, 1)));
    let counts: &'static ChangeCounts = Box::leak(Box::default());
    let started = Instant::now();
    let stop = run(&current, counts);
    assert!(wait_until(Duration::from_secs(1), || !available(
        &current, 1
    )));
    assert!(
        available(&current, 0),
        "the stalled server failed before its timeout"
    );
    assert!(wait_until(Duration::from_secs(3), || !available(
        &current, 0
    )));
    assert!(started.elapsed() >= Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    let downs: Vec<String> = counts
        .read()
        .iter()
        .map(|c| format!("{} {}", c.to, c.count))
        .collect();
    assert_eq!(downs, ["down 1", "down 1"]);
}

#[test]
fn a_reload_dropping_health_check_puts_held_down_servers_back() {
    let refused = dead_addr();
    let text = config(&[refused], "interval = \"50ms\", fall = 1");
    let current = Arc::new(ArcSwap::from_pointee(load(&text, 1)));
    let stop = run(&current, Box::leak(Box::default()));
    assert!(wait_until(Duration::from_secs(2), || !available(
        &current, 0
    )));
    // The reload keeps the server (its marks carry over) without health_check.
    let plain = text.replace("health_check = { interval = \"50ms\", fall = 1 }", "");
    let mut next = load(&plain, 2);
    next.inherit(&current.load());
    assert!(!next.groups[0].peers.available(0, crate::clock::now_ms()));
    current.store(Arc::new(next));
    assert!(wait_until(Duration::from_secs(2), || available(
        &current, 0
    )));
    stop.store(true, Ordering::Relaxed);
}

#[test]
fn an_address_listed_twice_is_marked_in_both_places() {
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let snap = load(&config(&[addr, addr], "fall = 1"), 1);
    set_marks(&snap, &("u".to_string(), addr), false);
    let peers = &snap.groups[0].peers;
    let now = crate::clock::now_ms();
    assert!(!peers.available(0, now) && !peers.available(1, now));
    set_marks(&snap, &("other".to_string(), addr), true);
    assert!(!peers.available(0, now));
    set_marks(&snap, &("u".to_string(), addr), true);
    assert!(peers.available(0, now) && peers.available(1, now));
}

#[test]
fn stop_ends_the_thread_with_probes_in_flight() {
    let stalled = TcpListener::bind("127.0.0.1:0").unwrap();
    let text = config(
        &[stalled.local_addr().unwrap()],
        "path = \"/\", interval = \"10ms\", timeout = \"30s\"",
    );
    let current = Arc::new(ArcSwap::from_pointee(load(&text, 1)));
    let prober = Prober::start(current).expect("start");
    // Wait for a probe to be in flight (its connection accepted by the kernel).
    stalled.set_nonblocking(true).unwrap();
    let mut conn: Option<TcpStream> = None;
    assert!(wait_until(Duration::from_secs(2), || {
        conn = stalled.accept().ok().map(|(s, _)| s);
        conn.is_some()
    }));
    let asked = Instant::now();
    prober.stop();
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "{:?}",
        asked.elapsed()
    );
}
