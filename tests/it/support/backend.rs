//! [`Backend`]: a scriptable std::net HTTP/1.1 server (thread per connection, bounded) that
//! records every request it sees, so tests can assert on the exact bytes the proxy sent.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use super::{free_port, wait_until};

/// Most connections served at once; more are closed at accept.
const MAX_CONNS: usize = 256;
/// A connection idle this long is dropped, so no thread outlives its test by much.
const IDLE: Duration = Duration::from_secs(10);
const MAX_HEAD: usize = 1 << 20;

/// One request as the backend received it.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// The request target exactly as sent.
    pub target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    pub headers: Vec<(String, String)>,
    /// The head bytes as received, request line to the blank line.
    pub head: Vec<u8>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
    pub chunked: bool,
    /// The whole body arrived (false: the peer went away or broke the framing mid-body).
    pub complete: bool,
    pub peer: SocketAddr,
    /// Which accepted connection (0-based, in accept order) carried it.
    pub conn: usize,
    /// Its position on that connection (0-based).
    pub seq: usize,
}

impl Request {
    /// First header with this (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        super::header_values(&self.headers, name).next()
    }

    /// Every value of this header, in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        super::header_values(&self.headers, name).collect()
    }

    pub fn head_text(&self) -> String {
        String::from_utf8_lossy(&self.head).into_owned()
    }

    /// The path of the target, without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
}

/// What the handler writes to: the socket plus helpers for common answers.
pub struct Conn {
    stream: TcpStream,
    /// Bytes read past the current request (pipelined requests, or upgrade data).
    pending: Vec<u8>,
    /// Keep serving requests after this one (starts as the request asked).
    pub keep_alive: bool,
    /// Which accepted connection this is (0-based).
    pub number: usize,
    closed: bool,
}

