//! Loader tests for `[[listener]]` and `[[listener.route]]` rules.

use super::tests::{assert_error, config, errors, ok};
use crate::snapshot::{Mode, ProxyProtocol};
use crate::template::Template;

/// Two groups `a` and `b`, and `listener` lines from line 4 of the listener table.
fn two_groups(listener: &str) -> String {
    format!(
        "[[listener]]\nbind = \"127.0.0.1:1700\"\nupstream = \"a\"\n{listener}\n\
         [upstreams.a]\nservers = [{{ addr = \"127.0.0.1:1701\" }}]\n\
         [upstreams.b]\nservers = [{{ addr = \"127.0.0.1:1702\" }}]\n"
    )
}

#[test]
fn at_least_one_listener_is_required() {
    let text = "[upstreams.u]\nservers = [{ addr = \"127.0.0.1:1701\" }]\n";
    let e = &errors(text)[0];
    assert_eq!((e.line, e.key.as_str()), (0, "listener"));
    assert_eq!(
        e.to_string(),
        "t.toml: listener: at least one [[listener]] is required"
    );
}

#[test]
fn listener_names_must_be_unique() {
    let text = format!(
        "{}[[listener]]\nname = \"127.0.0.1:1700\"\nbind = \"127.0.0.1:1800\"\nupstream = \"u\"\n",
        config("", "")
    );
    assert_error(&text, 9, "listener[1].name", "duplicate listener name");
}

#[test]
fn listener_names_must_be_label_safe() {
    assert_error(
        &config("name = \"a b\"", ""),
        4,
        "listener[0].name",
        "invalid name",
    );
}

#[test]
fn listener_binds_must_be_unique() {
    let text = format!(
        "{}[[listener]]\nname = \"two\"\nbind = \"127.0.0.1:1700\"\nupstream = \"u\"\n",
        config("name = \"one\"", "")
    );
    assert_error(&text, 10, "listener[1].bind", "already used by listener[0]");
}

#[test]
fn port_zero_binds_never_collide() {
    let text = format!(
        "{}[[listener]]\nname = \"two\"\nbind = \"127.0.0.1:0\"\nupstream = \"u\"\n",
        config("name = \"one\"", "").replace("1700", "0")
    );
    assert_eq!(ok(&text).listeners.len(), 2);
}

#[test]
fn bind_must_be_a_socket_address() {
    let text = config("", "").replace("127.0.0.1:1700", "127.0.0.1");
    assert_error(&text, 2, "listener[0].bind", "host:port");
    let text = config("", "").replace("bind = \"127.0.0.1:1700\"\n", "");
    assert_error(&text, 1, "listener[0].bind", "missing key `bind`");
}

#[test]
fn bind_resolves_host_names() {
    let s = ok(&config("", "").replace("127.0.0.1:1700", "localhost:1700"));
    assert_eq!(s.listeners[0].bind, "127.0.0.1:1700".parse().unwrap());
}

#[test]
fn an_address_that_does_not_resolve_is_an_error() {
    // A 70-character label cannot be put in a DNS query, so the lookup fails without
    // sending anything on the network.
    let host = "a".repeat(70);
    let text = config("", "").replace("127.0.0.1:1700", &format!("{host}.test:1700"));
    assert_error(&text, 2, "listener[0].bind", "cannot resolve");
}

#[test]
fn listener_upstream_must_exist() {
    let text = config("", "").replace("upstream = \"u\"", "upstream = \"v\"");
    assert_error(
        &text,
        3,
        "listener[0].upstream",
        "no upstream named \"v\" (defined: u)",
    );
    let text = config("", "").replace("upstream = \"u\"\n", "");
    assert_error(&text, 1, "listener[0].upstream", "missing key `upstream`");
}

#[test]
fn mode_must_be_http_or_tcp() {
    assert_error(
        &config("mode = \"udp\"", ""),
        4,
        "listener[0].mode",
        "unknown variant `udp`",
    );
    assert_eq!(
        ok(&config("mode = \"tcp\"", "")).listeners[0].mode,
        Mode::Tcp
    );
}

#[test]
fn listener_limits_are_read() {
    let s = ok(&config(
        "client_max_body_size = \"48m\"\nclient_header_timeout = \"5s\"\nclient_body_timeout = \"7s\"\n\
         client_body_buffer_size = \"1m\"\nkeepalive_timeout = \"0s\"\nkeepalive_requests = 5\n\
         max_header_size = \"8k\"",
        "",
    ));
    let l = &s.listeners[0];
    assert_eq!(l.client_max_body_size, 48 << 20);
    assert_eq!(l.client_header_timeout.as_secs(), 5);
    assert_eq!(l.client_body_timeout.as_secs(), 7);
    assert_eq!(l.client_body_buffer_size, 1 << 20);
    assert!(l.keepalive_timeout.is_zero());
    assert_eq!(l.keepalive_requests, 5);
    assert_eq!(l.max_header_size, 8192);
}

