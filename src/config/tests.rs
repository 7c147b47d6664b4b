//! End-to-end tests of the loader: inline TOML in, a snapshot or located errors out.
//! Rules for listeners and upstream groups are in `tests_listener` and `tests_upstream`.

use std::path::Path;
use std::time::Duration;

use super::{COMBINED_FORMAT, ConfigError, TCP_FORMAT, UPSTREAM_FORMAT, load, load_str};
use crate::balance::Policy;
use crate::snapshot::{Driver, LogLevel, LogTarget, Mode, NextUpstream, ProxyProtocol, Snapshot};
use crate::template::Template;

pub fn try_load(text: &str) -> Result<Snapshot, Vec<ConfigError>> {
    load_str(text, Path::new("t.toml"), 7)
}

pub fn ok(text: &str) -> Snapshot {
    match try_load(text) {
        Ok(snapshot) => snapshot,
        Err(errors) => panic!("rejected: {errors:#?}\n{text}"),
    }
}

pub fn errors(text: &str) -> Vec<ConfigError> {
    try_load(text)
        .err()
        .expect("the configuration should be rejected")
}

/// Asserts that `text` has exactly one error, at `line`, about `key`, saying `message`.
#[track_caller]
pub fn assert_error(text: &str, line: usize, key: &str, message: &str) {
    let errors = errors(text);
    assert_eq!(errors.len(), 1, "{errors:#?}\n{text}");
    let e = &errors[0];
    assert_eq!((e.line, e.key.as_str()), (line, key), "{e}\n{text}");
    assert!(e.message.contains(message), "{e} lacks {message:?}\n{text}");
}

/// A valid file. `listener` is inserted as line 4 (inside the listener table) and `upstream`
/// as line 7 (inside `[upstreams.u]`), so tests know where their keys are.
pub fn config(listener: &str, upstream: &str) -> String {
    format!(
        "[[listener]]\nbind = \"127.0.0.1:1700\"\nupstream = \"u\"\n{listener}\n\
         [upstreams.u]\nservers = [{{ addr = \"127.0.0.1:1701\" }}]\n{upstream}\n"
    )
}

/// A valid file with `section` (a whole table, starting at line 1) in front.
pub fn with_section(section: &str) -> String {
    format!("{section}\n{}", config("", ""))
}

#[test]
fn the_example_configs_load() {
    let main = ok(include_str!("../../config/ringway.toml"));
    let llm = &main.groups[0];
    assert_eq!(main.listeners[0].bind, "127.0.0.1:1700".parse().unwrap());
    assert_eq!(main.listeners[0].client_max_body_size, 48 << 20);
    assert_eq!(llm.peers.policy(), Policy::LeastConn);
    let ports: Vec<u16> = llm.peers.servers().iter().map(|s| s.addr.port()).collect();
    assert_eq!(ports, [1701, 1702, 1703]);
    assert_eq!(llm.send_timeout, Duration::from_secs(900));
    assert_eq!(llm.read_timeout, Duration::from_secs(900));
    assert!(llm.next_upstream.http_502 && llm.next_upstream.http_503 && llm.next_upstream.http_504);
    assert!(!llm.next_upstream.http_500);

    let weighted = ok(include_str!("../../config/weighted.toml"));
    let servers = weighted.groups[0].peers.servers();
    assert_eq!(weighted.groups[0].peers.policy(), Policy::RoundRobin);
    assert_eq!((servers[0].weight, servers[1].weight), (60, 40));

    let hash = ok(include_str!("../../config/hash.toml"));
    assert_eq!(hash.groups[0].peers.policy(), Policy::Hash);
    assert_eq!(
        hash.groups[0].hash_key,
        Some(Template::parse("$http_x_session_id").unwrap())
    );
    assert_eq!(hash.groups[0].peers.servers().len(), 3);
}

