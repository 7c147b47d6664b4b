//! Wire-transcript tests for request heads: bytes in, head (or error) out.

use super::*;

const LIMITS: HeadLimits = HeadLimits {
    max_header_size: 16 * 1024,
};

fn req(wire: &[u8]) -> RequestHead {
    match parse_request(wire, LIMITS) {
        Ok(Some(head)) => head,
        other => panic!(
            "{:?}: expected a head, got {other:?}",
            String::from_utf8_lossy(wire)
        ),
    }
}

fn req_err(wire: &[u8]) -> HeadError {
    match parse_request(wire, LIMITS) {
        Err(e) => e,
        Ok(head) => panic!(
            "{:?}: expected an error, got {head:?}",
            String::from_utf8_lossy(wire)
        ),
    }
}

fn assert_400(wire: &[u8]) {
    let e = req_err(wire);
    assert!(
        matches!(e, HeadError::Malformed(_)),
        "{:?}: {e:?}",
        String::from_utf8_lossy(wire)
    );
    assert_eq!(e.status(), 400);
}

/// A GET with `lines` (each without CRLF) as its headers.
fn get_with(lines: &[&str]) -> Vec<u8> {
    let mut wire = b"GET / HTTP/1.1\r\n".to_vec();
    for line in lines {
        wire.extend_from_slice(line.as_bytes());
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"\r\n");
    wire
}

fn post_with(lines: &[&str]) -> Vec<u8> {
    let mut wire = get_with(lines);
    wire.splice(0..3, b"POST".iter().copied());
    wire
}

fn text<'b>(buf: &'b [u8], r: &Range<usize>) -> &'b str {
    std::str::from_utf8(&buf[r.clone()]).expect("ascii")
}

// ---- requests: fields -------------------------------------------------------------------

#[test]
fn curl_request_fills_every_field() {
    let wire = b"GET /v1/models?x=1 HTTP/1.1\r\nHost: api.example.com:8080\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n";
    let head = req(wire);
    assert_eq!(head.len, wire.len());
    assert_eq!(head.method(wire), b"GET");
    assert_eq!(head.target(wire), b"/v1/models?x=1");
    assert_eq!(head.path(wire), b"/v1/models?x=1");
    assert_eq!(head.version, Version::Http11);
    assert_eq!(head.host(wire), Some(&b"api.example.com"[..]));
    assert_eq!(head.body, RequestBody::None);
    assert!(head.keep_alive && !head.upgrade && !head.expect_continue);
    let names: Vec<_> = head.headers.iter().map(|h| text(wire, &h.name)).collect();
    assert_eq!(names, ["Host", "User-Agent", "Accept"]);
    assert_eq!(text(wire, &head.headers[1].value), "curl/8.5.0");
    assert!(head.headers.iter().all(|h| !h.hop));
    assert!(head.is_idempotent(wire) && !head.is_head(wire));
}

#[test]
fn header_lookup_is_case_insensitive_and_returns_the_first() {
    let wire = get_with(&["Host: a", "X-Dup: one", "x-dup: two", "Empty:"]);
    let head = req(&wire);
    assert_eq!(head.header(&wire, "X-DUP"), Some(&b"one"[..]));
    assert_eq!(head.header(&wire, "empty"), Some(&b""[..]));
    assert_eq!(head.header(&wire, "missing"), None);
}

#[test]
fn header_values_are_trimmed_of_surrounding_whitespace() {
    let wire = get_with(&["Host: a", "X-Pad: \t value with  inner  space \t"]);
    let head = req(&wire);
    assert_eq!(
        head.header(&wire, "x-pad"),
        Some(&b"value with  inner  space"[..])
    );
}

#[test]
fn using_a_head_with_a_shorter_buffer_does_not_panic() {
    let wire = get_with(&["Host: a"]);
    let head = req(&wire);
    assert_eq!(head.method(b""), b"");
    assert_eq!(head.header(b"GET", "host"), None);
}

