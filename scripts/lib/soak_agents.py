#!/usr/bin/env python3
"""The processes scripts/soak runs around the sidecar (standard library only, loopback only):

  soak_agents.py backend NAME PORT
      An HTTP/1.1 keep-alive backend on 127.0.0.1:PORT answering every request 200 with body NAME. Prints READY
      once listening. The soak kills it with SIGKILL and starts it again on the same port.
  soak_agents.py load PORT --rps R --connections C --seconds S [--max-requests N]
      Steady load: C keep-alive connections, GET /load/<conn>/<n>, together paced at R requests per second.
  soak_agents.py churn PORT --rate R --seconds S [--max-requests N]
      Connection churn: R new connections per second (at most 32 open at once), each one GET with
      `connection: close`, read to the proxy's close.
  soak_agents.py tls PORT --ca CA.pem --rps R --fresh-rate F --seconds S [--max-requests N]
      One keep-alive TLS connection paced at R requests per second, and F new TLS connections per second each
      carrying one `connection: close` request; every handshake verifies the chain against CA.pem and the
      127.0.0.1 SAN.

Every client counts every request: a request is `ok` only if it got a complete 200; any other status, a
connection error, a timeout or an early close is a failure, kept with its reason (the first 20 in full, the rest
counted by reason). Clients print one JSON line of cumulative counters a second on stdout and a last one with
"done": true; they stop on their own after S seconds or N requests (so a load can never run away), or on SIGTERM.
"""

import argparse
import asyncio
import hashlib
import json
import os
import signal
import socket
import ssl
import sys
import threading
import time

REQUEST_TIMEOUT = 10.0  # seconds for one request, connect included (the route timeout is 8 s)


