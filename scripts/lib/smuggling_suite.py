#!/usr/bin/env python3
"""Request smuggling and malformed HTTP/1.1, differential against Envoy 1.40: raw requests (CL.TE, TE.CL, duplicate
and odd Content-Length and Transfer-Encoding, obs-fold, bare LF, chunk-size overflow, control characters, a space
before the colon, absolute-form targets and a Host that disagrees, an over-long request line, odd CONNECT targets,
odd versions and request targets) sent on a new connection each to one proxy listener in front of a recording
backend.

Usage: python3 scripts/lib/smuggling_suite.py --proxy envoy|sidecar --bin PATH [NAME|PATTERN]... [--list] [-v]
(normally through scripts/e2e-smuggling).

The backend: a raw TCP server in this process that frames requests by Content-Length or chunked encoding, as a
correct origin does, records each (request line, Host, body) and answers each `200 req N`. The proxy: one Envoy v3
bootstrap, the same file for Envoy and the sidecar: one listener, an http_connection_manager (stat_prefix smug),
every path to the STATIC cluster backend, the router.

Each scenario sends its bytes, reads for IO_WAIT s, and holds the proxy to what Envoy 1.40 did with the same bytes
(ENVOY, recorded with this suite's --envoy run): the status line(s), the request lines the backend saw, and for an
error answer, that the connection ends (closed, or announced with `connection: close`: Envoy closes a second
later). Required of both proxies whatever else: the backend never sees more requests than the client sent. Where
the sidecar refuses what Envoy accepts or normalises (it is stricter: NIO's llhttp parser), the case is listed in
STRICTER with the reason, and the sidecar is held to that instead; nothing else may differ.

The path_* scenarios send one GET each to listeners with the connection manager's path options (normalize_path,
merge_slashes, both, and path_with_escaped_slashes_action REJECT_REQUEST, UNESCAPE_AND_REDIRECT with normalize_path,
UNESCAPE_AND_FORWARD) and hold the answer, the request line the backend got and any Location to Envoy's
(PATH_ENVOY).

Output: one line per scenario (`PASS name: what was seen` or `FAIL name: reason`), then
`smuggling: N passed, N failed, 0 skipped`; exit status 1 if any failed. Only 127.0.0.1 is used; the proxy is
stopped by PID and the backend closed, pass or fail.
"""

import os
import socket
import sys
import time

from suite_common import Fail, ScenarioContext, Suite, TcpServer, check, free_ports, main as run_suite, sockaddr

# The codec's own refusals: the connection cannot be trusted past them and ends (a route's 404 keeps it).
CODEC_ERRORS = ("400", "426", "431", "501")
IO_WAIT = 0.6  # seconds to read what the proxy answers
SCENARIO_LIMIT = 20

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"

