//! Request smuggling probes, as wire transcripts: raw bytes to the real proxy, and what the
//! backend saw. A request ringway cannot frame unambiguously is answered (400, or 414 /
//! 431 / 501 where a limit or a coding says so), the connection closes after the answer,
//! and the backend never sees it. The tables below are the whole list; each probe carries
//! a smuggled `GET /smuggled` that must never reach the backend, whatever framing a
//! confused hop might have chosen.

use std::time::Duration;

use crate::support::*;

/// What a hop that framed the message differently would take for the next request.
const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n";

/// A POST with `headers` (each ending in CRLF) and `body`, then the smuggled request.
fn post(headers: &str, body: &str) -> Vec<u8> {
    format!("POST /probe HTTP/1.1\r\nHost: t\r\n{headers}\r\n{body}{SMUGGLED}").into_bytes()
}

/// A chunked POST with this raw body.
fn chunked(body: &str) -> Vec<u8> {
    post("Transfer-Encoding: chunked\r\n", body)
}

/// Transfer-Encoding spellings that must be refused (with the status), never forwarded.
const TE_PROBES: &[(&str, &str, u16)] = &[
    (
        "chunked then identity",
        "Transfer-Encoding: chunked, identity\r\n",
        400,
    ),
    ("xchunked", "Transfer-Encoding: xchunked\r\n", 400),
    ("chunkedx", "Transfer-Encoding: chunkedx\r\n", 400),
    ("leading comma", "Transfer-Encoding: ,chunked\r\n", 400),
    ("trailing comma", "Transfer-Encoding: chunked,\r\n", 400),
    (
        "empty element",
        "Transfer-Encoding: chunked, , chunked\r\n",
        400,
    ),
    (
        "chunked twice in one line",
        "Transfer-Encoding: chunked, chunked\r\n",
        400,
    ),
    (
        "duplicate TE headers",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
        400,
    ),
    (
        "chunked then empty TE",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: \r\n",
        400,
    ),
    (
        "empty TE then chunked",
        "Transfer-Encoding:\r\nTransfer-Encoding: chunked\r\n",
        400,
    ),
    (
        "chunked then identity header",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
        400,
    ),
    ("quoted chunked", "Transfer-Encoding: \"chunked\"\r\n", 400),
    (
        "chunked with a parameter",
        "Transfer-Encoding: chunked;q=1\r\n",
        400,
    ),
    (
        "vertical tab after chunked",
        "Transfer-Encoding: chunked\x0b\r\n",
        400,
    ),
    (
        "vertical tab before chunked",
        "Transfer-Encoding:\x0bchunked\r\n",
        400,
    ),
    (
        "form feed before chunked",
        "Transfer-Encoding: \x0cchunked\r\n",
        400,
    ),
    (
        "underscore name",
        "Transfer_Encoding: chunked\r\nContent-Length: 3\r\n",
        400,
    ),
    ("space before colon", "Transfer-Encoding : chunked\r\n", 400),
    ("folded value", "Transfer-Encoding:\r\n chunked\r\n", 400),
    (
        "another coding before chunked",
        "Transfer-Encoding: gzip, chunked\r\n",
        501,
    ),
    (
        "CL and TE",
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        400,
    ),
    (
        "TE and CL",
        "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
        400,
    ),
    (
        "TE and CL 0",
        "Transfer-Encoding: chunked\r\nContent-Length: 0\r\n",
        400,
    ),
    (
        "obfuscated TE and CL",
        "Transfer-Encoding: xchunked\r\nContent-Length: 5\r\n",
        400,
    ),
];

