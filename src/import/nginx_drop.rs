//! nginx directives that do not carry over, and why: [`classify`] sorts each directive met
//! into "a setting translated where it applies" ([`super::nginx_keys`]), "ringway already
//! does this" (a note) or "dropped, behaviour changes" (a warning).

use super::include::Directive;
use super::nginx_keys::INHERITED;

/// Not written because ringway already behaves so.
const ALREADY: &[(&str, &str)] = &[
    (
        "proxy_http_version",
        "ringway always speaks HTTP/1.1 with keep-alive to servers",
    ),
    (
        "proxy_buffering",
        "ringway always streams responses as they arrive",
    ),
    (
        "proxy_request_buffering",
        "ringway streams request bodies (keeping up to client_body_buffer_size for a retry)",
    ),
    (
        "gzip_vary",
        "ringway adds Vary: Accept-Encoding to what it compresses",
    ),
    (
        "reuseport",
        "ringway always opens one SO_REUSEPORT socket per worker",
    ),
    ("server_tokens", "ringway does not announce a version"),
];

/// Not carried over, with why.
const DROPPED: &[(&str, &str)] = &[
    (
        "user",
        "ringway runs as the user that starts it (systemd User=)",
    ),
    (
        "group",
        "ringway runs as the user that starts it (systemd Group=)",
    ),
    (
        "worker_rlimit_nofile",
        "raise the open-file limit where ringway starts (systemd LimitNOFILE=)",
    ),
    (
        "worker_connections",
        "needs a numeric worker_processes to become runtime.max_connections",
    ),
    (
        "multi_accept",
        "no equivalent (each worker accepts on its own socket)",
    ),
    (
        "accept_mutex",
        "no equivalent (each worker accepts on its own socket)",
    ),
    ("sendfile", "ringway serves no files"),
    ("tcp_nopush", "no equivalent"),
    ("tcp_nodelay", "no equivalent"),
    ("types", "ringway serves no files; servers set Content-Type"),
    (
        "default_type",
        "ringway serves no files; servers set Content-Type",
    ),
    ("root", "ringway serves no files, it only proxies"),
    ("index", "ringway serves no files, it only proxies"),
    ("try_files", "ringway serves no files, it only proxies"),
    ("return", "ringway answers only by proxying"),
    ("rewrite", "ringway does not rewrite URIs"),
    ("if", "no conditionals in ringway"),
    ("set", "no user variables in ringway"),
    (
        "map",
        "no user variables in ringway: what uses them is reported too",
    ),
    ("geo", "no user variables in ringway"),
    (
        "error_page",
        "ringway answers its own errors (nginx's statuses, short bodies)",
    ),
    (
        "proxy_intercept_errors",
        "ringway passes the server's errors through",
    ),
    (
        "proxy_buffers",
        "ringway streams: no response buffers to size",
    ),
    (
        "proxy_buffer_size",
        "ringway streams: no response buffers to size",
    ),
    (
        "proxy_busy_buffers_size",
        "ringway streams: no response buffers to size",
    ),
    (
        "proxy_max_temp_file_size",
        "ringway never writes responses to disk",
    ),
    ("proxy_temp_path", "ringway never writes responses to disk"),
    (
        "client_body_temp_path",
        "ringway never writes request bodies to disk",
    ),
    (
        "proxy_redirect",
        "ringway never rewrites Location headers (as with `proxy_redirect off`)",
    ),
    ("proxy_pass_header", "no equivalent"),
    ("proxy_ignore_headers", "no equivalent"),
    ("proxy_cookie_path", "ringway does not rewrite cookies"),
    ("proxy_cookie_domain", "ringway does not rewrite cookies"),
    ("send_timeout", "no client send timeout on a listener"),
    (
        "resolver",
        "ringway resolves server names once, when it loads the configuration",
    ),
    (
        "resolver_timeout",
        "ringway resolves server names once, when it loads the configuration",
    ),
    (
        "gzip_proxied",
        "ringway compresses by type and length whether or not the request came through a proxy",
    ),
    ("gzip_disable", "no per-client exceptions to gzip"),
    ("gzip_buffers", "no equivalent: compression streams"),
    (
        "gzip_http_version",
        "not translated: set http_version in the listener's gzip by hand if you need 1.0",
    ),
    ("gzip_static", "ringway serves no files"),
    ("charset", "ringway does not recode bodies"),
    (
        "real_ip_header",
        "ringway takes the client address from the connection",
    ),
    (
        "set_real_ip_from",
        "ringway takes the client address from the connection",
    ),
    ("underscores_in_headers", "no equivalent"),
    (
        "server_names_hash_bucket_size",
        "no equivalent (nothing to tune)",
    ),
    (
        "server_names_hash_max_size",
        "no equivalent (nothing to tune)",
    ),
    ("types_hash_max_size", "no equivalent (nothing to tune)"),
    (
        "proxy_headers_hash_max_size",
        "no equivalent (nothing to tune)",
    ),
    (
        "proxy_headers_hash_bucket_size",
        "no equivalent (nothing to tune)",
    ),
    ("variables_hash_max_size", "no equivalent (nothing to tune)"),
    ("load_module", "ringway has no dynamic modules"),
    ("daemon", "ringway runs in the foreground (under systemd)"),
    ("master_process", "ringway is one process"),
    ("env", "no equivalent"),
    ("lingering_close", "no equivalent"),
    ("lingering_timeout", "no equivalent"),
    ("reset_timedout_connection", "no equivalent"),
    ("http2", "ringway speaks HTTP/1.x only"),
    (
        "stub_status",
        "ringway's [admin] listener serves /metrics and /status",
    ),
];

