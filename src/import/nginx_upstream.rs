//! An nginx `upstream NAME { ... }` block (http or stream) as `[upstreams.NAME]`: the
//! balancing directive, pooled keep-alive, and each `server` line with its parameters.

use super::include::Directive;
use super::toml_out::{Server, Table, Upstream, Value};
use super::{Notes, Origin, vars};

/// Converts the block of `upstream` directive `d`, named `name` in the output.
pub fn convert(d: &Directive, name: &str, notes: &mut Notes) -> Upstream {
    let mut up = Upstream {
        name: name.to_string(),
        at: d.at.clone(),
        keys: Table::default(),
        servers: Vec::new(),
    };
    for inner in d.block.as_deref().unwrap_or_default() {
        directive(&mut up, inner, notes);
    }
    if up.servers.is_empty() {
        notes.warn(
            &d.at,
            format!("upstream {name} has no server ringway can use"),
        );
    }
    up
}

fn directive(up: &mut Upstream, d: &Directive, notes: &mut Notes) {
    let args: Vec<&str> = d.args.iter().map(String::as_str).collect();
    let keys = &mut up.keys;
    let str_ = |s: &str| Value::Str(s.to_string());
    match (d.name.as_str(), args.as_slice()) {
        ("server", [addr, params @ ..]) => {
            if let Some(server) = server(up, d, addr, params, notes) {
                up.servers.push(server);
            }
        }
        ("least_conn", []) => keys.set("balance", str_("least_conn"), &d.at),
        ("ip_hash", []) => {
            keys.set("balance", str_("ip_hash"), &d.at);
            notes.note(
                &d.at,
                "ip_hash: ringway hashes the whole client address (nginx: the first three \
                 octets of an IPv4 address)",
            );
        }
        ("hash", [key, rest @ ..]) => hash(keys, d, key, rest, notes),
        ("random", rest) => {
            keys.set("balance", str_("random_two"), &d.at);
            if rest.first() != Some(&"two") {
                notes.warn(&d.at, "random: ringway has random_two (the better of two random picks), not one random pick");
            } else if rest.len() > 1 && rest[1] != "least_conn" {
                notes.warn(&d.at, format!("random two {}: ringway compares active requests (least_conn)", rest[1]));
            }
        }
        ("keepalive", [n]) => int(keys, "keepalive", d, n, notes),
        ("keepalive_requests", [n]) => int(keys, "keepalive_requests", d, n, notes),
        ("keepalive_timeout", [t]) => dur(keys, "keepalive_timeout", d, t, notes),
        ("queue", [n, rest @ ..]) => queue(keys, d, n, rest, notes),
        ("zone", _) => notes.note(&d.at, "zone: ringway shares server state across its workers anyway"),
        ("keepalive_time", _) => notes.warn(&d.at, "keepalive_time: no equivalent (ringway bounds a pooled connection by keepalive_requests and keepalive_timeout)"),
        ("least_time", _) => {
            keys.set("balance", str_("least_time"), &d.at);
            notes.note(
                &d.at,
                "least_time (nginx-plus): ringway's least_time scores the time to the first \
                 body byte (an LLM stream's first token) times active requests",
            );
        }
        _ => notes.warn(&d.at, format!("{}: not supported in an upstream block; dropped", d.name)),
    }
}

fn hash(keys: &mut Table, d: &Directive, key: &str, rest: &[&str], notes: &mut Notes) {
    match vars::template(key, None) {
        Ok((template, _)) => {
            keys.set("balance", Value::Str("hash".into()), &d.at);
            keys.set("hash_key", Value::Str(template), &d.at);
        }
        Err(e) => {
            notes.warn(
                &d.at,
                format!("hash {key}: {e}; balancing falls back to round robin"),
            );
            return;
        }
    }
    if rest != ["consistent"] {
        notes.note(
            &d.at,
            "hash without `consistent`: ringway's hash is always consistent (ketama), so \
             adding or removing a server moves fewer keys than nginx's plain hash",
        );
    }
}

