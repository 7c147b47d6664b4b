//! Configuration files for the proxies under test and the static nginx backends, written so
//! that each proxy gets the same job: one worker, keep-alive to two upstreams with the same
//! idle pool, round robin, no access log, client and upstream keep-alive never cut by a
//! request count, everything on 127.0.0.1 and every path inside the run's temp dir. nginx is
//! tuned as nginx's tuning guides tell people to tune it, not left at its defaults.

use std::net::SocketAddr;
use std::path::Path;

/// The older ringway binary named by RINGWAY_BENCH_BASELINE, run with ringway's config so
/// that a change's cost on the hot path shows in the same run, interleaved with ringway.
pub const BASELINE: &str = "ringway-before";

/// HAProxy in `mode tcp`: measured as a reference line, never counted as a peer.
pub const HAPROXY_TCP: &str = "haproxy-tcp";

/// Idle upstream connections each proxy may keep per worker: nginx `keepalive 256` (what the
/// tuning guides set), ringway `keepalive`, HAProxy `pool-max-conn` split over the servers.
/// With wrk's connections each holding at most one request, no more than that many upstream
/// connections are ever busy, so the cap never binds; it is set alike so no one has to ask.
pub const UPSTREAM_KEEPALIVE: u32 = 256;

/// Requests per keep-alive connection before a proxy or backend closes it, on both sides.
/// At nginx's and ringway's default of 1000, every wrk connection would reconnect about once
/// a second at 100k requests/s, and the run would measure connection set-up with proxying.
pub const KEEPALIVE_REQUESTS: u32 = 1_000_000;

/// ringway TOML per SPEC: one unpinned worker (taskset pins the process to CPU 0, and
/// `pin_workers` would pick its own core), access log off, round robin, the shared upstream
/// keep-alive. `tag` names the error log, so ringway and an older binary run as
/// `ringway-before` (which gets this same config: no `[admin]`, no key an older build would
/// reject) keep theirs apart.
pub fn ringway(listen: SocketAddr, backends: &[SocketAddr], dir: &Path, tag: &str) -> String {
    ringway_shaped(listen, backends, dir, tag, ONE_WORKER)
}

/// How many event loops a proxy runs and whether it balances by least connections: the
/// end-to-end benchmark measures [`ONE_WORKER`]; the scaling benchmark varies both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// ringway `workers`, nginx `worker_processes`, HAProxy `nbthread`.
    pub workers: u32,
    /// ringway `least_conn`, nginx `least_conn;`, HAProxy `balance leastconn`; else each
    /// one's round robin.
    pub least_conn: bool,
}

/// One worker, round robin: what every proxy runs with in `benches/e2e`.
pub const ONE_WORKER: Shape = Shape {
    workers: 1,
    least_conn: false,
};

/// [`ringway`] with `shape`'s workers and balancer. The workers stay unpinned: the harness
/// sets the CPUs the whole process may use with taskset.
pub fn ringway_shaped(
    listen: SocketAddr,
    backends: &[SocketAddr],
    dir: &Path,
    tag: &str,
    shape: Shape,
) -> String {
    let servers: Vec<String> = backends
        .iter()
        .map(|b| format!("  {{ addr = \"{b}\" }},"))
        .collect();
    format!(
        r#"[runtime]
workers = {workers}
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
keepalive_requests = {KEEPALIVE_REQUESTS}

[upstreams.backends]
balance = "{balance}"
keepalive = {UPSTREAM_KEEPALIVE}
keepalive_requests = {KEEPALIVE_REQUESTS}
servers = [
{servers}
]
"#,
        err = dir.join(format!("{tag}-error.log")).display(),
        servers = servers.join("\n"),
        workers = shape.workers,
        balance = if shape.least_conn {
            "least_conn"
        } else {
            "round_robin"
        },
    )
}

/// nginx tuned for keep-alive upstreams as its tuning guides have it: `keepalive 256` with
/// HTTP/1.1 and the Connection header cleared (nginx's docs require both for `keepalive`),
/// `proxy_buffers 32 8k` so a 64 KiB answer fits in memory, `proxy_max_temp_file_size 0`
/// so nothing is ever buffered to disk, and no request count that cuts keep-alive.
pub fn nginx(listen: SocketAddr, backends: &[SocketAddr], dir: &Path) -> String {
    nginx_shaped(listen, backends, dir, "nginx", ONE_WORKER)
}

