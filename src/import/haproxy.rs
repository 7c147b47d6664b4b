//! An HAProxy configuration (`global`, `defaults`, `frontend`, `backend`, `listen`) as a
//! ringway [`Doc`]: a backend (or listen) is an upstream, a frontend's (or listen's) `bind`
//! is a listener, `use_backend` with simple path/host ACLs are routes.

use std::rc::Rc;

use super::haproxy_parse::{self, Line, Section, SectionKind};
use super::toml_out::{Doc, Entry, Listener, Server, Table, Upstream, Value};
use super::{ImportError, Notes, Origin, vars};

/// Converts the HAProxy configuration `text`, read from `file`.
pub fn convert(text: &str, file: &Rc<str>, notes: &mut Notes) -> Result<Doc, ImportError> {
    let sections = haproxy_parse::sections(text, file, notes)?;
    let mut doc = Doc::default();
    for section in &sections {
        match section.kind {
            SectionKind::Global => global(&mut doc, section, notes),
            SectionKind::Backend | SectionKind::Listen if has_servers(section) => {
                doc.upstreams.push(upstream(section, notes));
            }
            _ => {}
        }
    }
    for section in &sections {
        if matches!(section.kind, SectionKind::Frontend | SectionKind::Listen) {
            frontend(&mut doc, section, notes);
        }
    }
    Ok(doc)
}

fn has_servers(section: &Section) -> bool {
    section.lines.iter().any(|l| l.word(0) == "server")
}

fn global(doc: &mut Doc, section: &Section, notes: &mut Notes) {
    for line in &section.lines {
        let rt = &mut doc.runtime;
        match (line.word(0), line.words.len()) {
            ("maxconn", 2) => match line.word(1).parse::<i64>() {
                Ok(n) => rt.set("max_connections", Value::Int(n), &line.at),
                Err(_) => notes.warn(&line.at, "maxconn: not a number; dropped"),
            },
            ("nbthread", 2) => match line.word(1).parse::<i64>() {
                Ok(n) => rt.set("workers", Value::Int(n), &line.at),
                Err(_) => notes.warn(&line.at, "nbthread: not a number; dropped"),
            },
            ("pidfile", 2) => rt.set("pid_file", Value::Str(line.word(1).into()), &line.at),
            ("cpu-map", _) => rt.set("pin_workers", Value::Bool(true), &line.at),
            ("daemon", _) => notes.note(
                &line.at,
                "daemon: ringway runs in the foreground (under systemd)",
            ),
            ("log", _) => notes.warn(
                &line.at,
                "log: ringway logs to a file or stderr, not syslog; set [log] by hand",
            ),
            (w, _) => notes.warn(&line.at, format!("global {w}: no equivalent; dropped")),
        }
    }
}

/// HAProxy times are milliseconds unless a unit says otherwise.
pub fn millis(text: &str) -> Result<u64, String> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let number: u64 = text[..digits]
        .parse()
        .map_err(|_| format!("invalid time {text:?}"))?;
    let per = match &text[digits..] {
        "" | "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "us" => return Ok(number.div_ceil(1000)),
        _ => return Err(format!("invalid time {text:?}")),
    };
    number
        .checked_mul(per)
        .ok_or_else(|| format!("invalid time {text:?}"))
}

fn duration(text: &str) -> Result<Value, String> {
    millis(text).map(|ms| Value::Str(vars::duration(ms)))
}

/// The last value of `timeout NAME` in the section (which starts with its defaults).
fn timeout<'s>(section: &'s Section, name: &str) -> Option<&'s Line> {
    section
        .lines
        .iter()
        .rev()
        .find(|l| l.word(0) == "timeout" && l.word(1) == name)
}

fn last<'s>(section: &'s Section, keyword: &str) -> Option<&'s Line> {
    section.lines.iter().rev().find(|l| l.word(0) == keyword)
}