#[test]
fn post_and_patch_are_not_idempotent_head_is_head() {
    let wire = post_with(&["Host: a", "Content-Length: 0"]);
    assert!(!req(&wire).is_idempotent(&wire));
    let head_wire = b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n";
    assert!(req(head_wire).is_head(head_wire));
}

// ---- requests: incremental parsing and limits ------------------------------------------

#[test]
fn every_prefix_of_a_head_asks_for_more() {
    let wire = get_with(&["Host: a", "Accept: */*"]);
    for end in 0..wire.len() {
        assert!(
            parse_request(&wire[..end], LIMITS)
                .expect("valid so far")
                .is_none(),
            "{end}"
        );
    }
    assert!(parse_request(&wire, LIMITS).expect("valid").is_some());
}

#[test]
fn pipelined_bytes_after_the_head_are_not_part_of_it() {
    let first = get_with(&["Host: a"]);
    let mut wire = first.clone();
    wire.extend_from_slice(b"GET /second HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(req(&wire).len, first.len());
}

#[test]
fn leading_empty_lines_are_skipped_and_counted() {
    let wire = b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
    let head = req(wire);
    assert_eq!(head.len, wire.len());
    assert_eq!(head.method(wire), b"GET");
}

#[test]
fn incomplete_head_larger_than_the_limit_is_431() {
    let limits = HeadLimits {
        max_header_size: 64,
    };
    let mut wire = b"GET / HTTP/1.1\r\nX-Long: ".to_vec();
    wire.resize(64, b'a');
    assert!(
        parse_request(&wire, limits)
            .expect("at the limit")
            .is_none()
    );
    wire.push(b'a');
    let e = parse_request(&wire, limits).expect_err("over the limit");
    assert_eq!((e, e.status()), (HeadError::TooLarge, 431));
}

#[test]
fn a_request_line_longer_than_the_limit_is_414() {
    let limits = HeadLimits {
        max_header_size: 64,
    };
    let long = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(70));
    let e = parse_request(long.as_bytes(), limits).expect_err("over the limit");
    assert_eq!((e, e.status()), (HeadError::TargetTooLong, 414));
    // Still arriving: 414 as soon as the line outgrows the limit.
    let e = parse_request(&long.as_bytes()[..65], limits).expect_err("over the limit");
    assert_eq!(e, HeadError::TargetTooLong);
    // Leading empty lines do not count as the request line's end.
    let led = format!("\r\n{long}");
    assert_eq!(
        parse_request(led.as_bytes(), limits).unwrap_err(),
        HeadError::TargetTooLong
    );
    // A short request line with long headers is 431.
    let headers = format!("GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n", "b".repeat(70));
    assert_eq!(
        parse_request(headers.as_bytes(), limits).unwrap_err(),
        HeadError::TooLarge
    );
}

#[test]
fn complete_head_larger_than_the_limit_is_431() {
    let wire = get_with(&["Host: a", &format!("X-Long: {}", "a".repeat(100))]);
    let exact = HeadLimits {
        max_header_size: wire.len(),
    };
    assert!(parse_request(&wire, exact).expect("fits").is_some());
    let small = HeadLimits {
        max_header_size: wire.len() - 1,
    };
    assert_eq!(
        parse_request(&wire, small).unwrap_err(),
        HeadError::TooLarge
    );
}

#[test]
fn more_than_max_headers_is_431() {
    let lines: Vec<String> = (0..MAX_HEADERS).map(|i| format!("X-{i}: v")).collect();
    let mut refs: Vec<&str> = vec!["Host: a"];
    refs.extend(lines.iter().map(String::as_str).take(MAX_HEADERS - 1));
    assert_eq!(req(&get_with(&refs)).headers.len(), MAX_HEADERS);
    refs.push("X-One-Too-Many: v");
    assert_eq!(req_err(&get_with(&refs)), HeadError::TooLarge);
}

// ---- requests: what httparse rejects, pinned ---------------------------------------------

