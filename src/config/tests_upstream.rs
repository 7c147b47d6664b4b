//! Loader tests for `[upstreams.NAME]` rules: servers, balancing, retries, health, queue.

use std::time::Duration;

use super::tests::{assert_error, config, errors, ok};
use crate::balance::{MAX_SERVERS, Policy};
use crate::snapshot::NextUpstream;
use crate::template::Template;

/// A file whose group `u` has exactly `servers` (the array starts on line 6).
fn servers(servers: &str) -> String {
    config("", "").replace("[{ addr = \"127.0.0.1:1701\" }]", servers)
}

#[test]
fn upstream_values_are_read() {
    let s = ok(&config(
        "",
        "balance = \"least_conn\"\nkeepalive = 0\nkeepalive_requests = 10\nkeepalive_timeout = \"0s\"\n\
         connect_timeout = \"5s\"\nsend_timeout = \"900s\"\nread_timeout = \"15m\"\n\
         next_upstream_tries = 3\nnext_upstream_timeout = \"30s\"\nretry_non_idempotent = true\n\
         slow_start = \"30s\"",
    ));
    let g = &s.groups[0];
    assert_eq!(g.peers.policy(), Policy::LeastConn);
    assert_eq!((g.keepalive, g.keepalive_requests), (0, 10));
    assert!(g.keepalive_timeout.is_zero());
    assert_eq!(g.connect_timeout, Duration::from_secs(5));
    assert_eq!(g.send_timeout, Duration::from_secs(900));
    assert_eq!(g.read_timeout, Duration::from_secs(900));
    assert_eq!(g.next_upstream_tries, 3);
    assert_eq!(g.next_upstream_timeout, Duration::from_secs(30));
    assert!(g.retry_non_idempotent);
    assert_eq!(g.slow_start, Some(Duration::from_secs(30)));
    assert_eq!(
        ok(&config("", "slow_start = \"0s\"")).groups[0].slow_start,
        None
    );
}

#[test]
fn groups_are_ordered_by_name_and_found_by_name() {
    let text = config("", "").replace("upstream = \"u\"", "upstream = \"b\"")
        + "[upstreams.b]\nservers = [{ addr = \"127.0.0.1:1702\" }]\n";
    let s = ok(&text);
    let names: Vec<&str> = s.groups.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["b", "u"]);
    assert_eq!(s.listeners[0].group, s.group_by_name("b").unwrap());
}

#[test]
fn every_balance_policy_is_accepted() {
    let cases = [
        ("round_robin", Policy::RoundRobin),
        ("least_conn", Policy::LeastConn),
        ("ip_hash", Policy::IpHash),
        ("random_two", Policy::RandomTwo),
        ("least_time", Policy::LeastTime),
        ("prompt", Policy::Prompt),
    ];
    for (name, policy) in cases {
        let s = ok(&config("", &format!("balance = \"{name}\"")));
        assert_eq!(s.groups[0].peers.policy(), policy);
    }
    let text = config("", "balance = \"fastest\"");
    assert_error(&text, 7, "upstreams.u.balance", "unknown variant `fastest`");
}

#[test]
fn hash_needs_a_hash_key_template() {
    assert_error(
        &config("", "balance = \"hash\""),
        7,
        "upstreams.u.balance",
        "needs `hash_key`",
    );
    let text = config("", "balance = \"hash\"\nhash_key = \"$bogus\"");
    assert_error(
        &text,
        8,
        "upstreams.u.hash_key",
        "unknown variable `$bogus`",
    );
    let s = ok(&config(
        "",
        "balance = \"hash\"\nhash_key = \"$request_uri\"",
    ));
    assert_eq!(
        s.groups[0].hash_key,
        Some(Template::parse("$request_uri").unwrap())
    );
}

#[test]
fn hash_key_without_variables_is_an_error() {
    let text = config("", "balance = \"hash\"\nhash_key = \"session\"");
    assert_error(&text, 8, "upstreams.u.hash_key", "no variables");
}

