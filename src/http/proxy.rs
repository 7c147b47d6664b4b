//! One client connection: read a head, choose a server, stream both ways, repeat.
//!
//! [`serve`] is the connection loop; [`handle`] is one request: route → take the body bytes
//! that came with the head into the replay copy → attempts on servers chosen by the group's balancer (see
//! [`crate::http::attempt`]) → the response streamed down → keep-alive or close.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::ops::Range;
use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::net::TcpStream;

use crate::balance::Policy;
use crate::http::attempt::{self, Held, Outcome};
use crate::http::head::{HeadLimits, RequestBody, RequestHead, parse_request};
use crate::http::io::{Inbound, READ_CHUNK, STREAM_CHUNK, readable_within, write_all};
use crate::http::prompt_key::prompt_key;
use crate::http::rewrite::error_response;
use crate::http::stream::{ClientBodyError, Enough, RequestBodyState, relay};
use crate::http::vars::{RequestVars, UpstreamTry, partial_head};
use crate::snapshot::{GroupId, Listener, Snapshot};
use crate::upstream::pool::Pooled;
use crate::worker::{Admitted, LocalSnapshot, PARK_AFTER, Parked, Worker};

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
    /// The key of the current request: its rendered `hash_key`, or for `balance = "prompt"`
    /// its prompt key (empty when the body has none).
    pub key: Vec<u8>,
    /// The attempt records of the current request (lent to its `RequestVars`).
    pub tries: Vec<UpstreamTry>,
    /// With `proxy_protocol`: the idle upstream connection that carries this client's
    /// PROXY header, kept for this client's next request only (never pooled for others).
    /// Boxed: rare, and every idle connection's task carries this struct (see `scratch`).
    pub own_upstream: Option<Box<(SocketAddr, Pooled)>>,
}

/// Why no request head could be read.
enum HeadWait {
    /// The client closed or went idle: close without a word.
    Closed,
    /// Answer with this status and close.
    Reject(u16),
}

/// The configuration a connection is served with, kept across its requests.
struct Served {
    /// The newest snapshot that still has this listener: after a reload removed it, the
    /// connection finishes what it was promised (a keep-alive response means one more
    /// request may come) on the configuration it had.
    local: Rc<LocalSnapshot>,
    /// The listener's index in `local` (looked up again only when the snapshot changes).
    index: usize,
    /// Requests served so far.
    count: u32,
}

/// How a run of requests ([`requests`]) ended.
enum Busy {
    /// Kept alive with nothing pending: wait for the next request.
    Idle,
    Done,
    /// Switched protocols: relay bytes both ways with this idle timeout.
    Upgrade(TcpStream, Duration, Held),
}

/// Serves one client connection, accepted on the listener bound to `bind`, until it closes,
/// errs, or must not be kept; `held` (the connection's counters) is dropped at the end.
///
/// The future returned is what an idle connection's task holds, so it holds little: the
/// socket, empty buffers (`http::scratch`) and a readiness wait. Requests run in a boxed
/// future of their own ([`requests`]: one allocation from the worker's thread-local heap
/// when the client's bytes arrive, freed when the connection is idle again). It is a plain
/// function returning an `async` block, not an `async fn`: an `async fn` keeps its
/// arguments and the locals made from them side by side in its state. A connection idle
/// for longer than [`PARK_AFTER`] stops being a task at all (`worker::parked`).
pub fn serve(
    worker: Rc<Worker>,
    stream: TcpStream,
    peer: SocketAddr,
    bind: SocketAddr,
    held: Admitted,
) -> impl std::future::Future<Output = ()> {
    serve_from(worker, stream, peer, bind, held, None)
}

/// Serves a parked connection again: its socket turned readable (a request came, or the
/// client left).
pub fn resume(worker: Rc<Worker>, parked: Parked) {
    let Parked {
        socket,
        peer,
        bind,
        held,
        local,
        count,
        since,
        ..
    } = parked;
    let stream = match TcpStream::from_std(std::net::TcpStream::from(socket)) {
        Ok(stream) => stream,
        Err(e) => {
            crate::debug!("{peer}: resuming a parked connection: {e}");
            return;
        }
    };
    let resumed = Resumed {
        local,
        count,
        since,
    };
    monoio::spawn(serve_from(worker, stream, peer, bind, held, Some(resumed)));
}

