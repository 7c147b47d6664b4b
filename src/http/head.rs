//! Request and response heads: parsed with httparse, validated, recorded as positions.
//!
//! Parsing is pure and incremental: `Ok(None)` means "read more". Headers are kept as byte
//! ranges into the caller's buffer (no copies); the caller keeps the buffer alive while it
//! uses the head. Every framing ambiguity SPEC lists is an error here, so the data path
//! never forwards a request whose end it cannot be sure of.
//!
//! What httparse (default `ParserConfig`) already refuses, and we rely on: obs-fold (a line
//! starting with SP/HT), whitespace between a name and its colon, an empty or non-token
//! name, NUL/CR/LF (any CTL but HT) inside a value, a bare CR, versions other than 1.0/1.1.
//! It skips empty lines before the start line (`len` counts them) and accepts a bare LF as
//! a line end: we refuse that in requests (so an LF is never "inside" a value for one hop
//! and a line end for the next) and allow it in responses (RFC 9112 2.2, as nginx). The
//! tests pin every one of these, so an httparse upgrade that relaxes one fails here.
//!
//! Choices where the RFCs leave room:
//! - `Content-Length: 0` gives `RequestBody::Length(0)`, so an empty POST is still forwarded
//!   with a length (some servers answer 411 without one).
//! - Transfer-Encoding: the combined list of a request (all TE lines) must be exactly
//!   `chunked`, with no empty element: RFC 9110 5.6.1 says to skip them, but `,chunked` or
//!   an empty TE line beside a real one is a classic way to make two hops disagree, and no
//!   honest client sends one. Responses skip empty elements (the client only ever sees
//!   ringway's own framing). `chunked` last after other codings (`gzip, chunked`) is
//!   `UnsupportedEncoding` (501, as nginx); `chunked` missing, not last, or twice is
//!   `Malformed` (400, RFC 9112 6.3: the length cannot be determined).
//! - Hosts keep IPv6 brackets (`[::1]`), so the value can go straight into a Host header.
//!   Userinfo (`user@host`) in a target or Host is refused (RFC 9110 4.2.4).
//! - An absolute-form target with a query or fragment but no path (`http://h?q`) is
//!   refused: its origin-form (`/?q`) is not a range of the buffer.
//! - `Expect` and `Upgrade` are ignored in HTTP/1.0 requests (RFC 9110 10.1.1, 7.8).
//! - `Connection` can make any header hop-by-hop except Host, which is always kept.

use std::mem::MaybeUninit;
use std::ops::Range;

mod list;
pub use list::HeaderList;

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
    /// 414: the request line alone is longer than `max_header_size` (a target too long).
    TargetTooLong,
    /// 501: a Transfer-Encoding other than `chunked` alone (nginx answers 501 too).
    UnsupportedEncoding,
}

impl HeadError {
    pub fn status(&self) -> u16 {
        match self {
            HeadError::Malformed(_) => 400,
            HeadError::TooLarge => 431,
            HeadError::TargetTooLong => 414,
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
    pub headers: HeaderList,
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
/// `buf.len()` already exceeds the limit, which is `TooLarge`). A caller that reads up to
/// `max_header_size + 1` bytes therefore always gets an answer.
pub fn parse_request(buf: &[u8], limits: HeadLimits) -> Result<Option<RequestHead>, HeadError> {
    let mut slots = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            let max = limits.max_header_size;
            return partial(buf.len(), max).map_err(|_| too_large(buf, max));
        }
        Err(e) => return Err(from_httparse(e)),
    };
    if len > limits.max_header_size {
        return Err(too_large(buf, limits.max_header_size));
    }
    if has_bare_lf(at(buf, &(0..len))) {
        return Err(HeadError::Malformed("bare LF in request head"));
    }
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(HeadError::Malformed("incomplete request line"));
    };
    let version = if minor == 0 {
        Version::Http10
    } else {
        Version::Http11
    };
    let method = span(buf, method.as_bytes())?;
    let target = span(buf, target.as_bytes())?;
    let method_bytes = at(buf, &method);
    if method_bytes == b"CONNECT" {
        return Err(HeadError::Malformed("CONNECT is not supported"));
    }
    let (path, authority_host) = split_target(buf, method_bytes, target.clone())?;
    let (headers, scan) = scan_headers(buf, req.headers)?;
    let host = request_host(buf, version, &scan, authority_host)?;
    let body = request_body(version, &scan)?;
    let http11 = version == Version::Http11;
    Ok(Some(RequestHead {
        len,
        method,
        target,
        path,
        version,
        headers,
        body,
        host,
        keep_alive: scan.keep_alive(version),
        upgrade: http11 && scan.upgrade_token && scan.upgrade_header,
        expect_continue: http11 && scan.expect_continue,
    }))
}