#[test]
fn hash_key_without_hash_balance_is_an_error() {
    let text = config("", "hash_key = \"$remote_addr\"");
    assert_error(
        &text,
        7,
        "upstreams.u.hash_key",
        "only with balance = \"hash\"",
    );
    let text = config("", "balance = \"ip_hash\"\nhash_key = \"$remote_addr\"");
    assert_error(
        &text,
        8,
        "upstreams.u.hash_key",
        "only with balance = \"hash\"",
    );
}

#[test]
fn first_byte_timeout_defaults_to_read_timeout() {
    let s = ok(&config("", "read_timeout = \"90s\""));
    assert_eq!(s.groups[0].first_byte_timeout, Duration::from_secs(90));
    let s = ok(&config(
        "",
        "read_timeout = \"90s\"\nfirst_byte_timeout = \"15m\"",
    ));
    assert_eq!(s.groups[0].first_byte_timeout, Duration::from_secs(900));
    let text = config("", "first_byte_timeout = \"0s\"");
    assert_error(&text, 7, "upstreams.u.first_byte_timeout", "");
}

#[test]
fn prompt_settings_belong_to_their_policies() {
    let s = ok(&config(
        "",
        "balance = \"prompt\"\nprompt_prefix = \"4k\"\nhash_balance_factor = 150",
    ));
    assert_eq!(s.groups[0].prompt_prefix, 4096);
    assert_eq!(s.listeners[0].needs.prompt_prefix, 4096);
    assert_eq!(
        ok(&config("", "balance = \"prompt\"")).groups[0].prompt_prefix,
        2048
    );
    assert_eq!(ok(&config("", "")).listeners[0].needs.prompt_prefix, 0);
    for balance in ["ip_hash", "hash\"\nhash_key = \"$uri"] {
        ok(&config(
            "",
            &format!("balance = \"{balance}\"\nhash_balance_factor = 125"),
        ));
    }
    let text = config("", "balance = \"least_conn\"\nhash_balance_factor = 150");
    assert_error(&text, 8, "upstreams.u.hash_balance_factor", "only with");
    let text = config("", "balance = \"prompt\"\nhash_balance_factor = 50");
    assert_error(&text, 8, "upstreams.u.hash_balance_factor", "from 100");
    let text = config("", "balance = \"least_time\"\nprompt_prefix = 100");
    assert_error(
        &text,
        8,
        "upstreams.u.prompt_prefix",
        "only with balance = \"prompt\"",
    );
}

#[test]
fn group_names_must_be_label_safe() {
    let text = config("", "").replace("[upstreams.u]", "[upstreams.\"a b\"]");
    let text = text.replace("upstream = \"u\"", "upstream = \"a b\"");
    assert_error(&text, 5, "upstreams.\"a b\"", "invalid name");
}

#[test]
fn servers_are_read_with_their_options() {
    let s = ok(&servers(
        "[\n  { addr = \"127.0.0.1:1701\", weight = 5, max_fails = 0, fail_timeout = \"3s\", max_conns = 8 },\n  \
         { addr = \"localhost:1702\", backup = true },\n  { addr = \"[::1]:1703\", down = true },\n]",
    ));
    let list = s.groups[0].peers.servers();
    assert_eq!(list.len(), 3);
    assert_eq!(
        (list[0].weight, list[0].max_fails, list[0].max_conns),
        (5, 0, 8)
    );
    assert_eq!(list[0].fail_timeout, Duration::from_secs(3));
    assert_eq!(list[1].addr, "127.0.0.1:1702".parse().unwrap());
    assert!(list[1].backup && !list[1].down);
    assert!(list[2].down && !list[2].backup);
}

#[test]
fn weights_must_be_at_least_1() {
    let text = servers(
        "[\n  { addr = \"127.0.0.1:1701\" },\n  { addr = \"127.0.0.1:1702\", weight = 0 },\n]",
    );
    assert_error(&text, 8, "upstreams.u.servers[1].weight", "between 1 and");
    let text = servers("[{ addr = \"127.0.0.1:1701\", weight = -3 }]");
    assert_error(&text, 6, "upstreams.u.servers[0].weight", "between 1 and");
}

#[test]
fn servers_must_be_listed() {
    assert_error(
        &servers("[]"),
        6,
        "upstreams.u.servers",
        "at least one server",
    );
    let text = config("", "").replace("servers = [{ addr = \"127.0.0.1:1701\" }]", "keepalive = 1");
    assert_error(&text, 5, "upstreams.u.servers", "missing key `servers`");
}

