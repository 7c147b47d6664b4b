//! The gzip decision as wire transcripts (request and response heads in, plan out), the
//! head lines it writes, and the encoder's output decoded back.

use std::io::Read;

use super::*;
use crate::http::body::ChunkedDecoder;
use crate::http::head::{HeadLimits, parse_request, parse_response};

fn gz(level: u32, min_length: u64, types: &[&str]) -> Gzip {
    Gzip {
        level,
        min_length,
        types: types.iter().map(|t| t.to_string()).collect(),
        http10: false,
    }
}

fn json() -> Gzip {
    gz(6, 100, &["application/json", "text/plain"])
}

/// The plan for this request and response head (no body needed).
fn plan_for(g: &Gzip, req: &str, resp: &str) -> Plan {
    let limits = HeadLimits {
        max_header_size: 16 * 1024,
    };
    let request = parse_request(req.as_bytes(), limits)
        .expect("valid request")
        .expect("complete request");
    let head_req = request.method(req.as_bytes()) == b"HEAD";
    let response = parse_response(resp.as_bytes(), head_req, 16 * 1024)
        .expect("valid response")
        .expect("complete response");
    plan(g, req.as_bytes(), &request, resp.as_bytes(), &response)
}

const GZIP_GET: &str = "GET / HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip, deflate\r\n\r\n";
const JSON_1K: &str =
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n";

fn accepts(value: &str) -> bool {
    let req = format!("GET / HTTP/1.1\r\nHost: a\r\nAccept-Encoding: {value}\r\n\r\n");
    let limits = HeadLimits {
        max_header_size: 16 * 1024,
    };
    let head = parse_request(req.as_bytes(), limits).unwrap().unwrap();
    accepts_gzip(req.as_bytes(), &head.headers)
}

#[test]
fn accept_encoding_follows_names_weights_and_the_wildcard() {
    for yes in [
        "gzip",
        "GZIP",
        "deflate, gzip",
        "gzip;q=0.5",
        "gzip ; Q=1.000",
        "x-gzip",
        "*",
        "br;q=1, *;q=0.1",
        "gzip;q=0.001",
        "gzip;q=0, gzip;q=1",
    ] {
        assert!(accepts(yes), "{yes:?} accepts gzip");
    }
    for no in [
        "",
        "identity",
        "deflate",
        "br, deflate",
        "gzip;q=0",
        "gzip;q=0.000",
        "gzip;q=0, *",
        "*;q=0",
        "gzip;q=2",
        "gzip;q=0.5x",
        "gzip;q=1.5",
        "gzips",
        "*;q=0, identity",
    ] {
        assert!(!accepts(no), "{no:?} does not accept gzip");
    }
}

#[test]
fn no_accept_encoding_header_means_no_compression() {
    let req = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    assert_eq!(plan_for(&json(), req, JSON_1K), Plan::Vary);
    let two = "GET / HTTP/1.1\r\nHost: a\r\nAccept-Encoding: br\r\nAccept-Encoding: gzip\r\n\r\n";
    assert_eq!(plan_for(&json(), two, JSON_1K), Plan::Compress(6));
}

#[test]
fn listed_types_without_parameters_are_compressed() {
    let g = json();
    for ct in [
        "application/json",
        "Application/JSON; charset=utf-8",
        " text/plain ;q=1",
    ] {
        let resp = format!("HTTP/1.1 200 OK\r\nContent-Type: {ct}\r\nContent-Length: 500\r\n\r\n");
        assert_eq!(plan_for(&g, GZIP_GET, &resp), Plan::Compress(6), "{ct}");
    }
    for ct in ["text/html", "application/jsonx", "image/png"] {
        let resp = format!("HTTP/1.1 200 OK\r\nContent-Type: {ct}\r\nContent-Length: 500\r\n\r\n");
        assert_eq!(plan_for(&g, GZIP_GET, &resp), Plan::Untouched, "{ct}");
    }
    let untyped = "HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n";
    assert_eq!(plan_for(&g, GZIP_GET, untyped), Plan::Untouched);
}

