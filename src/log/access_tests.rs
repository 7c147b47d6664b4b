//! Access-log lines, byte for byte, and the worker buffer's hand-off rules.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::*;
use crate::config::{COMBINED_FORMAT, UPSTREAM_FORMAT};
use crate::http::head::{HeadLimits, parse_request};
use crate::http::vars::{RequestVars, UpstreamTry, partial_head};
use crate::log::{ACCESS_QUEUE, Counters, channel};
use crate::snapshot::{LogLevel, LogTarget};

const WIRE: &[u8] = b"GET /v1/models?x=1 HTTP/1.1\r\nHost: api.example.com\r\n\
    User-Agent: curl/8.5.0\r\nReferer: http://r/\r\n\r\n";

fn peer() -> SocketAddr {
    "192.0.2.7:51234".parse().unwrap()
}

/// Renders `format` for `wire` (a 200 with 5 body bytes unless `edit` says otherwise).
fn line(format: &str, wire: &[u8], edit: impl FnOnce(&mut RequestVars<'_>)) -> String {
    let head = parse_request(
        wire,
        HeadLimits {
            max_header_size: 16 * 1024,
        },
    )
    .unwrap()
    .unwrap();
    let mut vars = RequestVars {
        buf: wire,
        head: &head,
        partial: false,
        peer: peer(),
        worker: 3,
        started: Instant::now(),
        upstream: None,
        tries: Vec::new(),
        status: 200,
        body_bytes_sent: 5,
        request_length: wire.len() as u64,
        model: None,
    };
    edit(&mut vars);
    render(format, &vars)
}

fn render(format: &str, vars: &RequestVars<'_>) -> String {
    let mut out = Vec::new();
    render_line(&Template::parse(format).unwrap(), vars, &mut out);
    String::from_utf8(out).unwrap()
}

/// Replaces the `[$time_local]` stamp with `[TIME]` after checking its shape
/// (`21/Nov/2026:08:41:44 +0000`).
fn untimed(line: &str) -> String {
    let open = line.find('[').expect("a [time]") + 1;
    let stamp = &line[open..open + 26];
    let shape: String = stamp
        .chars()
        .map(|c| if c.is_ascii_digit() { '9' } else { c })
        .collect();
    assert_eq!(&shape[..3], "99/", "{stamp}");
    assert_eq!(&shape[6..], "/9999:99:99:99 +9999", "{stamp}");
    assert!(stamp.ends_with(" +0000"), "{stamp}");
    assert_eq!(&line[open + 26..open + 27], "]");
    format!("{}TIME{}", &line[..open], &line[open + 26..])
}

fn try_on(addr: &str, status: u16, ms: [Option<u64>; 4]) -> UpstreamTry {
    let mut t = UpstreamTry::new(addr.parse().unwrap(), Instant::now(), true);
    t.status = status;
    let d = |m: Option<u64>| m.map(Duration::from_millis);
    (t.connect, t.first_byte, t.first_token, t.response) = (d(ms[0]), d(ms[1]), d(ms[2]), d(ms[3]));
    t
}

#[test]
fn combined_is_nginx_combined() {
    let got = untimed(&line(COMBINED_FORMAT, WIRE, |_| {}));
    assert_eq!(
        got,
        "192.0.2.7 - - [TIME] \"GET /v1/models?x=1 HTTP/1.1\" 200 5 \"http://r/\" \
         \"curl/8.5.0\"\n"
    );
}

#[test]
fn absent_headers_render_as_a_dash() {
    let wire = b"HEAD / HTTP/1.0\r\n\r\n";
    let got = untimed(&line(COMBINED_FORMAT, wire, |v| v.status = 404));
    assert_eq!(
        got,
        "192.0.2.7 - - [TIME] \"HEAD / HTTP/1.0\" 404 5 \"-\" \"-\"\n"
    );
}

#[test]
fn upstream_format_names_every_server_tried() {
    let one = line(UPSTREAM_FORMAT, WIRE, |v| {
        v.tries.push(try_on("127.0.0.1:9001", 200, [None; 4]));
    });
    assert!(
        one.ends_with("\"curl/8.5.0\" to: 127.0.0.1:9001\n"),
        "{one}"
    );
    let two = line(UPSTREAM_FORMAT, WIRE, |v| {
        v.tries.push(try_on("127.0.0.1:9001", 502, [None; 4]));
        v.tries.push(try_on("[::1]:9002", 200, [None; 4]));
    });
    assert!(two.ends_with(" to: 127.0.0.1:9001, [::1]:9002\n"), "{two}");
    let none = line(UPSTREAM_FORMAT, WIRE, |v| v.status = 502);
    assert!(
        none.ends_with("\" 502 5 \"http://r/\" \"curl/8.5.0\" to: -\n"),
        "{none}"
    );
}

#[test]
fn custom_template_renders_upstream_times_per_attempt() {
    let format = "$status $upstream_addr $upstream_status c=$upstream_connect_time \
                  h=$upstream_first_byte_time t=$upstream_first_token_time \
                  r=$upstream_response_time $request_model w$worker $request_uri";
    let wire = b"POST /v1/chat?a=b HTTP/1.1\r\nHost: x\r\n\r\n{\"model\":\"m-7b\"}";
    let got = line(format, wire, |v| {
        v.tries
            .push(try_on("10.0.0.1:80", 502, [None, None, None, Some(3)]));
        v.tries.push(try_on(
            "10.0.0.2:80",
            200,
            [Some(0), Some(1_250), Some(61_002), Some(72_345)],
        ));
        let at = wire.len() - 6;
        v.model = Some(at..at + 4);
    });
    assert_eq!(
        got,
        "200 10.0.0.1:80, 10.0.0.2:80 502, 200 c=-, 0.000 h=-, 1.250 t=-, 61.002 \
         r=0.003, 72.345 m-7b w3 /v1/chat?a=b\n"
    );
}

#[test]
fn request_without_a_server_or_model_has_dashes() {
    let format = "$upstream_addr $upstream_status $upstream_response_time $request_model $args";
    let got = line(format, b"GET / HTTP/1.0\r\n\r\n", |_| {});
    assert_eq!(got, "- - - - -\n");
}

#[test]
fn quotes_backslashes_and_non_ascii_are_escaped_like_nginx() {
    let wire = "GET /caf\u{e9} HTTP/1.0\r\nUser-Agent: a\"b\\c\u{e9}\r\n\r\n".as_bytes();
    let got = line("$request_uri \"$http_user_agent\"", wire, |_| {});
    assert_eq!(got, "/caf\\xC3\\xA9 \"a\\x22b\\x5Cc\\xC3\\xA9\"\n");
}

#[test]
fn a_head_that_never_parsed_logs_what_arrived() {
    let log = |received: &[u8], status: u16| {
        let head = partial_head(received);
        let vars = RequestVars {
            buf: received,
            head: &head,
            partial: true,
            peer: peer(),
            worker: 0,
            started: Instant::now(),
            upstream: None,
            tries: Vec::new(),
            status,
            body_bytes_sent: 0,
            request_length: received.len() as u64,
            model: None,
        };
        untimed(&render(COMBINED_FORMAT, &vars))
    };
    assert_eq!(
        log(b"GARBAGE\r\n\r\n", 400),
        "192.0.2.7 - - [TIME] \"GARBAGE\" 400 0 \"-\" \"-\"\n"
    );
    assert_eq!(
        log(b"", 408),
        "192.0.2.7 - - [TIME] \"-\" 408 0 \"-\" \"-\"\n"
    );
    assert_eq!(
        log(b"\x16\x03\x01\x02", 400),
        "192.0.2.7 - - [TIME] \"\\x16\\x03\\x01\\x02\" 400 0 \"-\" \"-\"\n"
    );
    let head = partial_head(b"GET /x?y=1 HTTP/1.1\r\nHost: a\r\nX: ");
    assert_eq!(head.method, 0..3);
    assert_eq!(head.path, 4..10);
}

fn settings(format: &str, on: bool) -> LogSettings {
    LogSettings {
        level: LogLevel::Info,
        error_log: LogTarget::Stderr,
        access_log: on.then(|| LogTarget::File("unused".into())),
        access_format: Template::parse(format).unwrap(),
        tcp_access_format: Template::parse(format).unwrap(),
    }
}

/// A `VarSource` that renders every variable as `v`.
struct Fixed;

impl VarSource for Fixed {
    fn write_var(&self, _: &crate::template::Var, out: &mut Vec<u8>) {
        out.push(b'v');
    }
}

fn leaked() -> &'static Counters {
    Box::leak(Box::new(Counters::new()))
}

