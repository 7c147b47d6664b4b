//! One probe of one server: a TCP connect, or an HTTP/1.1 request whose response status
//! must fall in `expect`, all within `timeout`. Runs on the prober's own runtime.
//!
//! The request says `Connection: close` and only the status line is read: the probe never
//! waits for a body (a generation's tokens) and never reuses a connection, so a server
//! that kept a half-read answer cannot poison the next probe.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

use crate::snapshot::HealthCheck;

/// Longest status line read; a server sending more without a line end fails the probe.
const MAX_STATUS_LINE: usize = 4096;

/// How to probe one server, built when the prober learns of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    pub addr: SocketAddr,
    /// The whole request; `None` for a TCP connect check.
    pub request: Option<Bytes>,
    pub timeout: Duration,
    pub expect: (u16, u16),
}

/// What one probe found: passed or not, and what to say about it in the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub passed: bool,
    pub reason: String,
}

impl Outcome {
    fn failed(reason: impl Into<String>) -> Outcome {
        Outcome {
            passed: false,
            reason: reason.into(),
        }
    }
}

impl Probe {
    pub fn new(addr: SocketAddr, check: &HealthCheck) -> Probe {
        Probe {
            addr,
            request: check.path.as_ref().map(|path| request(addr, path, check)),
            timeout: check.timeout,
            expect: check.expect,
        }
    }

    /// Runs the probe; never takes longer than `timeout` (plus the timer's granularity).
    pub async fn run(&self) -> Outcome {
        match monoio::time::timeout(self.timeout, self.exchange()).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(e)) => Outcome::failed(e.to_string()),
            Err(_) => Outcome::failed(format!("timed out after {:?}", self.timeout)),
        }
    }

    async fn exchange(&self) -> io::Result<Outcome> {
        let mut stream = TcpStream::connect_addr(self.addr)
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("connect: {e}")))?;
        let Some(request) = &self.request else {
            return Ok(Outcome {
                passed: true,
                reason: "connected".into(),
            });
        };
        let (written, _) = stream.write_all(request.clone()).await;
        written?;
        let mut head: Vec<u8> = Vec::new();
        let status = loop {
            match status_line(&head) {
                Ok(Some(status)) => break status,
                Ok(None) if head.len() < MAX_STATUS_LINE => {}
                Ok(None) => return Ok(Outcome::failed("status line too long")),
                Err(()) => return Ok(Outcome::failed("malformed status line")),
            }
            let (read, buf) = stream.read(Vec::with_capacity(1024)).await;
            match read? {
                0 => return Ok(Outcome::failed("connection closed before a response")),
                _ => head.extend_from_slice(&buf),
            }
        };
        let (lo, hi) = self.expect;
        Ok(Outcome {
            passed: (lo..=hi).contains(&status),
            reason: format!("status {status}"),
        })
    }
}

/// The probe's request bytes: `Host` is the server's address unless the check sets one.
fn request(addr: SocketAddr, path: &str, check: &HealthCheck) -> Bytes {
    let mut head = format!("{} {path} HTTP/1.1\r\n", check.method);
    if !check
        .headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("host"))
    {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    for (name, value) in &check.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("User-Agent: ringway-health\r\nConnection: close\r\n");
    if let Some(body) = &check.body {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    if let Some(body) = &check.body {
        bytes.extend_from_slice(body.as_bytes());
    }
    Bytes::from(bytes)
}

/// The status code of `HTTP/1.x NNN ...` once its line has arrived; `Ok(None)` until then.
fn status_line(buf: &[u8]) -> Result<Option<u16>, ()> {
    let Some(end) = buf.iter().position(|&b| b == b'\n') else {
        // Reject early what can never become a status line.
        let prefix = &buf[..buf.len().min(7)];
        return if b"HTTP/1."[..prefix.len()] == *prefix {
            Ok(None)
        } else {
            Err(())
        };
    };
    let line = &buf[..end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    match line {
        [
            b'H',
            b'T',
            b'T',
            b'P',
            b'/',
            b'1',
            b'.',
            v,
            b' ',
            a,
            b,
            c,
            rest @ ..,
        ] if v.is_ascii_digit()
            && [a, b, c].iter().all(|d| d.is_ascii_digit())
            && (rest.is_empty() || rest[0] == b' ') =>
        {
            let code = u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0');
            if (100..=599).contains(&code) {
                Ok(Some(code))
            } else {
                Err(())
            }
        }
        _ => Err(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(path: Option<&str>) -> HealthCheck {
        HealthCheck {
            path: path.map(str::to_string),
            method: "GET".into(),
            body: None,
            headers: Vec::new(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
            rise: 2,
            fall: 3,
            expect: (200, 399),
        }
    }

    #[test]
    fn no_path_is_a_connect_check() {
        let addr = "127.0.0.1:9".parse().unwrap();
        assert_eq!(Probe::new(addr, &check(None)).request, None);
    }

    #[test]
    fn a_get_probe_names_the_server_and_closes() {
        let addr = "127.0.0.1:1701".parse().unwrap();
        let probe = Probe::new(addr, &check(Some("/health")));
        assert_eq!(
            probe.request.unwrap(),
            "GET /health HTTP/1.1\r\nHost: 127.0.0.1:1701\r\nUser-Agent: ringway-health\r\n\
             Connection: close\r\n\r\n"
        );
    }

    #[test]
    fn a_post_probe_sends_its_headers_and_a_framed_body() {
        let mut c = check(Some("/v1/completions"));
        c.method = "POST".into();
        c.body = Some("{\"max_tokens\":1}".into());
        c.headers = vec![
            ("host".into(), "llm".into()),
            ("Content-Type".into(), "application/json".into()),
        ];
        let probe = Probe::new("127.0.0.1:1701".parse().unwrap(), &c);
        assert_eq!(
            probe.request.unwrap(),
            "POST /v1/completions HTTP/1.1\r\nhost: llm\r\nContent-Type: application/json\r\n\
             User-Agent: ringway-health\r\nConnection: close\r\nContent-Length: 16\r\n\r\n\
             {\"max_tokens\":1}"
        );
    }

    #[test]
    fn the_status_is_read_from_the_first_line_alone() {
        assert_eq!(status_line(b""), Ok(None));
        assert_eq!(status_line(b"HTTP/1"), Ok(None));
        assert_eq!(status_line(b"HTTP/1.1 200 OK"), Ok(None));
        assert_eq!(status_line(b"HTTP/1.1 200 OK\r\n"), Ok(Some(200)));
        assert_eq!(status_line(b"HTTP/1.0 503\r\nX: y"), Ok(Some(503)));
        assert_eq!(status_line(b"HTTP/1.1 404 Not Found\n"), Ok(Some(404)));
    }

    #[test]
    fn anything_but_a_status_line_is_malformed() {
        for bad in [
            &b"SSH-2.0-OpenSSH\r\n"[..],
            b"HTTP/2 200\r\n",
            b"HTTP/1.1 20 OK\r\n",
            b"HTTP/1.1 2000 OK\r\n",
            b"HTTP/1.1 099 x\r\n",
            b"HTTP/1.1 600 x\r\n",
            b"\r\n",
            b"x",
        ] {
            assert_eq!(
                status_line(bad),
                Err(()),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
