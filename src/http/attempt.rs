//! Attempts of one request on the servers of its group: choose a server, take a pooled
//! connection or dial, send the request, read the response head, then either retry on
//! another server (nginx `proxy_next_upstream`) or stream the response to the client.
//!
//! The retry rules, in one place ([`Retry::verdict`]):
//! - a failure on a *reused* pooled connection before any response byte arrived is retried
//!   once on a fresh connection to the same server, silently (the server had closed it) —
//!   for a non-idempotent request only when the failure came while sending (the server
//!   cannot have acted on a request it did not get whole);
//! - otherwise a failed attempt is retried on another server when `next_upstream` names the
//!   failure, tries and `next_upstream_timeout` are left, and either the connect itself
//!   failed (nothing was sent) or the method is idempotent (or `retry_non_idempotent`) and
//!   the body can be sent again (every byte read so far is in the replay copy);
//! - never once any byte of a response has been sent to the client.
//!
//! Every failed attempt is logged with the reason it was or was not retried.

use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::balance::{Pick, PickKey, Policy, Tried};
use crate::clock::now_ms;
use crate::http::gzip::{self, Plan};
use crate::http::head::{ResponseBody, ResponseHead, Version, parse_response};
use crate::http::io::{GATHER_FROM, STREAM_CHUNK, write_all, write_gathered};
use crate::http::proxy::{Downstream, client_body_status};
use crate::http::queued::{self, Slot};
use crate::http::retry_after;
use crate::http::rewrite::{DownFraming, ResponseHeadOut, request_head, response_head};
use crate::http::spliced::{HEAD_READ, LONG_BODY};
use crate::http::stream::{
    CopyEnd, CopyError, CopyEvent, CopyTimeouts, RequestBodyState, StreamError, UpFraming,
    copy_response,
};
use crate::http::vars::RequestVars;
use crate::http::watch::{peek, unless_client_leaves};
use crate::nowait::Peeked;
use crate::snapshot::{Group, GroupId, Listener, ProxyProtocol};
use crate::upstream::connect::dial;
use crate::upstream::pool::Pooled;
use crate::worker::{LocalSnapshot, Worker};

/// Largest response head accepted from a server.
pub const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// How a request ended, as far as the client connection is concerned.
pub enum Outcome {
    /// A response went to the client; keep the connection if `keep_alive`.
    Responded { keep_alive: bool },
    /// Nothing was sent yet: answer with this status.
    Error { status: u16, close: bool },
    /// The server switched protocols; relay with this idle timeout. The request stays
    /// counted on its server (least_conn, max_conns) until the `Held` is dropped.
    Upgraded(monoio::net::TcpStream, Duration, Held),
    /// The client went away, or could not take the response in time: close.
    Aborted,
    /// Every server is at `max_conns` and the queue (if any) is full or timed out: 503 with
    /// `Retry-After` in seconds.
    Refused { retry_after: u32 },
    /// The server's response was cut while the client reads its body until the connection
    /// ends: reset the connection, so that the part it got cannot pass for the whole.
    Cut,
}

/// Why one attempt failed before anything reached the client.
#[derive(Debug)]
enum Failure {
    /// Could not connect (nothing was sent; always safe to retry).
    Connect(io::Error),
    /// Sending the request or reading the response head failed.
    Io(io::Error),
    /// The response head was malformed.
    InvalidHeader,
    /// The response status is one `next_upstream` retries; the response was discarded.
    Status(u16),
    /// A 429 or 503 with `Retry-After` that `next_upstream` retries: the server is marked
    /// busy (not failed) and the response was discarded.
    Busy(u16),
    /// The client failed while its body was being streamed: no retry, no server blame.
    Client(Option<u16>),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Connect(e) => write!(f, "connect: {e}"),
            Failure::Io(e) => write!(f, "{e}"),
            Failure::InvalidHeader => f.write_str("invalid response head"),
            Failure::Status(s) => write!(f, "answered {s}"),
            Failure::Busy(s) => write!(f, "answered {s} with Retry-After (busy)"),
            Failure::Client(_) => f.write_str("client body failed"),
        }
    }
}

impl Failure {
    fn is_timeout(&self) -> bool {
        matches!(self, Failure::Connect(e) | Failure::Io(e) if e.kind() == io::ErrorKind::TimedOut)
    }

    /// The status the client gets when this is the last failure.
    fn status(&self) -> u16 {
        match self {
            _ if self.is_timeout() => 504,
            Failure::Status(s) | Failure::Busy(s) => *s,
            Failure::Client(Some(s)) => *s,
            _ => 502,
        }
    }

    /// Counts against the server's `max_fails` (nginx: errors, timeouts, bad heads, and the
    /// 5xx/429 statuses named in `next_upstream`; never 403/404).
    fn blames_server(&self) -> bool {
        match self {
            Failure::Status(s) => status_blames_server(*s),
            // Busy is not failed: the server said when to come back.
            Failure::Busy(_) | Failure::Client(_) => false,
            _ => true,
        }
    }