#[test]
fn client_max_body_size_zero_means_unlimited() {
    let s = ok(&config("client_max_body_size = 0", ""));
    assert_eq!(s.listeners[0].client_max_body_size, u64::MAX);
}

#[test]
fn client_timeouts_must_be_positive() {
    let key = "listener[0].client_header_timeout";
    assert_error(
        &config("client_header_timeout = \"0s\"", ""),
        4,
        key,
        "greater than 0",
    );
    let key = "listener[0].client_body_timeout";
    assert_error(
        &config("client_body_timeout = \"0ms\"", ""),
        4,
        key,
        "greater than 0",
    );
}

#[test]
fn listener_sizes_and_counts_are_range_checked() {
    let key = "listener[0].max_header_size";
    assert_error(
        &config("max_header_size = 10", ""),
        4,
        key,
        "between 64 and",
    );
    assert_error(
        &config("max_header_size = \"2m\"", ""),
        4,
        key,
        "between 64 and",
    );
    let key = "listener[0].keepalive_requests";
    assert_error(
        &config("keepalive_requests = 0", ""),
        4,
        key,
        "between 1 and",
    );
    let key = "listener[0].client_body_buffer_size";
    assert_error(
        &config("client_body_buffer_size = \"-1k\"", ""),
        4,
        key,
        "negative",
    );
}

#[test]
fn proxy_protocol_is_allowed_on_both_modes() {
    let key = "listener[0].proxy_protocol";
    let s = ok(&config("proxy_protocol = \"v1\"", ""));
    assert_eq!(s.listeners[0].proxy_protocol, ProxyProtocol::V1);
    let s = ok(&config("proxy_protocol = true", ""));
    assert_eq!(s.listeners[0].proxy_protocol, ProxyProtocol::V1);
    let s = ok(&config("proxy_protocol = false", ""));
    assert_eq!(s.listeners[0].proxy_protocol, ProxyProtocol::Off);
    let s = ok(&config("mode = \"tcp\"\nproxy_protocol = true", ""));
    assert_eq!(s.listeners[0].proxy_protocol, ProxyProtocol::V1);
    let s = ok(&config("mode = \"tcp\"\nproxy_protocol = \"v2\"", ""));
    assert_eq!(s.listeners[0].proxy_protocol, ProxyProtocol::V2);
    let text = config("mode = \"tcp\"\nproxy_protocol = \"v3\"", "");
    assert_error(&text, 5, key, "\"v3\"");
}

#[test]
fn tcp_listeners_reject_http_only_keys() {
    let cases = [
        ("gzip = { level = 5 }", "gzip"),
        ("request_headers = { \"X-A\" = \"1\" }", "request_headers"),
        ("response_headers = { \"X-A\" = \"1\" }", "response_headers"),
        (
            "hide_response_headers = [\"server\"]",
            "hide_response_headers",
        ),
    ];
    for (line, key) in cases {
        let text = config(&format!("mode = \"tcp\"\n{line}"), "");
        assert_error(&text, 5, &format!("listener[0].{key}"), "mode = \"tcp\"");
    }
    let text = config(
        "mode = \"tcp\"\n[[listener.route]]\npath_prefix = \"/\"\nupstream = \"u\"",
        "",
    );
    assert_error(&text, 5, "listener[0].route", "mode = \"tcp\"");
}

#[test]
fn tcp_listeners_cannot_hash_on_request_data() {
    let text = config(
        "mode = \"tcp\"",
        "balance = \"hash\"\nhash_key = \"$http_x_id\"",
    );
    assert_error(&text, 3, "listener[0].upstream", "hashes on request data");
    let s = ok(&config(
        "mode = \"tcp\"",
        "balance = \"hash\"\nhash_key = \"$remote_addr\"",
    ));
    assert_eq!(s.listeners[0].mode, Mode::Tcp);
}

#[test]
fn tcp_listeners_cannot_balance_by_prompt() {
    let text = config("mode = \"tcp\"", "balance = \"prompt\"");
    assert_error(&text, 3, "listener[0].upstream", "balances by prompt");
    let s = ok(&config("mode = \"tcp\"", "balance = \"least_time\""));
    assert_eq!(s.listeners[0].mode, Mode::Tcp);
}

