//! Response compression (the listener's `gzip`, nginx's `gzip on`): whether a response is
//! compressed ([`plan`]), the head changes that go with it ([`head_line`], [`head_end`]),
//! and the per-response deflate state ([`Encoder`]).
//!
//! The state (about 320 KiB at any level: zlib-rs's window, hash chains and pending
//! buffer, plus flate2's 32 KiB output buffer) exists only while a compressed response is being sent: [`Encoder::new`] allocates
//! it once the response head says it is needed, and it is dropped with the response. Every
//! read from the server is compressed and flushed (`Z_SYNC_FLUSH`) into its own chunk at
//! once, so a streamed answer (SSE) reaches the client event by event, never held back for
//! a fuller block.

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;

use crate::http::body::{LAST_CHUNK, chunk_header};
use crate::http::head::{HeaderPos, RequestHead, ResponseBody, ResponseHead, Version};
use crate::http::rewrite::DownFraming;
use crate::snapshot::Gzip;

/// What gzip does to one response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Not a compressible response (no body, not a listed type, too short, encoded, ...):
    /// passed on as it is.
    Untouched,
    /// Compressible, but this client does not get it compressed (it does not accept gzip,
    /// or it speaks HTTP/1.0): identity body, and `Vary: Accept-Encoding` so that caches
    /// keep the two apart.
    Vary,
    /// Compressed at this level, with `Content-Encoding: gzip` and `Vary`.
    Compress(u32),
}

/// Decides for the response `resp` (its head in `resp_buf`) to the request `req` (in
/// `req_buf`), as nginx's gzip filter does: only a response that would be compressed for
/// some client gets `Vary`.
pub fn plan(
    gz: &Gzip,
    req_buf: &[u8],
    req: &RequestHead,
    resp_buf: &[u8],
    resp: &ResponseHead,
) -> Plan {
    let compressible = match resp.body {
        // HEAD, 1xx, 204 and 304 answers have no body to compress.
        ResponseBody::None => false,
        ResponseBody::Length(n) => n >= gz.min_length,
        ResponseBody::Chunked | ResponseBody::Eof => true,
    };
    // 206's Content-Range counts identity bytes; 101 is another protocol.
    if !compressible || matches!(resp.status, 100..=199 | 204 | 206 | 304) {
        return Plan::Untouched;
    }
    let mut typed = false;
    for h in &resp.headers {
        let (name, value) = (&resp_buf[h.name.clone()], &resp_buf[h.value.clone()]);
        if name.eq_ignore_ascii_case(b"content-encoding") && !trim(value).is_empty()
            || name.eq_ignore_ascii_case(b"cache-control") && has_no_transform(value)
            || name.eq_ignore_ascii_case(b"content-range")
        {
            return Plan::Untouched;
        }
        if name.eq_ignore_ascii_case(b"content-type") {
            typed = listed_type(&gz.types, value);
        }
    }
    if !typed {
        return Plan::Untouched;
    }
    let version_ok = req.version == Version::Http11 || gz.http10;
    if version_ok && accepts_gzip(req_buf, &req.headers) {
        Plan::Compress(gz.level)
    } else {
        Plan::Vary
    }
}

/// How a compressed body goes to the client: its length is not known before it ends, so in
/// chunks, or (HTTP/1.0) ended by the close.
pub fn down_framing(client: Version) -> DownFraming {
    match client {
        Version::Http11 => DownFraming::Chunked,
        Version::Http10 => DownFraming::Close,
    }
}

fn trim(v: &[u8]) -> &[u8] {
    v.trim_ascii()
}

/// The media type without parameters is one of `types` (lower-cased in the snapshot).
fn listed_type(types: &[String], value: &[u8]) -> bool {
    let essence = trim(value.split(|&b| b == b';').next().unwrap_or_default());
    types
        .iter()
        .any(|t| essence.eq_ignore_ascii_case(t.as_bytes()))
}

/// `Cache-Control` names `no-transform` (RFC 9111 5.2.2.6: a proxy must not change the
/// content coding).
fn has_no_transform(value: &[u8]) -> bool {
    value.split(|&b| b == b',').any(|d| {
        let name = d.split(|&b| b == b'=').next().unwrap_or_default();
        trim(name).eq_ignore_ascii_case(b"no-transform")
    })
}

/// The client's `Accept-Encoding` headers (RFC 9110 12.5.3) accept gzip: `gzip` (or
/// `x-gzip`) with a weight above 0, or else `*` with a weight above 0. An explicit
/// `gzip;q=0` refuses it whatever `*` says; no header at all means no compression (as
/// nginx: a client that says nothing may not decode it).
pub fn accepts_gzip(buf: &[u8], headers: &[HeaderPos]) -> bool {
    let mut gzip: Option<u16> = None;
    let mut star: Option<u16> = None;
    let values = headers
        .iter()
        .filter(|h| buf[h.name.clone()].eq_ignore_ascii_case(b"accept-encoding"))
        .map(|h| &buf[h.value.clone()]);
    for value in values {
        for element in value.split(|&b| b == b',') {
            let mut parts = element.split(|&b| b == b';');
            let coding = trim(parts.next().unwrap_or_default());
            let Some(q) = weight(parts) else {
                // A weight that does not parse: this element says nothing.
                continue;
            };
            let slot =
                if coding.eq_ignore_ascii_case(b"gzip") || coding.eq_ignore_ascii_case(b"x-gzip") {
                    &mut gzip
                } else if coding == b"*" {
                    &mut star
                } else {
                    continue;
                };
            // Named twice: the highest weight counts.
            *slot = Some(slot.map_or(q, |old| old.max(q)));
        }
    }
    gzip.or(star).is_some_and(|q| q > 0)
}

