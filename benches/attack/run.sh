#!/usr/bin/env bash
# Stability under attack, ringway against a tuned nginx and HAProxy, same run: N slowloris
# connections (a header line a second each) and a client sending garbage in a loop, while
# a normal keep-alive client asks for SECONDS. Reports each proxy's RSS growth per
# slowloris connection and the normal client's answers and latency (see attack.py).
#
#   benches/attack/run.sh [RINGWAY_BINARY] [N] [SECONDS]
#
# Needs nginx, haproxy (apt-get install nginx haproxy) and python3. Ports 18930-18933.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-$here/../../target/release/ringway}
n=${2:-2000}
seconds=${3:-10}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)"

"$bin" backend --bind 127.0.0.1:18933 >/dev/null 2>&1 &
pids+=($!)

cat > "$work/ringway.toml" <<TOML
[runtime]
workers = 1
pin_workers = false

[[listener]]
name = "attack"
bind = "127.0.0.1:18930"
upstream = "u"
client_header_timeout = "60s"

[upstreams.u]
keepalive = 256
servers = [{ addr = "127.0.0.1:18933" }]
TOML

mkdir -p "$work/nginx"
cat > "$work/nginx.conf" <<NGINX
worker_processes 1;
worker_rlimit_nofile 16384;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log crit;
events { worker_connections 8192; }
http {
    access_log off;
    client_header_timeout 60s;
    client_body_temp_path $work/nginx;
    proxy_temp_path $work/nginx;
    upstream u { server 127.0.0.1:18933; keepalive 256; }
    server {
        listen 127.0.0.1:18931 reuseport;
        location / {
            proxy_pass http://u;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffers 32 8k;
            proxy_max_temp_file_size 0;
        }
    }
}
NGINX

cat > "$work/haproxy.cfg" <<HAPROXY
global
    nbthread 1
    maxconn 8192
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-request 60s
    timeout http-keep-alive 60s
frontend f
    bind 127.0.0.1:18932
    default_backend b
backend b
    http-reuse always
    server s 127.0.0.1:18933
HAPROXY

wait_port() { for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$1/size/16" && return; sleep 0.1; done; echo "port $1 never answered" >&2; exit 1; }

echo "| proxy | RSS before (KiB) | RSS peak (KiB) | bytes per slowloris connection | normal client: answers | failed | p50 ms | p99 ms | slowest ms | garbage rounds |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
row() {
    read -r before peak per ok failed p50 p99 max rounds < <(python3 "$here/attack.py" "$2" "$3" "$n" "$seconds")
    echo "| $1 | $before | $peak | $per | $ok | $failed | $p50 | $p99 | $max | $rounds |"
}

"$bin" -c "$work/ringway.toml" 2>/dev/null &
rw=$!
pids+=($rw)
wait_port 18930
row ringway "$rw" 18930
kill "$rw"; wait "$rw" 2>/dev/null || true

nginx -c "$work/nginx.conf" -g 'daemon off;' 2>/dev/null &
ng=$!
pids+=($ng)
wait_port 18931
row nginx "$(pgrep -P "$ng" | head -1)" 18931
kill "$ng"; wait "$ng" 2>/dev/null || true

haproxy -f "$work/haproxy.cfg" -db 2>/dev/null &
hp=$!
pids+=($hp)
wait_port 18932
row haproxy "$hp" 18932
kill "$hp"; wait "$hp" 2>/dev/null || true