#[test]
fn a_group_needs_a_server_that_is_not_a_backup() {
    let text = servers("[{ addr = \"127.0.0.1:1701\", backup = true }]");
    assert_error(&text, 6, "upstreams.u.servers", "not a backup");
}

#[test]
fn a_group_holds_at_most_max_servers() {
    let one = "{ addr = \"127.0.0.1:1701\" },";
    let text = servers(&format!("[{}]", one.repeat(MAX_SERVERS + 1)));
    assert_error(
        &text,
        6,
        "upstreams.u.servers",
        &format!("at most {MAX_SERVERS}"),
    );
    let text = servers(&format!("[{}]", one.repeat(MAX_SERVERS)));
    assert_eq!(ok(&text).groups[0].peers.servers().len(), MAX_SERVERS);
}

#[test]
fn server_addr_must_be_a_socket_address() {
    let key = "upstreams.u.servers[0].addr";
    assert_error(&servers("[{ addr = \"127.0.0.1\" }]"), 6, key, "host:port");
    assert_error(&servers("[{ addr = \"127.0.0.1:0\" }]"), 6, key, "port 0");
    assert_error(&servers("[{ weight = 2 }]"), 6, key, "missing key `addr`");
}

#[test]
fn server_fail_timeout_must_be_positive() {
    let text = servers("[{ addr = \"127.0.0.1:1701\", fail_timeout = \"0s\" }]");
    assert_error(
        &text,
        6,
        "upstreams.u.servers[0].fail_timeout",
        "greater than 0",
    );
}

#[test]
fn unknown_server_key_is_an_error() {
    let text = servers("[{ addr = \"127.0.0.1:1701\", wieght = 2 }]");
    assert_error(
        &text,
        6,
        "upstreams.u.servers[0].wieght",
        "unknown field `wieght`",
    );
}

#[test]
fn upstream_timeouts_must_be_positive() {
    for key in ["connect_timeout", "send_timeout", "read_timeout"] {
        let text = config("", &format!("{key} = \"0s\""));
        assert_error(&text, 7, &format!("upstreams.u.{key}"), "greater than 0");
    }
}

#[test]
fn upstream_counts_are_range_checked() {
    let text = config("", "next_upstream_tries = -1");
    assert_error(&text, 7, "upstreams.u.next_upstream_tries", "between 0 and");
    let text = config("", "keepalive_requests = 0");
    assert_error(&text, 7, "upstreams.u.keepalive_requests", "between 1 and");
    let text = config("", "keepalive = -1");
    assert_error(&text, 7, "upstreams.u.keepalive", "between 0 and");
}

#[test]
fn next_upstream_conditions_are_read() {
    let text = "next_upstream = [\"error\", \"timeout\", \"invalid_header\", \"http_500\", \"http_502\", \
                \"http_503\", \"http_504\", \"http_403\", \"http_404\", \"http_429\", \"non_idempotent\"]";
    let n = ok(&config("", text)).groups[0].next_upstream;
    let all = NextUpstream {
        error: true,
        timeout: true,
        invalid_header: true,
        http_500: true,
        http_502: true,
        http_503: true,
        http_504: true,
        http_403: true,
        http_404: true,
        http_429: true,
        non_idempotent: true,
    };
    assert_eq!(n, all);
    let off = ok(&config("", "next_upstream = [\"off\"]")).groups[0].next_upstream;
    assert_eq!(off, NextUpstream::default());
}

#[test]
fn next_upstream_may_be_one_word_as_nginx_users_write_it() {
    let off = ok(&config("", "next_upstream = \"off\"")).groups[0].next_upstream;
    assert_eq!(off, NextUpstream::default());
    let one = ok(&config("", "next_upstream = \"http_502\"")).groups[0].next_upstream;
    assert_eq!(
        one,
        NextUpstream {
            http_502: true,
            ..NextUpstream::default()
        }
    );
    let text = config("", "next_upstream = \"sometimes\"");
    assert_error(
        &text,
        7,
        "upstreams.u.next_upstream",
        "unknown condition \"sometimes\"",
    );
    let text = config("", "next_upstream = 3");
    assert_error(&text, 7, "upstreams.u.next_upstream", "a condition");
}

