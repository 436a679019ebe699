#!/usr/bin/env python3
"""Downstream limits under abuse, the same scenarios against Envoy 1.40 and the sidecar (issue 18, limits).

Usage: python3 scripts/lib/limits_suite.py --proxy envoy|sidecar --bin PATH [NAME|PATTERN]... [--list] [-v]
(normally through scripts/e2e-limits).

The proxy: one listener (stat_prefix limits, codec_type AUTO, request_headers_timeout 2s) whose every route is a
direct_response 200 `ok`, one worker, an admin on a free port.

Scenarios:
  slowloris   SLOWLORIS connections (default 5000, fewer only if this process may not open that many files, said on
              the PASS line), all established within 10 s, each send a request line and one header, then one more header byte every 0.5 s for
              6 s; meanwhile a well-behaved client opens a new connection every 100 ms and GETs /: every one of its
              requests must answer 200, the slowest within 1 s. Afterwards at least 95 % of the slow connections
              were answered 408 `request header timeout` or closed by the proxy (Envoy 1.40: 408 after 2 s), the
              proxy's downstream_rq_header_timeout counted them, and the proxy still answers.

Output: a PASS/FAIL line per scenario and `limits: N passed, N failed, 0 skipped`; exit 1 if any failed. Only
loopback is used; the proxy is stopped by PID and every socket closed, pass or fail.
"""

import errno
import os
import resource
import select
import socket
import sys
import threading
import time

from suite_common import (
    ScenarioContext,
    Suite,
    admin_stats,
    check,
    free_ports,
    http_call,
    main as run_suite,
    sockaddr,
)

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
SLOWLORIS = int(os.environ.get("SLOWLORIS_CONNECTIONS", "5000"))
TRICKLE_SECONDS = 6.0
HEADERS_TIMEOUT = 2  # seconds: the listener's request_headers_timeout


def bootstrap(admin, port):
    hcm = {"@type": HCM, "stat_prefix": "limits", "codec_type": "AUTO",
           "request_headers_timeout": "%ds" % HEADERS_TIMEOUT,
           "route_config": {"name": "r", "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
               {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "ok"}}}]}]},
           "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}]}
    return {"admin": {"address": sockaddr(admin)},
            "static_resources": {"listeners": [{"name": "limits", "address": sockaddr(port), "filter_chains": [
                {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}]}]}}


def raise_file_limit(wanted):
    """Raises this process's open-file limit (the proxy it starts inherits it); returns what it got."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(hard, max(soft, wanted))
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


def slowloris(t):
    limit = raise_file_limit(2 * SLOWLORIS + 500)
    n = min(SLOWLORIS, (limit - 500) // 2)
    check(n >= 1000, "this process may open only %d files: too few for a slowloris" % limit)
    admin, port = free_ports(2)
    proc, _ = t.launch_proxy(bootstrap(admin, port), admin, [port])

    socks = []
    t.on_close("slowloris sockets", lambda: [s.close() for s in socks])
    t0 = time.monotonic()
    for _ in range(n):
        s = socket.socket()
        s.setblocking(False)
        err = s.connect_ex(("127.0.0.1", port))
        check(err in (0, errno.EINPROGRESS), "connect: %s" % os.strerror(err))
        socks.append(s)
    # Every connection established (writable, no error) before it sends anything: a proxy that cannot take them
    # in fails here, not later on bytes sent into connections that were never accepted.
    poller = select.poll()
    pending = {s.fileno(): s for s in socks}
    for fd in pending:
        poller.register(fd, select.POLLOUT)
    deadline = time.monotonic() + 10
    while pending and time.monotonic() < deadline:
        for fd, _ in poller.poll(100):
            s = pending.pop(fd, None)
            if s is None:
                continue
            poller.unregister(fd)
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            check(err == 0, "a slow connection failed to connect: %s" % os.strerror(err))
    check(not pending, "%d of %d connections not established within 10 s" % (len(pending), n))
    opening = b"GET / HTTP/1.1\r\nHost: victim\r\nX-Slow: "
    for s in socks:
        sent = s.send(opening)
        check(sent == len(opening), "a slow connection took only %d bytes of its request line" % sent)
    opened = time.monotonic() - t0

    # The well-behaved client, alongside.
    good = {"ok": 0, "bad": [], "slowest": 0.0}
    stop = threading.Event()

    def client():
        while not stop.is_set():
            s0 = time.monotonic()
            try:
                status, body = http_call(port, "GET", "/", timeout=5)
            except OSError as e:
                status, body = None, str(e)
            took = time.monotonic() - s0
            good["slowest"] = max(good["slowest"], took)
            if status == 200 and body == "ok":
                good["ok"] += 1
            else:
                good["bad"].append((status, body[:80]))
            time.sleep(0.1)

    th = threading.Thread(target=client, daemon=True)
    th.start()
    end = time.monotonic() + TRICKLE_SECONDS
    while time.monotonic() < end:
        for s in socks:
            try:
                s.send(b"a")
            except OSError:
                pass
        time.sleep(0.5)
    stop.set()
    th.join(10)

    answered = closed = 0
    other = {}
    for s in socks:
        try:
            data = s.recv(4096)
        except BlockingIOError:
            continue
        except OSError:
            closed += 1
            continue
        if data.startswith(b"HTTP/1.1 408") and data.endswith(b"request header timeout"):
            answered += 1
        elif not data:
            closed += 1
        else:
            key = data.split(b"\r\n", 1)[0].decode(errors="replace")
            other[key] = other.get(key, 0) + 1
    stats = admin_stats(admin)
    timeouts = stats.get("http.limits.downstream_rq_header_timeout", 0)
    t.note("opened %d connections in %.1f s; good client %d ok, slowest %.2f s; slow ones: %d answered 408, "
           "%d closed, other answers %s; downstream_rq_header_timeout %d" % (n, opened, good["ok"], good["slowest"],
                                                                              answered, closed, other, timeouts))
    check(proc.alive(), "the proxy died: %s" % proc.stderr_tail())
    check(good["ok"] >= 20 and not good["bad"], "the well-behaved client: %d ok, failures %s"
          % (good["ok"], good["bad"][:5]))
    check(good["slowest"] <= 1.0, "the well-behaved client's slowest request took %.2f s" % good["slowest"])
    check(answered + closed >= 0.95 * n, "only %d of %d slow connections were cut off (%d answered 408, %d closed)"
          % (answered + closed, n, answered, closed))
    check(timeouts >= 0.95 * n, "downstream_rq_header_timeout %d for %d slow connections" % (timeouts, n))
    status, _ = http_call(port, "GET", "/", timeout=5)
    check(status == 200, "after the slowloris: %s" % status)
    return "%d slow connections (%d answered 408, %d closed); the other client got %d × 200, slowest %.2f s" % (
        n, answered, closed, good["ok"], good["slowest"])


if __name__ == "__main__":
    raise SystemExit(run_suite("limits", __doc__, [("slowloris", slowloris)], "pf-limits", scenario_limit=120))
