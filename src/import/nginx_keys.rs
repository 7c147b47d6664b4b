//! The nginx settings that carry over: [`Scope`] follows nginx's inheritance from `http`
//! to `server` to `location`; [`listener_keys`] and [`upstream_keys`] turn the settings in
//! force in one context into ringway keys. What does not carry over is in
//! [`super::nginx_drop`].

use std::collections::BTreeMap;

use super::include::Directive;
use super::toml_out::{Entry, Table, Value};
use super::{Notes, vars};

/// The directives nginx inherits from `http` to `server` to `location` that have a
/// ringway key (read by [`listener_keys`] and [`upstream_keys`]).
pub(super) const INHERITED: &[&str] = &[
    "client_max_body_size",
    "client_header_timeout",
    "client_body_timeout",
    "client_body_buffer_size",
    "keepalive_timeout",
    "keepalive_requests",
    "large_client_header_buffers",
    "gzip",
    "gzip_types",
    "gzip_comp_level",
    "gzip_min_length",
    "proxy_set_header",
    "add_header",
    "proxy_hide_header",
    "proxy_connect_timeout",
    "proxy_send_timeout",
    "proxy_read_timeout",
    "proxy_next_upstream",
    "proxy_next_upstream_tries",
    "proxy_next_upstream_timeout",
    "access_log",
    // stream
    "proxy_timeout",
    "proxy_protocol",
];

/// Directives that nginx repeats to build a list; a level that writes one replaces the
/// whole inherited list (nginx's rule for `proxy_set_header` and `add_header`).
const LISTS: &[&str] = &[
    "proxy_set_header",
    "add_header",
    "proxy_hide_header",
    "access_log",
];

/// The settings in force in one context: the last of each directive, and whole lists for
/// [`LISTS`] directives.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    pub one: BTreeMap<String, Directive>,
    pub many: BTreeMap<String, Vec<Directive>>,
}

impl Scope {
    /// This scope with the settings of `block` (one nested level) applied on top.
    pub fn child(&self, block: &[Directive]) -> Scope {
        let mut scope = self.clone();
        let mut replaced: Vec<&str> = Vec::new();
        for d in block.iter().filter(|d| d.block.is_none()) {
            if !INHERITED.contains(&d.name.as_str()) {
                continue;
            }
            if LISTS.contains(&d.name.as_str()) {
                let list = scope.many.entry(d.name.clone()).or_default();
                if !replaced.contains(&d.name.as_str()) {
                    list.clear();
                    replaced.push(&d.name);
                }
                list.push(d.clone());
            } else {
                scope.one.insert(d.name.clone(), d.clone());
            }
        }
        scope
    }
}

/// Sets `key` from directive `name` with one argument converted by `convert`.
fn single(
    table: &mut Table,
    scope: &Scope,
    name: &str,
    key: &str,
    convert: fn(&str) -> Result<Value, String>,
    notes: &mut Notes,
) {
    let Some(d) = scope.one.get(name) else { return };
    let Some(arg) = d.args.first() else {
        return notes.warn(&d.at, format!("{name} without a value; dropped"));
    };
    if d.args.len() > 1 && name != "keepalive_timeout" {
        notes.warn(&d.at, format!("{name}: only the first value is used"));
    }
    match convert(arg) {
        Ok(v) => table.set(key, v, &d.at),
        Err(e) => notes.warn(&d.at, format!("{name}: {e}; dropped")),
    }
}

fn dur(text: &str) -> Result<Value, String> {
    vars::nginx_duration(text).map(Value::Str)
}

fn size(text: &str) -> Result<Value, String> {
    vars::size(text).map(Value::Str)
}

fn int(text: &str) -> Result<Value, String> {
    text.parse()
        .map(Value::Int)
        .map_err(|_| format!("{text:?} is not a number"))
}