impl Conn {
    /// Writes a whole response: Content-Length is added unless `headers` has a framing
    /// header or the status has no body; `Connection: close` is added when closing.
    pub fn respond(&mut self, status: u16, headers: &[(&str, &str)], body: &[u8]) -> bool {
        let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
        let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        let bodiless = status < 200 || status == 204 || status == 304;
        if !bodiless && !has("content-length") && !has("transfer-encoding") {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        if !self.keep_alive && !has("connection") {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(body);
        self.write(&out)
    }

    /// 200 with `body` as text/plain.
    pub fn ok(&mut self, body: &str) -> bool {
        self.respond(200, &[("Content-Type", "text/plain")], body.as_bytes())
    }

    /// Writes raw bytes; false when the peer is gone.
    pub fn write(&mut self, bytes: &[u8]) -> bool {
        self.stream
            .write_all(bytes)
            .and_then(|()| self.stream.flush())
            .is_ok()
    }

    /// Writes a response head with `Transfer-Encoding: chunked`; follow with [`Conn::chunk`].
    pub fn chunked_head(&mut self, status: u16, headers: &[(&str, &str)]) -> bool {
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        all.push(("Transfer-Encoding", "chunked"));
        self.respond(status, &all, b"")
    }

    /// One chunk (empty data is skipped: it would end the body).
    pub fn chunk(&mut self, data: &[u8]) -> bool {
        if data.is_empty() {
            return true;
        }
        let mut out = format!("{:x}\r\n", data.len()).into_bytes();
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
        self.write(&out)
    }

    pub fn end_chunks(&mut self) -> bool {
        self.write(b"0\r\n\r\n")
    }

    pub fn sleep_ms(&self, ms: u64) {
        std::thread::sleep(Duration::from_millis(ms));
    }

    /// Close the connection after the handler returns, without telling the peer first
    /// (no `Connection: close` is added by this).
    pub fn close(&mut self) {
        self.closed = true;
    }

    /// Reads what the peer sends next (pending bytes first); empty at end of stream or
    /// after `timeout` without data.
    pub fn read_some(&mut self, timeout: Duration) -> Vec<u8> {
        if !self.pending.is_empty() {
            return std::mem::take(&mut self.pending);
        }
        let _ = self.stream.set_read_timeout(Some(timeout));
        let mut buf = vec![0u8; 64 * 1024];
        let n = self.stream.read(&mut buf).unwrap_or(0);
        let _ = self.stream.set_read_timeout(Some(IDLE));
        buf.truncate(n);
        buf
    }

    /// The socket, for anything the helpers do not cover.
    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }
}

type Handler = dyn Fn(&Request, &mut Conn) + Send + Sync;

/// State shared by the accept thread, connection threads and the test.
struct Shared {
    handler: Box<Handler>,
    log: Mutex<Vec<Request>>,
    /// Request heads parsed so far (counted before the body is read).
    heads: AtomicUsize,
    /// Connections accepted so far.
    accepted: AtomicUsize,
    /// Connections being served right now.
    active: AtomicUsize,
    /// Clones of live sockets, shut down when the backend is dropped.
    streams: Mutex<Vec<TcpStream>>,
    stop: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A scriptable HTTP/1.1 server on 127.0.0.1.
pub struct Backend {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl Backend {
    /// Serves every request with `handler`, on a fresh port.
    pub fn start(handler: impl Fn(&Request, &mut Conn) + Send + Sync + 'static) -> Backend {
        let listener = bind_registered();
        let addr = listener.local_addr().expect("backend addr");
        let shared = Arc::new(Shared {
            handler: Box::new(handler),
            log: Mutex::new(Vec::new()),
            heads: AtomicUsize::new(0),
            accepted: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
            streams: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let for_thread = shared.clone();
        let accept = std::thread::spawn(move || accept_loop(listener, for_thread));
        Backend {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// Answers 200 with body `name` and `X-Backend: name` to everything.
    pub fn named(name: &'static str) -> Backend {
        Backend::start(move |_, c| {
            c.respond(
                200,
                &[("X-Backend", name), ("Content-Type", "text/plain")],
                name.as_bytes(),
            );
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request seen so far (complete or not), in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        lock(&self.shared.log).clone()
    }

    /// Requests whose body arrived whole.
    pub fn complete_requests(&self) -> usize {
        lock(&self.shared.log).iter().filter(|r| r.complete).count()
    }

    pub fn request_count(&self) -> usize {
        lock(&self.shared.log).len()
    }

    /// Request heads seen so far, bodies complete or not (shows a body is streamed).
    pub fn heads(&self) -> usize {
        self.shared.heads.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Connections open right now.
    pub fn active(&self) -> usize {
        self.shared.active.load(Ordering::SeqCst)
    }

    /// Waits (bounded) until at least `n` requests were logged.
    pub fn wait_requests(&self, n: usize, within: Duration) -> bool {
        wait_until(within, || self.request_count() >= n)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept thread, then cut every open connection so its thread ends.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        for s in lock(&self.shared.streams).drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// Binds a port from [`free_port`] rather than port 0: a kernel-chosen port could be one
/// just handed to a proxy that has not bound it yet.
fn bind_registered() -> TcpListener {
    for _ in 0..100 {
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", free_port())) {
            return listener;
        }
    }
    panic!("no bindable port for a backend after 100 tries");
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        if shared.active.load(Ordering::SeqCst) >= MAX_CONNS {
            continue;
        }
        let number = shared.accepted.fetch_add(1, Ordering::SeqCst);
        shared.active.fetch_add(1, Ordering::SeqCst);
        if let Ok(clone) = stream.try_clone() {
            lock(&shared.streams).push(clone);
        }
        let shared = shared.clone();
        std::thread::spawn(move || {
            serve(stream, number, &shared);
            shared.active.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// Serves one connection: parse, log, call the handler, until close.
fn serve(stream: TcpStream, number: usize, shared: &Shared) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(IDLE));
    let Ok(peer) = stream.peer_addr() else { return };
    let mut conn = Conn {
        stream,
        pending: Vec::new(),
        keep_alive: true,
        number,
        closed: false,
    };
    let mut seq = 0;
    while let Some(mut req) = read_request(&mut conn, peer, number, seq) {
        shared.heads.fetch_add(1, Ordering::SeqCst);
        seq += 1;
        if req
            .header("expect")
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
        {
            conn.write(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        req.chunked = is_chunked(&req);
        let body = read_body(&mut conn, &req);
        req.complete = body.is_some();
        req.body = body.unwrap_or_default();
        lock(&shared.log).push(req.clone());
        if !req.complete {
            break;
        }
        conn.keep_alive = wants_keep_alive(&req);
        (shared.handler)(&req, &mut conn);
        if conn.closed || !conn.keep_alive {
            break;
        }
    }
    let _ = conn.stream.shutdown(Shutdown::Both);
}

fn wants_keep_alive(req: &Request) -> bool {
    let connection = req.header_all("connection").join(",").to_ascii_lowercase();
    let tokens: Vec<&str> = connection.split(',').map(str::trim).collect();
    if req.version == 0 {
        tokens.contains(&"keep-alive")
    } else {
        !tokens.contains(&"close")
    }
}

/// Reads more bytes into `conn.pending`; false at end of stream or timeout.
fn fill(conn: &mut Conn) -> bool {
    let mut buf = [0u8; 64 * 1024];
    match conn.stream.read(&mut buf) {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            conn.pending.extend_from_slice(&buf[..n]);
            true
        }
    }
}

/// Reads and parses one request head; None when the connection ends first or it is bad.
fn read_request(conn: &mut Conn, peer: SocketAddr, number: usize, seq: usize) -> Option<Request> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(&conn.pending) {
            Ok(httparse::Status::Complete(len)) => {
                let req = Request {
                    method: parsed.method.unwrap_or("").to_string(),
                    target: parsed.path.unwrap_or("").to_string(),
                    version: parsed.version.unwrap_or(1),
                    headers: parsed
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_string(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect(),
                    head: conn.pending[..len].to_vec(),
                    body: Vec::new(),
                    chunked: false,
                    complete: false,
                    peer,
                    conn: number,
                    seq,
                };
                conn.pending.drain(..len);
                return Some(req);
            }
            Ok(httparse::Status::Partial) if conn.pending.len() < MAX_HEAD => {
                if !fill(conn) {
                    return None;
                }
            }
            _ => {
                conn.write(
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                return None;
            }
        }
    }
}

fn is_chunked(req: &Request) -> bool {
    let last = |v: &str| {
        v.rsplit(',')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("chunked"))
    };
    req.header("transfer-encoding").is_some_and(last)
}

/// Reads the body `req` announces; None if the connection ends or the framing is broken.
fn read_body(conn: &mut Conn, req: &Request) -> Option<Vec<u8>> {
    if req.chunked {
        return read_chunked(conn);
    }
    let len: usize = match req.header("content-length") {
        Some(v) => v.trim().parse().ok()?,
        None => 0,
    };
    while conn.pending.len() < len {
        if !fill(conn) {
            return None;
        }
    }
    Some(conn.pending.drain(..len).collect())
}

fn read_chunked(conn: &mut Conn) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(conn)?;
        let size_text = line.split(|&b| b == b';').next().unwrap_or(b"");
        let size = usize::from_str_radix(std::str::from_utf8(size_text).ok()?.trim(), 16).ok()?;
        if size == 0 {
            // Trailers, up to the empty line.
            while !read_line(conn)?.is_empty() {}
            return Some(body);
        }
        while conn.pending.len() < size + 2 {
            if !fill(conn) {
                return None;
            }
        }
        if &conn.pending[size..size + 2] != b"\r\n" {
            return None;
        }
        body.extend(conn.pending.drain(..size));
        conn.pending.drain(..2);
    }
}

/// One CRLF-terminated line, without the CRLF.
fn read_line(conn: &mut Conn) -> Option<Vec<u8>> {
    loop {
        if let Some(i) = conn.pending.windows(2).position(|w| w == b"\r\n") {
            let line = conn.pending[..i].to_vec();
            conn.pending.drain(..i + 2);
            return Some(line);
        }
        if conn.pending.len() > 64 * 1024 || !fill(conn) {
            return None;
        }
    }
}

pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        404 => "Not Found",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Whatever",
    }
}