/// Where a parked connection goes on from.
struct Resumed {
    local: Rc<LocalSnapshot>,
    count: u32,
    since: Instant,
}

fn serve_from(
    worker: Rc<Worker>,
    stream: TcpStream,
    peer: SocketAddr,
    bind: SocketAddr,
    held: Admitted,
    resumed: Option<Resumed>,
) -> impl std::future::Future<Output = ()> {
    let mut conn = Downstream {
        stream,
        peer,
        inbound: Inbound::from_vec(Vec::new()),
        head_buf: Vec::new(),
        up_in: Inbound::from_vec(Vec::new()),
        out: Vec::new(),
        key: Vec::new(),
        tries: Vec::new(),
        own_upstream: None,
    };
    // Made here and used in place by the async block: a value it takes apart or moves
    // would take room in every idle connection's task twice.
    let (local, count, mut since) = match resumed {
        Some(r) => (r.local, r.count, r.since),
        None => (worker.snapshot(), 0, Instant::now()),
    };
    // A listener gone already (a reload raced the accept): the loop ends at once.
    let index = local.snap.listener_index(bind).unwrap_or(usize::MAX);
    let mut served = Served {
        local,
        index,
        count,
    };
    async move {
        let worker = &worker;
        loop {
            let Some(spec) = served.local.snap.listeners.get(served.index) else {
                return;
            };
            let kept = served.count > 0;
            // A new connection's head is due within `client_header_timeout` of its accept;
            // a kept-alive one may wait `keepalive_timeout` for its first byte, then has
            // `client_header_timeout` for the rest.
            let header_timeout = spec.client_header_timeout;
            let wait = if kept {
                spec.keepalive_timeout.saturating_sub(since.elapsed())
            } else {
                header_timeout
            };
            conn.give_scratch(worker);
            // Between requests the connection is idle: a drain or a removed listener may
            // close it meanwhile.
            let slot = kept.then(|| {
                use std::os::fd::AsRawFd;
                worker.enter_idle(
                    spec.bind,
                    conn.stream.as_raw_fd(),
                    crate::clock::ms_at(since),
                )
            });
            // A connection that stays idle past `PARK_AFTER` is parked: its task ends.
            let parkable = kept && wait > PARK_AFTER && conn.own_upstream.is_none();
            let first_wait = if parkable { PARK_AFTER } else { wait };
            let ready = readable_within(&conn.stream, first_wait).await;
            if let Some(slot) = slot {
                worker.leave_idle(slot);
            }
            if parkable
                && ready
                    .as_ref()
                    .is_err_and(|e| e.kind() == ErrorKind::TimedOut)
            {
                match parkable_socket(&conn.stream) {
                    Ok(socket) => {
                        worker.park(Parked {
                            socket,
                            peer: conn.peer,
                            bind,
                            held,
                            local: served.local,
                            count: served.count,
                            since,
                            expires_ms: crate::clock::ms_at(since + wait),
                        });
                        return;
                    }
                    // No descriptor to spare (the process is at its limit): it waits on
                    // as a task and tries again after the next `PARK_AFTER`.
                    Err(e) => {
                        crate::debug!("{}: parking an idle connection: {e}", conn.peer);
                        continue;
                    }
                }
            }
            match ready {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::TimedOut && !kept => {
                    Box::pin(reject(worker, &served, &mut conn, 408, since)).await;
                    return;
                }
                Err(_) => return,
            }
            let ready = if kept { Instant::now() } else { since };
            let run = boxed_in_place(|| {
                requests(
                    worker,
                    &mut conn,
                    bind,
                    &mut served,
                    ready,
                    ready + header_timeout,
                )
            });
            match run.await {
                Busy::Idle => since = Instant::now(),
                Busy::Done => break,
                Busy::Upgrade(upstream, idle, server) => {
                    // The relay runs as a task of its own size; it keeps the counters.
                    conn.give_scratch(worker);
                    let client = conn.stream;
                    monoio::spawn(async move {
                        relay(client, upstream, idle).await;
                        drop(server);
                        drop(held);
                    });
                    return;
                }
            }
        }
        conn.give_scratch(worker);
    }
}

