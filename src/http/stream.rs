//! Moving bodies: the request body up (every byte forwarded as soon as it is read, with a
//! copy of up to `client_body_buffer_size` kept so a failed attempt can be replayed), the
//! response body down as it arrives, and the two-way relay after an upgrade.

use std::io;
use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, Splitable};
use monoio::net::TcpStream;

use crate::http::attempt::MAX_RESPONSE_HEAD;
use crate::http::body::{ChunkedDecoder, LAST_CHUNK, chunk_header};
use crate::http::gzip::Encoder;
use crate::http::head::{RequestBody, parse_response};
use crate::http::io::{GATHER_FROM, Inbound, READ_CHUNK, STREAM_CHUNK, write_all};
use crate::http::rewrite::DownFraming;
use crate::http::spliced::{Deadlines, SPLICE_FROM, splice_body};
use crate::http::watch::{peek, unless_client_leaves};
use crate::nowait::Peeked;
use crate::snapshot::Listener;

/// Says whether the de-chunked body prefix read so far is enough to choose a server.
pub type Enough<'a> = &'a mut dyn FnMut(&[u8]) -> bool;

/// Why reading the request body from the client stopped.
#[derive(Debug)]
pub enum ClientBodyError {
    /// Larger than `client_max_body_size`: 413.
    TooLarge,
    /// Bad chunked framing: 400.
    Malformed,
    /// No body bytes within `client_body_timeout`: 408.
    Timeout,
    /// The client went away; nobody to answer.
    Gone,
}

/// Where the request body stands, and its replay copy.
///
/// Every body byte read from the client is, in this order, appended to `copy` (while the
/// copy stays within `client_body_buffer_size`) and sent to the current server. An attempt
/// starts by sending the whole copy, so a retry replays exactly what the client sent so far
/// and then goes on reading. Once a byte that is not in the copy has gone to a server
/// (`outgrown`), the body can never be sent whole again.
pub struct RequestBodyState {
    framing: BodyFraming,
    /// The raw body bytes read so far (chunk framing included), while they fit in `limit`.
    pub copy: Vec<u8>,
    /// `client_body_buffer_size`: the most `copy` may hold.
    limit: usize,
    /// Body bytes counted against `client_max_body_size` (chunk data for chunked bodies).
    total: u64,
    /// The whole body has been read from the client.
    pub complete: bool,
    /// Body bytes that are not in `copy` reached a server (the body outgrew the copy, or
    /// the copy went with a cancelled write): the body can no longer be replayed.
    pub outgrown: bool,
    /// Client bytes read past the body (a pipelined request) went with a cancelled write
    /// to the server: the client connection cannot serve another request.
    pub input_lost: bool,
}

enum BodyFraming {
    Length {
        remaining: u64,
    },
    /// The decoder and its reused list of data ranges (only their sizes count here).
    Chunked(ChunkedDecoder, Vec<std::ops::Range<usize>>),
}

impl RequestBodyState {
    /// A body framed as `body`, keeping a replay copy of up to `limit` bytes.
    pub fn new(body: RequestBody, limit: usize) -> RequestBodyState {
        let (framing, complete) = match body {
            RequestBody::None => (BodyFraming::Length { remaining: 0 }, true),
            RequestBody::Length(n) => (BodyFraming::Length { remaining: n }, n == 0),
            RequestBody::Chunked => (
                BodyFraming::Chunked(ChunkedDecoder::new(), Vec::new()),
                false,
            ),
        };
        RequestBodyState {
            framing,
            copy: Vec::new(),
            limit,
            total: 0,
            complete,
            outgrown: false,
            input_lost: false,
        }
    }

    /// Body bytes read from the client so far (chunk data for a chunked body).
    pub fn received(&self) -> u64 {
        self.total
    }

    /// The body can be sent again to another server: every byte read so far is in the
    /// copy (the rest, if any, is still with the client and is streamed after it).
    pub fn replayable(&self) -> bool {
        !self.outgrown
    }