/// Content-Length values that must be refused.
const CL_PROBES: &[(&str, &str)] = &[
    ("plus sign", "Content-Length: +5\r\n"),
    ("minus sign", "Content-Length: -5\r\n"),
    ("hex", "Content-Length: 0x5\r\n"),
    ("space inside", "Content-Length: 1 0\r\n"),
    ("tab inside", "Content-Length: 1\t0\r\n"),
    ("decimal point", "Content-Length: 5.0\r\n"),
    ("exponent", "Content-Length: 5e0\r\n"),
    ("overflow", "Content-Length: 18446744073709551616\r\n"),
    (
        "long overflow",
        "Content-Length: 99999999999999999999999999\r\n",
    ),
    ("empty", "Content-Length: \r\n"),
    (
        "empty then real",
        "Content-Length:\r\nContent-Length: 5\r\n",
    ),
    (
        "real then empty",
        "Content-Length: 5\r\nContent-Length:\r\n",
    ),
    ("trailing comma", "Content-Length: 5,\r\n"),
    ("leading comma", "Content-Length: ,5\r\n"),
    ("differing list", "Content-Length: 5, 6\r\n"),
    (
        "differing headers",
        "Content-Length: 5\r\nContent-Length: 6\r\n",
    ),
    ("nbsp after", "Content-Length: 5\u{a0}\r\n"),
    ("vertical tab after", "Content-Length: 5\x0b\r\n"),
    ("NUL after", "Content-Length: 5\0\r\n"),
    ("space before colon", "Content-Length : 5\r\n"),
];

/// Chunked bodies that must be refused (the bad framing arrives with the head).
const CHUNK_PROBES: &[(&str, &str)] = &[
    ("0x size", "0x5\r\nhello\r\n0\r\n\r\n"),
    ("plus size", "+5\r\nhello\r\n0\r\n\r\n"),
    ("minus size", "-5\r\nhello\r\n0\r\n\r\n"),
    ("underscore in size", "1_0\r\n0123456789abcdef\r\n0\r\n\r\n"),
    ("space before size", " 5\r\nhello\r\n0\r\n\r\n"),
    ("tab before size", "\t5\r\nhello\r\n0\r\n\r\n"),
    ("space after size", "5 \r\nhello\r\n0\r\n\r\n"),
    ("space inside size", "1 0\r\n0123456789abcdef\r\n0\r\n\r\n"),
    ("empty size", "\r\nhello\r\n0\r\n\r\n"),
    ("non-hex size", "g\r\nhello\r\n0\r\n\r\n"),
    ("size overflow", "10000000000000000\r\nhello\r\n0\r\n\r\n"),
    (
        "size of 17 digits",
        "00000000000000005\r\nhello\r\n0\r\n\r\n",
    ),
    ("CR in extension", "5;a\rb\r\nhello\r\n0\r\n\r\n"),
    ("LF in extension", "5;a\nb\r\nhello\r\n0\r\n\r\n"),
    ("NUL in extension", "5;a\0b\r\nhello\r\n0\r\n\r\n"),
    ("bare LF after size", "5\nhello\r\n0\r\n\r\n"),
    ("bare LF after data", "5\r\nhello\n0\r\n\r\n"),
    ("bare LF after last chunk", "5\r\nhello\r\n0\n\r\n"),
    ("bare LF ending the body", "5\r\nhello\r\n0\r\n\n"),
    ("bare CR after size", "5\rhello\r\n0\r\n\r\n"),
    ("data longer than its size", "3\r\nhello\r\n0\r\n\r\n"),
    ("data shorter than its size", "7\r\nhello\r\n0\r\n\r\n"),
    ("no CRLF after data", "5\r\nhello0\r\n\r\n"),
    ("only CR after data", "5\r\nhello\r0\r\n\r\n"),
    ("NUL in trailer", "0\r\nX: a\0b\r\n\r\n"),
    ("folded trailer", "0\r\nX: a\r\n b\r\n\r\n"),
    ("trailer without colon", "0\r\nnocolon\r\n\r\n"),
    ("space before trailer colon", "0\r\nX : y\r\n\r\n"),
    ("empty trailer name", "0\r\n: y\r\n\r\n"),
    ("bare LF in trailer", "0\r\nX: y\n\r\n"),
];