/// [`nginx`] with `shape`'s `worker_processes` and balancer; `tag` names its files, so that
/// several can run side by side.
pub fn nginx_shaped(
    listen: SocketAddr,
    backends: &[SocketAddr],
    dir: &Path,
    tag: &str,
    shape: Shape,
) -> String {
    let servers: Vec<String> = backends
        .iter()
        .map(|b| format!("        server {b};"))
        .collect();
    // least_conn counts per process only with a `zone` (without one each worker counts its
    // own requests); ringway's counts are per process, so nginx gets the zone with it.
    let balance = if shape.least_conn {
        "        least_conn;\n        zone backends 64k;\n"
    } else {
        ""
    };
    let body = format!(
        r#"    upstream backends {{
{balance}{servers}
        keepalive {UPSTREAM_KEEPALIVE};
        keepalive_requests {KEEPALIVE_REQUESTS};
    }}
    server {{
        listen {listen};
        keepalive_requests {KEEPALIVE_REQUESTS};
{NGINX_PROXY_LOCATION}    }}
"#,
        servers = servers.join("\n"),
    );
    nginx_main_with(dir, tag, shape.workers, "warn", "", &body)
}

/// The backends: one nginx worker (on the load CPU, beside wrk) running a static server per
/// address in `backends`, each serving the files `size/N` of N bytes under `dir/www` and `/`
/// a short text. Static files through nginx keep the backend out of ringway's own code, and
/// sendfile plus a cache of open file descriptors keep it cheap enough not to be what limits
/// the run. `X-Backend` names the port that answered, which the reload benchmark reads to
/// tell which weights a proxy is using, as it does from `ringway backend`.
pub fn nginx_backend(backends: &[SocketAddr], dir: &Path) -> String {
    nginx_backend_with(backends, dir, 1)
}

/// [`nginx_backend`] with `workers` nginx workers (the scaling benchmark's backends share
/// both CPUs with everything else, and one worker could be what limits two proxy workers).
pub fn nginx_backend_with(backends: &[SocketAddr], dir: &Path, workers: u32) -> String {
    let www = dir.join("www");
    let servers: Vec<String> = backends
        .iter()
        .map(|b| {
            format!(
                r#"    server {{
        listen {b};
        add_header X-Backend $server_port;
        location = / {{ return 200 "ringway bench backend\n"; }}
        location /size/ {{ root {www}; default_type application/octet-stream; }}
    }}
"#,
                www = www.display(),
            )
        })
        .collect();
    let body = format!(
        r#"    sendfile on;
    tcp_nopush on;
    open_file_cache max=64 inactive=1h;
    open_file_cache_valid 1h;
    keepalive_requests {KEEPALIVE_REQUESTS};
{servers}"#,
        servers = servers.concat(),
    );
    nginx_main_with(dir, "backend", workers, "warn", "", &body)
}

/// What `proxy` is configured with, for the report's header. Every `quoted` fragment is
/// text of the generated config (the self-checks hold it to that), so the header cannot
/// drift from what ran. `backends` is how many servers the upstream has.
pub fn described(proxy: &str, backends: usize) -> String {
    let n = KEEPALIVE_REQUESTS;
    match proxy {
        "ringway" | BASELINE => format!(
            "{proxy}: `workers = 1`, `keepalive = {UPSTREAM_KEEPALIVE}`, \
             `keepalive_requests = {n}` (listener and upstream), `access_log = \"off\"`"
        ),
        "nginx" => format!(
            "nginx (tuned): `worker_processes 1;`, `worker_connections 4096;`, upstream \
             `keepalive {UPSTREAM_KEEPALIVE};`, `proxy_http_version 1.1;`, \
             `proxy_set_header Connection \"\";`, `proxy_buffers 32 8k;`, \
             `proxy_max_temp_file_size 0;`, `keepalive_requests {n};` (client and upstream), \
             `access_log off;`"
        ),
        "haproxy" => format!(
            "haproxy: `nbthread 1`, `mode http`, `http-reuse always`, `pool-max-conn {}` per \
             server, no logging",
            UPSTREAM_KEEPALIVE / backends.max(1) as u32
        ),
        HAPROXY_TCP => {
            "haproxy-tcp (reference, not a peer): `nbthread 1`, `mode tcp`, `balance roundrobin`, \
             no logging"
                .into()
        }
        other => format!("{other}: ?"),
    }
}

