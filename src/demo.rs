//! `ringway demo`: three demo LLM-like backends and a proxy in front of them.
//!
//! The backends are a small, fast HTTP/1.1 server on one thread with one monoio runtime:
//! keep-alive, safe with pipelining (requests are answered one after another from one
//! buffer, and every request body is read and discarded so the next head is found where it
//! starts), `Expect: 100-continue`, HTTP/1.0. Every answer names the backend's port in its
//! body and in an `X-Backend` header, so a user can watch the balancer at work.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::rc::Rc;
use std::thread::JoinHandle;
use std::time::Duration;

use monoio::buf::{IoBuf, IoBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::{TcpListener, TcpStream};

/// Where `ringway demo` puts its proxy and its backends.
const DEMO_PROXY: &str = "127.0.0.1:1700";
const DEMO_BACKEND_PORTS: [u16; 3] = [1701, 1702, 1703];

/// The demo's configuration: one listener, three backends, least_conn.
const DEMO_CONFIG: &str = r#"
[runtime]
workers = "auto"
pin_workers = false

[[listener]]
name = "demo"
bind = "127.0.0.1:1700"
mode = "http"
upstream = "llm"
response_headers = { "X-Upstream" = "$upstream_addr" }

[upstreams.llm]
balance = "least_conn"
servers = [
  { addr = "127.0.0.1:1701" },
  { addr = "127.0.0.1:1702" },
  { addr = "127.0.0.1:1703" },
]
"#;

/// Largest body `/size/N` serves.
const MAX_SIZE_BODY: usize = 64 << 20;
/// Largest request head a demo backend accepts (431 beyond).
const MAX_HEAD: usize = 64 << 10;
const MAX_HEADERS: usize = 64;
/// `/size/N` answers up to this size are cached whole (head and body) and sent in one write;
/// larger ones are sent as head + a slice of the shared filler (the extra write is noise next
/// to megabytes of body).
const CACHE_WHOLE_UP_TO: usize = 1 << 20;
const MAX_CACHED_RESPONSES: usize = 64;
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
/// SSE stream shape: this many token events, this far apart.
const SSE_EVENTS: usize = 8;
const SSE_GAP: Duration = Duration::from_millis(50);
const SSE_TOKENS: [&str; SSE_EVENTS] = [
    "Hello", " from", " a", " ringway", " demo", " backend", " on", " port",
];

/// Starts demo backends on `addrs` (one thread with its own runtime) and returns at once.
///
/// Every address is bound before this returns, so a caller may connect right away; a bind
/// or runtime error is returned here rather than lost in the thread.
pub fn spawn_backends(addrs: Vec<SocketAddr>) -> io::Result<JoinHandle<()>> {
    let mut listeners = Vec::with_capacity(addrs.len());
    for addr in &addrs {
        let listener = std::net::TcpListener::bind(addr)?;
        // The legacy (epoll) driver expects non-blocking sockets; io_uring does not mind.
        listener.set_nonblocking(true)?;
        listeners.push(listener);
    }
    let (started_tx, started_rx) = std::sync::mpsc::sync_channel::<io::Result<()>>(1);
    let handle = std::thread::Builder::new()
        .name("demo-backends".into())
        .spawn(move || backend_thread(listeners, started_tx))?;
    match started_rx.recv() {
        Ok(Ok(())) => Ok(handle),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(io::Error::other(
            "demo backend thread exited during start-up",
        )),
    }
}

/// The backend thread: builds the runtime, reports start-up, then serves forever.
fn backend_thread(
    listeners: Vec<std::net::TcpListener>,
    started: std::sync::mpsc::SyncSender<io::Result<()>>,
) {
    let runtime = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build();
    let mut runtime = match runtime {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = started.send(Err(e));
            return;
        }
    };
    runtime.block_on(async move {
        for std_listener in listeners {
            let port = match std_listener.local_addr() {
                Ok(addr) => addr.port(),
                Err(e) => {
                    let _ = started.send(Err(e));
                    return;
                }
            };
            match TcpListener::from_std(std_listener) {
                Ok(listener) => {
                    monoio::spawn(accept_loop(listener, Rc::new(Backend::new(port))));
                }
                Err(e) => {
                    let _ = started.send(Err(e));
                    return;
                }
            }
        }
        let _ = started.send(Ok(()));
        std::future::pending::<()>().await;
    });
}

