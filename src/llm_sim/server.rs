//! One simulated server's HTTP side: its routes, the engine (scheduler, clock, fail mode)
//! behind them, and the connection task that turns a request's progress into bytes.
//!
//! There is no engine task: the scheduler is a pure function of time, so whichever
//! connection looks first applies the events due (a request's connection sleeps until its
//! next token, its prefill's end, or while it waits, the engine's next event). Every
//! connection also wakes at least every [`POLL`] to see whether its client went away; a
//! request whose client left is cancelled at once, so `vllm:num_requests_running` and
//! `..._waiting` drop within one [`POLL`].

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use monoio::net::TcpStream;

use super::api::{self, ApiError, Endpoint, GenRequest, Stamp, Usage};
use super::batch::{Job, Micros, Scheduler, View};
use super::metrics::{self, Sample};
use super::{Mode, Options};
use crate::demo::wire::{Conn, Head, frame, head_with};

/// How often a waiting or generating request checks on its client, and the longest a
/// streamed token waits to be written with the ones after it.
pub const POLL: Duration = Duration::from_millis(10);

/// The engine's clock: real time since start, minus the time spent hanging (a hung
/// engine's clock stands still, so nothing it runs makes progress).
#[derive(Debug)]
struct SimClock {
    start: Instant,
    paused: Duration,
    paused_since: Option<Instant>,
}

impl SimClock {
    fn now(&self, at: Instant) -> Micros {
        let stopped = self.paused + self.paused_since.map_or(Duration::ZERO, |s| at - s);
        at.saturating_duration_since(self.start)
            .saturating_sub(stopped)
            .as_micros() as Micros
    }

    fn set_running(&mut self, running: bool, at: Instant) {
        match (running, self.paused_since) {
            (true, Some(since)) => {
                self.paused += at - since;
                self.paused_since = None;
            }
            (false, None) => self.paused_since = Some(at),
            _ => {}
        }
    }
}

/// One simulated server: what its routes share. Lives on one thread (`!Send`).
pub struct Engine {
    port: u16,
    options: Options,
    sched: RefCell<Scheduler>,
    clock: RefCell<SimClock>,
    mode: Cell<Mode>,
    retry_after: Cell<u32>,
    refused: Cell<u64>,
    /// Numbers the completion ids.
    serial: Cell<u64>,
}

impl Engine {
    pub fn new(port: u16, options: &Options) -> Result<Engine, String> {
        let costs = options.costs()?;
        let blocks = (options.cache_bytes / options.block_bytes as u64) as usize;
        let engine = Engine {
            port,
            options: options.clone(),
            sched: RefCell::new(Scheduler::new(
                costs,
                options.slots,
                options.block_bytes,
                blocks,
            )),
            clock: RefCell::new(SimClock {
                start: Instant::now(),
                paused: Duration::ZERO,
                paused_since: None,
            }),
            mode: Cell::new(Mode::Ok),
            retry_after: Cell::new(options.retry_after_secs),
            refused: Cell::new(0),
            serial: Cell::new(0),
        };
        engine.set_mode(options.mode, options.retry_after_secs);
        Ok(engine)
    }

    pub fn max_body(&self) -> usize {
        self.options.max_body
    }

    fn now(&self) -> Micros {
        self.clock.borrow().now(Instant::now())
    }

    fn set_mode(&self, mode: Mode, retry_after: u32) {
        self.clock
            .borrow_mut()
            .set_running(mode != Mode::Hang, Instant::now());
        self.mode.set(mode);
        self.retry_after.set(retry_after);
    }

    fn sample(&self) -> Sample {
        let mut sched = self.sched.borrow_mut();
        sched.advance(self.now());
        Sample {
            model: self.options.model.clone(),
            running: sched.running(),
            waiting: sched.waiting(),
            kv_usage: sched.kv_usage(),
            stats: sched.stats(),
            refused: self.refused.get(),
        }
    }

