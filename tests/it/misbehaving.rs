//! Backends that break HTTP: garbage or oversized response heads (502), responses with
//! both framings (502), bytes past the end of a body. None of it may reach another request.

use std::time::Duration;

use crate::support::*;

fn garbage_from_the_backend_gives_502(driver: &str) {
    let b = Backend::start(|_, c| {
        c.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n");
        c.close();
    });
    let p = Proxy::start(driver, &single(b.addr()));
    let r = get(p.addr, "/");
    assert_eq!(r.status, 502, "{}{}", r.head_text(), r.text());
}
both_drivers!(garbage_from_the_backend_gives_502);

fn oversized_response_head_gives_502(driver: &str) {
    let b = Backend::start(|_, c| {
        let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..2000 {
            head.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "v".repeat(100)).as_bytes());
        }
        head.extend_from_slice(b"Content-Length: 2\r\n\r\nok");
        c.write(&head);
    });
    let p = Proxy::start(driver, &single(b.addr()));
    let r = get(p.addr, "/");
    assert_eq!(r.status, 502, "{}", r.head_text());
}
both_drivers!(oversized_response_head_gives_502);

fn bytes_past_the_end_of_a_response_never_reach_the_next_request(driver: &str) {
    let b = Backend::start(|req, c| {
        if req.path() == "/extra" {
            c.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbodyHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged");
        } else {
            c.ok("real");
        }
    });
    let p = Proxy::start(driver, &single(b.addr()));
    let mut c = Client::connect(p.addr);
    let r = c.request("GET /extra HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.text(), "body");
    std::thread::sleep(Duration::from_millis(50));
    for _ in 0..3 {
        let r = c.request("GET /next HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(r.text(), "real", "a smuggled response was served");
    }
    assert!(c.leftover().is_empty());
}
both_drivers!(bytes_past_the_end_of_a_response_never_reach_the_next_request);

fn response_with_length_and_chunked_is_502_and_not_reused(driver: &str) {
    let b = Backend::start(|req, c| {
        if req.path() == "/both" {
            c.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
        } else {
            c.ok("next");
        }
    });
    let toml = config("", "", &[server(b.addr(), "max_fails = 0")]);
    let p = Proxy::start(driver, &toml);
    let mut c = Client::connect(p.addr);
    let r = c.request("GET /both HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(get(p.addr, "/n").text(), "next");
    assert_eq!(
        b.connections(),
        2,
        "an upstream connection with ambiguous framing was reused"
    );
}
both_drivers!(response_with_length_and_chunked_is_502_and_not_reused);

fn many_pipelined_requests_in_one_write_come_back_in_order(driver: &str) {
    let b = Backend::start(|req, c| {
        c.ok(req.path());
    });
    let p = Proxy::start(driver, &single(b.addr()));
    let mut c = Client::connect(p.addr);
    let burst: Vec<String> = (0..100)
        .map(|i| format!("GET /{i} HTTP/1.1\r\nHost: t\r\n\r\n"))
        .collect();
    let texts: Vec<String> = c.pipeline(&burst).iter().map(Response::text).collect();
    let want: Vec<String> = (0..100).map(|i| format!("/{i}")).collect();
    assert_eq!(texts, want);
}
both_drivers!(many_pipelined_requests_in_one_write_come_back_in_order);

fn header_case_order_and_repeats_are_kept_both_ways(driver: &str) {
    let b = Backend::start(|_, c| {
        c.respond(
            200,
            &[
                ("Set-Cookie", "a=1"),
                ("X-MiXeD-Case", "v"),
                ("Set-Cookie", "b=2"),
            ],
            b"ok",
        );
    });
    let p = Proxy::start(driver, &single(b.addr()));
    let mut c = Client::connect(p.addr);
    let r = c
        .request("GET / HTTP/1.1\r\nHost: t\r\nX-Multi: one\r\nX-CaSe: up\r\nX-Multi: two\r\n\r\n");
    assert_eq!(r.header_all("set-cookie"), ["a=1", "b=2"]);
    assert!(
        r.head_text().contains("X-MiXeD-Case: v\r\n"),
        "{}",
        r.head_text()
    );
    let req = &b.requests()[0];
    assert_eq!(req.header_all("x-multi"), ["one", "two"]);
    assert!(
        req.head_text().contains("X-CaSe: up\r\n"),
        "{}",
        req.head_text()
    );
}
both_drivers!(header_case_order_and_repeats_are_kept_both_ways);

fn too_many_request_headers_get_431(driver: &str) {
    let b = Backend::named("a");
    let p = Proxy::start(driver, &single(b.addr()));
    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let r = Client::connect(p.addr).request(format!("GET / HTTP/1.1\r\nHost: t\r\n{many}\r\n"));
    assert_eq!(r.status, 431);
    let some: String = (0..100).map(|i| format!("X-H{i}: v\r\n")).collect();
    let r = Client::connect(p.addr).request(format!("GET / HTTP/1.1\r\nHost: t\r\n{some}\r\n"));
    assert_eq!(r.status, 200);
    assert_eq!(b.request_count(), 1);
}
both_drivers!(too_many_request_headers_get_431);
