//! The two configurations each proxy alternates between in the reload benchmark. Variant 0
//! and variant 1 differ only in the two servers' weights (4:1, then 1:4), so every reload
//! rebuilds the balancer for real, and the split of a few requests over the backends tells
//! which variant is in effect.

use std::net::SocketAddr;
use std::path::Path;

use crate::configs::{HAPROXY_DEFAULTS, NGINX_PROXY_LOCATION, nginx_main};

/// Server weights of variant 0 and variant 1, in the order of the backends.
pub const WEIGHTS: [[u32; 2]; 2] = [[4, 1], [1, 4]];

/// Idle upstream connections per worker: nginx's tuned `keepalive 256`, and ringway alike.
pub const KEEPALIVE: u32 = 256;

/// How long a process left behind by a reload may drain before it is stopped (nginx
/// `worker_shutdown_timeout`, HAProxy `hard-stop-after`): bounds the pile of old workers a
/// reload every 100 ms could otherwise build.
pub const DRAIN_LIMIT: &str = "10s";

/// ringway: one worker, access log off, round robin over weighted servers. The admin
/// listener is where the harness reads `ringway_config_reloads_total` once it exists; the pid
/// file lets `ringway -s reload -c FILE` find the process by hand.
pub fn ringway(
    listen: SocketAddr,
    admin: SocketAddr,
    backends: &[SocketAddr; 2],
    dir: &Path,
    variant: usize,
) -> String {
    let w = WEIGHTS[variant];
    format!(
        r#"[runtime]
workers = 1
pin_workers = false
pid_file = "{pid}"

[log]
level = "warn"
error_log = "{err}"
access_log = "off"

[admin]
bind = "{admin}"

[[listener]]
name = "bench"
bind = "{listen}"
mode = "http"
upstream = "backends"

[upstreams.backends]
balance = "round_robin"
keepalive = {KEEPALIVE}
servers = [
  {{ addr = "{b0}", weight = {w0} }},
  {{ addr = "{b1}", weight = {w1} }},
]
"#,
        pid = dir.join("reload-ringway.pid").display(),
        err = dir.join("reload-ringway-error.log").display(),
        b0 = backends[0],
        b1 = backends[1],
        w0 = w[0],
        w1 = w[1],
    )
}

/// nginx, tuned as its users tune it for keep-alive upstreams. `error_log ... notice` is what
/// makes the master log each `reconfiguring`, which the harness counts as a reload done.
pub fn nginx(listen: SocketAddr, backends: &[SocketAddr; 2], dir: &Path, variant: usize) -> String {
    let w = WEIGHTS[variant];
    let body = format!(
        r#"    upstream backends {{
        server {b0} weight={w0};
        server {b1} weight={w1};
        keepalive {KEEPALIVE};
    }}
    server {{
        listen {listen};
{NGINX_PROXY_LOCATION}    }}
"#,
        b0 = backends[0],
        b1 = backends[1],
        w0 = w[0],
        w1 = w[1],
    );
    let drain = format!("worker_shutdown_timeout {DRAIN_LIMIT};\n");
    nginx_main(dir, "reload-nginx", "notice", &drain, &body)
}

/// HAProxy 2.6 for master-worker reloads. The master re-executes itself with
/// `-x sockpair@N` on SIGUSR2 and takes the listening sockets from the running worker, so no
/// stats socket with `expose-fd listeners` is needed. `option idle-close-on-response` makes
/// an old worker answer one more request with `Connection: close` instead of closing idle
/// keep-alive connections under a client that is about to send on them (HAProxy's own
/// advice for reloads behind clients without retries, which wrk is).
pub fn haproxy(listen: SocketAddr, backends: &[SocketAddr; 2], variant: usize) -> String {
    let w = WEIGHTS[variant];
    format!(
        r#"global
    nbthread 1
    maxconn 4096
    hard-stop-after {DRAIN_LIMIT}

{HAPROXY_DEFAULTS}    option idle-close-on-response

frontend bench
    bind {listen}
    default_backend backends

backend backends
    balance roundrobin
    server s1 {b0} weight {w0}
    server s2 {b1} weight {w1}
"#,
        b0 = backends[0],
        b1 = backends[1],
        w0 = w[0],
        w1 = w[1],
    )
}
