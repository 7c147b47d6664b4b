//! The admin listener (`[admin] bind`): `GET /metrics` (Prometheus text), `/healthz`,
//! `/status` (JSON), over HTTP/1.1 with one request per connection.
//!
//! It runs on its own threads with blocking std sockets, away from the workers: the
//! `ringway-admin` thread accepts and hands connections to `ADMIN_THREADS` serving threads
//! through a queue of `ADMIN_QUEUE`; a connection beyond that is answered 503 without
//! waiting and closed. Every read and write has a timeout and the whole request head a
//! deadline and a size limit, so the admin port can tie up a few threads for a few seconds
//! at most and nothing else. A scrape asks the workers for their counters
//! ([`crate::metrics::Collector`], at most `COLLECT_WAIT`) and reads the server marks and
//! the control state directly.
//!
//! On a graceful stop it keeps answering (`/healthz` 503) until the process exits. The
//! socket has `SO_REUSEPORT`, like the listeners, so the new binary of an upgrade can bind
//! the same address; once it serves, this process shuts its own admin socket
//! ([`AdminHandle::close`]) so that no health check meets the draining old process.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::clock::now_ms;
use crate::metrics::Collector;
use crate::metrics::render::{self, Gauges};
use crate::snapshot::Snapshot;
use crate::worker::inbox::WorkerLink;

/// Connections served at once.
const ADMIN_THREADS: usize = 4;
/// Accepted connections waiting for a serving thread; beyond it they get 503 at once.
const ADMIN_QUEUE: usize = 16;
/// Longest wait for one read or write.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// The whole request head must arrive within this.
const HEAD_DEADLINE: Duration = Duration::from_secs(5);
/// Largest request head read.
const MAX_HEAD: usize = 8 * 1024;
/// Longest wait for the workers' counters in one scrape.
const COLLECT_WAIT: Duration = Duration::from_secs(1);
/// Pause after an accept error (EMFILE and the like) so a full fd table does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The bound admin socket, not yet serving.
pub struct AdminListener {
    listener: TcpListener,
    bind: SocketAddr,
}

/// Binds `[admin] bind` when the snapshot has it. Call before the workers start: an
/// address that cannot be bound fails start-up with this message.
pub fn bind(snapshot: &Snapshot) -> Result<Option<AdminListener>, String> {
    let Some(admin) = &snapshot.admin else {
        return Ok(None);
    };
    let bind = admin.bind;
    let listener = crate::runtime::bind_reuseport(bind)
        .and_then(|l| l.set_nonblocking(false).map(|()| l))
        .map_err(|e| format!("admin listener on {bind}: cannot bind: {e}"))?;
    Ok(Some(AdminListener { listener, bind }))
}

/// What the serving threads share.
#[derive(Clone)]
struct Ctx {
    current: Arc<ArcSwap<Snapshot>>,
    collector: Collector,
}

impl AdminListener {
    /// Starts serving: `current` for the gauges, `links` (`Running::links`) to reach the
    /// workers. The threads run until the process exits or the handle closes the socket.
    pub fn spawn(
        self,
        current: Arc<ArcSwap<Snapshot>>,
        links: &[WorkerLink],
    ) -> Result<AdminHandle, String> {
        let fail = |e: io::Error| format!("admin listener on {}: {e}", self.bind);
        let ctx = Ctx {
            current,
            collector: Collector::new(links).map_err(fail)?,
        };
        let (tx, rx) = crossbeam_channel::bounded::<TcpStream>(ADMIN_QUEUE);
        for n in 0..ADMIN_THREADS {
            let (rx, ctx) = (rx.clone(), ctx.clone());
            std::thread::Builder::new()
                .name(format!("ringway-admin-{n}"))
                .spawn(move || {
                    for stream in rx {
                        serve_one(stream, &ctx);
                    }
                })
                .map_err(fail)?;
        }
        let bind = self.bind;
        let listener = self.listener;
        let handle = AdminHandle {
            socket: OwnedFd::from(listener.try_clone().map_err(fail)?),
        };
        std::thread::Builder::new()
            .name("ringway-admin".into())
            .spawn(move || accept_loop(&listener, &tx))
            .map_err(fail)?;
        crate::info!("admin listener on {bind} (/metrics, /healthz, /status)");
        Ok(handle)
    }
}

/// The control thread's hold on the admin socket.
pub struct AdminHandle {
    socket: OwnedFd,
}

