#!/usr/bin/env python3
"""What idle keep-alive connections cost a proxy in resident memory (scripts/bench, suite idle).

Usage: idle_conns.py PORT PID [COUNT] [HOLD_SECONDS]

Reads the proxy's (PID) VmRSS, then opens COUNT (default 1000) connections to 127.0.0.1:PORT, sends one
HTTP/1.1 GET on each and reads its whole answer (by Content-Length or chunked), so every connection has been
through a request and sits idle in keep-alive, as a mesh's pooled connections do. After HOLD_SECONDS (default 2)
it reads VmRSS again, checks every connection is still open (the proxy answered and kept it), closes them, and
prints one line: `before_kb AFTER_kb connections_open`. Exits 1 if a request failed or a connection was closed.
"""
import os
import selectors
import socket
import sys
import time


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise SystemExit(f"no VmRSS for pid {pid}")


def answer_complete(data):
    head_end = data.find(b"\r\n\r\n")
    if head_end < 0:
        return False
    head = data[:head_end].lower()
    body = data[head_end + 4:]
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip() == b"content-length":
            return len(body) >= int(value.strip())
        if name.strip() == b"transfer-encoding" and b"chunked" in value:
            return body.endswith(b"0\r\n\r\n")
    return False


def main():
    port, pid = int(sys.argv[1]), int(sys.argv[2])
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    hold = float(sys.argv[4]) if len(sys.argv) > 4 else 2.0
    before = rss_kb(pid)
    request = b"GET / HTTP/1.1\r\nHost: bench\r\nUser-Agent: idle-conns\r\n\r\n"
    sel = selectors.DefaultSelector()
    pending = {}
    conns = []
    deadline = time.monotonic() + 60
    # Open and ask in batches of 100, so the proxy's accept queue never overflows.
    for start in range(0, count, 100):
        for _ in range(start, min(start + 100, count)):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.setblocking(False)
            s.sendall(request)
            conns.append(s)
            pending[s] = b""
            sel.register(s, selectors.EVENT_READ)
        while pending:
            if time.monotonic() > deadline:
                raise SystemExit(f"idle_conns: {len(pending)} answers missing after 60 s")
            for key, _ in sel.select(timeout=1):
                s = key.fileobj
                chunk = s.recv(65536)
                if not chunk:
                    raise SystemExit("idle_conns: the proxy closed a connection before answering")
                pending[s] += chunk
                if answer_complete(pending[s]):
                    if not pending[s].startswith(b"HTTP/1.1 200"):
                        raise SystemExit(f"idle_conns: answer was {pending[s][:40]!r}")
                    del pending[s]
                    sel.unregister(s)
    time.sleep(hold)
    after = rss_kb(pid)
    # Still open: a read finds nothing to read (not end-of-file).
    open_count = 0
    for s in conns:
        try:
            if s.recv(1) == b"":
                continue
        except BlockingIOError:
            open_count += 1
    for s in conns:
        s.close()
    print(before, after, open_count)
    return 0 if open_count == count else 1


if __name__ == "__main__":
    sys.exit(main())
