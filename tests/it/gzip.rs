//! The listener's `gzip`: which responses are compressed, what their heads say, that the
//! compressed body decodes to exactly what the server sent (Content-Length, chunked and
//! close-delimited server bodies), that streamed events stay prompt, and that the client
//! connection goes on cleanly afterwards.

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::*;

/// A JSON body of exactly `n` bytes (padded with spaces), like an API answer: repetitive
/// keys, varying values.
fn json_body(n: usize) -> Vec<u8> {
    let mut out = b"{\"data\":[".to_vec();
    let mut i = 0u64;
    while out.len() + 80 < n {
        let row = format!(
            "{{\"id\":{i},\"object\":\"embedding\",\"score\":{:.4},\"name\":\"item-{}\"}},",
            (i * 7919 % 10_000) as f64 / 10_000.0,
            i * 31 % 977
        );
        out.extend_from_slice(row.as_bytes());
        i += 1;
    }
    out.extend_from_slice(b"{\"id\":-1}]}");
    out.resize(n, b' ');
    out
}

fn gunzip(z: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(z)
        .read_to_end(&mut out)
        .unwrap_or_else(|e| panic!("not a whole gzip stream ({} bytes): {e}", z.len()));
    out
}

/// What a gzip stream that may still be growing decodes to so far.
fn gunzip_prefix(z: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut d = flate2::read::GzDecoder::new(z);
    let mut buf = [0u8; 4096];
    while let Ok(n) = d.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    out
}

const GZIP_JSON: &str = "gzip = { level = 6, min_length = \"1k\", types = [\"application/json\", \"text/event-stream\"] }";

fn proxy_with(driver: &str, b: &Backend, listener: &str) -> Proxy {
    Proxy::start(driver, &config(listener, "", &[server(b.addr(), "")]))
}

fn get_gzip(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip, deflate, br\r\n\r\n")
}

/// Serves `json_body(20_000)` in chunks (`/chunked`), ended by closing (`/close`), or
/// with a length and a strong ETag (any other path).
fn framing_backend() -> Backend {
    Backend::start(|req, c| {
        let body = json_body(20_000);
        let ct = ("Content-Type", "application/json; charset=utf-8");
        match req.path() {
            "/chunked" => {
                c.chunked_head(200, &[ct]);
                for piece in body.chunks(3000) {
                    c.chunk(piece);
                }
                c.end_chunks();
            }
            "/close" => {
                c.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n");
                c.write(&body);
                c.keep_alive = false;
                c.close();
            }
            _ => {
                c.respond(200, &[ct, ("ETag", "\"v1\"")], &body);
            }
        }
    })
}

fn is_gzipped(r: &Response) -> bool {
    r.header("content-encoding") == Some("gzip")
}