/// Request lines and header sections that must be refused: (name, head, status).
fn head_probes() -> Vec<(String, Vec<u8>, u16)> {
    let mut probes: Vec<(String, Vec<u8>, u16)> = [
        ("bare LF line ends", "GET / HTTP/1.1\nHost: t\n\n"),
        (
            "bare LF after the request line",
            "GET / HTTP/1.1\nHost: t\r\n\r\n",
        ),
        ("bare LF ending the head", "GET / HTTP/1.1\r\nHost: t\r\n\n"),
        ("HTTP/1.32", "GET / HTTP/1.32\r\nHost: t\r\n\r\n"),
        ("HTTP/1.2", "GET / HTTP/1.2\r\nHost: t\r\n\r\n"),
        ("HTTP/2.0", "GET / HTTP/2.0\r\nHost: t\r\n\r\n"),
        ("lower-case version", "GET / http/1.1\r\nHost: t\r\n\r\n"),
        ("HTTP/0.9", "GET /\r\n\r\n"),
        ("HTTP/0.9 then headers", "GET /\r\nHost: t\r\n\r\n"),
        ("double space", "GET  / HTTP/1.1\r\nHost: t\r\n\r\n"),
        ("tab separator", "GET\t/ HTTP/1.1\r\nHost: t\r\n\r\n"),
        ("trailing space", "GET / HTTP/1.1 \r\nHost: t\r\n\r\n"),
        ("leading space", " GET / HTTP/1.1\r\nHost: t\r\n\r\n"),
        (
            "control byte in target",
            "GET /a\x01b HTTP/1.1\r\nHost: t\r\n\r\n",
        ),
        ("space in target", "GET /a b HTTP/1.1\r\nHost: t\r\n\r\n"),
        (
            "header without colon",
            "GET / HTTP/1.1\r\nHost: t\r\nX-No-Colon\r\n\r\n",
        ),
        (
            "header without colon, space",
            "GET / HTTP/1.1\r\nHost: t\r\nX No Colon\r\n\r\n",
        ),
        (
            "empty header name",
            "GET / HTTP/1.1\r\nHost: t\r\n: v\r\n\r\n",
        ),
        (
            "bracket in name",
            "GET / HTTP/1.1\r\nHost: t\r\nX(Y): v\r\n\r\n",
        ),
        (
            "slash in name",
            "GET / HTTP/1.1\r\nHost: t\r\nX/Y: v\r\n\r\n",
        ),
        (
            "DEL in name",
            "GET / HTTP/1.1\r\nHost: t\r\nX\x7fY: v\r\n\r\n",
        ),
        (
            "NUL in name",
            "GET / HTTP/1.1\r\nHost: t\r\nX\0Y: v\r\n\r\n",
        ),
        (
            "obs-fold",
            "GET / HTTP/1.1\r\nHost: t\r\nX: a\r\n b\r\n\r\n",
        ),
        (
            "two Host headers",
            "GET / HTTP/1.1\r\nHost: t\r\nHost: u\r\n\r\n",
        ),
        (
            "TE on HTTP/1.0",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
    ]
    .iter()
    .map(|(name, head)| (name.to_string(), head.as_bytes().to_vec(), 400))
    .collect();
    for (name, byte) in [("0xff", 0xffu8), ("0xa0", 0xa0), ("0x80", 0x80)] {
        let mut head = b"GET / HTTP/1.1\r\nHost: t\r\nX".to_vec();
        head.push(byte);
        head.extend_from_slice(b": v\r\n\r\n");
        probes.push((format!("{name} in a header name"), head, 400));
    }
    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let head = format!("GET / HTTP/1.1\r\nHost: t\r\n{many}\r\n");
    probes.push(("200 headers".into(), head.into_bytes(), 431));
    let big = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "v".repeat(20_000)
    );
    probes.push(("a 20k header".into(), big.into_bytes(), 431));
    let long = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(20_000));
    probes.push(("a 20k target".into(), long.into_bytes(), 414));
    probes
}