#[test]
fn lines_beyond_a_full_queue_are_dropped_and_counted() {
    let counters = leaked();
    let (sink, drain) = channel(counters);
    for _ in 0..ACCESS_QUEUE {
        sink.access.try_send(b"old\n".to_vec()).unwrap();
    }
    let log = LocalAccessLog::with_sink(Some(sink));
    let on = settings("$status", true);
    for _ in 0..7 {
        log.write(&on, &Fixed);
    }
    log.flush();
    assert_eq!(counters.access_dropped.load(Ordering::Relaxed), 7);
    // The buffer was kept for the next lines, emptied.
    assert!(log.buf.borrow().is_empty() && log.buf.borrow().capacity() > 0);
    drain.access.recv().unwrap();
    log.write(&on, &Fixed);
    log.flush();
    assert_eq!(counters.access_dropped.load(Ordering::Relaxed), 7);
    assert_eq!(drain.access.try_iter().last().unwrap(), b"v\n");
}

#[test]
fn a_full_buffer_is_handed_over_whole_and_spares_are_reused() {
    let (sink, drain) = channel(leaked());
    let log = LocalAccessLog::with_sink(Some(sink));
    let on = settings("line $status", true);
    let mut written = 0;
    while drain.access.is_empty() {
        log.write(&on, &Fixed);
        written += 1;
        assert!(written < FLUSH_AT, "never handed over");
    }
    let batch = drain.access.recv().unwrap();
    assert!(batch.len() >= FLUSH_AT && batch.len() < FLUSH_AT + 7);
    assert_eq!(batch.len(), written * 7);
    assert!(batch.ends_with(b"line v\n"));
    // The log thread's emptied buffer is what the next line is written into.
    let mut spare = batch;
    spare.clear();
    let capacity = spare.capacity();
    drain.spare.send(spare).unwrap();
    log.write(&on, &Fixed);
    assert_eq!(log.buf.borrow().capacity(), capacity);
}

#[test]
fn tick_hands_over_a_partial_buffer_and_off_renders_nothing() {
    let (sink, drain) = channel(leaked());
    let log = LocalAccessLog::with_sink(Some(sink));
    log.write(&settings("$status", false), &Fixed);
    log.tick();
    assert!(drain.access.is_empty());
    log.write(&settings("a $status", true), &Fixed);
    log.tick();
    assert_eq!(drain.access.try_recv().unwrap(), b"a v\n");
    log.tick();
    assert!(drain.access.is_empty(), "an empty buffer is not sent");
    log.write(&settings("b", true), &Fixed);
    drop(log);
    assert_eq!(drain.access.try_recv().unwrap(), b"b\n", "drop flushes");
}