/// `ringway demo`: backends on 127.0.0.1:1701-1703, proxy on 127.0.0.1:1700, until Ctrl-C.
pub fn run() -> Result<(), String> {
    let addrs = DEMO_BACKEND_PORTS
        .iter()
        .map(|&port| SocketAddr::from(([127, 0, 0, 1], port)));
    let _backends = spawn_backends(addrs.collect())
        .map_err(|e| format!("cannot start the demo backends on 127.0.0.1:1701-1703: {e}"))?;
    let snapshot =
        crate::config::load_str(DEMO_CONFIG, Path::new("<demo>"), 1).map_err(|errors| {
            let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            format!(
                "the built-in demo configuration is invalid:\n{}",
                lines.join("\n")
            )
        })?;
    println!("{}", demo_banner());
    crate::serve(snapshot, crate::control::Handover::default())
        .map_err(|e| format!("demo proxy on {DEMO_PROXY}: {e}"))
}

/// What `ringway demo` prints: where things listen and how to try them.
fn demo_banner() -> String {
    let p = DEMO_PROXY;
    format!(
        "ringway demo: proxy on http://{p} (least_conn) in front of backends \
         127.0.0.1:1701, 127.0.0.1:1702, 127.0.0.1:1703\n\
         \n\
         Try it (every answer names its backend in the body and in X-Backend):\n\
         \x20 curl -i http://{p}/\n\
         \x20 curl -s http://{p}/chat -H 'Content-Type: application/json' -d '{{\"prompt\":\"hi\"}}'\n\
         \x20 curl -s http://{p}/completions -d '{{\"prompt\":\"hi\"}}'\n\
         \x20 curl -N http://{p}/v1/chat/completions -d '{{\"stream\":true}}'   # SSE, token by token\n\
         \x20 curl -s -o /dev/null -w '%{{size_download}} bytes\\n' http://{p}/size/1048576\n\
         \n\
         Benchmark it:\n\
         \x20 ab -n 1000 -c 10 http://{p}/\n\
         \x20 wrk -t1 -c32 -d10s http://{p}/\n\
         \n\
         Ctrl-C stops the proxy and the backends."
    )
}

/// One demo backend: its port and the `/size/N` answers it has built.
struct Backend {
    port: u16,
    /// Whole `/size/N` responses for small N, keyed by N.
    sized: RefCell<HashMap<usize, Rc<Vec<u8>>>>,
    /// Body bytes for large `/size/N`, grown to the largest N asked for.
    filler: RefCell<Rc<Vec<u8>>>,
}

impl Backend {
    fn new(port: u16) -> Self {
        Backend {
            port,
            sized: RefCell::new(HashMap::new()),
            filler: RefCell::new(Rc::default()),
        }
    }

    /// The body pattern: the port, repeated, so even a raw byte dump names the backend.
    fn fill(&self, out: &mut Vec<u8>, n: usize) {
        let unit = format!("{} ", self.port).into_bytes();
        out.extend(unit.iter().copied().cycle().take(n));
    }

    /// The whole answer to `/size/n` when it is small enough to cache.
    fn sized_response(&self, n: usize, keep_alive: bool) -> Rc<Vec<u8>> {
        let key = n * 2 + usize::from(keep_alive);
        if let Some(cached) = self.sized.borrow().get(&key) {
            return cached.clone();
        }
        let mut out = response_head(self.port, 200, "application/octet-stream", n, keep_alive);
        self.fill(&mut out, n);
        let out = Rc::new(out);
        let mut sized = self.sized.borrow_mut();
        if sized.len() >= MAX_CACHED_RESPONSES {
            sized.clear();
        }
        sized.insert(key, out.clone());
        out
    }

    /// The shared body bytes, at least `n` long.
    fn filler(&self, n: usize) -> Rc<Vec<u8>> {
        let mut filler = self.filler.borrow_mut();
        if filler.len() < n {
            let mut bytes = Vec::with_capacity(n);
            self.fill(&mut bytes, n);
            *filler = Rc::new(bytes);
        }
        filler.clone()
    }
}

async fn accept_loop(listener: TcpListener, backend: Rc<Backend>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                monoio::spawn(serve_conn(stream, backend.clone()));
            }
            // Out of descriptors or similar: back off instead of spinning.
            Err(_) => monoio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// How a request body is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BodyFrame {
    None,
    Length(u64),
    Chunked,
}

/// What the server needs from one request head.
#[derive(Debug)]
struct Head {
    len: usize,
    method: String,
    path: String,
    http11: bool,
    keep_alive: bool,
    body: BodyFrame,
    expect_continue: bool,
}

