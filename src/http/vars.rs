//! Template variables of one request (`$remote_addr`, `$http_NAME`, `$upstream_addr`, ...).
//!
//! Rendering is on the per-request path (header rules, hash keys, one access-log line per
//! request), so the common values are written without `core::fmt`: numbers, IPv4 addresses,
//! `secs.millis` durations, and the two timestamps, formatted once per second per thread.

use std::cell::RefCell;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::http::head::{HeaderList, RequestBody, RequestHead, Version};
use crate::template::{self, Var, VarSource};

/// What is known about one request while it is proxied; renders templates for it.
pub struct RequestVars<'a> {
    /// The request head bytes (`head`'s ranges point into it), then `model`'s bytes.
    pub buf: &'a [u8],
    pub head: &'a RequestHead,
    /// `head` is a stand-in for a head that could not be parsed (a 400, 408 or 431 answered
    /// before a request existed): `$request` is then the raw first line received.
    pub partial: bool,
    pub peer: SocketAddr,
    pub worker: usize,
    pub started: Instant,
    /// The server of the current (last) attempt, once one was chosen.
    pub upstream: Option<SocketAddr>,
    /// Every attempt on a server, in order: `$upstream_addr`, `$upstream_status` and the
    /// `$upstream_*_time` variables list them all, comma-separated, as nginx does. The vector
    /// belongs to the connection and is lent per request, so it allocates once.
    pub tries: Vec<UpstreamTry>,
    /// Status sent to the client (0 until known).
    pub status: u16,
    pub body_bytes_sent: u64,
    pub request_length: u64,
    /// `$request_model`: where in `buf` (past the head) the body's `"model"` string was
    /// copied, when something asked for it and the body had one.
    pub model: Option<Range<usize>>,
}

/// One attempt on one server, for the `$upstream_*` variables.
#[derive(Clone, Copy, Debug)]
pub struct UpstreamTry {
    pub addr: SocketAddr,
    /// The response status, or for a failed attempt the status nginx records for it
    /// (502, 504); 0 when unknown.
    pub status: u16,
    /// When the attempt began (before the connect, or the pool checkout).
    pub started: Instant,
    /// Connect time (zero for a pooled connection); `None` until connected.
    pub connect: Option<Duration>,
    /// When the request began to go out.
    pub sent: Option<Instant>,
    /// From `sent` to the response head.
    pub first_byte: Option<Duration>,
    /// From `sent` to the first byte of the response body.
    pub first_token: Option<Duration>,
    /// From `started` to the end of the attempt (the last body byte for a response).
    pub response: Option<Duration>,
    /// Whether the connect, first-token and response times are taken (some template renders
    /// them); the first byte is always timed, for the metrics.
    pub timed: bool,
}

impl UpstreamTry {
    /// A record of an attempt that began at `started`.
    pub fn new(addr: SocketAddr, started: Instant, timed: bool) -> UpstreamTry {
        UpstreamTry {
            addr,
            status: 0,
            started,
            timed,
            connect: None,
            sent: None,
            first_byte: None,
            first_token: None,
            response: None,
        }
    }

    pub fn connected(&mut self) {
        if self.timed {
            self.connect = Some(self.started.elapsed());
        }
    }

    pub fn sending(&mut self) {
        self.sent = Some(Instant::now());
    }

    pub fn response_head(&mut self, status: u16) {
        self.status = status;
        self.first_byte = self.sent.map(|s| s.elapsed());
    }

    pub fn first_body_byte(&mut self, at: Instant) {
        if self.first_token.is_none() {
            self.first_token = self.sent.map(|s| at.saturating_duration_since(s));
        }
    }

    /// Closes the attempt; `failed` is the status to record when no response head came.
    pub fn end(&mut self, failed: u16) {
        if self.status == 0 {
            self.status = failed;
        }
        if self.timed && self.response.is_none() {
            self.response = Some(self.started.elapsed());
        }
    }
}

