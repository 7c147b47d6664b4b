//! One client connection: read a head, choose a server, stream both ways, repeat.
//!
//! [`serve`] is the connection loop; [`handle`] is one request: route → read the body up to
//! the replay buffer → attempts on servers chosen by the group's balancer (see
//! [`crate::http::attempt`]) → the response streamed down → keep-alive or close.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::net::TcpStream;

use crate::http::attempt::{self, Held, Outcome};
use crate::http::head::{HeadLimits, RequestBody, RequestHead, parse_request};
use crate::http::io::{Inbound, READ_CHUNK, STREAM_CHUNK, write_all};
use crate::http::rewrite::error_response;
use crate::http::stream::{ClientBodyError, RequestBodyState, relay};
use crate::http::vars::RequestVars;
use crate::snapshot::Listener;
use crate::worker::{LocalSnapshot, Worker};

/// A client connection and the buffers reused by every request on it.
pub struct Downstream {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    /// Bytes from the client not yet used (pipelined requests wait here).
    pub inbound: Inbound,
    /// A copy of the current request head (`RequestHead` ranges point into it).
    pub head_buf: Vec<u8>,
    /// Bytes from the server of the current attempt (a worker buffer lent per request).
    pub up_in: Inbound,
    /// Outgoing heads and bodies (a worker buffer lent per request).
    pub out: Vec<u8>,
    /// The rendered hash key of the current request.
    pub key: Vec<u8>,
}

/// Why no request head could be read.
enum HeadWait {
    /// The client closed or went idle: close without a word.
    Closed,
    /// Answer with this status and close.
    Reject(u16),
}

/// Serves one client connection, accepted on the listener bound to `bind`, until it closes,
/// errs, or must not be kept.
pub async fn serve(worker: &Rc<Worker>, stream: TcpStream, peer: SocketAddr, bind: SocketAddr) {
    let mut conn = Downstream {
        stream,
        peer,
        inbound: Inbound::new(),
        head_buf: Vec::new(),
        up_in: Inbound::from_vec(Vec::new()),
        out: Vec::new(),
        key: Vec::new(),
    };
    let mut served = 0u32;
    loop {
        if served > 0 && worker.must_close(bind) {
            return;
        }
        let waited = worker.snapshot();
        let Some(spec) = waited.snap.listener_by_bind(bind) else {
            return;
        };
        let head = match read_head(worker, &mut conn, spec, served > 0).await {
            Ok(head) => head,
            Err(HeadWait::Closed) => return,
            Err(HeadWait::Reject(status)) => {
                send_error(&mut conn, status, true, false).await;
                worker.stats.request(&waited.snap, bind, None, status, None);
                return;
            }
        };
        // The head may have waited through a reload: the request uses the configuration
        // current now, unless the reload removed this listener (then it finishes on the one
        // it arrived under, and the connection closes after it).
        let current = worker.snapshot();
        let local = if current.snap.listener_by_bind(bind).is_some() {
            current
        } else {
            waited
        };
        let Some(spec) = local.snap.listener_by_bind(bind) else {
            return;
        };
        served += 1;
        conn.up_in = Inbound::from_vec(worker.lend_buffer(STREAM_CHUNK));
        conn.out = worker.lend_buffer(STREAM_CHUNK);
        let after = handle(worker, &local, spec, &mut conn, head, served).await;
        worker.return_buffer(conn.up_in.take_vec());
        worker.return_buffer(std::mem::take(&mut conn.out));
        conn.inbound.shrink_idle();
        match after {
            After::KeepAlive => {}
            After::Close => return,
            After::Upgrade(upstream, idle, held) => {
                relay(conn.stream, upstream, idle).await;
                drop(held);
                return;
            }
        }
    }
}

/// What the connection does after a request.
pub enum After {
    KeepAlive,
    Close,
    /// Switched protocols: relay bytes both ways with this idle timeout; the server counts
    /// the connection as active until the relay ends.
    Upgrade(TcpStream, Duration, Held),
}

