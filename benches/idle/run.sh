#!/usr/bin/env bash
# Memory per idle keep-alive client connection, ringway against a tuned nginx, same run:
# N clients (127.0.0.2 and up) each send one request and then stay connected; the figure
# is the growth of the serving process's RSS divided by N (nginx: its one worker).
#
#   benches/idle/run.sh [RINGWAY_BINARY] [N]
#
# Needs nginx (apt-get install nginx) and python3. Ports 18920-18922 on 127.0.0.1.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-$here/../../target/release/ringway}
n=${2:-10000}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)"

"$bin" backend --bind 127.0.0.1:18922 >/dev/null 2>&1 &
pids+=($!)

cat > "$work/ringway.toml" <<TOML
[runtime]
workers = 1
pin_workers = false

[[listener]]
name = "idle"
bind = "127.0.0.1:18920"
upstream = "u"
keepalive_timeout = "600s"

[upstreams.u]
keepalive = 256
servers = [{ addr = "127.0.0.1:18922" }]
TOML

mkdir -p "$work/nginx"
cat > "$work/nginx.conf" <<NGINX
worker_processes 1;
worker_rlimit_nofile 65536;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 65536; }
http {
    access_log off;
    keepalive_timeout 600s;
    keepalive_requests 100000;
    client_body_temp_path $work/nginx;
    proxy_temp_path $work/nginx;
    upstream u { server 127.0.0.1:18922; keepalive 256; }
    server {
        listen 127.0.0.1:18921 reuseport;
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

wait_port() { for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$1/size/16" && return; sleep 0.1; done; echo "port $1 never answered" >&2; exit 1; }

echo "| proxy | bytes of RSS per idle connection | RSS before (KiB) | RSS after $n connections (KiB) |"
echo "|---|---:|---:|---:|"

"$bin" -c "$work/ringway.toml" 2>/dev/null &
rw=$!
pids+=($rw)
wait_port 18920
read -r per before after < <(python3 "$here/clients.py" "$rw" 18920 "$n")
echo "| ringway | $per | $before | $after |"
kill "$rw"; wait "$rw" 2>/dev/null || true

nginx -c "$work/nginx.conf" -g 'daemon off;' 2>/dev/null &
ng=$!
pids+=($ng)
wait_port 18921
worker=$(pgrep -P "$ng" | head -1)
read -r per before after < <(python3 "$here/clients.py" "$worker" 18921 "$n")
echo "| nginx | $per | $before | $after |"
