//! PROXY protocol v1 and v2 end to end, read by a backend that parses the header itself:
//! tcp listeners on IPv4 and IPv6 (`::1`), and an http listener, where the header starts
//! each new upstream connection and such a connection serves only its own client.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::*;
use crate::tcp::{TcpBackend, tcp_config};

const WAIT: Duration = Duration::from_secs(10);

/// What one upstream connection's header said: (source, destination).
type Said = (SocketAddr, SocketAddr);

/// Reads one PROXY header (either version) off `r`, the way a server would.
fn read_header(r: &mut impl BufRead) -> Result<Said, String> {
    let sig = r.fill_buf().map_err(|e| e.to_string())?;
    if sig.starts_with(b"PROXY ") {
        let mut line = String::new();
        r.read_line(&mut line).map_err(|e| e.to_string())?;
        let line = line
            .strip_suffix("\r\n")
            .ok_or(format!("no CRLF: {line:?}"))?;
        let f: Vec<&str> = line.split(' ').collect();
        let [_, proto, src, dst, sport, dport] = f[..] else {
            return Err(format!("bad v1 line {line:?}"));
        };
        let ip = |s: &str| s.parse::<IpAddr>().map_err(|e| format!("{s}: {e}"));
        let port = |s: &str| s.parse::<u16>().map_err(|e| format!("{s}: {e}"));
        let (src, dst) = (ip(src)?, ip(dst)?);
        let want_v4 = proto == "TCP4";
        if src.is_ipv4() != want_v4 || dst.is_ipv4() != want_v4 {
            return Err(format!("{proto} with {src} {dst}"));
        }
        return Ok((
            SocketAddr::new(src, port(sport)?),
            SocketAddr::new(dst, port(dport)?),
        ));
    }
    let mut fixed = [0u8; 16];
    r.read_exact(&mut fixed).map_err(|e| e.to_string())?;
    if &fixed[..12] != b"\r\n\r\n\0\r\nQUIT\n" || fixed[12] != 0x21 {
        return Err(format!("bad v2 start {fixed:?}"));
    }
    let len = u16::from_be_bytes([fixed[14], fixed[15]]) as usize;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).map_err(|e| e.to_string())?;
    let port = |at: usize| u16::from_be_bytes([body[at], body[at + 1]]);
    match (fixed[13], len) {
        (0x11, 12) => {
            let ip = |at: usize| IpAddr::from(<[u8; 4]>::try_from(&body[at..at + 4]).unwrap());
            Ok((
                SocketAddr::new(ip(0), port(8)),
                SocketAddr::new(ip(4), port(10)),
            ))
        }
        (0x21, 36) => {
            let ip = |at: usize| IpAddr::from(<[u8; 16]>::try_from(&body[at..at + 16]).unwrap());
            Ok((
                SocketAddr::new(ip(0), port(32)),
                SocketAddr::new(ip(16), port(34)),
            ))
        }
        other => Err(format!("family/length {other:?}")),
    }
}

/// A tcp backend that reads the header, reports it, then echoes until the end.
fn header_echo() -> (TcpBackend, Receiver<Result<Said, String>>) {
    let (tx, rx) = channel();
    let tx = Mutex::new(tx);
    let backend = TcpBackend::start(move |s| {
        let mut reader = BufReader::new(s.try_clone().unwrap());
        let said = read_header(&mut reader);
        let ok = said.is_ok();
        let _ = tx.lock().unwrap().send(said);
        if !ok {
            return;
        }
        let mut w = s;
        let mut buf = [0u8; 4096];
        loop {
            match reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let _ = w.write_all(&buf[..n]);
                }
            }
        }
        let _ = w.shutdown(Shutdown::Write);
    });
    (backend, rx)
}