impl RequestHead {
    pub fn method<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        at(buf, &self.method)
    }

    /// Whether the method is one nginx will not retry without `non_idempotent`.
    pub fn is_idempotent(&self, buf: &[u8]) -> bool {
        !matches!(self.method(buf), b"POST" | b"LOCK" | b"PATCH")
    }

    pub fn is_head(&self, buf: &[u8]) -> bool {
        self.method(buf) == b"HEAD"
    }

    /// First header with this (case-insensitive) name.
    pub fn header<'b>(&self, buf: &'b [u8], name: &str) -> Option<&'b [u8]> {
        first_header(buf, &self.headers, name)
    }

    /// The request target as sent.
    pub fn target<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        at(buf, &self.target)
    }

    /// The origin-form target to forward upstream.
    pub fn path<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        at(buf, &self.path)
    }

    /// The host to route on, without port.
    pub fn host<'b>(&self, buf: &'b [u8]) -> Option<&'b [u8]> {
        self.host.as_ref().map(|r| at(buf, r))
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
    pub headers: HeaderList,
    pub body: ResponseBody,
    /// The server lets us reuse the connection after this response.
    pub keep_alive: bool,
}

/// Parses a response head; `request_was_head` and the status decide whether a body follows.
/// Both Content-Length and Transfer-Encoding on a response with a body is `Malformed` (502).
/// A Transfer-Encoding in an HTTP/1.0 response is honoured but the connection is not reused
/// (RFC 9112 6.1: its framing is suspect).
pub fn parse_response(
    buf: &[u8],
    request_was_head: bool,
    max_size: usize,
) -> Result<Option<ResponseHead>, HeadError> {
    let mut slots = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut []);
    let config = httparse::ParserConfig::default();
    let len = match config.parse_response_with_uninit_headers(&mut res, buf, &mut slots) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return partial(buf.len(), max_size),
        Err(e) => return Err(from_httparse(e)),
    };
    if len > max_size {
        return Err(HeadError::TooLarge);
    }
    let (Some(minor), Some(status)) = (res.version, res.code) else {
        return Err(HeadError::Malformed("incomplete status line"));
    };
    if status < 100 {
        return Err(HeadError::Malformed("invalid status code"));
    }
    let version = if minor == 0 {
        Version::Http10
    } else {
        Version::Http11
    };
    let (headers, scan) = scan_headers(buf, res.headers)?;
    let (body, framing_allows_reuse) = response_body(version, status, request_was_head, &scan)?;
    Ok(Some(ResponseHead {
        len,
        status,
        version,
        reason: reason_range(buf),
        headers,
        body,
        keep_alive: scan.keep_alive(version) && framing_allows_reuse,
    }))
}

impl ResponseHead {
    /// First header with this (case-insensitive) name.
    pub fn header<'b>(&self, buf: &'b [u8], name: &str) -> Option<&'b [u8]> {
        first_header(buf, &self.headers, name)
    }

    /// The reason phrase as sent.
    pub fn reason<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        at(buf, &self.reason)
    }
}

/// The error for a head over `max`: 414 when its request line alone is (no line end in
/// the first `max` bytes after any leading empty lines; nginx answers 414 when the request
/// line does not fit its buffer), else 431.
fn too_large(buf: &[u8], max: usize) -> HeadError {
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let line = &buf[start..];
    if line[..line.len().min(max)].contains(&b'\n') {
        HeadError::TooLarge
    } else {
        HeadError::TargetTooLong
    }
}

/// An incomplete head is fine until it is already larger than allowed.
fn partial<T>(have: usize, max: usize) -> Result<Option<T>, HeadError> {
    if have > max {
        Err(HeadError::TooLarge)
    } else {
        Ok(None)
    }
}