#[test]
fn routes_are_read_in_order_with_hosts_normalised() {
    let s = ok(&two_groups(
        "[[listener.route]]\npath_prefix = \"/v1/embeddings\"\nupstream = \"b\"\n\
         [[listener.route]]\nhost = \"API.Example.com:8443\"\nupstream = \"a\"\n",
    ));
    let l = &s.listeners[0];
    assert_eq!(l.routes.len(), 2);
    assert_eq!(l.routes[0].path_prefix.as_deref(), Some("/v1/embeddings"));
    assert_eq!(l.routes[0].group, s.group_by_name("b").unwrap());
    assert_eq!(l.routes[1].host.as_deref(), Some("api.example.com"));
    assert_eq!(l.route(b"/v1/embeddings/x", None, None), 1);
    assert_eq!(l.route(b"/chat", Some(b"api.example.com"), None), 0);
}

#[test]
fn a_route_needs_path_prefix_host_or_model() {
    let text = two_groups("[[listener.route]]\nupstream = \"b\"");
    assert_error(
        &text,
        4,
        "listener[0].route[0]",
        "needs `path_prefix`, `host` or `model`",
    );
}

#[test]
fn model_routes_match_the_body_model_and_make_the_body_read_first() {
    let s = ok(&two_groups(
        "[[listener.route]]\nmodel = \"bge-m3\"\nupstream = \"b\"\n\
         [[listener.route]]\npath_prefix = \"/x\"\nmodel = \"llama\"\nupstream = \"b\"\n",
    ));
    let l = &s.listeners[0];
    assert_eq!(l.routes[0].model.as_deref(), Some("bge-m3"));
    assert!(l.needs.model);
    assert_eq!(l.route(b"/v1/embeddings", None, Some(b"bge-m3")), 1);
    assert_eq!(l.route(b"/v1/embeddings", None, Some(b"BGE-M3")), 0);
    assert_eq!(l.route(b"/v1/embeddings", None, None), 0);
    assert_eq!(l.route(b"/x", None, Some(b"llama")), 1);
    assert_eq!(l.route(b"/y", None, Some(b"llama")), 0);
    // Without a model route (or $request_model) nothing waits for the body.
    let s = ok(&two_groups(
        "[[listener.route]]\npath_prefix = \"/x\"\nupstream = \"b\"\n",
    ));
    assert!(!s.listeners[0].needs.model);
}

#[test]
fn route_models_must_be_plain_json_text() {
    for (model, why) in [
        ("", "must not be empty"),
        ("a\\\"b", "must not contain"),
        ("a\\\\b", "must not contain"),
    ] {
        let text = two_groups(&format!(
            "[[listener.route]]\nmodel = \"{model}\"\nupstream = \"b\""
        ));
        assert_error(&text, 5, "listener[0].route[0].model", why);
    }
}

#[test]
fn route_path_prefix_starts_with_a_slash() {
    let text = two_groups("[[listener.route]]\npath_prefix = \"v1\"\nupstream = \"b\"");
    assert_error(
        &text,
        5,
        "listener[0].route[0].path_prefix",
        "start with `/`",
    );
}

#[test]
fn route_host_must_be_a_host_name() {
    let text = two_groups("[[listener.route]]\nhost = \"a b\"\nupstream = \"b\"");
    assert_error(&text, 5, "listener[0].route[0].host", "invalid host");
}

#[test]
fn route_upstream_must_exist() {
    let text = two_groups("[[listener.route]]\npath_prefix = \"/\"\nupstream = \"c\"");
    assert_error(
        &text,
        6,
        "listener[0].route[0].upstream",
        "no upstream named \"c\"",
    );
    let text = two_groups("[[listener.route]]\npath_prefix = \"/\"");
    assert_error(
        &text,
        4,
        "listener[0].route[0].upstream",
        "missing key `upstream`",
    );
}

#[test]
fn unknown_route_key_is_an_error() {
    let text = two_groups("[[listener.route]]\nhost = \"a\"\npath = \"/\"\nupstream = \"b\"");
    assert_error(
        &text,
        6,
        "listener[0].route[0].path",
        "unknown field `path`",
    );
}