CASES = {
 "cl_te": b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
 "te_cl": b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\nGPOST /b HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 15\r\n\r\nx=1\r\n0\r\n\r\n",
 "dup_cl_same": b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
 "dup_cl_diff": b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
 "cl_list": b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello",
 "te_obsfold": b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
 "te_space_colon": b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
 "te_tab": b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\tchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
 "te_xchunked": b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
 "te_chunked_gzip": b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
 "te_identity": b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\nContent-Length: 5\r\n\r\nhello",
 "te_upper": b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: CHUNKED\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
 "te_double": b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
 "te_gzip_chunked": b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
 "te_chunked_twice_listed": b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
 "te_xchunked_get": b"GET /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n",
 "bare_lf": b"GET /a HTTP/1.1\nHost: a\n\n",
 "bare_lf_header": b"GET /a HTTP/1.1\r\nHost: a\nX-A: b\r\n\r\n",
 "chunk_overflow": b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff1\r\nhello\r\n0\r\n\r\n",
 "chunk_ext": b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\n\r\n",
 "chunk_bad_crlf": b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
 "nul_header": b"GET /a HTTP/1.1\r\nHost: a\r\nX-A: a\x00b\r\n\r\n",
 "ctl_header": b"GET /a HTTP/1.1\r\nHost: a\r\nX-A: a\x01b\r\n\r\n",
 "del_header": b"GET /a HTTP/1.1\r\nHost: a\r\nX-A: a\x7fb\r\n\r\n",
 "space_before_colon": b"GET /a HTTP/1.1\r\nHost: a\r\nX-A : b\r\n\r\n",
 "bad_header_name": b"GET /a HTTP/1.1\r\nHost: a\r\nX(A): b\r\n\r\n",
 "absolute_uri": b"GET http://a/x?q=1 HTTP/1.1\r\nHost: a\r\n\r\n",
 "host_mismatch": b"GET http://b.example/x HTTP/1.1\r\nHost: a.example\r\n\r\n",
 "absolute_no_host": b"GET http://b.example/x HTTP/1.1\r\n\r\n",
 "long_request_line": b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\nHost: a\r\n\r\n",
 "long_header": b"GET /a HTTP/1.1\r\nHost: a\r\nX-Big: " + b"b" * 70000 + b"\r\n\r\n",
 "connect_path": b"CONNECT /x HTTP/1.1\r\nHost: a\r\n\r\n",
 "connect_noport": b"CONNECT a.example HTTP/1.1\r\nHost: a.example\r\n\r\n",
 "connect_ok": b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n",
 "http09": b"GET /a\r\n\r\n",
 "http2_version": b"GET /a HTTP/2.0\r\nHost: a\r\n\r\n",
 "http3_version": b"GET /a HTTP/3.0\r\nHost: a\r\n\r\n",
 "http12_version": b"GET /a HTTP/1.2\r\nHost: a\r\n\r\n",
 "http09_pipelined": b"GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b\r\n\r\n",
 "bad_version": b"GET /a HTTP/1.x\r\nHost: a\r\n\r\n",
 "no_host": b"GET /a HTTP/1.1\r\n\r\n",
 "two_hosts": b"GET /a HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
 "get_with_body_smuggle": b"GET /a HTTP/1.1\r\nHost: a\r\nContent-Length: 26\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n",
 "pipelined_two": b"GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n",
 "cl_negative": b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
 "cl_plus": b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello",
 "cl_huge": b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\nhello",
 "method_lower": b"get /a HTTP/1.1\r\nHost: a\r\n\r\n",
 "path_dotdot": b"GET /a/../b HTTP/1.1\r\nHost: a\r\n\r\n",
 "path_encoded_slash": b"GET /a%2Fb HTTP/1.1\r\nHost: a\r\n\r\n",
 "path_double_slash": b"GET //a//b HTTP/1.1\r\nHost: a\r\n\r\n",
 "path_no_slash": b"GET a HTTP/1.1\r\nHost: a\r\n\r\n",
 "asterisk_get": b"GET * HTTP/1.1\r\nHost: a\r\n\r\n",
 "options_asterisk": b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
 # max_headers_count's default, 100 header fields with Host: the 100th passes, the 101st is 431.
 "headers_100": b"GET /a HTTP/1.1\r\nHost: a\r\n" + b"".join(b"x-h%d: v\r\n" % i for i in range(99)) + b"\r\n",
 "headers_101": b"GET /a HTTP/1.1\r\nHost: a\r\n" + b"".join(b"x-h%d: v\r\n" % i for i in range(100)) + b"\r\n",
}