class Tally:
    """Cumulative counters of one client, shared by its tasks or threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.ok = 0
        self.fail = 0
        self.connects = 0
        self.first_failures = []  # (monotonic time, reason), the first 20
        self.reasons = {}  # reason (truncated) -> count
        self.extra = {}

    def success(self):
        with self.lock:
            self.ok += 1

    def failure(self, reason):
        reason = " ".join(str(reason).split())[:200]
        with self.lock:
            self.fail += 1
            if len(self.first_failures) < 20:
                self.first_failures.append((round(time.monotonic(), 3), reason))
            key = reason[:80]
            self.reasons[key] = self.reasons.get(key, 0) + 1

    def total(self):
        return self.ok + self.fail

    def report(self, done=False):
        with self.lock:
            line = {
                "t": round(time.monotonic(), 3),
                "ok": self.ok,
                "fail": self.fail,
                "connects": self.connects,
                "first_failures": list(self.first_failures),
                "reasons": dict(self.reasons),
                "done": done,
            }
            line.update(self.extra)
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()


def stop_on_sigterm(stop):
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())


# ---- HTTP/1.1 response reading (asyncio) ----------------------------------------------------------------------
async def read_response(reader):
    """Status, lower-cased headers and body of one response; raises on a malformed or cut-off response."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
        raise ValueError("bad status line %r" % lines[0][:60])
    status = int(parts[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                break
            body += await reader.readexactly(size)
            await reader.readexactly(2)
    else:
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


def describe(e):
    if isinstance(e, asyncio.TimeoutError):
        return "timeout after %.0fs" % REQUEST_TIMEOUT
    if isinstance(e, asyncio.IncompleteReadError):
        return "connection closed mid-response (%d bytes)" % len(e.partial)
    return "%s: %s" % (type(e).__name__, e)


# ---- backend --------------------------------------------------------------------------------------------------
async def backend_main(a):
    body = a.name.encode()
    ok = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)

    async def serve(reader, writer):
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lower = head.lower()
                length = 0
                for line in lower.split(b"\r\n"):
                    if line.startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                if length:
                    await reader.readexactly(length)
                writer.write(ok)
                await writer.drain()
                if b"\r\nconnection: close" in lower:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", a.port, reuse_address=True, backlog=1024)
    print("READY", flush=True)
    async with server:
        await server.serve_forever()


# ---- steady keep-alive load -----------------------------------------------------------------------------------
async def load_main(a):
    tally = Tally()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    end = time.monotonic() + a.seconds
    interval = a.connections / a.rps  # each connection's pace

    async def worker(i):
        reader = writer = None
        next_at = time.monotonic() + interval * i / a.connections
        n = 0
        while not stop.is_set() and time.monotonic() < end and tally.total() < a.max_requests:
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            # Steady, not catching up: after a slow answer the next request goes at most one interval late.
            next_at = max(next_at + interval, time.monotonic())
            n += 1
            try:
                if writer is None:
                    reader, writer = await asyncio.wait_for(
                        asyncio.open_connection("127.0.0.1", a.port), REQUEST_TIMEOUT
                    )
                    tally.connects += 1
                writer.write(b"GET /load/%d/%d HTTP/1.1\r\nhost: soak\r\nuser-agent: soak-load\r\n\r\n" % (i, n))
                status, headers, body = await asyncio.wait_for(read_response(reader), REQUEST_TIMEOUT)
                if status == 200:
                    tally.success()
                else:
                    tally.failure("status %d: %s" % (status, body[:120].decode(errors="replace")))
                if headers.get("connection", "").lower() == "close":
                    writer.close()
                    writer = None
            except Exception as e:  # every way a request can go wrong is a failure, counted, then reconnect
                tally.failure(describe(e))
                if writer is not None:
                    writer.close()
                writer = None
        if writer is not None:
            writer.close()

    async def reporter():
        while not stop.is_set() and time.monotonic() < end:
            await asyncio.sleep(1.0)
            tally.report()

    rep = asyncio.ensure_future(reporter())
    await asyncio.gather(*(worker(i) for i in range(a.connections)))
    rep.cancel()
    tally.report(done=True)


# ---- connection churn -----------------------------------------------------------------------------------------
async def churn_main(a):
    tally = Tally()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    end = time.monotonic() + a.seconds
    open_now = asyncio.Semaphore(32)
    tally.extra["skipped"] = 0  # ticks with 32 connections already open (churn slower than asked)
    tasks = set()

    async def one(n):
        writer = None
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", a.port), REQUEST_TIMEOUT)
            tally.connects += 1
            writer.write(b"GET /churn/%d HTTP/1.1\r\nhost: soak\r\nconnection: close\r\n\r\n" % n)
            status, headers, body = await asyncio.wait_for(read_response(reader), REQUEST_TIMEOUT)
            # The proxy answers `connection: close` and closes: nothing more may come.
            rest = await asyncio.wait_for(reader.read(1), REQUEST_TIMEOUT)
            if status != 200:
                tally.failure("status %d: %s" % (status, body[:120].decode(errors="replace")))
            elif rest:
                tally.failure("bytes after a connection: close response")
            else:
                tally.success()
        except Exception as e:
            tally.failure(describe(e))
        finally:
            if writer is not None:
                writer.close()
            open_now.release()

    async def reporter():
        while not stop.is_set() and time.monotonic() < end:
            await asyncio.sleep(1.0)
            tally.report()

    rep = asyncio.ensure_future(reporter())
    n = 0
    next_at = time.monotonic()
    while not stop.is_set() and time.monotonic() < end and n < a.max_requests:
        delay = next_at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        next_at = max(next_at + 1.0 / a.rate, time.monotonic())
        if open_now.locked():
            tally.extra["skipped"] += 1
            continue
        await open_now.acquire()
        n += 1
        task = asyncio.ensure_future(one(n))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=REQUEST_TIMEOUT + 5)
    rep.cancel()
    tally.report(done=True)


