//! Wire-transcript tests for response heads: bytes from a server in, head (or error) out.

use super::*;

fn res(wire: &[u8], request_was_head: bool) -> ResponseHead {
    match parse_response(wire, request_was_head, 16 * 1024) {
        Ok(Some(head)) => head,
        other => panic!(
            "{:?}: expected a head, got {other:?}",
            String::from_utf8_lossy(wire)
        ),
    }
}

fn res_err(wire: &[u8]) -> HeadError {
    match parse_response(wire, false, 16 * 1024) {
        Err(e) => e,
        Ok(head) => panic!(
            "{:?}: expected an error, got {head:?}",
            String::from_utf8_lossy(wire)
        ),
    }
}

#[test]
fn response_with_content_length_fills_every_field() {
    let wire = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello";
    let head = res(wire, false);
    assert_eq!(head.len, wire.len() - 5);
    assert_eq!((head.status, head.version), (200, Version::Http11));
    assert_eq!(head.reason(wire), b"OK");
    assert_eq!(head.body, ResponseBody::Length(5));
    assert!(head.keep_alive);
    assert_eq!(head.header(wire, "content-type"), Some(&b"text/plain"[..]));
    assert_eq!(
        head.headers.iter().map(|h| h.hop).collect::<Vec<_>>(),
        [false, true]
    );
}

#[test]
fn reason_phrase_may_be_empty_missing_or_non_ascii() {
    let wire = b"HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n";
    assert_eq!(res(wire, false).reason(wire), b"");
    let wire = b"HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(res(wire, false).reason(wire), b"");
    let wire = b"HTTP/1.1 200 Tr\xe8s bien\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(res(wire, false).reason(wire), b"Tr\xe8s bien");
    let wire = b"\r\nHTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(res(wire, false).reason(wire), b"Internal Server Error");
}

#[test]
fn responses_without_a_body_are_none() {
    let with_cl = "Content-Length: 10\r\nTransfer-Encoding: chunked\r\n\r\n";
    for status in [
        "100 Continue",
        "101 Switching Protocols",
        "204 No Content",
        "304 Not Modified",
    ] {
        let wire = format!("HTTP/1.1 {status}\r\n{with_cl}");
        assert_eq!(
            res(wire.as_bytes(), false).body,
            ResponseBody::None,
            "{status}"
        );
    }
    let head = res(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", true);
    assert_eq!((head.body, head.keep_alive), (ResponseBody::None, true));
}

#[test]
fn a_response_with_both_content_length_and_transfer_encoding_is_malformed() {
    let head = res(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        false,
    );
    assert_eq!((head.body, head.keep_alive), (ResponseBody::Chunked, true));
    for both in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 7\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nContent-Length: 7\r\nTransfer-Encoding: chunked\r\n\r\n",
    ] {
        assert!(matches!(res_err(both), HeadError::Malformed(_)), "{both:?}");
    }
}

#[test]
fn chunked_in_an_http10_response_is_decoded_but_not_reused() {
    let wire = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n";
    let head = res(wire, false);
    assert_eq!((head.body, head.keep_alive), (ResponseBody::Chunked, false));
}

#[test]
fn response_coding_other_than_chunked_last_reads_until_close() {
    for te in ["gzip", "chunked, gzip", "identity"] {
        let wire = format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: {te}\r\n\r\n");
        let head = res(wire.as_bytes(), false);
        assert_eq!(
            (head.body, head.keep_alive),
            (ResponseBody::Eof, false),
            "{te}"
        );
    }
    assert!(matches!(
        res_err(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"),
        HeadError::Malformed(_)
    ));
}

#[test]
fn response_without_framing_reads_until_close() {
    let head = res(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n",
        false,
    );
    assert_eq!((head.body, head.keep_alive), (ResponseBody::Eof, false));
}

#[test]
fn invalid_or_conflicting_response_content_length_is_malformed() {
    for cl in [
        "Content-Length: -1",
        "Content-Length: 1, 2",
        "Content-Length: 5\r\nContent-Length: 6",
    ] {
        let wire = format!("HTTP/1.1 200 OK\r\n{cl}\r\n\r\n");
        assert!(
            matches!(res_err(wire.as_bytes()), HeadError::Malformed(_)),
            "{cl}"
        );
    }
    let same = res(
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
        false,
    );
    assert_eq!(same.body, ResponseBody::Length(3));
}

#[test]
fn response_keep_alive_follows_version_and_connection() {
    let cases: [(&[u8], bool); 5] = [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", true),
        (
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            false,
        ),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false),
        (
            b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n",
            true,
        ),
        (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n", false),
    ];
    for (wire, keep_alive) in cases {
        assert_eq!(
            res(wire, false).keep_alive,
            keep_alive,
            "{:?}",
            String::from_utf8_lossy(wire)
        );
    }
}

#[test]
fn response_hop_flags_follow_connection() {
    let wire = b"HTTP/1.1 200 OK\r\nConnection: X-Secret\r\nX-Secret: 1\r\nKeep-Alive: 5\r\nServer: s\r\nContent-Length: 0\r\n\r\n";
    let hops: Vec<bool> = res(wire, false).headers.iter().map(|h| h.hop).collect();
    assert_eq!(hops, [true, true, true, false, true]);
}

#[test]
fn incomplete_response_asks_for_more_until_too_large() {
    let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    for end in 0..wire.len() {
        assert!(
            parse_response(&wire[..end], false, 1024)
                .expect("valid so far")
                .is_none()
        );
    }
    assert_eq!(
        parse_response(&wire[..20], false, 19).unwrap_err(),
        HeadError::TooLarge
    );
    assert_eq!(
        parse_response(wire, false, wire.len() - 1).unwrap_err(),
        HeadError::TooLarge
    );
}

#[test]
fn response_with_more_than_max_headers_is_too_large() {
    let mut wire = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..=MAX_HEADERS {
        wire.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    wire.extend_from_slice(b"\r\n");
    assert_eq!(
        parse_response(&wire, false, 1 << 20).unwrap_err(),
        HeadError::TooLarge
    );
}

#[test]
fn malformed_responses_are_refused() {
    for wire in [
        &b"HTTP/1.1 2000 OK\r\n\r\n"[..],
        b"HTTP/1.1 099 Odd\r\n\r\n",
        b"HTTP/2 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX : a\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: a\0\r\n\r\n",
        b"ICY 200 OK\r\n\r\n",
    ] {
        assert!(matches!(res_err(wire), HeadError::Malformed(_)), "{wire:?}");
    }
}

#[test]
fn bare_lf_is_accepted_in_responses() {
    let wire = b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok";
    let head = res(wire, false);
    assert_eq!(
        (head.len, head.body),
        (wire.len() - 2, ResponseBody::Length(2))
    );
    assert_eq!(head.reason(wire), b"OK");
}