/// The listener keys of an http `server` (or `location`) scope.
pub fn listener_keys(scope: &Scope, notes: &mut Notes) -> Table {
    let mut t = Table::default();
    single(
        &mut t,
        scope,
        "client_max_body_size",
        "client_max_body_size",
        size,
        notes,
    );
    single(
        &mut t,
        scope,
        "client_header_timeout",
        "client_header_timeout",
        dur,
        notes,
    );
    single(
        &mut t,
        scope,
        "client_body_timeout",
        "client_body_timeout",
        dur,
        notes,
    );
    single(
        &mut t,
        scope,
        "client_body_buffer_size",
        "client_body_buffer_size",
        size,
        notes,
    );
    single(
        &mut t,
        scope,
        "keepalive_timeout",
        "keepalive_timeout",
        dur,
        notes,
    );
    if let Some(d) = scope
        .one
        .get("keepalive_timeout")
        .filter(|d| d.args.len() > 1)
    {
        notes.warn(
            &d.at,
            "keepalive_timeout: the Keep-Alive header timeout (second value) is not sent",
        );
    }
    single(
        &mut t,
        scope,
        "keepalive_requests",
        "keepalive_requests",
        int,
        notes,
    );
    if let Some(d) = scope.one.get("large_client_header_buffers") {
        header_buffers(&mut t, d, notes);
    }
    if let Some(gzip) = gzip(scope, notes) {
        let at = scope.one["gzip"].at.clone();
        t.set("gzip", Value::Table(gzip), &at);
    }
    let headers = request_headers(scope, notes);
    if !headers.is_empty() {
        let at = headers[0].at.clone();
        t.set("request_headers", Value::Table(headers), &at);
    }
    let added = response_headers(scope, notes);
    if !added.is_empty() {
        let at = added[0].at.clone();
        t.set("response_headers", Value::Table(added), &at);
    }
    if let Some(hidden) = scope
        .many
        .get("proxy_hide_header")
        .filter(|l| !l.is_empty())
    {
        let names: Vec<String> = hidden
            .iter()
            .flat_map(|d| d.args.first().cloned())
            .collect();
        let lines: Vec<String> = hidden.iter().map(|d| d.at.line.to_string()).collect();
        let note = (hidden.len() > 1).then(|| format!("lines {}", lines.join(", ")));
        t.set_noted(
            "hide_response_headers",
            Value::Strs(names),
            &hidden[0].at,
            note,
        );
    }
    t
}

/// `large_client_header_buffers 4 8k` bounds one head at 4 x 8k: ringway's max_header_size.
fn header_buffers(t: &mut Table, d: &Directive, notes: &mut Notes) {
    let total = match d.args.as_slice() {
        [n, s] => n
            .parse::<u64>()
            .ok()
            .zip(crate::config::units::parse_size(s).ok()),
        _ => None,
    };
    match total.and_then(|(n, s)| n.checked_mul(s)) {
        Some(bytes) => {
            let note = format!(
                "{} x {}: the most one request head can take",
                d.args[0], d.args[1]
            );
            t.set_noted(
                "max_header_size",
                Value::Int(bytes as i64),
                &d.at,
                Some(note),
            );
        }
        None => notes.warn(
            &d.at,
            "large_client_header_buffers: expected NUMBER SIZE; dropped",
        ),
    }
}

fn gzip(scope: &Scope, notes: &mut Notes) -> Option<Vec<Entry>> {
    let on = scope.one.get("gzip")?;
    if on.args.first().map(String::as_str) != Some("on") {
        return None;
    }
    let mut t = Table::default();
    single(&mut t, scope, "gzip_comp_level", "level", int, notes);
    single(&mut t, scope, "gzip_min_length", "min_length", size, notes);
    if let Some(d) = scope.one.get("gzip_types") {
        if d.args.iter().any(|a| a == "*") {
            notes.warn(
                &d.at,
                "gzip_types *: ringway compresses listed types only; kept the default text/html",
            );
        } else {
            // nginx always compresses text/html besides the listed types.
            let mut types = vec!["text/html".to_string()];
            types.extend(d.args.iter().filter(|a| *a != "text/html").cloned());
            let note = Some("text/html is always compressed by nginx".to_string());
            t.set_noted("types", Value::Strs(types), &d.at, note);
        }
    }
    Some(t.0)
}

/// `proxy_set_header` lines as `request_headers`, minus those ringway sends by itself.
fn request_headers(scope: &Scope, notes: &mut Notes) -> Vec<Entry> {
    let mut out = Vec::new();
    for d in scope.many.get("proxy_set_header").into_iter().flatten() {
        let [name, value] = d.args.as_slice() else {
            notes.warn(&d.at, "proxy_set_header takes a name and a value; dropped");
            continue;
        };
        if let Some(why) = builtin_header(name, value) {
            notes.note(&d.at, format!("proxy_set_header {name} {value:?}: {why}"));
            continue;
        }
        if value.is_empty() {
            notes.warn(
                &d.at,
                format!(
                    "proxy_set_header {name} \"\": ringway cannot remove a request header; dropped"
                ),
            );
            continue;
        }
        match vars::template(value, None) {
            Ok((v, _)) => out.push(entry(name, v, d)),
            Err(e) => notes.warn(&d.at, format!("proxy_set_header {name}: {e}; dropped")),
        }
    }
    out
}

