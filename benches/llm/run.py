#!/usr/bin/env python3
"""Balancing policies in front of a simulated LLM fleet, same trace, same run.

Three `ringway backend --llm` servers; a replay of multi-turn chats (every prompt starts
with one shared system prompt, each turn's prompt = the previous prompt + the assistant's
answer + a new user message; conversations start as Poisson arrivals, each turn follows the
previous answer after a think time; streamed and whole answers mixed) through:

  nginx least_conn, nginx `hash $http_x_session_id consistent`, HAProxy leastconn,
  ringway least_conn, least_time and prompt.

Per policy: time to first token p50/p99 (streamed requests: the first `data:` event;
whole answers have no first token to see), end-to-end p99 (all requests), completed
requests per second, the fleet's prefix cache hit rate (from the simulators' /metrics) and
the busiest server's share of the requests, the share of follow-up turns that went to
another server than the turn before; and where time to first token went (mean over the
streamed requests and over the slowest 2%): waiting for a slot, waiting for the prefill
engine, the request's own prefill, the rest (proxy, network, event loops), from the
`ringway_sim` timings the simulator puts in each answer. The simulators are restarted for
every policy (empty caches, zeroed counters).

    python3 benches/llm/run.py [--ringway target/release/ringway] [--conversations 200]
        [--only "nginx least_conn,prompt"] [--factor 150]

Needs python3 (standard library only); nginx and haproxy are run if installed (apt-get
install -y nginx haproxy), else their rows say so. A ringway policy that `ringway -t`
refuses (not in this build) is reported as "not available in this build".
"""

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HOST = "127.0.0.1"
BLOCK = 64  # the simulator's cache block, bytes


# ---------------------------------------------------------------- the trace

WORDS = ("the a model server cache prompt token answer question request latency "
         "batch queue stream user system reply history context window memory GPU "
         "policy balance route first next turn chat long short fast slow").split()


def text(rng, n):
    """About n bytes of words."""
    out = []
    size = 0
    while size < n:
        w = rng.choice(WORDS)
        out.append(w)
        size += len(w) + 1
    return " ".join(out)


def make_trace(seed, conversations, span):
    rng = random.Random(seed)
    system = "You are a helpful assistant for ringway's benchmark. " + text(rng, 1500)
    convs = []
    t = 0.0
    for c in range(conversations):
        t += rng.expovariate(conversations / span)
        turns = []
        for _ in range(rng.randint(3, 8)):
            turns.append({
                "user": text(rng, rng.randint(100, 600)),
                "max_tokens": rng.randint(16, 64),
                "stream": rng.random() < 0.6,
                "think": rng.expovariate(1.0 / 0.5),
            })
        convs.append({"id": f"conv-{seed}-{c}", "start": t, "turns": turns})
    return system, convs


def rendered_len(messages):
    """Bytes of the prompt as the simulator's chat template renders it."""
    n = len("<|assistant|>\n")
    for m in messages:
        n += len(f"<|{m['role']}|>\n") + len(m["content"].encode()) + len("<|end|>\n")
    return n


def answer_text(tokens):
    """The simulator's deterministic answer of `tokens` tokens (src/llm_sim/api.rs word)."""
    opening = ["Hello", " from", " a", " simulated", " LLM", " server", "."]
    words = [" The", " cache", " keeps", " every", " prompt", " block", " it", " has",
             " seen,", " so", " the", " next", " turn", " starts", " sooner", "."]
    return "".join(opening[i] if i < len(opening) else words[(i - len(opening)) % len(words)]
                   for i in range(tokens))


def uncached_bytes_with_shared_system(system, convs):
    """Prefill bytes of the whole trace when only the shared system prompt is cached: what
    a balancer that ignores conversations can count on."""
    sys_msg = {"role": "system", "content": system}
    shared = (rendered_len([sys_msg]) - len("<|assistant|>\n")) // BLOCK * BLOCK
    total = 0
    requests = 0
    for conv in convs:
        messages = [sys_msg]
        for turn in conv["turns"]:
            messages.append({"role": "user", "content": turn["user"]})
            total += rendered_len(messages) - shared
            requests += 1
            messages.append({"role": "assistant", "content": answer_text(turn["max_tokens"])})
    return total, requests


# ---------------------------------------------------------------- the client

class Result:
    __slots__ = ("ok", "stream", "ttft", "e2e", "backend", "status", "error", "sim", "conv")