/// A control or non-ASCII byte before, inside or after the name, the colon or the value of
/// `Transfer-Encoding: chunked` (and of `Content-Length: 10`).
fn control_byte_probes() -> Vec<(String, Vec<u8>)> {
    let bytes = [0x01u8, 0x08, 0x0a, 0x0b, 0x0c, 0x0d, 0x1f, 0x7f, 0xa0, 0xff];
    let mut probes = Vec::new();
    for (header, name_len, colon_at) in [
        ("Transfer-Encoding: chunked", 17, 17),
        ("Content-Length: 10", 14, 14),
    ] {
        // Positions: before the name, inside it, before the colon, after the colon,
        // inside the value, after the value.
        let value_mid = colon_at + 2 + (header.len() - colon_at - 2) / 2;
        let positions = [
            0,
            name_len / 2,
            colon_at,
            colon_at + 1,
            value_mid,
            header.len(),
        ];
        for &b in &bytes {
            for &at in &positions {
                let mut line = header.as_bytes().to_vec();
                line.insert(at, b);
                let mut wire = b"POST /probe HTTP/1.1\r\nHost: t\r\n".to_vec();
                wire.extend_from_slice(&line);
                wire.extend_from_slice(b"\r\n\r\n0\r\n\r\n");
                wire.extend_from_slice(SMUGGLED.as_bytes());
                let name = format!("{header:?} with 0x{b:02x} at {at}");
                probes.push((name, wire));
            }
        }
    }
    probes
}

/// Sends `wire` on a fresh connection and checks the answer is `status` and the
/// connection then closes; gives what went wrong.
fn refused(proxy: &Proxy, wire: &[u8], status: u16) -> Result<(), String> {
    let mut c = Client::connect(proxy.addr);
    c.send(wire);
    match c.try_read_response() {
        Ok(r) if r.status == status => {}
        Ok(r) => return Err(format!("got {} instead of {status}", r.status)),
        Err(e) => return Err(format!("no {status} ({e})")),
    }
    if !c.closed_within(Duration::from_secs(2)) {
        return Err(format!("connection kept open after {status}"));
    }
    Ok(())
}

/// Runs every probe; panics with the list of those that failed, and if the backend saw
/// any request at all.
fn run_probes(proxy: &Proxy, backend: &Backend, probes: &[(String, Vec<u8>, u16)]) {
    let failures: Vec<String> = probes
        .iter()
        .filter_map(|(name, wire, status)| {
            refused(proxy, wire, *status)
                .err()
                .map(|e| format!("{name}: {e}"))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} probes failed:\n{}",
        failures.len(),
        probes.len(),
        failures.join("\n")
    );
    assert_eq!(
        backend.heads(),
        0,
        "the backend saw {:#?}",
        backend.requests()
    );
}

fn echo_backend() -> Backend {
    Backend::start(|req, c| {
        c.ok(&format!("{} {}", req.path(), req.body.len()));
    })
}

fn transfer_encoding_obfuscations_are_refused_and_never_forwarded(driver: &str) {
    let b = echo_backend();
    let p = Proxy::start(driver, &single(b.addr()));
    let probes: Vec<(String, Vec<u8>, u16)> = TE_PROBES
        .iter()
        .map(|(name, headers, status)| (name.to_string(), post(headers, "0\r\n\r\n"), *status))
        .collect();
    run_probes(&p, &b, &probes);
}
both_drivers!(transfer_encoding_obfuscations_are_refused_and_never_forwarded);

fn control_bytes_around_framing_headers_are_refused(driver: &str) {
    let b = echo_backend();
    let p = Proxy::start(driver, &single(b.addr()));
    let probes: Vec<(String, Vec<u8>, u16)> = control_byte_probes()
        .into_iter()
        .map(|(name, wire)| (name, wire, 400))
        .collect();
    run_probes(&p, &b, &probes);
}
both_drivers!(control_bytes_around_framing_headers_are_refused);