fn queue(keys: &mut Table, d: &Directive, n: &str, rest: &[&str], notes: &mut Notes) {
    let Ok(max) = n.parse::<i64>() else {
        return notes.warn(&d.at, format!("queue {n}: not a number; dropped"));
    };
    let mut q = vec![("max", Value::Int(max))];
    // nginx-plus's default queue timeout.
    let mut timeout = "60s".to_string();
    for param in rest {
        match param.strip_prefix("timeout=").map(vars::nginx_duration) {
            Some(Ok(t)) => timeout = t,
            _ => notes.warn(
                &d.at,
                format!("queue parameter {param}: not understood; dropped"),
            ),
        }
    }
    q.push(("timeout", Value::Str(timeout)));
    let table = q
        .into_iter()
        .map(|(k, v)| super::toml_out::Entry {
            key: k.into(),
            value: v,
            at: d.at.clone(),
            note: None,
        })
        .collect();
    keys.set("queue", Value::Table(table), &d.at);
}

fn int(keys: &mut Table, key: &str, d: &Directive, n: &str, notes: &mut Notes) {
    match n.parse::<i64>() {
        Ok(v) => keys.set(key, Value::Int(v), &d.at),
        Err(_) => notes.warn(&d.at, format!("{} {n}: not a number; dropped", d.name)),
    }
}

fn dur(keys: &mut Table, key: &str, d: &Directive, t: &str, notes: &mut Notes) {
    match vars::nginx_duration(t) {
        Ok(v) => keys.set(key, Value::Str(v), &d.at),
        Err(e) => notes.warn(&d.at, format!("{}: {e}; dropped", d.name)),
    }
}

/// `host:port` with nginx's default port 80 added; `None` for a unix socket.
pub fn address(addr: &str) -> Option<String> {
    if addr.starts_with("unix:") {
        return None;
    }
    let has_port = match addr.rfind(']') {
        Some(close) => addr[close..].contains(':'),
        None => addr.contains(':'),
    };
    Some(if has_port {
        addr.to_string()
    } else {
        format!("{addr}:80")
    })
}

fn server(
    up: &mut Upstream,
    d: &Directive,
    addr: &str,
    params: &[&str],
    notes: &mut Notes,
) -> Option<Server> {
    let Some(addr) = address(addr) else {
        notes.warn(
            &d.at,
            format!("server {addr}: unix sockets are not supported; server dropped"),
        );
        return None;
    };
    let mut keys = vec![("addr".to_string(), Value::Str(addr))];
    for param in params {
        let (name, value) = param.split_once('=').unwrap_or((param, ""));
        let parsed = match name {
            "weight" | "max_fails" | "max_conns" => value.parse::<i64>().map(Value::Int).ok(),
            "fail_timeout" => vars::nginx_duration(value).ok().map(Value::Str),
            "backup" | "down" if value.is_empty() => Some(Value::Bool(true)),
            "slow_start" => {
                slow_start(up, &d.at, value, notes);
                continue;
            }
            _ => {
                notes.warn(
                    &d.at,
                    format!("server parameter {param}: no equivalent; dropped"),
                );
                continue;
            }
        };
        match parsed {
            Some(v) => keys.push((name.to_string(), v)),
            None => notes.warn(
                &d.at,
                format!("server parameter {param}: bad value; dropped"),
            ),
        }
    }
    Some(Server {
        at: d.at.clone(),
        keys,
    })
}