async def read_head(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return status, headers


async def one_request(port, conv_id, messages, turn):
    """One request on a fresh connection; returns (Result, the assistant's text)."""
    r = Result()
    r.stream, r.ok, r.ttft, r.backend, r.error = turn["stream"], False, None, None, None
    r.sim = None
    body = json.dumps({
        "model": "ringway-sim", "messages": messages, "stream": turn["stream"],
        "max_tokens": turn["max_tokens"],
    }).encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: llm\r\nContent-Type: application/json\r\n"
            f"X-Session-Id: {conv_id}\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n\r\n").encode()
    start = time.perf_counter()
    reply = ""
    try:
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(head + body)
        await writer.drain()
        status, headers = await read_head(reader)
        r.status = status
        r.backend = headers.get("x-backend")
        if headers.get("transfer-encoding", "").lower() == "chunked":
            data = bytearray()
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    break
                chunk = await reader.readexactly(size + 2)
                if r.ttft is None and b"data: {" in chunk:
                    r.ttft = time.perf_counter() - start
                data += chunk[:-2]
            for event in data.decode().split("\n\n"):
                if event.startswith("data: {"):
                    value = json.loads(event[6:])
                    r.sim = value.get("ringway_sim") or r.sim
                    choice = (value.get("choices") or [{}])[0]
                    reply += choice.get("delta", {}).get("content") or ""
            r.ok = status == 200 and data.endswith(b"data: [DONE]\n\n")
        else:
            n = int(headers.get("content-length", "0"))
            data = await reader.readexactly(n)
            if status == 200:
                value = json.loads(data)
                r.sim = value.get("ringway_sim")
                reply = value["choices"][0]["message"]["content"]
                r.ok = True
        writer.close()
    except (OSError, asyncio.IncompleteReadError, ValueError, KeyError) as e:
        r.error = repr(e)
    r.e2e = time.perf_counter() - start
    if not r.ok and r.error is None:
        r.error = f"status {getattr(r, 'status', '?')}"
    return r, reply


async def conversation(port, system, conv, t0, results):
    await asyncio.sleep(max(0.0, t0 + conv["start"] - time.perf_counter()))
    messages = [{"role": "system", "content": system}]
    for turn in conv["turns"]:
        messages.append({"role": "user", "content": turn["user"]})
        r, reply = await one_request(port, conv["id"], messages, turn)
        r.conv = conv["id"]
        results.append(r)
        if not r.ok:
            return  # a failed turn ends the conversation, as a user would give up
        messages.append({"role": "assistant", "content": reply})
        await asyncio.sleep(turn["think"])


async def replay(port, system, convs):
    results = []
    t0 = time.perf_counter() + 0.2
    await asyncio.gather(*(conversation(port, system, c, t0, results) for c in convs))
    return results, time.perf_counter() - t0


# ---------------------------------------------------------------- processes