#[test]
fn gzip_is_read_with_nginx_defaults() {
    let s = ok(&config("gzip = {}", ""));
    let g = s.listeners[0].gzip.as_ref().unwrap();
    assert_eq!((g.level, g.min_length), (1, 20));
    assert_eq!(g.types, ["text/html"]);
    let text =
        "gzip = { level = 6, min_length = \"1k\", types = [\"Application/JSON; charset=utf-8\"] }";
    let s = ok(&config(text, ""));
    let g = s.listeners[0].gzip.as_ref().unwrap();
    assert_eq!((g.level, g.min_length), (6, 1024));
    assert_eq!(g.types, ["application/json"]);
    assert!(
        !g.http10,
        "HTTP/1.0 clients get identity bodies unless asked (nginx)"
    );
    let s = ok(&config("gzip = { http_version = \"1.0\" }", ""));
    assert!(s.listeners[0].gzip.as_ref().unwrap().http10);
}

#[test]
fn gzip_http_version_is_1_0_or_1_1() {
    let text = config("gzip = { http_version = \"2\" }", "");
    assert_error(
        &text,
        4,
        "listener[0].gzip.http_version",
        "\"1.0\" or \"1.1\"",
    );
}

#[test]
fn gzip_level_is_1_to_9() {
    let key = "listener[0].gzip.level";
    assert_error(
        &config("gzip = { level = 0 }", ""),
        4,
        key,
        "between 1 and 9",
    );
    assert_error(
        &config("gzip = { level = 10 }", ""),
        4,
        key,
        "between 1 and 9",
    );
}

#[test]
fn gzip_types_are_media_types() {
    let text = config("gzip = { types = [\"json\"] }", "");
    assert_error(&text, 4, "listener[0].gzip.types[0]", "invalid media type");
    let text = config("gzip = { types = [] }", "");
    assert_error(&text, 4, "listener[0].gzip.types", "at least one");
    let text = config("gzip = { levels = 1 }", "");
    assert_error(&text, 4, "listener[0].gzip.levels", "unknown field");
}

#[test]
fn header_rules_keep_the_written_name_and_parse_the_value() {
    let text = "request_headers = { \"X-Real-IP\" = \"$remote_addr\" }\n\
                response_headers = { \"X-Upstream\" = \"$upstream_addr\", \"X-Lit\" = \"$$1\" }";
    let s = ok(&config(text, ""));
    let l = &s.listeners[0];
    assert_eq!(l.request_headers[0].name, "X-Real-IP");
    assert_eq!(l.request_headers[0].lower, "x-real-ip");
    assert_eq!(
        l.request_headers[0].value,
        Template::parse("$remote_addr").unwrap()
    );
    assert_eq!(l.response_headers.len(), 2);
}

#[test]
fn header_names_must_be_tokens() {
    let text = config("request_headers = { \"X Bad\" = \"1\" }", "");
    assert_error(
        &text,
        4,
        "listener[0].request_headers.\"X Bad\"",
        "invalid header name",
    );
}

#[test]
fn header_values_must_be_templates_without_control_characters() {
    let text = config("response_headers = { \"X-A\" = \"$nope\" }", "");
    assert_error(
        &text,
        4,
        "listener[0].response_headers.X-A",
        "unknown variable `$nope`",
    );
    let text = config("request_headers = { \"X-A\" = \"a\\r\\nB: c\" }", "");
    assert_error(
        &text,
        4,
        "listener[0].request_headers.X-A",
        "control characters",
    );
}

#[test]
fn header_names_are_case_insensitive_duplicates() {
    let text = config("request_headers = { \"X-A\" = \"1\", \"x-a\" = \"2\" }", "");
    assert_error(&text, 4, "listener[0].request_headers.x-a", "set twice");
}

#[test]
fn framing_headers_cannot_be_set_or_hidden() {
    let text = config("request_headers = { \"Content-Length\" = \"1\" }", "");
    assert_error(
        &text,
        4,
        "listener[0].request_headers.Content-Length",
        "managed by the proxy",
    );
    let text = config("hide_response_headers = [\"Transfer-Encoding\"]", "");
    assert_error(
        &text,
        4,
        "listener[0].hide_response_headers[0]",
        "managed by the proxy",
    );
}

#[test]
fn hidden_headers_are_lower_cased_once() {
    let s = ok(&config(
        "hide_response_headers = [\"Vary\", \"X-Powered-By\", \"vary\"]",
        "",
    ));
    assert_eq!(
        s.listeners[0].hide_response_headers,
        ["vary", "x-powered-by"]
    );
    let text = config("hide_response_headers = [\"ok\", \"a:b\"]", "");
    assert_error(
        &text,
        4,
        "listener[0].hide_response_headers[1]",
        "invalid header name",
    );
}

#[test]
fn unknown_listener_key_is_an_error() {
    assert_error(
        &config("port = 1", ""),
        4,
        "listener[0].port",
        "unknown field `port`",
    );
}