impl AdminHandle {
    /// Stops accepting on this process's admin socket (the new binary of an upgrade has its
    /// own); the accept thread then ends.
    pub fn close(&self) {
        // SAFETY: shutdown(2) on a socket descriptor we own.
        unsafe { libc::shutdown(self.socket.as_raw_fd(), libc::SHUT_RDWR) };
    }
}

fn accept_loop(listener: &TcpListener, queue: &crossbeam_channel::Sender<TcpStream>) {
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            // Shut by `AdminHandle::close`.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return,
            Err(e) => {
                crate::debug!("admin accept: {e}");
                std::thread::sleep(ACCEPT_BACKOFF);
                continue;
            }
        };
        if let Err(crossbeam_channel::TrySendError::Full(mut stream)) = queue.try_send(stream) {
            // Every serving thread is busy and the queue is full: say so without waiting
            // (a fresh socket's send buffer takes these bytes at once).
            let _ = stream.set_nonblocking(true);
            let _ = stream.write_all(&Response::text(503, "busy\n").bytes());
        }
    }
}

/// Reads one request, answers it, closes.
fn serve_one(mut stream: TcpStream, ctx: &Ctx) {
    if stream.set_read_timeout(Some(IO_TIMEOUT)).is_err()
        || stream.set_write_timeout(Some(IO_TIMEOUT)).is_err()
    {
        return;
    }
    let response = match read_request(&mut stream) {
        Ok(Some((method, path))) => route(&method, &path, ctx),
        Ok(None) => Response::text(400, "bad request\n"),
        // Timed out or gone: nobody to answer.
        Err(_) => return,
    };
    let _ = stream.write_all(&response.bytes());
}

/// The method and path of one request head; `None` when it is malformed or too large.
fn read_request(stream: &mut TcpStream) -> io::Result<Option<(String, String)>> {
    let deadline = Instant::now() + HEAD_DEADLINE;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => {
                let method = req.method.unwrap_or_default().to_string();
                let path = req.path.unwrap_or_default().to_string();
                return Ok(Some((method, path)));
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
            _ => return Ok(None),
        }
        if Instant::now() >= deadline {
            return Err(io::ErrorKind::TimedOut.into());
        }
        match stream.read(&mut chunk)? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn route(method: &str, path: &str, ctx: &Ctx) -> Response {
    if method != "GET" {
        let mut r = Response::text(405, "only GET\n");
        r.allow_get = true;
        return r;
    }
    let path = path.split('?').next().unwrap_or_default();
    match path {
        "/healthz" => healthz(),
        "/metrics" => {
            let (report, gauges) = scrape(ctx);
            Response {
                status: 200,
                content_type: render::PROMETHEUS_CONTENT_TYPE,
                body: render::prometheus(&report, &gauges),
                allow_get: false,
            }
        }
        "/status" => {
            let (report, gauges) = scrape(ctx);
            Response {
                status: 200,
                content_type: "application/json",
                body: render::status_json(&report, &gauges),
                allow_get: false,
            }
        }
        _ => Response::text(404, "not found: try /metrics, /healthz or /status\n"),
    }
}

/// 200 while the process takes traffic; 503 from the moment a graceful stop begins.
fn healthz() -> Response {
    if crate::control::state::state().draining() {
        Response::text(503, "draining\n")
    } else {
        Response::text(200, "ok\n")
    }
}

/// The merged worker counters and the gauges read now.
fn scrape(ctx: &Ctx) -> (crate::metrics::StatsReport, Gauges) {
    let collected = ctx.collector.collect(COLLECT_WAIT);
    let snap = ctx.current.load_full();
    let mut gauges = Gauges::read(&snap, now_ms());
    gauges.missing_workers = collected.workers.saturating_sub(collected.answered);
    (collected.report, gauges)
}

struct Response {
    status: u16,
    content_type: &'static str,
    body: String,
    /// A 405 says what is allowed.
    allow_get: bool,
}

impl Response {
    fn text(status: u16, body: &str) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.to_string(),
            allow_get: false,
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            503 => "Service Unavailable",
            _ => "",
        };
        let allow = if self.allow_get { "Allow: GET\r\n" } else { "" };
        let mut out = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{allow}\
             Cache-Control: no-store\r\nConnection: close\r\n\r\n",
            self.status,
            self.content_type,
            self.body.len()
        )
        .into_bytes();
        out.extend_from_slice(self.body.as_bytes());
        out
    }
}
