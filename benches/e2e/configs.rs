//! Configuration files for the three proxies under test (and the nginx stand-in backend),
//! written so that each gets the same job: one worker, keep-alive to two upstreams, round
//! robin, no access log, everything on 127.0.0.1 and every path inside the run's temp dir.

use std::net::SocketAddr;
use std::path::Path;

/// Idle upstream connections each proxy keeps per worker (nginx `keepalive`, ringway
/// `keepalive`; HAProxy's `http-reuse always` keeps what it has).
pub const UPSTREAM_KEEPALIVE: u32 = 64;

/// ringway TOML per SPEC: one unpinned worker (taskset pins the process to CPU 0, and
/// `pin_workers` would pick its own core), access log off, round robin, keep-alive 64. `tag`
/// names the error log, so ringway and an older binary run as `ringway-before` (which gets
/// this same config: no `[admin]`, no key an older build would reject) keep theirs apart.
pub fn ringway(listen: SocketAddr, backends: &[SocketAddr], dir: &Path, tag: &str) -> String {
    let servers: Vec<String> = backends
        .iter()
        .map(|b| format!("  {{ addr = \"{b}\" }},"))
        .collect();
    format!(
        r#"[runtime]
workers = 1
pin_workers = false

[log]
level = "warn"
error_log = "{err}"
access_log = "off"

[[listener]]
name = "bench"
bind = "{listen}"
mode = "http"
upstream = "backends"

[upstreams.backends]
balance = "round_robin"
keepalive = {UPSTREAM_KEEPALIVE}
servers = [
{servers}
]
"#,
        err = dir.join(format!("{tag}-error.log")).display(),
        servers = servers.join("\n"),
    )
}

/// nginx: one worker, no daemon, upstream keep-alive (HTTP/1.1 with the Connection header
/// cleared, as nginx's docs require for `keepalive`), access log off, all temp paths in `dir`.
/// Response buffering stays at nginx's default, as most nginx users run it.
pub fn nginx(listen: SocketAddr, backends: &[SocketAddr], dir: &Path) -> String {
    let servers: Vec<String> = backends
        .iter()
        .map(|b| format!("        server {b};"))
        .collect();
    let body = format!(
        r#"    upstream backends {{
{servers}
        keepalive {UPSTREAM_KEEPALIVE};
    }}
    server {{
        listen {listen};
        location / {{
            proxy_pass http://backends;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
"#,
        servers = servers.join("\n"),
    );
    nginx_main(dir, "nginx", &body)
}

/// The stand-in backend (`RINGWAY_BENCH_BACKEND=nginx`): static files `size/N` of N bytes
/// under `dir/www`, and `/` a short text, on every address in `backends`.
pub fn nginx_backend(backends: &[SocketAddr], dir: &Path) -> String {
    let listens: Vec<String> = backends
        .iter()
        .map(|b| format!("        listen {b};"))
        .collect();
    let body = format!(
        r#"    server {{
{listens}
        keepalive_requests 100000;
        location = / {{ return 200 "ringway bench backend\n"; }}
        location /size/ {{ root {www}; default_type application/octet-stream; }}
    }}
"#,
        listens = listens.join("\n"),
        www = dir.join("www").display(),
    );
    nginx_main(dir, "backend", &body)
}

/// The parts of an nginx config shared by the proxy and the stand-in backend; `tag` keeps
/// their pid files, logs and temp paths apart.
fn nginx_main(dir: &Path, tag: &str, http_body: &str) -> String {
    let d = dir.display();
    format!(
        r#"worker_processes 1;
daemon off;
master_process on;
pid {d}/{tag}.pid;
error_log {d}/{tag}-error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    client_body_temp_path {d}/{tag}-client-body;
    proxy_temp_path {d}/{tag}-proxy;
    fastcgi_temp_path {d}/{tag}-fastcgi;
    uwsgi_temp_path {d}/{tag}-uwsgi;
    scgi_temp_path {d}/{tag}-scgi;
{http_body}}}
"#
    )
}

/// The `defaults` section every HAProxy configuration of the benchmark starts from.
pub const HAPROXY_DEFAULTS: &str = "defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 60s
    timeout server 60s
";

/// HAProxy: one thread, HTTP mode, keep-alive on both sides with `http-reuse always`, round
/// robin, no `log` lines (so no logging). `maxconn` is set because HAProxy derives its file
/// descriptor need from it (about 2 per connection) and refuses to start when the nofile limit
/// cannot be raised that far; 4096 is plenty for wrk's 50 connections.
pub fn haproxy(listen: SocketAddr, backends: &[SocketAddr]) -> String {
    let servers: Vec<String> = backends
        .iter()
        .enumerate()
        .map(|(i, b)| format!("    server s{} {b}", i + 1))
        .collect();
    format!(
        r#"global
    nbthread 1
    maxconn 4096

{HAPROXY_DEFAULTS}
frontend bench
    bind {listen}
    default_backend backends

backend backends
    balance roundrobin
{servers}
"#,
        servers = servers.join("\n"),
    )
}
