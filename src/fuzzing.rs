//! Property checks behind the fuzz targets (`fuzz/`) and the seed-corpus test
//! (`tests/fuzz_corpus.rs`): each function takes arbitrary bytes, runs one parser or writer,
//! and panics when a property that must hold for every input fails. Not part of the API.
//!
//! The checks live in the library rather than in the fuzz crate so that every `cargo test`
//! runs them over the seed corpora without cargo-fuzz. Panicking is the point here: this
//! module is a test harness, never called on the data path.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;
use std::path::Path;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::http::body::{BodyError, ChunkedDecoder, LAST_CHUNK, chunk_header};
use crate::http::head::{
    self, HeadError, HeadLimits, HeaderPos, MAX_HEADERS, RequestBody, RequestHead, ResponseBody,
    Version,
};
use crate::http::model::{MAX_MODEL_LEN, request_model};
use crate::http::prompt_key::prompt_key;
use crate::snapshot::{ProxyProtocol, Snapshot};
use crate::upstream::proxy_header::{self, V1_MAX, V2_SIGNATURE};

/// The head limit the targets parse with (the default `max_header_size`).
const MAX_HEAD: usize = 16 * 1024;

// ---- request and response heads ----

/// `http::head::parse_request`: an accepted head is decided by its own bytes (what follows
/// changes nothing, every shorter prefix is "read more", a limit one byte short is 431),
/// its ranges lie inside it, and its framing agrees with its headers.
pub fn request_head(data: &[u8]) {
    let limits = HeadLimits {
        max_header_size: MAX_HEAD,
    };
    let h = match head::parse_request(data, limits) {
        Ok(Some(h)) => h,
        Ok(None) => {
            assert!(data.len() <= MAX_HEAD, "partial beyond the limit");
            return;
        }
        Err(e) => {
            assert!(matches!(e.status(), 400 | 414 | 431 | 501));
            return;
        }
    };
    assert!(h.len <= data.len() && h.len <= MAX_HEAD);
    let buf = &data[..h.len];
    assert!(buf.ends_with(b"\r\n\r\n"), "head must end in CRLFCRLF");
    assert!(!bare_lf(buf), "an accepted request head holds a bare LF");
    let alone = head::parse_request(buf, limits);
    assert_eq!(
        format!("{alone:?}"),
        format!("{:?}", Ok::<_, HeadError>(Some(h.clone())))
    );
    for cut in prefixes(h.len) {
        let partial = head::parse_request(&buf[..cut], limits);
        assert!(matches!(partial, Ok(None)), "prefix {cut}: {partial:?}");
    }
    let tight = HeadLimits {
        max_header_size: h.len - 1,
    };
    assert_eq!(
        head::parse_request(data, tight).err(),
        Some(HeadError::TooLarge)
    );
    check_request(buf, &h);
}

fn check_request(buf: &[u8], h: &RequestHead) {
    assert!(!h.method(buf).is_empty() && h.method(buf).iter().all(|&b| is_tchar(b)));
    let target = h.target(buf);
    assert!(!target.is_empty() && target.iter().all(|&b| b > b' ' && b != 0x7f));
    let path = h.path(buf);
    assert!(path.starts_with(b"/") || path == b"*", "path {path:?}");
    assert!(
        inside(&h.path, &h.target) || path == b"/",
        "path outside the target"
    );
    if let Some(host) = h.host(buf) {
        assert!(!host.is_empty() && !host.contains(&b'@'));
        assert!(host.iter().all(|&b| b > b' ' && b != 0x7f));
    }
    check_headers(buf, &h.headers);
    let hosts = count(buf, &h.headers, "host");
    assert!(hosts <= 1, "more than one Host accepted");
    if h.version == Version::Http11 {
        assert_eq!(hosts, 1, "HTTP/1.1 without Host accepted");
    }
    let te = count(buf, &h.headers, "transfer-encoding");
    let cl = values(buf, &h.headers, "content-length");
    match h.body {
        RequestBody::None => assert!(te == 0 && cl.is_empty()),
        RequestBody::Length(n) => {
            assert_eq!(te, 0, "Content-Length framing with a Transfer-Encoding");
            for v in cl {
                for element in v.split(|&b| b == b',') {
                    assert_eq!(decimal(trim(element)), Some(n), "Content-Length {v:?}");
                }
            }
        }
        RequestBody::Chunked => {
            assert!(te > 0 && cl.is_empty() && h.version == Version::Http11);
            assert!(
                last_is_chunked(buf, &h.headers),
                "chunked framing without chunked last"
            );
        }
    }
    if has_token(buf, &h.headers, "connection", "close") {
        assert!(!h.keep_alive, "Connection: close ignored");
    }
    if h.upgrade {
        assert!(h.version == Version::Http11 && count(buf, &h.headers, "upgrade") > 0);
    }
}