fn tcp_sends_v1_and_v2_with_the_real_addresses_on_ipv4_and_ipv6(driver: &str) {
    for version in ["v1", "v2"] {
        let (backend, said) = header_echo();
        let v6_port = free_port();
        let body = format!(
            "{}\n[[listener]]\nname = \"six\"\nbind = \"[::1]:{v6_port}\"\nmode = \"tcp\"\n\
             upstream = \"u\"\nproxy_protocol = \"{version}\"\n",
            tcp_config(
                &format!("proxy_protocol = \"{version}\""),
                "",
                &[server(backend.addr, "")]
            )
        );
        let proxy = Proxy::start(driver, &body);
        let v6: SocketAddr = format!("[::1]:{v6_port}").parse().unwrap();
        for listener in [proxy.addr, v6] {
            let mut c = TcpStream::connect_timeout(&listener, WAIT).unwrap();
            c.set_read_timeout(Some(WAIT)).unwrap();
            let client = c.local_addr().unwrap();
            // Skips the harness's start-up probe (a connection of its own).
            let got = loop {
                let got = said
                    .recv_timeout(WAIT)
                    .expect("the backend got a connection");
                if got.as_ref().map_or(true, |(src, _)| *src == client) {
                    break got;
                }
            };
            assert_eq!(got, Ok((client, listener)), "{version} via {listener}");
            // The bytes after the header are the client's, untouched.
            c.write_all(b"payload").unwrap();
            c.shutdown(Shutdown::Write).unwrap();
            let mut back = Vec::new();
            c.read_to_end(&mut back).unwrap();
            assert_eq!(back, b"payload");
        }
    }
}

/// An HTTP/1.1 keep-alive backend behind a PROXY header: each response body names the
/// header its connection began with.
fn http_behind_header() -> TcpBackend {
    TcpBackend::start(|s| {
        let mut reader = BufReader::new(s.try_clone().unwrap());
        let said = match read_header(&mut reader) {
            Ok((src, dst)) => format!("{src} {dst}"),
            Err(e) => format!("bad header: {e}"),
        };
        let mut w = s;
        loop {
            // Read one request head (no bodies in this test).
            let mut line = String::new();
            let mut got_any = false;
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) if line == "\r\n" && got_any => break,
                    Ok(_) => got_any = true,
                }
            }
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{said}",
                said.len()
            );
            if w.write_all(answer.as_bytes()).is_err() {
                return;
            }
        }
    })
}

fn http_listener_sends_the_header_once_per_upstream_connection_per_client(driver: &str) {
    for version in ["v1", "v2"] {
        let backend = http_behind_header();
        let proxy = Proxy::start(
            driver,
            &config(
                &format!("proxy_protocol = \"{version}\""),
                "",
                &[server(backend.addr, "")],
            ),
        );
        let mut a = Client::connect(proxy.addr);
        let mut b = Client::connect(proxy.addr);
        let request = "GET / HTTP/1.1\r\nHost: t\r\n\r\n";
        let want = |c: &Client| format!("{} {}", c.local_addr(), proxy.addr);
        for _ in 0..3 {
            for c in [&mut a, &mut b] {
                let r = c.request(request);
                assert_eq!(r.status, 200);
                assert_eq!(r.text(), want(c), "{version}: each client's own header");
            }
        }
        assert_eq!(
            backend.accepted(),
            2,
            "{version}: one upstream connection per client, reused by it alone"
        );
        // A client that has gone does not leave its connection to the next one.
        drop(a);
        let mut c = Client::connect(proxy.addr);
        let r = c.request(request);
        assert_eq!(r.text(), want(&c));
        assert_eq!(backend.accepted(), 3);
    }
}

fn without_proxy_protocol_the_pool_is_shared_and_no_header_is_sent(driver: &str) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let backend = Backend::start(move |req, c| {
        log.lock().unwrap().push(req.head_text());
        c.ok("fine");
    });
    let proxy = Proxy::start(driver, &single(backend.addr()));
    for _ in 0..2 {
        let mut c = Client::connect(proxy.addr);
        assert_eq!(c.request("GET / HTTP/1.1\r\nHost: t\r\n\r\n").status, 200);
    }
    assert_eq!(
        backend.connections(),
        1,
        "the second client reused the pool"
    );
    assert!(seen.lock().unwrap().iter().all(|h| h.starts_with("GET ")));
}

both_drivers!(
    tcp_sends_v1_and_v2_with_the_real_addresses_on_ipv4_and_ipv6,
    http_listener_sends_the_header_once_per_upstream_connection_per_client,
    without_proxy_protocol_the_pool_is_shared_and_no_header_is_sent,
);