#[test]
fn absent_keys_take_the_documented_defaults() {
    let s = ok(&config("", ""));
    assert_eq!(s.generation, 7);
    assert_eq!(s.source, Path::new("t.toml"));
    let rt = &s.runtime;
    let cores = std::thread::available_parallelism().unwrap().get();
    assert_eq!(rt.workers, cores);
    assert!(rt.pin_workers);
    assert_eq!(rt.driver, Driver::Auto);
    assert_eq!(rt.pid_file, None);
    assert_eq!(rt.shutdown_timeout, Duration::from_secs(30));
    assert_eq!(rt.shutdown_delay, Duration::ZERO);
    assert_eq!(rt.max_connections, 100_000);
    assert_eq!(s.log.level, LogLevel::Info);
    assert_eq!(s.log.error_log, LogTarget::Stderr);
    assert_eq!(s.log.access_log, None);
    assert_eq!(
        s.log.access_format,
        Template::parse(COMBINED_FORMAT).unwrap()
    );
    assert!(s.admin.is_none());

    let l = &s.listeners[0];
    assert_eq!(l.name, "127.0.0.1:1700");
    assert_eq!(l.mode, Mode::Http);
    assert_eq!(l.group, 0);
    assert!(l.routes.is_empty());
    assert_eq!(l.client_max_body_size, 1 << 20);
    assert_eq!(l.client_header_timeout, Duration::from_secs(60));
    assert_eq!(l.client_body_timeout, Duration::from_secs(60));
    assert_eq!(l.client_body_buffer_size, 16 << 10);
    assert_eq!(l.keepalive_timeout, Duration::from_secs(75));
    assert_eq!(l.keepalive_requests, 1000);
    assert_eq!(l.max_header_size, 16 << 10);
    assert_eq!(l.proxy_protocol, ProxyProtocol::Off);
    assert!(l.gzip.is_none() && l.request_headers.is_empty() && l.response_headers.is_empty());
    assert!(l.hide_response_headers.is_empty());

    let g = &s.groups[0];
    assert_eq!(g.name, "u");
    assert_eq!(g.peers.policy(), Policy::RoundRobin);
    assert!(g.hash_key.is_none());
    assert_eq!((g.keepalive, g.keepalive_requests), (64, 1000));
    assert_eq!(g.keepalive_timeout, Duration::from_secs(60));
    assert_eq!(g.connect_timeout, Duration::from_secs(60));
    assert_eq!(g.send_timeout, Duration::from_secs(60));
    assert_eq!(g.read_timeout, Duration::from_secs(60));
    let retry = NextUpstream {
        error: true,
        timeout: true,
        ..NextUpstream::default()
    };
    assert_eq!(g.next_upstream, retry);
    assert_eq!(g.next_upstream_tries, 0);
    assert_eq!(g.next_upstream_timeout, Duration::ZERO);
    assert!(!g.retry_non_idempotent);
    assert!(g.health_check.is_none() && g.queue.is_none() && g.slow_start.is_none());

    let server = &g.peers.servers()[0];
    assert_eq!(
        (server.weight, server.max_fails, server.max_conns),
        (1, 1, 0)
    );
    assert_eq!(server.fail_timeout, Duration::from_secs(10));
    assert!(!server.backup && !server.down);
}

#[test]
fn every_error_is_collected_and_sorted_by_position() {
    let text = "[runtime]\nworkers = 0\nbogus = 1\n\n[log]\nlevel = \"loud\"\n\n\
                [[listener]]\nbind = \"127.0.0.1:1700\"\nupstream = \"nope\"\n\n\
                [upstreams.u]\nservers = [{ addr = \"127.0.0.1:1\", weight = 0 }]\n";
    let found: Vec<(usize, String)> = errors(text).into_iter().map(|e| (e.line, e.key)).collect();
    let want = [
        (2, "runtime.workers"),
        (3, "runtime.bogus"),
        (6, "log.level"),
        (10, "listener[0].upstream"),
        (13, "upstreams.u.servers[0].weight"),
    ];
    let want: Vec<(usize, String)> = want.iter().map(|(l, k)| (*l, k.to_string())).collect();
    assert_eq!(found, want);
}

#[test]
fn display_is_file_line_column_key_message() {
    let e = &errors(&config("", "bogus = 1"))[0];
    assert_eq!(
        e.to_string(),
        "t.toml:7:1: upstreams.u.bogus: unknown field `bogus`, expected one of `balance`, \
         `hash_key`, `keepalive`, `keepalive_requests`, `keepalive_timeout`, \
         `connect_timeout`, `send_timeout`, `read_timeout`, `next_upstream`, \
         `next_upstream_tries`, `next_upstream_timeout`, `retry_non_idempotent`, `servers`, \
         `health_check`, `queue`, `slow_start`, `first_byte_timeout`, `hash_balance_factor`, \
         `hash_balance_slack`, `prompt_prefix`, `load_feedback`"
    );
}

#[test]
fn a_value_dropped_for_its_type_is_not_reported_again_as_missing() {
    let text = config("", "").replace("127.0.0.1:1701\"", "127.0.0.1:1701\", addr2 = 1");
    assert_error(
        &text,
        6,
        "upstreams.u.servers[0].addr2",
        "unknown field `addr2`",
    );
    assert_error(
        &config("", "").replace("\"127.0.0.1:1701\"", "5"),
        6,
        "upstreams.u.servers[0].addr",
        "invalid type",
    );
    let text = "[[listener]]\nbind = 5\nupstream = \"u\"\n[upstreams.u]\nservers = [{ addr = \"127.0.0.1:1\" }]\n";
    assert_error(text, 2, "listener[0].bind", "invalid type");
}

