//! The admin listener (`[admin] bind`): `GET /` (the status page), `/metrics` (Prometheus
//! text), `/healthz`, `/status` (JSON), over HTTP/1.1 with one request per connection.
//! No authentication: it answers whoever reaches `[admin] bind`.
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
//! The status page (`status_page.html`, compiled in) is one self-contained document that
//! polls `/status` every second and does all its arithmetic (rates, percentiles over a
//! window) itself: the proxy keeps no history for it, and a page costs a scrape a second.
//!
//! On a graceful stop it keeps answering (`/healthz` 503) until the process exits. On an
//! upgrade the socket itself goes to the new binary with the listeners, and once that one
//! serves this process stops accepting on it ([`AdminHandle::stop`]) without closing it:
//! no health check meets the draining old process, and none waiting in the queue is lost.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::clock::now_ms;
use crate::control::listeners::Inherited;
use crate::metrics::Collector;
use crate::metrics::render::{self, Gauges};
use crate::metrics::status::{self, Layout, Process};
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
/// The status page: HTML, CSS and script in one file, nothing fetched from elsewhere.
const STATUS_PAGE: &str = include_str!("status_page.html");
/// What the page may load: only itself and `/status` from this origin (a stray external
/// reference fails in the browser instead of leaking the operator's view anywhere).
const PAGE_POLICY: &str = "Content-Security-Policy: default-src 'none'; \
     script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; \
     connect-src 'self'\r\n";

/// The bound admin socket, not yet serving.
pub struct AdminListener {
    listener: TcpListener,
    bind: SocketAddr,
}

/// Binds `[admin] bind` when the snapshot has it, or takes the socket an upgrading old
/// process handed over. Call before the workers start: an address that cannot be bound
/// fails start-up with this message.
pub fn bind(
    snapshot: &Snapshot,
    inherited: &mut Inherited,
) -> Result<Option<AdminListener>, String> {
    let Some(admin) = &snapshot.admin else {
        return Ok(None);
    };
    let bind = admin.bind;
    let listener = match inherited.take(bind).pop() {
        Some(fd) => Ok(TcpListener::from(fd)),
        None => crate::runtime::bind_reuseport(bind),
    };
    // Non-blocking: the accept thread waits in poll(2) so that it can be told to stop.
    let listener = listener
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| format!("admin listener on {bind}: cannot bind: {e}"))?;
    Ok(Some(AdminListener { listener, bind }))
}

/// What the serving threads share.
#[derive(Clone)]
struct Ctx {
    current: Arc<ArcSwap<Snapshot>>,
    collector: Collector,
    /// Each worker's event-loop driver, by worker id (for `/status`).
    drivers: Arc<[&'static str]>,
}

impl AdminListener {
    /// Starts serving: `current` for the gauges, `links` (`Running::links`) to reach the
    /// workers, `drivers` (`Running::drivers`) to tell. The threads run until the process
    /// exits or the handle closes the socket.
    pub fn spawn(
        self,
        current: Arc<ArcSwap<Snapshot>>,
        links: &[WorkerLink],
        drivers: &[&'static str],
    ) -> Result<AdminHandle, String> {
        let fail = |e: io::Error| format!("admin listener on {}: {e}", self.bind);
        let ctx = Ctx {
            current,
            collector: Collector::new(links).map_err(fail)?,
            drivers: drivers.into(),
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
            bind,
            stop: Arc::new(AtomicBool::new(false)),
        };
        let stop = handle.stop.clone();
        std::thread::Builder::new()
            .name("ringway-admin".into())
            .spawn(move || accept_loop(&listener, &tx, &stop))
            .map_err(fail)?;
        crate::info!("admin listener on {bind} (/ status page, /metrics, /healthz, /status)");
        Ok(handle)
    }
}

/// The control thread's hold on the admin socket.
pub struct AdminHandle {
    /// The control thread's own descriptor, for handing the socket to a new binary.
    socket: OwnedFd,
    bind: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl AdminHandle {
    /// The socket's address and descriptor, for `RINGWAY_LISTEN_FDS`.
    pub fn export(&self) -> (SocketAddr, RawFd) {
        (self.bind, self.socket.as_raw_fd())
    }

    /// Stops accepting (within `POLL_EVERY`) and leaves the socket open: the new binary of
    /// an upgrade accepts on it now, queued connections included.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// How often the accept thread looks whether it must stop.
const POLL_EVERY: Duration = Duration::from_millis(50);

/// Waits up to `POLL_EVERY` for a connection to accept on `fd`.
fn readable(fd: RawFd) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd we own; poll(2) only writes `revents`.
    unsafe { libc::poll(&mut pfd, 1, POLL_EVERY.as_millis() as libc::c_int) > 0 }
}

fn accept_loop(
    listener: &TcpListener,
    queue: &crossbeam_channel::Sender<TcpStream>,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::Relaxed) {
        if !readable(listener.as_raw_fd()) {
            continue;
        }
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            // Another process sharing the socket took it first.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                crate::debug!("admin accept: {e}");
                std::thread::sleep(ACCEPT_BACKOFF);
                continue;
            }
        };
        // Accepted sockets inherit nothing from the listener on Linux, but say it plainly:
        // the serving threads use blocking reads with timeouts.
        let _ = stream.set_nonblocking(false);
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
        r.extra_headers = "Allow: GET\r\n";
        return r;
    }
    let path = path.split('?').next().unwrap_or_default();
    match path {
        "/" => Response {
            status: 200,
            content_type: "text/html; charset=utf-8",
            body: STATUS_PAGE.to_string(),
            extra_headers: PAGE_POLICY,
        },
        "/healthz" => healthz(),
        "/metrics" => {
            let (report, gauges, _) = scrape(ctx);
            Response {
                status: 200,
                content_type: render::PROMETHEUS_CONTENT_TYPE,
                body: render::prometheus(&report, &gauges),
                extra_headers: "",
            }
        }
        "/status" => {
            let (report, gauges, snap) = scrape(ctx);
            let process = Process::read(&ctx.drivers);
            Response {
                status: 200,
                content_type: "application/json",
                body: status::status_json(&report, &gauges, &Layout::read(&snap), &process),
                extra_headers: "",
            }
        }
        _ => Response::text(404, "not found: try /, /metrics, /healthz or /status\n"),
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

/// The merged worker counters, the gauges read now, and the snapshot they were read from.
fn scrape(ctx: &Ctx) -> (crate::metrics::StatsReport, Gauges, Arc<Snapshot>) {
    let collected = ctx.collector.collect(COLLECT_WAIT);
    let snap = ctx.current.load_full();
    let mut gauges = Gauges::read(&snap, now_ms());
    gauges.missing_workers = collected.workers.saturating_sub(collected.answered);
    (collected.report, gauges, snap)
}

struct Response {
    status: u16,
    content_type: &'static str,
    body: String,
    /// Header lines of their own, each ending in CRLF (a 405's `Allow`, the page's policy).
    extra_headers: &'static str,
}

impl Response {
    fn text(status: u16, body: &str) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.to_string(),
            extra_headers: "",
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
        let mut out = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}\
             Cache-Control: no-store\r\nConnection: close\r\n\r\n",
            self.status,
            self.content_type,
            self.body.len(),
            self.extra_headers
        )
        .into_bytes();
        out.extend_from_slice(self.body.as_bytes());
        out
    }
}