/// Why a head was refused: the status to answer before closing.
#[derive(Debug, PartialEq, Eq)]
enum HeadError {
    Malformed,
    TooLarge,
}

/// Parses a request head at the start of `buf`; `Ok(None)` means read more.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => return Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => return Err(HeadError::Malformed),
    };
    let http11 = req.version == Some(1);
    let mut head = Head {
        len,
        method: req.method.unwrap_or("GET").to_string(),
        path: req.path.unwrap_or("/").to_string(),
        http11,
        keep_alive: http11,
        body: BodyFrame::None,
        expect_continue: false,
    };
    for h in req.headers.iter() {
        let value = String::from_utf8_lossy(h.value);
        let value = value.trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = value.parse::<u64>().map_err(|_| HeadError::Malformed)?;
            if head.body != BodyFrame::None && head.body != BodyFrame::Length(n) {
                return Err(HeadError::Malformed);
            }
            head.body = BodyFrame::Length(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            let last = value.rsplit(',').next().unwrap_or("").trim();
            if !last.eq_ignore_ascii_case("chunked") || matches!(head.body, BodyFrame::Length(_)) {
                return Err(HeadError::Malformed);
            }
            head.body = BodyFrame::Chunked;
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    head.keep_alive = false;
                } else if token.eq_ignore_ascii_case("keep-alive") && !http11 {
                    head.keep_alive = true;
                }
            }
        } else if h.name.eq_ignore_ascii_case("expect") {
            head.expect_continue = value.eq_ignore_ascii_case("100-continue");
        }
    }
    // Content-Length and Transfer-Encoding in the other order.
    if head.body == BodyFrame::Chunked
        && req
            .headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("content-length"))
    {
        return Err(HeadError::Malformed);
    }
    Ok(Some(head))
}

/// Incremental skipper for a chunked body: finds where it ends, keeps none of it.
#[derive(Debug)]
enum ChunkSkip {
    Size { n: u64, digits: u32 },
    Ext { n: u64 },
    SizeLf { n: u64 },
    Data(u64),
    DataCr,
    DataLf,
    TrailerStart,
    TrailerLine,
    FinalLf,
    Done,
}

impl ChunkSkip {
    fn new() -> Self {
        ChunkSkip::Size { n: 0, digits: 0 }
    }

    /// Consumes bytes of `input` that belong to the body; stops right after its end.
    /// Returns how many bytes were consumed, or `Err` on bad framing.
    fn feed(&mut self, input: &[u8]) -> Result<usize, ()> {
        let mut i = 0;
        while i < input.len() {
            if let ChunkSkip::Data(left) = self {
                let take = (*left).min((input.len() - i) as u64);
                i += take as usize;
                *left -= take;
                if *left == 0 {
                    *self = ChunkSkip::DataCr;
                }
                continue;
            }
            let b = input[i];
            i += 1;
            *self = match (&*self, b) {
                (ChunkSkip::Size { n, digits }, _) if b.is_ascii_hexdigit() => {
                    let d = (b as char).to_digit(16).unwrap_or(0) as u64;
                    let n = n.checked_mul(16).and_then(|n| n.checked_add(d)).ok_or(())?;
                    ChunkSkip::Size {
                        n,
                        digits: digits + 1,
                    }
                }
                (ChunkSkip::Size { n, digits }, b';' | b' ' | b'\t') if *digits > 0 => {
                    ChunkSkip::Ext { n: *n }
                }
                (ChunkSkip::Size { n, digits }, b'\r') if *digits > 0 => {
                    ChunkSkip::SizeLf { n: *n }
                }
                (ChunkSkip::Ext { n }, b'\r') => ChunkSkip::SizeLf { n: *n },
                (ChunkSkip::Ext { .. }, b'\n') => return Err(()),
                (ChunkSkip::Ext { n }, _) => ChunkSkip::Ext { n: *n },
                (ChunkSkip::SizeLf { n: 0 }, b'\n') => ChunkSkip::TrailerStart,
                (ChunkSkip::SizeLf { n }, b'\n') => ChunkSkip::Data(*n),
                (ChunkSkip::DataCr, b'\r') => ChunkSkip::DataLf,
                (ChunkSkip::DataLf, b'\n') => ChunkSkip::Size { n: 0, digits: 0 },
                (ChunkSkip::TrailerStart, b'\r') => ChunkSkip::FinalLf,
                (ChunkSkip::TrailerStart | ChunkSkip::TrailerLine, b'\n') => {
                    ChunkSkip::TrailerStart
                }
                (ChunkSkip::TrailerStart | ChunkSkip::TrailerLine, _) => ChunkSkip::TrailerLine,
                (ChunkSkip::FinalLf, b'\n') => {
                    *self = ChunkSkip::Done;
                    return Ok(i);
                }
                _ => return Err(()),
            };
        }
        Ok(i)
    }

