//! `[[listener]]` tables to [`Listener`]s: address and mode, client limits, routes, gzip and
//! header rules, and the checks that tie a listener to its upstream groups.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

use super::check::{Zero, is_token, resolve};
use super::raw::{RawGzip, RawListener, RawMode, RawRoute};
use super::source::{Report, index, join};
use super::units::RawProxyProtocol;
use crate::snapshot::{
    Group, GroupId, Gzip, HeaderRule, Listener, Mode, Needs, ProxyProtocol, Route,
};
use crate::template::{Template, Var};

/// Headers that frame or manage the connection: setting or hiding them would break the
/// proxy's own message framing, so the config may not touch them.
pub(super) const FRAMING_HEADERS: [&str; 3] = ["content-length", "transfer-encoding", "connection"];

/// The upstream groups a listener can refer to.
pub struct Groups<'g> {
    pub names: &'g [&'g str],
    pub groups: &'g [Arc<Group>],
}

/// Every listener; at least one is required and names and addresses must be unique.
pub fn listeners(
    r: &mut Report<'_, '_>,
    raw: Option<&[Spanned<RawListener>]>,
    names: &[&str],
    groups: &[Arc<Group>],
) -> Vec<Listener> {
    let groups = Groups { names, groups };
    let Some(raw) = raw.filter(|l| !l.is_empty()) else {
        r.nowhere("listener", "at least one [[listener]] is required");
        return Vec::new();
    };
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut binds: HashMap<SocketAddr, usize> = HashMap::new();
    let mut out = Vec::new();
    for (i, table) in raw.iter().enumerate() {
        let base = index("listener", i);
        let Some(listener) = listener(r, table, &base, &groups) else {
            continue;
        };
        let span = |v: &Option<Spanned<String>>| v.as_ref().map_or(table.span(), |v| v.span());
        if let Some(first) = names.insert(listener.name.clone(), i) {
            let message = format!(
                "duplicate listener name {:?} (also listener[{first}])",
                listener.name
            );
            r.at(&span(&table.get_ref().name), &join(&base, "name"), message);
        }
        // Port 0 asks the kernel for a free port, so two of them never collide.
        if listener.bind.port() != 0
            && let Some(first) = binds.insert(listener.bind, i)
        {
            let message = format!(
                "address {} is already used by listener[{first}]",
                listener.bind
            );
            r.at(&span(&table.get_ref().bind), &join(&base, "bind"), message);
        }
        out.push(listener);
    }
    out
}

fn listener(
    r: &mut Report<'_, '_>,
    table: &Spanned<RawListener>,
    base: &str,
    groups: &Groups<'_>,
) -> Option<Listener> {
    let raw = table.get_ref();
    let key = |k: &str| join(base, k);
    let mode = match raw.mode.as_ref().map(|m| *m.get_ref()) {
        None | Some(RawMode::Http) => Mode::Http,
        Some(RawMode::Tcp) => Mode::Tcp,
    };
    let bind = r.required(&raw.bind, &table.span(), base, "bind");
    let bind = bind.and_then(|b| match resolve(b.get_ref(), Zero::Allowed) {
        Ok(addr) => Some(addr),
        Err(e) => {
            r.at(&b.span(), &key("bind"), e);
            None
        }
    });
    let upstream = r.required(&raw.upstream, &table.span(), base, "upstream");
    let group = upstream.and_then(|u| lookup(r, u, &key("upstream"), groups.names));
    if let (Mode::Tcp, Some(u), Some(g)) = (mode, upstream, group) {
        tcp_balance(r, &groups.groups[g], &u.span(), &key("upstream"));
    }
    let name = match &raw.name {
        Some(n) => {
            r.name(n.get_ref(), &n.span(), &key("name"));
            n.get_ref().clone()
        }
        // The address is the most telling label for a listener without a name.
        None => raw
            .bind
            .as_ref()
            .map_or(base.to_string(), |b| b.get_ref().clone()),
    };
    let proxy_protocol = proxy_protocol(raw);
    let http = match mode {
        Mode::Http => http_features(r, raw, base, groups.names),
        Mode::Tcp => {
            reject_http_keys(r, raw, base);
            HttpFeatures::default()
        }
    };
    let limits = limits(r, raw, base);
    Some(Listener {
        name,
        bind: bind?,
        mode,
        group: group?,
        routes: http.routes,
        client_max_body_size: limits.client_max_body_size,
        client_header_timeout: limits.client_header_timeout,
        client_body_timeout: limits.client_body_timeout,
        client_body_buffer_size: limits.client_body_buffer_size,
        keepalive_timeout: limits.keepalive_timeout,
        keepalive_requests: limits.keepalive_requests,
        max_header_size: limits.max_header_size,
        proxy_protocol,
        gzip: http.gzip,
        request_headers: http.request_headers,
        response_headers: http.response_headers,
        hide_response_headers: http.hide_response_headers,
        // Filled in by `Snapshot::find_needs` once the log settings are known.
        needs: Needs::default(),
    })
}