/// Reads and parses the next request head and copies it into `conn.head_buf`. An idle
/// keep-alive connection waits up to `keepalive_timeout` for the first byte; then the whole
/// head must arrive within `client_header_timeout`.
async fn read_head(
    worker: &Worker,
    conn: &mut Downstream,
    spec: &Listener,
    idle_first: bool,
) -> Result<RequestHead, HeadWait> {
    let limits = HeadLimits {
        max_header_size: spec.max_header_size,
    };
    let mut idle = idle_first && conn.inbound.is_empty();
    let mut deadline = Instant::now()
        + if idle {
            spec.keepalive_timeout
        } else {
            spec.client_header_timeout
        };
    loop {
        if !conn.inbound.is_empty() {
            match parse_request(conn.inbound.pending(), limits) {
                Ok(Some(head)) => {
                    conn.head_buf.clear();
                    conn.head_buf
                        .extend_from_slice(&conn.inbound.pending()[..head.len]);
                    conn.inbound.consume(head.len);
                    return Ok(head);
                }
                Ok(None) => {}
                Err(e) => {
                    crate::debug!("{}: bad request head: {e:?}", conn.peer);
                    return Err(HeadWait::Reject(e.status()));
                }
            }
            if idle {
                idle = false;
                deadline = Instant::now() + spec.client_header_timeout;
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        // Between requests the connection is idle: a drain or a removed listener may close it.
        let slot = if idle {
            use std::os::fd::AsRawFd;
            match worker.enter_idle(spec.bind, conn.stream.as_raw_fd()) {
                Some(slot) => Some(slot),
                None => return Err(HeadWait::Closed),
            }
        } else {
            None
        };
        let filled = conn.inbound.fill(&mut conn.stream, READ_CHUNK, left).await;
        if let Some(slot) = slot {
            worker.leave_idle(slot);
        }
        match filled {
            Ok(0) => return Err(HeadWait::Closed),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut && !idle => {
                return Err(HeadWait::Reject(408));
            }
            Err(_) => return Err(HeadWait::Closed),
        }
    }
}

/// Sends one of ringway's own error responses.
pub async fn send_error(conn: &mut Downstream, status: u16, close: bool, head_only: bool) {
    let mut out = std::mem::take(&mut conn.out);
    out.clear();
    error_response(&mut out, status, close, head_only);
    let (_, out) = write_all(&mut conn.stream, out, Duration::from_secs(10)).await;
    conn.out = out;
}

/// One request: route, read the body for replay, run the attempts, decide keep-alive.
async fn handle(
    worker: &Rc<Worker>,
    local: &LocalSnapshot,
    spec: &Listener,
    conn: &mut Downstream,
    head: RequestHead,
    served: u32,
) -> After {
    let started = Instant::now();
    let head_only = head.is_head(&conn.head_buf);
    let group_id = {
        let path = &conn.head_buf[head.path.clone()];
        let host = head.host.as_ref().map(|h| &conn.head_buf[h.clone()]);
        spec.route(path, host)
    };
    if let RequestBody::Length(n) = head.body
        && n > spec.client_max_body_size
    {
        send_error(conn, 413, true, head_only).await;
        let routed = Some((group_id, None));
        worker
            .stats
            .request(&local.snap, spec.bind, routed, 413, Some(started));
        return After::Close;
    }
    let has_body = matches!(head.body, RequestBody::Chunked | RequestBody::Length(1..));
    if head.expect_continue && has_body && conn.inbound.is_empty() {
        let (res, out) = write_all(
            &mut conn.stream,
            b"HTTP/1.1 100 Continue\r\n\r\n".to_vec(),
            spec.client_body_timeout,
        )
        .await;
        drop(out);
        if res.is_err() {
            return After::Close;
        }
    }
    let mut body = RequestBodyState::new(head.body);
    if let Err(e) = body
        .preread(&mut conn.stream, &mut conn.inbound, spec)
        .await
    {
        if let Some(status) = client_body_status(&e) {
            send_error(conn, status, true, head_only).await;
            let routed = Some((group_id, None));
            worker
                .stats
                .request(&local.snap, spec.bind, routed, status, Some(started));
        }
        return After::Close;
    }
    let head_buf = std::mem::take(&mut conn.head_buf);
    let mut vars = RequestVars {
        buf: &head_buf,
        head: &head,
        peer: conn.peer,
        worker: worker.id,
        started,
        upstream: None,
        upstream_status: 0,
        status: 0,
        body_bytes_sent: 0,
        request_length: head.len as u64,
    };
    // nginx: `keepalive_timeout 0` turns client keep-alive off, and says so.
    let keep_alive = head.keep_alive
        && served < spec.keepalive_requests
        && !spec.keepalive_timeout.is_zero()
        && !worker.must_close(spec.bind);
    let outcome = attempt::run(
        worker, local, spec, group_id, conn, &mut vars, &mut body, keep_alive,
    )
    .await;
    // Counted once answered: a response cut short counts with the status it was sent
    // with; a request whose client left before any response is not counted.
    let code = match &outcome {
        Outcome::Error { status, .. } => *status,
        _ => vars.status,
    };
    let routed = Some((group_id, vars.upstream));
    // `vars` borrows `head_buf`; it is not used past the attempts.
    let after = match outcome {
        Outcome::Responded { keep_alive } => {
            if keep_alive {
                After::KeepAlive
            } else {
                After::Close
            }
        }
        Outcome::Error { status, close } => {
            // The request stream is intact only if the whole body was read.
            let close = close || !body.complete || !keep_alive;
            send_error(conn, status, close, head_only).await;
            if close {
                After::Close
            } else {
                After::KeepAlive
            }
        }
        Outcome::Upgraded(upstream, idle, held) => After::Upgrade(upstream, idle, held),
        Outcome::Aborted => After::Close,
    };
    if code != 0 {
        worker
            .stats
            .request(&local.snap, spec.bind, routed, code, Some(started));
    }
    conn.head_buf = head_buf;
    after
}

/// The status for a client body failure, or `None` when there is nobody to answer.
pub fn client_body_status(e: &ClientBodyError) -> Option<u16> {
    match e {
        ClientBodyError::TooLarge => Some(413),
        ClientBodyError::Malformed => Some(400),
        ClientBodyError::Timeout => Some(408),
        ClientBodyError::Gone => None,
    }
}