/// `http::head::parse_response`, for a GET and for a HEAD: the same prefix and limit
/// properties as requests; bodies follow RFC 9112 6.3, and a response whose framing is
/// suspect never leaves the connection reusable.
pub fn response_head(data: &[u8]) {
    let get = response_head_for(data, false);
    let head = response_head_for(data, true);
    // Whether the request was HEAD changes the body, never where the head ends.
    if let (Some(get), Some(head)) = (get, head) {
        assert_eq!(get, head);
    }
}

/// Checks one parse; the head's length and status when it was accepted.
fn response_head_for(data: &[u8], was_head: bool) -> Option<(usize, u16)> {
    let h = match head::parse_response(data, was_head, MAX_HEAD) {
        Ok(Some(h)) => h,
        Ok(None) => {
            assert!(data.len() <= MAX_HEAD, "partial beyond the limit");
            return None;
        }
        Err(e) => {
            assert!(matches!(e.status(), 400 | 431 | 501));
            return None;
        }
    };
    assert!(h.len <= data.len() && h.len <= MAX_HEAD);
    let buf = &data[..h.len];
    assert!(buf.ends_with(b"\n"));
    let alone = head::parse_response(buf, was_head, MAX_HEAD);
    assert_eq!(format!("{alone:?}"), format!("{:?}", Ok::<_, ()>(Some(&h))));
    for cut in prefixes(h.len) {
        let partial = head::parse_response(&buf[..cut], was_head, MAX_HEAD);
        assert!(matches!(partial, Ok(None)), "prefix {cut}: {partial:?}");
    }
    let tight = head::parse_response(data, was_head, h.len - 1);
    assert_eq!(tight.err(), Some(HeadError::TooLarge));
    assert!((100..1000).contains(&h.status));
    assert!(h.reason(buf).iter().all(|&b| b != b'\r' && b != b'\n'));
    check_headers(buf, &h.headers);
    check_response_body(buf, &h, was_head);
    Some((h.len, h.status))
}

fn check_response_body(buf: &[u8], h: &head::ResponseHead, was_head: bool) {
    let no_body = was_head || h.status < 200 || h.status == 204 || h.status == 304;
    let te = count(buf, &h.headers, "transfer-encoding");
    let cl = values(buf, &h.headers, "content-length");
    match h.body {
        ResponseBody::None => assert!(no_body),
        ResponseBody::Length(n) => {
            assert!(!no_body && te == 0);
            // A list of equal values is one length (RFC 9110 8.6): `5, 5` is 5.
            let mut elements = cl.iter().flat_map(|v| v.split(|&b| b == b','));
            assert!(elements.all(|e| decimal(trim(e)) == Some(n)), "{cl:?}");
        }
        ResponseBody::Chunked => {
            assert!(!no_body);
            assert!(
                last_is_chunked(buf, &h.headers),
                "chunked framing without chunked last"
            );
            if !cl.is_empty() || h.version == Version::Http10 {
                assert!(!h.keep_alive, "suspect chunked framing left reusable");
            }
        }
        ResponseBody::Eof => assert!(!no_body && !h.keep_alive, "EOF body left reusable"),
    }
    if has_token(buf, &h.headers, "connection", "close") {
        assert!(!h.keep_alive, "Connection: close ignored");
    }
}

/// Names are tokens, values hold no CR, LF or NUL, ranges are in order inside the head, and
/// the framing and connection headers are hop-by-hop while Host is not.
fn check_headers(buf: &[u8], headers: &[HeaderPos]) {
    assert!(headers.len() <= MAX_HEADERS);
    let mut end = 0;
    for h in headers {
        assert!(end <= h.name.start && h.name.end <= h.value.start && h.value.end <= buf.len());
        end = h.value.end;
        let (name, value) = (&buf[h.name.clone()], &buf[h.value.clone()]);
        assert!(
            !name.is_empty() && name.iter().all(|&b| is_tchar(b)),
            "{name:?}"
        );
        assert!(
            !value.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0)),
            "{value:?}"
        );
        let lower = name.to_ascii_lowercase();
        let hop_by_name: &[&[u8]] = &[
            b"connection",
            b"keep-alive",
            b"te",
            b"trailer",
            b"upgrade",
            b"proxy-connection",
            b"transfer-encoding",
            b"content-length",
            b"expect",
        ];
        if hop_by_name.contains(&lower.as_slice()) {
            assert!(h.hop, "{name:?} not hop-by-hop");
        }
        if lower == b"host" {
            assert!(!h.hop, "Host dropped");
        }
    }
}