    /// How long a request's connection may sleep: until its next event (or the engine's,
    /// while it waits), but at most [`POLL`]. Streamed tokens after the first are written
    /// in batches of up to [`POLL`], but the last one is never late.
    fn sleep_for(&self, view: &View, streamed: bool) -> Duration {
        if self.mode.get() == Mode::Hang {
            return POLL;
        }
        let now = self.now();
        let poll = now + POLL.as_micros() as Micros;
        let at = match (view.last_at, view.next_at) {
            (Some(last), Some(next)) if streamed && view.ready > 0 && next <= poll => {
                last.min(poll)
            }
            (Some(last), _) if !streamed => last.min(poll),
            (_, Some(next)) => next.min(poll),
            _ => poll,
        };
        Duration::from_micros(at.saturating_sub(now).max(100))
    }
}

/// A request in the scheduler, taken out when its connection is done with it (finished,
/// failed, or its client left) whatever path the connection task leaves by.
struct Ticket<'a> {
    engine: &'a Engine,
    id: u64,
}

impl Ticket<'_> {
    fn view(&self) -> Option<View> {
        self.engine
            .sched
            .borrow_mut()
            .view(self.id, self.engine.now())
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        // Cancelling a finished request only forgets it; counts only change for the rest.
        let now = self.engine.now();
        self.engine.sched.borrow_mut().cancel(self.id, now);
    }
}

/// The routes of a simulated server. The demo sends here every path it does not serve.
pub(crate) async fn answer(
    conn: &mut Conn,
    engine: &Engine,
    head: &Head,
    body: Vec<u8>,
) -> io::Result<()> {
    let path = head.path.split('?').next().unwrap_or("/");
    let get = head.method == "GET" || head.method == "HEAD";
    let post = head.method == "POST";
    let lenient = engine.options.leniency.empty_body_ok;
    match path {
        "/health" if get => send(conn, engine, head, 200, "text/plain", "", "").await,
        "/metrics" if get => {
            let text = metrics::render(&engine.sample());
            send(
                conn,
                engine,
                head,
                200,
                "text/plain; version=0.0.4",
                &text,
                "",
            )
            .await
        }
        "/v1/models" if get => {
            let body = serde_json::json!({"object": "list", "data": [{
                "id": engine.options.model, "object": "model", "created": unix_now(),
                "owned_by": "ringway-sim", "max_model_len": api::MAX_TOKENS_LIMIT,
            }]});
            send(
                conn,
                engine,
                head,
                200,
                "application/json",
                &format!("{body}\n"),
                "",
            )
            .await
        }
        "/v1/chat/completions" if post || (lenient && get) => {
            generate(conn, engine, head, Endpoint::Chat, &body).await
        }
        "/v1/completions" if post || (lenient && get) => {
            generate(conn, engine, head, Endpoint::Completions, &body).await
        }
        "/admin/mode" if post => admin_mode(conn, engine, head, &body).await,
        "/admin/mode" if get => {
            let text = format!(
                "{} {}\n",
                engine.mode.get().name(),
                engine.retry_after.get()
            );
            send(conn, engine, head, 200, "text/plain", &text, "").await
        }
        "/health"
        | "/metrics"
        | "/v1/models"
        | "/v1/chat/completions"
        | "/v1/completions"
        | "/admin/mode" => {
            let e = ApiError {
                status: 405,
                message: format!("{} is not allowed on {path}", head.method),
            };
            send_error(conn, engine, head, &e, "").await
        }
        _ => {
            let e = ApiError {
                status: 404,
                message: format!("no route for {path} on backend {}", engine.port),
            };
            send_error(conn, engine, head, &e, "").await
        }
    }
}

/// `POST /admin/mode` with `ok`, `hang`, `429` or `503`, optionally followed by the
/// `Retry-After` seconds: `503 5`.
async fn admin_mode(conn: &mut Conn, engine: &Engine, head: &Head, body: &[u8]) -> io::Result<()> {
    let text = String::from_utf8_lossy(body);
    let mut words = text.split_whitespace();
    let mode = Mode::parse(words.next().unwrap_or(""));
    let retry = match words.next() {
        None => Ok(engine.options.retry_after_secs),
        Some(n) => n
            .parse::<u32>()
            .map_err(|_| format!("Retry-After {n:?} must be whole seconds")),
    };
    match (mode, retry) {
        (Ok(mode), Ok(retry)) => {
            engine.set_mode(mode, retry);
            let text = format!("{} {retry}\n", mode.name());
            send(conn, engine, head, 200, "text/plain", &text, "").await
        }
        (Err(e), _) | (_, Err(e)) => send_error(conn, engine, head, &ApiError::bad(e), "").await,
    }
}