/// Why ringway needs no rule for `name: value`, when it does not.
fn builtin_header(name: &str, value: &str) -> Option<&'static str> {
    let name = name.to_ascii_lowercase();
    match (name.as_str(), value) {
        ("host", "$host" | "$http_host") => Some("ringway passes the client's Host"),
        ("x-forwarded-for", "$proxy_add_x_forwarded_for") => {
            Some("ringway appends the client to X-Forwarded-For")
        }
        ("x-real-ip", "$remote_addr") => Some("ringway sets X-Real-IP to the client address"),
        ("x-forwarded-proto", "$scheme" | "http") => Some("ringway sets X-Forwarded-Proto"),
        ("connection", "" | "upgrade" | "$connection_upgrade" | "keep-alive") => Some(
            "ringway manages Connection itself (keep-alive to servers, Upgrade passed through)",
        ),
        ("upgrade", "$http_upgrade") => Some("ringway passes Upgrade (WebSocket) through"),
        _ => None,
    }
}

fn response_headers(scope: &Scope, notes: &mut Notes) -> Vec<Entry> {
    let mut out = Vec::new();
    for d in scope.many.get("add_header").into_iter().flatten() {
        let (name, value) = match d.args.as_slice() {
            [name, value] => (name, value),
            [name, value, always] if always == "always" => {
                notes.warn(&d.at, "add_header ... always: ringway adds the header to proxied responses only, not to its own errors");
                (name, value)
            }
            _ => {
                notes.warn(&d.at, "add_header takes a name and a value; dropped");
                continue;
            }
        };
        match vars::template(value, None) {
            Ok((v, _)) => out.push(entry(name, v, d)),
            Err(e) => notes.warn(&d.at, format!("add_header {name}: {e}; dropped")),
        }
    }
    out
}

fn entry(key: &str, value: String, d: &Directive) -> Entry {
    Entry {
        key: key.to_string(),
        value: Value::Str(value),
        at: d.at.clone(),
        note: None,
    }
}

/// The upstream keys of the scope an http `location` proxies from.
pub fn upstream_keys(scope: &Scope, notes: &mut Notes) -> Table {
    let mut t = Table::default();
    single(
        &mut t,
        scope,
        "proxy_connect_timeout",
        "connect_timeout",
        dur,
        notes,
    );
    single(
        &mut t,
        scope,
        "proxy_send_timeout",
        "send_timeout",
        dur,
        notes,
    );
    single(
        &mut t,
        scope,
        "proxy_read_timeout",
        "read_timeout",
        dur,
        notes,
    );
    single(
        &mut t,
        scope,
        "proxy_next_upstream_tries",
        "next_upstream_tries",
        int,
        notes,
    );
    single(
        &mut t,
        scope,
        "proxy_next_upstream_timeout",
        "next_upstream_timeout",
        dur,
        notes,
    );
    if let Some(d) = scope.one.get("proxy_next_upstream") {
        next_upstream(&mut t, d, notes);
    }
    t
}

fn next_upstream(t: &mut Table, d: &Directive, notes: &mut Notes) {
    if d.args.len() == 1 && d.args[0] == "off" {
        return t.set("next_upstream", Value::Str("off".into()), &d.at);
    }
    let mut kept = Vec::new();
    for a in &d.args {
        if crate::config::is_next_upstream_condition(a) {
            kept.push(a.clone());
        } else {
            notes.warn(
                &d.at,
                format!("proxy_next_upstream {a}: no such condition in ringway; dropped"),
            );
        }
    }
    if !kept.is_empty() {
        t.set("next_upstream", Value::Strs(kept), &d.at);
    }
}