    /// How many of `input`'s bytes belong to the body; updates completion and limits.
    fn take(&mut self, input: &[u8], max: u64) -> Result<usize, ClientBodyError> {
        let n = match &mut self.framing {
            BodyFraming::Length { remaining } => {
                let n = (*remaining).min(input.len() as u64) as usize;
                *remaining -= n as u64;
                self.total += n as u64;
                self.complete = *remaining == 0;
                n
            }
            BodyFraming::Chunked(decoder, data) => {
                data.clear();
                let decoded = decoder
                    .decode(input, data)
                    .map_err(|_| ClientBodyError::Malformed)?;
                self.total += data.iter().map(|r| r.len() as u64).sum::<u64>();
                self.complete = decoded.done;
                decoded.consumed
            }
        };
        if self.total > max {
            return Err(ClientBodyError::TooLarge);
        }
        Ok(n)
    }

    /// Appends body bytes about to go upstream to the copy, or, when they would make it
    /// larger than `limit`, gives the copy up (and its memory back) for good.
    fn keep(&mut self, bytes: &[u8]) {
        if self.outgrown {
            return;
        }
        if self.copy.len() + bytes.len() <= self.limit {
            self.copy.extend_from_slice(bytes);
        } else {
            self.give_up_copy();
        }
    }

    /// The copy can no longer stand for what was sent: never replay this body.
    pub fn give_up_copy(&mut self) {
        self.outgrown = true;
        self.copy = Vec::new();
    }

    /// Moves body bytes that are already in `inbound` into the copy, up to `limit`,
    /// before any server is contacted (no waiting: they go out with the request head).
    fn copy_pending(&mut self, inbound: &mut Inbound, max: u64) -> Result<(), ClientBodyError> {
        let room = self.limit - self.copy.len();
        let pending = inbound.pending();
        let n = self.take(&pending[..pending.len().min(room)], max)?;
        self.copy.extend_from_slice(&pending[..n]);
        inbound.consume(n);
        Ok(())
    }

    /// Takes the body bytes that arrived with the head into the copy. With `enough` (the
    /// body must be looked at before a server is chosen: `$request_model`, a model route, a
    /// prompt key), also reads from the client until the body is complete, the copy is full,
    /// or `enough` says the de-chunked prefix read so far tells what is needed. `enough` is
    /// asked again only each time the copy has doubled, so a large body is scanned a bounded
    /// number of times (at most twice its size in all).
    pub async fn preread(
        &mut self,
        client: &mut TcpStream,
        inbound: &mut Inbound,
        spec: &Listener,
        mut enough: Option<Enough<'_>>,
    ) -> Result<(), ClientBodyError> {
        let mut scratch = Vec::new();
        let mut checked = 0;
        loop {
            self.copy_pending(inbound, spec.client_max_body_size)?;
            if self.complete || self.copy.len() >= self.limit {
                return Ok(());
            }
            let Some(enough) = enough.as_mut() else {
                return Ok(());
            };
            if !self.copy.is_empty() && self.copy.len() >= checked * 2 {
                checked = self.copy.len();
                if enough(self.prefix(&mut scratch)) {
                    return Ok(());
                }
            }
            fill_client(client, inbound, spec.client_body_timeout).await?;
        }
    }

    /// The body bytes in the copy without chunk framing: the copy itself for a body with a
    /// length, else its chunk data decoded into `scratch` (up to any framing error).
    pub fn prefix<'a>(&'a self, scratch: &'a mut Vec<u8>) -> &'a [u8] {
        if let BodyFraming::Length { .. } = self.framing {
            return &self.copy;
        }
        let mut ranges = Vec::new();
        // A framing error was already answered by `take`; decode what precedes it.
        let _ = ChunkedDecoder::new().decode(&self.copy, &mut ranges);
        scratch.clear();
        for range in ranges {
            scratch.extend_from_slice(&self.copy[range]);
        }
        scratch
    }

