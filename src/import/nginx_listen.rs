//! nginx `server` blocks as `[[listener]]`s: the `listen` forms, `location` kinds, and the
//! routes of one address (virtual hosts by `server_name` become routes with `host`; the
//! default server's locations become routes without one, its `location /` the listener's
//! upstream).

use super::include::Directive;
use super::nginx::Walk;
use super::nginx_keys::{self, Scope};
use super::toml_out::{Listener, Table, Value};
use super::{Notes, Origin};

/// One `listen`: the address ringway binds and whether it is the default server there.
#[derive(Clone, Debug)]
pub struct Bind {
    pub addr: String,
    pub default: bool,
    pub at: Origin,
}

/// An http `server` block as read.
pub struct HttpServer {
    pub at: Origin,
    pub binds: Vec<Bind>,
    pub names: Vec<(String, Origin)>,
    pub scope: Scope,
    pub locations: Vec<Loc>,
}

/// A proxying `location`.
pub struct Loc {
    pub at: Origin,
    pub kind: LocKind,
    pub scope: Scope,
    pub upstream: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LocKind {
    /// `location /` or a regex that matches every path: the listener's default.
    Default,
    /// `location /p` (also `^~ /p`, and `= /p` with a warning): a route.
    Prefix(String),
}

/// The address of a `listen` directive, or `None` (with a warning) when ringway cannot serve
/// it as written. `tcp` is a stream server's listen.
pub fn listen(d: &Directive, tcp: bool, notes: &mut Notes) -> Option<Bind> {
    let (addr, params) = d.args.split_first()?;
    if addr.starts_with("unix:") {
        notes.warn(
            &d.at,
            format!("listen {addr}: unix sockets are not supported; dropped"),
        );
        return None;
    }
    let mut default = false;
    for param in params {
        let name = param.split('=').next().unwrap_or(param);
        match name {
            "default_server" | "default" => default = true,
            "ssl" => {
                let message =
                    format!("listen {addr} ssl: TLS is not supported yet; this address is dropped");
                notes.warn(&d.at, message);
                return None;
            }
            "udp" => {
                notes.warn(
                    &d.at,
                    format!("listen {addr} udp: ringway relays TCP only; dropped"),
                );
                return None;
            }
            "proxy_protocol" => {
                let message = format!(
                    "listen {addr} proxy_protocol: ringway does not read a PROXY header from \
                     clients; this address is dropped"
                );
                notes.warn(&d.at, message);
                return None;
            }
            "reuseport" => notes.note(
                &d.at,
                "reuseport: ringway always opens one SO_REUSEPORT socket per worker",
            ),
            "http2" | "quic" | "spdy" => notes.warn(
                &d.at,
                format!("listen {name}: ringway speaks HTTP/1.x only"),
            ),
            _ => notes.note(
                &d.at,
                format!(
                    "listen parameter {param}: ignored (socket tuning ringway does not expose)"
                ),
            ),
        }
    }
    let _ = tcp;
    Some(Bind {
        addr: bind_addr(addr),
        default,
        at: d.at.clone(),
    })
}

/// nginx's `8080`, `*:8080`, `127.0.0.1`, `[::]:8080` as `host:port`.
fn bind_addr(text: &str) -> String {
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return format!("0.0.0.0:{text}");
    }
    if let Some(port) = text.strip_prefix("*:") {
        return format!("0.0.0.0:{port}");
    }
    let has_port = match text.rfind(']') {
        Some(close) => text[close..].contains(':'),
        None => text.contains(':'),
    };
    if has_port {
        text.to_string()
    } else {
        format!("{text}:80")
    }
}

/// Regexes that match every path: what people write for "everything".
const MATCH_ALL: &[&str] = &[
    "/", "^/", "^(/)", "^/.*", ".*", "^.*", "^(/.*)", "^/(.*)", "^/.*$", "(.*)",
];

/// What a `location` matches, or `None` (with a warning) when ringway has no route for it.
pub fn location_kind(d: &Directive, notes: &mut Notes) -> Option<LocKind> {
    let args: Vec<&str> = d.args.iter().map(String::as_str).collect();
    let prefix = |p: &str| {
        if p == "/" {
            LocKind::Default
        } else {
            LocKind::Prefix(p.to_string())
        }
    };
    match args.as_slice() {
        [p] if p.starts_with('@') => {
            notes.warn(
                &d.at,
                format!("named location {p}: ringway has no internal redirects; dropped"),
            );
            None
        }
        [p] | ["^~", p] => Some(prefix(p)),
        ["=", p] => {
            if *p != "/" {
                notes.warn(&d.at, format!("location = {p}: exact match written as a prefix route (ringway routes match prefixes)"));
            }
            Some(prefix(p))
        }
        ["~" | "~*", re] if MATCH_ALL.contains(re) => Some(LocKind::Default),
        [m @ ("~" | "~*"), re] => {
            notes.warn(
                &d.at,
                format!("location {m} {re}: regex locations are not supported; dropped"),
            );
            None
        }
        _ => {
            notes.warn(&d.at, "location: not understood; dropped");
            None
        }
    }
}