impl RequestVars<'_> {
    fn target(&self) -> &[u8] {
        &self.buf[self.head.target.clone()]
    }

    fn path_and_query(&self) -> (&[u8], &[u8]) {
        let path = &self.buf[self.head.path.clone()];
        match path.iter().position(|&b| b == b'?') {
            Some(q) => (&path[..q], &path[q + 1..]),
            None => (path, b""),
        }
    }

    /// Starts recording an attempt on `addr`; `timed` as in [`UpstreamTry::timed`].
    pub fn begin_try(&mut self, addr: SocketAddr, timed: bool) {
        self.upstream = Some(addr);
        let started = if timed { Instant::now() } else { self.started };
        self.tries.push(UpstreamTry::new(addr, started, timed));
    }

    /// The attempt being made (a detached record when none was begun, so callers need no
    /// special case).
    pub fn current_try(&mut self) -> &mut UpstreamTry {
        if self.tries.is_empty() {
            let addr = self.upstream.unwrap_or(self.peer);
            self.tries.push(UpstreamTry::new(addr, self.started, false));
        }
        let last = self.tries.len() - 1;
        &mut self.tries[last]
    }

    /// Writes one value per attempt, `, `-separated; `-` when no server was tried.
    fn per_try(&self, out: &mut Vec<u8>, value: impl Fn(&UpstreamTry, &mut Vec<u8>)) {
        if self.tries.is_empty() {
            out.push(b'-');
        }
        for (i, t) in self.tries.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(b", ");
            }
            value(t, out);
        }
    }

    fn request_line(&self, out: &mut Vec<u8>) {
        if self.partial {
            let end = self.buf[..self.head.len.min(self.buf.len())]
                .iter()
                .position(|&b| b == b'\r' || b == b'\n')
                .unwrap_or(self.head.len.min(self.buf.len()));
            out.extend_from_slice(&self.buf[..end]);
            return;
        }
        out.extend_from_slice(self.head.method(self.buf));
        out.push(b' ');
        out.extend_from_slice(self.target());
        out.extend_from_slice(match self.head.version {
            Version::Http10 => b" HTTP/1.0",
            Version::Http11 => b" HTTP/1.1",
        });
    }
}

impl VarSource for RequestVars<'_> {
    fn write_var(&self, var: &Var, out: &mut Vec<u8>) {
        match var {
            Var::RemoteAddr => push_ip(out, self.peer.ip()),
            Var::RemotePort => push_u64(out, self.peer.port() as u64),
            Var::TimeLocal => push_now(out, Stamp::Local),
            Var::TimeIso8601 => push_now(out, Stamp::Iso8601),
            Var::Request => self.request_line(out),
            Var::RequestMethod => out.extend_from_slice(self.head.method(self.buf)),
            Var::RequestUri => out.extend_from_slice(&self.buf[self.head.path.clone()]),
            Var::Uri => out.extend_from_slice(self.path_and_query().0),
            Var::Args => out.extend_from_slice(self.path_and_query().1),
            Var::Arg(name) => {
                let args = self.path_and_query().1;
                if let Some(v) = template::query_arg(args, name.as_bytes()) {
                    out.extend_from_slice(v);
                }
            }
            Var::Http(name) => {
                if let Some(v) = self.head.header(self.buf, name) {
                    out.extend_from_slice(v);
                }
            }
            Var::Cookie(name) => {
                if let Some(v) = self
                    .head
                    .header(self.buf, "cookie")
                    .and_then(|c| template::cookie(c, name.as_bytes()))
                {
                    out.extend_from_slice(v);
                }
            }
            Var::Host => {
                if let Some(h) = &self.head.host {
                    out.extend(self.buf[h.clone()].iter().map(u8::to_ascii_lowercase));
                }
            }
            Var::Scheme => out.extend_from_slice(b"http"),
            Var::Status => push_u64(out, self.status as u64),
            Var::BodyBytesSent | Var::BytesSent => push_u64(out, self.body_bytes_sent),
            Var::RequestLength | Var::BytesReceived => push_u64(out, self.request_length),
            Var::RequestTime | Var::SessionTime => push_secs(out, self.started.elapsed()),
            Var::UpstreamAddr => self.per_try(out, |t, out| push_addr(out, t.addr)),
            Var::UpstreamStatus => self.per_try(out, |t, out| match t.status {
                0 => out.push(b'-'),
                s => push_u64(out, s as u64),
            }),
            Var::UpstreamConnectTime => self.per_try(out, |t, out| push_opt_secs(out, t.connect)),
            Var::UpstreamResponseTime => self.per_try(out, |t, out| push_opt_secs(out, t.response)),
            Var::UpstreamFirstByteTime => {
                self.per_try(out, |t, out| push_opt_secs(out, t.first_byte))
            }
            Var::UpstreamFirstTokenTime => {
                self.per_try(out, |t, out| push_opt_secs(out, t.first_token))
            }
            Var::Worker => push_u64(out, self.worker as u64),
            Var::RequestModel => match &self.model {
                Some(r) => out.extend_from_slice(&self.buf[r.clone()]),
                None => out.push(b'-'),
            },
        }
    }
}

