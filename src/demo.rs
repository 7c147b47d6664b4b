//! `ringway demo`: three demo LLM-like backends and a proxy in front of them.
//!
//! The backends are a small, fast HTTP/1.1 server ([`wire`]) on one thread with one monoio
//! runtime: keep-alive, safe with pipelining (requests are answered one after another from
//! one buffer, and every request body is read so the next head is found where it starts),
//! `Expect: 100-continue`, HTTP/1.0. Every answer names the backend's port in its body and
//! in an `X-Backend` header, so a user can watch the balancer at work.
//!
//! `/`, `/health`, `/chat`, `/completions` and `/size/N` are the demo's own; every other
//! path (`/v1/chat/completions`, `/v1/completions`, `/metrics`, ...) goes to a simulated
//! LLM server ([`crate::llm_sim`]), one per backend. `ringway backend --llm` runs the same
//! server with only the simulator's paths.

pub(crate) mod wire;

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::rc::Rc;
use std::thread::JoinHandle;
use std::time::Duration;

use monoio::buf::IoBuf;
use monoio::io::AsyncWriteRent;
use monoio::net::{TcpListener, TcpStream};

use crate::llm_sim;
use crate::llm_sim::server::Engine;
use wire::*;

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
/// `/size/N` answers up to this size are cached whole (head and body) and sent in one write;
/// larger ones are sent as head + a slice of the shared filler (the extra write is noise next
/// to megabytes of body).
const CACHE_WHOLE_UP_TO: usize = 1 << 20;
const MAX_CACHED_RESPONSES: usize = 64;
/// SSE stream shape: this many token events, this far apart.
const SSE_EVENTS: usize = 8;
const SSE_GAP: Duration = Duration::from_millis(50);

/// The simulated LLM server behind a demo backend's `/v1/...` paths: `SSE_EVENTS` tokens
/// `SSE_GAP` apart, streamed unless the request says `"stream": false`, and a bodiless
/// `curl` is a chat too.
fn demo_llm() -> llm_sim::Options {
    llm_sim::Options {
        max_tokens: SSE_EVENTS as u32,
        decode_ms_per_token: SSE_GAP.as_secs_f64() * 1000.0,
        leniency: llm_sim::Leniency {
            stream_by_default: true,
            empty_body_ok: true,
        },
        ..llm_sim::Options::default()
    }
}

/// Starts demo backends on `addrs` (one thread with its own runtime) and returns at once.
///
/// Every address is bound before this returns, so a caller may connect right away; a bind
/// or runtime error is returned here rather than lost in the thread.
pub fn spawn_backends(addrs: Vec<SocketAddr>) -> io::Result<JoinHandle<()>> {
    spawn_sites(addrs, demo_llm(), true)
}

/// Starts backends on `addrs`, each with its own simulated LLM server made from `llm`,
/// and the demo's own paths when `demo_paths` is set (else only the simulator's).
pub(crate) fn spawn_sites(
    addrs: Vec<SocketAddr>,
    llm: llm_sim::Options,
    demo_paths: bool,
) -> io::Result<JoinHandle<()>> {
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
        .spawn(move || backend_thread(listeners, llm, demo_paths, started_tx))?;
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
    llm: llm_sim::Options,
    demo_paths: bool,
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
            let engine = match Engine::new(port, &llm) {
                Ok(engine) => engine,
                Err(e) => {
                    let _ = started.send(Err(io::Error::other(e)));
                    return;
                }
            };
            match TcpListener::from_std(std_listener) {
                Ok(listener) => {
                    let backend = Backend::new(port, engine, demo_paths);
                    monoio::spawn(accept_loop(listener, Rc::new(backend)));
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

/// One demo backend: its port, its simulated LLM server, and the `/size/N` answers it has
/// built.
struct Backend {
    port: u16,
    llm: Engine,
    /// Serve `/`, `/chat`, ... (`ringway demo`), or only the simulator (`backend --llm`).
    demo_paths: bool,
    /// Whole `/size/N` responses for small N, keyed by N.
    sized: RefCell<HashMap<usize, Rc<Vec<u8>>>>,
    /// Body bytes for large `/size/N`, grown to the largest N asked for.
    filler: RefCell<Rc<Vec<u8>>>,
}

impl Backend {
    fn new(port: u16, llm: Engine, demo_paths: bool) -> Self {
        Backend {
            port,
            llm,
            demo_paths,
            sized: RefCell::new(HashMap::new()),
            filler: RefCell::new(Rc::default()),
        }
    }

    /// Whether the demo answers `path` itself (else the simulated LLM server does).
    fn is_demo_path(&self, path: &str) -> bool {
        let path = path.split('?').next().unwrap_or("/");
        self.demo_paths
            && (matches!(path, "/" | "/health" | "/chat" | "/completions")
                || path.starts_with("/size/"))
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
        let answered = if backend.is_demo_path(&head.path) {
            let body_len = match conn.discard_body(head.body).await {
                Ok(n) => n,
                Err(_) => {
                    let _ = conn
                        .write(text_response(backend.port, 400, "bad body", false))
                        .await;
                    return;
                }
            };
            answer(&mut conn, &backend, &head, body_len).await
        } else {
            let body = match conn.read_body(head.body, backend.llm.max_body()).await {
                Ok(body) => body,
                Err(e) => {
                    let (status, text) = match e {
                        BodyError::TooLarge => (413, "request body too large\n".to_string()),
                        BodyError::Io(e) => (400, format!("bad body: {e}\n")),
                    };
                    let _ = conn
                        .write(text_response(backend.port, status, &text, false))
                        .await;
                    return;
                }
            };
            llm_sim::server::answer(&mut conn, &backend.llm, &head, body).await
        };
        if answered.is_err() || !head.keep_alive {
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

#[cfg(test)]
mod tests;