/// `make()`'s future in a box allocated before the future is made, so that the future is
/// written into the box where it is made. `Box::pin(make())` makes it on the stack first
/// and then copies all of it: the busy-period future is about 4 KiB (every state of a
/// request), most of it not yet written, and that copy, once per busy period, was the
/// largest `memmove` of a request in the profile.
fn boxed_in_place<F: std::future::Future>(make: impl FnOnce() -> F) -> std::pin::Pin<Box<F>> {
    let mut slot = Box::<F>::new_uninit();
    slot.write(make());
    // SAFETY: the slot was just written.
    Box::into_pin(unsafe { slot.assume_init() })
}

/// The socket of an idle connection as a descriptor of its own: the runtime's handle may
/// still be shared with the readiness wait just given up (an io_uring operation holds it
/// until its cancellation completes), so it is duplicated, and the runtime closes its copy.
fn parkable_socket(stream: &TcpStream) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::{AsRawFd, BorrowedFd};
    // SAFETY: the descriptor is open for as long as `stream` lives, which spans the call.
    unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) }.try_clone_to_owned()
}

/// Requests on one connection while it is busy: the first one's bytes have arrived; goes
/// on with pipelined ones and stops when the connection is idle, closes, or switches
/// protocols.
async fn requests(
    worker: &Rc<Worker>,
    conn: &mut Downstream,
    bind: SocketAddr,
    served: &mut Served,
    mut reading: Instant,
    mut deadline: Instant,
) -> Busy {
    loop {
        let Some(spec) = served.local.snap.listeners.get(served.index) else {
            return Busy::Done;
        };
        let head = match read_head(worker, conn, spec, reading, deadline).await {
            Ok(head) => head,
            Err(HeadWait::Closed) => return Busy::Done,
            Err(HeadWait::Reject(status)) => {
                reject(worker, served, conn, status, reading).await;
                linger(conn).await;
                return Busy::Done;
            }
        };
        let header_timeout = spec.client_header_timeout;
        // The head may have waited through a reload: the request uses the configuration
        // current now, unless the reload removed this listener.
        let fresh = worker.snapshot();
        if !Rc::ptr_eq(&fresh, &served.local)
            && let Some(i) = fresh.snap.listener_index(bind)
        {
            (served.local, served.index) = (fresh, i);
        }
        served.count += 1;
        conn.up_in = Inbound::from_vec(worker.lend_buffer(STREAM_CHUNK));
        conn.out = worker.lend_buffer(STREAM_CHUNK);
        let after = handle(
            worker,
            &served.local,
            served.index,
            conn,
            head,
            served.count,
        )
        .await;
        worker.return_buffer(conn.up_in.take_vec());
        worker.return_buffer(std::mem::take(&mut conn.out));
        match after {
            After::KeepAlive if conn.inbound.is_empty() => return Busy::Idle,
            After::KeepAlive => {}
            After::Close => return Busy::Done,
            After::Linger => {
                linger(conn).await;
                return Busy::Done;
            }
            After::Reset => {
                reset_on_close(&conn.stream);
                return Busy::Done;
            }
            After::Upgrade(upstream, idle, held) => return Busy::Upgrade(upstream, idle, held),
        }
        // A pipelined request: its head is due from now.
        reading = Instant::now();
        deadline = reading + header_timeout;
    }
}

/// Answers a head that could not be read with `status` (400, 408, 431) and logs it.
async fn reject(
    worker: &Worker,
    served: &Served,
    conn: &mut Downstream,
    status: u16,
    reading: Instant,
) {
    let sent = send_error(conn, status, true, false).await;
    log_rejected(worker, &served.local.snap, conn, status, sent, reading);
    let snap = &served.local.snap;
    worker.stats.request(snap, served.index, None, status, None);
}

/// What the connection does after a request.
pub enum After {
    KeepAlive,
    Close,
    /// Close, but the client may still be sending the request's body: [`linger`] first.
    Linger,
    /// Close with a reset (RST), not an orderly end of stream: the response was cut.
    Reset,
    /// Switched protocols: relay bytes both ways with this idle timeout; the server counts
    /// the connection as active until the relay ends.
    Upgrade(TcpStream, Duration, Held),
}