/// A stand-in head for bytes that never made a request (`RequestVars::partial`): method and
/// target are the first two words of the first line when there are two, the length is what
/// arrived.
pub fn partial_head(received: &[u8]) -> RequestHead {
    let line_end = received
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(received.len());
    let line = &received[..line_end];
    let word = |from: usize| -> Range<usize> {
        let len = line
            .get(from..)
            .map_or(0, |rest| rest.iter().take_while(|&&b| b != b' ').count());
        from..from + len
    };
    let method = word(0);
    let target = if method.end < line.len() {
        word(method.end + 1)
    } else {
        line.len()..line.len()
    };
    let version = if line.ends_with(b" HTTP/1.0") {
        Version::Http10
    } else {
        Version::Http11
    };
    RequestHead {
        len: received.len(),
        method,
        target: target.clone(),
        path: target,
        version,
        headers: HeaderList::default(),
        body: RequestBody::None,
        host: None,
        keep_alive: false,
        upgrade: false,
        expect_continue: false,
    }
}

/// Appends `n` in decimal.
pub fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Appends an address as `Display` does, IPv4 without `core::fmt`.
pub fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            // Written into 15 bytes on the stack and appended once: every proxied request
            // renders the client's address twice (X-Forwarded-For, X-Real-IP), and four
            // `push_u64` calls cost about 300 instructions a time.
            let mut text = [0u8; 15];
            let mut len = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text[len] = b'.';
                    len += 1;
                }
                if octet >= 100 {
                    text[len] = b'0' + octet / 100;
                    len += 1;
                }
                if octet >= 10 {
                    text[len] = b'0' + octet / 10 % 10;
                    len += 1;
                }
                text[len] = b'0' + octet % 10;
                len += 1;
            }
            out.extend_from_slice(&text[..len]);
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// Appends `ip:port` (`[ip]:port` for IPv6), as `Display` does.
pub fn push_addr(out: &mut Vec<u8>, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(a) => {
            push_ip(out, IpAddr::V4(*a.ip()));
            out.push(b':');
            push_u64(out, a.port() as u64);
        }
        SocketAddr::V6(a) => {
            let _ = write!(out, "{a}");
        }
    }
}

/// nginx's time format for `$request_time` and the upstream times: seconds with
/// millisecond precision (`0.042`).
pub fn push_secs(out: &mut Vec<u8>, d: Duration) {
    push_u64(out, d.as_secs());
    let ms = d.subsec_millis();
    out.extend_from_slice(&[
        b'.',
        b'0' + (ms / 100) as u8,
        b'0' + (ms / 10 % 10) as u8,
        b'0' + (ms % 10) as u8,
    ]);
}

pub fn push_opt_secs(out: &mut Vec<u8>, d: Option<Duration>) {
    match d {
        Some(d) => push_secs(out, d),
        None => out.push(b'-'),
    }
}

/// Which timestamp `push_now` writes: `$time_local` or `$time_iso8601`.
#[derive(Clone, Copy)]
pub enum Stamp {
    Local,
    Iso8601,
}

/// Both timestamps of the current second, formatted once per second on each thread.
struct StampCache {
    secs: u64,
    local: Vec<u8>,
    iso: Vec<u8>,
}

thread_local! {
    static STAMPS: RefCell<StampCache> = const {
        RefCell::new(StampCache { secs: u64::MAX, local: Vec::new(), iso: Vec::new() })
    };
}

