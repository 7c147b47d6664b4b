//! [`Client`]: a raw-socket HTTP/1.x client. Requests are bytes in; responses are parsed
//! strictly (status, headers, body by Content-Length, chunked or close) with bounded waits.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::FromRawFd;
use std::time::{Duration, Instant};

/// How long a read may wait for the next byte of an expected response.
pub const READ_TIMEOUT: Duration = Duration::from_secs(3);

/// How a response body was delimited on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// 1xx, 204, 304 or an answer to HEAD.
    None,
    Length,
    Chunked,
    /// Read until the server closed.
    Close,
}

#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    pub headers: Vec<(String, String)>,
    /// The head as received, status line to the blank line.
    pub head: Vec<u8>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
    pub framing: Framing,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        super::header_values(&self.headers, name).next()
    }

    pub fn header_all(&self, name: &str) -> Vec<&str> {
        super::header_values(&self.headers, name).collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn head_text(&self) -> String {
        String::from_utf8_lossy(&self.head).into_owned()
    }

    /// Whether the server said it will close (`Connection: close`).
    pub fn says_close(&self) -> bool {
        self.header_all("connection")
            .iter()
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
    }
}

/// One client connection.
pub struct Client {
    stream: TcpStream,
    /// Bytes read but not yet returned.
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect_timeout(&addr, READ_TIMEOUT)
            .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        Client::from_stream(stream)
    }

    /// Connects from `local` (any 127.0.0.0/8 address works on Linux loopback), so the
    /// proxy sees a chosen client address.
    pub fn connect_from(local: Ipv4Addr, addr: SocketAddr) -> Client {
        Client::connect_raw(local, addr, None)
    }

    /// Connects with a fixed 64 KiB receive buffer (no autotuning): a client that stops
    /// reading then blocks the proxy's writes after a few MiB, whatever the host's
    /// `net.ipv4.tcp_rmem` allows (32 MiB here, room for a whole 64 MiB response between
    /// the two sockets' buffers).
    pub fn connect_with_small_window(addr: SocketAddr) -> Client {
        Client::connect_raw(Ipv4Addr::LOCALHOST, addr, Some(64 * 1024))
    }

    fn connect_raw(local: Ipv4Addr, addr: SocketAddr, rcvbuf: Option<libc::c_int>) -> Client {
        let SocketAddr::V4(remote) = addr else {
            panic!("IPv4 only")
        };
        // SAFETY: plain socket syscalls on a descriptor we own; the sockaddr structs live on
        // the stack for the duration of each call; the fd is closed on every error path, or
        // handed to TcpStream, which then owns it.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
            let sa = |ip: Ipv4Addr, port: u16| libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: port.to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(ip).to_be(),
                },
                sin_zero: [0; 8],
            };
            let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            if let Some(size) = rcvbuf {
                let rc = libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUF,
                    (&raw const size).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
                assert_eq!(rc, 0, "SO_RCVBUF: {}", std::io::Error::last_os_error());
            }
            let local_sa = sa(local, 0);
            if libc::bind(fd, (&raw const local_sa).cast(), len) != 0 {
                let e = std::io::Error::last_os_error();
                libc::close(fd);
                panic!("bind {local}: {e}");
            }
            let remote_sa = sa(*remote.ip(), remote.port());
            if libc::connect(fd, (&raw const remote_sa).cast(), len) != 0 {
                let e = std::io::Error::last_os_error();
                libc::close(fd);
                panic!("connect {addr} from {local}: {e}");
            }
            Client::from_stream(TcpStream::from_raw_fd(fd))
        }
    }

    fn from_stream(stream: TcpStream) -> Client {
        stream
            .set_read_timeout(Some(READ_TIMEOUT))
            .expect("set_read_timeout");
        stream.set_nodelay(true).expect("nodelay");
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    /// A second handle on the socket, to write from another thread while this one reads.
    pub fn try_clone_stream(&self) -> TcpStream {
        self.stream.try_clone().expect("clone the client socket")
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.stream.local_addr().expect("local_addr")
    }

    /// Writes `bytes` (panics if the peer is gone).
    pub fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.stream.write_all(bytes.as_ref()).expect("client write");
    }

    /// Writes `bytes`; Err if the peer is gone.
    pub fn try_send(&mut self, bytes: impl AsRef<[u8]>) -> std::io::Result<()> {
        self.stream.write_all(bytes.as_ref())
    }

    /// Sends `raw` and reads one response.
    pub fn request(&mut self, raw: impl AsRef<[u8]>) -> Response {
        self.send(raw);
        self.read_response()
    }

    /// Sends each request after the previous response arrived, on this one connection.
    pub fn request_many<R: AsRef<[u8]>>(&mut self, raws: &[R]) -> Vec<Response> {
        raws.iter().map(|raw| self.request(raw)).collect()
    }

    /// Sends every request in one write (pipelining), then reads as many responses.
    pub fn pipeline<R: AsRef<[u8]>>(&mut self, raws: &[R]) -> Vec<Response> {
        let all: Vec<u8> = raws
            .iter()
            .flat_map(|raw| raw.as_ref().iter().copied())
            .collect();
        self.send(all);
        raws.iter().map(|_| self.read_response()).collect()
    }

    /// Reads one whole response; panics (with what arrived) on timeout, close or bad syntax.
    pub fn read_response(&mut self) -> Response {
        self.try_read_response().unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_read_response(&mut self) -> Result<Response, String> {
        let mut resp = self.try_read_head()?;
        self.read_body(&mut resp)?;
        Ok(resp)
    }

    /// Reads the answer to a HEAD request (no body, whatever the headers say).
    pub fn read_head_response(&mut self) -> Response {
        let mut resp = self.try_read_head().unwrap_or_else(|e| panic!("{e}"));
        resp.framing = Framing::None;
        resp
    }

    /// Reads a response head only; the body is read with [`Client::next_chunk`] or
    /// [`Client::read_body`]. `framing` says how it will end.
    pub fn read_head(&mut self) -> Response {
        self.try_read_head().unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_read_head(&mut self) -> Result<Response, String> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 128];
            let mut parsed = httparse::Response::new(&mut headers);
            match parsed.parse(&self.buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let status = parsed.code.unwrap_or(0);
                    let headers: Vec<(String, String)> = parsed
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_string(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect();
                    let version = parsed.version.unwrap_or(1);
                    let head = self.buf.drain(..len).collect();
                    let mut resp = Response {
                        status,
                        version,
                        headers,
                        head,
                        body: Vec::new(),
                        framing: Framing::None,
                    };
                    resp.framing = framing_of(&resp)?;
                    return Ok(resp);
                }
                Ok(httparse::Status::Partial) => self.fill().map_err(|e| {
                    format!(
                        "reading a response head: {e}; got {:?}",
                        String::from_utf8_lossy(&self.buf)
                    )
                })?,
                Err(e) => {
                    return Err(format!(
                        "bad response head ({e}): {:?}",
                        String::from_utf8_lossy(&self.buf)
                    ));
                }
            }
        }
    }

    /// Reads the rest of `resp`'s body as its framing says.
    pub fn read_body(&mut self, resp: &mut Response) -> Result<(), String> {
        match resp.framing {
            Framing::None => Ok(()),
            Framing::Length => {
                let n: usize = resp
                    .header("content-length")
                    .unwrap_or("0")
                    .trim()
                    .parse()
                    .map_err(|_| "bad CL")?;
                while self.buf.len() < n {
                    self.fill()
                        .map_err(|e| format!("body: {e} after {} of {n} bytes", self.buf.len()))?;
                }
                resp.body = self.buf.drain(..n).collect();
                Ok(())
            }
            Framing::Chunked => {
                while let Some(data) = self.try_next_chunk()? {
                    resp.body.extend_from_slice(&data);
                }
                Ok(())
            }
            Framing::Close => loop {
                match self.fill() {
                    Ok(()) => {}
                    Err(e) if e == "closed" => {
                        resp.body = std::mem::take(&mut self.buf);
                        return Ok(());
                    }
                    Err(e) => return Err(format!("close-delimited body: {e}")),
                }
            },
        }
    }

    /// The data of the next chunk of a chunked body; None after the last chunk (trailers
    /// consumed).
    pub fn next_chunk(&mut self) -> Option<Vec<u8>> {
        self.try_next_chunk().unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_next_chunk(&mut self) -> Result<Option<Vec<u8>>, String> {
        let line = self.line()?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size line {line:?}"))?;
        if size == 0 {
            while !self.line()?.is_empty() {}
            return Ok(None);
        }
        while self.buf.len() < size + 2 {
            self.fill().map_err(|e| format!("chunk data: {e}"))?;
        }
        if &self.buf[size..size + 2] != b"\r\n" {
            return Err(format!("chunk of {size} not followed by CRLF"));
        }
        let data = self.buf.drain(..size).collect();
        self.buf.drain(..2);
        Ok(Some(data))
    }

    fn line(&mut self) -> Result<String, String> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.drain(..i + 2);
                return Ok(line);
            }
            self.fill().map_err(|e| {
                format!(
                    "chunk line: {e}; have {:?}",
                    String::from_utf8_lossy(&self.buf)
                )
            })?;
        }
    }

    /// One read into `buf`: Err("closed") at end of stream, Err("timeout") after READ_TIMEOUT.
    fn fill(&mut self) -> Result<(), String> {
        let mut tmp = [0u8; 64 * 1024];
        match self.stream.read(&mut tmp) {
            Ok(0) => Err("closed".into()),
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                Ok(())
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Err("timeout".into())
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => Err("closed".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Whatever arrives within `within` (pending bytes first); empty on close or timeout.
    pub fn read_raw(&mut self, within: Duration) -> Vec<u8> {
        if self.buf.is_empty() {
            self.stream
                .set_read_timeout(Some(within))
                .expect("set_read_timeout");
            let _ = self.fill();
            self.stream
                .set_read_timeout(Some(READ_TIMEOUT))
                .expect("set_read_timeout");
        }
        std::mem::take(&mut self.buf)
    }

    /// Reads until `bytes` have arrived in total or `within` passes; returns what arrived.
    pub fn read_exact_within(&mut self, n: usize, within: Duration) -> Vec<u8> {
        let deadline = Instant::now() + within;
        while self.buf.len() < n && Instant::now() < deadline {
            let left = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1));
            self.stream
                .set_read_timeout(Some(left))
                .expect("set_read_timeout");
            if self.fill().is_err() {
                break;
            }
        }
        self.stream
            .set_read_timeout(Some(READ_TIMEOUT))
            .expect("set_read_timeout");
        let take = n.min(self.buf.len());
        self.buf.drain(..take).collect()
    }

    /// Waits up to `within` for the server to close; bytes arriving meanwhile are kept.
    /// True when the connection was closed (EOF or reset).
    pub fn closed_within(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.stream
                    .set_read_timeout(Some(READ_TIMEOUT))
                    .expect("set_read_timeout");
                return false;
            }
            self.stream
                .set_read_timeout(Some(left))
                .expect("set_read_timeout");
            match self.fill() {
                Ok(()) => {}
                Err(e) if e == "closed" => return true,
                Err(e) if e == "timeout" => {}
                Err(_) => return true,
            }
        }
    }

    /// Bytes received but not consumed by a response read.
    pub fn leftover(&self) -> &[u8] {
        &self.buf
    }

    /// Half-closes the write side (the server sees end of stream).
    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
    }
}

fn framing_of(resp: &Response) -> Result<Framing, String> {
    if resp.status < 200 || resp.status == 204 || resp.status == 304 {
        return Ok(Framing::None);
    }
    let te = resp.header_all("transfer-encoding");
    if !te.is_empty() {
        if resp.header("content-length").is_some() {
            return Err(format!(
                "response with both CL and TE:\n{}",
                resp.head_text()
            ));
        }
        let last = te
            .last()
            .and_then(|v| v.rsplit(',').next())
            .unwrap_or("")
            .trim();
        return if last.eq_ignore_ascii_case("chunked") {
            Ok(Framing::Chunked)
        } else {
            Ok(Framing::Close)
        };
    }
    let cls = resp.header_all("content-length");
    if cls.len() > 1 {
        return Err(format!(
            "response with several Content-Length:\n{}",
            resp.head_text()
        ));
    }
    Ok(if cls.is_empty() {
        Framing::Close
    } else {
        Framing::Length
    })
}

/// One `GET path` on a fresh connection (`Connection: close`), whole response.
pub fn get(addr: SocketAddr, path: &str) -> Response {
    Client::connect(addr).request(format!(
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    ))
}
