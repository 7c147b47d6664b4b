#!/usr/bin/env python3
"""Two ringway nodes in front of one simulated fleet: are its queues even, with and without
load_feedback?

Three `ringway backend --llm` servers with few batch slots (so that a queue forms in each
server, as `vllm:num_requests_waiting`), two ringway processes (`least_conn`, one worker
each) over the same three, and one client that sends each request to one of the two nodes
at random: Poisson arrivals at `--load` of the fleet's capacity, answers of random length.
A second scenario sends `--direct` of the requests from another client straight to the
first server (a batch job pinned to it), which neither node sees. Each scenario's arrivals
run twice: the nodes blind to each other, then both with
`load_feedback = { preset = "vllm", interval = "100ms" }` (the simulator runs about 10x
faster than a real GPU, so that is a real fleet's 1 s poll).

Every 50 ms the script reads each server's /metrics and records, across the three servers,
the spread (max - min) of waiting requests and of waiting + running. Reported per run:
the mean and p95 of those spreads, the time some server had a queue while another had a
free slot ("imbalanced"), the mean time to the whole answer, and the requests completed.

    cargo build --release && python3 benches/llm/feedback.py [--seconds 30] [--load 0.9]

Standard library only.
"""

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import HOST, free_ports, metrics, pct, stop, wait_port  # noqa: E402


def conf(listen, backends, work, name, feedback):
    servers = ",\n".join(f'  {{ addr = "{HOST}:{b}" }}' for b in backends)
    fb = f'load_feedback = {{ preset = "vllm", interval = "{feedback}" }}\n' if feedback else ""
    return f"""[runtime]
workers = 1
pin_workers = false

[log]
level = "warn"
error_log = "{work}/{name}-error.log"

[[listener]]
name = "llm"
bind = "{HOST}:{listen}"
upstream = "llm"

[upstreams.llm]
balance = "least_conn"
{fb}read_timeout = "300s"
keepalive = 64
servers = [
{servers}
]
"""


async def request(port, max_tokens, results):
    body = json.dumps({"model": "ringway-sim", "max_tokens": max_tokens,
                       "messages": [{"role": "user", "content": "hello " * 40}]}).encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: llm\r\nContent-Type: application/json"
            f"\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    start = time.perf_counter()
    try:
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(head + body)
        await writer.drain()
        data = await reader.read()
        writer.close()
        ok = data.startswith(b"HTTP/1.1 200")
    except OSError:
        ok = False
    results.append((ok, time.perf_counter() - start))


async def drive(ports, arrivals):
    results = []
    t0 = time.perf_counter()
    tasks = []
    for at, node, tokens in arrivals:
        await asyncio.sleep(max(0.0, t0 + at - time.perf_counter()))
        tasks.append(asyncio.create_task(request(ports[node], tokens, results)))
    await asyncio.gather(*tasks)
    return results


def sample(sims, stop_flag, out):
    while not stop_flag.is_set():
        row = []
        for p in sims:
            try:
                m = metrics(p)
                row.append((m["vllm:num_requests_waiting"], m["vllm:num_requests_running"]))
            except (OSError, KeyError, ValueError):
                row = None
                break
        if row:
            out.append(row)
        time.sleep(0.05)