/// The upstream keys of a stream `server` scope (tcp mode).
pub fn stream_upstream_keys(scope: &Scope, notes: &mut Notes) -> Table {
    let mut t = Table::default();
    single(
        &mut t,
        scope,
        "proxy_connect_timeout",
        "connect_timeout",
        dur,
        notes,
    );
    single(
        &mut t,
        scope,
        "proxy_next_upstream_tries",
        "next_upstream_tries",
        int,
        notes,
    );
    single(
        &mut t,
        scope,
        "proxy_next_upstream_timeout",
        "next_upstream_timeout",
        dur,
        notes,
    );
    // nginx's stream proxy_timeout bounds the gap between reads either way.
    if let Some(d) = scope.one.get("proxy_timeout") {
        match d.args.first().map(|a| vars::nginx_duration(a)) {
            Some(Ok(v)) => {
                t.set("read_timeout", Value::Str(v.clone()), &d.at);
                t.set("send_timeout", Value::Str(v), &d.at);
            }
            _ => notes.warn(&d.at, "proxy_timeout: bad time; dropped"),
        }
    }
    if let Some(d) = scope.one.get("proxy_next_upstream")
        && d.args.first().is_some_and(|a| a == "off")
    {
        t.set("next_upstream", Value::Str("off".into()), &d.at);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::Origin;

    fn d(line: u32, name: &str, args: &[&str]) -> Directive {
        Directive {
            name: name.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            block: None,
            at: Origin {
                file: "k.conf".into(),
                line,
            },
        }
    }

    #[test]
    fn a_level_with_its_own_proxy_set_header_replaces_the_inherited_list() {
        let http = Scope::default().child(&[
            d(1, "proxy_set_header", &["X-A", "1"]),
            d(2, "proxy_set_header", &["X-B", "2"]),
            d(3, "proxy_read_timeout", &["900"]),
        ]);
        let location = http.child(&[d(5, "proxy_set_header", &["X-C", "$remote_addr"])]);
        let keys = listener_keys(&location, &mut Notes::default());
        let Value::Table(h) = &keys.get("request_headers").unwrap().value else {
            panic!()
        };
        assert_eq!(h.len(), 1);
        assert_eq!((h[0].key.as_str(), h[0].at.line), ("X-C", 5));
        let up = upstream_keys(&location, &mut Notes::default());
        assert_eq!(
            up.get("read_timeout").unwrap().value,
            Value::Str("15m".into())
        );
    }

    #[test]
    fn headers_ringway_sends_itself_are_notes_not_rules() {
        let scope = Scope::default().child(&[
            d(1, "proxy_set_header", &["Host", "$host"]),
            d(
                2,
                "proxy_set_header",
                &["X-Forwarded-For", "$proxy_add_x_forwarded_for"],
            ),
            d(3, "proxy_set_header", &["Connection", ""]),
            d(4, "proxy_set_header", &["X-Real-IP", "$remote_addr"]),
            d(5, "proxy_set_header", &["X-Forwarded-Host", "$host"]),
            d(6, "proxy_set_header", &["X-Who", "$remote_user"]),
        ]);
        let mut notes = Notes::default();
        let keys = listener_keys(&scope, &mut notes);
        let Value::Table(h) = &keys.get("request_headers").unwrap().value else {
            panic!()
        };
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].value, Value::Str("$host".into()));
        assert_eq!(notes.list.len(), 5);
        let warned: Vec<u32> = notes.warnings().map(|n| n.at.line).collect();
        assert_eq!(warned, [6]);
    }

    #[test]
    fn gzip_keeps_nginx_defaults_and_always_text_html() {
        let scope = Scope::default().child(&[
            d(1, "gzip", &["on"]),
            d(2, "gzip_types", &["application/json", "text/plain"]),
            d(3, "gzip_comp_level", &["5"]),
        ]);
        let keys = listener_keys(&scope, &mut Notes::default());
        let Value::Table(g) = &keys.get("gzip").unwrap().value else {
            panic!()
        };
        assert_eq!(g[0].value, Value::Int(5));
        assert_eq!(
            g[1].value,
            Value::Strs(vec![
                "text/html".into(),
                "application/json".into(),
                "text/plain".into()
            ])
        );
        let off = Scope::default().child(&[d(1, "gzip", &["off"]), d(2, "gzip_types", &["a/b"])]);
        assert!(
            listener_keys(&off, &mut Notes::default())
                .get("gzip")
                .is_none()
        );
    }

    #[test]
    fn next_upstream_keeps_known_conditions() {
        let scope = Scope::default().child(&[d(
            1,
            "proxy_next_upstream",
            &["error", "timeout", "http_500", "updating", "non_idempotent"],
        )]);
        let mut notes = Notes::default();
        let t = upstream_keys(&scope, &mut notes);
        assert_eq!(
            t.get("next_upstream").unwrap().value,
            Value::Strs(vec![
                "error".into(),
                "timeout".into(),
                "http_500".into(),
                "non_idempotent".into()
            ])
        );
        assert_eq!(notes.warnings().count(), 1);
    }

    #[test]
    fn header_buffers_become_one_head_limit() {
        let scope = Scope::default().child(&[d(1, "large_client_header_buffers", &["4", "8k"])]);
        let t = listener_keys(&scope, &mut Notes::default());
        assert_eq!(t.get("max_header_size").unwrap().value, Value::Int(32768));
    }
}