/// nginx-plus sets slow_start per server; ringway has one value for the group.
fn slow_start(up: &mut Upstream, at: &Origin, value: &str, notes: &mut Notes) {
    let Ok(v) = vars::nginx_duration(value) else {
        return notes.warn(at, format!("slow_start={value}: bad time; dropped"));
    };
    match up.keys.get("slow_start") {
        Some(old) if old.value != Value::Str(v.clone()) => notes.warn(
            at,
            "slow_start differs between servers: ringway has one value per upstream; kept the first",
        ),
        Some(_) => {}
        None => up.keys.set("slow_start", Value::Str(v), at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(lines: &[(&str, &[&str])]) -> Directive {
        let at = |line| Origin {
            file: "u.conf".into(),
            line,
        };
        Directive {
            name: "upstream".into(),
            args: vec!["llm".into()],
            block: Some(
                lines
                    .iter()
                    .enumerate()
                    .map(|(i, (name, args))| Directive {
                        name: name.to_string(),
                        args: args.iter().map(|a| a.to_string()).collect(),
                        block: None,
                        at: at(i as u32 + 2),
                    })
                    .collect(),
            ),
            at: at(1),
        }
    }

    #[test]
    fn server_parameters_become_server_keys() {
        let d = block(&[
            ("least_conn", &[]),
            (
                "server",
                &[
                    "10.0.0.1:8000",
                    "weight=3",
                    "max_fails=2",
                    "fail_timeout=30",
                    "max_conns=8",
                ],
            ),
            ("server", &["10.0.0.2", "backup"]),
            ("server", &["10.0.0.3:8000", "down", "resolve"]),
            ("keepalive", &["32"]),
            ("least_time", &["header"]),
        ]);
        let mut notes = Notes::default();
        let up = convert(&d, "llm", &mut notes);
        // The last balancing directive wins, as in nginx.
        assert_eq!(
            up.keys.get("balance").unwrap().value,
            Value::Str("least_time".into())
        );
        assert_eq!(up.keys.get("keepalive").unwrap().value, Value::Int(32));
        assert_eq!(
            up.servers[0].keys,
            [
                ("addr".to_string(), Value::Str("10.0.0.1:8000".into())),
                ("weight".to_string(), Value::Int(3)),
                ("max_fails".to_string(), Value::Int(2)),
                ("fail_timeout".to_string(), Value::Str("30s".into())),
                ("max_conns".to_string(), Value::Int(8)),
            ]
        );
        assert_eq!(up.servers[1].keys[0].1, Value::Str("10.0.0.2:80".into()));
        assert_eq!(
            up.servers[1].keys[1],
            ("backup".to_string(), Value::Bool(true))
        );
        assert_eq!(up.servers[2].at.line, 5);
        let warned: Vec<String> = notes.warnings().map(|n| n.to_string()).collect();
        assert_eq!(warned.len(), 1, "{warned:?}");
        assert!(warned[0].starts_with("u.conf:5: warning: server parameter resolve"));
    }

    #[test]
    fn hash_consistent_takes_the_key_and_an_unknown_variable_is_a_warning() {
        let mut notes = Notes::default();
        let up = convert(
            &block(&[
                ("hash", &["$request_uri", "consistent"]),
                ("server", &["a:1"]),
            ]),
            "u",
            &mut notes,
        );
        assert_eq!(
            up.keys.get("hash_key").unwrap().value,
            Value::Str("$request_uri".into())
        );
        assert!(notes.list.is_empty());
        let up = convert(
            &block(&[("hash", &["$whatever"]), ("server", &["a:1"])]),
            "u",
            &mut notes,
        );
        assert!(up.keys.get("balance").is_none());
        assert!(notes.warnings().any(|n| n.message.contains("$whatever")));
    }

    #[test]
    fn unix_sockets_and_unknown_directives_are_reported() {
        let mut notes = Notes::default();
        let up = convert(
            &block(&[("server", &["unix:/run/a.sock"]), ("sticky", &["cookie"])]),
            "u",
            &mut notes,
        );
        assert!(up.servers.is_empty());
        assert_eq!(notes.warnings().count(), 3);
    }

    #[test]
    fn queue_and_slow_start_are_group_keys() {
        let mut notes = Notes::default();
        let up = convert(
            &block(&[
                ("queue", &["100", "timeout=70"]),
                ("server", &["a:1", "slow_start=30s"]),
            ]),
            "u",
            &mut notes,
        );
        let Value::Table(q) = &up.keys.get("queue").unwrap().value else {
            panic!()
        };
        assert_eq!(q[1].value, Value::Str("70s".into()));
        assert_eq!(
            up.keys.get("slow_start").unwrap().value,
            Value::Str("30s".into())
        );
    }
}