def run(args, feedback, direct, arrivals, sim_flags, work):
    sims = free_ports(3)
    sim_procs = [subprocess.Popen([args.ringway, "backend", "--llm", "--bind", f"{HOST}:{p}"]
                                  + sim_flags, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL) for p in sims]
    nodes = []
    try:
        for p, s in zip(sims, sim_procs):
            if not wait_port(p, s):
                sys.exit(f"the simulator on {p} did not start")
        listens = free_ports(2)
        for i, listen in enumerate(listens):
            path = os.path.join(work, f"node{i}.toml")
            with open(path, "w") as f:
                f.write(conf(listen, sims, work, f"node{i}", feedback))
            proc = subprocess.Popen([args.ringway, "-c", path], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            nodes.append(proc)
            if not wait_port(listen, proc):
                sys.exit(f"ringway node {i} did not start")
        time.sleep(0.6)  # a couple of polls before the first request
        samples, done = [], threading.Event()
        sampler = threading.Thread(target=sample, args=(sims, done, samples))
        sampler.start()
        # Node 2 is another client that sends straight to the first server.
        results = asyncio.run(drive(listens + [sims[0]], arrivals))
        done.set()
        sampler.join()
    finally:
        for p in nodes + sim_procs:
            stop(p)
    # Only the samples while arrivals last matter (not the drain at the end).
    samples = samples[: int(args.seconds / 0.05)]
    wait_spread = [max(w for w, _ in row) - min(w for w, _ in row) for row in samples]
    load_spread = [max(w + r for w, r in row) - min(w + r for w, r in row) for row in samples]
    imbalanced = [any(w > 0 for w, _ in row) and any(r < args.slots for _, r in row)
                  for row in samples]
    ok = [t for good, t in results if good]
    return {
        "feedback": feedback,
        "direct": direct,
        "samples": len(samples),
        "waiting_spread_mean": sum(wait_spread) / len(wait_spread),
        "waiting_spread_p95": pct(wait_spread, 95),
        "load_spread_mean": sum(load_spread) / len(load_spread),
        "load_spread_p95": pct(load_spread, 95),
        "imbalanced": sum(imbalanced) / len(imbalanced),
        "mean_waiting": sum(sum(w for w, _ in row) for row in samples) / len(samples),
        "latency_mean": sum(ok) / len(ok) if ok else float("nan"),
        "latency_p99": pct(ok, 99),
        "completed": len(ok),
        "failed": len(results) - len(ok),
    }


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ringway", default=os.path.join(here, "../../target/release/ringway"))
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--load", type=float, default=0.9, help="offered load / fleet capacity")
    ap.add_argument("--slots", type=int, default=4)
    ap.add_argument("--decode-ms-per-token", type=float, default=4.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--direct", type=float, default=0.2,
                    help="second scenario: this share of the requests comes from another "
                    "client straight to the first server")
    # The simulator runs about 10x faster than a real GPU (src/llm_sim/mod.rs): 100 ms here
    # is the 1 s poll a real fleet would use.
    ap.add_argument("--interval", default="100ms", help="load_feedback's poll interval")
    args = ap.parse_args()

    rng = random.Random(args.seed)
    mean_tokens = 100
    # A request holds a slot for about its tokens' decode time (prefill is short here).
    capacity = 3 * args.slots / (mean_tokens * args.decode_ms_per_token / 1000)
    rate = args.load * capacity
    def trace(direct):
        arrivals, t = [], 0.0
        while True:
            t += rng.expovariate(rate)
            if t >= args.seconds:
                return arrivals
            node = 2 if rng.random() < direct else rng.randrange(2)
            arrivals.append((t, node, rng.randint(20, 2 * mean_tokens - 20)))
    sim_flags = ["--slots", str(args.slots), "--decode-ms-per-token",
                 str(args.decode_ms_per_token), "--prefill-us-per-byte", "2"]
    print(f"~{rate * args.seconds:.0f} requests over {args.seconds:.0f} s (~{rate:.1f}/s, "
          f"{args.load:.0%} of capacity), two nodes at random; simulators: "
          f"{' '.join(sim_flags)}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="ringway-llm-feedback-") as work:
        for direct in sorted({0.0, args.direct}):
            arrivals = trace(direct)
            for feedback in ("", args.interval):
                row = run(args, feedback, direct, arrivals, sim_flags, work)
                print(json.dumps(row), flush=True)
                rows.append(row)
    print()
    print("| traffic | two ringway nodes (least_conn) | waiting spread mean / p95 | waiting + running "
          "spread mean / p95 | a queue beside a free slot | mean waiting | answer mean / p99 "
          "| completed |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        name = f"load_feedback vllm, {r['feedback']}" if r["feedback"] else "no load_feedback"
        who = (f"{r['direct']:.0%} from another client straight to one server"
               if r["direct"] else "all through the two nodes")
        print(f"| {who} | {name} | {r['waiting_spread_mean']:.2f} / {r['waiting_spread_p95']:.0f} "
              f"| {r['load_spread_mean']:.2f} / {r['load_spread_p95']:.0f} "
              f"| {r['imbalanced']:.0%} of the time | {r['mean_waiting']:.2f} "
              f"| {r['latency_mean'] * 1000:.0f} / {r['latency_p99'] * 1000:.0f} ms "
              f"| {r['completed']} (failed {r['failed']}) |")


if __name__ == "__main__":
    main()