fn from_httparse(e: httparse::Error) -> HeadError {
    use httparse::Error as E;
    HeadError::Malformed(match e {
        E::TooManyHeaders => return HeadError::TooLarge,
        E::HeaderName => "invalid header name (or obs-fold, or space before colon)",
        E::HeaderValue => "invalid byte in header value",
        E::NewLine => "invalid line ending",
        E::Status => "invalid status line",
        E::Token => "invalid request line",
        E::Version => "invalid HTTP version",
    })
}

/// An LF without its CR. httparse accepts it as a line end; in a request we do not, so that
/// `X: a<LF>Transfer-Encoding: chunked` cannot mean one header to a front proxy and two to us.
///
/// Only for a head httparse accepted, in which every CR is followed by an LF (it refuses a
/// bare CR anywhere): then an LF lacks its CR exactly when LFs outnumber CRs. Counting
/// vectorizes (16 bytes per instruction); comparing pairs of bytes cost as much as httparse.
fn has_bare_lf(head: &[u8]) -> bool {
    // Byte-wide lanes per 64-byte block (the block's balance fits an i8), summed wide.
    let balance: isize = head
        .chunks(64)
        .map(|block| {
            let lanes = block.iter().fold(0i8, |acc, &b| {
                acc.wrapping_add(i8::from(b == b'\n'))
                    .wrapping_sub(i8::from(b == b'\r'))
            });
            isize::from(lanes)
        })
        .sum();
    balance != 0
}

/// `buf[r]`, or empty when `r` does not fit (a head used with the wrong buffer): never panics.
fn at<'b>(buf: &'b [u8], r: &Range<usize>) -> &'b [u8] {
    buf.get(r.clone()).unwrap_or_default()
}

/// The position of `part` (a slice httparse returned) inside `buf`.
fn span(buf: &[u8], part: &[u8]) -> Result<Range<usize>, HeadError> {
    let start = (part.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize);
    match start.checked_add(part.len()) {
        Some(end) if start <= buf.len() && end <= buf.len() => Ok(start..end),
        _ => Err(HeadError::Malformed(
            "parser returned a slice outside the buffer",
        )),
    }
}

fn first_header<'b>(buf: &'b [u8], headers: &[HeaderPos], name: &str) -> Option<&'b [u8]> {
    headers
        .iter()
        .find(|h| at(buf, &h.name).eq_ignore_ascii_case(name.as_bytes()))
        .map(|h| at(buf, &h.value))
}

/// The reason phrase of a validated status line: after `HTTP/1.x NNN ` up to the line end.
/// Computed here because httparse returns `""` (not a buffer slice) for some reasons.
fn reason_range(buf: &[u8]) -> Range<usize> {
    let line = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(0);
    let code_end = line + b"HTTP/1.1 200".len();
    if buf.get(code_end) != Some(&b' ') {
        return code_end..code_end;
    }
    let start = code_end + 1;
    let rest = buf.get(start..).unwrap_or_default();
    let end = start
        + rest
            .iter()
            .position(|&b| b == b'\r' || b == b'\n')
            .unwrap_or(rest.len());
    start..end
}