// ---- the differential target ----

/// How a request body is framed, derived from httparse's header list alone (RFC 9112 6.3).
#[derive(Debug, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    /// The RFC says the request is invalid (or its length cannot be determined).
    Invalid,
}

/// Feeds the same bytes to `http::head::parse_request` and to httparse used directly: what
/// ringway accepts, httparse must frame identically (method, target, version, header list,
/// head length, and the body framing RFC 9112 6.3 gives for those headers). Ringway may
/// refuse more; it may never accept what httparse refuses.
pub fn differential(data: &[u8]) {
    let limits = HeadLimits {
        max_header_size: MAX_HEAD,
    };
    let ours = head::parse_request(data, limits);
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut theirs = httparse::Request::new(&mut slots);
    let status = theirs.parse(data);
    let h = match ours {
        Ok(Some(h)) => h,
        Ok(None) => {
            assert!(
                matches!(status, Ok(httparse::Status::Partial)),
                "{status:?}"
            );
            return;
        }
        Err(_) => return,
    };
    let Ok(httparse::Status::Complete(len)) = status else {
        panic!("ringway accepted a head httparse does not: {status:?}");
    };
    assert_eq!(h.len, len, "head length");
    assert_eq!(h.method(data), theirs.method.unwrap_or("").as_bytes());
    assert_eq!(h.target(data), theirs.path.unwrap_or("").as_bytes());
    let minor = match h.version {
        Version::Http10 => 0,
        Version::Http11 => 1,
    };
    assert_eq!(Some(minor), theirs.version, "version");
    let ours: Vec<(&[u8], &[u8])> = h
        .headers
        .iter()
        .map(|p| (&data[p.name.clone()], &data[p.value.clone()]))
        .collect();
    let theirs: Vec<(&[u8], &[u8])> = theirs
        .headers
        .iter()
        .map(|x| (x.name.as_bytes(), x.value))
        .collect();
    assert_eq!(ours, theirs, "header list");
    let framing = match h.body {
        RequestBody::None => Framing::None,
        RequestBody::Length(n) => Framing::Length(n),
        RequestBody::Chunked => Framing::Chunked,
    };
    assert_eq!(framing, reference_framing(&theirs), "body framing");
}

/// RFC 9112 6.3 for a request, written independently of `http::head`: Transfer-Encoding
/// wins and must end in `chunked`; otherwise every Content-Length element must be the same
/// number (RFC 9110 8.6); otherwise no body.
fn reference_framing(headers: &[(&[u8], &[u8])]) -> Framing {
    let named = |n: &'static str| {
        headers
            .iter()
            .filter(move |(name, _)| name.eq_ignore_ascii_case(n.as_bytes()))
            .map(|(_, v)| *v)
    };
    let codings: Vec<&[u8]> = named("transfer-encoding")
        .flat_map(|v| v.split(|&b| b == b','))
        .map(trim)
        .filter(|c| !c.is_empty())
        .collect();
    if named("transfer-encoding").next().is_some() {
        return match codings.last() {
            Some(c) if c.eq_ignore_ascii_case(b"chunked") => Framing::Chunked,
            _ => Framing::Invalid,
        };
    }
    let mut length = None;
    for element in named("content-length").flat_map(|v| v.split(|&b| b == b',')) {
        match (decimal(trim(element)), length) {
            (None, _) => return Framing::Invalid,
            (Some(n), Some(prev)) if n != prev => return Framing::Invalid,
            (n, _) => length = n,
        }
    }
    length.map_or(Framing::None, Framing::Length)
}

// ---- chunked bodies ----

/// What decoding one input produced.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    consumed: usize,
    done: bool,
    data: Vec<u8>,
    error: Option<BodyError>,
}