    /// Streams the rest of the body from the client to `upstream`, each read as soon as it
    /// arrives, keeping the copy up to date. While it waits for the client it also watches
    /// the server: a final answer stops the body at once (see [`StreamError::EarlyResponse`]);
    /// interim `1xx` heads (other than 101) are read into `up_in` and skipped, and the body
    /// goes on, as the server still expects it.
    pub async fn stream_rest(
        &mut self,
        client: &mut TcpStream,
        inbound: &mut Inbound,
        upstream: &mut TcpStream,
        up_in: &mut Inbound,
        spec: &Listener,
        send_timeout: Duration,
    ) -> Result<(), StreamError> {
        while !self.complete {
            if inbound.is_empty() {
                // Bytes (or the end) already waiting are read at once; only a client that
                // has nothing yet is waited for together with the server (a readiness wait
                // costs more than the read, and uploads read many times).
                let ready = match peek(client) {
                    Peeked::Nothing => {
                        either_readable(client, upstream, spec.client_body_timeout).await
                    }
                    _ => Readable::Client,
                };
                match ready {
                    Readable::Client => fill_client(client, inbound, spec.client_body_timeout)
                        .await
                        .map_err(StreamError::Client)?,
                    Readable::Upstream => {}
                    Readable::Neither => return Err(StreamError::Client(ClientBodyError::Timeout)),
                }
            }
            // A server that answers before it has the whole body may never read the rest,
            // and would then take it for a request of its own: stop sending.
            match peek(upstream) {
                Peeked::Data if !only_interim(upstream, up_in, send_timeout).await => {
                    return Err(StreamError::EarlyResponse);
                }
                Peeked::Closed => {
                    let e = io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "server closed before it had the whole body",
                    );
                    return Err(StreamError::Upstream(e));
                }
                _ => {}
            }
            if inbound.is_empty() {
                continue;
            }
            let n = self
                .take(inbound.pending(), spec.client_max_body_size)
                .map_err(StreamError::Client)?;
            // Kept before the write: bytes read from the client are in the copy whether or
            // not this server took them, so a replay never misses or repeats one.
            self.keep(&inbound.pending()[..n]);
            if let Err(e) = inbound.forward(upstream, n, send_timeout).await {
                if inbound.pending().len() >= n {
                    inbound.consume(n);
                } else {
                    // A cancelled write took the read buffer with it (see `Inbound::fill`).
                    self.input_lost = true;
                }
                return Err(StreamError::Upstream(e));
            }
        }
        Ok(())
    }

    /// Whether the rest of an unfinished body is small enough to read and drop after an
    /// early answer, so that the connection can serve another request (see [`Self::discard`]).
    /// A chunked body's size is unknown: it is tried, and cut at [`DISCARD_BYTES`].
    pub fn discardable(&self) -> bool {
        !self.input_lost
            && match self.framing {
                BodyFraming::Length { remaining } => remaining <= DISCARD_BYTES,
                BodyFraming::Chunked(..) => true,
            }
    }

    /// Reads the rest of the body from the client and drops it (nginx's discarded body),
    /// through its own framing, so that what follows it is the next request and nothing of
    /// the body is ever parsed as one. Fails when more than [`DISCARD_BYTES`] are left, the
    /// framing breaks, the client leaves, or `deadline` passes first.
    pub async fn discard(
        &mut self,
        client: &mut TcpStream,
        inbound: &mut Inbound,
        spec: &Listener,
        deadline: std::time::Instant,
    ) -> Result<(), ClientBodyError> {
        let start = self.total;
        loop {
            let n = self.take(inbound.pending(), spec.client_max_body_size)?;
            inbound.consume(n);
            if self.complete {
                return Ok(());
            }
            if self.total - start > DISCARD_BYTES {
                return Err(ClientBodyError::TooLarge);
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            fill_client(client, inbound, left).await?;
        }
    }
}

/// The most body bytes read and dropped after an early answer to keep the connection.
pub const DISCARD_BYTES: u64 = 64 * 1024;

/// Which side became readable first.
enum Readable {
    Client,
    Upstream,
    Neither,
}

/// Waits until the client or the server has bytes (or an end) to read, within `timeout`;
/// nothing is read, so whichever wait loses loses nothing.
async fn either_readable(client: &TcpStream, upstream: &TcpStream, timeout: Duration) -> Readable {
    let both = async {
        monoio::select! {
            _ = client.readable(false) => Readable::Client,
            _ = upstream.readable(false) => Readable::Upstream,
        }
    };
    crate::timer::timeout(timeout, both)
        .await
        .unwrap_or(Readable::Neither)
}