# What Envoy 1.40 did with each (this suite's --envoy run): the status lines it answered, and the request lines the
# backend got.
ENVOY = {
    "cl_te": (['400'], []),
    "te_cl": (['400'], []),
    "dup_cl_same": (['400'], []),
    "dup_cl_diff": (['400'], []),
    "cl_list": (['400'], []),
    "te_obsfold": (['200'], ['POST /a HTTP/1.1']),
    "te_space_colon": (['400'], []),
    "te_tab": (['200'], ['POST /a HTTP/1.1']),
    "te_xchunked": (['501'], []),
    "te_chunked_gzip": (['501'], []),
    "te_identity": (['400'], []),
    "te_upper": (['200'], ['POST /a HTTP/1.1']),
    "te_double": (['501'], []),
    "te_gzip_chunked": (['501'], []),
    "te_chunked_twice_listed": (['501'], []),
    "te_xchunked_get": (['501'], []),
    "bare_lf": (['200'], ['GET /a HTTP/1.1']),
    "bare_lf_header": (['200'], ['GET /a HTTP/1.1']),
    "chunk_overflow": (['400'], []),
    "chunk_ext": (['200'], ['POST /a HTTP/1.1']),
    "chunk_bad_crlf": (['400'], []),
    "nul_header": (['400'], []),
    "ctl_header": (['400'], []),
    "del_header": (['400'], []),
    "space_before_colon": (['400'], []),
    "bad_header_name": (['400'], []),
    "absolute_uri": (['200'], ['GET /x?q=1 HTTP/1.1']),
    "host_mismatch": (['200'], ['GET /x HTTP/1.1']),
    "absolute_no_host": (['200'], ['GET /x HTTP/1.1']),
    "long_request_line": (['431'], []),
    "long_header": (['431'], []),
    "connect_path": (['400'], []),
    "connect_noport": (['400'], []),
    "connect_ok": (['404'], []),
    "http09": (['426'], []),
    "http2_version": (['426'], []),
    "http3_version": (['426'], []),
    "http12_version": (['426'], []),
    "http09_pipelined": (['200'], ['GET /a HTTP/1.1']),
    "bad_version": (['400'], []),
    "no_host": (['400'], []),
    "two_hosts": (['200'], ['GET /a HTTP/1.1']),
    "get_with_body_smuggle": (['200'], ['GET /a HTTP/1.1']),
    "pipelined_two": (['200'], ['GET /a HTTP/1.1', 'GET /b HTTP/1.1']),
    "cl_negative": (['400'], []),
    "cl_plus": (['400'], []),
    "cl_huge": (['400'], []),
    "method_lower": (['400'], []),
    "path_dotdot": (['200'], ['GET /a/../b HTTP/1.1']),
    "path_encoded_slash": (['200'], ['GET /a%2Fb HTTP/1.1']),
    "path_double_slash": (['200'], ['GET //a//b HTTP/1.1']),
    "path_no_slash": (['400'], []),
    "asterisk_get": (['400'], []),
    "options_asterisk": (['404'], []),
    "headers_100": (['200'], ['GET /a HTTP/1.1']),
    "headers_101": (['431'], []),
}