    /// Whether `next_upstream` names this failure.
    fn listed(&self, group: &Group) -> bool {
        let n = &group.next_upstream;
        match self {
            _ if self.is_timeout() => n.timeout,
            Failure::Connect(_) | Failure::Io(_) => n.error,
            Failure::InvalidHeader => n.invalid_header,
            Failure::Status(s) | Failure::Busy(s) => n.on_status(*s),
            Failure::Client(_) => false,
        }
    }
}

/// Whether a response status that `next_upstream` lists counts against `max_fails`
/// (nginx: a 403 or 404 moves the request on but never marks the server).
fn status_blames_server(status: u16) -> bool {
    !matches!(status, 403 | 404)
}

/// Why a failed attempt was not tried on another server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NoRetry {
    /// `next_upstream` does not name this failure (or is `off`).
    NotListed,
    /// `next_upstream_tries` attempts were made.
    TriesExhausted,
    /// `next_upstream_timeout` has passed since the request began.
    TimeSpent,
    /// POST, PATCH or LOCK reached the server, and `retry_non_idempotent` is off.
    NonIdempotent,
    /// Body bytes beyond the replay copy (`client_body_buffer_size`) reached the server.
    BodyStreamed,
}

impl NoRetry {
    fn why(self) -> &'static str {
        match self {
            NoRetry::NotListed => "next_upstream does not list it",
            NoRetry::TriesExhausted => "tries exhausted (next_upstream_tries)",
            NoRetry::TimeSpent => "next_upstream_timeout spent",
            NoRetry::NonIdempotent => "non-idempotent request already sent",
            NoRetry::BodyStreamed => "body larger than client_body_buffer_size already streamed",
        }
    }
}

/// What decides whether a failed attempt goes on to another server.
struct Retry<'a> {
    group: &'a Group,
    /// Attempts left after the current one.
    tries_left: u32,
    /// `next_upstream_timeout` as a point in time.
    deadline: Option<Instant>,
    /// The method may be sent twice (or the configuration allows it anyway).
    idempotent: bool,
}

impl Retry<'_> {
    /// `Ok` when `failure` is tried on another server, else why not.
    fn verdict(&self, failure: &Failure, body: &RequestBodyState) -> Result<(), NoRetry> {
        if !failure.listed(self.group) {
            return Err(NoRetry::NotListed);
        }
        if self.tries_left == 0 {
            return Err(NoRetry::TriesExhausted);
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(NoRetry::TimeSpent);
        }
        // A failed connect sent nothing, so even a POST goes on (its copy is all that was
        // read: the rest of the body is read only once a server is connected).
        if matches!(failure, Failure::Connect(_)) {
            return Ok(());
        }
        if !self.idempotent {
            return Err(NoRetry::NonIdempotent);
        }
        if !body.replayable() {
            return Err(NoRetry::BodyStreamed);
        }
        Ok(())
    }
}

/// Runs the attempts for one request until a response is streamed or no retry is left.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    worker: &Rc<Worker>,
    local: &LocalSnapshot,
    spec: &Listener,
    group_id: GroupId,
    conn: &mut Downstream,
    vars: &mut RequestVars<'_>,
    body: &mut RequestBodyState,
    keep_alive: bool,
) -> Outcome {
    let group = &local.snap.groups[group_id];
    let peers = &group.peers;
    let servers = peers.servers().len() as u32;
    let mut retry = Retry {
        group,
        tries_left: match group.next_upstream_tries {
            0 => servers,
            n => n.min(servers.max(1)),
        },
        deadline: (!group.next_upstream_timeout.is_zero())
            .then(|| vars.started + group.next_upstream_timeout),
        idempotent: vars.head.is_idempotent(vars.buf)
            || group.retry_non_idempotent
            || group.next_upstream.non_idempotent,
    };
    // A prompt key was read from the body before routing (see `proxy::handle`).
    if peers.policy() != Policy::Prompt {
        render_key(group, vars, &mut conn.key);
    }
    let mut tried = Tried::default();
    let mut last: Option<Failure> = None;
    // The server whose failure is being retried: counted once the retry really starts.
    let mut retried_from: Option<usize> = None;
    loop {
        let key = match peers.policy() {
            Policy::IpHash => PickKey::Ip(vars.peer.ip()),
            Policy::Hash => PickKey::Bytes(&conn.key),
            Policy::Prompt if !conn.key.is_empty() => PickKey::Bytes(&conn.key),
            _ => PickKey::None,
        };
        let pick = {
            let mut cursor = local.cursors[group_id].borrow_mut();
            peers.pick(&mut cursor, key, &tried, now_ms())
        };
        // Each way to a server leaves the request counted on it (`max_conns` is exact).
        let idx = match pick {
            Pick::Server(idx) if peers.try_begin(idx) => idx,
            // Another worker took the last slot since the pick: look again.
            Pick::Server(_) => continue,
            Pick::Busy => {
                match queued::wait_for_slot(local, group_id, key, &tried, &conn.stream).await {
                    Slot::Counted(idx) => idx,
                    Slot::Refused { retry_after } => return Outcome::Refused { retry_after },
                    Slot::ClientLeft => {
                        crate::info!("{}: client closed the connection while queued", vars.peer);
                        return Outcome::Aborted;
                    }
                    Slot::Unavailable => {
                        let status = last.as_ref().map_or(502, Failure::status);
                        return Outcome::Error {
                            status,
                            close: false,
                        };
                    }
                }
            }
            Pick::Unavailable => {
                let status = last.as_ref().map_or(502, Failure::status);
                if retried_from.is_some() {
                    crate::warn!("{}: no other server to retry on: {status}", vars.peer);
                }
                return Outcome::Error {
                    status,
                    close: false,
                };
            }
        };
        if let Some(from) = retried_from.take() {
            worker.stats.retry(group_id, group, from);
        }
        tried.insert(idx);
        retry.tries_left = retry.tries_left.saturating_sub(1);
        let active = Active::counted(group, group_id, idx);
        let result = attempt(
            worker, spec, group, &active, conn, vars, body, keep_alive, &retry,
        )
        .await;
        active.end();
        // The attempt's `$upstream_*` record: a failure without a response head is logged
        // with the status it would give the client (502, 504), as nginx does.
        let failed = match &result {
            Err(f @ (Failure::Connect(_) | Failure::Io(_) | Failure::InvalidHeader)) => f.status(),
            _ => 0,
        };
        vars.current_try().end(failed);
        let failure = match result {
            Ok(outcome) => {
                let status = vars.current_try().status;
                if !active.answered_busy.get() {
                    book_response(worker, group, group_id, idx, status);
                }
                return outcome;
            }
            Err(f) => f,
        };
        if let Err(outcome) = judge(worker, group, group_id, idx, &failure, &retry, body, vars) {
            return outcome;
        }
        retried_from = Some(idx);
        last = Some(failure);
    }
}

