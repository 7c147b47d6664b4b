//! The end-to-end harness: the real proxy binary ([`Proxy`]), scriptable std backends
//! ([`Backend`]), a raw-socket HTTP client ([`Client`]), headless Chromium
//! ([`browser::Browser`]) and small helpers (free ports, bounded
//! waits, the `both_drivers!` macro).

// A toolkit: each test binary build uses only some of its helpers.
#![allow(dead_code)]

pub mod backend;
pub mod browser;
pub mod client;
pub mod llm;
pub mod load;
pub mod proxy;

use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub use backend::{Backend, Conn, Request};
pub use client::{Client, Framing, Response, get};
pub use load::Load;
pub use proxy::Proxy;

/// Runs an end-to-end test function `fn name(driver: &str)` once per event-loop driver:
/// generates `mod name { #[test] fn io_uring() ..; #[test] fn epoll() .. }`.
macro_rules! both_drivers {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[test]
                fn io_uring() {
                    super::$name("io_uring")
                }
                #[test]
                fn epoll() {
                    super::$name("epoll")
                }
            }
        )+
    };
}
pub(crate) use both_drivers;

/// The values of every header called `name` (any letter case), in order: what both the
/// backend's request log and the client's responses look headers up with.
pub fn header_values<'a, 'n>(
    headers: &'a [(String, String)],
    name: &'n str,
) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
    headers
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Ports handed out by [`free_port`] in this process: never handed out twice, so two tests
/// never race for one port (the proxy binds with SO_REUSEPORT, which would let two proxies
/// share a port silently).
fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    PORTS.get_or_init(|| Mutex::new(HashSet::new()))
}

/// A port on 127.0.0.1 that nothing listens on right now and no other test was given.
///
/// Taken below the kernel's ephemeral range (`ip_local_port_range`): a port from inside it
/// may become the source port of some test's outgoing connection between being handed out
/// and the proxy binding it, and the proxy then fails to start (seen as a refused admin
/// connection once in a full run).
pub fn free_port() -> u16 {
    let (low, high) = unclaimed_range();
    let span = u32::from(high - low);
    // Start where this process's id points, so concurrent test processes spread out.
    let start = std::process::id().wrapping_mul(7919);
    for i in 0..span.min(5000) {
        let port = low + (start.wrapping_add(i) % span) as u16;
        let claimed = handed_out()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&port);
        if claimed || TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        if handed_out()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(port)
        {
            return port;
        }
    }
    panic!("no free port in {low}..{high}");
}

/// Ports no `connect` picks as its source: from 10000 up to the ephemeral range's start.
fn unclaimed_range() -> (u16, u16) {
    let first_ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    (10000, first_ephemeral.max(20000))
}

/// An address where nothing listens (connections are refused).
pub fn dead_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// Polls `done` every 10 ms until it holds or `within` passes; returns whether it held.
pub fn wait_until(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Time since the first call in this process: one clock for backends and clients, so a
/// timestamp written by a backend thread can be compared with an arrival time in the test.
pub fn now_us() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_micros() as u64
}

/// Lower-case hex of `bytes` (sha2 0.11 digests have no `LowerHex`).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// sha256 of `data`, as lower-case hex.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(data))
}

/// `n` bytes of a cheap deterministic pattern (no two 256-byte windows alike), so a
/// reordered or dropped slice changes the hash.
pub fn pattern(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// One entry of an upstream's `servers` list: `{ addr = "...", <extra> }`.
pub fn server(addr: SocketAddr, extra: &str) -> String {
    if extra.is_empty() {
        format!("{{ addr = \"{addr}\" }}")
    } else {
        format!("{{ addr = \"{addr}\", {extra} }}")
    }
}

/// A config body with one HTTP listener on `$BIND` in front of upstream `u`:
/// `listener` and `upstream` are extra keys for each table.
pub fn config(listener: &str, upstream: &str, servers: &[String]) -> String {
    format!(
        "[[listener]]\nname = \"it\"\nbind = \"$BIND\"\nmode = \"http\"\nupstream = \"u\"\n\
         {listener}\n\n[upstreams.u]\n{upstream}\nservers = [{}]\n",
        servers.join(", ")
    )
}

/// Three backends named `names`, each behind an upstream of the same name, with
/// `listener` (a `[[listener]]` table on `$BIND` and its routes) in front of them.
pub fn three_upstreams(
    driver: &str,
    names: [&'static str; 3],
    listener: &str,
) -> (Proxy, [Backend; 3]) {
    let backends = names.map(Backend::named);
    let mut toml = listener.to_string();
    for (name, b) in names.iter().zip(&backends) {
        toml.push_str(&format!(
            "\n[upstreams.{name}]\nservers = [{}]\n",
            server(b.addr(), "")
        ));
    }
    (Proxy::start(driver, &toml), backends)
}

/// The simplest config: one listener, one server, defaults everywhere.
pub fn single(addr: SocketAddr) -> String {
    config("", "", &[server(addr, "")])
}

/// Resident memory of the process in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Asserts that process `pid` grew by less than `max_bytes` of RSS per each of `count`
/// `what`s since it measured `before` KiB (and prints the figure either way).
pub fn assert_rss_growth_below(pid: u32, before: u64, count: usize, max_bytes: u64, what: &str) {
    let after = rss_kib(pid);
    let per = after.saturating_sub(before) * 1024 / count as u64;
    eprintln!("{what}: RSS {before} KiB -> {after} KiB, {per} bytes each");
    assert!(
        per < max_bytes,
        "{per} bytes of RSS per {what} ({before} KiB -> {after} KiB)"
    );
}

/// Raises this test process's soft descriptor limit to its hard limit (tests that
/// hold a few thousand sockets); panics when that is not above `needed`.
pub fn raise_own_fd_limit(needed: u64) {
    let limit = raise_fd_limit_to_hard();
    assert!(limit > needed, "needs {needed} descriptors, has {limit}");
}

fn raise_fd_limit_to_hard() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a pointer to a local struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    lim.rlim_cur
}