fn compressed_bodies_round_trip_and_the_connection_goes_on(driver: &str) {
    let b = framing_backend();
    let p = proxy_with(driver, &b, GZIP_JSON);
    let original = json_body(20_000);
    let mut c = Client::connect(p.addr);
    // One client connection through all three server framings, then a plain request:
    // each compressed answer must end exactly where its framing says.
    for path in ["/length", "/chunked", "/close", "/length"] {
        let r = c.request(get_gzip(path));
        let head = r.head_text();
        assert_eq!(r.status, 200, "{path}: {head}");
        assert!(is_gzipped(&r), "{path}: {head}");
        assert_eq!(r.framing, Framing::Chunked, "{path}: {head}");
        assert!(r.header("content-length").is_none(), "{path}: {head}");
        assert_eq!(r.header_all("vary"), ["Accept-Encoding"], "{path}: {head}");
        assert!(!r.says_close(), "{path}: {head}");
        assert!(
            r.body.len() < original.len() / 3,
            "{path}: {} bytes",
            r.body.len()
        );
        assert_eq!(gunzip(&r.body), original, "{path}");
        if path == "/length" {
            assert_eq!(r.header("etag"), Some("W/\"v1\""), "{head}");
        }
    }
    let r = c.request("GET /length HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(!is_gzipped(&r) && r.body == original, "{}", r.head_text());
    assert_eq!(
        r.header("content-length"),
        Some("20000"),
        "{}",
        r.head_text()
    );
}
both_drivers!(compressed_bodies_round_trip_and_the_connection_goes_on);

fn min_length_and_types_decide(driver: &str) {
    let b = Backend::start(|req, c| {
        let (ct, n) = match req.path() {
            "/small" => ("application/json", 1023),
            "/edge" => ("application/json", 1024),
            "/html" => ("text/html", 20_000),
            _ => ("application/json", 20_000),
        };
        c.respond(200, &[("Content-Type", ct)], &json_body(n));
    });
    let p = proxy_with(driver, &b, GZIP_JSON);
    let mut c = Client::connect(p.addr);
    let small = c.request(get_gzip("/small"));
    assert!(!is_gzipped(&small), "{}", small.head_text());
    assert_eq!(small.header("content-length"), Some("1023"));
    assert!(small.header("vary").is_none(), "{}", small.head_text());
    let edge = c.request(get_gzip("/edge"));
    assert!(is_gzipped(&edge), "{}", edge.head_text());
    assert_eq!(gunzip(&edge.body).len(), 1024);
    let html = c.request(get_gzip("/html"));
    assert!(
        !is_gzipped(&html),
        "text/html is not listed: {}",
        html.head_text()
    );
    assert_eq!(html.body.len(), 20_000);
    assert!(html.header("vary").is_none());
}
both_drivers!(min_length_and_types_decide);

fn accept_encoding_decides_per_request(driver: &str) {
    let b = framing_backend();
    let p = proxy_with(driver, &b, GZIP_JSON);
    let original = json_body(20_000);
    let mut c = Client::connect(p.addr);
    for (accept, gzipped) in [
        (None, false),
        (Some("gzip"), true),
        (Some("GZip;q=0.5"), true),
        (Some("gzip;q=0"), false),
        (Some("gzip;q=0, *"), false),
        (Some("*"), true),
        (Some("deflate"), false),
        (Some("identity"), false),
        (Some("br, deflate;q=0.5, gzip;q=0.1"), true),
    ] {
        let line = accept.map_or(String::new(), |a| format!("Accept-Encoding: {a}\r\n"));
        let r = c.request(format!("GET /length HTTP/1.1\r\nHost: t\r\n{line}\r\n"));
        let head = r.head_text();
        assert_eq!(is_gzipped(&r), gzipped, "{accept:?}: {head}");
        assert_eq!(
            r.header_all("vary"),
            ["Accept-Encoding"],
            "{accept:?}: {head}"
        );
        let body = if gzipped {
            gunzip(&r.body)
        } else {
            r.body.clone()
        };
        assert_eq!(body, original, "{accept:?}");
        if !gzipped {
            assert_eq!(r.framing, Framing::Length, "{accept:?}: {head}");
        }
    }
}
both_drivers!(accept_encoding_decides_per_request);

fn encoded_no_transform_head_204_and_304_are_untouched(driver: &str) {
    let b = Backend::start(|req, c| {
        let json = ("Content-Type", "application/json");
        let body = json_body(5000);
        match req.path() {
            "/encoded" => {
                c.respond(
                    200,
                    &[json, ("Content-Encoding", "br")],
                    b"\x1b\x00\x01 not really brotli but opaque bytes",
                );
            }
            "/no-transform" => {
                c.respond(
                    200,
                    &[json, ("Cache-Control", "public, no-transform")],
                    &body,
                );
            }
            "/204" => {
                c.respond(204, &[json], b"");
            }
            "/304" => {
                c.respond(304, &[json, ("ETag", "\"v1\"")], b"");
            }
            _ => {
                c.respond(200, &[json], &body);
            }
        }
    });
    let p = proxy_with(driver, &b, GZIP_JSON);
    let mut c = Client::connect(p.addr);
    let encoded = c.request(get_gzip("/encoded"));
    assert_eq!(
        encoded.header_all("content-encoding"),
        ["br"],
        "{}",
        encoded.head_text()
    );
    assert_eq!(
        encoded.body,
        b"\x1b\x00\x01 not really brotli but opaque bytes"
    );
    let nt = c.request(get_gzip("/no-transform"));
    assert!(
        !is_gzipped(&nt) && nt.body == json_body(5000),
        "{}",
        nt.head_text()
    );
    assert_eq!(nt.header("content-length"), Some("5000"));
    c.send("HEAD /plain HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n");
    let head = c.read_head_response();
    assert!(!is_gzipped(&head), "{}", head.head_text());
    assert_eq!(
        head.header("content-length"),
        Some("5000"),
        "{}",
        head.head_text()
    );
    for path in ["/204", "/304"] {
        let r = c.request(get_gzip(path));
        assert!(
            !is_gzipped(&r) && r.body.is_empty(),
            "{path}: {}",
            r.head_text()
        );
        assert!(
            r.header("transfer-encoding").is_none(),
            "{path}: {}",
            r.head_text()
        );
    }
    // The connection is still in step after the bodiless answers.
    let r = c.request(get_gzip("/plain"));
    assert!(is_gzipped(&r) && gunzip(&r.body) == json_body(5000));
}
both_drivers!(encoded_no_transform_head_204_and_304_are_untouched);

fn http10_clients_get_identity_unless_http_version_is_1_0(driver: &str) {
    let b = framing_backend();
    let original = json_body(20_000);
    let request = "GET /chunked HTTP/1.0\r\nAccept-Encoding: gzip\r\n\r\n";
    let p = proxy_with(driver, &b, GZIP_JSON);
    let mut c = Client::connect(p.addr);
    let r = c.request(request);
    assert!(!is_gzipped(&r), "{}", r.head_text());
    assert_eq!(r.body, original);
    assert_eq!(r.header_all("vary"), ["Accept-Encoding"]);
    drop(p);
    let listener = GZIP_JSON.replace(" }", ", http_version = \"1.0\" }");
    let p = proxy_with(driver, &b, &listener);
    for path in ["/chunked", "/length"] {
        let mut c = Client::connect(p.addr);
        let r = c.request(format!(
            "GET {path} HTTP/1.0\r\nConnection: keep-alive\r\nAccept-Encoding: gzip\r\n\r\n"
        ));
        let head = r.head_text();
        assert!(is_gzipped(&r), "{path}: {head}");
        assert_eq!(r.framing, Framing::Close, "{path}: {head}");
        assert!(r.header("transfer-encoding").is_none(), "{path}: {head}");
        assert_eq!(gunzip(&r.body), original, "{path}");
        assert!(c.closed_within(Duration::from_secs(2)));
    }
}
both_drivers!(http10_clients_get_identity_unless_http_version_is_1_0);

fn vary_is_merged_with_the_servers(driver: &str) {
    let b = Backend::start(|req, c| {
        let vary = match req.path() {
            "/origin" => "Origin",
            _ => "accept-encoding",
        };
        c.respond(
            200,
            &[("Content-Type", "application/json"), ("Vary", vary)],
            &json_body(4000),
        );
    });
    let p = proxy_with(driver, &b, GZIP_JSON);
    let mut c = Client::connect(p.addr);
    let r = c.request(get_gzip("/origin"));
    assert_eq!(
        r.header_all("vary"),
        ["Origin, Accept-Encoding"],
        "{}",
        r.head_text()
    );
    let r = c.request("GET /origin HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(
        r.header_all("vary"),
        ["Origin, Accept-Encoding"],
        "{}",
        r.head_text()
    );
    let r = c.request(get_gzip("/already"));
    assert_eq!(
        r.header_all("vary"),
        ["accept-encoding"],
        "{}",
        r.head_text()
    );
    assert!(is_gzipped(&r));
}
both_drivers!(vary_is_merged_with_the_servers);

fn accept_encoding_removed_upstream_still_gets_compressed(driver: &str) {
    // nginx's `proxy_set_header Accept-Encoding ""`: the server sends identity, the proxy
    // compresses for the client that asked.
    let b = framing_backend();
    let listener = format!("{GZIP_JSON}\nrequest_headers = {{ \"Accept-Encoding\" = \"\" }}");
    let p = proxy_with(driver, &b, &listener);
    let mut c = Client::connect(p.addr);
    let r = c.request(get_gzip("/length"));
    assert!(is_gzipped(&r), "{}", r.head_text());
    assert_eq!(gunzip(&r.body), json_body(20_000));
    let seen = &b.requests()[0];
    assert!(
        seen.header("accept-encoding").is_none(),
        "{}",
        seen.head_text()
    );
}
both_drivers!(accept_encoding_removed_upstream_still_gets_compressed);

fn sse_events_arrive_compressed_and_prompt(driver: &str) {
    // When the backend wrote each event, to compare with when the client could read it.
    let written: Arc<Mutex<Vec<u64>>> = Arc::new(Mutex::new(Vec::new()));
    let log = written.clone();
    let b = Backend::start(move |_, c| {
        c.chunked_head(
            200,
            &[
                ("Content-Type", "text/event-stream"),
                ("Cache-Control", "no-cache"),
            ],
        );
        for i in 0..5 {
            let event =
                format!("data: {{\"choices\":[{{\"delta\":{{\"content\":\"token {i}\"}}}}]}}\n\n");
            log.lock().unwrap().push(now_us());
            c.chunk(event.as_bytes());
            c.sleep_ms(250);
        }
        c.chunk(b"data: [DONE]\n\n");
        c.end_chunks();
    });
    let p = proxy_with(driver, &b, GZIP_JSON);
    let mut c = Client::connect(p.addr);
    c.send(get_gzip("/v1/chat/completions"));
    let head = c.read_head();
    assert!(is_gzipped(&head), "{}", head.head_text());
    let mut z = Vec::new();
    for i in 0..5 {
        let want = format!("\"token {i}\"");
        // Chunks until this event decodes: it must not wait for the next one.
        loop {
            let chunk = c.next_chunk().expect("the stream goes on");
            z.extend_from_slice(&chunk);
            let text = String::from_utf8(gunzip_prefix(&z)).unwrap();
            if text.contains(&want) {
                break;
            }
        }
        let arrived = now_us();
        let at = written.lock().unwrap()[i];
        let late_ms = (arrived - at) / 1000;
        assert!(
            late_ms < 100,
            "event {i} decodable {late_ms} ms after the server wrote it"
        );
    }
    while let Some(chunk) = c.next_chunk() {
        z.extend_from_slice(&chunk);
    }
    let text = String::from_utf8(gunzip(&z)).unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert_eq!(text.matches("data: ").count(), 6);
}
both_drivers!(sse_events_arrive_compressed_and_prompt);