fn set_timeout(t: &mut Table, key: &str, line: Option<&Line>, notes: &mut Notes) {
    let Some(line) = line else { return };
    match duration(line.word(2)) {
        Ok(v) => t.set(key, v, &line.at),
        Err(e) => notes.warn(&line.at, format!("timeout {}: {e}; dropped", line.word(1))),
    }
}

fn upstream(section: &Section, notes: &mut Notes) -> Upstream {
    let mut keys = Table::default();
    if let Some(line) = last(section, "balance") {
        balance(&mut keys, line, notes);
    }
    set_timeout(
        &mut keys,
        "connect_timeout",
        timeout(section, "connect"),
        notes,
    );
    set_timeout(&mut keys, "read_timeout", timeout(section, "server"), notes);
    set_timeout(&mut keys, "send_timeout", timeout(section, "server"), notes);
    retries(&mut keys, section, notes);
    let mut up = Upstream {
        name: section.name.clone(),
        at: section.at.clone(),
        keys,
        servers: Vec::new(),
    };
    let mut checked = Vec::new();
    for line in section.lines.iter().filter(|l| l.word(0) == "server") {
        if let Some((server, check)) = server(&mut up, section, line, notes) {
            checked.push((check, line.at.clone()));
            up.servers.push(server);
        }
    }
    health_check(&mut up, section, &checked, notes);
    for line in &section.lines {
        other(line, notes);
    }
    up
}

fn balance(keys: &mut Table, line: &Line, notes: &mut Notes) {
    let str_ = |s: &str| Value::Str(s.to_string());
    let (policy, key) = match (line.word(1), line.word(2)) {
        ("roundrobin", _) => ("round_robin", None),
        ("static-rr", _) => {
            notes.note(
                &line.at,
                "balance static-rr: ringway's round_robin (weights apply the same way)",
            );
            ("round_robin", None)
        }
        ("leastconn", _) => ("least_conn", None),
        ("source", _) => ("ip_hash", None),
        ("uri", "whole") => ("hash", Some("$request_uri")),
        ("uri", _) => ("hash", Some("$uri")),
        ("random", _) => ("random_two", None),
        (b, arg) => {
            let key = b
                .strip_prefix("url_param")
                .map(|_| format!("$arg_{arg}"))
                .or_else(|| {
                    let name = b.strip_prefix("hdr(")?.strip_suffix(')')?;
                    Some(format!(
                        "$http_{}",
                        name.to_ascii_lowercase().replace('-', "_")
                    ))
                });
            match key {
                Some(k) => {
                    keys.set("balance", str_("hash"), &line.at);
                    keys.set("hash_key", Value::Str(k), &line.at);
                }
                None => notes.warn(
                    &line.at,
                    format!("balance {b}: no equivalent; round robin used"),
                ),
            }
            return;
        }
    };
    keys.set("balance", str_(policy), &line.at);
    if let Some(k) = key {
        keys.set("hash_key", str_(k), &line.at);
    }
}

/// `retries N` (and `retry-on`) as how many servers ringway tries.
fn retries(keys: &mut Table, section: &Section, notes: &mut Notes) {
    let redispatch = section
        .lines
        .iter()
        .rev()
        .find(|l| l.words.ends_with(&["redispatch".to_string()]))
        .filter(|l| l.word(0) == "option");
    if let Some(line) = last(section, "retries") {
        match line.word(1).parse::<i64>() {
            Ok(n) => {
                let note = Some(format!("retries {n} + the first try"));
                keys.set_noted("next_upstream_tries", Value::Int(n + 1), &line.at, note);
                if redispatch.is_none() {
                    notes.warn(
                        &line.at,
                        "retries without option redispatch: HAProxy retries the same server, \
                         ringway moves to another one",
                    );
                }
            }
            Err(_) => notes.warn(&line.at, "retries: not a number; dropped"),
        }
    }
    if let Some(line) = last(section, "retry-on") {
        retry_on(keys, line, notes);
    }
}