/// The longest a closing connection spends dropping what its client still sends.
const LINGER_TIME: Duration = Duration::from_secs(2);
/// The most it drops before closing anyway.
const LINGER_BYTES: u64 = 1 << 20;

/// Ends a connection whose request was answered before it was read whole (nginx's
/// lingering close). Closing a socket with unread bytes resets it, and a reset can destroy
/// the answer before the client has read it: so our side ends first (FIN), then what the
/// client still sends is read and dropped, never parsed, until it closes, or
/// [`LINGER_TIME`] passes, or [`LINGER_BYTES`] arrived; then the caller closes.
async fn linger(conn: &mut Downstream) {
    use monoio::io::AsyncWriteRent;
    let _ = conn.stream.shutdown().await;
    let deadline = Instant::now() + LINGER_TIME;
    let mut dropped = 0u64;
    while dropped < LINGER_BYTES {
        dropped += conn.inbound.pending().len() as u64;
        conn.inbound.consume(conn.inbound.pending().len());
        let left = deadline.saturating_duration_since(Instant::now());
        match conn.inbound.fill(&mut conn.stream, READ_CHUNK, left).await {
            Ok(n) if n > 0 => {}
            _ => return,
        }
    }
}

/// Reads and drops the rest of a body whose request was answered early with keep-alive
/// (nginx's discarded body): the connection serves its next request only if the rest,
/// at most `DISCARD_BYTES`, arrives within [`LINGER_TIME`].
async fn discard_rest(
    conn: &mut Downstream,
    spec: &Listener,
    body: &mut RequestBodyState,
) -> After {
    let deadline = Instant::now() + LINGER_TIME;
    match body
        .discard(&mut conn.stream, &mut conn.inbound, spec, deadline)
        .await
    {
        Ok(()) => After::KeepAlive,
        Err(ClientBodyError::TooLarge | ClientBodyError::Malformed) => After::Linger,
        Err(e) => {
            crate::debug!("{}: rest of an early-answered body: {e:?}", conn.peer);
            After::Close
        }
    }
}

/// Makes the close of `stream` a reset: a client reading a body until the connection ends
/// (an HTTP/1.0 client, a close-delimited response) then sees an error, not an end.
fn reset_on_close(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket fd this connection owns, with a pointer to a
    // correctly sized `linger` on the stack for the duration of the call.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        crate::debug!("SO_LINGER: {}", std::io::Error::last_os_error());
    }
}

/// Reads and parses the next request head and copies it into `conn.head_buf`; the whole
/// head must arrive by `deadline`. `now` is a fresh clock reading for the first read.
async fn read_head(
    worker: &Worker,
    conn: &mut Downstream,
    spec: &Listener,
    now: Instant,
    deadline: Instant,
) -> Result<RequestHead, HeadWait> {
    let limits = HeadLimits {
        max_header_size: spec.max_header_size,
    };
    let mut fresh_now = Some(now);
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
        }
        // The caller's `now` is fresh enough for the first read; later ones read the clock.
        let at = fresh_now.take().unwrap_or_else(Instant::now);
        let mut left = deadline.saturating_duration_since(at);
        // A head stopped part-way waits without a read buffer (see `http::scratch`).
        if conn.park_head(worker) {
            match readable_within(&conn.stream, left).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    return Err(HeadWait::Reject(408));
                }
                Err(_) => return Err(HeadWait::Closed),
            }
            left = deadline.saturating_duration_since(Instant::now());
        }
        conn.take_scratch(worker);
        match conn
            .inbound
            .fill(&mut conn.stream, HEAD_READ_ROOM, left)
            .await
        {
            Ok(0) => return Err(HeadWait::Closed),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                return Err(HeadWait::Reject(408));
            }
            Err(_) => return Err(HeadWait::Closed),
        }
    }
}

/// Free space a read of a request head asks for: the rest of a head rarely needs more, and
/// asking for a whole `READ_CHUNK` again after a partial head would double every trickling
/// client's buffer (a slowloris connection would then hold 32 KiB, not 16).
const HEAD_READ_ROOM: usize = 2 * 1024;