# Path normalisation: listeners with the connection manager's path options, and requests to them.
PATH_LISTENERS = [
    ("norm", {"normalize_path": True}),
    ("merge", {"merge_slashes": True}),
    ("norm_merge", {"normalize_path": True, "merge_slashes": True}),
    ("reject", {"path_with_escaped_slashes_action": "REJECT_REQUEST"}),
    ("redirect", {"path_with_escaped_slashes_action": "UNESCAPE_AND_REDIRECT", "normalize_path": True}),
    ("forward", {"path_with_escaped_slashes_action": "UNESCAPE_AND_FORWARD"}),
]
PATH_CASES = {
    "path_norm_dots": ("norm", "/a/./b/../c"),
    "path_norm_above_root": ("norm", "/../../a"),
    "path_norm_trailing_dot": ("norm", "/a/b/."),
    "path_norm_trailing_dotdot": ("norm", "/a/b/.."),
    "path_norm_encoded_dots": ("norm", "/a/%2e%2E/b"),
    "path_norm_unreserved": ("norm", "/%41%7e%5f%2d"),
    "path_norm_reserved_kept": ("norm", "/a%2fb%3a%20c"),
    "path_norm_backslash": ("norm", "/a\\b"),
    "path_norm_query_untouched": ("norm", "/a/../b?x=/../%41"),
    "path_norm_double_slash": ("norm", "//a//b/"),
    "path_merge_slashes": ("merge", "//a///b//?x=//"),
    "path_merge_keeps_dots": ("merge", "/a/../b"),
    "path_norm_merge": ("norm_merge", "//a/./b//../c"),
    "path_reject_escaped_slash": ("reject", "/a%2Fb"),
    "path_reject_escaped_backslash": ("reject", "/a%5cb"),
    "path_reject_plain": ("reject", "/a/b"),
    "path_reject_query_slash": ("reject", "/a?x=%2F"),
    "path_redirect": ("redirect", "/a%2Fb/../c?x=%2F"),
    "path_redirect_plain": ("redirect", "/a/./b"),
    "path_forward": ("forward", "/a%2fb%5Cc"),
}
# What Envoy 1.40 did with each: (status lines, the backend's request lines, Location).
PATH_ENVOY = {
    "path_norm_dots": (['200'], ['GET /a/c HTTP/1.1'], None),
    "path_norm_above_root": (['200'], ['GET /a HTTP/1.1'], None),
    "path_norm_trailing_dot": (['200'], ['GET /a/b/ HTTP/1.1'], None),
    "path_norm_trailing_dotdot": (['200'], ['GET /a/ HTTP/1.1'], None),
    "path_norm_encoded_dots": (['200'], ['GET /b HTTP/1.1'], None),
    "path_norm_unreserved": (['200'], ['GET /A~_- HTTP/1.1'], None),
    "path_norm_reserved_kept": (['200'], ['GET /a%2fb%3a%20c HTTP/1.1'], None),
    "path_norm_backslash": (['200'], ['GET /a/b HTTP/1.1'], None),
    "path_norm_query_untouched": (['200'], ['GET /b?x=/../%41 HTTP/1.1'], None),
    "path_norm_double_slash": (['200'], ['GET //a//b/ HTTP/1.1'], None),
    "path_merge_slashes": (['200'], ['GET /a/b/?x=// HTTP/1.1'], None),
    "path_merge_keeps_dots": (['200'], ['GET /a/../b HTTP/1.1'], None),
    "path_norm_merge": (['200'], ['GET /a/b/c HTTP/1.1'], None),
    "path_reject_escaped_slash": (['400'], [], None),
    "path_reject_escaped_backslash": (['400'], [], None),
    "path_reject_plain": (['200'], ['GET /a/b HTTP/1.1'], None),
    "path_reject_query_slash": (['200'], ['GET /a?x=%2F HTTP/1.1'], None),
    "path_redirect": (['307'], [], '/a/c?x=%2F'),
    "path_redirect_plain": (['200'], ['GET /a/b HTTP/1.1'], None),
    "path_forward": (['200'], ['GET /a/b\\c HTTP/1.1'], None),
}

# The Host the backend got where the target was absolute-form: the target's authority, whatever Host said (Envoy).
HOSTS = {"absolute_uri": "a", "host_mismatch": "b.example", "absolute_no_host": "b.example"}

# Where the sidecar answers differently, on purpose: it refuses (400) what Envoy 1.40 normalises. Each is a choice
# RFC 9112 leaves to the server, and each is a parse error in NIO's llhttp, which has no switch for it.
# (status lines, backend request lines, why)
STRICTER = {
    "te_obsfold": (["400"], [], "obs-fold is refused (RFC 9112 5.2 lets a server reject it with 400 or unfold it; "
                   "Envoy unfolds and forwards chunked)"),
    "bare_lf": (["400"], [], "bare LF line endings are refused (RFC 9112 2.2: a recipient MAY take a lone LF; Envoy "
                "does)"),
    "bare_lf_header": (["400"], [], "a bare LF inside the header block is refused (RFC 9112 2.2, as bare_lf)"),
    "two_hosts": (["400"], [], "two Host headers are refused (RFC 9112 3.2: a server MUST answer 400; Envoy joins "
                  "them into 'a,b')"),
}