#[test]
fn next_upstream_rejects_unknown_conditions() {
    let text = config("", "next_upstream = [\"error\", \"http_418\"]");
    assert_error(
        &text,
        7,
        "upstreams.u.next_upstream[1]",
        "unknown condition \"http_418\"",
    );
}

#[test]
fn next_upstream_off_must_stand_alone() {
    let text = config("", "next_upstream = [\"error\", \"off\"]");
    assert_error(
        &text,
        7,
        "upstreams.u.next_upstream[1]",
        "\"off\" cannot be combined",
    );
    let text = config("", "next_upstream = []");
    assert_error(&text, 7, "upstreams.u.next_upstream", "must not be empty");
}

#[test]
fn health_check_is_read_with_defaults() {
    let s = ok(&config("", "health_check = {}"));
    let h = s.groups[0].health_check.as_ref().unwrap();
    assert_eq!(h.path, None);
    assert_eq!((h.method.as_str(), &h.body), ("GET", &None));
    assert!(h.headers.is_empty());
    assert_eq!(
        (h.interval, h.timeout),
        (Duration::from_secs(5), Duration::from_secs(1))
    );
    assert_eq!((h.rise, h.fall, h.expect), (2, 3, (200, 399)));
    let text = "health_check = { path = \"/health\", interval = \"2s\", timeout = \"500ms\", \
                rise = 1, fall = 5, expect = \"200\" }";
    let s = ok(&config("", text));
    let h = s.groups[0].health_check.as_ref().unwrap();
    assert_eq!(h.path.as_deref(), Some("/health"));
    assert_eq!(
        (h.interval, h.timeout),
        (Duration::from_secs(2), Duration::from_millis(500))
    );
    assert_eq!((h.rise, h.fall, h.expect), (1, 5, (200, 200)));
}

#[test]
fn health_check_values_are_checked() {
    let cases = [
        ("expect = \"600\"", "expect", "invalid status range"),
        ("expect = \"300-200\"", "expect", "above"),
        ("rise = 0", "rise", "between 1 and"),
        ("fall = 0", "fall", "between 1 and"),
        ("interval = \"0s\"", "interval", "greater than 0"),
        ("timeout = \"0s\"", "timeout", "greater than 0"),
        ("path = \"health\"", "path", "start with `/`"),
        ("port = 80", "port", "unknown field"),
        (
            "path = \"/\", method = \"post\"",
            "method",
            "invalid method",
        ),
        (
            "path = \"/\", method = \"GE T\"",
            "method",
            "invalid method",
        ),
        ("path = \"/\", body = \"{}\"", "body", "needs `method`"),
        ("method = \"POST\"", "method", "needs `path`"),
        ("body = \"x\"", "body", "needs `path`"),
        ("headers = { A = \"b\" }", "headers", "needs `path`"),
        (
            "path = \"/\", headers = { \"A B\" = \"c\" }",
            "headers.\"A B\"",
            "invalid header name",
        ),
        (
            "path = \"/\", headers = { Connection = \"x\" }",
            "headers.Connection",
            "managed by the prober",
        ),
        (
            "path = \"/\", headers = { Content-Length = \"1\" }",
            "headers.Content-Length",
            "managed by the prober",
        ),
        (
            "path = \"/\", headers = { A = \"1\", a = \"2\" }",
            "headers.a",
            "set twice",
        ),
        (
            "path = \"/\", headers = { A = \"x\\ny\" }",
            "headers.A",
            "control characters",
        ),
    ];
    for (value, key, message) in cases {
        let text = config("", &format!("health_check = {{ {value} }}"));
        assert_error(
            &text,
            7,
            &format!("upstreams.u.health_check.{key}"),
            message,
        );
    }
}