/// Sends one of ringway's own error responses; gives the body bytes sent.
pub async fn send_error(conn: &mut Downstream, status: u16, close: bool, head_only: bool) -> u64 {
    send_error_with(conn, status, close, head_only, None).await
}

/// [`send_error`] with a `Retry-After` header (seconds), for ringway's own 503s.
pub async fn send_error_with(
    conn: &mut Downstream,
    status: u16,
    close: bool,
    head_only: bool,
    retry_after: Option<u32>,
) -> u64 {
    let mut out = std::mem::take(&mut conn.out);
    out.clear();
    error_response(&mut out, status, close, head_only, retry_after);
    let body = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(0, |end| out.len() - end - 4);
    let (res, out) = write_all(&mut conn.stream, out, Duration::from_secs(10)).await;
    conn.out = out;
    if res.is_ok() { body as u64 } else { 0 }
}

/// The access-log line for bytes that never made a request (400, 408, 431 answered while
/// reading the head): what arrived, `-` for the rest, as nginx logs them.
fn log_rejected(
    worker: &Worker,
    snap: &Snapshot,
    conn: &Downstream,
    status: u16,
    body_bytes_sent: u64,
    started: Instant,
) {
    let received = conn.inbound.pending();
    let head = partial_head(received);
    let vars = RequestVars {
        buf: received,
        head: &head,
        partial: true,
        peer: conn.peer,
        worker: worker.id,
        started,
        upstream: None,
        tries: Vec::new(),
        status,
        body_bytes_sent,
        request_length: received.len() as u64,
        model: None,
    };
    worker.access_log.write(&snap.log, &vars);
}

/// One request: the checks before any server, the attempts, the access-log line.
async fn handle(
    worker: &Rc<Worker>,
    local: &LocalSnapshot,
    index: usize,
    conn: &mut Downstream,
    head: RequestHead,
    served: u32,
) -> After {
    let spec = &local.snap.listeners[index];
    let started = Instant::now();
    let head_only = head.is_head(&conn.head_buf);
    let mut head_buf = std::mem::take(&mut conn.head_buf);
    let mut body = RequestBodyState::new(head.body, spec.client_body_buffer_size);
    let early = prepare(conn, spec, &head, &mut body).await;
    let model = if early.is_ok() && spec.needs.model {
        append_model(&mut head_buf, &body)
    } else {
        None
    };
    let group_id = spec.route(
        &head_buf[head.path.clone()],
        head.host.as_ref().map(|h| &head_buf[h.clone()]),
        model.as_ref().map(|m| &head_buf[m.clone()]),
    );
    let group = &local.snap.groups[group_id];
    conn.key.clear();
    if early.is_ok() && group.peers.policy() == Policy::Prompt {
        let mut scratch = Vec::new();
        let prefix = body.prefix(&mut scratch);
        if let Some(key) = prompt_key(prefix, group.prompt_prefix) {
            conn.key.extend_from_slice(&prefix[key]);
        }
    }
    let mut vars = RequestVars {
        buf: &head_buf,
        head: &head,
        partial: false,
        peer: conn.peer,
        worker: worker.id,
        started,
        upstream: None,
        tries: std::mem::take(&mut conn.tries),
        status: 0,
        body_bytes_sent: 0,
        request_length: head.len as u64,
        model,
    };
    let after = match early {
        Ok(()) => {
            proxy(
                worker, local, spec, group_id, conn, &mut vars, &mut body, served, head_only,
            )
            .await
        }
        Err(Some(status)) => {
            vars.status = status;
            vars.body_bytes_sent = send_error(conn, status, true, head_only).await;
            After::Close
        }
        Err(None) => {
            vars.status = CLIENT_CLOSED;
            After::Close
        }
    };
    // Body bytes the client may still send must never be read as a request: they are
    // read and dropped through the body's framing, or the connection closes after
    // draining them for a while.
    let after = match after {
        After::KeepAlive if !body.complete => discard_rest(conn, spec, &mut body).await,
        After::Close if !body.complete => After::Linger,
        after => after,
    };
    vars.request_length = head.len as u64 + body.received();
    worker.access_log.write(&local.snap.log, &vars);
    let routed = Some((group_id, vars.upstream));
    worker
        .stats
        .request(&local.snap, index, routed, vars.status, Some(started));
    conn.tries = std::mem::take(&mut vars.tries);
    conn.tries.clear();
    conn.head_buf = head_buf;
    after
}