fn bad_content_lengths_are_refused_and_never_forwarded(driver: &str) {
    let b = echo_backend();
    let p = Proxy::start(driver, &single(b.addr()));
    let probes: Vec<(String, Vec<u8>, u16)> = CL_PROBES
        .iter()
        .map(|(name, headers)| (name.to_string(), post(headers, "hello"), 400))
        .collect();
    run_probes(&p, &b, &probes);
}
both_drivers!(bad_content_lengths_are_refused_and_never_forwarded);

fn bad_chunk_framing_is_refused_before_any_server_is_asked(driver: &str) {
    let b = echo_backend();
    let p = Proxy::start(driver, &single(b.addr()));
    let probes: Vec<(String, Vec<u8>, u16)> = CHUNK_PROBES
        .iter()
        .map(|(name, body)| (name.to_string(), chunked(body), 400))
        .collect();
    run_probes(&p, &b, &probes);
}
both_drivers!(bad_chunk_framing_is_refused_before_any_server_is_asked);

fn bad_request_lines_and_header_sections_are_refused(driver: &str) {
    let b = echo_backend();
    let p = Proxy::start(driver, &single(b.addr()));
    run_probes(&p, &b, &head_probes());
}
both_drivers!(bad_request_lines_and_header_sections_are_refused);

/// Trailers and extensions over their limits may arrive after the head went up: the
/// backend then sees a head, but never a whole request and never the smuggled one.
fn oversized_chunk_lines_and_trailers_are_refused(driver: &str) {
    let b = echo_backend();
    let p = Proxy::start(driver, &single(b.addr()));
    let long_ext = format!("5;{}\r\nhello\r\n0\r\n\r\n", "x".repeat(5000));
    let long_trailer = format!("0\r\nX: {}\r\n\r\n", "v".repeat(5000));
    let many_trailers = format!(
        "0\r\n{}\r\n",
        "X-T: vvvvvvvvvvvvvvvvvvvvvvvvv\r\n".repeat(700)
    );
    for (name, body) in [
        ("extension over 4k", long_ext),
        ("trailer line over 4k", long_trailer),
        ("trailers over 16k", many_trailers),
    ] {
        if let Err(e) = refused(&p, &chunked(&body), 400) {
            panic!("{name}: {e}");
        }
    }
    assert_eq!(b.complete_requests(), 0, "{:#?}", b.requests());
    assert!(b.requests().iter().all(|r| r.path() != "/smuggled"));
}
both_drivers!(oversized_chunk_lines_and_trailers_are_refused);

/// Whitespace around `chunked` and its letter case are unambiguous: the request goes
/// through, framed as chunked, with exactly one clean `Transfer-Encoding: chunked`.
fn optional_whitespace_and_case_in_transfer_encoding_frame_as_chunked(driver: &str) {
    let b = echo_backend();
    let p = Proxy::start(driver, &single(b.addr()));
    let spellings = [
        "Transfer-Encoding: chunked \r\n",
        "Transfer-Encoding: chunked\t\r\n",
        "Transfer-Encoding:\tchunked\r\n",
        "Transfer-Encoding:chunked\r\n",
        "Transfer-Encoding: \t chunked \t \r\n",
        "transfer-encoding: CHUNKED\r\n",
        "TRANSFER-ENCODING: Chunked\r\n",
    ];
    for spelling in spellings {
        let mut c = Client::connect(p.addr);
        // Framed as chunked this is one request with a 5-byte body, then the smuggled one
        // as a pipelined request of its own (which the client then gets an answer to).
        c.send(post(spelling, "5\r\nhello\r\n0\r\n\r\n"));
        let r = c.read_response();
        assert_eq!(r.text(), "/probe 5", "{spelling:?}");
        assert_eq!(c.read_response().text(), "/smuggled 0", "{spelling:?}");
    }
    let requests = b.requests();
    assert_eq!(requests.len(), 2 * spellings.len());
    for r in requests.iter().filter(|r| r.path() == "/probe") {
        assert_eq!(
            r.header_all("transfer-encoding"),
            ["chunked"],
            "{}",
            r.head_text()
        );
        assert!(r.head_text().contains("\r\nTransfer-Encoding: chunked\r\n"));
    }
}
both_drivers!(optional_whitespace_and_case_in_transfer_encoding_frame_as_chunked);