/// The group index for an `upstream = "NAME"` reference.
fn lookup(
    r: &mut Report<'_, '_>,
    name: &Spanned<String>,
    key: &str,
    names: &[&str],
) -> Option<GroupId> {
    let found = names.iter().position(|n| *n == name.get_ref());
    if found.is_none() {
        let known = if names.is_empty() {
            "there is no [upstreams.NAME] table".to_string()
        } else {
            format!("defined: {}", names.join(", "))
        };
        r.at(
            &name.span(),
            key,
            format!("no upstream named {:?} ({known})", name.get_ref()),
        );
    }
    found
}

/// A tcp connection has no request, so its group may hash only on connection data.
/// A tcp listener's upstream may only balance on what a connection has: no request data in
/// its `hash_key`, and not `prompt` (there is no body to read).
fn tcp_balance(r: &mut Report<'_, '_>, group: &Group, span: &Range<usize>, key: &str) {
    if group.peers.policy() == crate::balance::Policy::Prompt {
        let message = format!(
            "upstream {:?} balances by prompt, which a tcp listener does not read \
             (use least_time, least_conn or hash on $remote_addr)",
            group.name
        );
        r.at(span, key, message);
    }
    let connection_only = |v: &Var| matches!(v, Var::RemoteAddr | Var::RemotePort | Var::Worker);
    if let Some(t) = &group.hash_key
        && t.uses(|v| !connection_only(v))
    {
        let message = format!(
            "upstream {:?} hashes on request data, which a tcp listener does not have \
             (use $remote_addr in its hash_key)",
            group.name
        );
        r.at(span, key, message);
    }
}

/// `proxy_protocol`: on tcp listeners the header starts each connection; on http listeners
/// each new upstream connection (which then serves only that client connection).
fn proxy_protocol(raw: &RawListener) -> ProxyProtocol {
    let Some(v) = &raw.proxy_protocol else {
        return ProxyProtocol::Off;
    };
    match v.get_ref() {
        RawProxyProtocol::Off => ProxyProtocol::Off,
        RawProxyProtocol::V1 => ProxyProtocol::V1,
        RawProxyProtocol::V2 => ProxyProtocol::V2,
    }
}

struct Limits {
    client_max_body_size: u64,
    client_header_timeout: Duration,
    client_body_timeout: Duration,
    client_body_buffer_size: usize,
    keepalive_timeout: Duration,
    keepalive_requests: u32,
    max_header_size: usize,
}

fn limits(r: &mut Report<'_, '_>, raw: &RawListener, base: &str) -> Limits {
    let key = |k: &str| join(base, k);
    let secs = Duration::from_secs;
    let body = r.size(
        &raw.client_max_body_size,
        &key("client_max_body_size"),
        1 << 20,
        0..=u64::MAX,
    );
    Limits {
        // nginx: 0 turns the check off.
        client_max_body_size: if body == 0 { u64::MAX } else { body },
        client_header_timeout: r.dur(
            &raw.client_header_timeout,
            &key("client_header_timeout"),
            secs(60),
            Zero::Rejected,
        ),
        client_body_timeout: r.dur(
            &raw.client_body_timeout,
            &key("client_body_timeout"),
            secs(60),
            Zero::Rejected,
        ),
        client_body_buffer_size: r.size(
            &raw.client_body_buffer_size,
            &key("client_body_buffer_size"),
            16 << 10,
            0..=1 << 30,
        ) as usize,
        // nginx: 0 disables client keep-alive.
        keepalive_timeout: r.dur(
            &raw.keepalive_timeout,
            &key("keepalive_timeout"),
            secs(75),
            Zero::Allowed,
        ),
        keepalive_requests: r.int(
            &raw.keepalive_requests,
            &key("keepalive_requests"),
            1000,
            1..=u32::MAX.into(),
        ) as u32,
        max_header_size: r.size(
            &raw.max_header_size,
            &key("max_header_size"),
            16 << 10,
            64..=1 << 20,
        ) as usize,
    }
}

#[derive(Default)]
struct HttpFeatures {
    routes: Vec<Route>,
    gzip: Option<Gzip>,
    request_headers: Vec<HeaderRule>,
    response_headers: Vec<HeaderRule>,
    hide_response_headers: Vec<String>,
}