/// nginx's status for a request whose client went away before any response.
const CLIENT_CLOSED: u16 = 499;

/// Before any server: the body size limit, `100 Continue`, and the body bytes at hand
/// taken into the replay copy.
/// `Err(Some(status))`: answer with it and close; `Err(None)`: the client is gone.
async fn prepare(
    conn: &mut Downstream,
    spec: &Listener,
    head: &RequestHead,
    body: &mut RequestBodyState,
) -> Result<(), Option<u16>> {
    if let RequestBody::Length(n) = head.body
        && n > spec.client_max_body_size
    {
        return Err(Some(413));
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
            return Err(None);
        }
    }
    // The body is read (up to the copy's size) before a server is chosen only when the
    // choice or the request depends on it; otherwise it streams.
    let needs = spec.needs;
    let mut found = |prefix: &[u8]| {
        (!needs.model || crate::http::model::request_model(prefix).is_some())
            && (needs.prompt_prefix == 0 || prompt_key(prefix, needs.prompt_prefix).is_some())
    };
    let enough: Option<Enough<'_>> = if needs.model || needs.prompt_prefix > 0 {
        Some(&mut found)
    } else {
        None
    };
    body.preread(&mut conn.stream, &mut conn.inbound, spec, enough)
        .await
        .map_err(|e| client_body_status(&e))
}

/// Routes the request, runs the attempts, answers ringway's own errors, decides keep-alive.
#[allow(clippy::too_many_arguments)]
async fn proxy(
    worker: &Rc<Worker>,
    local: &LocalSnapshot,
    spec: &Listener,
    group_id: GroupId,
    conn: &mut Downstream,
    vars: &mut RequestVars<'_>,
    body: &mut RequestBodyState,
    served: u32,
    head_only: bool,
) -> After {
    let head = vars.head;
    // nginx: `keepalive_timeout 0` turns client keep-alive off, and says so.
    let keep_alive = head.keep_alive
        && served < spec.keepalive_requests
        && !spec.keepalive_timeout.is_zero()
        && !worker.must_close(spec.bind);
    let outcome = attempt::run(worker, local, spec, group_id, conn, vars, body, keep_alive).await;
    // ringway's own answer: an error status, or a refusal with `Retry-After`.
    let (status, close, retry_after) = match outcome {
        Outcome::Responded { keep_alive: true } => return After::KeepAlive,
        Outcome::Responded { keep_alive: false } => return After::Close,
        Outcome::Upgraded(upstream, idle, held) => return After::Upgrade(upstream, idle, held),
        Outcome::Aborted => {
            if vars.status == 0 {
                vars.status = CLIENT_CLOSED;
            }
            return After::Close;
        }
        Outcome::Cut => return After::Reset,
        Outcome::Error { status, close } => (status, close, None),
        Outcome::Refused { retry_after } => (503, false, Some(retry_after)),
    };
    // The request stream is intact only if the whole body is read (now, or by dropping
    // the rest after this answer), and nothing read past it was lost.
    let close = close
        || (!body.complete && !body.discardable())
        || body.input_lost
        || !keep_alive
        || worker.must_close(spec.bind);
    vars.status = status;
    vars.body_bytes_sent = send_error_with(conn, status, close, head_only, retry_after).await;
    if close {
        After::Close
    } else {
        After::KeepAlive
    }
}

/// Copies the body's `"model"` string behind the head in `head_buf`; gives where it went.
fn append_model(head_buf: &mut Vec<u8>, body: &RequestBodyState) -> Option<Range<usize>> {
    let mut scratch = Vec::new();
    let prefix = body.prefix(&mut scratch);
    let found = crate::http::model::request_model(prefix)?;
    let at = head_buf.len();
    head_buf.extend_from_slice(&prefix[found]);
    Some(at..head_buf.len())
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
