//! Seeded mutation test for the parsers: valid requests, responses and chunked bodies are
//! mutated, truncated and spliced; nothing may panic and every accepted head or body must
//! satisfy its invariants. Deterministic (fixed seed, no external crates), so a failure
//! reproduces; the failing input is printed.

use super::*;
use crate::http::body::{BodyError, ChunkedDecoder};

const ITERATIONS: usize = 50_000;

/// xorshift64: tiny, deterministic, good enough to drive mutations.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const REQUESTS: &[&[u8]] = &[
    b"GET / HTTP/1.1\r\nHost: localhost:1700\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n",
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"a\":\"b\"}\r\n",
    b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"GET /chat HTTP/1.1\r\nHost: [::1]:80\r\nConnection: Upgrade, X-Hop\r\nUpgrade: websocket\r\nX-Hop: 1\r\n\r\n",
    b"GET http://example.com:8080/x?y=1 HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n",
    b"OPTIONS * HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.0\r\n\r\n",
];

const RESPONSES: &[&[u8]] = &[
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n6\r\ndata:1\r\n0\r\n\r\n",
    b"HTTP/1.0 404 Not Found\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 204 No Content\r\nConnection: X-A\r\nX-A: 1\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
    b"HTTP/1.1 502\nServer: s\n\n",
];

const CHUNKED: &[&[u8]] = &[
    b"5\r\nhello\r\n0\r\n\r\n",
    b"3;ext=1\r\nabc\r\nA\r\n0123456789\r\n0\r\nX-Sum: 9\r\n\r\nGET / HTTP/1.1\r\n",
    b"000010 \t;x\r\n0123456789abcdef\r\n0\r\n\r\n",
    b"0\r\n\r\n",
];

/// Fragments that steer mutations towards the framing rules.
const SNIPPETS: &[&[u8]] = &[
    b"\r\n",
    b"\r\n\r\n",
    b"Content-Length: 5\r\n",
    b"Content-Length: 5, 6\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: gzip, chunked\r\n",
    b"Host: b\r\n",
    b"Connection: close, host\r\n",
    b" folded\r\n",
    b"http://",
    b"ffffffffffffffff",
    b";",
    b"0\r\n\r\n",
    b"HTTP/1.0",
];

const BYTES: &[u8] = b"\r\n \t:,;0aF\0\x7f\xff/?*@[]";

fn mutate(rng: &mut XorShift, corpus: &[&[u8]]) -> Vec<u8> {
    let mut v = corpus[rng.below(corpus.len())].to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(7) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = if rng.below(2) == 0 {
                    BYTES[rng.below(BYTES.len())]
                } else {
                    rng.next() as u8
                };
            }
            1 => v.insert(at, BYTES[rng.below(BYTES.len())]),
            2 => {
                let end = (at + 1 + rng.below(8)).min(v.len());
                v.drain(at.min(end)..end);
            }
            3 => v.truncate(at),
            4 => {
                let other = corpus[rng.below(corpus.len())];
                v.truncate(at);
                v.extend_from_slice(&other[rng.below(other.len())..]);
            }
            5 => {
                let end = (at + rng.below(16)).min(v.len());
                let piece = v[at.min(end)..end].to_vec();
                let to = rng.below(v.len() + 1);
                v.splice(to..to, piece);
            }
            _ => {
                let s = SNIPPETS[rng.below(SNIPPETS.len())];
                v.splice(at..at, s.iter().copied());
            }
        }
    }
    v
}

fn inside(r: &Range<usize>, len: usize) -> bool {
    r.start <= r.end && r.end <= len
}

fn check_request(buf: &[u8], limits: HeadLimits) {
    let show = || String::from_utf8_lossy(buf).into_owned();
    let head = match parse_request(buf, limits) {
        Ok(Some(head)) => head,
        Ok(None) => return assert!(buf.len() <= limits.max_header_size, "{:?}", show()),
        Err(_) => return,
    };
    let len = head.len;
    assert!(
        len <= buf.len() && len <= limits.max_header_size,
        "{:?}",
        show()
    );
    let mut ranges = vec![&head.method, &head.target, &head.path];
    ranges.extend(head.host.as_ref());
    ranges.extend(head.headers.iter().flat_map(|h| [&h.name, &h.value]));
    assert!(
        ranges.iter().all(|r| inside(r, len)),
        "{head:?} {:?}",
        show()
    );
    assert!(head.headers.len() <= MAX_HEADERS);
    assert!(!head.method(buf).is_empty());
    let path = head.path(buf);
    assert!(
        path.starts_with(b"/") || path == b"*",
        "{head:?} {:?}",
        show()
    );
    assert!(head.method(buf) != b"CONNECT");
    if head.version == Version::Http11 {
        assert!(head.header(buf, "host").is_some(), "{:?}", show());
    }
    match head.body {
        RequestBody::Chunked => {
            assert_eq!(head.version, Version::Http11);
            assert!(head.header(buf, "content-length").is_none(), "{:?}", show());
        }
        RequestBody::Length(_) => assert!(head.header(buf, "transfer-encoding").is_none()),
        RequestBody::None => assert!(head.header(buf, "content-length").is_none()),
    }
    assert!(
        !buf[..len]
            .windows(2)
            .any(|w| w[1] == b'\n' && w[0] != b'\r')
            && buf[0] != b'\n'
    );
    // The head is self-delimiting: alone it parses the same, and any prefix is incomplete.
    let again = parse_request(&buf[..len], limits)
        .expect("same bytes")
        .expect("complete");
    assert_eq!(format!("{again:?}"), format!("{head:?}"));
    let cut = len / 2;
    assert!(
        matches!(parse_request(&buf[..cut], limits), Ok(None)),
        "{:?}",
        show()
    );
}