/// Whether two values are the same setting (sub-tables compared without their origins).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Table(x), Value::Table(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|(p, q)| p.key == q.key && same(&p.value, &q.value))
        }
        _ => a == b,
    }
}

/// Keys on which `other` differs from `base` (a key missing on one side is the default).
fn differences(base: &Table, other: &Table) -> Vec<String> {
    let mut keys: Vec<&String> = base.0.iter().chain(&other.0).map(|e| &e.key).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| match (base.get(k), other.get(k)) {
            (Some(a), Some(b)) => !same(&a.value, &b.value),
            (None, None) => false,
            _ => true,
        })
        .cloned()
        .collect()
}

/// Puts `keys` (from the context at `at`) in upstream `name`; the first context to use an
/// upstream decides, a later one that needs other values is reported.
pub fn merge_upstream_keys(walk: &mut Walk<'_>, name: &str, keys: Table, at: &Origin) {
    if let Some((owner, theirs)) = walk.owners.get(name) {
        for key in differences(theirs, &keys) {
            let message = format!(
                "upstream {name}: this context needs another {key}, but ringway sets it per \
                 upstream; kept the value for {owner}"
            );
            walk.notes.warn(at, message);
        }
        return;
    }
    if let Some(up) = walk.doc.upstream(name) {
        for e in keys.0.iter().cloned() {
            up.keys.set_noted(&e.key, e.value, &e.at, e.note);
        }
    }
    walk.owners.insert(name.to_string(), (at.clone(), keys));
}

/// Every http listener, one per address, in the order addresses first appear.
pub fn listeners(walk: &mut Walk<'_>, servers: &[HttpServer]) -> Vec<Listener> {
    let mut addrs: Vec<String> = Vec::new();
    for bind in servers.iter().flat_map(|s| &s.binds) {
        if !addrs.contains(&bind.addr) {
            addrs.push(bind.addr.clone());
        }
    }
    for loc in servers.iter().flat_map(|s| &s.locations) {
        if let Some(name) = &loc.upstream {
            let keys = nginx_keys::upstream_keys(&loc.scope, walk.notes);
            merge_upstream_keys(walk, name, keys, &loc.at);
        }
    }
    let mut out = Vec::new();
    for addr in addrs {
        let on: Vec<(&HttpServer, &Bind)> = servers
            .iter()
            .filter_map(|s| s.binds.iter().find(|b| b.addr == addr).map(|b| (s, b)))
            .collect();
        if let Some(listener) = listener(walk, &on) {
            out.push(listener);
        }
    }
    out
}

fn listener(walk: &mut Walk<'_>, on: &[(&HttpServer, &Bind)]) -> Option<Listener> {
    let default = on.iter().position(|(_, b)| b.default).unwrap_or(0);
    let (main, bind) = on[default];
    let main_loc = main.locations.iter().find(|l| l.kind == LocKind::Default);
    let mut routes: Vec<Table> = Vec::new();
    for (i, (server, _)) in on.iter().enumerate() {
        if i != default {
            routes.extend(host_routes(walk, server));
        }
    }
    routes.extend(path_routes(&main.locations, None));
    let upstream = match main_loc.and_then(|l| l.upstream.clone().map(|u| (u, l.at.clone()))) {
        Some(u) => u,
        None => {
            let first = routes.first().and_then(|r| r.get("upstream"))?;
            let Value::Str(u) = &first.value else {
                return None;
            };
            let message = format!(
                "no `location /` in the default server: paths no location matches go to {u} \
                 (nginx answers them itself)"
            );
            walk.notes.warn(&main.at, message);
            (u.clone(), first.at.clone())
        }
    };
    let mut l = Listener::default();
    l.keys.set("bind", Value::Str(bind.addr.clone()), &bind.at);
    l.keys.set("upstream", Value::Str(upstream.0), &upstream.1);
    let scope = main_loc.map_or(&main.scope, |loc| &loc.scope);
    let keys = nginx_keys::listener_keys(scope, walk.notes);
    for (server, _) in on {
        check_listener_keys(walk, &keys, server);
    }
    l.keys.0.extend(keys.0);
    l.routes = routes;
    Some(l)
}

/// Reports locations (and other servers on the address) that need listener keys other
/// than the listener's.
fn check_listener_keys(walk: &mut Walk<'_>, keys: &Table, server: &HttpServer) {
    // Only proxying locations serve requests: the server level itself never does.
    let scopes = server.locations.iter().map(|l| (&l.scope, &l.at));
    for (scope, at) in scopes {
        let theirs = nginx_keys::listener_keys(scope, walk.notes);
        for key in differences(keys, &theirs) {
            let message = format!(
                "{key} differs here, but ringway sets it per listener (address): this value \
                 is not carried over"
            );
            walk.notes.warn(at, message);
        }
    }
}

