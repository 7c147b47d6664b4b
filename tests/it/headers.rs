//! Headers on the way up and down: hop-by-hop removal, X-Forwarded-*, X-Real-IP, Host,
//! and the listener's `request_headers`, `response_headers` and `hide_response_headers`.

use crate::support::*;

fn names_connection(values: &[&str], token: &str) -> bool {
    values
        .iter()
        .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

fn hop_by_hop_request_headers_are_not_forwarded(driver: &str) {
    let b = Backend::named("a");
    let p = Proxy::start(driver, &single(b.addr()));
    let mut c = Client::connect(p.addr);
    let r = c.request(
        "GET / HTTP/1.1\r\nHost: test\r\nConnection: keep-alive, X-Drop-Me\r\nX-Drop-Me: secret\r\n\
         Keep-Alive: timeout=5\r\nTE: trailers\r\nTrailer: X-Checksum\r\nProxy-Connection: keep-alive\r\n\
         X-Keep-Me: yes\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let req = &b.requests()[0];
    let head = req.head_text();
    for name in [
        "x-drop-me",
        "keep-alive",
        "te",
        "trailer",
        "proxy-connection",
    ] {
        assert!(
            req.header(name).is_none(),
            "{name} forwarded upstream:\n{head}"
        );
    }
    assert!(
        !names_connection(&req.header_all("connection"), "x-drop-me"),
        "{head}"
    );
    assert_eq!(req.header("x-keep-me"), Some("yes"), "{head}");
    assert!(req.header("upgrade").is_none());
}
both_drivers!(hop_by_hop_request_headers_are_not_forwarded);

fn hop_by_hop_response_headers_are_not_passed_down(driver: &str) {
    let b = Backend::start(|_, c| {
        c.respond(
            200,
            &[
                ("Connection", "X-Secret"),
                ("X-Secret", "internal"),
                ("Keep-Alive", "timeout=5, max=99"),
                ("Proxy-Connection", "keep-alive"),
                ("X-Keep-Me", "yes"),
            ],
            b"body",
        );
    });
    let p = Proxy::start(driver, &single(b.addr()));
    let mut c = Client::connect(p.addr);
    let r = c.request("GET / HTTP/1.1\r\nHost: test\r\n\r\n");
    let head = r.head_text();
    assert_eq!(r.status, 200, "{head}");
    assert!(r.header("x-secret").is_none(), "{head}");
    assert!(r.header("proxy-connection").is_none(), "{head}");
    assert!(
        !r.header_all("keep-alive")
            .iter()
            .any(|v| v.contains("max=99")),
        "{head}"
    );
    assert!(
        !names_connection(&r.header_all("connection"), "x-secret"),
        "{head}"
    );
    assert_eq!(r.header("x-keep-me"), Some("yes"));
    assert_eq!(r.text(), "body");
}
both_drivers!(hop_by_hop_response_headers_are_not_passed_down);

fn forwarding_headers_are_added_and_host_is_kept(driver: &str) {
    let b = Backend::named("a");
    let p = Proxy::start(driver, &single(b.addr()));
    let mut c = Client::connect(p.addr);
    c.request("GET /x HTTP/1.1\r\nHost: Example.COM:8080\r\nX-Forwarded-For: 203.0.113.9\r\n\r\n");
    c.request("GET /y HTTP/1.1\r\nHost: second.example\r\n\r\n");
    let log = b.requests();
    let (first, second) = (&log[0], &log[1]);
    assert_eq!(
        first.header_all("x-forwarded-for"),
        ["203.0.113.9, 127.0.0.1"],
        "{}",
        first.head_text()
    );
    assert_eq!(first.header("x-forwarded-proto"), Some("http"));
    assert_eq!(first.header("x-real-ip"), Some("127.0.0.1"));
    assert_eq!(first.header_all("host"), ["Example.COM:8080"]);
    assert_eq!(
        second.header_all("x-forwarded-for"),
        ["127.0.0.1"],
        "{}",
        second.head_text()
    );
    assert_eq!(second.header("host"), Some("second.example"));
}
both_drivers!(forwarding_headers_are_added_and_host_is_kept);

fn configured_request_and_response_headers_are_set_and_hidden_ones_dropped(driver: &str) {
    let b = Backend::start(|_, c| {
        c.respond(
            200,
            &[
                ("Vary", "Accept-Encoding"),
                ("X-Internal", "1"),
                ("X-Upstream", "forged"),
                ("X-Kept", "k"),
            ],
            b"ok",
        );
    });
    let listener = r#"request_headers = { "X-Listener" = "it", "X-Client" = "$remote_addr" }
response_headers = { "X-Upstream" = "$upstream_addr", "X-Remote" = "$remote_addr" }
hide_response_headers = ["Vary", "X-Internal"]"#;
    let p = Proxy::start(driver, &config(listener, "", &[server(b.addr(), "")]));
    let mut c = Client::connect(p.addr);
    let r = c.request("GET / HTTP/1.1\r\nHost: test\r\nX-Listener: spoofed\r\n\r\n");
    let head = r.head_text();
    assert_eq!(r.status, 200, "{head}");
    assert_eq!(
        r.header_all("x-upstream"),
        [b.addr().to_string().as_str()],
        "{head}"
    );
    assert_eq!(r.header("x-remote"), Some("127.0.0.1"), "{head}");
    assert!(
        r.header("vary").is_none() && r.header("x-internal").is_none(),
        "{head}"
    );
    assert_eq!(r.header("x-kept"), Some("k"));
    let req = &b.requests()[0];
    assert_eq!(req.header_all("x-listener"), ["it"], "{}", req.head_text());
    assert_eq!(req.header("x-client"), Some("127.0.0.1"));
}
both_drivers!(configured_request_and_response_headers_are_set_and_hidden_ones_dropped);
