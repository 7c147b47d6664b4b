//! Unit tests for the demo backends, through std::net clients on free ports.

use super::*;
use std::io::{Read, Write};
use std::net::TcpStream as StdStream;
use std::time::Instant;

/// Starts one demo backend on a free port and returns its address.
fn start_backend() -> SocketAddr {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = probe.local_addr().unwrap();
    drop(probe);
    spawn_backends(vec![addr]).unwrap();
    addr
}

fn connect(addr: SocketAddr) -> StdStream {
    let s = StdStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s
}

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads one response from `s`, keeping bytes past its end in `buf`.
fn read_resp(s: &mut StdStream, buf: &mut Vec<u8>) -> Resp {
    let (status, headers, len) = loop {
        let mut hs = [httparse::EMPTY_HEADER; 32];
        let mut r = httparse::Response::new(&mut hs);
        if let httparse::Status::Complete(len) = r.parse(buf).unwrap() {
            let headers = r
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_string(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            break (r.code.unwrap(), headers, len);
        }
        read_more(s, buf);
    };
    buf.drain(..len);
    let mut resp = Resp {
        status,
        headers,
        body: Vec::new(),
    };
    if status < 200 {
        return resp;
    }
    if let Some(n) = resp.header("content-length") {
        let n: usize = n.parse().unwrap();
        while buf.len() < n {
            read_more(s, buf);
        }
        resp.body = buf.drain(..n).collect();
    } else if resp.header("transfer-encoding") == Some("chunked") {
        loop {
            let line_end = loop {
                if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                read_more(s, buf);
            };
            let size = usize::from_str_radix(std::str::from_utf8(&buf[..line_end]).unwrap(), 16);
            let size = size.unwrap();
            while buf.len() < line_end + 2 + size + 2 {
                read_more(s, buf);
            }
            resp.body
                .extend_from_slice(&buf[line_end + 2..line_end + 2 + size]);
            buf.drain(..line_end + 2 + size + 2);
            if size == 0 {
                break;
            }
        }
    } else {
        s.read_to_end(buf).unwrap();
        resp.body = std::mem::take(buf);
    }
    resp
}

fn read_more(s: &mut StdStream, buf: &mut Vec<u8>) {
    let mut tmp = [0u8; 65536];
    let n = s.read(&mut tmp).unwrap();
    assert!(
        n > 0,
        "connection closed early; have {:?}",
        String::from_utf8_lossy(buf)
    );
    buf.extend_from_slice(&tmp[..n]);
}

fn get(addr: SocketAddr, raw: &str) -> Resp {
    let mut s = connect(addr);
    s.write_all(raw.as_bytes()).unwrap();
    read_resp(&mut s, &mut Vec::new())
}

#[test]
fn root_names_the_backend_port_in_body_and_header() {
    let addr = start_backend();
    let port = addr.port().to_string();
    let r = get(addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 200);
    assert!(r.text().contains(&port), "{}", r.text());
    assert_eq!(r.header("x-backend"), Some(port.as_str()));
}

#[test]
fn chat_answers_json_with_the_port_for_get_and_post() {
    let addr = start_backend();
    let port = addr.port();
    let r = get(
        addr,
        "POST /chat HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(
        r.text()
            .starts_with(&format!("{{\"backend\":{port},\"reply\":")),
        "{}",
        r.text()
    );
    assert!(r.text().contains("\"request_bytes\":5"), "{}", r.text());
    let r = get(addr, "GET /chat HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-backend"), Some(port.to_string().as_str()));
    let r = get(addr, "DELETE /chat HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 405);
}

#[test]
fn completions_and_health_answer_with_the_port() {
    let addr = start_backend();
    let port = addr.port().to_string();
    let r = get(
        addr,
        "POST /completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
    );
    assert_eq!(r.status, 200);
    assert!(
        r.text().contains(&format!("\"backend\":{port}")),
        "{}",
        r.text()
    );
    assert!(r.text().contains("text_completion"));
    let r = get(addr, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 200);
    assert!(r.text().contains(&port));
}

#[test]
fn unknown_path_is_404_naming_the_port() {
    let addr = start_backend();
    let r = get(addr, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 404);
    assert!(r.text().contains(&addr.port().to_string()), "{}", r.text());
    assert_eq!(
        r.header("x-backend"),
        Some(addr.port().to_string().as_str())
    );
}

#[test]
fn size_route_sends_exactly_n_bytes_small_and_large() {
    let addr = start_backend();
    let mut s = connect(addr);
    let mut buf = Vec::new();
    for n in [0usize, 1, 1000, CACHE_WHOLE_UP_TO + 7, 3 << 20, 1000] {
        s.write_all(format!("GET /size/{n} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .unwrap();
        let r = read_resp(&mut s, &mut buf);
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len(), n);
        assert_eq!(r.header("content-length"), Some(n.to_string().as_str()));
    }
    let r = get(
        addr,
        &format!(
            "GET /size/{} HTTP/1.1\r\nHost: x\r\n\r\n",
            MAX_SIZE_BODY + 1
        ),
    );
    assert_eq!(r.status, 400);
}

#[test]
fn keep_alive_serves_two_requests_on_one_connection() {
    let addr = start_backend();
    let mut s = connect(addr);
    let mut buf = Vec::new();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(read_resp(&mut s, &mut buf).status, 200);
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let r = read_resp(&mut s, &mut buf);
    assert_eq!(r.status, 200);
    assert!(r.text().starts_with("ok "));
}

#[test]
fn pipelined_requests_after_a_chunked_body_are_answered_in_order() {
    let addr = start_backend();
    let mut s = connect(addr);
    let mut buf = Vec::new();
    // The chunked body contains bytes that look like a request line: skipping it by its
    // framing is the only way to find the next head.
    s.write_all(
        b"POST /chat HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
          5;ext=1\r\nGET /\r\n13\r\n HTTP/1.1\r\n\r\nxxxxxx\r\n0\r\nTrailer: t\r\n\r\n\
          POST /completions HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc\
          GET /nope HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .unwrap();
    let r = read_resp(&mut s, &mut buf);
    assert_eq!(r.status, 200);
    assert!(r.text().contains("\"request_bytes\":"), "{}", r.text());
    assert!(r.text().contains("reply"));
    let r = read_resp(&mut s, &mut buf);
    assert!(r.text().contains("text_completion"), "{}", r.text());
    assert!(r.text().contains("\"request_bytes\":3"));
    assert_eq!(read_resp(&mut s, &mut buf).status, 404);
}

#[test]
fn expect_continue_gets_100_before_the_body_is_sent() {
    let addr = start_backend();
    let mut s = connect(addr);
    let mut buf = Vec::new();
    s.write_all(
        b"POST /chat HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n",
    )
    .unwrap();
    assert_eq!(read_resp(&mut s, &mut buf).status, 100);
    s.write_all(b"ping").unwrap();
    let r = read_resp(&mut s, &mut buf);
    assert_eq!(r.status, 200);
    assert!(r.text().contains("\"request_bytes\":4"));
}

#[test]
fn http10_without_keep_alive_is_closed_after_the_response() {
    let addr = start_backend();
    let mut s = connect(addr);
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("Connection: close\r\n"));
}

#[test]
fn sse_events_arrive_spaced_in_time() {
    let addr = start_backend();
    let mut s = connect(addr);
    s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        .unwrap();
    let start = Instant::now();
    let mut seen = Vec::new();
    let mut arrivals = Vec::new();
    let mut tmp = [0u8; 4096];
    while !seen.ends_with(b"0\r\n\r\n") {
        let n = s.read(&mut tmp).unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&seen));
        let events = tmp[..n].windows(6).filter(|w| w == b"data: ").count();
        arrivals.extend(std::iter::repeat_n(start.elapsed(), events));
        seen.extend_from_slice(&tmp[..n]);
        assert!(start.elapsed() < Duration::from_secs(3));
    }
    let text = String::from_utf8_lossy(&seen);
    assert!(text.contains("Content-Type: text/event-stream"), "{text}");
    assert!(text.contains("Transfer-Encoding: chunked"), "{text}");
    assert!(text.contains("data: [DONE]\n\n"), "{text}");
    assert!(arrivals.len() > SSE_EVENTS, "{arrivals:?}");
    // Tokens are written one by one, not all at the end.
    let spread = arrivals[SSE_EVENTS - 1] - arrivals[0];
    assert!(spread >= SSE_GAP * (SSE_EVENTS as u32 - 2), "{arrivals:?}");
}