/// A generation request, from parse to its last byte.
async fn generate(
    conn: &mut Conn,
    engine: &Engine,
    head: &Head,
    endpoint: Endpoint,
    body: &[u8],
) -> io::Result<()> {
    let req = match api::parse(endpoint, body, engine.options.leniency) {
        Ok(req) => req,
        Err(e) => return send_error(conn, engine, head, &e, "").await,
    };
    if let Some(model) = req.model.as_deref()
        && model != engine.options.model
    {
        let e = ApiError {
            status: 404,
            message: format!("The model `{model}` does not exist."),
        };
        return send_error(conn, engine, head, &e, "").await;
    }
    let status = match engine.mode.get() {
        Mode::TooManyRequests => Some(429),
        Mode::Unavailable => Some(503),
        Mode::Ok | Mode::Hang => None,
    };
    if let Some(status) = status {
        engine.refused.set(engine.refused.get() + 1);
        let e = ApiError {
            status,
            message: format!("backend {} is overloaded; retry later", engine.port),
        };
        let extra = format!("Retry-After: {}\r\n", engine.retry_after.get());
        return send_error(conn, engine, head, &e, &extra).await;
    }
    let job = Job {
        prompt: req.prompt.clone(),
        max_tokens: req.max_tokens.unwrap_or(engine.options.max_tokens),
    };
    let id = engine.sched.borrow_mut().submit(job, engine.now());
    let ticket = Ticket { engine, id };
    let serial = engine.serial.get() + 1;
    engine.serial.set(serial);
    let prefix = if endpoint == Endpoint::Chat {
        "chatcmpl"
    } else {
        "cmpl"
    };
    let stamp = Stamp {
        id: format!("{prefix}-{}-{serial}", engine.port),
        created: unix_now(),
        model: engine.options.model.clone(),
        fingerprint: format!("ringway-sim-{}", engine.port),
    };
    if req.stream {
        stream(conn, &ticket, head, &req, &stamp).await
    } else {
        whole(conn, &ticket, head, &req, &stamp).await
    }
}

/// Token counts of a request that got `tokens` tokens.
fn usage(req: &GenRequest, tokens: u32) -> Usage {
    Usage {
        prompt: req.prompt.len().div_ceil(super::batch::BYTES_PER_TOKEN) as u64,
        completion: u64::from(tokens),
    }
}

/// `length` when the request set `max_tokens` (it was reached), else `stop` (the
/// simulated model ended its answer).
fn finish_reason(req: &GenRequest) -> &'static str {
    if req.max_tokens.is_some() {
        "length"
    } else {
        "stop"
    }
}

/// A non-streamed answer: nothing until the last token, then the whole completion.
async fn whole(
    conn: &mut Conn,
    ticket: &Ticket<'_>,
    head: &Head,
    req: &GenRequest,
    stamp: &Stamp,
) -> io::Result<()> {
    let engine = ticket.engine;
    let (total, timing) = loop {
        let view = ticket.view().ok_or_else(lost)?;
        if view.done {
            break (view.total, view.timing);
        }
        if client_gone(&conn.stream) {
            return Err(io::ErrorKind::ConnectionAborted.into());
        }
        monoio::time::sleep(engine.sleep_for(&view, false)).await;
    };
    let text: String = (0..total).map(api::word).collect();
    let mut body = api::completion(
        req.endpoint,
        stamp,
        &text,
        finish_reason(req),
        usage(req, total),
    );
    api::add_timing(&mut body, &timing);
    send(
        conn,
        engine,
        head,
        200,
        "application/json",
        &format!("{body}\n"),
        "",
    )
    .await
}

