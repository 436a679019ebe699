#!/usr/bin/env python3
"""Misbehaving HTTP/1.1 backends for the resilience suite: one process, several backends on 127.0.0.1.

Usage: chaos_backend.py NAME[=PORT] [NAME[=PORT] ...] [--control PORT]

Each backend listens on its own port (0 or absent: the kernel picks one). Once every socket is bound the
process prints one line, `READY {"control": P, "backends": {"b0": P0, ...}}`, and serves until killed.
Connections are threaded, keep-alive and TCP_NODELAY; request bodies (content-length or chunked) are
always read to the end before the backend decides what to do, so a misbehaviour is never a side effect
of an unread body.

A backend's mode decides how it answers anything but GET /healthz:
  ok              200, body = the backend's name
  status:<code>   that status, body = the backend's name
  reset           read the request, then close with SO_LINGER 0 (the peer sees an RST, no response)
  stall           read the request, never answer (the connection is held until the peer closes it)
  slow:<ms>       wait, then 200
  refuse          close the listening socket (connects are refused) and reset every open connection,
                  as if the process had died; any other mode opens the listening socket again
  flaky:<n>       503 for the next n requests, then 200
GET /healthz answers the backend's health status (health:<code>, default 200), whatever the mode
(refuse aside: nothing can connect then).

Control port (plain HTTP, one request per connection is fine):
  POST /mode?port=P&mode=M   (or name=N instead of port=P)   -> 200 "ok"
  POST /reset                 clear every counter and record  -> 200 "ok"
  GET  /stats                 JSON: {"backends": {name: {port, mode, health, requests, health_checks,
                              connections}}, "requests": {id: [[name, x-envoy-attempt-count or
                              null], ...]}}  (the list is in arrival order)
A request is recorded under its x-request-id and, if it has one, under its x-test-id (a proxy may
replace x-request-id, e.g. Envoy on an edge request); one without either is only counted.
"""

import json
import socket
import struct
import sys
import threading
import time
from http import HTTPStatus
from urllib.parse import parse_qs, urlparse

LOCK = threading.Lock()
REQUESTS = {}  # x-request-id or x-test-id -> [[backend, x-envoy-attempt-count], ...]
STOP = threading.Event()


class BadRequest(Exception):
    pass


def read_head(rfile):
    """Request line and headers (lower-cased names), or None at a clean EOF before a request."""
    line = rfile.readline(65537)
    while line in (b"\r\n", b"\n"):  # tolerate stray CRLF between requests (RFC 9112 2.2)
        line = rfile.readline(65537)
    if not line:
        return None
    parts = line.decode("latin-1").rstrip("\r\n").split(" ")
    if len(parts) != 3:
        raise BadRequest("bad request line")
    headers = {}
    while True:
        h = rfile.readline(65537)
        if not h:
            raise BadRequest("eof in headers")
        if h in (b"\r\n", b"\n"):
            break
        name, _, value = h.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return parts[0], parts[1], parts[2], headers


def read_body(rfile, headers):
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size_line = rfile.readline(65537)
            if not size_line:
                raise BadRequest("eof in chunked body")
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return
            left = size
            while left > 0:
                got = len(rfile.read(min(left, 1 << 16)))
                if got == 0:
                    raise BadRequest("eof in chunk")
                left -= got
            rfile.readline(65537)
    n = int(headers.get("content-length", "0") or "0")
    while n > 0:
        got = len(rfile.read(min(n, 1 << 16)))
        if got == 0:
            raise BadRequest("eof in body")
        n -= got


def respond(sock, status, body, close=False, extra=()):
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Status"
    head = ["HTTP/1.1 %d %s" % (status, reason), "content-length: %d" % len(body), "content-type: text/plain"]
    head += ["%s: %s" % kv for kv in extra]
    if close:
        head.append("connection: close")
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)


