//! The nginx configuration walked context by context (main, `events`, `http`, `server`,
//! `location`, `stream`) with nginx's inheritance, into a ringway [`Doc`]. Settings that nginx
//! keeps per `location` but ringway keeps per upstream or per listener are taken from the
//! location that owns them; a location that would need another value is reported.

use std::collections::BTreeMap;

use super::include::Directive;
use super::nginx_drop::{self, Class};
use super::nginx_keys::{self, Scope};
use super::nginx_listen::{self, HttpServer, Loc, LocKind};
use super::toml_out::{Doc, Listener, Server, Table, Upstream, Value};
use super::{ImportError, Notes, Origin, nginx_upstream, vars};

/// Converts the directive tree of a whole `nginx.conf`, or of a fragment holding
/// http-level directives (`upstream`, `server`).
pub fn convert(tree: &[Directive], notes: &mut Notes) -> Result<Doc, ImportError> {
    let mut walk = Walk {
        notes,
        doc: Doc::default(),
        formats: BTreeMap::new(),
        workers: None,
        connections: None,
        servers: Vec::new(),
        owners: BTreeMap::new(),
        http_names: BTreeMap::new(),
        stream_names: BTreeMap::new(),
    };
    let whole = tree.iter().any(|d| {
        matches!(
            d.name.as_str(),
            "http" | "events" | "stream" | "worker_processes"
        )
    });
    if whole {
        walk.main(tree);
    } else {
        walk.http(tree, &Scope::default());
    }
    walk.finish()
}

pub(super) struct Walk<'n> {
    pub notes: &'n mut Notes,
    pub doc: Doc,
    /// `log_format` name → ringway template and where it was defined.
    formats: BTreeMap<String, (String, Origin)>,
    /// `worker_processes N`, for `worker_connections`.
    workers: Option<i64>,
    connections: Option<(i64, Origin)>,
    /// http `server` blocks, turned into listeners once all are read.
    servers: Vec<HttpServer>,
    /// Upstream name → the context whose proxy settings it took, and those settings.
    pub owners: BTreeMap<String, (Origin, Table)>,
    /// nginx keeps http and stream upstream names apart; ringway has one set. Each maps
    /// the nginx name to the ringway one.
    http_names: BTreeMap<String, String>,
    stream_names: BTreeMap<String, String>,
}