/// The `q` parameter among `params` in thousandths (1000 when absent); `None` when it is
/// not a valid qvalue (`0`, `0.` up to three digits, `1`, `1.` up to three zeros).
fn weight<'a>(params: impl Iterator<Item = &'a [u8]>) -> Option<u16> {
    let mut q = 1000;
    for p in params {
        let p = trim(p);
        let eq = p.iter().position(|&b| b == b'=')?;
        if !trim(&p[..eq]).eq_ignore_ascii_case(b"q") {
            continue;
        }
        q = qvalue(trim(&p[eq + 1..]))?;
    }
    Some(q)
}

fn qvalue(v: &[u8]) -> Option<u16> {
    let (int, frac) = match v.iter().position(|&b| b == b'.') {
        Some(dot) => (&v[..dot], &v[dot + 1..]),
        None => (v, &b""[..]),
    };
    if frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut thousandths = 0u16;
    for i in 0..3 {
        thousandths = thousandths * 10 + frac.get(i).map_or(0, |d| u16::from(d - b'0'));
    }
    match int {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// Writes one server header line as a compressed (or `Vary`) response needs it, and says
/// so: `Vary` gets `Accept-Encoding` added to its list (unless it is there or `*`), a
/// strong `ETag` becomes weak (the bytes differ from the identity body's, nginx does the
/// same). `vary_done` records that the response's `Vary` was written.
pub fn head_line(
    plan: Plan,
    name: &[u8],
    value: &[u8],
    out: &mut Vec<u8>,
    vary_done: &mut bool,
) -> bool {
    if name.eq_ignore_ascii_case(b"vary") && !*vary_done {
        *vary_done = true;
        out.extend_from_slice(b"Vary: ");
        out.extend_from_slice(value);
        let covered = value.split(|&b| b == b',').any(|t| {
            let t = trim(t);
            t == b"*" || t.eq_ignore_ascii_case(b"accept-encoding")
        });
        if !covered {
            if !trim(value).is_empty() {
                out.extend_from_slice(b", ");
            }
            out.extend_from_slice(b"Accept-Encoding");
        }
        out.extend_from_slice(b"\r\n");
        return true;
    }
    if matches!(plan, Plan::Compress(_))
        && name.eq_ignore_ascii_case(b"etag")
        && value.first() == Some(&b'"')
    {
        out.extend_from_slice(b"ETag: W/");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
        return true;
    }
    false
}

/// The header lines a compressed (or `Vary`) response adds after the server's.
pub fn head_end(plan: Plan, vary_done: bool, out: &mut Vec<u8>) {
    if matches!(plan, Plan::Compress(_)) {
        out.extend_from_slice(b"Content-Encoding: gzip\r\n");
    }
    if !vary_done {
        out.extend_from_slice(b"Vary: Accept-Encoding\r\n");
    }
}

/// The deflate state of one compressed response, and its reused scratch buffers.
pub struct Encoder {
    /// Writes the gzip member (header, deflate blocks, CRC and length trailer) into its
    /// `Vec`, which is drained into the client's output after every step.
    gz: GzEncoder<Vec<u8>>,
    /// Decoded body bytes of the current read (de-chunked), waiting to be compressed.
    pub plain: Vec<u8>,
    /// Compressed bytes handed to the client so far (`$body_bytes_sent`).
    sent: u64,
    finished: bool,
}

impl Encoder {
    pub fn new(level: u32) -> Encoder {
        Encoder {
            gz: GzEncoder::new(Vec::new(), Compression::new(level)),
            plain: Vec::new(),
            sent: 0,
            finished: false,
        }
    }

    /// Compresses `plain` and appends what it gives, framed for `down`, to `out`: flushed
    /// to a byte boundary when more may follow (so the client can decode all of it now),
    /// finished with the gzip trailer (and the last chunk) when `last`.
    pub fn compress(
        &mut self,
        last: bool,
        down: DownFraming,
        out: &mut Vec<u8>,
    ) -> std::io::Result<()> {
        if self.finished {
            return Ok(());
        }
        if !self.plain.is_empty() {
            self.gz.write_all(&self.plain)?;
            self.plain.clear();
            if !last {
                self.gz.flush()?;
            }
        } else if !last {
            // Nothing new: an empty flush would still cost a chunk of 5 bytes.
            return Ok(());
        }
        if last {
            self.gz.try_finish()?;
            self.finished = true;
        }
        let z = self.gz.get_mut();
        if !z.is_empty() {
            if down == DownFraming::Chunked {
                chunk_header(z.len(), out);
                out.extend_from_slice(z);
                out.extend_from_slice(b"\r\n");
            } else {
                out.extend_from_slice(z);
            }
            self.sent += z.len() as u64;
            z.clear();
        }
        if last && down == DownFraming::Chunked {
            out.extend_from_slice(LAST_CHUNK);
        }
        Ok(())
    }

    /// Compressed body bytes produced so far (chunk framing not counted).
    pub fn sent(&self) -> u64 {
        self.sent
    }
}

#[cfg(test)]
mod tests;