    fn is_done(&self) -> bool {
        matches!(self, ChunkSkip::Done)
    }
}

/// One client connection: its socket and the bytes read but not yet used.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    /// Reads more bytes onto the end of `buf`; `Ok(0)` is end of stream.
    async fn fill(&mut self) -> io::Result<usize> {
        let len = self.buf.len();
        self.buf.reserve(16 * 1024);
        let buf = std::mem::take(&mut self.buf);
        let (res, slice) = self.stream.read(buf.slice_mut(len..)).await;
        self.buf = slice.into_inner();
        res
    }

    async fn write<T: IoBuf + 'static>(&mut self, bytes: T) -> io::Result<()> {
        let (res, _) = self.stream.write_all(bytes).await;
        res.map(|_| ())
    }

    /// Reads and drops the body; returns its length.
    async fn discard_body(&mut self, frame: BodyFrame) -> io::Result<u64> {
        match frame {
            BodyFrame::None => Ok(0),
            BodyFrame::Length(mut left) => {
                let total = left;
                while left > 0 {
                    if self.buf.is_empty() && self.fill().await? == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                    let take = left.min(self.buf.len() as u64) as usize;
                    self.buf.drain(..take);
                    left -= take as u64;
                }
                Ok(total)
            }
            BodyFrame::Chunked => {
                let mut skip = ChunkSkip::new();
                let mut total = 0;
                loop {
                    let used = skip.feed(&self.buf).map_err(|()| bad_chunk())?;
                    self.buf.drain(..used);
                    total += used as u64;
                    if skip.is_done() {
                        return Ok(total);
                    }
                    if self.fill().await? == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                }
            }
        }
    }
}

fn bad_chunk() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "malformed chunked body")
}

/// Serves requests on one connection until the client closes or must be closed.
async fn serve_conn(stream: TcpStream, backend: Rc<Backend>) {
    let mut conn = Conn {
        stream,
        buf: Vec::with_capacity(16 * 1024),
    };
    loop {
        let head = loop {
            match parse_head(&conn.buf) {
                Ok(Some(head)) => break head,
                Ok(None) => match conn.fill().await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                },
                Err(e) => {
                    let (status, text) = match e {
                        HeadError::Malformed => (400, "malformed request"),
                        HeadError::TooLarge => (431, "request head too large"),
                    };
                    let _ = conn
                        .write(text_response(backend.port, status, text, false))
                        .await;
                    return;
                }
            }
        };
        conn.buf.drain(..head.len);
        let wants_continue = head.expect_continue && head.http11 && head.body != BodyFrame::None;
        if wants_continue && conn.write(CONTINUE).await.is_err() {
            return;
        }
        let body_len = match conn.discard_body(head.body).await {
            Ok(n) => n,
            Err(_) => {
                let _ = conn
                    .write(text_response(backend.port, 400, "bad body", false))
                    .await;
                return;
            }
        };
        if answer(&mut conn, &backend, &head, body_len).await.is_err() || !head.keep_alive {
            let _ = conn.stream.shutdown().await;
            return;
        }
    }
}