/// Splits a request target into the path to forward and, for absolute-form, the host of
/// its authority. Refuses every other form (authority-form is CONNECT's, refused earlier).
fn split_target(
    buf: &[u8],
    method: &[u8],
    target: Range<usize>,
) -> Result<(Range<usize>, Option<Range<usize>>), HeadError> {
    let t = at(buf, &target);
    if t.first() == Some(&b'/') {
        return Ok((target, None));
    }
    if t == b"*" {
        if method == b"OPTIONS" {
            return Ok((target, None));
        }
        return Err(HeadError::Malformed("'*' target outside OPTIONS"));
    }
    let skip = if starts_with_ignore_case(t, b"http://") {
        7
    } else if starts_with_ignore_case(t, b"https://") {
        8
    } else {
        return Err(HeadError::Malformed(
            "target is neither origin-form nor absolute-form",
        ));
    };
    let rest = t.get(skip..).unwrap_or_default();
    let auth_len = rest
        .iter()
        .position(|&b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let auth_start = target.start + skip;
    let host = parse_authority(&rest[..auth_len])
        .map_err(HeadError::Malformed)?
        .ok_or(HeadError::Malformed("absolute-form target without a host"))?;
    let host = auth_start + host.start..auth_start + host.end;
    let path = match rest.get(auth_len) {
        // The last '/' of "://" stands in for the empty path: a range of the buffer that
        // reads "/".
        None => auth_start - 1..auth_start,
        Some(b'/') => auth_start + auth_len..target.end,
        Some(_) => return Err(HeadError::Malformed("absolute-form target without a path")),
    };
    Ok((path, Some(host)))
}

fn starts_with_ignore_case(s: &[u8], prefix: &[u8]) -> bool {
    s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// The bytes of an RFC 3986 reg-name (unreserved, sub-delims, `%`), as a table: every
/// request's Host is checked byte by byte, and a search of the 16 punctuation bytes per
/// byte cost about 300 instructions a request.
const REG_NAME: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let punctuation = b"-._~%!$&'()*+,;=";
    let mut i = 0;
    while i < punctuation.len() {
        table[punctuation[i] as usize] = true;
        i += 1;
    }
    table
};

/// Validates `host[:port]` (RFC 3986 authority without userinfo) and returns the host's
/// range within `a`, `None` when `a` is empty.
fn parse_authority(a: &[u8]) -> Result<Option<Range<usize>>, &'static str> {
    if a.is_empty() {
        return Ok(None);
    }
    if a.contains(&b'@') {
        return Err("userinfo in authority");
    }
    let host_end = if a[0] == b'[' {
        let close = a
            .iter()
            .position(|&b| b == b']')
            .ok_or("unterminated IPv6 literal")?;
        let inner = &a[1..close];
        let ip_char = |b: &u8| b.is_ascii_alphanumeric() || b":.%-_~".contains(b);
        if inner.is_empty() || !inner.iter().all(ip_char) {
            return Err("invalid IPv6 literal");
        }
        close + 1
    } else {
        let end = a.iter().position(|&b| b == b':').unwrap_or(a.len());
        if end == 0 || !a[..end].iter().all(|&b| REG_NAME[usize::from(b)]) {
            return Err("invalid host");
        }
        end
    };
    match a.get(host_end) {
        None => {}
        Some(b':') if a[host_end + 1..].iter().all(u8::is_ascii_digit) => {}
        Some(_) => return Err("invalid port"),
    }
    Ok(Some(0..host_end))
}

/// The headers that matter for framing and connection handling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Known {
    ContentLength,
    TransferEncoding,
    Host,
    Connection,
    Upgrade,
    Expect,
    /// Keep-Alive, TE, Trailer, Proxy-Connection: hop-by-hop, nothing else to learn.
    OtherHop,
    Other,
}

fn classify(name: &[u8]) -> Known {
    // Length and first letter rule out almost every other header without a full compare.
    let first = name.first().map_or(0, u8::to_ascii_lowercase);
    let (known, spelled) = match (name.len(), first) {
        (2, b't') => (Known::OtherHop, &b"te"[..]),
        (4, b'h') => (Known::Host, &b"host"[..]),
        (6, b'e') => (Known::Expect, &b"expect"[..]),
        (7, b'u') => (Known::Upgrade, &b"upgrade"[..]),
        (7, b't') => (Known::OtherHop, &b"trailer"[..]),
        (10, b'c') => (Known::Connection, &b"connection"[..]),
        (10, b'k') => (Known::OtherHop, &b"keep-alive"[..]),
        (14, b'c') => (Known::ContentLength, &b"content-length"[..]),
        (16, b'p') => (Known::OtherHop, &b"proxy-connection"[..]),
        (17, b't') => (Known::TransferEncoding, &b"transfer-encoding"[..]),
        _ => return Known::Other,
    };
    if name.eq_ignore_ascii_case(spelled) {
        known
    } else {
        Known::Other
    }
}

/// `Transfer_Encoding` or `Content_Length`: servers that map `_` to `-` (CGI, WSGI, PHP)
/// would take them for the real thing and frame the body differently from us (nginx drops
/// such headers; refusing the request is plainer).
fn framing_lookalike(name: &[u8]) -> bool {
    if !(name.len() == 14 || name.len() == 17) || !name.contains(&b'_') {
        return false;
    }
    let dashed = |b: &u8| {
        if *b == b'_' {
            b'-'
        } else {
            b.to_ascii_lowercase()
        }
    };
    let eq = |spelled: &[u8]| name.iter().map(dashed).eq(spelled.iter().copied());
    eq(b"content-length") || eq(b"transfer-encoding")
}