class Backend(TcpServer):
    """Frames requests by Content-Length or chunked, records (request line, host, body) and answers `200 req N`."""

    def __init__(self):
        self.requests = []
        super().__init__("smuggling-backend")

    def serve(self, c):
        buf = b""
        c.settimeout(5)

        def more():
            d = c.recv(65536)
            if not d:
                raise EOFError
            return d

        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    buf += more()
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.split(b"\r\n")
                headers = {}
                for line in lines[1:]:
                    k, _, v = line.partition(b":")
                    headers.setdefault(k.strip().lower(), []).append(v.strip())
                body = b""
                if b"transfer-encoding" in headers:
                    while True:
                        while b"\r\n" not in buf:
                            buf += more()
                        size_line, buf = buf.split(b"\r\n", 1)
                        size = int(size_line.split(b";")[0], 16)
                        while len(buf) < size + 2:
                            buf += more()
                        body += buf[:size]
                        buf = buf[size + 2:]
                        if size == 0:
                            break
                elif b"content-length" in headers:
                    n = int(headers[b"content-length"][0])
                    while len(buf) < n:
                        buf += more()
                    body, buf = buf[:n], buf[n:]
                host = b",".join(headers.get(b"host", [])).decode(errors="replace")
                with self.lock:
                    self.requests.append((lines[0].decode(errors="replace"), host, body))
                    n = len(self.requests)
                msg = b"req %d" % n
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(msg), msg))
        except (OSError, ValueError, EOFError):
            pass
        finally:
            c.close()

    def since(self, mark):
        with self.lock:
            return self.requests[mark:]

    def mark(self):
        with self.lock:
            return len(self.requests)


