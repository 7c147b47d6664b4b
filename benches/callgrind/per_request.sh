#!/usr/bin/env bash
# User-space instructions per proxied request on the worker thread, counted by callgrind: repeatable to a few
# percent whatever else the machine does, unlike CPU time on a shared 2-core VM.
#
#   benches/callgrind/per_request.sh BINARY [BINARY ...]
#
# Each binary proxies `ab -k -c 1` GETs (one at a time: no batching, so the count repeats) of a 16-byte body to a `ringway backend`, once
# with N1 and once with N2 requests, on one epoll worker (valgrind does not follow
# io_uring; the request path in ringway's own code is the same on both drivers). The
# difference of the two totals divided by N2 - N1 takes start-up and shutdown out.
# Needs valgrind, ab (apache2-utils) and curl. Ports 18900/18901 on 127.0.0.1.
set -euo pipefail
N1=${N1:-2000}
N2=${N2:-12000}
work=$(mktemp -d)
backend_bin=${BACKEND_BIN:-$1}
cat > "$work/cfg.toml" <<TOML
[runtime]
workers = 1
pin_workers = false
driver = "epoll"

[[listener]]
name = "x"
bind = "127.0.0.1:18900"
upstream = "u"

[upstreams.u]
keepalive = 64
servers = [{ addr = "127.0.0.1:18901" }]
TOML
"$backend_bin" backend --bind 127.0.0.1:18901 >/dev/null 2>&1 &
backend=$!
trap 'kill $backend 2>/dev/null; rm -rf "$work"' EXIT

total() { # binary requests
    rm -f "$work"/out*
    # One file per thread: only the worker's count is kept, so the control thread's
    # timed waits (more of them the longer a run takes) do not blur the figure.
    valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$work/out" \
        "$1" -c "$work/cfg.toml" 2>/dev/null &
    local pid=$!
    for _ in $(seq 1 300); do curl -s -o /dev/null http://127.0.0.1:18900/size/16 && break; sleep 0.1; done
    ab -q -k -n "$2" -c 1 http://127.0.0.1:18900/size/16 | grep -q "Failed requests:        0"
    kill -TERM $pid; wait $pid || true
    grep -h '^summary:' "$work"/out* | awk '{print $2}' | sort -n | tail -1
}

echo "| binary | instructions per request |"
echo "|---|---:|"
for bin in "$@"; do
    a=$(total "$bin" "$N1")
    b=$(total "$bin" "$N2")
    echo "| $bin | $(( (b - a) / (N2 - N1) )) |"
done