fn http_features(
    r: &mut Report<'_, '_>,
    raw: &RawListener,
    base: &str,
    names: &[&str],
) -> HttpFeatures {
    let key = |k: &str| join(base, k);
    let routes = raw.route.iter().flatten().enumerate();
    HttpFeatures {
        routes: routes
            .filter_map(|(i, t)| route(r, t, &index(&key("route"), i), names))
            .collect(),
        gzip: raw
            .gzip
            .as_ref()
            .map(|g| gzip(r, g.get_ref(), &key("gzip"))),
        request_headers: header_rules(r, raw.request_headers.as_ref(), &key("request_headers")),
        response_headers: header_rules(r, raw.response_headers.as_ref(), &key("response_headers")),
        hide_response_headers: hidden(
            r,
            raw.hide_response_headers.as_ref(),
            &key("hide_response_headers"),
        ),
    }
}

fn reject_http_keys(r: &mut Report<'_, '_>, raw: &RawListener, base: &str) {
    let spans = [
        (
            "route",
            raw.route.as_ref().and_then(|v| v.first()).map(|t| t.span()),
        ),
        ("gzip", raw.gzip.as_ref().map(|v| v.span())),
        (
            "request_headers",
            raw.request_headers.as_ref().map(|v| v.span()),
        ),
        (
            "response_headers",
            raw.response_headers.as_ref().map(|v| v.span()),
        ),
        (
            "hide_response_headers",
            raw.hide_response_headers.as_ref().map(|v| v.span()),
        ),
    ];
    for (name, span) in spans {
        if let Some(span) = span {
            r.at(
                &span,
                &join(base, name),
                "is not allowed with mode = \"tcp\" (HTTP only)",
            );
        }
    }
}

fn route(
    r: &mut Report<'_, '_>,
    table: &Spanned<RawRoute>,
    base: &str,
    names: &[&str],
) -> Option<Route> {
    let raw = table.get_ref();
    let key = |k: &str| join(base, k);
    if raw.path_prefix.is_none() && raw.host.is_none() && raw.model.is_none() {
        r.at(
            &table.span(),
            base,
            "a route needs `path_prefix`, `host` or `model`",
        );
    }
    let path_prefix = r.url_path(&raw.path_prefix, &key("path_prefix"));
    let host = raw
        .host
        .as_ref()
        .and_then(|h| match route_host(h.get_ref()) {
            Ok(host) => Some(host),
            Err(e) => {
                r.at(&h.span(), &key("host"), e);
                None
            }
        });
    let model = raw
        .model
        .as_ref()
        .and_then(|m| match route_model(m.get_ref()) {
            Ok(()) => Some(m.get_ref().clone()),
            Err(e) => {
                r.at(&m.span(), &key("model"), e);
                None
            }
        });
    let upstream = r.required(&raw.upstream, &table.span(), base, "upstream")?;
    let group = lookup(r, upstream, &key("upstream"), names)?;
    Some(Route {
        path_prefix,
        host,
        model,
        group,
    })
}

/// A route's model name is compared with the raw JSON text of the body's `"model"` string
/// (escapes are not decoded), so it must be one that JSON writes without escapes.
fn route_model(name: &str) -> Result<(), String> {
    use crate::http::model::MAX_MODEL_LEN;
    if name.is_empty() {
        return Err("must not be empty".to_string());
    }
    if name.len() > MAX_MODEL_LEN {
        return Err(format!("is longer than {MAX_MODEL_LEN} bytes"));
    }
    if let Some(c) = name.chars().find(|&c| c < ' ' || c == '"' || c == '\\') {
        return Err(format!(
            "must not contain {c:?} (it is matched against the JSON text, unescaped)"
        ));
    }
    Ok(())
}

/// A route's host as requests are matched: lower-cased, without a port.
fn route_host(text: &str) -> Result<String, String> {
    let bad = || format!("invalid host {text:?}: expected a name like \"api.example.com\"");
    let split = if text.starts_with('[') {
        text.find(']').map(|i| i + 1)
    } else {
        text.find(':')
    };
    let (host, port) = text.split_at(split.unwrap_or(text.len()));
    let port_ok = port.is_empty()
        || port.strip_prefix(':').is_some_and(|p| {
            !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
        });
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(ip) => {
            !ip.is_empty()
                && ip
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        }
        None => {
            !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        }
    };
    if !host_ok || !port_ok || (text.starts_with('[') && split.is_none()) {
        return Err(bad());
    }
    Ok(host.to_ascii_lowercase())
}