/// CL.TE and TE.CL pairs and bodies that look like requests, on one connection each:
/// the backend sees exactly the requests the client got answers to, in order.
fn the_backend_sees_only_requests_the_proxy_answered(driver: &str) {
    let b = echo_backend();
    let p = Proxy::start(driver, &single(b.addr()));
    // (wire, answers the client gets before the connection closes)
    let n = SMUGGLED.len();
    let (inner, whole) = (format!("/a {}", n + 5), format!("/a {n}"));
    let cases: Vec<(String, Vec<&str>)> = vec![
        // CL.TE: a hop using Content-Length sends "0\r\n\r\nG" as the body.
        (
            format!(
                "POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"
            ),
            vec!["400"],
        ),
        // TE.CL: a hop using Content-Length stops after "5c\r\n".
        (
            format!(
                "POST /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\n{SMUGGLED}\r\n0\r\n\r\n"
            ),
            vec!["400"],
        ),
        // The chunk data holds a whole request, "last chunk" included: it is data.
        (
            {
                let inner = format!("0\r\n\r\n{SMUGGLED}");
                format!(
                    "POST /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{inner}\r\n0\r\n\r\nGET /b HTTP/1.1\r\nHost: t\r\n\r\n",
                    inner.len()
                )
            },
            vec![&inner, "/b 0"],
        ),
        // A body with a length that holds a request: it is data.
        (
            format!(
                "POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{SMUGGLED}GET /b HTTP/1.1\r\nHost: t\r\n\r\n",
                SMUGGLED.len()
            ),
            vec![&whole, "/b 0"],
        ),
        // A GET with a body (Content-Length) is still framed by it.
        (
            format!(
                "GET /a HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{SMUGGLED}",
                SMUGGLED.len()
            ),
            vec![&whole],
        ),
        // A valid request, then an ambiguous one: the first is answered, the second
        // refused, and the bytes behind it are never parsed.
        (
            format!(
                "GET /a HTTP/1.1\r\nHost: t\r\n\r\nPOST /b HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 36\r\n\r\n{SMUGGLED}"
            ),
            vec!["/a 0", "400"],
        ),
        // HTTP/1.0 with Transfer-Encoding: refused, whatever follows.
        (
            format!(
                "POST /a HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"
            ),
            vec!["400"],
        ),
    ];
    for (wire, answers) in &cases {
        let mut c = Client::connect(p.addr);
        c.send(wire);
        let mut got = Vec::new();
        for _ in answers {
            match c.try_read_response() {
                Ok(r) if r.status == 200 => got.push(r.text()),
                Ok(r) => got.push(r.status.to_string()),
                Err(e) => got.push(e),
            }
        }
        assert_eq!(&got, answers, "{wire:?}");
        if answers.last() == Some(&"400") {
            assert!(c.closed_within(Duration::from_secs(2)), "{wire:?}");
        }
    }
    // Every request the backend saw, in order, is one the client got an answer for.
    let seen: Vec<String> = b
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.path(), r.body.len()))
        .collect();
    let answered: Vec<&str> = cases
        .iter()
        .flat_map(|(_, a)| a.iter().copied())
        .filter(|a| a.starts_with('/'))
        .collect();
    assert_eq!(seen, answered);
}
both_drivers!(the_backend_sees_only_requests_the_proxy_answered);