#[test]
fn malformed_heads_are_refused() {
    let addr = start_backend();
    let r = get(
        addr,
        "GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    assert_eq!(r.status, 400);
    let r = get(
        addr,
        "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    );
    assert_eq!(r.status, 400);
}

#[test]
fn chunk_skipper_finds_the_end_when_split_anywhere() {
    let body = b"4\r\nwiki\r\n5;a=b\r\npedia\r\n0\r\nX: y\r\n\r\nNEXT";
    let end = body.len() - 4;
    for split in 0..end {
        let mut skip = ChunkSkip::new();
        let a = skip.feed(&body[..split]).unwrap();
        assert_eq!(a, split);
        let b = skip.feed(&body[split..]).unwrap();
        assert_eq!(a + b, end, "split at {split}");
        assert!(skip.is_done());
    }
    for bad in [
        &b"x\r\n"[..],
        b"\r\n",
        b"4\r\nwikiXX",
        b"ffffffffffffffffff\r\n",
        b"1;\n",
    ] {
        assert!(
            ChunkSkip::new().feed(bad).is_err(),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn banner_shows_curl_ab_and_wrk() {
    let banner = demo_banner();
    for want in [
        "curl -N http://127.0.0.1:1700/v1/chat/completions",
        "ab -n 1000 -c 10",
        "wrk -t1 -c32 -d10s",
    ] {
        assert!(banner.contains(want), "{want} missing from\n{banner}");
    }
}

#[test]
fn demo_config_is_valid_and_fronts_the_three_backends_with_least_conn() {
    let snapshot = crate::config::load_str(DEMO_CONFIG, Path::new("<demo>"), 1)
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(snapshot.listeners.len(), 1);
    let listener = &snapshot.listeners[0];
    assert_eq!(listener.bind.to_string(), DEMO_PROXY);
    let group = &snapshot.groups[listener.group];
    assert_eq!(group.peers.policy(), crate::balance::Policy::LeastConn);
    let ports: Vec<u16> = group
        .peers
        .servers()
        .iter()
        .map(|s| s.addr.port())
        .collect();
    assert_eq!(ports, DEMO_BACKEND_PORTS);
    assert!(
        snapshot.runtime.pid_file.is_none(),
        "the demo must not need /run"
    );
}
