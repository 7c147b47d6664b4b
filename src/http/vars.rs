//! Template variables of one request (`$remote_addr`, `$http_NAME`, `$upstream_addr`, ...).

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::http::head::{RequestHead, Version};
use crate::template::{self, Var, VarSource};

/// What is known about one request while it is proxied; renders templates for it.
pub struct RequestVars<'a> {
    /// The request head bytes (`head`'s ranges point into it).
    pub buf: &'a [u8],
    pub head: &'a RequestHead,
    pub peer: SocketAddr,
    pub worker: usize,
    pub started: Instant,
    /// The server of the last attempt, once one was chosen.
    pub upstream: Option<SocketAddr>,
    pub upstream_status: u16,
    /// Status sent to the client (0 until known).
    pub status: u16,
    pub body_bytes_sent: u64,
    pub request_length: u64,
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
}

impl VarSource for RequestVars<'_> {
    fn write_var(&self, var: &Var, out: &mut Vec<u8>) {
        match var {
            Var::RemoteAddr => {
                let _ = write!(out, "{}", self.peer.ip());
            }
            Var::RemotePort => {
                let _ = write!(out, "{}", self.peer.port());
            }
            Var::TimeLocal => time_local(SystemTime::now(), out),
            Var::TimeIso8601 => time_iso8601(SystemTime::now(), out),
            Var::Request => {
                out.extend_from_slice(self.head.method(self.buf));
                out.push(b' ');
                out.extend_from_slice(self.target());
                out.extend_from_slice(match self.head.version {
                    Version::Http10 => b" HTTP/1.0",
                    Version::Http11 => b" HTTP/1.1",
                });
            }
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
            Var::Status => number(out, self.status as u64),
            Var::BodyBytesSent => number(out, self.body_bytes_sent),
            Var::RequestLength => number(out, self.request_length),
            Var::RequestTime => {
                let t = self.started.elapsed();
                let _ = write!(out, "{}.{:03}", t.as_secs(), t.subsec_millis());
            }
            Var::UpstreamAddr => match self.upstream {
                Some(a) => {
                    let _ = write!(out, "{a}");
                }
                None => out.push(b'-'),
            },
            Var::UpstreamStatus => match self.upstream_status {
                0 => out.push(b'-'),
                s => number(out, s as u64),
            },
            // Timings per attempt land with the access log; `-` is nginx's "not known".
            Var::UpstreamConnectTime | Var::UpstreamResponseTime => out.push(b'-'),
            Var::Worker => number(out, self.worker as u64),
        }
    }
}

fn number(out: &mut Vec<u8>, n: u64) {
    let _ = write!(out, "{n}");
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
    fn leap_day_is_a_real_date() {
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        let mut out = Vec::new();
        time_iso8601(t, &mut out);
        assert_eq!(&out[..10], b"2000-02-29");
    }
}