#[test]
fn health_check_request_keys_are_read() {
    let text = "health_check = { path = \"/v1/completions\", method = \"POST\", \
                body = '{\"prompt\":\"hi\",\"max_tokens\":1}', \
                headers = { Content-Type = \"application/json\", Host = \"llm\" } }";
    let s = ok(&config("", text));
    let h = s.groups[0].health_check.as_ref().unwrap();
    assert_eq!(h.path.as_deref(), Some("/v1/completions"));
    assert_eq!(h.method, "POST");
    assert_eq!(
        h.body.as_deref(),
        Some("{\"prompt\":\"hi\",\"max_tokens\":1}")
    );
    let headers: Vec<(&str, &str)> = h
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        headers,
        [("Content-Type", "application/json"), ("Host", "llm")]
    );
}

#[test]
fn health_check_body_has_a_limit() {
    let big = "x".repeat(64 * 1024 + 1);
    let text = config(
        "",
        &format!("health_check = {{ path = \"/\", method = \"POST\", body = \"{big}\" }}"),
    );
    assert_error(
        &text,
        7,
        "upstreams.u.health_check.body",
        "at most 65536 bytes",
    );
}

#[test]
fn queue_is_read_and_checked() {
    let s = ok(&config("", "queue = { max = 10 }"));
    let q = s.groups[0].queue.as_ref().unwrap();
    assert_eq!((q.max, q.timeout), (10, Duration::from_secs(60)));
    let text = config("", "queue = { max = 0 }");
    assert_error(&text, 7, "upstreams.u.queue.max", "between 1 and");
    let text = config("", "queue = { timeout = \"1s\" }");
    assert_error(&text, 7, "upstreams.u.queue.max", "missing key `max`");
    let text = config("", "queue = { max = 1, timeout = \"0s\" }");
    assert_error(&text, 7, "upstreams.u.queue.timeout", "greater than 0");
}

#[test]
fn several_group_errors_are_all_reported() {
    let text = config(
        "",
        "connect_timeout = \"0s\"\nkeepalive = -1\nhash_key = \"$uri\"",
    );
    let keys: Vec<String> = errors(&text)
        .into_iter()
        .map(|e| format!("{}:{}", e.line, e.key))
        .collect();
    assert_eq!(
        keys,
        [
            "7:upstreams.u.connect_timeout",
            "8:upstreams.u.keepalive",
            "9:upstreams.u.hash_key"
        ]
    );
}

#[test]
fn hash_balance_slack_adds_to_a_factor_and_needs_one() {
    let bound = |upstream: &str| ok(&config("", upstream)).groups[0].peers.balance_bound();
    let factor = "balance = \"prompt\"\nhash_balance_factor = 150";
    assert_eq!(bound(factor), (150, 0));
    assert_eq!(
        bound(&format!("{factor}\nhash_balance_slack = 8")),
        (150, 8)
    );
    assert_eq!(
        bound(&format!("{factor}\nhash_balance_slack = 0")),
        (150, 0)
    );
    for balance in ["ip_hash", "hash\"\nhash_key = \"$uri"] {
        let text =
            format!("balance = \"{balance}\"\nhash_balance_factor = 125\nhash_balance_slack = 3");
        assert_eq!(bound(&text), (125, 3));
    }
    let key = "upstreams.u.hash_balance_slack";
    for (value, message) in [
        ("-1", "between 0 and 100000"),
        ("100001", "between 0 and 100000"),
    ] {
        let text = config("", &format!("{factor}\nhash_balance_slack = {value}"));
        assert_error(&text, 9, key, message);
    }
    for value in ["1.5", "\"8\"", "99999999999999999999"] {
        let text = config("", &format!("{factor}\nhash_balance_slack = {value}"));
        let e = &errors(&text)[0];
        assert_eq!(e.line, 9, "{e}");
        assert!(e.to_string().contains("hash_balance_slack"), "{e}");
    }
    // No factor, or a factor of 0: nothing to add to.
    let text = config("", "balance = \"prompt\"\nhash_balance_slack = 8");
    assert_error(&text, 8, key, "`hash_balance_factor`, which is not set");
    let text = config(
        "",
        "balance = \"hash\"\nhash_key = \"$uri\"\nhash_balance_factor = 0\nhash_balance_slack = 8",
    );
    assert_error(&text, 10, key, "`hash_balance_factor`, which is not set");
    let text = config("", "balance = \"least_conn\"\nhash_balance_slack = 8");
    assert_error(&text, 8, key, "`hash_balance_factor`, which is not set");
}