fn retry_on(keys: &mut Table, line: &Line, notes: &mut Notes) {
    let mut conditions: Vec<String> = Vec::new();
    for word in &line.words[1..] {
        let mapped: &[&str] = match word.as_str() {
            "none" => &["off"],
            "conn-failure" | "empty-response" => &["error"],
            "response-timeout" => &["timeout"],
            "all-retryable-errors" => &[
                "error", "timeout", "http_500", "http_502", "http_503", "http_504",
            ],
            "404" => &["http_404"],
            "500" => &["http_500"],
            "502" => &["http_502"],
            "503" => &["http_503"],
            "504" => &["http_504"],
            other => {
                notes.warn(
                    &line.at,
                    format!("retry-on {other}: no equivalent; dropped"),
                );
                &[]
            }
        };
        for m in mapped {
            if !conditions.iter().any(|c| c == m) {
                conditions.push(m.to_string());
            }
        }
    }
    if conditions == ["off"] {
        keys.set("next_upstream", Value::Str("off".into()), &line.at);
    } else if !conditions.is_empty() {
        conditions.retain(|c| c != "off");
        keys.set("next_upstream", Value::Strs(conditions), &line.at);
    }
}

/// Server parameters: `default-server` ones first, the server's own after.
fn server(
    up: &mut Upstream,
    section: &Section,
    line: &Line,
    notes: &mut Notes,
) -> Option<(Server, Option<Check>)> {
    let addr = line.word(2);
    let has_port = addr
        .rsplit_once(':')
        .is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if !has_port {
        let message = format!("server {addr}: ringway needs an explicit port; server dropped");
        notes.warn(&line.at, message);
        return None;
    }
    let mut params: Vec<&str> = Vec::new();
    for d in section
        .lines
        .iter()
        .filter(|l| l.word(0) == "default-server")
    {
        params.extend(d.words[1..].iter().map(String::as_str));
    }
    params.extend(
        line.words
            .get(3..)
            .unwrap_or_default()
            .iter()
            .map(String::as_str),
    );
    let mut keys = vec![("addr".to_string(), Value::Str(addr.to_string()))];
    let mut check = Check::default();
    let mut enabled = false;
    let mut i = 0;
    while i < params.len() {
        let (name, value) = (params[i], params.get(i + 1).copied().unwrap_or(""));
        i += 1;
        let mut takes_value = true;
        match name {
            "weight" | "maxconn" => match value.parse::<i64>() {
                Ok(n) => {
                    let key = if name == "weight" {
                        "weight"
                    } else {
                        "max_conns"
                    };
                    keys.retain(|(k, _)| k != key);
                    keys.push((key.into(), Value::Int(n)));
                }
                Err(_) => notes.warn(&line.at, format!("{name} {value}: not a number; dropped")),
            },
            "inter" => check.inter = Some(value.to_string()),
            "rise" => check.rise = value.parse().ok(),
            "fall" => check.fall = value.parse().ok(),
            "slowstart" => match duration(value) {
                Ok(v) => up.keys.set("slow_start", v, &line.at),
                Err(e) => notes.warn(&line.at, format!("slowstart: {e}; dropped")),
            },
            "check" => (enabled, takes_value) = (true, false),
            "no-check" => (enabled, takes_value) = (false, false),
            "backup" | "disabled" => {
                let key = if name == "backup" { "backup" } else { "down" };
                keys.retain(|(k, _)| k != key);
                keys.push((key.into(), Value::Bool(true)));
                takes_value = false;
            }
            "enabled" => {
                keys.retain(|(k, _)| k != "down");
                takes_value = false;
            }
            "ssl" | "send-proxy" | "send-proxy-v2" | "check-ssl" | "no-ssl" => {
                notes.warn(
                    &line.at,
                    format!("server parameter {name}: not supported; dropped"),
                );
                takes_value = false;
            }
            _ => notes.warn(
                &line.at,
                format!("server parameter {name} {value}: no equivalent; dropped"),
            ),
        }
        if takes_value {
            i += 1;
        }
    }
    Some((
        Server {
            at: line.at.clone(),
            keys,
        },
        enabled.then_some(check),
    ))
}