/// `http::body::ChunkedDecoder`: fed at once, byte by byte, or in uneven pieces it consumes,
/// yields and refuses exactly the same; a finished body re-encoded decodes to the same data.
pub fn chunked(data: &[u8]) {
    let whole = decode_pieces(data, &mut std::iter::repeat(data.len().max(1)));
    let bytewise = decode_pieces(data, &mut std::iter::repeat(1));
    assert_eq!(whole, bytewise, "at once vs byte by byte");
    let mut rng = XorShift::seeded(data);
    let uneven = decode_pieces(data, &mut std::iter::from_fn(|| Some(1 + rng.below(17))));
    assert_eq!(whole, uneven, "at once vs uneven pieces");
    if whole.error.is_none() && !whole.done {
        assert_eq!(
            whole.consumed,
            data.len(),
            "stopped early without finishing"
        );
    }
    if whole.done {
        let mut again = Vec::new();
        if !whole.data.is_empty() {
            chunk_header(whole.data.len(), &mut again);
            again.extend_from_slice(&whole.data);
            again.extend_from_slice(b"\r\n");
        }
        again.extend_from_slice(LAST_CHUNK);
        let back = decode_pieces(&again, &mut std::iter::repeat(again.len()));
        assert!(back.done && back.error.is_none() && back.consumed == again.len());
        assert_eq!(back.data, whole.data, "re-encoded body decodes differently");
    }
}

/// Decodes `input` in pieces of the sizes `sizes` gives, checking each call's contract.
fn decode_pieces(input: &[u8], sizes: &mut dyn Iterator<Item = usize>) -> Outcome {
    let mut decoder = ChunkedDecoder::new();
    let mut out = Outcome {
        consumed: 0,
        done: false,
        data: Vec::new(),
        error: None,
    };
    let mut ranges = Vec::new();
    while out.consumed < input.len() {
        let size = sizes.next().unwrap_or(1);
        let piece = &input[out.consumed..input.len().min(out.consumed + size)];
        ranges.clear();
        match decoder.decode(piece, &mut ranges) {
            Ok(d) => {
                assert!(d.consumed <= piece.len() && (d.done || d.consumed == piece.len()));
                assert_eq!(d.done, decoder.is_done());
                let mut end = 0;
                for r in &ranges {
                    assert!(
                        end <= r.start && r.start < r.end && r.end <= d.consumed,
                        "{r:?}"
                    );
                    end = r.end;
                    out.data.extend_from_slice(&piece[r.clone()]);
                }
                out.consumed += d.consumed;
                out.done = d.done;
                if d.done {
                    // A finished body takes nothing more.
                    let more = decoder.decode(&input[out.consumed..], &mut ranges);
                    assert_eq!(more.map(|d| (d.consumed, d.done)), Ok((0, true)));
                    break;
                }
            }
            Err(e) => {
                // A failed decoder stays failed with the same reason.
                assert_eq!(decoder.decode(b"0\r\n\r\n", &mut ranges), Err(e));
                // Where the error falls and what data came before it depend on the split
                // (one call's data is lost with its error); the reason does not.
                return Outcome {
                    consumed: 0,
                    done: false,
                    data: Vec::new(),
                    error: Some(e),
                };
            }
        }
    }
    out
}

// ---- JSON body peeking ----

/// `http::model::request_model` and `http::prompt_key::prompt_key`: results lie inside the
/// body, are decided by the bytes up to their end (the prefix kept for replay may be cut
/// anywhere after), and, on a body serde_json reads as an object, agree with what serde_json
/// finds there.
pub fn json_peek(body: &[u8]) {
    let reference = reference_object(body);
    let model = request_model(body);
    if let Some(r) = &model {
        assert!(r.start >= 1 && r.end < body.len(), "{r:?}");
        assert!(body[r.start - 1] == b'"' && body[r.end] == b'"');
        assert!(r.len() <= MAX_MODEL_LEN && body[r.clone()].iter().all(|&b| b >= 0x20));
        assert_eq!(
            request_model(&body[..r.end + 1]),
            model,
            "needs bytes after it"
        );
    }
    if let Some(entries) = &reference {
        let expected = entries.iter().find_map(|(k, v)| match v {
            Json::Str(s) if k == "model" => Some(s.as_bytes()),
            _ => None,
        });
        let expected = expected.filter(|s| s.len() <= MAX_MODEL_LEN);
        assert_eq!(
            model.map(|r| &body[r]),
            expected,
            "model differs from serde_json"
        );
    }
    for prefix in [0, 1, 16, 256, usize::MAX] {
        let Some(r) = prompt_key(body, prefix) else {
            if let Some(entries) = &reference {
                assert_eq!(reference_prompt(entries, prefix), None, "prompt key missed");
            }
            continue;
        };
        assert!(r.start <= r.end && r.end <= body.len(), "{r:?}");
        let cut = body.len().min(r.end + 1);
        assert_eq!(
            prompt_key(&body[..cut], prefix),
            Some(r.clone()),
            "needs more"
        );
        if let Some(entries) = &reference {
            let expected = reference_prompt(entries, prefix);
            match expected {
                Some(Prompt::Text(text)) => assert_eq!(&body[r], text),
                Some(Prompt::Turns(n)) => {
                    // The key is the messages array up to and including its first user turn.
                    let mut array = body[r].to_vec();
                    array.push(b']');
                    let turns = serde_json::from_slice::<Json>(&array);
                    assert!(
                        matches!(turns, Ok(Json::Arr(t)) if t.len() == n),
                        "{array:?}"
                    );
                }
                None => panic!("prompt key {r:?} where serde_json finds none"),
            }
        }
    }
}