/// Books an attempt whose response went to the client. A status `next_upstream` lists
/// that reached the client anyway (no retry was left) still counts against the server, as
/// every failure it names does.
fn book_response(worker: &Worker, group: &Group, group_id: GroupId, idx: usize, status: u16) {
    if group.next_upstream.on_status(status) && status_blames_server(status) {
        group.peers.failed(idx, now_ms());
        worker.stats.failure(group_id, group, idx);
    } else {
        group.peers.succeeded(idx);
    }
}

/// Books a failed attempt (passive health, metrics, one log line saying why it is or is
/// not retried) and decides: `Ok` to try another server, or what the client gets.
#[allow(clippy::too_many_arguments)]
fn judge(
    worker: &Worker,
    group: &Group,
    group_id: GroupId,
    idx: usize,
    failure: &Failure,
    retry: &Retry<'_>,
    body: &RequestBodyState,
    vars: &RequestVars<'_>,
) -> Result<(), Outcome> {
    if matches!(failure, Failure::Client(None)) {
        crate::info!(
            "{}: client closed the connection before the response",
            vars.peer
        );
        return Err(Outcome::Aborted);
    }
    if failure.blames_server() {
        group.peers.failed(idx, now_ms());
        worker.stats.failure(group_id, group, idx);
    }
    // A failing answer's status was already counted as slow when its head came.
    if !matches!(
        failure,
        Failure::Client(_) | Failure::Status(_) | Failure::Busy(_)
    ) {
        group.peers.observe_failure(idx, now_ms());
    }
    if let Failure::Client(Some(status)) = *failure {
        // The client's body broke (too large, malformed, too slow): the server is not to
        // blame and nothing is retried.
        crate::info!("{}: request body failed: {status}", vars.peer);
        return Err(Outcome::Error {
            status,
            close: true,
        });
    }
    let addr = group.peers.servers()[idx].addr;
    let method = String::from_utf8_lossy(vars.head.method(vars.buf));
    if let Err(no) = retry.verdict(failure, body) {
        crate::warn!(
            "{}: {method} attempt on {addr} failed: {failure}; not retried: {}",
            vars.peer,
            no.why()
        );
        return Err(Outcome::Error {
            status: failure.status(),
            close: false,
        });
    }
    crate::warn!(
        "{}: {method} attempt on {addr} failed: {failure}; retrying on another server",
        vars.peer
    );
    Ok(())
}

/// One request counted on a server (for `least_conn` and `max_conns`) until `end` or drop,
/// whichever comes first, or handed over with `hold`.
struct Active<'a> {
    group: &'a Arc<Group>,
    /// The group's index in its snapshot (for the worker's metrics tables).
    group_id: GroupId,
    idx: usize,
    open: std::cell::Cell<bool>,
    /// The server answered 429/503 with `Retry-After` and is marked busy: not a failure.
    answered_busy: std::cell::Cell<bool>,
}

