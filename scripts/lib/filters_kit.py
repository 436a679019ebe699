"""What the HTTP-filter suite (filters_suite.py) needs besides suite_common: an in-process echo backend, the
bootstrap (one listener, one HTTP connection manager with the filters under test, cluster `svc`), the proxy
wrapper, a client that keeps response headers in order and times each request, bounded parallel load, stat
deltas and the typed configs of the four filters (fault, local_ratelimit, cors, csrf). Stdlib only; loopback only.
"""

import http.client
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from suite_common import Fail, admin_get, admin_stats, check, free_ports, short, sockaddr

REQUEST_TIMEOUT = 8  # seconds any single client request may take

HCM_TYPE = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = {
    "name": "envoy.filters.http.router",
    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
}
FAULT_TYPE = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"
LRL_TYPE = "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
CORS_TYPE = "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"
CORS_POLICY_TYPE = "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy"
CSRF_TYPE = "type.googleapis.com/envoy.extensions.filters.http.csrf.v3.CsrfPolicy"
FILTER_CONFIG_TYPE = "type.googleapis.com/envoy.config.route.v3.FilterConfig"

FAULT = "envoy.filters.http.fault"
LRL = "envoy.filters.http.local_ratelimit"
CORS = "envoy.filters.http.cors"
CSRF = "envoy.filters.http.csrf"

STAT_PREFIX = "ingress"  # the HTTP connection manager's: its stats are http.ingress.*


# ---- backend ---------------------------------------------------------------------------------------------------
class EchoHandler(BaseHTTPRequestHandler):
    """Answers every request 200 with a JSON account of what arrived: method, path, headers (in order, names
    lower-cased) and body; response header x-backend: echo."""

    protocol_version = "HTTP/1.1"
    timeout = 10
    disable_nagle_algorithm = True

    def _answer(self):
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        seen = {
            "method": self.command,
            "path": self.path,
            "headers": [[k.lower(), v] for k, v in self.headers.items()],
            "body": body.decode(errors="replace"),
        }
        with self.server.lock:
            self.server.requests.append(seen)
        out = json.dumps(seen).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(out)))
        self.send_header("x-backend", "echo")
        self.end_headers()
        if self.command != "HEAD":
            # A HEAD response has no body: bytes after it would be taken as the start of the next response on
            # the proxy's pooled connection (and break the request that reuses it).
            self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _answer

    def setup(self):
        with self.server.lock:
            self.server.conns.add(self.request)
        super().setup()

    def finish(self):
        try:
            super().finish()
        finally:
            with self.server.lock:
                self.server.conns.discard(self.request)

    def log_message(self, *args):
        pass


class EchoServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self):
        self.lock = threading.Lock()
        self.conns = set()
        self.requests = []
        super().__init__(("127.0.0.1", 0), EchoHandler)
        self.port = self.server_address[1]
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def hits(self):
        with self.lock:
            return len(self.requests)

    def handle_error(self, request, client_address):
        pass

    def close(self):
        self.shutdown()
        self.server_close()
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.thread.join(5)
        check(not self.thread.is_alive(), "backend on %d did not stop" % self.port)


# ---- config ----------------------------------------------------------------------------------------------------
def http_filter(name, typed_config, **extra):
    f = {"name": name, "typed_config": typed_config}
    f.update(extra)
    return f


def route(prefix="/", cluster="svc", per_filter=None, action=None, **extra):
    """A route matching `prefix` to `cluster`; `per_filter` is its typed_per_filter_config."""
    act = {"cluster": cluster}
    act.update(action or {})
    r = {"match": {"prefix": prefix}, "route": act}
    if per_filter:
        r["typed_per_filter_config"] = per_filter
    r.update(extra)
    return r


