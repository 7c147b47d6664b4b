//! Request and response heads: parsed with httparse, validated, recorded as positions.
//!
//! Parsing is pure and incremental: `Ok(None)` means "read more". Headers are kept as byte
//! ranges into the caller's buffer (no copies); the caller keeps the buffer alive while it
//! uses the head. Every framing ambiguity SPEC lists is an error here, so the data path
//! never forwards a request whose end it cannot be sure of.

use std::ops::Range;

/// Most headers one head may carry; more is 431.
pub const MAX_HEADERS: usize = 128;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// Why a head was refused; each maps to one status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadError {
    /// 400: malformed or ambiguous; the reason is for the error log.
    Malformed(&'static str),
    /// 431: head larger than `max_header_size` or more than `MAX_HEADERS` headers.
    TooLarge,
    /// 501: a Transfer-Encoding other than `chunked` alone (nginx answers 501 too).
    UnsupportedEncoding,
}

impl HeadError {
    pub fn status(&self) -> u16 {
        match self {
            HeadError::Malformed(_) => 400,
            HeadError::TooLarge => 431,
            HeadError::UnsupportedEncoding => 501,
        }
    }
}

/// One header, as positions in the head buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderPos {
    pub name: Range<usize>,
    pub value: Range<usize>,
    /// Hop-by-hop: Connection and what it names, Keep-Alive, TE, Trailer, Upgrade,
    /// Proxy-Connection, Transfer-Encoding, Content-Length (framing is re-derived), Expect.
    /// Never forwarded as-is.
    pub hop: bool,
}

/// How a request body is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestBody {
    None,
    Length(u64),
    Chunked,
}

/// A parsed, validated request head.
#[derive(Clone, Debug)]
pub struct RequestHead {
    /// Bytes of the head including the final CRLFCRLF.
    pub len: usize,
    pub method: Range<usize>,
    /// The request target as sent.
    pub target: Range<usize>,
    /// The origin-form part of the target (`/path?query`); for an absolute-form target the
    /// part after the authority (or `/` when empty). What is forwarded upstream.
    pub path: Range<usize>,
    pub version: Version,
    pub headers: Vec<HeaderPos>,
    pub body: RequestBody,
    /// Host to route on: the authority of an absolute-form target, else the Host header;
    /// without the port. Not lower-cased (compare case-insensitively).
    pub host: Option<Range<usize>>,
    /// The client wants the connection kept open after this exchange.
    pub keep_alive: bool,
    /// `Connection: upgrade` with an `Upgrade` header.
    pub upgrade: bool,
    /// `Expect: 100-continue`.
    pub expect_continue: bool,
}

/// Limits a request head must fit.
#[derive(Clone, Copy, Debug)]
pub struct HeadLimits {
    pub max_header_size: usize,
}

/// Parses a request head at the start of `buf`. `Ok(None)`: incomplete, read more (unless
/// `buf.len()` already exceeds the limit, which is `TooLarge`).
pub fn parse_request(_buf: &[u8], _limits: HeadLimits) -> Result<Option<RequestHead>, HeadError> {
    todo!()
}

impl RequestHead {
    pub fn method<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        &buf[self.method.clone()]
    }

    /// Whether the method is one nginx will not retry without `non_idempotent`.
    pub fn is_idempotent(&self, buf: &[u8]) -> bool {
        !matches!(self.method(buf), b"POST" | b"LOCK" | b"PATCH")
    }

    pub fn is_head(&self, buf: &[u8]) -> bool {
        self.method(buf) == b"HEAD"
    }

    /// First header with this (case-insensitive) name.
    pub fn header<'b>(&self, _buf: &'b [u8], _name: &str) -> Option<&'b [u8]> {
        todo!()
    }
}

/// How a response body is framed (RFC 9112 6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseBody {
    /// 1xx, 204, 304, or a response to HEAD.
    None,
    Length(u64),
    Chunked,
    /// Until the server closes.
    Eof,
}

/// A parsed response head from a server.
#[derive(Clone, Debug)]
pub struct ResponseHead {
    pub len: usize,
    pub status: u16,
    pub version: Version,
    /// The reason phrase (may be empty).
    pub reason: Range<usize>,
    pub headers: Vec<HeaderPos>,
    pub body: ResponseBody,
    /// The server lets us reuse the connection after this response.
    pub keep_alive: bool,
}

/// Parses a response head; `request_was_head` and the status decide whether a body follows.
/// Lenient where RFC 9112 allows (both CL and TE: chunked wins, connection not reused).
pub fn parse_response(
    _buf: &[u8],
    _request_was_head: bool,
    _max_size: usize,
) -> Result<Option<ResponseHead>, HeadError> {
    todo!()
}

impl ResponseHead {
    /// First header with this (case-insensitive) name.
    pub fn header<'b>(&self, _buf: &'b [u8], _name: &str) -> Option<&'b [u8]> {
        todo!()
    }
}