/// The elements of a comma-separated list, OWS trimmed, empty elements skipped
/// (RFC 9110 5.6.1).
fn list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// The Transfer-Encoding list, all lines combined.
#[derive(Clone, Copy, Debug, Default)]
struct Codings {
    /// An empty element (`,chunked`, `chunked,`, an empty line): refused in requests.
    empty: bool,
    count: usize,
    chunked: usize,
    last_is_chunked: bool,
}

/// What the headers say, collected in one pass.
#[derive(Debug, Default)]
struct Scan {
    /// `None`: no Content-Length; `Some(Err)`: invalid or conflicting values.
    content_length: Option<Result<u64, &'static str>>,
    /// `None`: no Transfer-Encoding header.
    codings: Option<Codings>,
    host_count: usize,
    host_value: Option<Range<usize>>,
    close: bool,
    keep_alive_token: bool,
    upgrade_token: bool,
    upgrade_header: bool,
    expect_continue: bool,
    /// Bit i: header i is a Connection header (MAX_HEADERS fits a u128).
    connection_headers: u128,
}

impl Scan {
    fn keep_alive(&self, version: Version) -> bool {
        match version {
            Version::Http11 => !self.close,
            Version::Http10 => self.keep_alive_token && !self.close,
        }
    }
}

/// Records every header's position and hop flag, and what the framing headers say.
fn scan_headers(buf: &[u8], raw: &[httparse::Header<'_>]) -> Result<(HeaderList, Scan), HeadError> {
    let mut scan = Scan::default();
    let mut headers = HeaderList::with_capacity(raw.len());
    for (i, h) in raw.iter().enumerate() {
        let name = span(buf, h.name.as_bytes())?;
        let value = span(buf, h.value)?;
        let known = classify(h.name.as_bytes());
        if known == Known::Other && framing_lookalike(h.name.as_bytes()) {
            return Err(HeadError::Malformed(
                "framing header spelled with an underscore",
            ));
        }
        scan.note(known, h.value, value.clone());
        if known == Known::Connection && i < MAX_HEADERS {
            scan.connection_headers |= 1 << i;
        }
        let hop = !matches!(known, Known::Other | Known::Host);
        headers.push(HeaderPos { name, value, hop });
    }
    if scan.connection_headers != 0 {
        mark_connection_named(buf, &mut headers, scan.connection_headers);
    }
    Ok((headers, scan))
}

impl Scan {
    fn note(&mut self, known: Known, value: &[u8], range: Range<usize>) {
        match known {
            Known::ContentLength => self.note_content_length(value),
            Known::TransferEncoding => {
                let c = self.codings.get_or_insert_with(Codings::default);
                c.empty |= value.split(|&b| b == b',').any(|e| trim_ows(e).is_empty());
                for coding in list(value) {
                    let chunked = coding.eq_ignore_ascii_case(b"chunked");
                    c.count += 1;
                    c.chunked += usize::from(chunked);
                    c.last_is_chunked = chunked;
                }
            }
            Known::Host => {
                self.host_count += 1;
                self.host_value = Some(range);
            }
            Known::Connection => {
                for token in list(value) {
                    self.close |= token.eq_ignore_ascii_case(b"close");
                    self.keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
                    self.upgrade_token |= token.eq_ignore_ascii_case(b"upgrade");
                }
            }
            Known::Upgrade => self.upgrade_header |= !value.is_empty(),
            Known::Expect => {
                self.expect_continue |= list(value).any(|e| e.eq_ignore_ascii_case(b"100-continue"))
            }
            Known::OtherHop | Known::Other => {}
        }
    }

    /// Content-Length: every value of every line must be the same decimal number.
    fn note_content_length(&mut self, value: &[u8]) {
        if let Some(Err(_)) = self.content_length {
            return;
        }
        for element in value.split(|&b| b == b',').map(trim_ows) {
            let next = match parse_decimal(element) {
                Some(n) => match self.content_length {
                    Some(Ok(prev)) if prev != n => Err("differing Content-Length values"),
                    _ => Ok(n),
                },
                None => Err("invalid Content-Length"),
            };
            self.content_length = Some(next);
            if next.is_err() {
                return;
            }
        }
    }
}

/// A non-empty run of ASCII digits that fits in u64.
fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |n, &b| {
        let digit = b.is_ascii_digit().then(|| u64::from(b - b'0'))?;
        n.checked_mul(10)?.checked_add(digit)
    })
}