/// What to do with a directive met in a context.
pub enum Class {
    /// Kept in the [`Scope`] and translated where it applies.
    Setting,
    /// Dropped on purpose: ringway already does it.
    Already(String),
    /// Dropped: behaviour changes.
    Dropped(String),
}

pub fn classify(d: &Directive) -> Class {
    let name = d.name.as_str();
    if INHERITED.contains(&name) {
        return Class::Setting;
    }
    if let Some((_, why)) = ALREADY.iter().find(|(n, _)| *n == name) {
        return Class::Already(why.to_string());
    }
    if name == "proxy_redirect" && d.args.first().is_some_and(|a| a == "off") {
        return Class::Dropped(
            "no equivalent needed: ringway never rewrites Location headers".into(),
        );
    }
    let prefixed = [
        (
            "ssl_",
            "TLS is not supported yet: terminate TLS in front of ringway",
        ),
        ("proxy_ssl", "TLS to servers is not supported yet"),
        ("proxy_cache", "ringway does not cache"),
        ("limit_req", "no rate limiting in ringway"),
        (
            "limit_conn",
            "no connection limiting per key in ringway (see runtime.max_connections, max_conns)",
        ),
        ("auth_", "no access control in ringway"),
        ("open_file_cache", "ringway serves no files"),
        ("http2_", "ringway speaks HTTP/1.x only"),
    ];
    if let Some((_, why)) = prefixed.iter().find(|(p, _)| name.starts_with(p)) {
        return Class::Dropped(why.to_string());
    }
    if matches!(name, "allow" | "deny") {
        return Class::Dropped("no access control in ringway".into());
    }
    match DROPPED.iter().find(|(n, _)| *n == name) {
        Some((_, why)) => Class::Dropped(why.to_string()),
        None => Class::Dropped("not known to the importer".into()),
    }
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
    fn every_dropped_directive_says_why() {
        for name in [
            "user",
            "sendfile",
            "proxy_buffers",
            "ssl_certificate",
            "frobnicate",
        ] {
            match classify(&d(1, name, &[])) {
                Class::Dropped(why) => assert!(!why.is_empty()),
                _ => panic!("{name} is not dropped"),
            }
        }
        assert!(matches!(
            classify(&d(1, "proxy_redirect", &["off"])),
            Class::Dropped(_)
        ));
        assert!(matches!(
            classify(&d(1, "proxy_http_version", &["1.1"])),
            Class::Already(_)
        ));
        assert!(matches!(classify(&d(1, "gzip", &["on"])), Class::Setting));
    }
}