#[test]
fn garbage_request_lines_are_400() {
    assert_400(b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_400(b"GET / HTTP/2.0\r\nHost: a\r\n\r\n");
    assert_400(b"GET / http/1.1\r\nHost: a\r\n\r\n");
    assert_400(b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_400(b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_400(b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n");
    assert_400(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03");
}

#[test]
fn obs_fold_is_400() {
    assert_400(&get_with(&["Host: a", "X-Folded: one", " two"]));
    assert_400(&get_with(&["Host: a", "X-Folded: one", "\ttwo"]));
    assert_400(&get_with(&[" Host: a"]));
}

#[test]
fn nul_cr_or_lf_inside_a_header_value_is_400() {
    assert_400(&get_with(&["Host: a", "X: a\0b"]));
    assert_400(&get_with(&["Host: a", "X: a\rb"]));
    assert_400(&get_with(&["Host: a", "X: a\nb"]));
    // An LF inside a value must not start a header only we would see.
    assert_400(&get_with(&["Host: a", "X: a\nTransfer-Encoding: chunked"]));
    assert_400(&get_with(&["Host: a", "X: \x7f"]));
}

#[test]
fn bare_lf_line_endings_in_a_request_are_400() {
    assert_400(b"GET / HTTP/1.1\nHost: a\n\n");
    assert_400(b"GET / HTTP/1.1\r\nHost: a\r\n\n");
    assert_400(b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
}

#[test]
fn whitespace_between_header_name_and_colon_is_400() {
    assert_400(&get_with(&["Host : a"]));
    assert_400(&get_with(&["Host: a", "Content-Length\t: 5"]));
}

#[test]
fn empty_or_invalid_header_name_is_400() {
    assert_400(&get_with(&["Host: a", ": empty-name"]));
    assert_400(&get_with(&["Host: a", "Bad(Name): x"]));
    assert_400(&get_with(&["Host: a", "NoColon"]));
}

// ---- requests: targets and hosts ---------------------------------------------------------

#[test]
fn http11_without_host_is_400_and_http10_without_host_is_fine() {
    assert_400(b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n");
    let wire = b"GET / HTTP/1.0\r\n\r\n";
    let head = req(wire);
    assert_eq!((head.version, head.host), (Version::Http10, None));
}

#[test]
fn more_than_one_host_header_is_400() {
    assert_400(&get_with(&["Host: a", "Host: a"]));
    assert_400(b"GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n");
}

#[test]
fn host_header_loses_its_port_and_keeps_its_case_and_ipv6_brackets() {
    for (host, want) in [
        ("Example.COM:8080", "Example.COM"),
        ("a", "a"),
        ("a:", "a"),
        ("[::1]:1700", "[::1]"),
        ("[fe80::1%25eth0]", "[fe80::1%25eth0]"),
        ("10.0.0.1", "10.0.0.1"),
    ] {
        let wire = get_with(&[&format!("Host: {host}")]);
        assert_eq!(req(&wire).host(&wire), Some(want.as_bytes()), "{host}");
    }
    let empty = get_with(&["Host:"]);
    assert_eq!(req(&empty).host, None);
}

#[test]
fn invalid_host_header_is_400() {
    for host in [
        "a/b", "user@a", "a:80x", "a b", ":80", "[::1", "[]", "[::1]x", "a:1:2",
    ] {
        assert_400(&get_with(&[&format!("Host: {host}")]));
    }
}

#[test]
fn absolute_form_target_forwards_its_path_and_routes_on_its_host() {
    let wire = b"GET http://Backend.example:8080/v1/chat?stream=1 HTTP/1.1\r\nHost: other\r\n\r\n";
    let head = req(wire);
    assert_eq!(
        head.target(wire),
        b"http://Backend.example:8080/v1/chat?stream=1"
    );
    assert_eq!(head.path(wire), b"/v1/chat?stream=1");
    assert_eq!(head.host(wire), Some(&b"Backend.example"[..]));

    let https = b"GET HTTPS://[::1]:443/x HTTP/1.1\r\nHost: [::1]\r\n\r\n";
    let head = req(https);
    assert_eq!(
        (head.path(https), head.host(https)),
        (&b"/x"[..], Some(&b"[::1]"[..]))
    );
}

#[test]
fn absolute_form_without_a_path_forwards_slash() {
    let wire = b"GET http://a.example HTTP/1.1\r\nHost: a.example\r\n\r\n";
    let head = req(wire);
    assert_eq!(head.path(wire), b"/");
    assert_eq!(head.host(wire), Some(&b"a.example"[..]));
    let wire = b"OPTIONS http://a:81 HTTP/1.0\r\n\r\n";
    assert_eq!(req(wire).path(wire), b"/");
}

#[test]
fn bad_absolute_form_targets_are_400() {
    assert_400(b"GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_400(b"GET http://user:pw@a/x HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_400(b"GET http://a?q=1 HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_400(b"GET http://a:8x/ HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_400(b"GET ftp://a/x HTTP/1.1\r\nHost: a\r\n\r\n");
}

#[test]
fn absolute_form_http11_still_needs_a_host_header() {
    assert_400(b"GET http://a/x HTTP/1.1\r\n\r\n");
}

#[test]
fn targets_that_are_not_origin_or_absolute_form_are_400() {
    assert_400(b"GET example.com:443 HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_400(b"GET index.html HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_400(b"GET * HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_400(b"GET ** HTTP/1.1\r\nHost: a\r\n\r\n");
}

#[test]
fn options_star_is_accepted() {
    let wire = b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n";
    let head = req(wire);
    assert_eq!((head.target(wire), head.path(wire)), (&b"*"[..], &b"*"[..]));
}

#[test]
fn connect_is_400() {
    assert_400(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
    assert_400(b"CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n");
}

// ---- requests: body framing -------------------------------------------------------------

#[test]
fn content_length_frames_the_body() {
    let head = req(&post_with(&["Host: a", "Content-Length: 1234"]));
    assert_eq!(head.body, RequestBody::Length(1234));
    let max = post_with(&["Host: a", "Content-Length: 18446744073709551615"]);
    assert_eq!(req(&max).body, RequestBody::Length(u64::MAX));
}

#[test]
fn content_length_zero_is_length_zero() {
    assert_eq!(
        req(&post_with(&["Host: a", "Content-Length: 0"])).body,
        RequestBody::Length(0)
    );
    assert_eq!(
        req(&post_with(&["Host: a", "Content-Length: 000"])).body,
        RequestBody::Length(0)
    );
}

#[test]
fn no_framing_headers_means_no_body() {
    assert_eq!(req(&post_with(&["Host: a"])).body, RequestBody::None);
}

#[test]
fn content_length_that_is_not_all_digits_is_400() {
    for cl in ["+5", "-5", "5 5", "0x10", "5a", "", "1.0", "５"] {
        assert_400(&post_with(&["Host: a", &format!("Content-Length: {cl}")]));
    }
}

#[test]
fn content_length_overflowing_u64_is_400() {
    assert_400(&post_with(&[
        "Host: a",
        "Content-Length: 18446744073709551616",
    ]));
    assert_400(&post_with(&[
        "Host: a",
        "Content-Length: 99999999999999999999999",
    ]));
}

#[test]
fn differing_content_lengths_are_400() {
    assert_400(&post_with(&[
        "Host: a",
        "Content-Length: 5",
        "Content-Length: 6",
    ]));
    assert_400(&post_with(&["Host: a", "Content-Length: 5, 6"]));
    assert_400(&post_with(&["Host: a", "Content-Length: 5,"]));
    assert_400(&post_with(&[
        "Host: a",
        "Content-Length: 5",
        "Content-Length: x",
    ]));
}

#[test]
fn identical_duplicate_content_lengths_are_accepted() {
    let head = req(&post_with(&[
        "Host: a",
        "Content-Length: 5",
        "content-length: 5",
    ]));
    assert_eq!(head.body, RequestBody::Length(5));
    let head = req(&post_with(&["Host: a", "Content-Length: 5 , 5,5"]));
    assert_eq!(head.body, RequestBody::Length(5));
}

#[test]
fn chunked_and_content_length_is_400() {
    assert_400(&post_with(&[
        "Host: a",
        "Content-Length: 5",
        "Transfer-Encoding: chunked",
    ]));
    assert_400(&post_with(&[
        "Host: a",
        "Transfer-Encoding: chunked",
        "Content-Length: 5",
    ]));
    assert_400(&post_with(&[
        "Host: a",
        "Transfer-Encoding: chunked",
        "Content-Length: x",
    ]));
}

#[test]
fn framing_headers_spelled_with_underscores_are_400() {
    assert_400(&post_with(&[
        "Host: a",
        "Transfer_Encoding: chunked",
        "Content-Length: 3",
    ]));
    assert_400(&post_with(&["Host: a", "content_length: 3"]));
    assert_400(&post_with(&[
        "Host: a",
        "Transfer-Encoding: chunked",
        "CONTENT_LENGTH: 3",
    ]));
    // Other names with underscores are fine.
    assert_eq!(
        req(&get_with(&["Host: a", "X_Custom_Header: 1"]))
            .headers
            .len(),
        2
    );
}

#[test]
fn transfer_encoding_in_http10_is_400() {
    assert_400(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n");
}

#[test]
fn chunked_alone_frames_the_body() {
    for te in [
        &["Transfer-Encoding: chunked"][..],
        &["Transfer-Encoding: CHUNKED"],
        &["transfer-encoding:\t chunked \t"],
    ] {
        let mut lines = vec!["Host: a"];
        lines.extend_from_slice(te);
        assert_eq!(req(&post_with(&lines)).body, RequestBody::Chunked, "{te:?}");
    }
}

#[test]
fn other_codings_before_chunked_are_501() {
    for te in [
        &["Transfer-Encoding: gzip, chunked"][..],
        &["Transfer-Encoding: deflate,gzip,chunked"],
        &["Transfer-Encoding: gzip", "Transfer-Encoding: chunked"],
    ] {
        let mut lines = vec!["Host: a"];
        lines.extend_from_slice(te);
        let e = req_err(&post_with(&lines));
        assert_eq!(
            (e, e.status()),
            (HeadError::UnsupportedEncoding, 501),
            "{te:?}"
        );
    }
}

#[test]
fn chunked_missing_not_last_or_twice_is_400() {
    for te in [
        &["Transfer-Encoding: identity"][..],
        &["Transfer-Encoding: gzip"],
        &["Transfer-Encoding: chunked, gzip"],
        &["Transfer-Encoding: chunked, chunked"],
        &["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"],
        &["Transfer-Encoding: chunked", "Transfer-Encoding: identity"],
        &["Transfer-Encoding: chunked;q=1"],
        &["Transfer-Encoding: xchunked"],
        &["Transfer-Encoding:"],
        &["Transfer-Encoding: ,"],
        &["Transfer-Encoding: , chunked"],
        &["Transfer-Encoding: chunked,"],
        &["Transfer-Encoding: chunked, , chunked"],
        &["Transfer-Encoding:", "Transfer-Encoding: chunked"],
        &["Transfer-Encoding: chunked", "Transfer-Encoding:"],
    ] {
        let mut lines = vec!["Host: a"];
        lines.extend_from_slice(te);
        assert_400(&post_with(&lines));
    }
}

// ---- requests: connection handling ------------------------------------------------------

#[test]
fn http11_keeps_alive_unless_connection_close() {
    assert!(req(&get_with(&["Host: a"])).keep_alive);
    assert!(req(&get_with(&["Host: a", "Connection: keep-alive"])).keep_alive);
    assert!(!req(&get_with(&["Host: a", "Connection: close"])).keep_alive);
    assert!(!req(&get_with(&["Host: a", "Connection: Keep-Alive, CLOSE"])).keep_alive);
    assert!(
        !req(&get_with(&[
            "Host: a",
            "Connection: x",
            "Connection: close"
        ]))
        .keep_alive
    );
    assert!(req(&get_with(&["Host: a", "Connection: closed"])).keep_alive);
}

#[test]
fn http10_keeps_alive_only_with_connection_keep_alive() {
    assert!(!req(b"GET / HTTP/1.0\r\n\r\n").keep_alive);
    assert!(req(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
    assert!(req(b"GET / HTTP/1.0\r\nConnection: x-foo , keep-alive\r\n\r\n").keep_alive);
    assert!(!req(b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n").keep_alive);
}

#[test]
fn upgrade_needs_connection_upgrade_and_an_upgrade_header() {
    let ws = get_with(&[
        "Host: a",
        "Connection: keep-alive, Upgrade",
        "Upgrade: websocket",
    ]);
    assert!(req(&ws).upgrade);
    assert!(!req(&get_with(&["Host: a", "Upgrade: websocket"])).upgrade);
    assert!(!req(&get_with(&["Host: a", "Connection: upgrade"])).upgrade);
    let http10 = b"GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n";
    assert!(!req(http10).upgrade);
}

#[test]
fn expect_100_continue_is_detected() {
    assert!(
        req(&post_with(&[
            "Host: a",
            "Expect: 100-Continue",
            "Content-Length: 9"
        ]))
        .expect_continue
    );
    assert!(!req(&post_with(&["Host: a", "Content-Length: 9"])).expect_continue);
    assert!(
        !req(&post_with(&[
            "Host: a",
            "Expect: 200-ok",
            "Content-Length: 9"
        ]))
        .expect_continue
    );
    assert!(!req(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n").expect_continue);
}

#[test]
fn hop_by_hop_headers_are_flagged() {
    let hop = [
        "Connection: x-named",
        "Keep-Alive: timeout=5",
        "TE: trailers",
        "Trailer: X-Sum",
        "Transfer-Encoding: chunked",
        "Upgrade: websocket",
        "Proxy-Connection: keep-alive",
        "Expect: 100-continue",
        "X-Named: 1",
        "x-named: 2",
    ];
    let end2end = [
        "Host: a",
        "Accept: */*",
        "X-Forwarded-For: 10.0.0.1",
        "X-Named-Not: 3",
    ];
    let mut lines: Vec<&str> = hop.to_vec();
    lines.extend(end2end);
    let wire = post_with(&lines);
    let head = req(&wire);
    for h in &head.headers {
        let line = format!("{}: {}", text(&wire, &h.name), text(&wire, &h.value));
        assert_eq!(h.hop, hop.contains(&line.as_str()), "{line}");
    }
    let cl = req(&post_with(&["Host: a", "Content-Length: 1"]));
    assert!(cl.headers[1].hop);
}

#[test]
fn headers_named_in_connection_are_hop_wherever_they_appear() {
    let wire = get_with(&[
        "Host: a",
        "X-Before: 1",
        "Connection: X-Before, x-after",
        "X-After: 2",
    ]);
    let head = req(&wire);
    let hops: Vec<bool> = head.headers.iter().map(|h| h.hop).collect();
    assert_eq!(hops, [false, true, true, true]);
}

#[test]
fn connection_cannot_make_host_hop_by_hop() {
    let wire = get_with(&["Host: a", "Connection: host"]);
    assert!(!req(&wire).headers[0].hop);
}

#[test]
fn the_reg_name_table_holds_exactly_rfc_3986s_bytes() {
    for b in 0..=255u8 {
        let rfc = b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=".contains(&b);
        assert_eq!(super::REG_NAME[usize::from(b)], rfc, "byte {b:#04x}");
    }
}
