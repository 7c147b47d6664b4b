//! Traffic inside the lab: backends, the clients that measure a failover, and a watcher
//! that records which node holds a virtual IP. Each runs on threads moved into a lab
//! namespace (`lab::enter`); everything stops when its handle is dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::lab::enter;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Longer than a SYN retransmission (1 s) plus a VRRP hand-over, so a request delayed by a
/// failover counts as slow, not failed.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// SSE: one event every this long, `SSE_EVENTS` of them per stream.
const SSE_EVERY: Duration = Duration::from_millis(100);
const SSE_EVENTS: usize = 20;

/// Threads that run until `stop` is set, joined on drop.
struct Threads {
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<()>>,
}

impl Threads {
    fn new() -> Threads {
        Threads {
            stop: Arc::new(AtomicBool::new(false)),
            handles: Vec::new(),
        }
    }

    fn spawn(&mut self, ns: &str, f: impl FnOnce(Arc<AtomicBool>) + Send + 'static) {
        let (ns, stop) = (ns.to_string(), self.stop.clone());
        self.handles.push(std::thread::spawn(move || {
            enter(&ns);
            f(stop)
        }));
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// HTTP/1.1 backends in one namespace: `/` answers "ok", `/sse` streams `SSE_EVENTS`
/// events. Counts the requests each one served.
pub struct Backends {
    pub served: Vec<Arc<AtomicU64>>,
    _threads: Threads,
}

impl Backends {
    pub fn start(ns: &str, addrs: &[SocketAddr]) -> Backends {
        let mut threads = Threads::new();
        let mut served = Vec::new();
        for &addr in addrs {
            let count = Arc::new(AtomicU64::new(0));
            served.push(count.clone());
            let (tx, rx) = std::sync::mpsc::channel();
            threads.spawn(ns, move |stop| {
                let listener = TcpListener::bind(addr).expect("bind backend");
                listener.set_nonblocking(true).expect("nonblocking");
                let _ = tx.send(());
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((conn, _)) => {
                            let (stop, count) = (stop.clone(), count.clone());
                            std::thread::spawn(move || serve(conn, &stop, &count));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            });
            rx.recv_timeout(Duration::from_secs(5))
                .expect("backend did not bind");
        }
        Backends {
            served,
            _threads: threads,
        }
    }

    pub fn counts(&self) -> Vec<u64> {
        self.served
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }
}

fn serve(conn: TcpStream, stop: &AtomicBool, count: &AtomicU64) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
    let mut writer = match conn.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    while !stop.load(Ordering::Relaxed) {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if is_timeout(&e) => continue,
            Err(_) => return,
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        // The rest of the head (GET requests only: no body).
        loop {
            let mut h = String::new();
            match reader.read_line(&mut h) {
                Ok(0) => return,
                Ok(_) if h == "\r\n" => break,
                Ok(_) => {}
                Err(e) if is_timeout(&e) && !stop.load(Ordering::Relaxed) => {}
                Err(_) => return,
            }
        }
        count.fetch_add(1, Ordering::Relaxed);
        if path == "/sse" {
            let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
                        Transfer-Encoding: chunked\r\n\r\n";
            if writer.write_all(head.as_bytes()).is_err() {
                return;
            }
            for i in 0..SSE_EVENTS {
                let event = format!("data: {i}\n\n");
                let chunk = format!("{:x}\r\n{event}\r\n", event.len());
                if writer.write_all(chunk.as_bytes()).is_err() {
                    return;
                }
                std::thread::sleep(SSE_EVERY);
            }
            if writer.write_all(b"0\r\n\r\n").is_err() {
                return;
            }
        } else if writer
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .is_err()
        {
            return;
        }
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// What one request (or stream) came to.
#[derive(Clone, Debug)]
pub struct Sample {
    /// When it was sent, from the clients' start.
    pub at: Duration,
    pub took: Duration,
    /// The node that answered (its `X-Node`), or the error.
    pub result: Result<String, String>,
    pub kind: &'static str,
}

/// Clients in one namespace against `targets` (round robin over them): one new connection
/// per request at `rate_new` per second, `keepalive` keep-alive connections sending
/// `rate_keep` per second between them (reconnecting when told `Connection: close` or on an
/// error), and (with `sse`) one SSE client per target that opens the next stream when one
/// ends.
pub struct Clients {
    pub start: Instant,
    samples: Arc<Mutex<Vec<Sample>>>,
    _threads: Threads,
}

impl Clients {
    pub fn start(
        ns: &str,
        targets: &[SocketAddr],
        rate_new: u32,
        rate_keep: u32,
        sse: bool,
    ) -> Clients {
        const KEEPALIVE_CONNS: u32 = 4;
        let start = Instant::now();
        let samples = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Threads::new();
        let targets = targets.to_vec();
        // New connection per request: each on its own short thread, so a request stuck in
        // a failover does not hold back the next ones (the rate stays steady).
        {
            let (samples, targets) = (samples.clone(), targets.clone());
            threads.spawn(ns, move |stop| {
                let period = Duration::from_secs(1) / rate_new;
                let mut inflight = Vec::new();
                let mut k = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let target = targets[k as usize % targets.len()];
                    let samples = samples.clone();
                    inflight.push(std::thread::spawn(move || {
                        let at = start.elapsed();
                        let result = fresh_request(target);
                        record(&samples, start, at, result, "new");
                    }));
                    k += 1;
                    sleep_until(start + period * k);
                    inflight.retain(|h| !h.is_finished());
                }
                for h in inflight {
                    let _ = h.join();
                }
            });
        }
        for c in 0..KEEPALIVE_CONNS {
            let (samples, targets) = (samples.clone(), targets.clone());
            threads.spawn(ns, move |stop| {
                let period = Duration::from_secs(1) * KEEPALIVE_CONNS / rate_keep;
                let offset = period * c / KEEPALIVE_CONNS;
                let mut conn: Option<BufReader<TcpStream>> = None;
                let mut k = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    sleep_until(start + offset + period * k);
                    let target = targets[(k + c) as usize % targets.len()];
                    k += 1;
                    let at = start.elapsed();
                    let result = keepalive_request(&mut conn, target);
                    record(&samples, start, at, result, "keep-alive");
                }
            });
        }
        for (i, &target) in targets.iter().enumerate().filter(|_| sse) {
            let samples = samples.clone();
            threads.spawn(ns, move |stop| {
                std::thread::sleep(SSE_EVERY * i as u32);
                while !stop.load(Ordering::Relaxed) {
                    let at = start.elapsed();
                    let result = sse_stream(target, &stop);
                    let failed = result.is_err();
                    record(&samples, start, at, result, "sse");
                    if failed {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            });
        }
        Clients {
            start,
            samples,
            _threads: threads,
        }
    }

    /// Stops the clients (waiting for requests in flight) and returns every sample.
    pub fn finish(self) -> Vec<Sample> {
        let samples = self.samples.clone();
        drop(self);
        let mut v = samples.lock().unwrap().clone();
        v.sort_by_key(|s| s.at);
        v
    }

    pub fn since_start(&self, t: Instant) -> Duration {
        t.saturating_duration_since(self.start)
    }
}

fn record(
    samples: &Mutex<Vec<Sample>>,
    start: Instant,
    at: Duration,
    result: Result<String, String>,
    kind: &'static str,
) {
    let took = start.elapsed().saturating_sub(at);
    samples.lock().unwrap().push(Sample {
        at,
        took,
        result,
        kind,
    });
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

fn connect(target: SocketAddr) -> Result<TcpStream, String> {
    let s = TcpStream::connect_timeout(&target, CONNECT_TIMEOUT)
        .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(READ_TIMEOUT)).ok();
    s.set_write_timeout(Some(READ_TIMEOUT)).ok();
    s.set_nodelay(true).ok();
    Ok(s)
}

fn fresh_request(target: SocketAddr) -> Result<String, String> {
    let mut s = BufReader::new(connect(target)?);
    s.get_mut()
        .write_all(b"GET / HTTP/1.1\r\nHost: vip\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    read_response(&mut s).map(|(node, _)| node)
}

/// One request on the kept connection (opened first if there is none). A failure on a
/// connection that served before is a failure too: the client sees it, whatever the cause.
fn keepalive_request(
    conn: &mut Option<BufReader<TcpStream>>,
    target: SocketAddr,
) -> Result<String, String> {
    if conn.is_none() {
        *conn = Some(BufReader::new(connect(target)?));
    }
    let s = conn.as_mut().unwrap();
    let result = s
        .get_mut()
        .write_all(b"GET / HTTP/1.1\r\nHost: vip\r\n\r\n")
        .map_err(|e| format!("write: {e}"))
        .and_then(|()| read_response(s));
    match result {
        Ok((node, close)) => {
            if close {
                *conn = None;
            }
            Ok(node)
        }
        Err(e) => {
            *conn = None;
            Err(e)
        }
    }
}

/// Reads a response with a Content-Length body; (X-Node, says Connection: close).
fn read_response(s: &mut BufReader<TcpStream>) -> Result<(String, bool), String> {
    let (status, node, close, len) = read_head(s)?;
    let mut body = vec![0; len];
    s.read_exact(&mut body)
        .map_err(|e| format!("read body: {e}"))?;
    if status != 200 {
        return Err(format!("status {status}"));
    }
    Ok((node, close))
}

/// (status, X-Node, Connection: close, Content-Length or 0)
fn read_head(s: &mut BufReader<TcpStream>) -> Result<(u16, String, bool, usize), String> {
    let mut line = String::new();
    match s.read_line(&mut line) {
        Ok(0) => return Err("closed before the response".into()),
        Ok(_) => {}
        Err(e) => return Err(format!("read: {e}")),
    }
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line {line:?}"))?;
    let (mut node, mut close, mut len) = (String::from("?"), false, 0);
    loop {
        let mut h = String::new();
        s.read_line(&mut h).map_err(|e| format!("read head: {e}"))?;
        if h == "\r\n" || h.is_empty() {
            break;
        }
        let (name, value) = h.split_once(':').unwrap_or((&h, ""));
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "x-node" => node = value.to_string(),
            "connection" => close = value.eq_ignore_ascii_case("close"),
            "content-length" => len = value.parse().unwrap_or(0),
            _ => {}
        }
    }
    Ok((status, node, close, len))
}

/// One SSE stream to its end: Ok(node) if every event arrived.
fn sse_stream(target: SocketAddr, stop: &AtomicBool) -> Result<String, String> {
    let mut s = BufReader::new(connect(target)?);
    s.get_mut()
        .write_all(b"GET /sse HTTP/1.1\r\nHost: vip\r\nAccept: text/event-stream\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let (status, node, _, _) = read_head(&mut s)?;
    if status != 200 {
        return Err(format!("status {status}"));
    }
    let mut events = 0;
    let mut line = String::new();
    loop {
        line.clear();
        match s.read_line(&mut line) {
            Ok(0) => return Err(format!("stream from {node} cut after {events} events")),
            Ok(_) => {}
            Err(e) => return Err(format!("stream from {node} cut after {events} events: {e}")),
        }
        if line.starts_with("data: ") {
            events += 1;
        }
        if line == "0\r\n" {
            break;
        }
        if stop.load(Ordering::Relaxed) && events == 0 {
            break;
        }
    }
    if events == SSE_EVENTS {
        Ok(node)
    } else {
        Err(format!(
            "stream from {node}: {events} of {SSE_EVENTS} events"
        ))
    }
}

/// Records, every 20 ms, whether `vip` is an address of each watched namespace.
pub struct VipWatch {
    log: Arc<Mutex<Vec<(Instant, String)>>>,
    _threads: Threads,
}

impl VipWatch {
    /// Watches `vip` on each (node name, namespace).
    pub fn start(vip: Ipv4Addr, nodes: &[(&str, &str)]) -> VipWatch {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Threads::new();
        for (node, ns) in nodes {
            let (log, node) = (log.clone(), node.to_string());
            threads.spawn(ns, move |stop| {
                let mut held = false;
                while !stop.load(Ordering::Relaxed) {
                    // Binding succeeds exactly when the address is local to this namespace.
                    let now = UdpSocket::bind((vip, 0)).is_ok();
                    if now != held {
                        held = now;
                        let what = if now { "+" } else { "-" };
                        log.lock()
                            .unwrap()
                            .push((Instant::now(), format!("{what}{node}")));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            });
        }
        VipWatch {
            log,
            _threads: threads,
        }
    }

    /// Events so far: (when, "+a" / "-a").
    pub fn events(&self) -> Vec<(Instant, String)> {
        self.log.lock().unwrap().clone()
    }

    /// The first time at or after `since` that `node` gained the VIP.
    pub fn gained(&self, node: &str, since: Instant) -> Option<Instant> {
        let want = format!("+{node}");
        self.events()
            .into_iter()
            .find(|(t, e)| *t >= since && *e == want)
            .map(|(t, _)| t)
    }

    /// Whether `node` holds the VIP now (its last event).
    pub fn holds(&self, node: &str) -> bool {
        self.events()
            .iter()
            .rev()
            .find(|(_, e)| &e[1..] == node)
            .is_some_and(|(_, e)| e.starts_with('+'))
    }

    /// Waits (bounded) until `node` holds the VIP.
    pub fn wait_held(&self, node: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.holds(node) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}