/// A chunked body streams up as it arrives, so a framing error can come after the head
/// went up: that server connection is closed (the server sees an unfinished request,
/// never the bytes after the error), the client gets 400 and is closed.
fn a_chunk_error_after_the_head_went_up_closes_both_sides(driver: &str) {
    let b = echo_backend();
    let p = Proxy::start(driver, &single(b.addr()));
    for bad in [
        "zz\r\n",
        "5\nhello\r\n",
        "5\r\nhelloXX",
        "0\r\nX: a\0b\r\n\r\n",
        "5;a\rb\r\n",
    ] {
        let before = b.heads();
        let mut c = Client::connect(p.addr);
        c.send(
            "POST /stream HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        );
        assert!(
            wait_until(Duration::from_secs(2), || b.heads() == before + 1),
            "{bad:?}: the head was not streamed up"
        );
        c.send(format!("{bad}0\r\n\r\n{SMUGGLED}"));
        let r = c.read_response();
        assert_eq!(r.status, 400, "{bad:?}");
        assert!(c.closed_within(Duration::from_secs(2)), "{bad:?}");
        // The server connection was closed: the backend's request ends unfinished.
        assert!(
            wait_until(Duration::from_secs(2), || b.active() == 0),
            "{bad:?}: the server connection stayed open"
        );
    }
    std::thread::sleep(Duration::from_millis(100));
    let requests = b.requests();
    assert!(requests.iter().all(|r| !r.complete), "{requests:#?}");
    assert!(
        requests.iter().all(|r| r.path() == "/stream"),
        "{requests:#?}"
    );
    // Whatever reached the server, a fresh request still gets a fresh connection.
    let connections = b.connections();
    assert_eq!(get(p.addr, "/after").text(), "/after 0");
    assert_eq!(b.connections(), connections + 1);
}
both_drivers!(a_chunk_error_after_the_head_went_up_closes_both_sides);

// ---- connection state ------------------------------------------------------------------

const UPGRADE: &str =
    "GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";

/// Bytes sent right behind an `Upgrade` request belong to the new protocol only once the
/// server said 101: before that the server must not get them.
fn bytes_after_an_upgrade_request_wait_for_the_101(driver: &str) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let early = Arc::new(AtomicBool::new(false));
    let flag = early.clone();
    let b = Backend::start(move |_, c| {
        // Anything arriving before the 101 went out was forwarded too soon.
        if !c.read_some(Duration::from_millis(300)).is_empty() {
            flag.store(true, Ordering::SeqCst);
        }
        c.respond(
            101,
            &[("Upgrade", "websocket"), ("Connection", "Upgrade")],
            b"",
        );
        let data = c.read_some(Duration::from_secs(2));
        c.write(&data);
        c.close();
    });
    let p = Proxy::start(driver, &single(b.addr()));
    let mut c = Client::connect(p.addr);
    c.send([UPGRADE.as_bytes(), b"\x81\x05hello"].concat());
    let r = c.read_head();
    assert_eq!(r.status, 101, "{}", r.head_text());
    assert_eq!(
        c.read_exact_within(7, Duration::from_secs(2)),
        b"\x81\x05hello"
    );
    assert!(
        !early.load(Ordering::SeqCst),
        "bytes went up before the 101"
    );
}
both_drivers!(bytes_after_an_upgrade_request_wait_for_the_101);