/// Marks every header named by a Connection option as hop-by-hop (RFC 9110 7.6.1), except
/// Host, which SPEC says is always forwarded as sent. `connection` has bit i set when
/// header i is a Connection header.
fn mark_connection_named(buf: &[u8], headers: &mut [HeaderPos], mut connection: u128) {
    while connection != 0 {
        let j = connection.trailing_zeros() as usize;
        connection &= connection - 1;
        let Some(value) = headers.get(j).map(|h| at(buf, &h.value)) else {
            return;
        };
        for option in list(value) {
            for h in headers.iter_mut().filter(|h| !h.hop) {
                let name = at(buf, &h.name);
                if name.eq_ignore_ascii_case(option) && classify(name) != Known::Host {
                    h.hop = true;
                }
            }
        }
    }
}

/// The host to route on (RFC 9112 3.2: exactly one Host in HTTP/1.1, at most one in 1.0;
/// the target's authority wins over it).
fn request_host(
    buf: &[u8],
    version: Version,
    scan: &Scan,
    authority_host: Option<Range<usize>>,
) -> Result<Option<Range<usize>>, HeadError> {
    if scan.host_count > 1 {
        return Err(HeadError::Malformed("more than one Host header"));
    }
    if version == Version::Http11 && scan.host_count == 0 {
        return Err(HeadError::Malformed("HTTP/1.1 request without Host"));
    }
    let header_host = match &scan.host_value {
        Some(value) => parse_authority(at(buf, value))
            .map_err(|_| HeadError::Malformed("invalid Host header"))?
            .map(|h| value.start + h.start..value.start + h.end),
        None => None,
    };
    Ok(authority_host.or(header_host))
}

/// Request framing (RFC 9112 6.1-6.3), refusing everything ambiguous.
fn request_body(version: Version, scan: &Scan) -> Result<RequestBody, HeadError> {
    let Some(c) = scan.codings else {
        return match scan.content_length {
            None => Ok(RequestBody::None),
            Some(Ok(n)) => Ok(RequestBody::Length(n)),
            Some(Err(why)) => Err(HeadError::Malformed(why)),
        };
    };
    if version == Version::Http10 {
        return Err(HeadError::Malformed(
            "Transfer-Encoding in an HTTP/1.0 request",
        ));
    }
    if scan.content_length.is_some() {
        return Err(HeadError::Malformed(
            "both Content-Length and Transfer-Encoding",
        ));
    }
    if c.empty {
        return Err(HeadError::Malformed("empty element in Transfer-Encoding"));
    }
    if !c.last_is_chunked {
        return Err(HeadError::Malformed(
            "chunked is not the last transfer coding",
        ));
    }
    if c.chunked > 1 {
        return Err(HeadError::Malformed("chunked applied more than once"));
    }
    if c.count > 1 {
        return Err(HeadError::UnsupportedEncoding);
    }
    Ok(RequestBody::Chunked)
}

/// Response framing (RFC 9112 6.3) and whether it leaves the connection reusable.
fn response_body(
    version: Version,
    status: u16,
    request_was_head: bool,
    scan: &Scan,
) -> Result<(ResponseBody, bool), HeadError> {
    if request_was_head || status < 200 || status == 204 || status == 304 {
        return Ok((ResponseBody::None, true));
    }
    if let Some(c) = scan.codings {
        // RFC 9112 6.3 lets Transfer-Encoding win, but says such a message "ought to be
        // handled as an error": a server that sends both has a framing bug (or was made to),
        // and no guess about which one it meant can be trusted.
        if scan.content_length.is_some() {
            return Err(HeadError::Malformed(
                "both Content-Length and Transfer-Encoding",
            ));
        }
        if c.last_is_chunked && c.chunked > 1 {
            return Err(HeadError::Malformed("chunked applied more than once"));
        }
        if c.last_is_chunked {
            return Ok((ResponseBody::Chunked, version == Version::Http11));
        }
        return Ok((ResponseBody::Eof, false));
    }
    match scan.content_length {
        Some(Ok(n)) => Ok((ResponseBody::Length(n), true)),
        Some(Err(why)) => Err(HeadError::Malformed(why)),
        None => Ok((ResponseBody::Eof, false)),
    }
}

#[cfg(test)]
mod mutation_tests;
#[cfg(test)]
mod response_tests;
#[cfg(test)]
mod tests;