# ---- TLS: a keep-alive connection and fresh handshakes -------------------------------------------------------
def tls_main(a):
    tally = Tally()
    stop = threading.Event()
    stop_on_sigterm(stop)
    end = time.monotonic() + a.seconds
    ctx = ssl.create_default_context(cafile=a.ca)  # verifies the chain and the 127.0.0.1 SAN
    fingerprints = {}  # sha256 of the served certificate -> handshakes (fresh connections)
    tally.extra["fingerprints"] = fingerprints
    tally.extra["keepalive_connects"] = 0

    def connect():
        raw = socket.create_connection(("127.0.0.1", a.port), timeout=REQUEST_TIMEOUT)
        try:
            s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        except BaseException:
            raw.close()
            raise
        return s, s.makefile("rb")

    def exchange(s, f, path, close):
        s.sendall(
            b"GET %s HTTP/1.1\r\nhost: soak\r\n%s\r\n" % (path.encode(), b"connection: close\r\n" if close else b"")
        )
        line = f.readline(1024)
        if not line:
            raise ConnectionError("closed before the response")
        status = int(line.split(b" ", 2)[1])
        length, conn_close = 0, False
        while True:
            h = f.readline(8192)
            if h in (b"\r\n", b""):
                break
            name, _, value = h.decode("latin-1").partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection" and value.strip().lower() == "close":
                conn_close = True
        body = f.read(length)
        if len(body) != length:
            raise ConnectionError("closed mid-body")
        return status, body, conn_close

    def keepalive():
        s = f = None
        n = 0
        next_at = time.monotonic()
        while not stop.is_set() and time.monotonic() < end and tally.total() < a.max_requests:
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            next_at = max(next_at + 1.0 / a.rps, time.monotonic())
            n += 1
            try:
                if s is None:
                    s, f = connect()
                    with tally.lock:
                        tally.extra["keepalive_connects"] += 1
                status, body, conn_close = exchange(s, f, "/tls/ka/%d" % n, False)
                if status == 200:
                    tally.success()
                else:
                    tally.failure("keep-alive status %d: %s" % (status, body[:120].decode(errors="replace")))
                if conn_close:
                    s.close()
                    s = None
            except Exception as e:
                tally.failure("keep-alive %s: %s" % (type(e).__name__, e))
                if s is not None:
                    s.close()
                s = None
        if s is not None:
            s.close()

    def fresh():
        n = 0
        next_at = time.monotonic()
        while not stop.is_set() and time.monotonic() < end and tally.total() < a.max_requests:
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            next_at = max(next_at + 1.0 / a.fresh_rate, time.monotonic())
            n += 1
            s = None
            try:
                s, f = connect()
                fp = hashlib.sha256(s.getpeercert(binary_form=True)).hexdigest()
                with tally.lock:
                    fingerprints[fp] = fingerprints.get(fp, 0) + 1
                status, body, _ = exchange(s, f, "/tls/fresh/%d" % n, True)
                if status == 200:
                    tally.success()
                else:
                    tally.failure("fresh status %d: %s" % (status, body[:120].decode(errors="replace")))
            except Exception as e:
                tally.failure("fresh %s: %s" % (type(e).__name__, e))
            finally:
                if s is not None:
                    s.close()

    threads = [threading.Thread(target=keepalive, daemon=True), threading.Thread(target=fresh, daemon=True)]
    for t in threads:
        t.start()
    next_report = time.monotonic() + 1.0
    while any(t.is_alive() for t in threads):
        time.sleep(0.2)
        if time.monotonic() >= next_report:
            next_report += 1.0
            tally.report()
    tally.report(done=True)


def exit_with_parent():
    """A thread that ends this process when the soak that started it is gone (reparented), however it ended. The
    soak passes its PID (SOAK_PARENT_PID): one that died while this process started is noticed too."""
    parent = int(os.environ.get("SOAK_PARENT_PID", os.getppid()))

    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(3)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main():
    exit_with_parent()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("backend")
    b.add_argument("name")
    b.add_argument("port", type=int)
    for name in ("load", "churn", "tls"):
        p = sub.add_parser(name)
        p.add_argument("port", type=int)
        p.add_argument("--seconds", type=float, required=True)
        p.add_argument("--max-requests", type=int, default=10_000_000)
        if name == "load":
            p.add_argument("--rps", type=float, required=True)
            p.add_argument("--connections", type=int, default=8)
        elif name == "churn":
            p.add_argument("--rate", type=float, required=True)
        else:
            p.add_argument("--ca", required=True)
            p.add_argument("--rps", type=float, required=True)
            p.add_argument("--fresh-rate", type=float, required=True)
    a = ap.parse_args()
    if a.cmd == "backend":
        asyncio.run(backend_main(a))
    elif a.cmd == "load":
        asyncio.run(load_main(a))
    elif a.cmd == "churn":
        asyncio.run(churn_main(a))
    else:
        tls_main(a)


if __name__ == "__main__":
    main()
