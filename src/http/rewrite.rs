//! The heads ringway writes: the request sent upstream, the response sent downstream, and
//! its own error responses.
//!
//! Framing headers are never copied; they are written from what the proxy itself will send,
//! so a head always matches the body that follows it.

use std::io::Write;
use std::net::SocketAddr;

use crate::http::gzip::{self, Plan};
use crate::http::head::{HeaderPos, RequestBody, ResponseHead, Version};
use crate::http::vars::{RequestVars, push_addr, push_ip, push_u64};
use crate::snapshot::{HeaderRule, Listener};

fn name_is(buf: &[u8], h: &HeaderPos, name: &str) -> bool {
    buf[h.name.clone()].eq_ignore_ascii_case(name.as_bytes())
}

fn overridden(buf: &[u8], h: &HeaderPos, rules: &[HeaderRule]) -> bool {
    rules.iter().any(|r| name_is(buf, h, &r.lower))
}

fn header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Numbers and addresses go through `vars::push_*`, not `write!`: `core::fmt` costs about a
/// thousand instructions per IP address, on every request.
fn content_length(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(b"Content-Length: ");
    push_u64(out, n);
    out.extend_from_slice(b"\r\n");
}

/// Appends the rendered rules; nginx skips a header whose value renders empty.
fn rules(out: &mut Vec<u8>, rules: &[HeaderRule], vars: &RequestVars<'_>) {
    for rule in rules {
        let mark = out.len();
        out.extend_from_slice(rule.name.as_bytes());
        out.extend_from_slice(b": ");
        let value_at = out.len();
        rule.value.render(vars, out);
        if out.len() == value_at {
            out.truncate(mark);
        } else {
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// Writes the head sent to a server for `vars.head`: origin-form target, HTTP/1.1,
/// the client's end-to-end headers, forwarding headers, configured headers and framing.
pub fn request_head(
    out: &mut Vec<u8>,
    vars: &RequestVars<'_>,
    spec: &Listener,
    server: SocketAddr,
) {
    let (buf, head) = (vars.buf, vars.head);
    out.extend_from_slice(head.method(buf));
    out.push(b' ');
    out.extend_from_slice(&buf[head.path.clone()]);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut forwarded_for: Vec<&[u8]> = Vec::new();
    let mut has_host = false;
    for h in &head.headers {
        if h.hop || overridden(buf, h, &spec.request_headers) {
            continue;
        }
        if name_is(buf, h, "x-forwarded-for") {
            forwarded_for.push(&buf[h.value.clone()]);
            continue;
        }
        if name_is(buf, h, "x-forwarded-proto") || name_is(buf, h, "x-real-ip") {
            continue;
        }
        has_host |= name_is(buf, h, "host");
        out.extend_from_slice(&buf[h.name.start..h.value.end]);
        out.extend_from_slice(b"\r\n");
    }
    if !has_host {
        // HTTP/1.1 requires Host; a 1.0 client may omit it.
        match &head.host {
            Some(h) => header(out, b"Host", &buf[h.clone()]),
            None => {
                out.extend_from_slice(b"Host: ");
                push_addr(out, server);
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    let ip = vars.peer.ip();
    if !spec
        .request_headers
        .iter()
        .any(|r| r.lower == "x-forwarded-for")
    {
        out.extend_from_slice(b"X-Forwarded-For: ");
        for v in forwarded_for {
            out.extend_from_slice(v);
            out.extend_from_slice(b", ");
        }
        push_ip(out, ip);
        out.extend_from_slice(b"\r\n");
    }
    if !spec
        .request_headers
        .iter()
        .any(|r| r.lower == "x-forwarded-proto")
    {
        out.extend_from_slice(b"X-Forwarded-Proto: http\r\n");
    }
    if !spec.request_headers.iter().any(|r| r.lower == "x-real-ip") {
        out.extend_from_slice(b"X-Real-IP: ");
        push_ip(out, ip);
        out.extend_from_slice(b"\r\n");
    }
    rules(out, &spec.request_headers, vars);
    match head.body {
        RequestBody::Length(n) => content_length(out, n),
        RequestBody::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        RequestBody::None => {
            // Servers may answer 411 to a body-carrying method without a length.
            if matches!(head.method(buf), b"POST" | b"PUT" | b"PATCH") {
                out.extend_from_slice(b"Content-Length: 0\r\n");
            }
        }
    }
    if head.upgrade {
        out.extend_from_slice(b"Connection: upgrade\r\n");
        if let Some(v) = head.header(buf, "upgrade") {
            header(out, b"Upgrade", v);
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// How the proxy frames the response body it sends to the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DownFraming {
    /// No body (HEAD, 1xx, 204, 304): keep the server's Content-Length if any.
    None,
    Length(u64),
    Chunked,
    /// Body ends when the connection closes (HTTP/1.0 client, length unknown).
    Close,
}

/// The downstream response head, and what it needs besides the server's head.
pub struct ResponseHeadOut<'a> {
    pub buf: &'a [u8],
    pub head: &'a ResponseHead,
    pub framing: DownFraming,
    pub keep_alive: bool,
    pub client_version: Version,
    /// 101 Switching Protocols: keep `Upgrade` and say `Connection: upgrade`.
    pub upgrade: bool,
    /// What the listener's `gzip` does to this response.
    pub gzip: Plan,
}

/// Writes the head sent to the client for a server's response.
pub fn response_head(
    out: &mut Vec<u8>,
    r: &ResponseHeadOut<'_>,
    spec: &Listener,
    vars: &RequestVars<'_>,
) {
    let (buf, head) = (r.buf, r.head);
    out.extend_from_slice(b"HTTP/1.1 ");
    push_u64(out, u64::from(head.status));
    out.push(b' ');
    out.extend_from_slice(&buf[head.reason.clone()]);
    out.extend_from_slice(b"\r\n");
    let mut vary_done = false;
    for h in &head.headers {
        let name = &buf[h.name.clone()];
        let keep_length =
            r.framing == DownFraming::None && name.eq_ignore_ascii_case(b"content-length");
        if (h.hop && !keep_length)
            || overridden(buf, h, &spec.response_headers)
            || spec
                .hide_response_headers
                .iter()
                .any(|n| name.eq_ignore_ascii_case(n.as_bytes()))
        {
            continue;
        }
        if r.gzip != Plan::Untouched
            && gzip::head_line(r.gzip, name, &buf[h.value.clone()], out, &mut vary_done)
        {
            continue;
        }
        out.extend_from_slice(&buf[h.name.start..h.value.end]);
        out.extend_from_slice(b"\r\n");
    }
    if r.gzip != Plan::Untouched {
        gzip::head_end(r.gzip, vary_done, out);
    }
    rules(out, &spec.response_headers, vars);
    match r.framing {
        DownFraming::Length(n) => content_length(out, n),
        DownFraming::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        DownFraming::None | DownFraming::Close => {}
    }
    if r.upgrade {
        out.extend_from_slice(b"Connection: upgrade\r\n");
        if let Some(v) = head.header(buf, "upgrade") {
            header(out, b"Upgrade", v);
        }
    } else if !r.keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if r.client_version == Version::Http10 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// The reason phrase for the statuses ringway itself answers with.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        400 => "Bad Request",
        408 => "Request Timeout",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Temporarily Unavailable",
        504 => "Gateway Time-out",
        _ => "Error",
    }
}

/// An nginx-style error response with a short HTML body; `retry_after` (seconds) adds a
/// `Retry-After` header.
pub fn error_response(
    out: &mut Vec<u8>,
    status: u16,
    close: bool,
    head_only: bool,
    retry_after: Option<u32>,
) {
    let reason = reason(status);
    let body = format!(
        "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n<center><h1>{status} {reason}</h1></center>\r\n<hr><center>ringway</center>\r\n</body>\r\n</html>\r\n"
    );
    let _ = write!(
        out,
        "HTTP/1.1 {status} {reason}\r\nServer: ringway\r\nContent-Type: text/html\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(secs) = retry_after {
        let _ = write!(out, "Retry-After: {secs}\r\n");
    }
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
}
