//! Routing: `[[listener.route]]` by path prefix and by host (first match wins), the
//! listener's default upstream otherwise, and absolute-form targets that must not escape.

use crate::support::*;

/// Three named backends behind upstreams `a` (default), `b` and `c`.
fn routed(driver: &str) -> (Proxy, [Backend; 3]) {
    let listener = r#"[[listener]]
name = "it"
bind = "$BIND"
mode = "http"
upstream = "a"

[[listener.route]]
path_prefix = "/v1/embeddings"
upstream = "b"

[[listener.route]]
host = "api.example.com"
upstream = "c"

[[listener.route]]
path_prefix = "/both"
host = "h.example"
upstream = "b"
"#;
    three_upstreams(driver, ["a", "b", "c"], listener)
}

fn requests_are_routed_by_path_prefix_and_host_else_default(driver: &str) {
    let (p, _backends) = routed(driver);
    let cases = [
        ("/v1/embeddings", "x.example", "b"),
        ("/v1/embeddings/batch?x=1", "api.example.com", "b"),
        ("/v1/embedding", "x.example", "a"),
        ("/v1/chat", "api.example.com", "c"),
        ("/", "API.Example.COM:8080", "c"),
        ("/both/x", "h.example", "b"),
        ("/both/x", "other.example", "a"),
        ("/other", "h.example", "a"),
        ("/", "x.example", "a"),
    ];
    let mut c = Client::connect(p.addr);
    for (path, host, want) in cases {
        let r = c.request(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n"));
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), want, "GET {path} Host: {host}");
    }
}
both_drivers!(requests_are_routed_by_path_prefix_and_host_else_default);

fn absolute_form_target_goes_to_the_configured_upstream_as_origin_form(driver: &str) {
    let (p, backends) = routed(driver);
    let mut c = Client::connect(p.addr);
    let r = c.request("GET http://evil.example:9/x?y=1 HTTP/1.1\r\nHost: evil.example:9\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "a");
    let seen = &backends[0].requests()[0];
    assert_eq!(seen.target, "/x?y=1", "{}", seen.head_text());
    // The authority of an absolute-form target is the host to route on (RFC 9112 3.2.2).
    let r = c.request("GET http://api.example.com HTTP/1.1\r\nHost: api.example.com\r\n\r\n");
    assert_eq!(r.text(), "c");
    assert_eq!(backends[2].requests()[0].target, "/");
}
both_drivers!(absolute_form_target_goes_to_the_configured_upstream_as_origin_form);