/// Reads what the server sent into `up_in` and drops the interim `1xx` heads at its front
/// (101 excepted: it switches protocols); says whether that was all. A final answer, a
/// head not yet whole, or one that does not parse stays in `up_in` for the response
/// reader, and the body stops.
async fn only_interim(upstream: &mut TcpStream, up_in: &mut Inbound, timeout: Duration) -> bool {
    if !matches!(up_in.fill(upstream, READ_CHUNK, timeout).await, Ok(1..)) {
        return false;
    }
    while let Ok(Some(head)) = parse_response(up_in.pending(), false, MAX_RESPONSE_HEAD) {
        if !(100..200).contains(&head.status) || head.status == 101 {
            return false;
        }
        up_in.consume(head.len);
    }
    up_in.is_empty()
}

/// A failure while streaming, by side.
#[derive(Debug)]
pub enum StreamError {
    Client(ClientBodyError),
    Upstream(io::Error),
    /// The server began to answer before the whole body was sent; the rest was not sent.
    EarlyResponse,
}

async fn fill_client(
    client: &mut TcpStream,
    inbound: &mut Inbound,
    timeout: Duration,
) -> Result<(), ClientBodyError> {
    match inbound.fill(client, READ_CHUNK, timeout).await {
        Ok(0) => Err(ClientBodyError::Gone),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::TimedOut => Err(ClientBodyError::Timeout),
        Err(_) => Err(ClientBodyError::Gone),
    }
}

/// How the response body arrives from the server.
pub enum UpFraming {
    None,
    Length(u64),
    Chunked(ChunkedDecoder),
    Eof,
}

/// How a response body copy ended.
#[derive(Debug, PartialEq, Eq)]
pub enum CopyEnd {
    /// The whole body went down; the server connection is clean if the server allows reuse.
    Complete,
    /// The body ended by the server closing (`Eof` framing): complete, connection not reusable.
    Closed,
}

/// What a response body copy reports while it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopyEvent {
    /// The first body bytes arrived (`$upstream_first_token_time`).
    FirstByte,
    /// The server has sent the whole body (it stops counting as busy).
    UpstreamDone,
}

/// A response body copy that could not finish.
#[derive(Debug)]
pub enum CopyError {
    /// Server read failed, timed out, closed early or framed the body badly.
    Upstream(io::Error),
    /// Writing to the client failed.
    Client(io::Error),
}

/// Deadlines of a response body copy.
#[derive(Clone, Copy, Debug)]
pub struct CopyTimeouts {
    /// Longest gap between two reads from the server.
    pub read: Duration,
    /// Longest time one write to the client may take.
    pub send: Duration,
}

