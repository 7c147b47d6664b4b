"""Opens N keep-alive connections, one request each, and reports how much the serving
process's RSS grew per idle connection. Client addresses are 127.0.0.2 and up, so 10,000
connections never run out of source ports.

    python3 clients.py PID PORT N
"""
import resource
import socket
import sys
import time

pid, port, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
REQUEST = b"GET /size/16 HTTP/1.1\r\nHost: bench\r\n\r\n"


def rss_kib():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise SystemExit("no VmRSS")


def one_request(s):
    s.sendall(REQUEST)
    got = b""
    deadline = time.time() + 10
    while b"\r\n\r\n" not in got:
        if time.time() > deadline:
            raise SystemExit("no response within 10 s")
        chunk = s.recv(4096)
        if not chunk:
            raise SystemExit("connection closed before the response")
        got += chunk


# Warm up: what the first connections allocate once (pools, tables) is not per connection.
for _ in range(100):
    s = socket.create_connection(("127.0.0.1", port))
    one_request(s)
    s.close()
time.sleep(0.5)
before = rss_kib()
held = []
for i in range(n):
    s = socket.socket()
    s.bind(("127.0.%d.%d" % (2 + i // 250, 1 + i % 250), 0))
    s.connect(("127.0.0.1", port))
    one_request(s)
    held.append(s)
# ringway parks a connection idle for 1 s (worker/parked.rs): measure idle clients as
# they are after a few seconds, not the last ones still in their first second.
time.sleep(3.0)
after = rss_kib()
print(f"{(after - before) * 1024 / n:.0f} {before} {after}")