/// When the server refuses the upgrade, what the client sent behind the request is parsed
/// as the next request (the upgrade request was whole): a real request is answered, bytes
/// of the other protocol are a bad request; neither ever reaches the server as raw bytes.
fn bytes_after_a_refused_upgrade_are_parsed_as_the_next_request(driver: &str) {
    let b = Backend::start(|req, c| {
        if req.path() == "/ws" {
            c.respond(426, &[("Content-Type", "text/plain")], b"no upgrade");
        } else {
            c.ok(req.path());
        }
    });
    let p = Proxy::start(driver, &single(b.addr()));
    let mut c = Client::connect(p.addr);
    c.send(format!("{UPGRADE}GET /next HTTP/1.1\r\nHost: t\r\n\r\n"));
    assert_eq!(c.read_response().status, 426);
    assert_eq!(c.read_response().text(), "/next");
    let mut c = Client::connect(p.addr);
    c.send([UPGRADE.as_bytes(), b"\x81\x05hello", SMUGGLED.as_bytes()].concat());
    assert_eq!(c.read_response().status, 426);
    assert_eq!(c.read_response().status, 400);
    assert!(c.closed_within(Duration::from_secs(3)));
    let seen: Vec<String> = b.requests().iter().map(|r| r.path().to_string()).collect();
    assert_eq!(seen, ["/ws", "/next", "/ws"]);
}
both_drivers!(bytes_after_a_refused_upgrade_are_parsed_as_the_next_request);

/// A request ringway answers before reading its body (413, 431, 400): the body is never
/// parsed as requests, and the connection closes after the answer.
fn a_request_answered_early_never_has_its_body_read_as_a_request(driver: &str) {
    let b = echo_backend();
    let p = Proxy::start(
        driver,
        &config(
            "client_max_body_size = \"1k\"\nmax_header_size = \"4k\"",
            "",
            &[server(b.addr(), "")],
        ),
    );
    let requests = SMUGGLED.repeat(100);
    let cases = [
        (
            format!(
                "POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{requests}",
                requests.len()
            ),
            413,
        ),
        (
            format!(
                "POST /a HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\nContent-Length: {}\r\n\r\n{requests}",
                "v".repeat(5000),
                requests.len()
            ),
            431,
        ),
        (
            format!(
                "POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n{requests}"
            ),
            400,
        ),
        (
            format!(
                "POST /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{requests}"
            ),
            400,
        ),
    ];
    for (wire, status) in &cases {
        if let Err(e) = refused(&p, wire.as_bytes(), *status) {
            panic!("{status}: {e}");
        }
    }
    // A chunked body that outgrows the limit after its head went up.
    let mut c = Client::connect(p.addr);
    c.send(format!(
        "POST /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{requests}\r\n0\r\n\r\n{SMUGGLED}",
        requests.len()
    ));
    assert_eq!(c.read_response().status, 413);
    assert!(c.closed_within(Duration::from_secs(3)));
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        b.requests().iter().all(|r| r.path() == "/a" && !r.complete),
        "{:#?}",
        b.requests()
    );
}
both_drivers!(a_request_answered_early_never_has_its_body_read_as_a_request);

/// After an early answer the client may still be sending its body: ringway reads and
/// drops it for a while (never parsing it) instead of resetting the connection under the
/// client's feet, then closes.
fn the_body_behind_an_early_answer_is_drained_then_the_connection_closes(driver: &str) {
    let b = echo_backend();
    let p = Proxy::start(
        driver,
        &config("client_max_body_size = \"1k\"", "", &[server(b.addr(), "")]),
    );
    let mut c = Client::connect(p.addr);
    c.send("POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 413);
    assert!(r.says_close());
    // The body follows the answer, as a client that does not wait for one sends it.
    let piece = SMUGGLED.repeat(10_000 / SMUGGLED.len());
    for i in 0..10 {
        std::thread::sleep(Duration::from_millis(20));
        if let Err(e) = c.try_send(&piece) {
            panic!("write {i} failed: {e} (the connection was reset, not drained)");
        }
    }
    c.shutdown_write();
    assert!(c.closed_within(Duration::from_secs(3)));
    assert!(
        c.leftover().is_empty(),
        "{:?}",
        String::from_utf8_lossy(c.leftover())
    );
    assert_eq!(b.heads(), 0);
}
both_drivers!(the_body_behind_an_early_answer_is_drained_then_the_connection_closes);