def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind((HOST, 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def wait_port(port, proc, within=10.0):
    deadline = time.time() + within
    while time.time() < deadline:
        if proc.poll() is not None:
            return False
        try:
            socket.create_connection((HOST, port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def metrics(port):
    with socket.create_connection((HOST, port), timeout=3) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    values = {}
    for line in data.decode().split("\r\n\r\n", 1)[1].splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name.split("{")[0]] = float(value)
    return values


def ringway_conf(policy, listen, backends, work, factor=150):
    servers = ",\n".join(f'  {{ addr = "{HOST}:{b}" }}' for b in backends)
    # As in config/llm-fleet.toml: no server above 1.5x the mean load.
    factor = f"hash_balance_factor = {factor}\n" if policy == "prompt" else ""
    return f"""[runtime]
workers = 1
pin_workers = false

[log]
level = "warn"
error_log = "{work}/ringway-{policy}-error.log"
access_log = "off"

[[listener]]
name = "llm"
bind = "{HOST}:{listen}"
upstream = "llm"
client_max_body_size = "16m"

[upstreams.llm]
balance = "{policy}"
{factor}read_timeout = "300s"
keepalive = 64
servers = [
{servers}
]
"""


def nginx_conf(method, listen, backends, work):
    servers = "\n".join(f"        server {HOST}:{b};" for b in backends)
    return f"""worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {work}/nginx-body;
    proxy_temp_path {work}/nginx-proxy;
    client_max_body_size 16m;
    # Keep request bodies in memory (prompts can pass nginx's 16k default, and its worker
    # user cannot write to this run's private temp dir).
    client_body_buffer_size 16m;
    upstream llm {{
        {method};
{servers}
        keepalive 64;
    }}
    server {{
        listen {HOST}:{listen};
        location / {{
            proxy_pass http://llm;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 300s;
        }}
    }}
}}
"""


def haproxy_conf(listen, backends, work):
    servers = "\n".join(f"    server s{i} {HOST}:{b}" for i, b in enumerate(backends))
    return f"""global
    nbthread 1
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    http-reuse always
    # Its docs' advice for interactive traffic: send each token at once instead of
    # aggregating small writes (without it, tokens wait for delayed ACKs, ~200 ms).
    option http-no-delay
frontend llm
    bind {HOST}:{listen}
    default_backend fleet
backend fleet
    balance leastconn
{servers}
"""


# name, kind, argument, note
POLICIES = [
    ("nginx least_conn", "nginx", "least_conn", ""),
    ("nginx hash $http_x_session_id consistent", "nginx", "hash $http_x_session_id consistent",
     "given a session header real clients do not send"),
    ("HAProxy leastconn", "haproxy", "leastconn", ""),
    ("ringway least_conn", "ringway", "least_conn", ""),
    ("ringway least_time", "ringway", "least_time", ""),
    ("ringway prompt", "ringway", "prompt", ""),  # the note names --factor
]


def start_proxy(kind, arg, listen, backends, work, ringway, factor):
    """Starts the proxy; returns (process, None) or (None, why not)."""
    if kind == "ringway":
        path = os.path.join(work, f"ringway-{arg}.toml")
        with open(path, "w") as f:
            f.write(ringway_conf(arg, listen, backends, work, factor))
        check = subprocess.run([ringway, "-t", "-c", path], capture_output=True, text=True)
        if check.returncode != 0:
            return None, "not available in this build"
        cmd = [ringway, "-c", path]
    elif kind == "nginx":
        if not shutil.which("nginx"):
            return None, "nginx not installed"
        path = os.path.join(work, "nginx.conf")
        with open(path, "w") as f:
            f.write(nginx_conf(arg, listen, backends, work))
        cmd = ["nginx", "-c", path, "-p", work]
    else:
        if not shutil.which("haproxy"):
            return None, "haproxy not installed"
        path = os.path.join(work, "haproxy.cfg")
        with open(path, "w") as f:
            f.write(haproxy_conf(listen, backends, work))
        cmd = ["haproxy", "-f", path, "-db"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not wait_port(listen, proc):
        stop(proc)
        return None, f"{kind} did not start"
    return proc, None


def pct(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def run_policy(name, kind, arg, args, system, convs, sim_flags, work):
    sim_ports = free_ports(3)
    sims = [subprocess.Popen([args.ringway, "backend", "--llm", "--bind", f"{HOST}:{p}"] + sim_flags,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for p in sim_ports]
    try:
        for p, s in zip(sim_ports, sims):
            if not wait_port(p, s):
                sys.exit(f"the simulator on {p} did not start")
        (listen,) = free_ports(1)
        proxy, why = start_proxy(kind, arg, listen, sim_ports, work, args.ringway, args.factor)
        if proxy is None:
            return {"name": name, "skipped": why}
        try:
            results, elapsed = asyncio.run(replay(listen, system, convs))
        finally:
            stop(proxy)
        hits = queries = 0.0
        for p in sim_ports:
            m = metrics(p)
            hits += m["vllm:prefix_cache_hits_total"]
            queries += m["vllm:prefix_cache_queries_total"]
    finally:
        for s in sims:
            stop(s)
    ok = [r for r in results if r.ok]
    per_server = {}
    for r in ok:
        per_server[r.backend] = per_server.get(r.backend, 0) + 1
    return {
        "name": name,
        "requests": len(results),
        "failed": len(results) - len(ok),
        "errors": sorted({r.error for r in results if not r.ok})[:3],
        "ttft50": pct([r.ttft for r in ok if r.stream], 50),
        "ttft99": pct([r.ttft for r in ok if r.stream], 99),
        "e2e99": pct([r.e2e for r in ok], 99),
        "rps": len(ok) / elapsed,
        "hit": hits / queries if queries else float("nan"),
        "top_share": max(per_server.values()) / len(ok) if ok else float("nan"),
        "moved": moved(ok),
        "breakdown": breakdown([r for r in ok if r.stream]),
    }


def moved(ok):
    """The share of follow-up turns served by another server than the turn before (each
    one prefills the conversation's history again)."""
    last, follow, moves = {}, 0, 0
    for r in ok:  # in completion order, which is turn order within a conversation
        if r.conv in last:
            follow += 1
            moves += r.backend != last[r.conv]
        last[r.conv] = r.backend
    return moves / follow if follow else float("nan")


def breakdown(streamed):
    """Where time to first token went (the simulators' `ringway_sim` timings), in ms: the
    mean over every streamed request and over the slowest 2% (the p99's neighbourhood).
    queued = in the server's queue for a batch slot; prefill wait = holding a slot behind
    other prompts' prefill; prefill = its own uncached bytes; other = the rest (proxy,
    network, the client's and the simulator's event loops)."""
    timed = sorted((r for r in streamed if r.sim), key=lambda r: r.ttft)
    out = {}
    for name, part in (("all", timed), ("slowest 2%", timed[-max(1, len(timed) // 50):])):
        if not part:
            continue
        n = len(part)
        q = sum(r.sim["queued_us"] for r in part) / n / 1000
        w = sum(r.sim["prefill_wait_us"] for r in part) / n / 1000
        p = sum(r.sim["prefill_us"] for r in part) / n / 1000
        t = sum(r.ttft for r in part) / n * 1000
        out[name] = {"ttft": round(t, 1), "queued": round(q, 1), "prefill_wait": round(w, 1),
                     "prefill": round(p, 1), "other": round(t - q - w - p, 1),
                     "uncached_kb": round(sum(r.sim["uncached_bytes"] for r in part) / n / 1024, 1)}
    return out


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ringway", default=os.path.join(here, "../../target/release/ringway"))
    ap.add_argument("--conversations", type=int, default=200)
    ap.add_argument("--span", type=float, default=25.0,
                    help="seconds over which conversations start")
    ap.add_argument("--load", type=float, default=0.8, help="offered load / fleet capacity")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--decode-ms-per-token", type=float, default=4.0)
    ap.add_argument("--slots", type=int, default=16)
    ap.add_argument("--factor", type=int, default=150,
                    help="prompt's hash_balance_factor (150 as in config/llm-fleet.toml; "
                    "other values only to see what the bound costs)")
    ap.add_argument("--only", help="run only the policies whose name contains one of these "
                    "comma-separated words")
    args = ap.parse_args()

    system, convs = make_trace(args.seed, args.conversations, args.span)
    uncached, requests = uncached_bytes_with_shared_system(system, convs)
    # Fleet capacity: three prefill engines (the bottleneck at this decode cost and slot
    # count) busy all the time with what must be prefilled when only the system prompt
    # is cached. Set the prefill cost so the trace's mean request rate is `load` of it.
    rate = requests / args.span
    prefill_us = args.load * 3 / (rate * uncached / requests) * 1e6
    sim_flags = ["--prefill-us-per-byte", f"{prefill_us:.3f}",
                 "--decode-ms-per-token", str(args.decode_ms_per_token),
                 "--slots", str(args.slots)]
    print(f"trace: {len(convs)} conversations, {requests} requests, system prompt "
          f"{len(system)} bytes, mean uncached prompt {uncached / requests:.0f} bytes; "
          f"~{rate:.1f} requests/s; simulators: {' '.join(sim_flags)}", flush=True)

    rows = []
    with tempfile.TemporaryDirectory(prefix="ringway-llm-bench-") as work:
        for name, kind, arg, note in POLICIES:
            if args.only and not any(w in name for w in args.only.split(",")):
                continue
            row = run_policy(name, kind, arg, args, system, convs, sim_flags, work)
            row["note"] = f"hash_balance_factor = {args.factor}" if arg == "prompt" else note
            rows.append(row)
            print(json.dumps(row), flush=True)
    report(rows)


def report(rows):
    base = next((r for r in rows if r["name"] == "nginx least_conn" and "skipped" not in r), None)
    print()
    print("| policy | TTFT p50 | TTFT p99 | end-to-end p99 | completed/s | prefix cache hits "
          "| busiest server | turns moved | failed |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        name = r["name"] + (f" ({r['note']})" if r["note"] else "")
        if "skipped" in r:
            print(f"| {name} | {r['skipped']} | | | | | | | |")
            continue
        ratio = f" ({r['ttft99'] / base['ttft99']:.2f}x)" if base else ""
        print(f"| {name} | {r['ttft50'] * 1000:.0f} ms | {r['ttft99'] * 1000:.0f} ms{ratio} "
              f"| {r['e2e99'] * 1000:.0f} ms | {r['rps']:.1f} | {r['hit'] * 100:.0f}% "
              f"| {r['top_share'] * 100:.0f}% | {r['moved'] * 100:.0f}% | {r['failed']} |")
    print()
    print("Where time to first token went (ms; mean over streamed requests, and over the "
          "slowest 2%): queued for a slot / waiting for the prefill engine / own prefill "
          "/ other (proxy, network, event loops); mean uncached prompt")
    print()
    print("| policy | all: ttft = queued + prefill wait + prefill + other (uncached) "
          "| slowest 2%: ttft = queued + prefill wait + prefill + other (uncached) |")
    print("|---|---|---|")
    for r in rows:
        if "skipped" in r:
            continue
        cells = []
        for part in ("all", "slowest 2%"):
            b = r["breakdown"].get(part)
            cells.append(f"{b['ttft']:.0f} = {b['queued']:.0f} + {b['prefill_wait']:.0f} + "
                         f"{b['prefill']:.0f} + {b['other']:.0f} ({b['uncached_kb']:.1f} KB)"
                         if b else "-")
        print(f"| {r['name']} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