/// Writes the answer to one request.
async fn answer(conn: &mut Conn, backend: &Backend, head: &Head, body_len: u64) -> io::Result<()> {
    let port = backend.port;
    let path = head.path.split('?').next().unwrap_or("/");
    let ka = head.keep_alive;
    let is_head = head.method == "HEAD";
    let reply = match path {
        "/" => text_response(port, 200, &format!("ringway demo backend {port}\n"), ka),
        "/health" => text_response(port, 200, &format!("ok {port}\n"), ka),
        "/chat" if head.method == "GET" || head.method == "POST" => {
            let body = format!(
                "{{\"backend\":{port},\"reply\":\"Hello from the demo backend on port {port}.\",\
                 \"request_bytes\":{body_len}}}\n"
            );
            json_response(port, &body, ka)
        }
        "/chat" => text_response(
            port,
            405,
            &format!("use GET or POST (backend {port})\n"),
            ka,
        ),
        "/completions" => {
            let body = format!(
                "{{\"backend\":{port},\"object\":\"text_completion\",\"choices\":[{{\"index\":0,\
                 \"text\":\"Hello from the demo backend on port {port}.\"}}],\
                 \"request_bytes\":{body_len}}}\n"
            );
            json_response(port, &body, ka)
        }
        "/v1/chat/completions" => return stream_events(conn, port, head.http11, ka).await,
        _ => match path
            .strip_prefix("/size/")
            .and_then(|n| n.parse::<usize>().ok())
        {
            Some(n) if n <= MAX_SIZE_BODY => {
                return send_sized(conn, backend, n, ka, is_head).await;
            }
            Some(_) => text_response(
                port,
                400,
                &format!("at most {MAX_SIZE_BODY} (backend {port})\n"),
                ka,
            ),
            None => text_response(
                port,
                404,
                &format!("no route for {path} on backend {port}\n"),
                ka,
            ),
        },
    };
    if is_head {
        let end = reply
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(reply.len(), |i| i + 4);
        return conn.write(reply[..end].to_vec()).await;
    }
    conn.write(reply).await
}

/// `/size/N`: N bytes of body, from prebuilt bytes.
async fn send_sized(
    conn: &mut Conn,
    backend: &Backend,
    n: usize,
    keep_alive: bool,
    is_head: bool,
) -> io::Result<()> {
    if is_head {
        let head = response_head(backend.port, 200, "application/octet-stream", n, keep_alive);
        return conn.write(head).await;
    }
    if n <= CACHE_WHOLE_UP_TO {
        return conn.write(backend.sized_response(n, keep_alive)).await;
    }
    let head = response_head(backend.port, 200, "application/octet-stream", n, keep_alive);
    conn.write(head).await?;
    conn.write(backend.filler(n).slice(..n)).await
}

/// `/v1/chat/completions`: an SSE token stream, one event every `SSE_GAP`.
async fn stream_events(
    conn: &mut Conn,
    port: u16,
    http11: bool,
    keep_alive: bool,
) -> io::Result<()> {
    // An HTTP/1.0 client cannot read chunked: send the stream raw and end it by closing.
    let chunked = http11;
    let mut head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\
         X-Backend: {port}\r\n"
    );
    head.push_str(if chunked {
        "Transfer-Encoding: chunked\r\n"
    } else {
        "Connection: close\r\n"
    });
    if chunked && !keep_alive {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    conn.write(head.into_bytes()).await?;
    for (i, token) in SSE_TOKENS.iter().enumerate() {
        let event = format!(
            "data: {{\"backend\":{port},\"index\":{i},\"choices\":[{{\"delta\":{{\"content\":\"{token}\"}}}}]}}\n\n"
        );
        conn.write(frame(event.as_bytes(), chunked)).await?;
        monoio::time::sleep(SSE_GAP).await;
    }
    let done =
        format!("data: {{\"backend\":{port},\"finish_reason\":\"stop\"}}\n\ndata: [DONE]\n\n");
    let mut last = frame(done.as_bytes(), chunked);
    if chunked {
        last.extend_from_slice(b"0\r\n\r\n");
        conn.write(last).await
    } else {
        conn.write(last).await?;
        // Close-delimited: the client only knows the body ended when the socket closes.
        Err(io::ErrorKind::ConnectionAborted.into())
    }
}

/// `data` as one chunk, or as is.
fn frame(data: &[u8], chunked: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 12);
    if chunked {
        out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    }
    out.extend_from_slice(data);
    if chunked {
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Unknown",
    }
}

fn response_head(
    port: u16,
    status: u16,
    content_type: &str,
    len: usize,
    keep_alive: bool,
) -> Vec<u8> {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {len}\r\n\
         X-Backend: {port}\r\nConnection: {connection}\r\n\r\n",
        reason(status)
    )
    .into_bytes()
}

fn text_response(port: u16, status: u16, body: &str, keep_alive: bool) -> Vec<u8> {
    let mut out = response_head(
        port,
        status,
        "text/plain; charset=utf-8",
        body.len(),
        keep_alive,
    );
    out.extend_from_slice(body.as_bytes());
    out
}

fn json_response(port: u16, body: &str, keep_alive: bool) -> Vec<u8> {
    let mut out = response_head(port, 200, "application/json", body.len(), keep_alive);
    out.extend_from_slice(body.as_bytes());
    out
}

#[cfg(test)]
mod tests;