#[test]
fn load_reads_the_file_and_reports_a_missing_one_without_position() {
    let dir = std::env::temp_dir().join(format!("ringway-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("ok.toml");
    std::fs::write(&file, config("", "")).unwrap();
    assert_eq!(load(&file, 3).map(|s| s.generation).ok(), Some(3));
    let missing = dir.join("missing.toml");
    let errors = load(&missing, 1).err().unwrap();
    assert_eq!(errors.len(), 1);
    let shown = errors[0].to_string();
    assert!(
        shown.starts_with(&format!("{}: cannot read", missing.display())),
        "{shown}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn syntax_errors_are_reported_with_position() {
    let text = format!("{}\n[runtime\n", config("", ""));
    let e = &errors(&text)[0];
    assert_eq!((e.line, e.column), (9, 9), "{e}");
}

// ---- [runtime] ----

#[test]
fn runtime_values_are_read() {
    let s = ok(&with_section(
        "[runtime]\nworkers = 3\npin_workers = false\ndriver = \"epoll\"\n\
         pid_file = \"/tmp/r.pid\"\nshutdown_timeout = \"5s\"\nshutdown_delay = \"2s\"\n\
         max_connections = 10\n",
    ));
    assert_eq!(s.runtime.workers, 3);
    assert!(!s.runtime.pin_workers);
    assert_eq!(s.runtime.driver, Driver::Epoll);
    assert_eq!(s.runtime.pid_file.as_deref(), Some(Path::new("/tmp/r.pid")));
    assert_eq!(s.runtime.shutdown_timeout, Duration::from_secs(5));
    assert_eq!(s.runtime.shutdown_delay, Duration::from_secs(2));
    assert_eq!(s.runtime.max_connections, 10);
    let s = ok(&with_section(
        "[runtime]\nworkers = \"auto\"\ndriver = \"io_uring\"\n",
    ));
    assert_eq!(s.runtime.driver, Driver::IoUring);
}

#[test]
fn workers_must_be_auto_or_between_1_and_1024() {
    let msg = "between 1 and 1024";
    assert_error(
        &with_section("[runtime]\nworkers = 0"),
        2,
        "runtime.workers",
        msg,
    );
    assert_error(
        &with_section("[runtime]\n\nworkers = 1025"),
        3,
        "runtime.workers",
        msg,
    );
    assert_error(
        &with_section("[runtime]\nworkers = \"all\""),
        2,
        "runtime.workers",
        "\"auto\"",
    );
}

#[test]
fn driver_must_be_a_known_one() {
    let text = with_section("[runtime]\ndriver = \"kqueue\"");
    assert_error(&text, 2, "runtime.driver", "unknown variant `kqueue`");
}

#[test]
fn pid_file_must_not_be_empty() {
    assert_error(
        &with_section("[runtime]\npid_file = \"\""),
        2,
        "runtime.pid_file",
        "empty",
    );
}

#[test]
fn max_connections_must_be_positive() {
    let text = with_section("[runtime]\nmax_connections = 0");
    assert_error(&text, 2, "runtime.max_connections", "between 1 and");
}

#[test]
fn durations_need_units() {
    let text = with_section("[runtime]\nshutdown_timeout = 10");
    assert_error(&text, 2, "runtime.shutdown_timeout", "no unit");
    let text = with_section("[runtime]\nshutdown_timeout = \"-1s\"");
    assert_error(&text, 2, "runtime.shutdown_timeout", "negative");
}

#[test]
fn unknown_runtime_key_is_an_error() {
    assert_error(
        &with_section("[runtime]\nthreads = 2"),
        2,
        "runtime.threads",
        "unknown field",
    );
}

#[test]
fn unknown_top_level_key_is_an_error() {
    assert_error(
        &with_section("[server]\nport = 1"),
        1,
        "server",
        "unknown field `server`",
    );
}

// ---- [log] ----

#[test]
fn log_values_are_read() {
    let s = ok(&with_section(
        "[log]\nlevel = \"debug\"\nerror_log = \"/tmp/e.log\"\naccess_log = \"stdout\"\n\
         access_format = \"upstream\"\n",
    ));
    assert_eq!(s.log.level, LogLevel::Debug);
    assert_eq!(s.log.error_log, LogTarget::File("/tmp/e.log".into()));
    assert_eq!(s.log.access_log, Some(LogTarget::Stdout));
    assert_eq!(
        s.log.access_format,
        Template::parse(UPSTREAM_FORMAT).unwrap()
    );
    assert!(UPSTREAM_FORMAT.starts_with(COMBINED_FORMAT));
    assert!(UPSTREAM_FORMAT.ends_with(" to: $upstream_addr"));
    let s = ok(&with_section(
        "[log]\naccess_log = \"/tmp/a.log\"\naccess_format = \"$status $uri\"",
    ));
    assert_eq!(s.log.access_log, Some(LogTarget::File("/tmp/a.log".into())));
    assert_eq!(
        s.log.access_format,
        Template::parse("$status $uri").unwrap()
    );
    let s = ok(&with_section(
        "[log]\nerror_log = \"stdout\"\naccess_log = \"off\"",
    ));
    assert_eq!(s.log.error_log, LogTarget::Stdout);
    assert_eq!(s.log.access_log, None);
}

#[test]
fn tcp_access_format_defaults_to_bytes_both_ways_and_can_be_set() {
    let s = ok(&with_section("[log]\naccess_log = \"stdout\""));
    assert_eq!(
        s.log.tcp_access_format,
        Template::parse(TCP_FORMAT).unwrap()
    );
    let s = ok(&with_section(
        "[log]\ntcp_access_format = \"$remote_addr $bytes_received\"",
    ));
    assert_eq!(
        s.log.tcp_access_format,
        Template::parse("$remote_addr $bytes_received").unwrap()
    );
    let s = ok(&with_section("[log]\ntcp_access_format = \"upstream\""));
    assert_eq!(
        s.log.tcp_access_format,
        Template::parse(UPSTREAM_FORMAT).unwrap()
    );
    let errs = errors(&with_section("[log]\ntcp_access_format = \"$nope\""));
    assert!(
        errs.iter().any(|e| e.key == "log.tcp_access_format"),
        "an unknown variable is an error: {errs:?}"
    );
}

#[test]
fn combined_is_nginx_combined_without_remote_user() {
    assert_eq!(
        COMBINED_FORMAT,
        "$remote_addr - - [$time_local] \"$request\" $status $body_bytes_sent \
         \"$http_referer\" \"$http_user_agent\""
    );
}

#[test]
fn log_level_must_be_known() {
    assert_error(
        &with_section("[log]\nlevel = \"trace\""),
        2,
        "log.level",
        "unknown variant",
    );
}

#[test]
fn error_log_cannot_be_off() {
    assert_error(
        &with_section("[log]\nerror_log = \"off\""),
        2,
        "log.error_log",
        "cannot be \"off\"",
    );
}

#[test]
fn log_targets_must_not_be_empty() {
    assert_error(
        &with_section("[log]\naccess_log = \"\""),
        2,
        "log.access_log",
        "file path",
    );
    assert_error(
        &with_section("[log]\nerror_log = \"\""),
        2,
        "log.error_log",
        "file path",
    );
}

#[test]
fn access_format_must_be_a_valid_template() {
    let text = with_section("[log]\naccess_format = \"$status $bogus\"");
    assert_error(&text, 2, "log.access_format", "unknown variable `$bogus`");
}

// ---- [admin] ----

#[test]
fn admin_bind_is_read() {
    let s = ok(&with_section("[admin]\nbind = \"127.0.0.1:9901\""));
    assert_eq!(s.admin.unwrap().bind, "127.0.0.1:9901".parse().unwrap());
}

#[test]
fn admin_bind_must_not_be_a_listener_address() {
    let text = with_section("[admin]\nbind = \"127.0.0.1:1700\"");
    assert_error(&text, 2, "admin.bind", "already used by listener");
}

#[test]
fn admin_bind_must_be_an_address() {
    assert_error(
        &with_section("[admin]\nbind = \"9901\""),
        2,
        "admin.bind",
        "host:port",
    );
    assert_error(
        &with_section("[admin]\n"),
        1,
        "admin.bind",
        "missing key `bind`",
    );
}

// ---- robustness ----

/// xorshift64*: deterministic, so a failure reproduces.
fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

#[test]
fn mutated_configs_never_panic() {
    super::check::NO_LOOKUPS.with(|n| n.set(true));
    let seed = include_str!("../../config/ringway.toml").as_bytes();
    let alphabet = b"[]{}=\",.#\n $:0123456789-_abkmsx\"'\\";
    let mut state = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..1500 {
        let mut bytes = seed.to_vec();
        for _ in 0..1 + next(&mut state) % 4 {
            let at = (next(&mut state) % bytes.len() as u64) as usize;
            let byte = alphabet[(next(&mut state) % alphabet.len() as u64) as usize];
            match next(&mut state) % 3 {
                0 => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                _ => {
                    bytes.remove(at);
                }
            }
        }
        let text = String::from_utf8_lossy(&bytes);
        if let Err(errors) = try_load(&text) {
            assert!(!errors.is_empty());
            for e in &errors {
                assert!(e.line <= text.lines().count() + 1, "{e}");
            }
        }
    }
}