/// A server's check settings (`inter`, `rise`, `fall`).
#[derive(Clone, Debug, Default, PartialEq)]
struct Check {
    inter: Option<String>,
    rise: Option<i64>,
    fall: Option<i64>,
}

fn health_check(
    up: &mut Upstream,
    section: &Section,
    checked: &[(Option<Check>, Origin)],
    notes: &mut Notes,
) {
    let Some((Some(check), at)) = checked.iter().find(|(c, _)| c.is_some()) else {
        return;
    };
    for (other, line) in checked {
        if other.as_ref() != Some(check) {
            notes.warn(line, "ringway checks every server of an upstream alike: this server's check settings (or none) are not kept");
        }
    }
    let mut t = Table::default();
    let httpchk = section
        .lines
        .iter()
        .rev()
        .find(|l| l.word(0) == "option" && l.word(1) == "httpchk");
    if let Some(line) = httpchk {
        let (method, path) = match &line.words[2..] {
            [] => ("OPTIONS", "/"),
            [path] => ("OPTIONS", path.as_str()),
            [method, path, ..] => (method.as_str(), path.as_str()),
        };
        t.set("path", Value::Str(path.into()), &line.at);
        if method != "GET" {
            t.set("method", Value::Str(method.into()), &line.at);
        }
        let expect = section
            .lines
            .iter()
            .rev()
            .find(|l| l.word(0) == "http-check" && l.word(1) == "expect");
        if let Some(e) = expect {
            match (e.word(2), e.word(3)) {
                ("status", code)
                    if code.bytes().all(|b| b.is_ascii_digit()) && !code.is_empty() =>
                {
                    t.set("expect", Value::Str(code.into()), &e.at)
                }
                (kind, _) => notes.warn(
                    &e.at,
                    format!("http-check expect {kind}: ringway checks the status only; dropped"),
                ),
            }
        }
    }
    let interval = check
        .inter
        .as_deref()
        .map_or(Ok(Value::Str("2s".into())), duration);
    match interval {
        Ok(v) => t.set("interval", v, at),
        Err(e) => notes.warn(at, format!("inter: {e}; dropped")),
    }
    t.set("rise", Value::Int(check.rise.unwrap_or(2)), at);
    t.set("fall", Value::Int(check.fall.unwrap_or(3)), at);
    set_timeout(&mut t, "timeout", timeout(section, "check"), notes);
    let entries: Vec<Entry> = t.0;
    up.keys.set("health_check", Value::Table(entries), at);
}

/// Keywords of a proxy section that no translation reads: said once each.
fn other(line: &Line, notes: &mut Notes) {
    let (w0, w1) = (line.word(0), line.word(1));
    match w0 {
        "server" | "balance" | "timeout" | "retries" | "retry-on" | "mode" | "bind"
        | "default_backend" | "use_backend" | "acl" | "default-server" | "http-check"
        | "compression" | "http-request" | "http-response" => {}
        "hash-type" if w1 == "consistent" => {
            notes.note(&line.at, "hash-type consistent: ringway's hash is always consistent (ketama)")
        }
        "hash-type" => notes.warn(&line.at, format!("hash-type {w1}: ringway's hash is consistent (ketama) instead")),
        "option" => match w1 {
            "redispatch" | "httpchk" => {}
            "forwardfor" => notes.note(&line.at, "option forwardfor: ringway always appends X-Forwarded-For"),
            "http-server-close" | "httpclose" | "http-keep-alive" | "http-pretend-keepalive" => {
                notes.note(&line.at, format!("option {w1}: ringway keeps clients and servers alive independently"))
            }
            "httplog" | "tcplog" | "dontlognull" | "log-health-checks" => {
                notes.warn(&line.at, format!("option {w1}: ringway's access log is set in [log] (access_log, access_format); dropped"))
            }
            _ => notes.warn(&line.at, format!("option {w1}: no equivalent; dropped")),
        },
        "http-reuse" => notes.note(&line.at, "http-reuse: ringway pools server connections (keepalive)"),
        "log" => notes.warn(&line.at, "log: ringway logs to a file or stdout, not syslog; set [log] by hand"),
        "maxconn" => notes.warn(&line.at, "maxconn: ringway bounds connections per process (runtime.max_connections); dropped"),
        "stats" => notes.warn(&line.at, "stats: ringway's [admin] listener serves /metrics and /status; dropped"),
        _ => notes.warn(&line.at, format!("{w0}: no equivalent; dropped")),
    }
}