impl<'a> Active<'a> {
    /// Takes over a request already counted on `idx` (`Peers::try_begin`, or a queue grant).
    fn counted(group: &'a Arc<Group>, group_id: GroupId, idx: usize) -> Active<'a> {
        Active {
            group,
            group_id,
            idx,
            open: std::cell::Cell::new(true),
            answered_busy: std::cell::Cell::new(false),
        }
    }

    fn end(&self) {
        if self.open.replace(false) {
            self.group.peers.end(self.idx);
        }
    }

    /// Keeps the request counted beyond this attempt (an upgraded connection).
    fn hold(&self) -> Held {
        let held = Held {
            group: self.group.clone(),
            idx: self.idx,
        };
        if !self.open.replace(false) {
            // Already ended: count it again so that Held's drop stays paired.
            self.group.peers.begin(self.idx);
        }
        held
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.end();
    }
}

/// A request still counted on its server after the attempts are over; ends on drop.
pub struct Held {
    group: Arc<Group>,
    idx: usize,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.group.peers.end(self.idx);
    }
}

fn render_key(group: &Group, vars: &RequestVars<'_>, key: &mut Vec<u8>) {
    key.clear();
    if let Some(template) = &group.hash_key {
        template.render(vars, key);
    }
}

/// One attempt on server `idx`. `Ok` means the client got a response (or an upgrade).
#[allow(clippy::too_many_arguments)]
async fn attempt(
    worker: &Rc<Worker>,
    spec: &Listener,
    group: &Group,
    active: &Active<'_>,
    conn: &mut Downstream,
    vars: &mut RequestVars<'_>,
    body: &mut RequestBodyState,
    keep_alive: bool,
    retry: &Retry<'_>,
) -> Result<Outcome, Failure> {
    let addr = group.peers.servers()[active.idx].addr;
    vars.begin_try(addr, spec.needs.upstream_times);
    let mut fresh_only = false;
    loop {
        let pooled = if fresh_only {
            None
        } else {
            checkout(worker, spec, conn, addr)
        };
        let mut up = match pooled {
            Some(up) => up,
            None => {
                let stream = dial(addr, group.connect_timeout)
                    .await
                    .map_err(Failure::Connect)?;
                let mut up = Pooled::fresh(stream);
                send_proxy_header(spec, group, &mut up, conn).await?;
                up
            }
        };
        up.requests += 1;
        conn.up_in.reset();
        vars.current_try().connected();
        vars.current_try().sending();
        let whole = match send_request(spec, group, &mut up, conn, vars, body).await {
            Ok(whole) => whole,
            // The server closed the idle connection before it got the whole request.
            Err(Failure::Io(_)) if up.reused && body.replayable() => {
                fresh_only = true;
                continue;
            }
            Err(f) => return Err(f),
        };
        let resp = match read_response_head(&mut up, conn, vars, group.first_byte_timeout).await {
            Ok(resp) => resp,
            // Most likely the same race, found one step later; but the server may have read
            // the request and acted on it, so only a request safe to repeat goes again.
            Err(Failure::Io(_))
                if up.reused && conn.up_in.is_empty() && retry.idempotent && body.replayable() =>
            {
                fresh_only = true;
                continue;
            }
            Err(f) => return Err(f),
        };
        up.long_bodies = matches!(resp.body, ResponseBody::Length(n) if n >= LONG_BODY);
        let attempt_try = vars.current_try();
        attempt_try.response_head(resp.status);
        if let Some(waited) = attempt_try.first_byte {
            worker
                .stats
                .first_byte(active.group_id, group, active.idx, waited);
            time_head(group, active.idx, &resp, waited);
        }
        let busy = mark_busy(group, active.idx, &resp, conn.up_in.pending(), vars);
        active.answered_busy.set(busy);
        if group.next_upstream.on_status(resp.status) {
            let failure = if busy {
                Failure::Busy(resp.status)
            } else {
                Failure::Status(resp.status)
            };
            match retry.verdict(&failure, body) {
                // Discarded unread: this connection's stream position is unknown, so it is
                // dropped.
                Ok(()) => return Err(failure),
                // The client gets the server's own answer (nginx passes it on too).
                Err(no) => crate::warn!(
                    "{}: {addr} answered {}; not retried: {}",
                    vars.peer,
                    resp.status,
                    no.why()
                ),
            }
        }
        let discardable = !whole && body.discardable();
        if !whole {
            crate::info!(
                "{}: {addr} answered {} before the whole request body was sent; \
                 the rest is not sent, the server connection is not kept, and the client's \
                 is kept only if the rest of its body is dropped in time",
                vars.peer,
                resp.status
            );
        }
        let sent = Sent {
            keep_alive,
            whole,
            discardable,
        };
        return Ok(respond(worker, spec, group, active, up, conn, vars, resp, sent).await);
    }
}