/// What the backends are, for the report's header; quoted fragments as in [`described`].
pub fn backend_described(backend: &str) -> String {
    if backend == "ringway" {
        "backends: `ringway backend` on two ports".into()
    } else {
        format!(
            "backends: two static nginx servers in one nginx with one worker, `sendfile on;`, \
             `tcp_nopush on;`, `open_file_cache max=64 inactive=1h;`, \
             `keepalive_requests {KEEPALIVE_REQUESTS};`, `access_log off;`"
        )
    }
}

/// The parts of an nginx config shared by the proxy and the backends; `tag` keeps
/// their pid files, logs and temp paths apart.
/// The tuned proxying `location` every nginx subject of the benchmarks uses (upstream
/// `backends`): what the nginx tuning guides tell people to set.
pub const NGINX_PROXY_LOCATION: &str = r#"        location / {
            proxy_pass http://backends;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffers 32 8k;
            proxy_max_temp_file_size 0;
        }
"#;

/// A whole nginx.conf: one worker, every file under `dir` named after `tag`, the error log
/// at `log_level`, `main_extra` lines in the main context and `http_body` in `http`.
pub fn nginx_main(
    dir: &Path,
    tag: &str,
    log_level: &str,
    main_extra: &str,
    http_body: &str,
) -> String {
    nginx_main_with(dir, tag, 1, log_level, main_extra, http_body)
}

/// [`nginx_main`] with `workers` worker processes.
pub fn nginx_main_with(
    dir: &Path,
    tag: &str,
    workers: u32,
    log_level: &str,
    main_extra: &str,
    http_body: &str,
) -> String {
    let d = dir.display();
    format!(
        r#"worker_processes {workers};
daemon off;
master_process on;
pid {d}/{tag}.pid;
error_log {d}/{tag}-error.log {log_level};
{main_extra}events {{
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
/// robin, no `log` lines (so no logging). `pool-max-conn` is per server, so the shared idle
/// pool is split over the servers. `maxconn` is set because HAProxy derives its file
/// descriptor need from it (about 2 per connection) and refuses to start when the nofile limit
/// cannot be raised that far; 4096 is plenty for wrk's connections.
pub fn haproxy(listen: SocketAddr, backends: &[SocketAddr]) -> String {
    haproxy_shaped(listen, backends, ONE_WORKER)
}

/// [`haproxy`] with `shape`'s `nbthread` and balancer. `pool-max-conn` is per server and
/// shared by the threads (HAProxy's idle pool is per process), so it stays as it is.
pub fn haproxy_shaped(listen: SocketAddr, backends: &[SocketAddr], shape: Shape) -> String {
    let pool = UPSTREAM_KEEPALIVE / backends.len().max(1) as u32;
    haproxy_with(
        HAPROXY_DEFAULTS,
        listen,
        &format!("    default-server pool-max-conn {pool}\n"),
        backends,
        shape,
    )
}

/// HAProxy in `mode tcp`: a byte relay that parses no HTTP and keeps one server connection
/// per client connection. Not a peer (it does less work than an HTTP proxy must); it is the
/// reference line of issue 6, the floor an HTTP proxy's CPU per request is set against.
pub fn haproxy_tcp(listen: SocketAddr, backends: &[SocketAddr]) -> String {
    haproxy_with(HAPROXY_TCP_DEFAULTS, listen, "", backends, ONE_WORKER)
}

/// The `defaults` of [`haproxy_tcp`]: [`HAPROXY_DEFAULTS`]' timeouts without the HTTP options.
const HAPROXY_TCP_DEFAULTS: &str = "defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
";

fn haproxy_with(
    defaults: &str,
    listen: SocketAddr,
    server_defaults: &str,
    backends: &[SocketAddr],
    shape: Shape,
) -> String {
    let servers: Vec<String> = backends
        .iter()
        .enumerate()
        .map(|(i, b)| format!("    server s{} {b}", i + 1))
        .collect();
    format!(
        r#"global
    nbthread {threads}
    maxconn 4096

{defaults}
frontend bench
    bind {listen}
    default_backend backends

backend backends
    balance {balance}
{server_defaults}{servers}
"#,
        servers = servers.join("\n"),
        threads = shape.workers,
        balance = if shape.least_conn {
            "leastconn"
        } else {
            "roundrobin"
        },
    )
}