def rst(sock):
    """Closes with an RST. The serving thread may be blocked reading from this socket's file object,
    which keeps the descriptor open: SHUT_RD wakes it (it reads EOF and returns), and its final close
    is the one that sends the RST, because SO_LINGER 0 is set by then. No FIN is sent first."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RD)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class Backend:
    def __init__(self, name, port):
        self.name = name
        self.mode = "ok"
        self.health = 200
        self.flaky_left = 0
        self.requests = 0
        self.health_checks = 0
        self.connections = 0
        self.conns = set()
        self.listener = None
        self.port = port
        self.open_listener()

    # ---- listening socket ---------------------------------------------------------------------
    def open_listener(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(256)
        self.port = s.getsockname()[1]
        self.listener = s
        threading.Thread(target=self.accept_loop, args=(s,), daemon=True).start()

    def close_listener(self):
        s, self.listener = self.listener, None
        if s is not None:
            try:
                s.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
            except OSError:
                pass
            s.close()

    def accept_loop(self, s):
        while not STOP.is_set():
            try:
                conn, _ = s.accept()
            except OSError:
                return  # closed by close_listener
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with LOCK:
                self.connections += 1
                self.conns.add(conn)
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    # ---- modes ----------------------------------------------------------------------------------
    def set_mode(self, mode):
        """Applies a mode string; raises ValueError for an unknown one."""
        kind, _, arg = mode.partition(":")
        if kind == "health":
            self.health = int(arg)
            return
        if kind in ("status", "slow", "flaky"):
            int(arg)
        elif kind not in ("ok", "reset", "stall", "refuse") or arg:
            raise ValueError("unknown mode %r" % mode)
        with LOCK:
            self.mode = mode
            if kind == "flaky":
                self.flaky_left = int(arg)
            open_conns = list(self.conns) if kind == "refuse" else []
            self.conns.difference_update(open_conns)
        if kind == "refuse":
            self.close_listener()
            for c in open_conns:
                rst(c)
        elif self.listener is None:
            self.open_listener()

    def decide(self):
        """(kind, value) for the next non-health request, consuming a flaky failure if one is left."""
        with LOCK:
            self.requests += 1
            kind, _, arg = self.mode.partition(":")
            if kind == "flaky":
                if self.flaky_left > 0:
                    self.flaky_left -= 1
                    return "status", 503
                return "ok", None
            return kind, int(arg) if arg else None

    # ---- one connection ---------------------------------------------------------------------------
    def serve(self, conn):
        rfile = conn.makefile("rb", buffering=65536)
        try:
            while not STOP.is_set():
                head = read_head(rfile)
                if head is None:
                    return
                method, target, version, headers = head
                read_body(rfile, headers)
                close = headers.get("connection", "").lower() == "close" or version == "HTTP/1.0"
                path = target.split("?", 1)[0]
                if method == "GET" and path == "/healthz":
                    with LOCK:
                        self.health_checks += 1
                        status = self.health
                    respond(conn, status, b"health " + self.name.encode(), close)
                    if close:
                        return
                    continue
                kind, value = self.decide()
                ids = {headers.get("x-request-id"), headers.get("x-test-id")} - {None}
                with LOCK:
                    for rid in ids:
                        REQUESTS.setdefault(rid, []).append([self.name, headers.get("x-envoy-attempt-count")])
                extra = [("x-backend", self.name)]
                with LOCK:
                    killed = conn not in self.conns  # reset by `refuse` while this request was read
                if killed or kind == "refuse":
                    rst(conn)
                    return
                if kind == "ok":
                    respond(conn, 200, self.name.encode(), close, extra)
                elif kind == "status":
                    respond(conn, value, self.name.encode(), close, extra)
                elif kind == "slow":
                    time.sleep(value / 1000.0)
                    with LOCK:
                        killed = conn not in self.conns
                    if killed:
                        rst(conn)
                        return
                    respond(conn, 200, self.name.encode(), close, extra)
                elif kind == "reset":
                    rst(conn)
                    return
                elif kind == "stall":
                    self.hold(conn)
                    return
                if close:
                    return
        except (OSError, BadRequest, ValueError):
            return
        finally:
            with LOCK:
                self.conns.discard(conn)
            try:
                rfile.close()
                conn.close()
            except OSError:
                pass

    def hold(self, conn):
        """Never answers; returns when the peer closes (or resets) the connection."""
        conn.settimeout(0.5)
        while not STOP.is_set():
            try:
                if not conn.recv(65536):
                    return
            except socket.timeout:
                continue
            except OSError:
                return


BACKENDS = {}


def find_backend(q):
    if "port" in q:
        port = int(q["port"][0])
        for b in BACKENDS.values():
            if b.port == port:
                return b
        raise KeyError("no backend on port %d" % port)
    return BACKENDS[q["name"][0]]


def control(conn):
    rfile = conn.makefile("rb")
    try:
        head = read_head(rfile)
        if head is None:
            return
        method, target, _, headers = head
        read_body(rfile, headers)
        url = urlparse(target)
        q = parse_qs(url.query)
        status, body = 200, b"ok"
        try:
            if method == "POST" and url.path == "/mode":
                find_backend(q).set_mode(q["mode"][0])
            elif method == "POST" and url.path == "/reset":
                with LOCK:
                    REQUESTS.clear()
                    for b in BACKENDS.values():
                        b.requests = b.health_checks = b.connections = 0
            elif method == "GET" and url.path == "/stats":
                with LOCK:
                    out = {
                        "backends": {
                            b.name: {
                                "port": b.port,
                                "mode": b.mode,
                                "health": b.health,
                                "requests": b.requests,
                                "health_checks": b.health_checks,
                                "connections": b.connections,
                            }
                            for b in BACKENDS.values()
                        },
                        "requests": REQUESTS,
                    }
                    body = json.dumps(out).encode()
            else:
                status, body = 404, b"unknown control request"
        except (KeyError, ValueError, OSError) as e:
            status, body = 400, str(e).encode()
        respond(conn, status, body, close=True)
    except (OSError, BadRequest, ValueError):
        pass
    finally:
        rfile.close()
        conn.close()


def main(argv):
    control_port = 0
    specs = []
    i = 0
    while i < len(argv):
        if argv[i] == "--control":
            control_port = int(argv[i + 1])
            i += 2
            continue
        name, _, port = argv[i].partition("=")
        specs.append((name, int(port or 0)))
        i += 1
    if not specs:
        print(__doc__, file=sys.stderr)
        return 2
    for name, port in specs:
        BACKENDS[name] = Backend(name, port)
    ctl = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ctl.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ctl.bind(("127.0.0.1", control_port))
    ctl.listen(64)
    ready = {"control": ctl.getsockname()[1], "backends": {b.name: b.port for b in BACKENDS.values()}}
    print("READY " + json.dumps(ready), flush=True)
    try:
        while True:
            conn, _ = ctl.accept()
            threading.Thread(target=control, args=(conn,), daemon=True).start()
    except KeyboardInterrupt:
        return 0
    finally:
        STOP.set()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
