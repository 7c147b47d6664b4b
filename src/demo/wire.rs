//! The demo backends' small HTTP/1.1 server side, shared with the LLM simulator: request
//! heads (httparse), body framing (length, chunked), one connection's buffered reads, and
//! the response heads they send.

use std::io;

use monoio::buf::{IoBuf, IoBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

/// Largest request head a demo backend accepts (431 beyond).
pub(crate) const MAX_HEAD: usize = 64 << 10;
pub(crate) const MAX_HEADERS: usize = 64;
pub(crate) const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// How a request body is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyFrame {
    None,
    Length(u64),
    Chunked,
}

/// What the server needs from one request head.
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) len: usize,
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) http11: bool,
    pub(crate) keep_alive: bool,
    pub(crate) body: BodyFrame,
    pub(crate) expect_continue: bool,
}

/// Why a head was refused: the status to answer before closing.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HeadError {
    Malformed,
    TooLarge,
}

/// Parses a request head at the start of `buf`; `Ok(None)` means read more.
pub(crate) fn parse_head(buf: &[u8]) -> Result<Option<Head>, HeadError> {
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

/// Incremental reader of a chunked body: finds where it ends, and keeps the data when
/// asked to (the simulator needs the JSON; the demo paths drop it).
#[derive(Debug)]
pub(crate) enum ChunkSkip {
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
    pub(crate) fn new() -> Self {
        ChunkSkip::Size { n: 0, digits: 0 }
    }

    /// Consumes bytes of `input` that belong to the body; stops right after its end.
    /// Returns how many bytes were consumed, or `Err` on bad framing.
    pub(crate) fn feed(&mut self, input: &[u8]) -> Result<usize, ()> {
        self.feed_into(input, None)
    }

    /// As [`ChunkSkip::feed`], appending the chunks' data to `keep`.
    pub(crate) fn feed_into(
        &mut self,
        input: &[u8],
        mut keep: Option<&mut Vec<u8>>,
    ) -> Result<usize, ()> {
        let mut i = 0;
        while i < input.len() {
            if let ChunkSkip::Data(left) = self {
                let take = (*left).min((input.len() - i) as u64);
                if let Some(keep) = keep.as_deref_mut() {
                    keep.extend_from_slice(&input[i..i + take as usize]);
                }
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

    pub(crate) fn is_done(&self) -> bool {
        matches!(self, ChunkSkip::Done)
    }
}

/// One client connection: its socket and the bytes read but not yet used.
pub(crate) struct Conn {
    pub(crate) stream: TcpStream,
    pub(crate) buf: Vec<u8>,
}

impl Conn {
    /// Reads more bytes onto the end of `buf`; `Ok(0)` is end of stream.
    pub(crate) async fn fill(&mut self) -> io::Result<usize> {
        let len = self.buf.len();
        self.buf.reserve(16 * 1024);
        let buf = std::mem::take(&mut self.buf);
        let (res, slice) = self.stream.read(buf.slice_mut(len..)).await;
        self.buf = slice.into_inner();
        res
    }

    pub(crate) async fn write<T: IoBuf + 'static>(&mut self, bytes: T) -> io::Result<()> {
        let (res, _) = self.stream.write_all(bytes).await;
        res.map(|_| ())
    }

    /// Reads and drops the body; returns its length.
    pub(crate) async fn discard_body(&mut self, frame: BodyFrame) -> io::Result<u64> {
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

/// Why a body could not be read whole.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// Longer than the caller's limit: answer 413.
    TooLarge,
    /// Bad chunked framing, or the client went away: answer 400 (if anyone listens).
    Io(io::Error),
}

impl Conn {
    /// Reads the whole body into memory, refusing one longer than `limit` bytes.
    pub(crate) async fn read_body(
        &mut self,
        frame: BodyFrame,
        limit: usize,
    ) -> Result<Vec<u8>, BodyError> {
        let eof = || BodyError::Io(io::ErrorKind::UnexpectedEof.into());
        match frame {
            BodyFrame::None => Ok(Vec::new()),
            BodyFrame::Length(n) if n > limit as u64 => Err(BodyError::TooLarge),
            BodyFrame::Length(n) => {
                let n = n as usize;
                while self.buf.len() < n {
                    if self.fill().await.map_err(BodyError::Io)? == 0 {
                        return Err(eof());
                    }
                }
                Ok(self.buf.drain(..n).collect())
            }
            BodyFrame::Chunked => {
                let mut chunks = ChunkSkip::new();
                let mut body = Vec::new();
                loop {
                    let used = chunks
                        .feed_into(&self.buf, Some(&mut body))
                        .map_err(|()| BodyError::Io(bad_chunk()))?;
                    self.buf.drain(..used);
                    if body.len() > limit {
                        return Err(BodyError::TooLarge);
                    }
                    if chunks.is_done() {
                        return Ok(body);
                    }
                    if self.fill().await.map_err(BodyError::Io)? == 0 {
                        return Err(eof());
                    }
                }
            }
        }
    }
}

pub(crate) fn bad_chunk() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "malformed chunked body")
}

/// `data` as one chunk, or as is.
pub(crate) fn frame(data: &[u8], chunked: bool) -> Vec<u8> {
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

pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

pub(crate) fn response_head(
    port: u16,
    status: u16,
    content_type: &str,
    len: usize,
    keep_alive: bool,
) -> Vec<u8> {
    head_with(port, status, content_type, len, keep_alive, "")
}

/// A response head with `extra` (whole `Name: value\r\n` lines) after the usual headers.
pub(crate) fn head_with(
    port: u16,
    status: u16,
    content_type: &str,
    len: usize,
    keep_alive: bool,
    extra: &str,
) -> Vec<u8> {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {len}\r\n\
         X-Backend: {port}\r\nConnection: {connection}\r\n{extra}\r\n",
        reason(status)
    )
    .into_bytes()
}

pub(crate) fn text_response(port: u16, status: u16, body: &str, keep_alive: bool) -> Vec<u8> {
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

pub(crate) fn json_response(port: u16, body: &str, keep_alive: bool) -> Vec<u8> {
    let mut out = response_head(port, 200, "application/json", body.len(), keep_alive);
    out.extend_from_slice(body.as_bytes());
    out
}