#[test]
fn min_length_applies_to_known_lengths_only() {
    let g = json();
    let at = |len: u64| {
        let resp =
            format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {len}\r\n\r\n");
        plan_for(&g, GZIP_GET, &resp)
    };
    assert_eq!(at(99), Plan::Untouched);
    assert_eq!(at(100), Plan::Compress(6));
    let chunked =
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(plan_for(&g, GZIP_GET, chunked), Plan::Compress(6));
    let eof = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n";
    assert_eq!(plan_for(&g, GZIP_GET, eof), Plan::Compress(6));
}

#[test]
fn encoded_no_transform_partial_and_bodiless_responses_are_untouched() {
    let g = json();
    let with = |extra: &str| {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{extra}Content-Length: 500\r\n\r\n"
        )
    };
    for extra in [
        "Content-Encoding: gzip\r\n",
        "Content-Encoding: br\r\n",
        "Cache-Control: no-transform\r\n",
        "Cache-Control: public, No-Transform, max-age=60\r\n",
        "Content-Range: bytes 0-499/1000\r\n",
    ] {
        assert_eq!(
            plan_for(&g, GZIP_GET, &with(extra)),
            Plan::Untouched,
            "{extra}"
        );
    }
    let cache = with("Cache-Control: no-cache, max-age=60\r\n");
    assert_eq!(plan_for(&g, GZIP_GET, &cache), Plan::Compress(6));
    let head = "HEAD / HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip\r\n\r\n";
    assert_eq!(plan_for(&g, head, JSON_1K), Plan::Untouched);
    for status in ["204 No Content", "304 Not Modified", "206 Partial Content"] {
        let resp = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n"
        );
        assert_eq!(plan_for(&g, GZIP_GET, &resp), Plan::Untouched, "{status}");
    }
    let upgrade = "HTTP/1.1 101 Switching Protocols\r\nContent-Type: text/plain\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n";
    assert_eq!(plan_for(&g, GZIP_GET, upgrade), Plan::Untouched);
}

#[test]
fn http10_clients_get_identity_unless_http_version_says_1_0() {
    let req = "GET / HTTP/1.0\r\nAccept-Encoding: gzip\r\n\r\n";
    assert_eq!(plan_for(&json(), req, JSON_1K), Plan::Vary);
    let g = Gzip {
        http10: true,
        ..json()
    };
    assert_eq!(plan_for(&g, req, JSON_1K), Plan::Compress(6));
    assert_eq!(down_framing(Version::Http10), DownFraming::Close);
    assert_eq!(down_framing(Version::Http11), DownFraming::Chunked);
}