fn check_response(buf: &[u8], request_was_head: bool, max: usize) {
    let show = || String::from_utf8_lossy(buf).into_owned();
    let head = match parse_response(buf, request_was_head, max) {
        Ok(Some(head)) => head,
        Ok(None) => return assert!(buf.len() <= max, "{:?}", show()),
        Err(_) => return,
    };
    let len = head.len;
    assert!(len <= buf.len() && len <= max, "{:?}", show());
    assert!(inside(&head.reason, len), "{head:?} {:?}", show());
    assert!(
        head.headers
            .iter()
            .all(|h| inside(&h.name, len) && inside(&h.value, len))
    );
    assert!(head.headers.len() <= MAX_HEADERS);
    assert!((100..=999).contains(&head.status));
    if request_was_head || head.status < 200 || head.status == 204 || head.status == 304 {
        assert_eq!(head.body, ResponseBody::None);
    }
    if head.body == ResponseBody::Eof {
        assert!(!head.keep_alive);
    }
    let again = parse_response(&buf[..len], request_was_head, max)
        .expect("same")
        .expect("done");
    assert_eq!(format!("{again:?}"), format!("{head:?}"));
}

/// What a decoder made of some input: payload, bytes consumed, done — or the error.
type Outcome = Result<(Vec<u8>, usize, bool), BodyError>;

fn decode_pieces(input: &[u8], cuts: &[usize]) -> Outcome {
    let mut decoder = ChunkedDecoder::new();
    let (mut payload, mut consumed, mut start) = (Vec::new(), 0, 0);
    for &end in cuts.iter().chain([&input.len()]) {
        let piece = &input[start..end.max(start)];
        start = end.max(start);
        let mut ranges = Vec::new();
        let d = decoder.decode(piece, &mut ranges)?;
        assert!(d.consumed <= piece.len());
        assert!(d.done || d.consumed == piece.len());
        assert_eq!(d.done, decoder.is_done());
        let mut last_end = 0;
        for r in ranges {
            assert!(
                last_end <= r.start && r.start <= r.end && r.end <= d.consumed,
                "{r:?}"
            );
            last_end = r.end;
            payload.extend_from_slice(&piece[r]);
        }
        consumed += d.consumed;
    }
    Ok((payload, consumed, decoder.is_done()))
}

fn check_chunked(rng: &mut XorShift, input: &[u8]) {
    let whole = decode_pieces(input, &[]);
    let mut cuts = [rng.below(input.len() + 1), rng.below(input.len() + 1)];
    cuts.sort_unstable();
    let split = decode_pieces(input, &cuts);
    assert_eq!(
        whole.is_ok(),
        split.is_ok(),
        "{:?} cut at {cuts:?}",
        String::from_utf8_lossy(input)
    );
    if let (Ok(a), Ok(b)) = (&whole, &split) {
        assert_eq!(a, b, "{:?} cut at {cuts:?}", String::from_utf8_lossy(input));
        assert!(a.0.len() <= a.1 && a.1 <= input.len());
    }
}

#[test]
fn mutated_inputs_never_panic_and_accepted_heads_keep_their_invariants() {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let (mut requests_ok, mut responses_ok, mut bodies_ok) = (0, 0, 0);
    for _ in 0..ITERATIONS {
        let limits = HeadLimits {
            max_header_size: 64 + rng.below(256),
        };
        let request = mutate(&mut rng, REQUESTS);
        check_request(&request, limits);
        requests_ok += usize::from(matches!(parse_request(&request, limits), Ok(Some(_))));

        let response = mutate(&mut rng, RESPONSES);
        let was_head = rng.below(4) == 0;
        check_response(&response, was_head, 64 + rng.below(256));
        responses_ok += usize::from(matches!(
            parse_response(&response, was_head, 1024),
            Ok(Some(_))
        ));

        let body = mutate(&mut rng, CHUNKED);
        check_chunked(&mut rng, &body);
        bodies_ok += usize::from(decode_pieces(&body, &[]).is_ok_and(|(_, _, done)| done));
    }
    eprintln!("accepted: {requests_ok} requests, {responses_ok} responses, {bodies_ok} bodies");
    // The mutations must leave enough valid inputs for the invariants to be exercised.
    for (what, ok) in [
        ("requests", requests_ok),
        ("responses", responses_ok),
        ("bodies", bodies_ok),
    ] {
        assert!(ok > ITERATIONS / 50, "only {ok} {what} accepted");
    }
}