/// An idle connection to `addr` for this request: from the worker's pool, or with
/// `proxy_protocol` only the one this client connection used before (its PROXY header named
/// this client).
fn checkout(
    worker: &Worker,
    spec: &Listener,
    conn: &mut Downstream,
    addr: std::net::SocketAddr,
) -> Option<Pooled> {
    if spec.proxy_protocol == ProxyProtocol::Off {
        let mut pool = worker.pool.borrow_mut();
        let now = now_ms();
        while let Some(up) = pool.checkout(addr, now) {
            // Under load the connection a request takes went idle a moment before, and the
            // peek, a system call, was 2-3% of the CPU of a small request (nginx and HAProxy
            // learn of such bytes from their event loop, for free): a connection idle for
            // less than two milliseconds is taken as it is. A server that closes or says
            // more that soon after a whole keep-alive response would as well have done it
            // just after a peek; one idle longer (closed by its keep-alive timeout, a late
            // extra response) is peeked. Bench load: 1.28 system calls a request, now 0.55.
            if up.just_idled(now) || quiet(&up) {
                return Some(up);
            }
        }
        return None;
    }
    match conn.own_upstream.take().map(|own| *own) {
        Some((own, mut up)) if own == addr && quiet(&up) => {
            up.reused = true;
            Some(up)
        }
        // Another server this time: the old connection closes.
        _ => None,
    }
}

/// Whether an idle connection has nothing to say, as it must: bytes waiting on it (a late
/// or extra response) would be read as the answer to the next request sent on it, and an
/// end of stream means the server closed it. Either way it is dropped (closed), not used.
fn quiet(up: &Pooled) -> bool {
    matches!(peek(&up.stream), Peeked::Nothing)
}

/// With `proxy_protocol`, the header goes first on a new upstream connection, once.
async fn send_proxy_header(
    spec: &Listener,
    group: &Group,
    up: &mut Pooled,
    conn: &Downstream,
) -> Result<(), Failure> {
    if spec.proxy_protocol == ProxyProtocol::Off {
        return Ok(());
    }
    let listener = conn.stream.local_addr().map_err(Failure::Io)?;
    let mut header = Vec::with_capacity(crate::upstream::proxy_header::V1_MAX);
    crate::upstream::proxy_header::write(spec.proxy_protocol, conn.peer, listener, &mut header);
    let (res, _) = write_all(&mut up.stream, header, group.send_timeout).await;
    res.map_err(Failure::Io)
}

/// least_time's view of a response head that came `waited` after the request went out: a
/// 429 or 5xx counts as a slow answer however fast it came; a response without a body is
/// timed here (one with a body is timed at its first body byte, in `respond`).
fn time_head(group: &Group, idx: usize, resp: &ResponseHead, waited: Duration) {
    let peers = &group.peers;
    if !peers.policy().times() {
        return;
    }
    if failing_status(resp.status) {
        peers.observe_failure(idx, now_ms());
    } else if !has_body(resp) {
        peers.observe_first_byte(idx, waited, now_ms());
    }
}

/// An answer that says the server failed or is too busy: never a sign of a fast server.
fn failing_status(status: u16) -> bool {
    status == 429 || status >= 500
}

/// The response has body bytes to come (least_time times those).
fn has_body(resp: &ResponseHead) -> bool {
    !matches!(resp.body, ResponseBody::None | ResponseBody::Length(0))
}

/// A 429 or 503 with a valid `Retry-After` marks server `idx` busy for that long (within
/// [`retry_after::MIN_SECS`]..=[`retry_after::MAX_SECS`]); says whether it did.
fn mark_busy(
    group: &Group,
    idx: usize,
    resp: &ResponseHead,
    buf: &[u8],
    vars: &RequestVars<'_>,
) -> bool {
    if !matches!(resp.status, 429 | 503) {
        return false;
    }
    let Some(value) = resp.header(buf, "retry-after") else {
        return false;
    };
    let now_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let Some(secs) = retry_after::parse(value, now_unix) else {
        crate::debug!(
            "{}: ignoring a Retry-After that is neither seconds nor a date: {:?}",
            vars.peer,
            String::from_utf8_lossy(value)
        );
        return false;
    };
    let secs = retry_after::clamp(secs);
    group.peers.mark_busy(idx, now_ms(), secs * 1000);
    crate::info!(
        "{}: {} answered {} with Retry-After: busy for {secs}s",
        vars.peer,
        group.peers.servers()[idx].addr,
        resp.status
    );
    true
}