/// Copies the response body from the server to the client as it arrives. `out` holds the
/// client head already written into it (sent together with the first body bytes).
/// `events` hears of the first body byte and, once, of the server having sent the whole
/// body. With `gzip`, the body goes down compressed, each read flushed at once.
#[allow(clippy::too_many_arguments)]
pub async fn copy_response(
    upstream: &mut TcpStream,
    up_in: &mut Inbound,
    client: &mut TcpStream,
    mut framing: UpFraming,
    down: DownFraming,
    mut out: Vec<u8>,
    timeouts: CopyTimeouts,
    mut gzip: Option<&mut Encoder>,
    events: &dyn Fn(CopyEvent),
) -> (Result<CopyEnd, CopyError>, Vec<u8>, u64) {
    let CopyTimeouts {
        read: read_timeout,
        send: send_timeout,
    } = timeouts;
    let mut sent = 0u64;
    let mut data = Vec::new();
    loop {
        // Bytes that pass through unchanged go straight from the read buffer to the client;
        // behind a pending head they ride in the same write (gathered) when they are many.
        let pass = gzip.is_none() && passes_through(&framing, down);
        let direct = pass && (out.is_empty() || up_in.pending().len() >= GATHER_FROM);
        let step = match gzip.as_deref_mut() {
            None => {
                let sink = if direct { None } else { Some(&mut out) };
                frame(&mut framing, up_in.pending(), down, sink, &mut data)
            }
            Some(gz) => compressed(&mut framing, up_in.pending(), down, gz, &mut out, &mut data),
        };
        let (done, n) = match step {
            Ok(step) => step,
            Err(e) => return (Err(CopyError::Upstream(e)), out, sent),
        };
        if sent == 0 && n > 0 {
            events(CopyEvent::FirstByte);
        }
        sent += n as u64;
        if done.is_some() {
            // The server's part is over before the client has the last bytes: a request
            // that follows at once must not see this server as still busy.
            events(CopyEvent::UpstreamDone);
        }
        let written = if direct && !out.is_empty() {
            let (res, buf) = up_in
                .forward_after(client, std::mem::take(&mut out), n, send_timeout)
                .await;
            out = buf;
            res
        } else if direct {
            up_in.forward(client, n, send_timeout).await
        } else {
            up_in.consume(n);
            flush(client, &mut out, send_timeout).await
        };
        if let Err(e) = written {
            return (Err(CopyError::Client(e)), out, sent);
        }
        if let Some(end) = done {
            return (Ok(end), out, sent);
        }
        if let Some(rest) = splice_rest(&framing, down, gzip.is_some(), up_in, &out) {
            let deadlines = Deadlines {
                read: read_timeout,
                send: send_timeout,
            };
            let spliced = splice_body(upstream, client, rest, deadlines, &mut sent, events);
            if let Some(done) = spliced.await {
                return (done.map(|()| CopyEnd::Complete), out, sent);
            }
        }
        // Between two reads the server may work for long (the next token): a client that
        // leaves meanwhile ends the copy at once, and the server connection is closed.
        let fill = up_in.fill(upstream, STREAM_CHUNK, read_timeout);
        let Some(filled) = unless_client_leaves(fill, client).await else {
            let e = io::Error::new(io::ErrorKind::ConnectionAborted, "client went away");
            return (Err(CopyError::Client(e)), out, sent);
        };
        match filled {
            Ok(0) if matches!(framing, UpFraming::Eof) => {
                events(CopyEvent::UpstreamDone);
                if let Some(gz) = gzip.as_deref_mut() {
                    if let Err(e) = gz.compress(true, down, &mut out) {
                        return (Err(CopyError::Upstream(e)), out, sent);
                    }
                } else if down == DownFraming::Chunked {
                    out.extend_from_slice(LAST_CHUNK);
                }
                if let Err(e) = flush(client, &mut out, send_timeout).await {
                    return (Err(CopyError::Client(e)), out, sent);
                }
                return (Ok(CopyEnd::Closed), out, sent);
            }
            Ok(0) => {
                let e = io::Error::new(io::ErrorKind::UnexpectedEof, "server closed mid-body");
                return (Err(CopyError::Upstream(e)), out, sent);
            }
            Ok(_) => {}
            Err(e) => return (Err(CopyError::Upstream(e)), out, sent),
        }
    }
}

/// [`frame`] for a compressed response: the bare body bytes of `input` (`Close` framing
/// copies them as they are) go through `gz` into `out`.
fn compressed(
    framing: &mut UpFraming,
    input: &[u8],
    down: DownFraming,
    gz: &mut Encoder,
    out: &mut Vec<u8>,
    data: &mut Vec<std::ops::Range<usize>>,
) -> io::Result<(Option<CopyEnd>, usize)> {
    let (done, n) = frame(
        framing,
        input,
        DownFraming::Close,
        Some(&mut gz.plain),
        data,
    )?;
    gz.compress(done.is_some(), down, out)?;
    Ok((done, n))
}

/// What is left of a body that goes through a pipe (see `http::spliced`): a long enough
/// rest of a Content-Length body passed on unchanged, with nothing of it left in user space.
fn splice_rest(
    framing: &UpFraming,
    down: DownFraming,
    gzip: bool,
    up_in: &Inbound,
    out: &[u8],
) -> Option<u64> {
    match *framing {
        UpFraming::Length(rest)
            if rest >= SPLICE_FROM
                && !gzip
                && matches!(down, DownFraming::Length(_))
                && up_in.is_empty()
                && out.is_empty() =>
        {
            Some(rest)
        }
        _ => None,
    }
}

/// Writes and empties `out` (nothing to do when it is empty).
async fn flush(client: &mut TcpStream, out: &mut Vec<u8>, timeout: Duration) -> io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    let (res, buf) = write_all(client, std::mem::take(out), timeout).await;
    *out = buf;
    out.clear();
    res
}