/// Routes for a name-based virtual host: one per name and location, `host` set.
fn host_routes(walk: &mut Walk<'_>, server: &HttpServer) -> Vec<Table> {
    let mut routes = Vec::new();
    for (name, at) in &server.names {
        let plain =
            !name.is_empty() && name != "_" && !name.starts_with('~') && !name.contains('*');
        if !plain {
            walk.notes.warn(
                at,
                format!("server_name {name:?}: ringway routes on exact host names only; dropped"),
            );
            continue;
        }
        routes.extend(path_routes(&server.locations, Some((name, at))));
    }
    if server.names.is_empty() {
        walk.notes.warn(
            &server.at,
            "a second server on this address without server_name: never chosen; dropped",
        );
    }
    routes
}

/// Routes for `locations`, longest prefix first (nginx picks the longest matching prefix;
/// ringway the first matching route). With a host, `location /` becomes a host-only route.
fn path_routes(locations: &[Loc], host: Option<(&String, &Origin)>) -> Vec<Table> {
    let mut sorted: Vec<&Loc> = locations.iter().filter(|l| l.upstream.is_some()).collect();
    let len = |l: &Loc| match &l.kind {
        LocKind::Prefix(p) => p.len(),
        LocKind::Default => 0,
    };
    sorted.sort_by_key(|l| std::cmp::Reverse(len(l)));
    let mut routes = Vec::new();
    for loc in sorted {
        let mut route = Table::default();
        match (&loc.kind, host) {
            (LocKind::Default, None) => continue,
            (LocKind::Default, Some(_)) => {}
            (LocKind::Prefix(p), _) => route.set("path_prefix", Value::Str(p.clone()), &loc.at),
        }
        if let Some((name, at)) = host {
            route.set("host", Value::Str(name.clone()), at);
        }
        if let Some(u) = &loc.upstream {
            route.set("upstream", Value::Str(u.clone()), &loc.at);
        }
        routes.push(route);
    }
    routes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(name: &str, args: &[&str]) -> Directive {
        Directive {
            name: name.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            block: None,
            at: Origin {
                file: "l.conf".into(),
                line: 9,
            },
        }
    }

    #[test]
    fn listen_forms_become_addresses() {
        let mut notes = Notes::default();
        let addr = |args: &[&str], notes: &mut Notes| {
            listen(&d("listen", args), false, notes).map(|b| b.addr)
        };
        assert_eq!(addr(&["8080"], &mut notes).unwrap(), "0.0.0.0:8080");
        assert_eq!(addr(&["*:8080"], &mut notes).unwrap(), "0.0.0.0:8080");
        assert_eq!(addr(&["127.0.0.1:81"], &mut notes).unwrap(), "127.0.0.1:81");
        assert_eq!(addr(&["127.0.0.1"], &mut notes).unwrap(), "127.0.0.1:80");
        assert_eq!(
            addr(&["[::]:8080", "ipv6only=on"], &mut notes).unwrap(),
            "[::]:8080"
        );
        assert!(notes.warnings().count() == 0);
        let b = listen(
            &d("listen", &["80", "default_server", "reuseport"]),
            false,
            &mut notes,
        )
        .unwrap();
        assert!(b.default);
        assert!(notes.list.iter().any(|n| n.message.contains("reuseport")));
        assert!(addr(&["443", "ssl"], &mut notes).is_none());
        assert!(addr(&["unix:/run/x.sock"], &mut notes).is_none());
        assert_eq!(notes.warnings().count(), 2);
    }

    #[test]
    fn match_all_regexes_are_the_default_and_other_regexes_warn() {
        let mut notes = Notes::default();
        assert_eq!(
            location_kind(&d("location", &["~*", "^(/)"]), &mut notes),
            Some(LocKind::Default)
        );
        assert_eq!(
            location_kind(&d("location", &["~", "^/"]), &mut notes),
            Some(LocKind::Default)
        );
        assert_eq!(
            location_kind(&d("location", &["/"]), &mut notes),
            Some(LocKind::Default)
        );
        assert_eq!(
            location_kind(&d("location", &["^~", "/v1/"]), &mut notes),
            Some(LocKind::Prefix("/v1/".into()))
        );
        assert!(notes.list.is_empty());
        assert_eq!(
            location_kind(&d("location", &["~", "\\.php$"]), &mut notes),
            None
        );
        assert_eq!(
            location_kind(&d("location", &["@fallback"]), &mut notes),
            None
        );
        assert!(location_kind(&d("location", &["=", "/health"]), &mut notes).is_some());
        assert_eq!(notes.warnings().count(), 3);
    }

    #[test]
    fn differences_ignore_origins_and_count_missing_keys() {
        let at = |line| Origin {
            file: "x".into(),
            line,
        };
        let mut a = Table::default();
        a.set("read_timeout", Value::Str("900s".into()), &at(1));
        let mut b = Table::default();
        b.set("read_timeout", Value::Str("900s".into()), &at(2));
        assert!(differences(&a, &b).is_empty());
        b.set("connect_timeout", Value::Str("5s".into()), &at(2));
        assert_eq!(differences(&a, &b), ["connect_timeout"]);
    }
}