/// A streamed answer: the head at once, then one SSE event per token as it comes out
/// (several per write when they come faster than [`POLL`]), the finish, `data: [DONE]`.
async fn stream(
    conn: &mut Conn,
    ticket: &Ticket<'_>,
    head: &Head,
    req: &GenRequest,
    stamp: &Stamp,
) -> io::Result<()> {
    let engine = ticket.engine;
    // An HTTP/1.0 client cannot read chunked: send the stream raw and end it by closing.
    let chunked = head.http11;
    let mut extra = String::from("Cache-Control: no-cache\r\n");
    extra.push_str(if chunked {
        "Transfer-Encoding: chunked\r\n"
    } else {
        "Connection: close\r\n"
    });
    if chunked && !head.keep_alive {
        extra.push_str("Connection: close\r\n");
    }
    let start = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nX-Backend: {}\r\n{extra}\r\n",
        engine.port
    );
    conn.write(start.into_bytes()).await?;
    let mut sent = 0u32;
    loop {
        let view = ticket.view().ok_or_else(lost)?;
        if view.ready > sent {
            let mut events = String::new();
            for i in sent..view.ready {
                let c = api::chunk(req.endpoint, stamp, api::word(i), i == 0, None);
                events.push_str(&api::sse(&c));
            }
            sent = view.ready;
            if view.done {
                let mut end = api::chunk(req.endpoint, stamp, "", false, Some(finish_reason(req)));
                api::add_timing(&mut end, &view.timing);
                events.push_str(&api::sse(&end));
                if req.include_usage {
                    let u = api::usage_chunk(req.endpoint, stamp, usage(req, sent));
                    events.push_str(&api::sse(&u));
                }
                events.push_str(api::SSE_DONE);
            }
            let mut bytes = frame(events.as_bytes(), chunked);
            if view.done && chunked {
                bytes.extend_from_slice(b"0\r\n\r\n");
            }
            conn.write(bytes).await?;
        }
        if view.done {
            // Close-delimited: the client only knows the body ended when the socket closes.
            return if chunked {
                Ok(())
            } else {
                Err(io::ErrorKind::ConnectionAborted.into())
            };
        }
        if client_gone(&conn.stream) {
            return Err(io::ErrorKind::ConnectionAborted.into());
        }
        monoio::time::sleep(engine.sleep_for(&view, true)).await;
    }
}

fn lost() -> io::Error {
    io::Error::other("the scheduler lost a request")
}

/// Whether the client closed (or reset) its side: a peek that sees end of stream. Bytes
/// waiting (a pipelined request) stay for the next read.
fn client_gone(stream: &TcpStream) -> bool {
    crate::nowait::peek(stream.as_raw_fd()) == crate::nowait::Peeked::Closed
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn send_error(
    conn: &mut Conn,
    engine: &Engine,
    head: &Head,
    e: &ApiError,
    extra: &str,
) -> io::Result<()> {
    send(
        conn,
        engine,
        head,
        e.status,
        "application/json",
        &e.body(),
        extra,
    )
    .await
}

/// A whole response (only the head for HEAD).
async fn send(
    conn: &mut Conn,
    engine: &Engine,
    head: &Head,
    status: u16,
    content_type: &str,
    body: &str,
    extra: &str,
) -> io::Result<()> {
    let mut out = head_with(
        engine.port,
        status,
        content_type,
        body.len(),
        head.keep_alive,
        extra,
    );
    if head.method != "HEAD" {
        out.extend_from_slice(body.as_bytes());
    }
    conn.write(out).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_stands_still_while_hanging() {
        let t0 = Instant::now();
        let mut c = SimClock {
            start: t0,
            paused: Duration::ZERO,
            paused_since: None,
        };
        let ms = |n| t0 + Duration::from_millis(n);
        assert_eq!(c.now(ms(10)), 10_000);
        c.set_running(false, ms(10));
        assert_eq!(c.now(ms(50)), 10_000);
        c.set_running(false, ms(60));
        c.set_running(true, ms(70));
        assert_eq!(c.now(ms(80)), 20_000);
        c.set_running(true, ms(90));
        assert_eq!(c.now(ms(100)), 40_000);
    }
}