/// The key `prompt_key` should find, from serde_json's reading of the body.
#[derive(Debug, PartialEq, Eq)]
enum Prompt<'a> {
    /// The bytes of the `prompt` string it starts with.
    Text(&'a [u8]),
    /// The number of messages up to and including the first user turn.
    Turns(usize),
}

fn reference_prompt(entries: &[(String, Json)], prefix: usize) -> Option<Prompt<'_>> {
    let decider = entries.iter().find(|(k, v)| match v {
        Json::Arr(_) => k == "messages",
        Json::Str(_) => k == "prompt",
        _ => false,
    });
    match decider {
        Some((_, Json::Str(s))) => Some(Prompt::Text(&s.as_bytes()[..s.len().min(prefix)])),
        Some((_, Json::Arr(turns))) => turns
            .iter()
            .position(|t| match t {
                // The last string `role` counts, as for the scanner.
                Json::Obj(fields) => fields
                    .iter()
                    .rev()
                    .find_map(|(k, v)| match v {
                        Json::Str(role) if k == "role" => Some(role == "user"),
                        _ => None,
                    })
                    .unwrap_or(false),
                _ => false,
            })
            .map(|i| Prompt::Turns(i + 1)),
        _ => None,
    }
}

/// The body's top-level members in order, when serde_json reads it as an object. Bodies with
/// a backslash are left out: the scanners return raw JSON text, so only escape-free text
/// compares byte for byte (and `\u` escapes can spell `model` differently).
fn reference_object(body: &[u8]) -> Option<Vec<(String, Json)>> {
    if body.contains(&b'\\') {
        return None;
    }
    match serde_json::from_slice::<Json>(body) {
        Ok(Json::Obj(entries)) => Some(entries),
        _ => None,
    }
}