impl Walk<'_> {
    /// Reports a directive this context does not translate.
    pub fn drop(&mut self, d: &Directive) {
        match nginx_drop::classify(d) {
            Class::Setting => {}
            Class::Already(why) => self.notes.note(&d.at, format!("{}: {why}", d.name)),
            Class::Dropped(why) => self
                .notes
                .warn(&d.at, format!("{}: {why}; dropped", d.name)),
        }
    }

    fn main(&mut self, tree: &[Directive]) {
        for d in tree {
            let args: Vec<&str> = d.args.iter().map(String::as_str).collect();
            let runtime = &mut self.doc.runtime;
            match (d.name.as_str(), args.as_slice(), &d.block) {
                ("http", [], Some(block)) => self.http(block, &Scope::default()),
                ("stream", [], Some(block)) => self.stream(block),
                ("events", [], Some(block)) => self.events(block),
                ("worker_processes", ["auto"], None) => {
                    runtime.set("workers", Value::Str("auto".into()), &d.at)
                }
                ("worker_processes", [n], None) if n.parse::<i64>().is_ok() => {
                    let n = n.parse().unwrap_or(1);
                    self.workers = Some(n);
                    let note = Some("threads in one process, not processes".to_string());
                    runtime.set_noted("workers", Value::Int(n), &d.at, note);
                }
                ("worker_cpu_affinity", ["auto", ..], None) => {
                    runtime.set("pin_workers", Value::Bool(true), &d.at)
                }
                ("pid", [path], None) => {
                    runtime.set("pid_file", Value::Str(path.to_string()), &d.at)
                }
                ("worker_shutdown_timeout", [t], None) => match vars::nginx_duration(t) {
                    Ok(v) => runtime.set("shutdown_timeout", Value::Str(v), &d.at),
                    Err(e) => self
                        .notes
                        .warn(&d.at, format!("worker_shutdown_timeout: {e}; dropped")),
                },
                ("error_log", _, None) => self.error_log(d),
                ("mail", _, Some(_)) => self
                    .notes
                    .warn(&d.at, "mail: ringway does not proxy mail; dropped"),
                _ => self.drop(d),
            }
        }
    }

    fn events(&mut self, block: &[Directive]) {
        for d in block {
            match (d.name.as_str(), d.args.as_slice()) {
                ("worker_connections", [n]) if n.parse::<i64>().is_ok() => {
                    self.connections = Some((n.parse().unwrap_or(0), d.at.clone()));
                }
                ("use", [method]) => self.notes.note(
                    &d.at,
                    format!("use {method}: ringway uses io_uring, else epoll (runtime.driver)"),
                ),
                _ => self.drop(d),
            }
        }
    }

    fn error_log(&mut self, d: &Directive) {
        let Some(path) = d.args.first() else { return };
        if path.starts_with("syslog:") || path.starts_with("memory:") {
            return self.notes.warn(
                &d.at,
                format!("error_log {path}: ringway logs to a file or stderr; dropped"),
            );
        }
        let path = match path.as_str() {
            "stderr" | "/dev/stderr" => "stderr",
            other => other,
        };
        let level = d.args.get(1).map(|l| match l.as_str() {
            "debug" => "debug",
            "info" | "notice" => "info",
            "warn" => "warn",
            _ => "error",
        });
        let log = &mut self.doc.log;
        if let Some(old) = log
            .get("error_log")
            .filter(|e| e.value != Value::Str(path.into()))
        {
            let message = format!("ringway has one error log: kept the one from {}", old.at);
            return self.notes.warn(&d.at, message);
        }
        log.set("error_log", Value::Str(path.into()), &d.at);
        if let Some(level) = level {
            log.set("level", Value::Str(level.into()), &d.at);
        }
    }

    pub(super) fn http(&mut self, block: &[Directive], parent: &Scope) {
        let scope = parent.child(block);
        for d in block {
            match (d.name.as_str(), &d.block) {
                ("upstream", Some(_)) => self.upstream(d, false),
                ("server", Some(_)) => {}
                ("log_format", None) => self.log_format(d),
                ("error_log", None) => self.error_log(d),
                _ => self.drop(d),
            }
        }
        for d in block
            .iter()
            .filter(|d| d.name == "server" && d.block.is_some())
        {
            let server = self.server(d, &scope);
            self.servers.push(server);
        }
    }

    /// An `upstream` block, renamed when the other context (http or stream) has its name.
    fn upstream(&mut self, d: &Directive, tcp: bool) {
        let Some(name) = d.args.first() else { return };
        let clash = self.doc.upstream(name).is_some();
        let out = match (clash, tcp) {
            (false, _) => name.clone(),
            (true, true) => format!("{name}-tcp"),
            (true, false) => format!("{name}-http"),
        };
        if clash {
            let message = format!(
                "upstream {name} written as {out}: ringway has one set of upstream names for http and stream"
            );
            self.notes.note(&d.at, message);
        }
        let up = nginx_upstream::convert(d, &out, self.notes);
        self.doc.upstreams.push(up);
        let names = if tcp {
            &mut self.stream_names
        } else {
            &mut self.http_names
        };
        names.insert(name.clone(), out);
    }

    fn log_format(&mut self, d: &Directive) {
        let Some((name, rest)) = d.args.split_first() else {
            return;
        };
        let rest = match rest.first() {
            Some(e) if e.starts_with("escape=") => {
                if e != "escape=default" {
                    self.notes.warn(
                        &d.at,
                        format!("log_format {name} {e}: ringway escapes as nginx's default"),
                    );
                }
                &rest[1..]
            }
            _ => rest,
        };
        match vars::template(&rest.concat(), Some("-")) {
            Ok((template, missing)) => {
                if !missing.is_empty() {
                    let list: Vec<String> = missing.iter().map(|m| format!("${m}")).collect();
                    let message = format!(
                        "log_format {name}: ringway has no {}; written as -",
                        list.join(", ")
                    );
                    self.notes.warn(&d.at, message);
                }
                self.formats.insert(name.clone(), (template, d.at.clone()));
            }
            Err(e) => self
                .notes
                .warn(&d.at, format!("log_format {name}: {e}; dropped")),
        }
    }

    fn server(&mut self, d: &Directive, http: &Scope) -> HttpServer {
        let block = d.block.as_deref().unwrap_or_default();
        let scope = http.child(block);
        let mut server = HttpServer {
            at: d.at.clone(),
            binds: Vec::new(),
            names: Vec::new(),
            scope: scope.clone(),
            locations: Vec::new(),
        };
        for inner in block {
            match (inner.name.as_str(), &inner.block) {
                ("listen", None) => {
                    if let Some(bind) = nginx_listen::listen(inner, false, self.notes) {
                        server.binds.push(bind);
                    }
                }
                ("server_name", None) => {
                    for name in &inner.args {
                        server.names.push((name.clone(), inner.at.clone()));
                    }
                }
                ("location", Some(_)) => {
                    if let Some(loc) = self.location(inner, &scope) {
                        server.locations.push(loc);
                    }
                }
                ("error_log", None) => self.error_log(inner),
                _ => self.drop(inner),
            }
        }
        if server.binds.is_empty() && !block.iter().any(|d| d.name == "listen") {
            self.notes.warn(
                &d.at,
                "server without listen: nginx's default 0.0.0.0:80 used",
            );
            server.binds.push(nginx_listen::Bind {
                addr: "0.0.0.0:80".into(),
                default: false,
                at: d.at.clone(),
            });
        }
        server
    }

    fn location(&mut self, d: &Directive, parent: &Scope) -> Option<Loc> {
        let block = d.block.as_deref().unwrap_or_default();
        let kind = nginx_listen::location_kind(d, self.notes)?;
        let scope = parent.child(block);
        let mut upstream = None;
        for inner in block {
            match (inner.name.as_str(), &inner.block) {
                ("proxy_pass", None) => upstream = self.proxy_pass(inner, &kind),
                ("location", Some(_)) => self.notes.warn(
                    &inner.at,
                    "nested location: not translated (ringway routes are one level); dropped",
                ),
                ("health_check", None) => self.health_check(inner),
                ("error_log", None) => self.error_log(inner),
                _ => self.drop(inner),
            }
        }
        if upstream.is_none() {
            self.notes.warn(
                &d.at,
                "location without proxy_pass: ringway only proxies; dropped",
            );
            return None;
        }
        Some(Loc {
            at: d.at.clone(),
            kind,
            scope,
            upstream,
        })
    }

    /// The upstream an http `proxy_pass` names, creating one for a bare address.
    fn proxy_pass(&mut self, d: &Directive, kind: &LocKind) -> Option<String> {
        let target = d.args.first()?;
        if target.contains('$') {
            self.notes.warn(
                &d.at,
                "proxy_pass with variables: not supported; location dropped",
            );
            return None;
        }
        let Some(rest) = target.strip_prefix("http://") else {
            let why = if target.starts_with("https://") {
                "TLS to servers is not supported yet"
            } else {
                "expected http://"
            };
            self.notes.warn(
                &d.at,
                format!("proxy_pass {target}: {why}; location dropped"),
            );
            return None;
        };
        let (host, uri) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let prefix = match kind {
            LocKind::Default => "/",
            LocKind::Prefix(p) => p.as_str(),
        };
        if !uri.is_empty() && uri != prefix {
            let message = format!(
                "proxy_pass {target}: nginx replaces the location's {prefix} with {uri}; \
                 ringway passes the path unchanged"
            );
            self.notes.warn(&d.at, message);
        }
        Some(self.upstream_for(host, &d.at, false))
    }

    /// `host` as an upstream name: a declared upstream, or a new one-server upstream.
    pub(super) fn upstream_for(&mut self, host: &str, at: &Origin, tcp: bool) -> String {
        let names = if tcp {
            &self.stream_names
        } else {
            &self.http_names
        };
        if let Some(name) = names.get(host) {
            return name.clone();
        }
        let addr = nginx_upstream::address(host).unwrap_or_else(|| host.to_string());
        let name = if tcp {
            format!("{addr}-tcp")
        } else {
            addr.clone()
        };
        if self.doc.upstream(&name).is_none() {
            self.doc.upstreams.push(Upstream {
                name: name.clone(),
                at: at.clone(),
                keys: Table::default(),
                servers: vec![Server {
                    at: at.clone(),
                    keys: vec![("addr".into(), Value::Str(addr))],
                }],
            });
        }
        name
    }

    /// nginx-plus `health_check` in a location: the upstream's active check.
    fn health_check(&mut self, d: &Directive) {
        self.notes.warn(
            &d.at,
            "health_check (nginx-plus): set health_check in the upstream by hand \
             (path, interval, rise, fall); dropped",
        );
    }

    fn stream(&mut self, block: &[Directive]) {
        let scope = Scope::default().child(block);
        for d in block {
            match (d.name.as_str(), &d.block) {
                ("upstream", Some(_)) => self.upstream(d, true),
                ("server", Some(_)) => {}
                _ => self.drop(d),
            }
        }
        for d in block
            .iter()
            .filter(|d| d.name == "server" && d.block.is_some())
        {
            self.stream_server(d, &scope);
        }
    }

    fn stream_server(&mut self, d: &Directive, parent: &Scope) {
        let block = d.block.as_deref().unwrap_or_default();
        let scope = parent.child(block);
        let mut binds = Vec::new();
        let mut upstream = None;
        for inner in block {
            match inner.name.as_str() {
                "listen" => binds.extend(nginx_listen::listen(inner, true, self.notes)),
                "proxy_pass" => upstream = self.stream_pass(inner),
                _ => self.drop(inner),
            }
        }
        let Some(upstream) = upstream else {
            return self
                .notes
                .warn(&d.at, "stream server without proxy_pass: dropped");
        };
        let mut keys = nginx_keys::stream_upstream_keys(&scope, self.notes);
        if keys.get("read_timeout").is_none() {
            let note = Some("nginx's default stream proxy_timeout".to_string());
            keys.set_noted(
                "read_timeout",
                Value::Str("10m".into()),
                &d.at,
                note.clone(),
            );
            keys.set_noted("send_timeout", Value::Str("10m".into()), &d.at, note);
        }
        nginx_listen::merge_upstream_keys(self, &upstream, keys, &d.at);
        let protocol = scope
            .one
            .get("proxy_protocol")
            .filter(|p| p.args.first().is_some_and(|a| a == "on"));
        for bind in binds {
            let mut listener = Listener::default();
            listener.keys.set("bind", Value::Str(bind.addr), &bind.at);
            listener
                .keys
                .set("mode", Value::Str("tcp".into()), &bind.at);
            listener
                .keys
                .set("upstream", Value::Str(upstream.clone()), &d.at);
            if let Some(p) = protocol {
                listener
                    .keys
                    .set("proxy_protocol", Value::Str("v1".into()), &p.at);
            }
            self.doc.listeners.push(listener);
        }
    }

    fn stream_pass(&mut self, d: &Directive) -> Option<String> {
        let target = d.args.first()?;
        if target.contains('$') || target.contains("://") {
            self.notes.warn(
                &d.at,
                format!("proxy_pass {target}: expected an upstream name or host:port; dropped"),
            );
            return None;
        }
        Some(self.upstream_for(target, &d.at, true))
    }

    fn finish(mut self) -> Result<Doc, ImportError> {
        if let Some((n, at)) = self.connections.clone() {
            match self.workers {
                Some(w) => {
                    let note = Some(format!("worker_connections {n} x worker_processes {w}"));
                    self.doc
                        .runtime
                        .set_noted("max_connections", Value::Int(n * w), &at, note);
                }
                None => self.notes.warn(
                    &at,
                    "worker_connections: with worker_processes auto the process total depends \
                     on the core count; set runtime.max_connections by hand; dropped",
                ),
            }
        }
        let servers = std::mem::take(&mut self.servers);
        let mut http_listeners = nginx_listen::listeners(&mut self, &servers);
        // http listeners first: they are what a reader looks for.
        http_listeners.append(&mut self.doc.listeners);
        self.doc.listeners = http_listeners;
        self.access_log(&servers);
        Ok(self.doc)
    }

    /// ringway has one access log: the one of the first proxying location.
    fn access_log(&mut self, servers: &[HttpServer]) {
        let mut chosen: Option<Origin> = None;
        for loc in servers.iter().flat_map(|s| &s.locations) {
            let Some(d) = loc.scope.many.get("access_log").and_then(|l| l.first()) else {
                continue;
            };
            if let Some(first) = &chosen {
                if *first != d.at {
                    let message = format!("ringway has one access log: kept the one from {first}");
                    self.notes.warn(&d.at, message);
                }
                continue;
            }
            chosen = Some(d.at.clone());
            self.set_access_log(d);
        }
    }

    fn set_access_log(&mut self, d: &Directive) {
        let Some(path) = d.args.first() else { return };
        let log = &mut self.doc.log;
        if path == "off" {
            return log.set("access_log", Value::Str("off".into()), &d.at);
        }
        if path.starts_with("syslog:") {
            return self.notes.warn(
                &d.at,
                "access_log to syslog: ringway logs to a file or stdout; dropped",
            );
        }
        let path = if path == "/dev/stdout" {
            "stdout"
        } else {
            path.as_str()
        };
        log.set("access_log", Value::Str(path.into()), &d.at);
        let format = d.args.get(1).filter(|f| !f.contains('='));
        match format.map(String::as_str) {
            None | Some("combined") => {
                log.set("access_format", Value::Str("combined".into()), &d.at)
            }
            Some(name) => match self.formats.get(name) {
                Some((template, at)) => {
                    let note = Some(format!("log_format {name} at {at}"));
                    log.set_noted("access_format", Value::Str(template.clone()), &d.at, note);
                }
                None => self.notes.warn(
                    &d.at,
                    format!("access_log: no log_format {name}; ringway's combined is used"),
                ),
            },
        }
        if d.args.iter().skip(1).any(|a| a.contains('=')) {
            self.notes.note(&d.at, "access_log buffer=/flush=/gzip=/if=: ringway's log thread writes in batches; parameters dropped");
        }
    }
}