fn lines(plan: Plan, headers: &[(&str, &str)]) -> String {
    let mut out = Vec::new();
    let mut vary = false;
    for (name, value) in headers {
        if !head_line(plan, name.as_bytes(), value.as_bytes(), &mut out, &mut vary) {
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
    }
    head_end(plan, vary, &mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn vary_is_added_or_merged_once_and_strong_etags_turn_weak() {
    let c = Plan::Compress(1);
    assert_eq!(
        lines(c, &[("ETag", "\"abc\"")]),
        "ETag: W/\"abc\"\r\nContent-Encoding: gzip\r\nVary: Accept-Encoding\r\n"
    );
    assert_eq!(
        lines(c, &[("ETag", "W/\"abc\"")]).lines().next(),
        Some("ETag: W/\"abc\"")
    );
    assert_eq!(
        lines(Plan::Vary, &[("Vary", "Origin"), ("ETag", "\"abc\"")]),
        "Vary: Origin, Accept-Encoding\r\nETag: \"abc\"\r\n"
    );
    assert_eq!(
        lines(
            c,
            &[("vary", "accept-encoding, Origin"), ("Vary", "Cookie")]
        ),
        "Vary: accept-encoding, Origin\r\nVary: Cookie\r\nContent-Encoding: gzip\r\n"
    );
    assert_eq!(lines(Plan::Vary, &[("Vary", "*")]), "Vary: *\r\n");
}

/// Decodes a chunked body into its chunks' data.
fn dechunk(wire: &[u8]) -> (Vec<u8>, bool) {
    let mut ranges = Vec::new();
    let d = ChunkedDecoder::new()
        .decode(wire, &mut ranges)
        .expect("valid chunks");
    assert_eq!(d.consumed, wire.len());
    (
        ranges
            .iter()
            .flat_map(|r| wire[r.clone()].to_vec())
            .collect(),
        d.done,
    )
}

/// Inflates what a gzip stream holds so far (it may not be finished).
fn inflate_prefix(z: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut d = flate2::read::GzDecoder::new(z);
    let mut buf = [0u8; 4096];
    loop {
        match d.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    out
}

#[test]
fn every_piece_is_decodable_as_soon_as_it_is_sent_and_the_end_is_whole() {
    for level in [1, 6, 9] {
        let mut enc = Encoder::new(level);
        let mut wire = Vec::new();
        let mut sent = Vec::new();
        for i in 0..5 {
            let event = format!("data: {{\"token\": \"word{i}\", \"index\": {i}}}\n\n");
            enc.plain.extend_from_slice(event.as_bytes());
            enc.compress(false, DownFraming::Chunked, &mut wire)
                .unwrap();
            sent.extend_from_slice(event.as_bytes());
            let (z, done) = dechunk(&wire);
            assert!(!done);
            assert_eq!(
                inflate_prefix(&z),
                sent,
                "level {level}: event {i} is held back"
            );
        }
        // A read that brought nothing adds no chunk.
        let before = wire.len();
        enc.compress(false, DownFraming::Chunked, &mut wire)
            .unwrap();
        assert_eq!(wire.len(), before);
        enc.compress(true, DownFraming::Chunked, &mut wire).unwrap();
        let (z, done) = dechunk(&wire);
        assert!(done, "ends with the last chunk");
        assert_eq!(enc.sent(), z.len() as u64);
        let mut whole = Vec::new();
        flate2::read::GzDecoder::new(&z[..])
            .read_to_end(&mut whole)
            .expect("a whole gzip member");
        assert_eq!(whole, sent);
        // Finished: nothing more is written.
        enc.compress(true, DownFraming::Chunked, &mut wire).unwrap();
        assert_eq!(dechunk(&wire).0, z);
    }
}

#[test]
fn a_close_delimited_body_is_the_bare_gzip_stream() {
    let body: Vec<u8> = (0..20_000u32)
        .flat_map(|i| format!("{{\"i\":{i}}},").into_bytes())
        .collect();
    let mut enc = Encoder::new(6);
    let mut wire = Vec::new();
    for piece in body.chunks(7000) {
        enc.plain.extend_from_slice(piece);
        enc.compress(false, DownFraming::Close, &mut wire).unwrap();
    }
    enc.compress(true, DownFraming::Close, &mut wire).unwrap();
    assert!(
        wire.len() < body.len() / 4,
        "{} of {}",
        wire.len(),
        body.len()
    );
    let mut whole = Vec::new();
    flate2::read::GzDecoder::new(&wire[..])
        .read_to_end(&mut whole)
        .unwrap();
    assert_eq!(whole, body);
}

#[test]
fn an_empty_body_is_an_empty_gzip_member() {
    let mut enc = Encoder::new(1);
    let mut wire = Vec::new();
    enc.compress(true, DownFraming::Chunked, &mut wire).unwrap();
    let (z, done) = dechunk(&wire);
    assert!(done);
    let mut whole = Vec::new();
    flate2::read::GzDecoder::new(&z[..])
        .read_to_end(&mut whole)
        .unwrap();
    assert!(whole.is_empty());
}