/// A JSON value that keeps object members in order and duplicates (serde_json's `Value`
/// keeps neither), which is what the scanners see.
#[derive(Debug)]
enum Json {
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
    Other,
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Json, E> {
        Ok(Json::Str(s.to_owned()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Arr(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut members = Vec::new();
        while let Some(member) = map.next_entry()? {
            members.push(member);
        }
        Ok(Json::Obj(members))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Json, E> {
        Ok(Json::Other)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Json, E> {
        Ok(Json::Other)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Json, E> {
        Ok(Json::Other)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Json, E> {
        Ok(Json::Other)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Json, E> {
        Ok(Json::Other)
    }
}

// ---- the PROXY header ----

/// `upstream::proxy_header::write`: for two addresses built from the input, the v1 line and
/// the v2 block parse back (with a reader written from HAProxy's specification) to the same
/// addresses and ports, in one family; `Off` writes nothing; output is only appended.
pub fn proxy_header(data: &[u8]) {
    let mut bytes = [0u8; 38];
    let n = data.len().min(bytes.len());
    bytes[..n].copy_from_slice(&data[..n]);
    let client = address(&bytes[..19]);
    let listener = address(&bytes[19..]);
    let (src, dst) = expected_pair(client, listener);
    for version in [ProxyProtocol::Off, ProxyProtocol::V1, ProxyProtocol::V2] {
        let mut out = vec![0xAA];
        proxy_header::write(version, client, listener, &mut out);
        assert_eq!(out[0], 0xAA, "write must append");
        let header = &out[1..];
        let parsed = match version {
            ProxyProtocol::Off => {
                assert!(header.is_empty(), "Off wrote {header:?}");
                continue;
            }
            ProxyProtocol::V1 => read_v1(header),
            ProxyProtocol::V2 => read_v2(header),
        };
        assert_eq!(parsed, (src, dst), "{version:?} header {header:?}");
    }
}

/// 19 bytes: a kind (IPv4, IPv6, or IPv4-mapped IPv6), 16 address bytes, a port.
fn address(b: &[u8]) -> SocketAddr {
    let v4 = Ipv4Addr::new(b[1], b[2], b[3], b[4]);
    let mut v6 = [0u8; 16];
    v6.copy_from_slice(&b[1..17]);
    let ip = match b[0] % 3 {
        0 => IpAddr::V4(v4),
        1 => IpAddr::V6(Ipv6Addr::from(v6)),
        _ => IpAddr::V6(v4.to_ipv6_mapped()),
    };
    SocketAddr::new(ip, u16::from_be_bytes([b[17], b[18]]))
}

/// What the header must say: a mapped address is the IPv4 one it is; when the two still
/// differ in family, both are IPv6.
fn expected_pair(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    let unmap = |s: SocketAddr| match s.ip() {
        IpAddr::V6(v6) => match v6.octets() {
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, w, x, y, z] => {
                SocketAddr::new(IpAddr::V4(Ipv4Addr::new(w, x, y, z)), s.port())
            }
            _ => s,
        },
        IpAddr::V4(_) => s,
    };
    let (a, b) = (unmap(a), unmap(b));
    if a.is_ipv4() == b.is_ipv4() {
        return (a, b);
    }
    let map = |s: SocketAddr| match s.ip() {
        IpAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), s.port()),
        IpAddr::V6(_) => s,
    };
    (map(a), map(b))
}

/// `PROXY TCP4|TCP6 <src> <dst> <sport> <dport>\r\n`, at most 107 bytes, ports without
/// leading zeros.
fn read_v1(header: &[u8]) -> (SocketAddr, SocketAddr) {
    assert!(header.len() <= V1_MAX, "v1 header longer than 107 bytes");
    let line = std::str::from_utf8(header).expect("v1 header is ASCII");
    let line = line.strip_suffix("\r\n").expect("v1 header ends in CRLF");
    assert!(!line.contains(['\r', '\n']));
    let fields: Vec<&str> = line.split(' ').collect();
    let [proxy, proto, src, dst, sport, dport] = fields[..] else {
        panic!("v1 header has {} fields", fields.len());
    };
    assert_eq!(proxy, "PROXY");
    let ip = |s: &str| -> IpAddr {
        match proto {
            "TCP4" => IpAddr::V4(s.parse().expect("TCP4 address")),
            "TCP6" => IpAddr::V6(s.parse().expect("TCP6 address")),
            _ => panic!("v1 protocol {proto:?}"),
        }
    };
    let port = |s: &str| -> u16 {
        let p: u16 = s.parse().expect("v1 port");
        assert_eq!(p.to_string(), s, "v1 port with leading zeros");
        p
    };
    (
        SocketAddr::new(ip(src), port(sport)),
        SocketAddr::new(ip(dst), port(dport)),
    )
}

/// Signature, version 2 + PROXY, TCP over IPv4 (12 address bytes) or IPv6 (36), then the
/// addresses and ports, nothing after.
fn read_v2(header: &[u8]) -> (SocketAddr, SocketAddr) {
    assert!(header.len() >= 16 && header[..12] == V2_SIGNATURE);
    assert_eq!(header[12], 0x21, "version 2, command PROXY");
    let len = usize::from(u16::from_be_bytes([header[14], header[15]]));
    assert_eq!(header.len(), 16 + len, "v2 length field");
    let a = &header[16..];
    let port = |i: usize| u16::from_be_bytes([a[i], a[i + 1]]);
    match (header[13], len) {
        (0x11, 12) => {
            let ip = |i: usize| IpAddr::V4(Ipv4Addr::new(a[i], a[i + 1], a[i + 2], a[i + 3]));
            (
                SocketAddr::new(ip(0), port(8)),
                SocketAddr::new(ip(4), port(10)),
            )
        }
        (0x21, 36) => {
            let ip = |i: usize| {
                let mut o = [0u8; 16];
                o.copy_from_slice(&a[i..i + 16]);
                IpAddr::V6(Ipv6Addr::from(o))
            };
            (
                SocketAddr::new(ip(0), port(32)),
                SocketAddr::new(ip(16), port(34)),
            )
        }
        other => panic!("v2 family/length {other:?}"),
    }
}

// ---- the configuration ----

/// `config::load_str` (names are never looked up): loading the same text twice gives the
/// same errors; errors name the file and a line inside it, in order; a loaded snapshot is
/// whole (references in range, names and addresses unique, every group with a primary
/// server) and stays the same when a comment is appended. (Two loads per input: a load is
/// slow under the address sanitizer.)
pub fn config(data: &[u8]) {
    crate::config::NO_LOOKUPS.with(|n| n.set(true));
    let text = String::from_utf8_lossy(data);
    let path = Path::new("fuzz.toml");
    match crate::config::load_str(&text, path, 7) {
        Err(errors) => {
            let again = crate::config::load_str(&text, path, 7).err();
            assert_eq!(again.as_ref(), Some(&errors), "a second load differs");
            let lines = text.lines().count() + 1;
            let mut last = (false, 0, 0);
            for e in &errors {
                assert_eq!(e.file, "fuzz.toml");
                assert!(e.line <= lines && !e.message.is_empty(), "{e}");
                let at = (e.line == 0, e.line, e.column);
                assert!(at >= last, "errors out of order");
                last = at;
            }
            assert!(!errors.is_empty());
        }
        Ok(snapshot) => {
            check_snapshot(&snapshot);
            let more = format!("{text}\n# appended\n");
            let again = crate::config::load_str(&more, path, 7);
            let again = again.unwrap_or_else(|e| panic!("a comment broke the config: {e:?}"));
            assert_eq!(outline(&snapshot), outline(&again), "a comment changed it");
        }
    }
}

fn check_snapshot(s: &Snapshot) {
    assert_eq!(
        (s.generation, s.source.as_path()),
        (7, Path::new("fuzz.toml"))
    );
    assert!(s.runtime.workers >= 1 && !s.listeners.is_empty());
    for (i, l) in s.listeners.iter().enumerate() {
        assert!(l.group < s.groups.len() && l.routes.iter().all(|r| r.group < s.groups.len()));
        for other in &s.listeners[..i] {
            assert!(
                other.name != l.name && other.bind != l.bind,
                "duplicate listener"
            );
        }
    }
    for g in &s.groups {
        let servers = g.peers.servers();
        assert!(
            servers.iter().any(|s| !s.backup),
            "group {} has no primary",
            g.name
        );
    }
}

/// What two loads of one configuration must agree on.
fn outline(s: &Snapshot) -> String {
    let mut out = format!("{:?} {:?}\n", s.runtime.workers, s.runtime.max_connections);
    for l in &s.listeners {
        let routes: Vec<_> = l
            .routes
            .iter()
            .map(|r| (&r.path_prefix, &r.host, r.group))
            .collect();
        out += &format!(
            "{} {} {:?} {} {routes:?}\n",
            l.name, l.bind, l.mode, l.group
        );
    }
    for g in &s.groups {
        let servers: Vec<_> = g
            .peers
            .servers()
            .iter()
            .map(|s| (s.addr, s.weight))
            .collect();
        out += &format!("{} {servers:?}\n", g.name);
    }
    out
}

// ---- helpers ----

/// A few prefix lengths shorter than `len` (all of them would make each run quadratic).
fn prefixes(len: usize) -> impl Iterator<Item = usize> {
    [0, 1, len / 2, len.saturating_sub(2), len.saturating_sub(1)]
        .into_iter()
        .filter(move |&cut| cut < len)
}

fn inside(a: &Range<usize>, b: &Range<usize>) -> bool {
    b.start <= a.start && a.end <= b.end
}

fn bare_lf(buf: &[u8]) -> bool {
    buf.iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || buf[i - 1] != b'\r'))
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

fn decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

fn values<'b>(buf: &'b [u8], headers: &[HeaderPos], name: &str) -> Vec<&'b [u8]> {
    headers
        .iter()
        .filter(|h| buf[h.name.clone()].eq_ignore_ascii_case(name.as_bytes()))
        .map(|h| &buf[h.value.clone()])
        .collect()
}

fn count(buf: &[u8], headers: &[HeaderPos], name: &str) -> usize {
    values(buf, headers, name).len()
}

fn has_token(buf: &[u8], headers: &[HeaderPos], name: &str, token: &str) -> bool {
    values(buf, headers, name)
        .iter()
        .flat_map(|v| v.split(|&b| b == b','))
        .any(|t| trim(t).eq_ignore_ascii_case(token.as_bytes()))
}

/// Whether the last non-empty element of all Transfer-Encoding lines together is `chunked`.
fn last_is_chunked(buf: &[u8], headers: &[HeaderPos]) -> bool {
    values(buf, headers, "transfer-encoding")
        .iter()
        .flat_map(|v| v.split(|&b| b == b','))
        .map(trim)
        .rfind(|c| !c.is_empty())
        .is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"))
}

/// xorshift64, seeded from the input so a crash reproduces from the input alone.
struct XorShift(u64);

impl XorShift {
    fn seeded(data: &[u8]) -> Self {
        let seed = data.iter().fold(0x9e37_79b9_7f4a_7c15u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        XorShift(seed | 1)
    }

    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    //! The oracles the targets compare against must themselves be right.
    use super::*;

    #[test]
    fn reference_framing_follows_rfc_9112() {
        let h = |list: &[(&'static str, &'static str)]| -> Vec<(&[u8], &[u8])> {
            list.iter()
                .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
                .collect()
        };
        assert_eq!(reference_framing(&h(&[("Host", "a")])), Framing::None);
        assert_eq!(
            reference_framing(&h(&[("content-length", "5, 5")])),
            Framing::Length(5)
        );
        assert_eq!(
            reference_framing(&h(&[("Content-Length", "5"), ("Content-Length", "6")])),
            Framing::Invalid
        );
        assert_eq!(
            reference_framing(&h(&[("Content-Length", "")])),
            Framing::Invalid
        );
        assert_eq!(
            reference_framing(&h(&[("Transfer-Encoding", "gzip, chunked")])),
            Framing::Chunked
        );
        assert_eq!(
            reference_framing(&h(&[("Transfer-Encoding", "chunked, identity")])),
            Framing::Invalid
        );
        assert_eq!(
            reference_framing(&h(&[("Transfer-Encoding", "")])),
            Framing::Invalid
        );
    }

    #[test]
    fn proxy_header_readers_refuse_what_the_spec_does() {
        let a: SocketAddr = "192.0.2.7:51234".parse().unwrap();
        let b: SocketAddr = "10.0.0.1:443".parse().unwrap();
        assert_eq!(
            read_v1(b"PROXY TCP4 192.0.2.7 10.0.0.1 51234 443\r\n"),
            (a, b)
        );
        for bad in [
            &b"PROXY TCP4 192.0.2.7 10.0.0.1 51234 0443\r\n"[..],
            b"PROXY TCP4 192.0.2.7 10.0.0.1 51234 443\n",
            b"PROXY TCP6 192.0.2.7 10.0.0.1 51234 443\r\n",
            b"PROXY TCP4 192.0.2.7  10.0.0.1 51234 443\r\n",
        ] {
            assert!(
                std::panic::catch_unwind(|| read_v1(bad)).is_err(),
                "{bad:?}"
            );
        }
        let mut v2 = V2_SIGNATURE.to_vec();
        v2.extend_from_slice(&[0x21, 0x11, 0, 12, 192, 0, 2, 7, 10, 0, 0, 1]);
        v2.extend_from_slice(&[0xc8, 0x22, 0x01, 0xbb]);
        assert_eq!(read_v2(&v2), (a, b));
        v2.push(0);
        assert!(std::panic::catch_unwind(|| read_v2(&v2)).is_err());
    }

    #[test]
    fn mixed_families_are_written_as_ipv6() {
        let v4: SocketAddr = "192.0.2.7:1".parse().unwrap();
        let v6: SocketAddr = "[2001:db8::1]:2".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:10.0.0.1]:3".parse().unwrap();
        let (s, d) = expected_pair(v4, v6);
        assert_eq!((s.to_string(), d), ("[::ffff:192.0.2.7]:1".to_string(), v6));
        let (s, d) = expected_pair(mapped, v4);
        assert_eq!((s.to_string(), d), ("10.0.0.1:3".to_string(), v4));
    }

    #[test]
    fn serde_reference_keeps_order_and_duplicates() {
        let body = br#"{"model":1,"model":"b","messages":[{"role":"user","role":"system"},{"role":"user"}]}"#;
        let entries = reference_object(body).unwrap();
        let keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["model", "model", "messages"]);
        // The last `role` of the first message is not `user`: the key ends at the second.
        assert_eq!(reference_prompt(&entries, 16), Some(Prompt::Turns(2)));
        json_peek(body);
        assert_eq!(
            reference_object(br#"{"model":"a\"b"}"#).map(|e| e.len()),
            None
        );
    }
}