/// Writes the request head and the body's replay copy, then streams the rest of the body.
/// `Ok(false)`: the server began to answer before the whole body was sent, and the rest
/// was not sent (see [`RequestBodyState::stream_rest`]).
async fn send_request(
    spec: &Listener,
    group: &Group,
    up: &mut Pooled,
    conn: &mut Downstream,
    vars: &RequestVars<'_>,
    body: &mut RequestBodyState,
) -> Result<bool, Failure> {
    let mut out = std::mem::take(&mut conn.out);
    out.clear();
    request_head(&mut out, vars, spec, vars.upstream.unwrap_or(vars.peer));
    // The copy holds every body byte read so far: on a first attempt what came with the
    // head (a small body goes in this one write), on a retry all the client sent until then.
    let res = if body.copy.len() < GATHER_FROM {
        out.extend_from_slice(&body.copy);
        let (res, out) = write_all(&mut up.stream, out, group.send_timeout).await;
        conn.out = out;
        res
    } else {
        // A large copy goes out behind the head without being copied after it.
        let copy = std::mem::take(&mut body.copy);
        let len = copy.len();
        let (res, out, copy) =
            write_gathered(&mut up.stream, out, copy, 0..len, group.send_timeout).await;
        conn.out = out;
        if copy.len() == len {
            body.copy = copy;
        } else {
            // The copy went with a cancelled write: this body cannot be sent again.
            body.give_up_copy();
        }
        res
    };
    res.map_err(Failure::Io)?;
    if body.complete {
        return Ok(true);
    }
    let streamed = body
        .stream_rest(
            &mut conn.stream,
            &mut conn.inbound,
            &mut up.stream,
            &mut conn.up_in,
            spec,
            group.send_timeout,
        )
        .await;
    match streamed {
        Ok(()) => Ok(true),
        Err(StreamError::EarlyResponse) => Ok(false),
        Err(StreamError::Client(c)) => Err(Failure::Client(client_body_status(&c))),
        Err(StreamError::Upstream(e)) => Err(Failure::Io(e)),
    }
}