def bootstrap(listener_port, admin_port, backend_port, filters, routes=None, vhost=None, hcm=None, clusters=None):
    """One listener with one HTTP connection manager (stat_prefix ingress): `filters` then the router; one
    virtual host (domains *) with `routes` (default: prefix / to svc); cluster svc is the echo backend."""
    vh = {"name": "all", "domains": ["*"], "routes": routes or [route()]}
    vh.update(vhost or {})
    manager = {
        "@type": HCM_TYPE,
        "stat_prefix": STAT_PREFIX,
        "route_config": {"name": "local", "virtual_hosts": [vh]},
        "http_filters": list(filters) + [ROUTER],
    }
    manager.update(hcm or {})
    extra_clusters = [
        {
            "name": name,
            "connect_timeout": "1s",
            "type": "STATIC",
            "load_assignment": {
                "cluster_name": name,
                "endpoints": [{"lb_endpoints": [{"endpoint": {"address": sockaddr(port)}}]}],
            },
        }
        for name, port in (clusters or {}).items()
    ]
    return {
        "admin": {"address": sockaddr(admin_port)},
        "static_resources": {
            "listeners": [
                {
                    "name": "ingress",
                    "address": sockaddr(listener_port),
                    "filter_chains": [
                        {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": manager}]}
                    ],
                }
            ],
            "clusters": [
                {
                    "name": "svc",
                    "connect_timeout": "1s",
                    "type": "STATIC",
                    "load_assignment": {
                        "cluster_name": "svc",
                        "endpoints": [{"lb_endpoints": [{"endpoint": {"address": sockaddr(backend_port)}}]}],
                    },
                }
            ]
            + extra_clusters,
        },
    }


def percent(numerator, denominator="HUNDRED"):
    return {"numerator": numerator, "denominator": denominator}


def runtime_percent(numerator, key, denominator="HUNDRED"):
    return {"default_value": percent(numerator, denominator), "runtime_key": key}


def fault(abort=None, delay=None, **extra):
    c = {"@type": FAULT_TYPE}
    if abort is not None:
        c["abort"] = abort
    if delay is not None:
        c["delay"] = delay
    c.update(extra)
    return c


def local_rl(max_tokens, tokens_per_fill, fill_interval, enabled=100, enforced=100, stat_prefix="lrl", **extra):
    """A LocalRateLimit with its token bucket; filter_enabled/filter_enforced as runtime percentages (None:
    the field is left out)."""
    c = {
        "@type": LRL_TYPE,
        "stat_prefix": stat_prefix,
        "token_bucket": {"max_tokens": max_tokens, "tokens_per_fill": tokens_per_fill, "fill_interval": fill_interval},
    }
    if enabled is not None:
        c["filter_enabled"] = runtime_percent(enabled, "lrl_enabled")
    if enforced is not None:
        c["filter_enforced"] = runtime_percent(enforced, "lrl_enforced")
    c.update(extra)
    return c


def cors_policy(origins=None, **fields):
    """A CorsPolicy for typed_per_filter_config; `origins` is a list of StringMatchers (or exact strings)."""
    c = {"@type": CORS_POLICY_TYPE}
    if origins is not None:
        c["allow_origin_string_match"] = [o if isinstance(o, dict) else {"exact": o} for o in origins]
    c.update(fields)
    return c


def csrf(enabled=100, shadow=None, additional_origins=None):
    c = {"@type": CSRF_TYPE, "filter_enabled": runtime_percent(enabled, "csrf_enabled")}
    if shadow is not None:
        c["shadow_enabled"] = runtime_percent(shadow, "csrf_shadow")
    if additional_origins is not None:
        c["additional_origins"] = [o if isinstance(o, dict) else {"exact": o} for o in additional_origins]
    return c


# ---- proxy -----------------------------------------------------------------------------------------------------
class Proxy:
    """The proxy under test on one bootstrap in front of the scenario's echo backend."""

    def __init__(self, t, backend, filters, **config):
        self.t = t
        self.backend = backend
        self.port, self.admin = free_ports(2)
        doc = bootstrap(self.port, self.admin, backend.port, filters, **config)
        self.proc, self.config_path = t.launch_proxy(doc, self.admin, [self.port])

    def stats(self):
        return admin_stats(self.admin)

    def admin_get(self, path):
        return admin_get(self.admin, path)

    def request(self, method="GET", path="/", headers=None, body=None, timeout=REQUEST_TIMEOUT):
        return request(self.port, method, path, headers, body, timeout)


def delta(before, after, prefix=""):
    """Stats (counters and gauges) that changed between two /stats snapshots."""
    out = {}
    for name, value in after.items():
        if name.startswith(prefix):
            d = value - before.get(name, 0)
            if d:
                out[name] = d
    return out


def show(d, strip=""):
    return ", ".join("%s %+d" % (k[len(strip) :] if k.startswith(strip) else k, v) for k, v in sorted(d.items()))


def expect_stats(d, expected, what):
    """Every full stat name in `expected` changed by exactly that amount in delta `d`."""
    groups = {name.rsplit(".", 1)[0] + "." for name in expected}
    related = {k: v for k, v in d.items() if any(k.startswith(g) for g in groups)}
    for name, want in expected.items():
        got = d.get(name, 0)
        check(got == want, "%s: %s changed by %d, expected %d (changed: %s)" % (what, name, got, want, show(related)))


# ---- client ----------------------------------------------------------------------------------------------------
class Resp:
    __slots__ = ("status", "headers", "body", "elapsed", "error", "t0", "t1")

    def __init__(self):
        self.status = None
        self.headers = []  # [(lower-cased name, value)] in arrival order
        self.body = ""
        self.elapsed = None
        self.error = None
        self.t0 = self.t1 = None

    def header(self, name):
        """The value of a header that appears once; None when absent; a list when repeated."""
        values = [v for k, v in self.headers if k == name]
        return values[0] if len(values) == 1 else (values or None)

    def names(self):
        return [k for k, _ in self.headers]

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            raise Fail("not the echo backend's JSON: %s %s" % (self.status, short(self.body, 200)))

    def __repr__(self):
        if self.error:
            return "<error %s>" % self.error
        return "<%s %r %s>" % (self.status, short(self.body, 80), self.headers)


def exchange(conn, method, path, headers, body):
    r = Resp()
    r.t0 = time.monotonic()
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        r.body = resp.read().decode(errors="replace")
        r.status = resp.status
        r.headers = [(k.lower(), v) for k, v in resp.getheaders()]
        will_close = resp.will_close
    except (OSError, http.client.HTTPException) as e:
        r.error = "%s: %s" % (type(e).__name__, e)
        will_close = True
    r.t1 = time.monotonic()
    r.elapsed = r.t1 - r.t0
    return r, will_close


def request(port, method="GET", path="/", headers=None, body=None, timeout=REQUEST_TIMEOUT):
    """One request on a fresh connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        return exchange(conn, method, path, headers, body)[0]
    finally:
        conn.close()


class Client:
    """One keep-alive connection (reopened when the proxy closes it)."""

    def __init__(self, port, timeout=REQUEST_TIMEOUT):
        self.port = port
        self.timeout = timeout
        self.conn = None
        self.opened = 0

    def request(self, method="GET", path="/", headers=None, body=None):
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            self.opened += 1
        r, will_close = exchange(self.conn, method, path, headers, body)
        if will_close:
            self.close()
        return r

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def parallel(port, n, method="GET", path="/", headers=None, max_seconds=20, timeout=REQUEST_TIMEOUT):
    """`n` requests at once, each on its own connection from its own thread; the responses in order."""
    out = [None] * n
    barrier = threading.Barrier(n)

    def one(i):
        try:
            barrier.wait(timeout=10)
        except threading.BrokenBarrierError:
            pass
        out[i] = request(port, method, path, headers(i) if callable(headers) else headers, None, timeout)

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    for th in threads:
        th.start()
    deadline = time.monotonic() + max_seconds
    for th in threads:
        th.join(max(0.0, deadline - time.monotonic()))
    check(not any(th.is_alive() for th in threads), "parallel requests still running after %ds" % max_seconds)
    return out


def hammer(port, seconds, conns=4, path="/", headers=None, max_requests=20000):
    """Requests as fast as the proxy answers from `conns` keep-alive connections for `seconds` (and at most
    `max_requests`); the responses in completion order."""
    out = []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def run():
        c = Client(port)
        try:
            while time.monotonic() < stop_at:
                with lock:
                    if len(out) >= max_requests:
                        return
                r = c.request("GET", path, headers)
                with lock:
                    out.append(r)
        finally:
            c.close()

    threads = [threading.Thread(target=run, daemon=True) for _ in range(conns)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(seconds + REQUEST_TIMEOUT + 5)
    check(not any(th.is_alive() for th in threads), "load threads still running")
    return out


def paced(port, rate, seconds, path="/", headers=None):
    """One keep-alive connection sending at `rate` requests per second for `seconds`; the responses."""
    out = []
    c = Client(port)
    start = time.monotonic()
    try:
        i = 0
        while True:
            due = start + i / float(rate)
            if due - start >= seconds:
                break
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            out.append(c.request("GET", path, headers))
            i += 1
    finally:
        c.close()
    return out


def statuses(responses):
    counts = {}
    for r in responses:
        k = r.status if r.error is None else "error"
        counts[k] = counts.get(k, 0) + 1
    return counts