fn gzip(r: &mut Report<'_, '_>, raw: &RawGzip, base: &str) -> Gzip {
    let key = |k: &str| join(base, k);
    let types = match &raw.types {
        None => vec!["text/html".to_string()],
        Some(list) => {
            if list.get_ref().is_empty() {
                r.at(
                    &list.span(),
                    &key("types"),
                    "must list at least one media type",
                );
            }
            let types = list.get_ref().iter().enumerate();
            types
                .filter_map(|(i, t)| media_type(r, t, &index(&key("types"), i)))
                .collect()
        }
    };
    let http10 = match &raw.http_version {
        None => false,
        Some(v) => match v.get_ref().as_str() {
            "1.0" => true,
            "1.1" => false,
            other => {
                let message = format!("must be \"1.0\" or \"1.1\", not {other:?}");
                r.at(&v.span(), &key("http_version"), message);
                false
            }
        },
    };
    // nginx's defaults: fastest level, skip bodies too small to gain anything.
    Gzip {
        http10,
        level: r.int(&raw.level, &key("level"), 1, 1..=9) as u32,
        min_length: r.size(&raw.min_length, &key("min_length"), 20, 0..=u64::MAX),
        types,
    }
}

/// `type/subtype`, lower-cased, parameters dropped.
fn media_type(r: &mut Report<'_, '_>, text: &Spanned<String>, key: &str) -> Option<String> {
    let essence = text
        .get_ref()
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.split_once('/') {
        Some((t, s)) if is_token(t) && is_token(s) => Some(essence),
        _ => {
            let message = format!(
                "invalid media type {:?}: expected e.g. \"application/json\"",
                text.get_ref()
            );
            r.at(&text.span(), key, message);
            None
        }
    }
}

type RawHeaders = Spanned<BTreeMap<Spanned<String>, Spanned<String>>>;

fn header_rules(r: &mut Report<'_, '_>, raw: Option<&RawHeaders>, base: &str) -> Vec<HeaderRule> {
    let mut rules: Vec<HeaderRule> = Vec::new();
    for (name, value) in raw.iter().flat_map(|m| m.get_ref().iter()) {
        let key = join(base, name.get_ref());
        let lower = name.get_ref().to_ascii_lowercase();
        if !is_token(name.get_ref()) {
            r.at(
                &name.span(),
                &key,
                format!("invalid header name {:?}", name.get_ref()),
            );
            continue;
        }
        if FRAMING_HEADERS.contains(&lower.as_str()) {
            r.at(
                &name.span(),
                &key,
                "is managed by the proxy and cannot be set",
            );
            continue;
        }
        if rules.iter().any(|h| h.lower == lower) {
            r.at(
                &name.span(),
                &key,
                "is set twice (header names are case-insensitive)",
            );
            continue;
        }
        // A CR or LF in a literal part would let the config split the header block.
        if value
            .get_ref()
            .bytes()
            .any(|b| (b < 0x20 && b != b'\t') || b == 0x7f)
        {
            r.at(
                &value.span(),
                &key,
                "header value must not contain control characters",
            );
            continue;
        }
        match Template::parse(value.get_ref()) {
            Ok(template) => rules.push(HeaderRule {
                name: name.get_ref().clone(),
                lower,
                value: template,
            }),
            Err(e) => r.at(&value.span(), &key, format!("invalid template: {e}")),
        }
    }
    rules
}

fn hidden(
    r: &mut Report<'_, '_>,
    raw: Option<&Spanned<Vec<Spanned<String>>>>,
    base: &str,
) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for (i, name) in raw.iter().flat_map(|l| l.get_ref().iter()).enumerate() {
        let lower = name.get_ref().to_ascii_lowercase();
        if !is_token(&lower) {
            r.at(
                &name.span(),
                &index(base, i),
                format!("invalid header name {:?}", name.get_ref()),
            );
        } else if FRAMING_HEADERS.contains(&lower.as_str()) {
            r.at(
                &name.span(),
                &index(base, i),
                "is managed by the proxy and cannot be hidden",
            );
        } else if !names.contains(&lower) {
            names.push(lower);
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_hosts_lose_port_and_case() {
        assert_eq!(route_host("API.Example.com").unwrap(), "api.example.com");
        assert_eq!(
            route_host("api.example.com:8080").unwrap(),
            "api.example.com"
        );
        assert_eq!(route_host("[::1]:80").unwrap(), "[::1]");
        assert_eq!(route_host("[FE80::1]").unwrap(), "[fe80::1]");
        assert_eq!(route_host("localhost").unwrap(), "localhost");
    }

    #[test]
    fn malformed_route_hosts_are_rejected() {
        for bad in [
            "", ":80", "a b", "a/b", "a:x", "a:", "[::1", "[]", "[::1]x", "a:1:2",
        ] {
            assert!(route_host(bad).is_err(), "{bad:?} accepted");
        }
    }
}