/// Reads the final response head (skipping interim 1xx other than 101) into `conn.up_in`;
/// all of it must arrive within `first_byte_timeout`.
async fn read_response_head(
    up: &mut Pooled,
    conn: &mut Downstream,
    vars: &RequestVars<'_>,
    first_byte_timeout: Duration,
) -> Result<ResponseHead, Failure> {
    let head_req = vars.head.is_head(vars.buf);
    let deadline = Instant::now() + first_byte_timeout;
    loop {
        if !conn.up_in.is_empty() {
            match parse_response(conn.up_in.pending(), head_req, MAX_RESPONSE_HEAD) {
                Ok(Some(resp)) if (100..200).contains(&resp.status) && resp.status != 101 => {
                    conn.up_in.consume(resp.len);
                    continue;
                }
                Ok(Some(resp)) => return Ok(resp),
                Ok(None) => {}
                Err(_) => return Err(Failure::InvalidHeader),
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        // After a long body, a small read: the next long body stays in the socket for the
        // splice (`http::spliced`).
        let most = if up.long_bodies {
            HEAD_READ
        } else {
            STREAM_CHUNK
        };
        let fill = conn.up_in.fill_at_most(&mut up.stream, most, left);
        let Some(filled) = unless_client_leaves(fill, &conn.stream).await else {
            // Closing the server connection (by dropping it) is how the server learns to
            // stop working on an answer nobody will read: a GPU generation, say.
            return Err(Failure::Client(None));
        };
        match filled {
            Ok(0) => {
                let e = io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "server closed before responding",
                );
                return Err(Failure::Io(e));
            }
            Ok(_) => {}
            Err(e) => return Err(Failure::Io(e)),
        }
    }
}

/// How the request went up, for the response's way down.
#[derive(Clone, Copy)]
struct Sent {
    /// The client connection may be kept after the response (before knowing the response).
    keep_alive: bool,
    /// The whole request body went to the server (else it answered early and the rest of
    /// the body is still with the client).
    whole: bool,
    /// Not `whole`, but the rest is small enough to be read and dropped after the response
    /// (`RequestBodyState::discard`): the response may then keep the client connection.
    discardable: bool,
}

/// Sends the response head and streams the body down; checks the connection back in when
/// the exchange ended cleanly.
#[allow(clippy::too_many_arguments)]
async fn respond(
    worker: &Rc<Worker>,
    spec: &Listener,
    group: &Group,
    active: &Active<'_>,
    mut up: Pooled,
    conn: &mut Downstream,
    vars: &mut RequestVars<'_>,
    resp: ResponseHead,
    sent: Sent,
) -> Outcome {
    let client_version = vars.head.version;
    let upgrade = resp.status == 101;
    // The client's connection stays in step only if its whole body is read (now, or by
    // dropping the rest after the response); the server's only if it got the whole body.
    let whole = sent.whole;
    let keep_alive = sent.keep_alive && (whole || sent.discardable);
    if upgrade && (!vars.head.upgrade || !whole) {
        return Outcome::Error {
            status: 502,
            close: false,
        };
    }
    let gzip = match &spec.gzip {
        Some(g) if !upgrade => gzip::plan(g, vars.buf, vars.head, conn.up_in.pending(), &resp),
        _ => Plan::Untouched,
    };
    let (up_framing, mut down) = framing(&resp, client_version);
    // Allocated only for a response that is compressed, dropped with it.
    let mut encoder = match gzip {
        Plan::Compress(level) => {
            down = gzip::down_framing(client_version);
            Some(Box::new(gzip::Encoder::new(level)))
        }
        _ => None,
    };
    // A drain or reload that began while the server worked still gets its Connection: close.
    let keep_alive =
        keep_alive && !upgrade && down != DownFraming::Close && !worker.must_close(spec.bind);
    vars.status = resp.status;
    let mut out = std::mem::take(&mut conn.out);
    out.clear();
    let r = ResponseHeadOut {
        buf: conn.up_in.pending(),
        head: &resp,
        framing: down,
        keep_alive,
        client_version,
        upgrade,
        gzip,
    };
    response_head(&mut out, &r, spec, vars);
    conn.up_in.consume(resp.len);
    if upgrade {
        let (res, buf) = write_all(&mut conn.stream, out, group.send_timeout).await;
        conn.out = buf;
        if res.is_err() {
            return Outcome::Aborted;
        }
        // Bytes that already arrived on either side belong to the new protocol.
        if conn
            .up_in
            .forward(
                &mut conn.stream,
                conn.up_in.pending().len(),
                group.send_timeout,
            )
            .await
            .is_err()
            || conn
                .inbound
                .forward(
                    &mut up.stream,
                    conn.inbound.pending().len(),
                    group.send_timeout,
                )
                .await
                .is_err()
        {
            return Outcome::Aborted;
        }
        return Outcome::Upgraded(up.stream, group.read_timeout, active.hold());
    }
    let timeouts = CopyTimeouts {
        read: group.read_timeout,
        send: group.send_timeout,
    };
    let first_body = std::cell::Cell::new(None);
    let timed_done = std::cell::Cell::new(false);
    // least_time times a 2xx-4xx answer with a body at its first body byte (see `time_head`).
    let timed = group.peers.policy().times() && !failing_status(resp.status) && has_body(&resp);
    let sent = vars.current_try().sent;
    let events = |event| match event {
        CopyEvent::FirstByte => {
            let now = Instant::now();
            if spec.needs.upstream_times {
                first_body.set(Some(now));
            }
            if timed && let Some(sent) = sent {
                let waited = now.saturating_duration_since(sent);
                group.peers.observe_first_byte(active.idx, waited, now_ms());
                timed_done.set(true);
            }
        }
        CopyEvent::UpstreamDone => active.end(),
    };
    let (res, out, sent) = copy_response(
        &mut up.stream,
        &mut conn.up_in,
        &mut conn.stream,
        up_framing,
        down,
        out,
        timeouts,
        encoder.as_deref_mut(),
        &events,
    )
    .await;
    conn.out = out;
    vars.body_bytes_sent = encoder.as_ref().map_or(sent, |e| e.sent());
    if let Some(at) = first_body.get() {
        vars.current_try().first_body_byte(at);
    }
    match res {
        Ok(end) => {
            let reusable = end == CopyEnd::Complete
                && whole
                && !may_not_have_read_the_body(vars, &resp)
                && resp.keep_alive
                && conn.up_in.is_empty()
                && up.requests < group.keepalive_requests;
            if reusable {
                let timeout = group.keepalive_timeout.as_millis() as u64;
                if let Some(addr) = vars.upstream {
                    if spec.proxy_protocol != ProxyProtocol::Off {
                        // It told the server who this client is: no other client may use it.
                        conn.own_upstream = Some(Box::new((addr, up)));
                    } else {
                        worker.pool.borrow_mut().checkin(
                            addr,
                            up,
                            group.keepalive,
                            timeout,
                            now_ms(),
                        );
                    }
                }
            }
            Outcome::Responded { keep_alive }
        }
        Err(CopyError::Upstream(e)) => {
            if timed && !timed_done.get() {
                // No first byte ever came: slow, never fast.
                group.peers.observe_failure(active.idx, now_ms());
            }
            let addr = group.peers.servers()[active.idx].addr;
            crate::warn!(
                "{}: response from {addr} cut after {sent} body bytes: {e}; closing the client connection",
                vars.peer
            );
            // With a length or chunks the client can tell a cut body from a whole one, and
            // an orderly close keeps the bytes still on their way; a body that ends at the
            // close cannot say so otherwise.
            if down == DownFraming::Close {
                Outcome::Cut
            } else {
                Outcome::Aborted
            }
        }
        Err(CopyError::Client(e)) if e.kind() == io::ErrorKind::TimedOut => {
            crate::info!(
                "{}: client took no response bytes within send_timeout; closing",
                vars.peer
            );
            Outcome::Aborted
        }
        Err(CopyError::Client(_)) => Outcome::Aborted,
    }
}

/// A server that refuses a request with a body (401, 413, a 5xx...) often answers from the
/// head alone and never reads the body, even when every byte of it went out with the head
/// in one write, where no early answer can be seen. Kept alive, it would then read that
/// body as the start of its next request, and the next request sent on the connection
/// would be framed by the body's bytes: one client's answer could go to another. A fresh
/// connection costs one connect, so such a connection is not pooled (nginx, which pools
/// it, trusts the server to discard the body). A 2xx or 3xx is taken to mean the request
/// was read: a server that answers that without reading the body cannot be told apart.
fn may_not_have_read_the_body(vars: &RequestVars<'_>, resp: &ResponseHead) -> bool {
    use crate::http::head::RequestBody;
    let has_body = matches!(
        vars.head.body,
        RequestBody::Chunked | RequestBody::Length(1..)
    );
    has_body && resp.status >= 400
}

/// How the body arrives from the server and how it goes to this client.
fn framing(resp: &ResponseHead, client: Version) -> (UpFraming, DownFraming) {
    use crate::http::body::ChunkedDecoder;
    match (resp.body, client) {
        (ResponseBody::None, _) => (UpFraming::None, DownFraming::None),
        (ResponseBody::Length(n), _) => (UpFraming::Length(n), DownFraming::Length(n)),
        (ResponseBody::Chunked, Version::Http11) => (
            UpFraming::Chunked(ChunkedDecoder::new()),
            DownFraming::Chunked,
        ),
        (ResponseBody::Chunked, Version::Http10) => (
            UpFraming::Chunked(ChunkedDecoder::new()),
            DownFraming::Close,
        ),
        (ResponseBody::Eof, Version::Http11) => (UpFraming::Eof, DownFraming::Chunked),
        (ResponseBody::Eof, Version::Http10) => (UpFraming::Eof, DownFraming::Close),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::head::RequestBody;
    use crate::snapshot::Snapshot;

    fn group(upstream: &str) -> Snapshot {
        let text = format!(
            "[[listener]]\nname = \"l\"\nbind = \"127.0.0.1:1\"\nupstream = \"u\"\n\n\
             [upstreams.u]\n{upstream}\nservers = [{{ addr = \"127.0.0.1:2\" }}, {{ addr = \"127.0.0.1:3\" }}]\n"
        );
        crate::config::load_str(&text, std::path::Path::new("t.toml"), 1).expect("config")
    }

    fn io(kind: io::ErrorKind) -> io::Error {
        io::Error::new(kind, "test")
    }

    fn retry(group: &Group, idempotent: bool) -> Retry<'_> {
        Retry {
            group,
            tries_left: 1,
            deadline: None,
            idempotent,
        }
    }

    #[test]
    fn a_connect_failure_goes_on_even_for_a_post_but_a_sent_post_does_not() {
        let snap = group("");
        let body = RequestBodyState::new(RequestBody::Length(0), 16);
        let post = retry(&snap.groups[0], false);
        let refused = Failure::Connect(io(io::ErrorKind::ConnectionRefused));
        assert_eq!(post.verdict(&refused, &body), Ok(()));
        let closed = Failure::Io(io(io::ErrorKind::UnexpectedEof));
        assert_eq!(post.verdict(&closed, &body), Err(NoRetry::NonIdempotent));
        assert_eq!(retry(&snap.groups[0], true).verdict(&closed, &body), Ok(()));
    }

    #[test]
    fn the_verdict_follows_next_upstream_tries_time_and_the_copy() {
        let snap = group("next_upstream = [\"error\"]");
        let g = &snap.groups[0];
        let mut body = RequestBodyState::new(RequestBody::Length(100), 0);
        let timed_out = Failure::Io(io(io::ErrorKind::TimedOut));
        let reset = Failure::Io(io(io::ErrorKind::ConnectionReset));
        let get = retry(g, true);
        assert_eq!(get.verdict(&timed_out, &body), Err(NoRetry::NotListed));
        assert_eq!(
            get.verdict(&Failure::Status(502), &body),
            Err(NoRetry::NotListed)
        );
        assert_eq!(get.verdict(&reset, &body), Ok(()));
        body.give_up_copy();
        assert_eq!(get.verdict(&reset, &body), Err(NoRetry::BodyStreamed));
        let body = RequestBodyState::new(RequestBody::None, 0);
        let spent = Retry {
            deadline: Some(Instant::now()),
            ..retry(g, true)
        };
        assert_eq!(spent.verdict(&reset, &body), Err(NoRetry::TimeSpent));
        let last = Retry {
            tries_left: 0,
            ..retry(g, true)
        };
        assert_eq!(last.verdict(&reset, &body), Err(NoRetry::TriesExhausted));
    }

    #[test]
    fn a_busy_answer_is_retried_as_its_status_says_but_never_blamed() {
        let snap = group("next_upstream = [\"http_429\"]");
        let body = RequestBodyState::new(RequestBody::None, 0);
        let get = retry(&snap.groups[0], true);
        assert_eq!(get.verdict(&Failure::Busy(429), &body), Ok(()));
        assert_eq!(
            get.verdict(&Failure::Busy(503), &body),
            Err(NoRetry::NotListed)
        );
        assert!(!Failure::Busy(429).blames_server() && !Failure::Busy(503).blames_server());
        assert_eq!(Failure::Busy(503).status(), 503);
    }

    #[test]
    fn only_403_and_404_never_count_against_max_fails() {
        for status in [500, 502, 503, 504, 429] {
            assert!(Failure::Status(status).blames_server(), "{status}");
        }
        for status in [403, 404] {
            assert!(!Failure::Status(status).blames_server(), "{status}");
        }
        assert!(Failure::InvalidHeader.blames_server());
        assert!(!Failure::Client(Some(413)).blames_server());
    }
}