def bootstrap(admin_port, port, backend_port, path_ports):
    def listener(name, listen_port, extra):
        hcm = {
            "@type": HCM,
            "stat_prefix": name,
            "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
                {"match": {"prefix": "/"}, "route": {"cluster": "backend"}}]}]},
            "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}],
        }
        hcm.update(extra)
        return {"name": name, "address": sockaddr(listen_port), "filter_chains": [{"filters": [
            {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}]}

    listeners = [listener("smug", port, {})]
    for name, extra in PATH_LISTENERS:
        listeners.append(listener(name, path_ports[name], extra))
    return {
        "admin": {"address": sockaddr(admin_port)},
        "static_resources": {
            "listeners": listeners,
            "clusters": [{"name": "backend", "type": "STATIC", "connect_timeout": "1s", "load_assignment": {
                "cluster_name": "backend",
                "endpoints": [{"lb_endpoints": [{"endpoint": {"address": sockaddr(backend_port)}}]}]}}],
        },
    }


class SmugglingSuite(Suite):
    """The backend and the one proxy, started at the first scenario and stopped after the last."""

    def __init__(self, proxy, binary, verbose):
        super().__init__(proxy, binary, verbose)
        self.shared = None
        self.backend = None
        self.proc = None
        self.broken = None

    def start(self):
        if self.broken:
            raise Fail(self.broken)
        if self.proc is not None:
            if not self.proc.alive():
                raise Fail("%s exited: %s" % (self.proxy, self.proc.stderr_tail(300)))
            return
        self.shared = ScenarioContext(self, "shared", self.tmp_prefix)
        self.backend = Backend()
        ports = free_ports(2 + len(PATH_LISTENERS))
        self.admin, self.port = ports[0], ports[1]
        self.path_ports = {name: p for (name, _), p in zip(PATH_LISTENERS, ports[2:])}
        try:
            self.proc, _ = self.shared.launch_proxy(
                bootstrap(self.admin, self.port, self.backend.port, self.path_ports), self.admin,
                [self.port] + list(self.path_ports.values()))
        except Fail as e:
            self.broken = "proxy setup: %s" % e
            raise Fail(self.broken)

    def close(self):
        problems = self.shared.close() if self.shared is not None else []
        if self.backend is not None:
            self.backend.close()
        if problems:
            print("smuggling: cleanup: %s" % "; ".join(problems), file=sys.stderr, flush=True)


def send(port, data):
    """Sends `data` on a new connection and reads for IO_WAIT s: (status codes, the connection ends, raw bytes)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=IO_WAIT)
    out = b""
    ended = False
    deadline = time.monotonic() + IO_WAIT
    try:
        s.sendall(data)
        while time.monotonic() < deadline:
            s.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                d = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                ended = True
                break
            if not d:
                ended = True
                break
            out += d
    finally:
        s.close()
    statuses = [line.split(b" ")[1].decode() for line in out.split(b"\r\n") if line.startswith(b"HTTP/1.")]
    announced = b"\r\nconnection: close\r\n" in out.lower()
    return statuses, ended or announced, out


def make_case(name, data):
    def run(t):
        suite = t.suite
        suite.start()
        mark = suite.backend.mark()
        statuses, closes, raw = send(suite.port, data)
        time.sleep(0.05)
        seen = suite.backend.since(mark)
        lines = [r[0] for r in seen]
        t.note("answered %s%s; the backend saw %s" % (statuses, ", connection ends" if closes else "",
                                                       [(r[0], r[1], r[2][:30]) for r in seen]))
        sent = max(data.count(b" HTTP/1.1\r\n"), 1)
        check(len(seen) <= sent, "the backend saw %d requests where the client sent %d: %s" % (len(seen), sent, lines))
        want_statuses, want_lines = ENVOY[name]
        why = ""
        if suite.proxy == "sidecar" and name in STRICTER:
            want_statuses, want_lines, why = STRICTER[name]
        check(statuses == want_statuses, "answered %s; %s %s" % (
            statuses, "expected (stricter than Envoy on purpose)" if why else "Envoy 1.40 answers", want_statuses))
        check(lines == want_lines, "the backend saw %s; %s %s" % (lines, "expected" if why else "with Envoy 1.40",
                                                                   want_lines))
        if name in HOSTS:
            hosts = [r[1] for r in seen]
            check(hosts == [HOSTS[name]], "the backend got Host %s; Envoy 1.40 sends %r" % (hosts, HOSTS[name]))
        if any(s in CODEC_ERRORS for s in statuses):
            check(closes, "the connection stays open after a %s" % statuses)
        return "%s, backend %s%s" % (statuses, lines, "; stricter than Envoy: " + why if why else "")

    run.__name__ = name
    return run


def make_path_case(name, listener, path):
    def run(t):
        suite = t.suite
        suite.start()
        mark = suite.backend.mark()
        data = ("GET %s HTTP/1.1\r\nHost: h\r\n\r\n" % path).encode()
        statuses, closes, raw = send(suite.path_ports[listener], data)
        time.sleep(0.05)
        lines = [r[0] for r in suite.backend.since(mark)]
        location = None
        for line in raw.split(b"\r\n"):
            if line.lower().startswith(b"location:"):
                location = line.split(b":", 1)[1].strip().decode(errors="replace")
        got = (statuses, lines, location)
        t.note("%s on %s: %s" % (path, listener, got))
        want = PATH_ENVOY[name]
        check(got == want, "%s on listener %s: answered %s, backend %s, location %s; Envoy 1.40: %s, %s, %s"
              % ((path, listener) + got + want))
        if statuses and statuses[0] == "400":
            check(closes, "the connection stays open after the 400")
        return "%s -> %s" % (path, lines[0] if lines else "%s %s" % (statuses, location or ""))

    run.__name__ = name
    return run


def main(argv=None):
    scenarios = [(name, make_case(name, data)) for name, data in CASES.items()]
    scenarios += [(name, make_path_case(name, listener, path)) for name, (listener, path) in PATH_CASES.items()]
    return run_suite("smuggling", __doc__, scenarios, "pf-smuggling", suite_class=SmugglingSuite,
                     scenario_limit=SCENARIO_LIMIT, argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