/// The client gets the server's body bytes unchanged.
fn passes_through(framing: &UpFraming, down: DownFraming) -> bool {
    match framing {
        UpFraming::None | UpFraming::Length(_) => true,
        UpFraming::Chunked(_) => down == DownFraming::Chunked,
        UpFraming::Eof => down == DownFraming::Close,
    }
}

/// Finds how much of `input` is body and whether it ends there; with `out`, also writes
/// those bytes into it in the client's framing (without, the caller forwards them as they
/// are). Returns whether the body is complete and how many input bytes were used.
fn frame(
    framing: &mut UpFraming,
    input: &[u8],
    down: DownFraming,
    mut out: Option<&mut Vec<u8>>,
    data: &mut Vec<std::ops::Range<usize>>,
) -> io::Result<(Option<CopyEnd>, usize)> {
    match framing {
        UpFraming::None => Ok((Some(CopyEnd::Complete), 0)),
        UpFraming::Length(remaining) => {
            let n = (*remaining).min(input.len() as u64) as usize;
            if let Some(out) = out {
                out.extend_from_slice(&input[..n]);
            }
            *remaining -= n as u64;
            Ok(((*remaining == 0).then_some(CopyEnd::Complete), n))
        }
        UpFraming::Chunked(decoder) => {
            data.clear();
            let decoded = decoder
                .decode(input, data)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunked body"))?;
            if let Some(out) = out.as_deref_mut() {
                if down == DownFraming::Chunked {
                    // Both sides chunked: the validated bytes go through unchanged.
                    out.extend_from_slice(&input[..decoded.consumed]);
                } else {
                    for r in data.iter() {
                        out.extend_from_slice(&input[r.clone()]);
                    }
                }
            }
            Ok((decoded.done.then_some(CopyEnd::Complete), decoded.consumed))
        }
        UpFraming::Eof => {
            if let Some(out) = out
                && !input.is_empty()
            {
                if down == DownFraming::Chunked {
                    chunk_header(input.len(), out);
                    out.extend_from_slice(input);
                    out.extend_from_slice(b"\r\n");
                } else {
                    out.extend_from_slice(input);
                }
            }
            Ok((None, input.len()))
        }
    }
}

/// After `101 Switching Protocols`: copies bytes both ways until both directions have ended.
/// Each direction ends on end of stream, an error, or `idle` without a byte.
pub async fn relay(client: TcpStream, upstream: TcpStream, idle: Duration) {
    let (client_r, client_w) = client.into_split();
    let (up_r, up_w) = upstream.into_split();
    monoio::join!(pipe(client_r, up_w, idle), pipe(up_r, client_w, idle));
}