fn frontend(doc: &mut Doc, section: &Section, notes: &mut Notes) {
    let tcp = last(section, "mode").is_some_and(|l| l.word(1) == "tcp");
    let own =
        (section.kind == SectionKind::Listen && has_servers(section)).then(|| section.name.clone());
    let default = match last(section, "default_backend") {
        Some(line) => Some((line.word(1).to_string(), line.at.clone())),
        None => own.map(|n| (n, section.at.clone())),
    };
    let routes = haproxy_parse::routes(section, notes);
    let Some((upstream, upstream_at)) = default.or_else(|| {
        let first = routes.first()?.get("upstream")?;
        let Value::Str(u) = &first.value else { return None };
        notes.warn(&section.at, format!("no default_backend: requests no use_backend matches go to {u} (HAProxy answers 503)"));
        Some((u.clone(), first.at.clone()))
    }) else {
        notes.warn(&section.at, format!("{} has no backend to send to; dropped", section.name));
        return;
    };
    if section.kind == SectionKind::Frontend {
        for line in &section.lines {
            other(line, notes);
        }
    }
    let keys = listener_keys(section, tcp, notes);
    for line in section.lines.iter().filter(|l| l.word(0) == "bind") {
        for (addr, at) in haproxy_parse::binds(line, notes) {
            let mut l = Listener::default();
            l.keys.set("bind", Value::Str(addr), &at);
            if tcp {
                l.keys.set("mode", Value::Str("tcp".into()), &at);
            }
            l.keys
                .set("upstream", Value::Str(upstream.clone()), &upstream_at);
            l.keys.0.extend(keys.0.iter().cloned());
            if !tcp {
                l.routes = routes.clone();
            }
            doc.listeners.push(l);
        }
    }
}

/// Client-side timeouts, headers and compression of a frontend.
fn listener_keys(section: &Section, tcp: bool, notes: &mut Notes) -> Table {
    let mut t = Table::default();
    let client = timeout(section, "client");
    if tcp {
        if let Some(line) = client {
            notes.warn(&line.at, "timeout client: a tcp relay's idle time is bounded by the upstream's read_timeout/send_timeout");
        }
        return t;
    }
    let request = timeout(section, "http-request").or(client);
    let keep_alive = timeout(section, "http-keep-alive").or(request);
    set_timeout(&mut t, "client_header_timeout", request, notes);
    set_timeout(&mut t, "client_body_timeout", client, notes);
    set_timeout(&mut t, "keepalive_timeout", keep_alive, notes);
    haproxy_parse::headers(section, &mut t, notes);
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haproxy_times_default_to_milliseconds() {
        assert_eq!(millis("5000").unwrap(), 5000);
        assert_eq!(millis("5s").unwrap(), 5000);
        assert_eq!(millis("15m").unwrap(), 900_000);
        assert_eq!(duration("2000").unwrap(), Value::Str("2s".into()));
        assert!(millis("5x").is_err());
    }
}