pub fn push_now(out: &mut Vec<u8>, stamp: Stamp) {
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    STAMPS.with_borrow_mut(|cache| {
        if cache.secs != secs {
            cache.secs = secs;
            cache.local.clear();
            time_local(now, &mut cache.local);
            cache.iso.clear();
            time_iso8601(now, &mut cache.iso);
        }
        out.extend_from_slice(match stamp {
            Stamp::Local => &cache.local,
            Stamp::Iso8601 => &cache.iso,
        });
    });
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

fn split(t: SystemTime) -> (i64, u32, u32, u64) {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (y, m, d) = crate::clock::civil_from_days((secs / 86_400) as i64);
    (y, m, d, secs % 86_400)
}

/// nginx `$time_local` (`21/Nov/2026:08:41:44 +0000`); ringway logs in UTC.
pub fn time_local(t: SystemTime, out: &mut Vec<u8>) {
    let (y, m, d, s) = split(t);
    let month = MONTHS[(m - 1) as usize];
    let _ = write!(
        out,
        "{d:02}/{month}/{y}:{:02}:{:02}:{:02} +0000",
        s / 3600,
        s / 60 % 60,
        s % 60
    );
}

/// nginx `$time_iso8601` (`2026-11-21T08:41:44+00:00`).
pub fn time_iso8601(t: SystemTime, out: &mut Vec<u8>) {
    let (y, m, d, s) = split(t);
    let _ = write!(
        out,
        "{y}-{m:02}-{d:02}T{:02}:{:02}:{:02}+00:00",
        s / 3600,
        s / 60 % 60,
        s % 60
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn times_are_formatted_like_nginx_in_utc() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_250_504); // 2026-11-21T08:41:44Z
        let mut out = Vec::new();
        time_local(t, &mut out);
        assert_eq!(out, b"21/Nov/2026:08:41:44 +0000");
        out.clear();
        time_iso8601(t, &mut out);
        assert_eq!(out, b"2026-11-21T08:41:44+00:00");
    }

    #[test]
    fn fast_formatters_match_display() {
        let mut out = Vec::new();
        for n in [0, 7, 10, 99, 65_535, u64::MAX] {
            out.clear();
            push_u64(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
        for addr in [
            "0.0.0.0:0",
            "192.168.100.255:65535",
            "10.9.200.1:1",
            "100.20.3.99:8080",
            "[::1]:80",
            "[fe80::1%2]:8",
        ] {
            let addr: SocketAddr = addr.parse().unwrap();
            out.clear();
            push_addr(&mut out, addr);
            assert_eq!(out, addr.to_string().as_bytes());
            out.clear();
            push_ip(&mut out, addr.ip());
            assert_eq!(out, addr.ip().to_string().as_bytes());
        }
        for o in 0..=255u8 {
            let ip = IpAddr::from([o, 255 - o, o / 3, o.wrapping_mul(7)]);
            out.clear();
            push_ip(&mut out, ip);
            assert_eq!(out, ip.to_string().as_bytes());
        }
    }

    #[test]
    fn durations_are_seconds_with_milliseconds_like_nginx() {
        let cases = [
            (0, "0.000"),
            (7, "0.007"),
            (1_250, "1.250"),
            (61_002, "61.002"),
        ];
        for (ms, want) in cases {
            let mut out = Vec::new();
            push_secs(
                &mut out,
                Duration::from_millis(ms) + Duration::from_micros(999),
            );
            assert_eq!(out, want.as_bytes(), "{ms} ms");
        }
    }

    #[test]
    fn cached_stamps_have_the_shapes_of_the_uncached_ones() {
        let (mut cached, mut direct) = (Vec::new(), Vec::new());
        push_now(&mut cached, Stamp::Iso8601);
        time_iso8601(SystemTime::now(), &mut direct);
        assert_eq!(cached.len(), direct.len());
        assert_eq!(
            cached[..10],
            direct[..10],
            "same day (unless run at midnight)"
        );
        cached.clear();
        push_now(&mut cached, Stamp::Local);
        assert_eq!(cached.len(), 26);
        assert!(cached.ends_with(b" +0000"));
    }

    #[test]
    fn partial_heads_never_panic() {
        for received in [
            &b""[..],
            b" ",
            b"  x",
            b"GET",
            b"GET ",
            b"\r\n",
            b"A B C D\n",
        ] {
            let head = partial_head(received);
            assert!(head.method.end <= received.len() && head.target.end <= received.len());
            assert!(head.path == head.target && head.headers.is_empty());
        }
    }

    #[test]
    fn leap_day_is_a_real_date() {
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        let mut out = Vec::new();
        time_iso8601(t, &mut out);
        assert_eq!(&out[..10], b"2000-02-29");
    }
}