async fn pipe<R: AsyncReadRent, W: AsyncWriteRent>(mut from: R, mut to: W, idle: Duration) {
    let mut buf = Vec::with_capacity(STREAM_CHUNK);
    loop {
        buf.clear();
        let (res, b) = match crate::timer::timeout(idle, from.read(buf)).await {
            Ok(r) => r,
            Err(_) => break,
        };
        buf = b;
        match res {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let (res, b) = to.write_all(buf).await;
        buf = b;
        if res.is_err() {
            break;
        }
    }
    // Propagate the half-close so the other side sees end of stream too.
    let _ = to.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: u64 = 1 << 20;

    #[test]
    fn a_small_body_that_came_with_the_head_is_whole_in_the_copy() {
        let mut body = RequestBodyState::new(RequestBody::Length(5), 16);
        let mut inbound = Inbound::holding(b"helloGET / HTTP/1.1\r\n");
        body.copy_pending(&mut inbound, MAX).unwrap();
        assert_eq!(body.copy, b"hello");
        assert!(body.complete && body.replayable());
        assert_eq!(
            inbound.pending(),
            b"GET / HTTP/1.1\r\n",
            "the next request stays"
        );
    }

    #[test]
    fn the_prefix_of_a_chunked_copy_is_its_data_even_cut_mid_chunk() {
        let mut body = RequestBodyState::new(RequestBody::Chunked, 17);
        let mut inbound = Inbound::holding(b"5\r\n{\"mod\r\n6\r\nel\":\"m\r\n0\r\n\r\n");
        body.copy_pending(&mut inbound, MAX).unwrap();
        let mut scratch = Vec::new();
        assert_eq!(body.prefix(&mut scratch), b"{\"model\":");
        // A length-framed copy is its own prefix.
        let mut body = RequestBodyState::new(RequestBody::Length(4), 16);
        body.copy_pending(&mut Inbound::holding(b"{}  "), MAX)
            .unwrap();
        assert_eq!(body.prefix(&mut scratch), b"{}  ");
    }

    #[test]
    fn the_copy_takes_no_more_than_the_limit_before_a_server_is_chosen() {
        let mut body = RequestBodyState::new(RequestBody::Length(10), 4);
        let mut inbound = Inbound::holding(b"0123456789");
        body.copy_pending(&mut inbound, MAX).unwrap();
        assert_eq!(body.copy, b"0123");
        assert_eq!(inbound.pending(), b"456789", "left to be streamed");
        assert!(!body.complete && body.replayable());
        assert_eq!(body.received(), 4);
    }

    #[test]
    fn a_chunked_copy_cut_at_the_limit_goes_on_decoding_where_it_stopped() {
        let wire = b"5\r\nhello\r\n0\r\n\r\n";
        let mut body = RequestBodyState::new(RequestBody::Chunked, 6);
        let mut inbound = Inbound::holding(wire);
        body.copy_pending(&mut inbound, MAX).unwrap();
        assert_eq!(body.copy, b"5\r\nhel");
        assert!(!body.complete);
        let n = body.take(inbound.pending(), MAX).unwrap();
        assert_eq!(n, wire.len() - 6);
        assert!(body.complete);
        assert_eq!(body.received(), 5);
    }

    #[test]
    fn the_copy_follows_what_was_sent_until_it_would_outgrow_the_limit() {
        let mut body = RequestBodyState::new(RequestBody::Length(9), 8);
        body.keep(b"abcd");
        body.keep(b"efgh");
        assert_eq!(body.copy, b"abcdefgh");
        assert!(body.replayable(), "exactly the limit is still a whole copy");
        body.keep(b"i");
        assert!(!body.replayable());
        assert!(
            body.copy.is_empty() && body.copy.capacity() == 0,
            "memory given back"
        );
        body.keep(b"");
        assert!(!body.replayable(), "an outgrown copy never comes back");
    }

    #[test]
    fn a_body_larger_than_the_limit_is_replayable_only_until_bytes_beyond_it_went_out() {
        let mut body = RequestBodyState::new(RequestBody::Length(100), 10);
        let mut inbound = Inbound::holding(&[b'x'; 6]);
        body.copy_pending(&mut inbound, MAX).unwrap();
        assert!(body.replayable(), "6 of 100 bytes read, all in the copy");
        let mut more = Inbound::holding(&[b'y'; 4]);
        let n = body.take(more.pending(), MAX).unwrap();
        body.keep(&more.pending()[..n]);
        more.consume(n);
        assert!(body.replayable() && body.copy.len() == 10);
        let n = body.take(&[b'z'; 1], MAX).unwrap();
        body.keep(&[b'z'; 1][..n]);
        assert!(!body.replayable());
    }

    #[test]
    fn a_zero_limit_keeps_nothing_and_any_byte_sent_ends_replay() {
        let mut body = RequestBodyState::new(RequestBody::Length(3), 0);
        let mut inbound = Inbound::holding(b"abc");
        body.copy_pending(&mut inbound, MAX).unwrap();
        assert!(body.copy.is_empty() && body.replayable());
        assert_eq!(inbound.pending(), b"abc");
        body.keep(b"abc");
        assert!(!body.replayable());
        let empty = RequestBodyState::new(RequestBody::None, 0);
        assert!(
            empty.complete && empty.replayable(),
            "no body is always replayable"
        );
    }

    #[test]
    fn the_body_size_limit_holds_across_the_copy_and_the_stream() {
        let mut body = RequestBodyState::new(RequestBody::Chunked, 4);
        let mut inbound = Inbound::holding(b"3\r\nabc\r\n3\r\ndef\r\n");
        body.copy_pending(&mut inbound, 5).unwrap();
        assert!(matches!(
            body.take(inbound.pending(), 5),
            Err(ClientBodyError::TooLarge)
        ));
    }
}
