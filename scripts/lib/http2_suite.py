#!/usr/bin/env python3
"""HTTP/2 downstream end-to-end tests: standard HTTP/2 clients (curl, nghttp, h2load) and raw-frame abuse (the
PyPI `h2` package: h2.connection, h2.config, hyperframe) against the proxy's HTTP/2 listeners, and the proxy's
HTTP/2 counters afterwards; and HTTP/1.1 WebSocket upgrades (the PyPI `websockets` package, client and backend)
through listeners with and without upgrade_configs.

Usage: python3 scripts/lib/http2_suite.py --proxy envoy|sidecar --bin PATH [NAME|PATTERN]... [--only NAME]...
           [--list] [-v]
(normally through scripts/e2e-http2, which installs h2, cryptography and websockets from PyPI and nghttp2-client
with apt).

The backend: an HTTP/1.1 server (threaded, keep-alive) in this process on a free 127.0.0.1 port. GET /echo
answers the request headers it got as JSON ({"method", "path", "headers": [[name, value], ...]}); GET
/big?bytes=N answers N bytes; POST or PUT to any path answers the request body back; anything else answers 200
`ok`. It records every request (method, path, headers).

The WebSocket backend: a `websockets` sync server in this process on another free port (permessage-deflate
offered, no keepalive pings, no message size limit). /first sends a message right after its 101, before reading;
/bye reads one message and closes with 4001 "bye"; /sink reads slowly (0.3 s before the first message, 10 ms
after each) and answers a text `done` with the bytes, messages and sha256 of the binary messages it read; any
other path echoes every message. A plain (not upgrade) GET to a path ending in /slow is answered 200 after 2.5 s;
other plain requests get the library's 426. It records each handshake's path and the close frame each
connection received.

The proxy: one Envoy v3 bootstrap, the same file for Envoy and the sidecar: listener h2_plain (plaintext) and
listener h2_tls (a DownstreamTlsContext with a tls_kit Pki server certificate, alpn_protocols [h2, http/1.1]),
each an http_connection_manager with codec_type AUTO (stat_prefix h2_plain / h2_tls), one virtual host `*`, prefix
`/` to the STATIC HTTP/1.1 cluster backend, the router filter; listener ws (stat_prefix ws, codec_type AUTO,
upgrade_configs [{upgrade_type: websocket}]) with routes /refused (route upgrade_configs [{upgrade_type:
websocket, enabled: false}]), /timeout (timeout: 1s) and / to the STATIC cluster ws_backend; listener ws_off
(stat_prefix ws_off, no upgrade_configs, / to ws_backend); listener ws also has upgrade_configs CONNECT,
http2_protocol_options {allow_connect: true} and a first route connect_matcher to the STATIC cluster tcp_echo with
connect_config {} (a TCP echo server in this process: `bye` is answered `closing` and the connection closed,
`flood N` answered with N bytes); listener upstream (stat_prefix upstream, codec_type AUTO, websocket upgrades on):
/auto-h1/ to cluster auto_h1, /switch/ to cluster auto_switch, /down/ to cluster down_tls, the rest to cluster
auto_h2, four TLS clusters
(UpstreamTlsContext checking the tls_kit CA, SNI server.example.test, no alpn_protocols) to the ALPN backends of
scripts/lib/alpn_backend.py: auto_h2 (`auto_config`) to one offering h2 and http/1.1, auto_h1 (`auto_config`) to one
offering http/1.1 alone, down_tls (`use_downstream_protocol_config`) to the first, auto_switch (`auto_config`) to
a third whose offer a scenario changes; an admin on a free port. The
proxy is started at the
first scenario and kept for the others (a scenario after a crash fails with the proxy's exit status and log).

Scenarios:
  h2c_get             curl --http2-prior-knowledge: GET / (HTTP/2, 200) and GET /big?bytes=1048576 (all bytes)
  h2c_post            curl --http2-prior-knowledge POST of a 100 KiB random body: 200 and the body echoed intact
  tls_alpn            curl --http2 over TLS: ALPN h2, HTTP/2 200; curl --http1.1 over TLS: ALPN http/1.1, 200
  http1_on_auto       plain HTTP/1.1 curl on the AUTO listener: HTTP/1.1 200
  h2c_upgrade_ignored curl --http2 on http:// (Upgrade: h2c, HTTP2-Settings): answered as HTTP/1.1 200, no 101,
                      and the backend sees neither Upgrade: h2c nor HTTP2-Settings (Envoy drops h2c upgrades)
  nghttp_concurrent   nghttp -m 8 with 4 URIs: 32 concurrent streams on one connection, all 200, body sizes right
  h2load              h2load -n 2000 -c 4 -m 8: 2000 succeeded, all 2xx
  split_preface       the client magic in two TCP segments (16 + 8 bytes, 200 ms apart), then SETTINGS and a GET:
                      HTTP/2 200 (Envoy decides on the first read holding `PRI * HTTP/2`)
  bad_preface         "PRI * HTTP/2.0\\r\\n\\r\\nXX\\r\\n\\r\\n" (a broken client magic): closed, no HTTP/1 answer;
                      a GOAWAY's error code must be Envoy's (Envoy sends none: it closes at once)
  preface_no_settings the right magic, then a PING instead of the client's SETTINGS (RFC 9113 3.4): GOAWAY
                      PROTOCOL_ERROR and close
  settings_flood      up to 200000 empty SETTINGS frames on a socket with a 4 KiB receive buffer that is not read
                      (the ACKs pile up in the proxy): the proxy must end the connection. Envoy closes it without a
                      GOAWAY (http2.outbound_control_flood); a GOAWAY ENHANCE_YOUR_CALM first is judged cosmetic, any
                      other GOAWAY code fails
  rst_flood           "rapid reset" (CVE-2023-44487): HEADERS then RST_STREAM(CANCEL) on new streams, up to 20000
                      times, reading what comes back: the proxy must end the connection. Envoy closes it without a
                      GOAWAY after 250 premature resets; a GOAWAY ENHANCE_YOUR_CALM is judged cosmetic
  rst_mixed           not a flood: 115 rounds of 5 GETs answered and 2 GETs reset (CANCEL) at once on one
                      connection (575 + 230 streams): Envoy keeps the connection (its premature-reset rule needs at
                      least half of 500+ streams reset before a response); required: the same, every GET answered,
                      downstream_rq_rx_reset +230 and downstream_cx_protocol_error +0 (Envoy's counts)
  oversized_headers   a GET with 70 KB of request headers (over max_request_headers_kb 60): Envoy 1.40 resets the
                      stream (RST_STREAM INTERNAL_ERROR) and the connection carries the next request; required: the
                      request does not reach the backend, the stream is reset or answered 431, and the connection
                      survives (a GET / on it answers 200)
  stats               http.h2_plain. and http.h2_tls.downstream_cx_http2_total > 0 and downstream_rq_http2_total > 0
  ws_echo             a WebSocket on listener ws: a text and a binary message, a 1 MiB binary message and 200 small
                      messages sent in a burst, all echoed intact and in order
  ws_server_first     5 connections to /first: the backend's message, sent before the client sent anything (maybe
                      in the same segment as the 101), arrives, then an echo
  ws_early_data       the client's first (masked) frame right behind its upgrade request, before the 101: 3 times
                      in the request's own write, twice in a second write at once; each echo must come back after
                      the 101 (RFC 6455 clients wait for the 101, but Envoy 1.40 forwards such bytes upstream)
  ws_close            the client closes with 4000 "client done": the backend receives it and the same code and
                      reason come back, and the connection ends within 2 s; then /bye: the backend's close 4001
                      "bye" reaches the client, the client's echo of it reaches the backend, the connection ends
  ws_refused          an upgrade on listener ws_off (no upgrade_configs) and on listener ws's route /refused
                      (websocket enabled: false): the websockets client gets InvalidStatus 403; a raw upgrade
                      request gets 403 with Envoy's empty body and the connection closed; the backend sees neither
  ws_route_timeout    route /timeout (timeout: 1s): a plain GET /timeout/slow gets 504 after about 1 s (the control);
                      a WebSocket on that route stays open 2.5 s and echoes at 0, 1.3 and 2.5 s (Envoy stops the
                      route timeout once the upstream answered 101)
  ws_backpressure     64 MiB in 256 KiB binary messages sent as fast as the proxy takes them to /sink (a slow
                      reader): every byte arrives (count and sha256 at the backend), the proxy's VmRSS (sampled
                      every 20 ms) grows by at most 64 MiB, and when the client's last write returns at most 48 MiB
                      are unread by the backend (Envoy 1.40: 12-19 MiB; without backpressure nearly all 64)
  ws_stats            two upgrades and one refused upgrade on listener ws: http.ws.downstream_rq_1xx +2 (the 101s);
                      Envoy's other upgrade counters (downstream_cx_upgrades_total +2, downstream_cx_upgrades_active
                      1 during one, downstream_rq_ws_on_non_ws_route +1, downstream_rq_4xx +1) are compared and any
                      difference named on the PASS line, not failed
  h2_ws_extended      WebSocket over HTTP/2 (RFC 8441) on listener ws (allow_connect: true): SETTINGS_ENABLE_CONNECT_
                      PROTOCOL=1; an extended CONNECT to /echo answered 200 with the backend's sec-websocket-accept;
                      a masked frame echoed; a GET on the same connection answered meanwhile; close 1000 both ways,
                      then the stream reset CONNECT_ERROR (Envoy's); an extended CONNECT to /refused: 403
  h2_ws_not_allowed   listener ws_off (no allow_connect): SETTINGS_ENABLE_CONNECT_PROTOCOL=0; a :protocol request is
                      refused (Envoy ends the connection; a stream reset PROTOCOL_ERROR is judged cosmetic), the
                      backend sees nothing, the proxy stays up
  h2_connect_tunnel   two CONNECT streams on one connection, terminated (connect_config) to the TCP echo backend:
                      bytes echoed on both; the backend closing one ends it with END_STREAM then RST_STREAM NO_ERROR
                      (Envoy's); the other still works; the client's END_STREAM half-closes the upstream (the
                      backend sees EOF) and the stream ends with END_STREAM
  h2_connect_backpressure
                      a CONNECT tunnel whose backend sends 128 MiB to a client that reads nothing for 1.5 s: a GET on
                      the same connection is answered meanwhile, every byte arrives intact, the proxy's VmRSS grows
                      at most 32 MiB
  upstream_auto_h2    auto_config to a backend that prefers h2: one GET alone, then h2load -n 200 -c 2 -m 8 (h2c):
                      all 201 reach the backend as HTTP/2 streams on one upstream connection (ALPN h2);
                      upstream_cx_http2_total >= 1, upstream_cx_http1_total 0
  upstream_auto_h1    auto_config to a backend offering http/1.1 alone: 5 HTTP/1.1 GETs and an h2c GET all reach it
                      as HTTP/1.1 (ALPN http/1.1); upstream_cx_http1_total >= 1, upstream_cx_http2_total 0
  upstream_auto_upgrade
                      a WebSocket upgrade to auto_h2 once its host is known for HTTP/2. Envoy 1.40 sends it as an
                      extended CONNECT on the HTTP/2 connection (checked: the backend gets CONNECT /ws over h2);
                      Pilotfish does not send extended CONNECT upstream, so it opens a connection offering ALPN
                      http/1.1 alone for the upgrade: required of the sidecar, the 101 and bytes echoed through the
                      tunnel, the backend seeing GET /ws over a new http/1.1 connection (a deliberate difference)
  upstream_auto_downgrade
                      cluster auto_switch (auto_config, /switch/): answered over h2 while its backend offers h2; then
                      the backend offers http/1.1 alone and drops its connections: the next 3 requests are answered
                      200 over HTTP/1.1 (none fails on the way)
  upstream_downstream_tls
                      use_downstream_protocol_config over TLS: an HTTP/1.1 GET reaches the backend over a connection
                      whose ALPN is http/1.1, an h2c GET over one whose ALPN is h2

The WebSocket scenarios hold the sidecar to what Envoy 1.40 does (ENVOY below); a difference fails the scenario
with both behaviours named, except those judged cosmetic, appended to the PASS line: the 101's header names in the
backend's case (Envoy lowercases them), a close carried at once (Envoy holds the client's connection for its 1 s
delayed_close_timeout), and ws_stats' counters other than downstream_rq_1xx.

After every abuse scenario the proxy must still be alive: its process runs, admin GET /ready answers 200 and an
h2c GET / on a new connection answers 200. Where the proxy's error code differs from Envoy 1.40's (recorded in
ENVOY below), the scenario fails with a message naming both; differences judged cosmetic (a GOAWAY's
last_stream_id or debug data, ENHANCE_YOUR_CALM before a flood close, the downstream_cx_protocol_error count) are
appended to the PASS line. With -v each scenario notes what was sent and seen (frames, codes) and the proxy's
http2/protocol/reset counters that moved.

Output: one line per scenario (`PASS name: what was seen` or `FAIL name: reason`), then
`http2: N passed, N failed, 0 skipped`; exit status 1 if any failed. Only loopback addresses are used; every
process is stopped by PID and the backend, sockets and temporary directories closed, pass or fail.
"""

import argparse
import errno
import hashlib
import inspect
import json
import logging
import os
import random
import re
import select
import socket
import struct
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import hpack
from h2.errors import ErrorCodes
from hyperframe.frame import PingFrame, SettingsFrame
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.sync.client import connect as ws_connect
from websockets.sync.server import serve as ws_serve

from suite_common import (
    Fail,
    ScenarioContext,
    Suite,
    TcpServer,
    admin_stats,
    check,
    free_ports,
    http_call,
    main as run_suite,
    short,
    sockaddr,
    wait_for,
)

TOOL_TIMEOUT = 20  # seconds for a curl, nghttp or h2load run
IO_TIMEOUT = 5  # seconds for a raw connection to answer or close
SCENARIO_LIMIT = 30
SERVER_NAME = "server.example.test"  # in tls_kit's server certificate
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
BAD_PREFACE = b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n"
MAX_HEADERS_KB = 60  # max_request_headers_kb's default (not set in the bootstrap)
SERVER_FIRST = "hello from the backend, before you said anything"
SLOW_REPLY = 2.5  # seconds the WebSocket backend takes to answer a plain GET .../slow
SINK_START = 0.3  # seconds /sink waits before reading its first message
SINK_PAUSE = 0.01  # seconds /sink sleeps after each message it reads
WS_ROUTE_TIMEOUT = 1  # seconds: the route timeout of the ws listener's /timeout route
WS_FLOOD = 64 << 20  # bytes the client sends to /sink in ws_backpressure
WS_FLOOD_MESSAGE = 256 << 10  # in binary messages of this size
EARLY_WAIT = 2  # seconds ws_early_data waits for each echo (Envoy's come within milliseconds)
WS_RSS_LIMIT = 64 << 20  # the most the proxy's VmRSS may grow during ws_backpressure
H2_FLOOD = 128 << 20  # bytes the backend sends into a CONNECT tunnel in h2_connect_backpressure
H2_STALL = 1.5  # seconds the client reads nothing there
H2_RSS_LIMIT = 32 << 20  # the most the proxy's VmRSS may grow meanwhile
WS_IN_FLIGHT_LIMIT = 48 << 20  # the most that may be written but unread when the client's writes finish there

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
DOWNSTREAM_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"

# What Envoy 1.40 does (observed with this suite's --envoy run): the reference the sidecar is held to.
# A GOAWAY error code of None means "closes the connection without a GOAWAY".
ENVOY = {
    # Closed at once: not a byte back (Envoy's codec takes `PRI * HTTP/2...` for HTTP/2 and nghttp2 rejects the magic).
    "bad_preface": {"goaway": None, "frames": False, "protocol_errors": 1},
    # SETTINGS, then GOAWAY PROTOCOL_ERROR last_stream_id=0 "SETTINGS expected", then close.
    "preface_no_settings": {"goaway": "PROTOCOL_ERROR", "last_stream_id": 0, "debug": b"SETTINGS expected",
                            "protocol_errors": 1},
    # http2.outbound_control_flood: the connection is closed without a GOAWAY (the client sees an RST, its unread
    # ACKs being dropped). A GOAWAY ENHANCE_YOUR_CALM before the close is judged cosmetic.
    "settings_flood": {"goaway": None, "cosmetic": ("ENHANCE_YOUR_CALM",), "protocol_errors": 0},
    # downstream_rq_too_many_premature_resets once 250 streams were reset before a response (of fewer than 500):
    # closed without a GOAWAY (an abort). A GOAWAY ENHANCE_YOUR_CALM before the close is judged cosmetic.
    "rst_flood": {"goaway": None, "cosmetic": ("ENHANCE_YOUR_CALM",), "protocol_errors": 1},
    # http2.header_list_size_too_large: RST_STREAM INTERNAL_ERROR on the stream; the connection goes on.
    "oversized_headers": {"outcome": "reset INTERNAL_ERROR"},
    # An upgrade no config enables (no upgrade_configs on the HCM, or the route's entry enabled: false): 403
    # (details upgrade_failed) and the connection closed.
    "ws_refused": {"status": 403, "body": b""},
    # The 101 and its headers: HTTP/1 header names lowercased (Envoy's codec), whatever case the backend used.
    "ws_echo": {"lowercase_headers": True},
    # After the backend's close frame and FIN, Envoy holds the client's connection for its delayed_close_timeout
    # (1 s by default, waiting for the client to close first) before closing it; the websockets client waits for
    # the server's side to close, so each close takes about 1 s.
    "ws_close": {"closed_after": 1.0},
    # Two upgrades and one refused: the HCM's upgrade counters (downstream_rq_1xx itself is required).
    "ws_stats": {"deltas": {"downstream_cx_upgrades_total": 2, "downstream_rq_ws_on_non_ws_route": 1,
                            "downstream_rq_4xx": 1},
                 "active_during": 1},
    # WebSocket over HTTP/2: an extended CONNECT on a route whose websocket upgrade is off is answered 403; the
    # backend's 101 goes down as 200; when the backend closes after its close frame, the stream is reset
    # CONNECT_ERROR behind the bytes.
    "h2_ws_extended": {"refused_status": 403, "reset": "CONNECT_ERROR"},
    # Without allow_connect the setting is sent as 0, and a request with :protocol ends the connection (a protocol
    # error in Envoy's codec). Resetting only the stream (PROTOCOL_ERROR) is judged cosmetic.
    "h2_ws_not_allowed": {"setting": 0, "outcome": "connection closed", "cosmetic": ("reset PROTOCOL_ERROR",)},
    # A terminated CONNECT whose upstream closes: END_STREAM behind its bytes, then RST_STREAM NO_ERROR (the client
    # had not ended its side).
    "h2_connect_tunnel": {"upstream_closed": "END_STREAM, RST_STREAM NO_ERROR"},
}

FRAME_NAMES = {0: "DATA", 1: "HEADERS", 2: "PRIORITY", 3: "RST_STREAM", 4: "SETTINGS", 5: "PUSH_PROMISE",
               6: "PING", 7: "GOAWAY", 8: "WINDOW_UPDATE", 9: "CONTINUATION"}


def code_name(code):
    try:
        return ErrorCodes(code).name
    except ValueError:
        return "0x%x" % code


# ---- the backend --------------------------------------------------------------------------------------------
class Backend:
    """The HTTP/1.1 backend on a free 127.0.0.1 port (threaded, keep-alive); records every request."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests = []  # (method, path, [(name, value)])
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 30  # an idle keep-alive connection is dropped after this

            def log_message(self, *args):
                pass

            def setup(self):
                super().setup()
                # The status line and headers go in one write, the body in another: without TCP_NODELAY the
                # body waits for the proxy's delayed ACK (40 ms a response).
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def record(self):
                with backend.lock:
                    backend.requests.append((self.command, self.path,
                                             [(k.lower(), v) for k, v in self.headers.items()]))

            def reply(self, body, ctype="text/plain", status=200):
                self.send_response(status)
                self.send_header("content-type", ctype)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def read_body(self):
                if self.headers.get("transfer-encoding", "").lower() == "chunked":
                    out = bytearray()
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return bytes(out)
                        out += self.rfile.read(size)
                        self.rfile.readline()
                n = int(self.headers.get("content-length", "0") or 0)
                return self.rfile.read(n) if n else b""

            def do_GET(self):
                self.record()
                url = urlparse(self.path)
                if url.path == "/echo":
                    doc = {"method": self.command, "path": self.path,
                           "headers": [[k.lower(), v] for k, v in self.headers.items()]}
                    self.reply(json.dumps(doc).encode(), "application/json")
                elif url.path == "/big":
                    n = int(parse_qs(url.query).get("bytes", ["0"])[0])
                    self.reply(big_body(n), "application/octet-stream")
                else:
                    self.reply(b"ok\n")

            def do_POST(self):
                body = self.read_body()
                self.record()
                self.reply(body, "application/octet-stream")

            do_PUT = do_POST

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 256  # the proxy may open many upstream connections at once

            def handle_error(self, request, client_address):
                # A proxy that resets a request (a client's RST_STREAM) closes its upstream connection: the
                # backend's write then fails. Counted, not printed.
                with backend.lock:
                    backend.errors += 1

        self.errors = 0
        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="backend", daemon=True)
        self.thread.start()

    def mark(self):
        with self.lock:
            return len(self.requests)

    def since(self, mark):
        with self.lock:
            return self.requests[mark:]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def big_body(n):
    return bytes(i % 251 for i in range(min(n, 251))) * (n // 251) + bytes(range(n % 251))


def quiet_logger(name):
    """A logger that drops everything: the websockets client and server log a peer's abrupt end as an error."""
    log = logging.getLogger(name)
    log.addHandler(logging.NullHandler())
    log.propagate = False
    log.setLevel(logging.CRITICAL + 1)
    return log


class WsBackend:
    """The WebSocket backend (the PyPI `websockets` package's threaded sync server, permessage-deflate offered)
    on a free 127.0.0.1 port. By path: /first sends SERVER_FIRST right after the handshake, before reading
    anything, then echoes; /bye reads one message, then closes with 4001 "bye"; /sink reads slowly (SINK_START s
    before the first message, SINK_PAUSE s after each), counts and hashes the bytes of binary messages and answers
    a text `done` with `<bytes> <messages> <sha256>` (`sink_read`: the bytes read so far); any other path echoes
    every message back. A request that is not an upgrade is answered 200 `slow` after SLOW_REPLY s when its path
    ends in /slow (the route timeout's control), else the library's 426. Records every handshake's path and the
    close code and reason each connection received."""

    def __init__(self):
        self.lock = threading.Lock()
        self.handshakes = []  # request paths of the accepted upgrades
        self.closes = []  # (path, close code received or None, reason)
        self.sink_read = 0  # bytes /sink has read so far on its current connection
        self.server = ws_serve(self.handle, "127.0.0.1", 0, process_request=self.plain_request,
                               ping_interval=None, max_size=None, close_timeout=IO_TIMEOUT,
                               logger=quiet_logger("http2-suite.ws-backend"))
        self.port = self.server.socket.getsockname()[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="ws-backend", daemon=True)
        self.thread.start()

    @staticmethod
    def plain_request(conn, request):
        if request.headers.get("upgrade", "").lower() == "websocket":
            return None
        if request.path.endswith("/slow"):
            time.sleep(SLOW_REPLY)
            return conn.respond(200, "slow\n")
        return None

    def handle(self, ws):
        path = ws.request.path
        with self.lock:
            self.handshakes.append(path)
        try:
            if path.startswith("/first"):
                ws.send(SERVER_FIRST)
            if path.startswith("/bye"):
                ws.recv()
                ws.close(4001, "bye")
            elif path.startswith("/sink"):
                self.sink(ws)
            else:
                for msg in ws:
                    ws.send(msg)
        except ConnectionClosed:
            pass
        finally:
            got = ws.protocol.close_rcvd
            with self.lock:
                self.closes.append((path, got.code if got else None, got.reason if got else None))

    def sink(self, ws):
        self.sink_read = 0
        time.sleep(SINK_START)
        total = count = 0
        digest = hashlib.sha256()
        for msg in ws:
            if isinstance(msg, str):
                if msg == "done":
                    ws.send("%d %d %s" % (total, count, digest.hexdigest()))
                continue
            total += len(msg)
            count += 1
            self.sink_read = total
            digest.update(msg)
            time.sleep(SINK_PAUSE)

    def mark(self):
        with self.lock:
            return len(self.handshakes), len(self.closes)

    def since(self, mark):
        with self.lock:
            return self.handshakes[mark[0]:], self.closes[mark[1]:]

    def close(self):
        self.server.shutdown()


class TcpEcho(TcpServer):
    """A TCP echo server on a free 127.0.0.1 port (the tcp_echo cluster, where CONNECT tunnels end): every read is
    written back; a read that is `bye` is answered `closing` and the connection closed. Records how each
    connection ended: 'client EOF' (the client shut its write side) or 'closed by us'."""

    def __init__(self):
        self.endings = []
        super().__init__("tcp-echo")

    def serve(self, conn):
        ending = "reset"
        try:
            conn.settimeout(SCENARIO_LIMIT)
            while True:
                data = conn.recv(1 << 16)
                if not data:
                    ending = "client EOF"
                    break
                if data == b"bye":
                    conn.sendall(b"closing")
                    ending = "closed by us"
                    break
                if data.startswith(b"flood "):
                    # `flood N`: N bytes of a repeating pattern as fast as the tunnel takes them (the connection
                    # stays open: a proxy may drop what it still holds when the upstream closes).
                    left = int(data[6:])
                    chunk = bytes(range(256)) * 256
                    while left > 0:
                        conn.sendall(chunk[:left])
                        left -= len(chunk)
                    continue
                conn.sendall(data)
        except OSError:
            pass
        finally:
            conn.close()
            with self.lock:
                self.endings.append(ending)

    def mark(self):
        with self.lock:
            return len(self.endings)

    def since(self, mark):
        with self.lock:
            return self.endings[mark:]


# ---- the bootstrap ------------------------------------------------------------------------------------------
def ws_chain(prefix, upgrades):
    """A plaintext HTTP connection manager for the WebSocket listeners, every route to the ws_backend cluster; with
    `upgrades` the HCM enables websocket upgrades, /refused turns them off on its route and /timeout has a route
    timeout of WS_ROUTE_TIMEOUT seconds."""
    routes = [{"match": {"prefix": "/"}, "route": {"cluster": "ws_backend"}}]
    if upgrades:
        routes = [
            {"match": {"prefix": "/refused"},
             "route": {"cluster": "ws_backend", "upgrade_configs": [{"upgrade_type": "websocket", "enabled": False}]}},
            {"match": {"prefix": "/timeout"}, "route": {"cluster": "ws_backend", "timeout": "%ds" % WS_ROUTE_TIMEOUT}},
        ] + routes
    hcm = {
        "@type": HCM,
        "stat_prefix": prefix,
        "codec_type": "AUTO",
        "route_config": {"name": prefix + "_route",
                         "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}]},
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}],
    }
    if upgrades:
        # HTTP/2 too: extended CONNECT (allow_connect) for WebSocket, and CONNECT terminated to the tcp_echo cluster.
        hcm["upgrade_configs"] = [{"upgrade_type": "websocket"}, {"upgrade_type": "CONNECT"}]
        hcm["http2_protocol_options"] = {"allow_connect": True}
        routes.insert(0, {"match": {"connect_matcher": {}},
                          "route": {"cluster": "tcp_echo",
                                    "upgrade_configs": [{"upgrade_type": "CONNECT", "connect_config": {}}]}})
    return {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}


def static_cluster(name, port):
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": sockaddr(port)}}]}],
        },
    }


UPSTREAM_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
HTTP_OPTIONS = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def alpn_cluster(name, port, ca, protocol):
    """A STATIC cluster to an AlpnBackend over TLS (the backend's certificate checked against `ca`, SNI
    SERVER_NAME) whose HttpProtocolOptions choose `protocol` (e.g. {"auto_config": {}}); no alpn_protocols, so the
    offer is the protocol's default."""
    c = static_cluster(name, port)
    c["transport_socket"] = {"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": UPSTREAM_TLS, "sni": SERVER_NAME,
        "common_tls_context": {"validation_context": {"trusted_ca": {"filename": ca.cert}}}}}
    c["typed_extension_protocol_options"] = {
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": dict({"@type": HTTP_OPTIONS}, **protocol)}
    return c


def upstream_chain():
    """Listener upstream: /auto-h1/ to auto_h1, /down/ to down_tls, anything else to auto_h2; websocket upgrades
    on."""
    routes = [{"match": {"prefix": "/auto-h1/"}, "route": {"cluster": "auto_h1"}},
              {"match": {"prefix": "/switch/"}, "route": {"cluster": "auto_switch"}},
              {"match": {"prefix": "/down/"}, "route": {"cluster": "down_tls"}},
              {"match": {"prefix": "/"}, "route": {"cluster": "auto_h2"}}]
    hcm = {"@type": HCM, "stat_prefix": "upstream", "codec_type": "AUTO",
           "upgrade_configs": [{"upgrade_type": "websocket"}],
           "route_config": {"name": "upstream_route",
                            "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}]},
           "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}]}
    return {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}


def bootstrap(admin_port, plain_port, tls_port, backend_port, cred, ws_port, ws_off_port, ws_backend_port,
              echo_port, upstream_port=None, ca=None, alpn_both=None, alpn_h1=None, alpn_switch=None):
    def chain(prefix, tls):
        hcm = {
            "@type": HCM,
            "stat_prefix": prefix,
            "codec_type": "AUTO",
            "route_config": {
                "name": "h2_route",
                "virtual_hosts": [{"name": "all", "domains": ["*"],
                                   "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "backend"}}]}],
            },
            "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}],
        }
        c = {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}
        if tls:
            c["transport_socket"] = {"name": "envoy.transport_sockets.tls", "typed_config": {
                "@type": DOWNSTREAM_TLS,
                "common_tls_context": {
                    "tls_certificates": [{"certificate_chain": {"filename": cred.cert},
                                          "private_key": {"filename": cred.key}}],
                    "alpn_protocols": ["h2", "http/1.1"],
                }}}
        return c

    doc = {
        "admin": {"address": sockaddr(admin_port)},
        "static_resources": {
            "listeners": [
                {"name": "h2_plain", "address": sockaddr(plain_port), "filter_chains": [chain("h2_plain", False)]},
                {"name": "h2_tls", "address": sockaddr(tls_port), "filter_chains": [chain("h2_tls", True)]},
                {"name": "ws", "address": sockaddr(ws_port), "filter_chains": [ws_chain("ws", True)]},
                {"name": "ws_off", "address": sockaddr(ws_off_port), "filter_chains": [ws_chain("ws_off", False)]},
            ],
            "clusters": [static_cluster("backend", backend_port), static_cluster("ws_backend", ws_backend_port),
                         static_cluster("tcp_echo", echo_port)],
        },
    }
    if upstream_port is not None:
        doc["static_resources"]["listeners"].append(
            {"name": "upstream", "address": sockaddr(upstream_port), "filter_chains": [upstream_chain()]})
        doc["static_resources"]["clusters"] += [
            alpn_cluster("auto_h2", alpn_both, ca, {"auto_config": {}}),
            alpn_cluster("auto_h1", alpn_h1, ca, {"auto_config": {}}),
            alpn_cluster("down_tls", alpn_both, ca, {"use_downstream_protocol_config": {}}),
            alpn_cluster("auto_switch", alpn_switch, ca, {"auto_config": {}}),
        ]
    return doc


# ---- suite ----------------------------------------------------------------------------------------------------
class Http2Suite(Suite):
    """Suite-wide: the backend, the PKI and the one proxy (started at the first scenario, stopped by PID when the
    run ends), and the reason the proxy did not start, if it did not."""

    def __init__(self, proxy, binary, verbose):
        super().__init__(proxy, binary, verbose)
        self.shared = None
        self.pki = None
        self.backend = None
        self.ws_backend = None
        self.echo = None
        self.proc = None
        self.broken = None
        self.used = set()  # listeners that carried an HTTP/2 request in this run

    def start(self):
        if self.broken:
            raise Fail(self.broken)
        if self.proc is not None:
            dead = self.proxy_state()
            check(not dead, dead)
            return
        from tls_kit import Pki

        self.shared = ScenarioContext(self, "shared", self.tmp_prefix)
        d = os.path.join(self.shared.dir, "pki")
        os.makedirs(d)
        self.pki = Pki(d)
        self.backend = Backend()
        self.ws_backend = WsBackend()
        self.echo = TcpEcho()
        from alpn_backend import AlpnBackend

        self.alpn_both = AlpnBackend(self.pki.server.cert, self.pki.server.key, ["h2", "http/1.1"])
        self.alpn_h1 = AlpnBackend(self.pki.server.cert, self.pki.server.key, ["http/1.1"])
        self.alpn_switch = AlpnBackend(self.pki.server.cert, self.pki.server.key, ["h2", "http/1.1"])
        self.admin, self.plain, self.tls, self.ws, self.ws_off, self.upstream = free_ports(6)
        try:
            doc = bootstrap(self.admin, self.plain, self.tls, self.backend.port, self.pki.server, self.ws,
                            self.ws_off, self.ws_backend.port, self.echo.port, self.upstream, self.pki.ca,
                            self.alpn_both.port, self.alpn_h1.port, self.alpn_switch.port)
            self.proc, self.config = self.shared.launch_proxy(
                doc, self.admin, [self.plain, self.tls, self.ws, self.ws_off, self.upstream])
        except Fail as e:
            self.broken = "proxy setup: %s" % e
            raise Fail(self.broken)

    def proxy_state(self):
        """Why the proxy is gone ('' while it runs)."""
        if self.proc is None or self.proc.alive():
            return ""
        return "%s exited with status %s: %s" % (self.proxy, self.proc.popen.returncode, self.proc.stderr_tail(300))

    def close(self):
        problems = []
        if self.shared is not None:
            problems += self.shared.close()
        if self.backend is not None:
            self.backend.close()
        if self.ws_backend is not None:
            self.ws_backend.close()
        if self.echo is not None:
            self.echo.close()
        for b in (getattr(self, "alpn_both", None), getattr(self, "alpn_h1", None), getattr(self, "alpn_switch", None)):
            if b is not None:
                b.close()
        if problems:
            print("http2: cleanup: %s" % "; ".join(problems), file=sys.stderr, flush=True)


# ---- clients ------------------------------------------------------------------------------------------------
def run_tool(argv, timeout=TOOL_TIMEOUT):
    try:
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise Fail("%s did not finish within %ds" % (argv[0], timeout))
    except FileNotFoundError:
        raise Fail("%s is not installed" % argv[0])
    return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")


class CurlResult:
    def __init__(self, rc, code, version, body, err):
        self.rc, self.code, self.version, self.body, self.err = rc, code, version, body, err

    def __repr__(self):
        return "curl exit %d, HTTP/%s %s%s" % (self.rc, self.version, self.code,
                                               (": " + short(self.err, 200)) if self.rc else "")


def curl(t, url, *opts, data=None, tls=False):
    """curl URL with `opts`; the body goes to a file; returns a CurlResult (code and HTTP version from -w)."""
    out = os.path.join(t.dir, "curl-body")
    argv = ["curl", "-sS", "-v", "--max-time", "10", "-o", out, "-w", "%{http_code} %{http_version}"]
    if tls:
        suite = t.suite
        argv += ["--cacert", suite.pki.ca.cert, "--resolve", "%s:%d:127.0.0.1" % (SERVER_NAME, suite.tls)]
    if data is not None:
        path = os.path.join(t.dir, "curl-upload")
        with open(path, "wb") as f:
            f.write(data)
        argv += ["--data-binary", "@" + path, "-H", "content-type: application/octet-stream"]
    argv += list(opts) + [url]
    if os.path.exists(out):
        os.unlink(out)
    rc, stdout, stderr = run_tool(argv)
    code, _, version = stdout.strip().partition(" ")
    body = b""
    if os.path.exists(out):
        with open(out, "rb") as f:
            body = f.read()
    return CurlResult(rc, code, version, body, stderr)


def plain_url(t, path="/"):
    return "http://127.0.0.1:%d%s" % (t.suite.plain, path)


def tls_url(t, path="/"):
    return "https://%s:%d%s" % (SERVER_NAME, t.suite.tls, path)


class H2Result:
    def __init__(self):
        self.status = None
        self.headers = []
        self.body = bytearray()
        self.reset = None  # RST_STREAM error code name for the request's stream
        self.goaway = None  # (error code name, last stream id, debug data)
        self.closed = False
        self.ended = False
        self.end_stream = False  # the proxy's END_STREAM came (a reset may follow it)

    def outcome(self):
        if self.status is not None:
            return "status %s" % self.status
        if self.reset is not None:
            return "reset %s" % self.reset
        if self.goaway is not None:
            return "GOAWAY %s" % self.goaway[0]
        return "closed without an answer" if self.closed else "no answer"


class H2Client:
    """An h2c connection (prior knowledge) driven by the `h2` state machine; streams are started, reset and waited
    for one by one, so that one connection can carry several requests."""

    def __init__(self, port, timeout=IO_TIMEOUT):
        self.port = port
        self.conn = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.results = {}  # stream id -> H2Result
        self.goaway = None  # (error code name, last stream id, debug data)
        self.closed = False
        self.flush()

    def close(self):
        self.sock.close()

    def flush(self):
        data = self.conn.data_to_send()
        if data and not self.closed:
            try:
                self.sock.sendall(data)
            except OSError:
                self.closed = True

    def start(self, path="/", headers=(), flush=True):
        """Sends a GET for `path` (END_STREAM on the HEADERS); returns its stream id."""
        sid = self.conn.get_next_available_stream_id()
        try:
            self.conn.send_headers(sid, [(":method", "GET"), (":scheme", "http"),
                                         (":authority", "127.0.0.1:%d" % self.port), (":path", path),
                                         ("user-agent", "h2suite")] + list(headers), end_stream=True)
        except h2.exceptions.ProtocolError as e:
            raise Fail("cannot open a stream on the connection (%s; GOAWAY %s)" % (e, self.goaway))
        self.results[sid] = H2Result()
        if flush:
            self.flush()
        return sid

    def reset(self, sid, flush=True):
        self.conn.reset_stream(sid, error_code=ErrorCodes.CANCEL)
        self.results[sid].ended = True
        self.results[sid].reset = "CANCEL (ours)"
        if flush:
            self.flush()

    def open_stream(self, headers, end_stream=False):
        """Sends a request's HEADERS as given (pseudo-headers included, neither validated nor normalized by h2);
        returns its stream id."""
        sid = self.conn.get_next_available_stream_id()
        self.conn.config.validate_outbound_headers = False
        self.conn.config.normalize_outbound_headers = False
        try:
            self.conn.send_headers(sid, list(headers), end_stream=end_stream)
        finally:
            self.conn.config.validate_outbound_headers = True
            self.conn.config.normalize_outbound_headers = True
        self.results[sid] = H2Result()
        self.flush()
        return sid

    def send(self, sid, data, end_stream=False):
        self.conn.send_data(sid, data, end_stream=end_stream)
        self.flush()

    def end(self, sid):
        self.conn.end_stream(sid)
        self.flush()

    def wait(self, sids, timeout=IO_TIMEOUT):
        """Reads until every stream in `sids` ended, the connection closed or `timeout` seconds passed."""
        self.read_until(lambda: all(self.results[s].ended for s in sids), timeout)

    def read_until(self, done, timeout=IO_TIMEOUT):
        """Reads until `done()` holds, the connection closed or `timeout` seconds passed."""
        deadline = time.monotonic() + timeout
        while not self.closed and not done():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(1 << 16)
            except socket.timeout:
                break
            except OSError:
                data = b""
            if not data:
                self.closed = True
                break
            try:
                events = self.conn.receive_data(data)
            except h2.exceptions.ProtocolError as e:
                raise Fail("the proxy's frames broke the h2 client: %s" % e)
            for ev in events:
                if os.environ.get("H2_TRACE"):
                    print("  h2 event:", ev, file=sys.stderr)
                res = self.results.get(getattr(ev, "stream_id", None))
                if isinstance(ev, h2.events.ResponseReceived) and res:
                    res.headers = list(ev.headers)
                    res.status = int(dict(ev.headers).get(":status", "0"))
                elif isinstance(ev, h2.events.DataReceived):
                    if ev.flow_controlled_length:
                        self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    if res:
                        res.body += ev.data
                elif isinstance(ev, h2.events.StreamEnded) and res:
                    res.ended = True
                    res.end_stream = True
                elif isinstance(ev, h2.events.StreamReset) and res:
                    res.reset = code_name(ev.error_code)
                    res.ended = True
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    self.goaway = (code_name(ev.error_code), ev.last_stream_id, ev.additional_data)
                    for sid, r in self.results.items():
                        r.goaway = self.goaway
                        if ev.last_stream_id is not None and ev.last_stream_id < sid:
                            r.ended = True
            self.flush()
        if self.closed:
            for r in self.results.values():
                if not r.ended:
                    r.closed = True
                    r.goaway = self.goaway

    def settle(self, timeout=IO_TIMEOUT):
        """Completes the SETTINGS exchange: the proxy's SETTINGS arrive and are acknowledged (h2 acks on receipt),
        then a PING's ACK shows the proxy has read that acknowledgement."""
        self.conn.ping(b"settle!!")
        self.flush()
        deadline = time.monotonic() + timeout
        while not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Fail("no PING ACK within %ss" % timeout)
            self.sock.settimeout(left)
            data = self.sock.recv(1 << 16)
            if not data:
                self.closed = True
                break
            events = self.conn.receive_data(data)
            self.flush()
            if any(isinstance(ev, h2.events.PingAckReceived) for ev in events):
                return

    def request(self, path="/", headers=(), timeout=IO_TIMEOUT):
        sid = self.start(path, headers)
        self.wait([sid], timeout)
        return self.results[sid]


def h2_request(port, path="/", headers=(), timeout=IO_TIMEOUT):
    """One GET over a new h2c connection; returns an H2Result."""
    c = H2Client(port, timeout)
    try:
        return c.request(path, headers, timeout)
    finally:
        c.close()


class RawConn:
    """A plain socket speaking HTTP/2 by hand: bytes in, frames parsed as they come back (no state machine), so
    that a misbehaving client can be played and every frame the proxy answers with seen."""

    def __init__(self, port, rcvbuf=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(IO_TIMEOUT)
        self.sock.connect(("127.0.0.1", port))
        self.buf = bytearray()
        self.raw = bytearray()  # everything received
        self.frames = []  # (type name, flags, stream id, payload)
        self.closed = None  # None while open; "EOF" or "RST" once the proxy ended it
        self.send_error = None

    def close(self):
        self.sock.close()

    def send(self, data, deadline):
        """Sends `data` (non-blocking, as far as the proxy reads before `deadline`); returns the bytes sent. Stops
        at an error (recorded) or once the proxy closed the connection."""
        sent = 0
        view = memoryview(data)
        while sent < len(data) and self.closed is None:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            _, w, _ = select.select([], [self.sock], [], min(left, 0.2))
            if not w:
                continue
            try:
                sent += self.sock.send(view[sent:], socket.MSG_DONTWAIT)
            except BlockingIOError:
                continue
            except OSError as e:
                self.send_error = errno.errorcode.get(e.errno, str(e))
                break
        return sent

    def pump(self, timeout):
        """Reads what the proxy sent within `timeout` seconds (or until it closes); parses the frames."""
        deadline = time.monotonic() + timeout
        while self.closed is None:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                break
            try:
                data = self.sock.recv(1 << 20, socket.MSG_DONTWAIT)
            except BlockingIOError:
                continue
            except ConnectionResetError:
                self.closed = "RST"
                break
            if not data:
                self.closed = "EOF"
                break
            self.raw += data
            self.buf += data
            self._parse()
        return self.frames

    def drain(self, timeout):
        """Reads until the proxy closes or `timeout` seconds pass with nothing new."""
        while self.closed is None:
            n = len(self.raw)
            self.pump(timeout)
            if len(self.raw) == n:
                break

    def _parse(self):
        if self.raw.startswith(b"HTTP/"):
            return  # an HTTP/1 answer, not frames
        while len(self.buf) >= 9:
            length = int.from_bytes(self.buf[0:3], "big")
            if len(self.buf) < 9 + length:
                break
            ftype, flags = self.buf[3], self.buf[4]
            sid = int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
            payload = bytes(self.buf[9:9 + length])
            del self.buf[:9 + length]
            self.frames.append((FRAME_NAMES.get(ftype, "type%d" % ftype), flags, sid, payload))

    def goaway(self):
        """(error code name, last stream id, debug data) of the first GOAWAY, or None."""
        for name, _, _, payload in self.frames:
            if name == "GOAWAY" and len(payload) >= 8:
                last = int.from_bytes(payload[0:4], "big") & 0x7FFFFFFF
                return code_name(int.from_bytes(payload[4:8], "big")), last, payload[8:]
        return None

    def count(self, name, flags=None):
        return sum(1 for f in self.frames if f[0] == name and (flags is None or f[1] & flags == flags))

    def resets(self):
        out = {}
        for name, _, _, payload in self.frames:
            if name == "RST_STREAM" and len(payload) >= 4:
                c = code_name(int.from_bytes(payload[0:4], "big"))
                out[c] = out.get(c, 0) + 1
        return out

    def summary(self):
        counts = {}
        for f in self.frames:
            key = f[0] + ("[ACK]" if f[0] in ("SETTINGS", "PING") and f[1] & 1 else "")
            counts[key] = counts.get(key, 0) + 1
        parts = ["%s x%d" % kv for kv in counts.items()]
        ga = self.goaway()
        if ga:
            parts.append("GOAWAY %s last_stream_id=%d%s" % (ga[0], ga[1],
                                                           " debug=%r" % ga[2][:80] if ga[2] else ""))
        resets = self.resets()
        if resets:
            parts.append("RST_STREAM codes %s" % resets)
        if self.raw.startswith(b"HTTP/"):
            parts.append("HTTP/1 answer %r" % bytes(self.raw.split(b"\r\n", 1)[0]))
        parts.append("connection %s" % ("closed (%s)" % self.closed if self.closed else "still open"))
        return ", ".join(parts) if parts else "nothing"


SETTING_NAMES = {1: "HEADER_TABLE_SIZE", 2: "ENABLE_PUSH", 3: "MAX_CONCURRENT_STREAMS", 4: "INITIAL_WINDOW_SIZE",
                 5: "MAX_FRAME_SIZE", 6: "MAX_HEADER_LIST_SIZE", 8: "ENABLE_CONNECT_PROTOCOL"}


def server_preface(c):
    """The parameters of the proxy's first SETTINGS and its first connection WINDOW_UPDATE (for the notes)."""
    out = []
    for name, flags, sid, payload in c.frames:
        if name == "SETTINGS" and not flags & 1 and not out:
            for i in range(0, len(payload) - 5, 6):
                ident, value = struct.unpack(">HI", payload[i:i + 6])
                out.append("%s=%d" % (SETTING_NAMES.get(ident, "0x%x" % ident), value))
            out = out or ["(empty SETTINGS)"]
        if name == "WINDOW_UPDATE" and sid == 0:
            out.append("connection WINDOW_UPDATE +%d" % (struct.unpack(">I", payload[:4])[0] & 0x7FFFFFFF))
            break
    return ", ".join(out) or "no SETTINGS"


def raw_conn(t, rcvbuf=None):
    c = RawConn(t.suite.plain, rcvbuf)
    t.on_close("raw connection", c.close)
    return c


def client_settings():
    return SettingsFrame(0, settings={SettingsFrame.ENABLE_PUSH: 0}).serialize()


# ---- shared checks ------------------------------------------------------------------------------------------
WATCHED = re.compile(r"(http2\.|protocol_error|premature|flood|overflow|too_large|rx_reset|tx_reset|_reset|"
                     r"downstream_cx_destroy|goaway)")


def stats_snapshot(t):
    try:
        return admin_stats(t.suite.admin)
    except (Fail, OSError):
        return {}


def note_stats(t, before):
    """Notes the proxy's http2/protocol/reset counters that moved since `before`."""
    after = stats_snapshot(t)
    moved = {k: v - before.get(k, 0) for k, v in after.items()
             if v != before.get(k, 0) and WATCHED.search(k) and not k.startswith("cluster.")}
    if moved:
        t.note("%s counters: %s" % (t.suite.proxy, ", ".join("%s +%d" % kv for kv in sorted(moved.items()))))


def still_alive(t):
    """The proxy survived: process running, admin /ready 200, an h2c GET / on a new connection 200."""
    suite = t.suite
    dead = suite.proxy_state()
    check(not dead, "after the abuse: " + dead)
    try:
        status, body = http_call(suite.admin, "GET", "/ready", timeout=3)
    except OSError as e:
        raise Fail("after the abuse: admin /ready: %s" % e)
    check(status == 200, "after the abuse: admin /ready answered %d %s" % (status, short(body, 80)))
    try:
        r = h2_request(suite.plain, "/")
    except OSError as e:
        raise Fail("after the abuse: an h2c GET / on a new connection failed: %s" % e)
    check(r.status == 200, "after the abuse: an h2c GET / on a new connection got %s" % r.outcome())
    suite.used.add("h2_plain")
    return "alive after (admin /ready 200, h2c GET / 200)"


def goaway_name(ga):
    return "GOAWAY %s" % ga[0] if ga else "no GOAWAY"


def protocol_errors(before, after):
    key = "http.h2_plain.downstream_cx_protocol_error"
    return after.get(key, 0) - before.get(key, 0)


def compare(t, scenario, seen, before):
    """Holds the connection's end to Envoy's (ENVOY[scenario]). `seen` is a RawConn's goaway(): a GOAWAY code
    that is neither Envoy's nor one of the scenario's `cosmetic` codes fails the scenario with both codes named.
    Returns the differences judged cosmetic (the GOAWAY's last_stream_id, debug data, a cosmetic code, the
    downstream_cx_protocol_error count), to be reported."""
    ref = ENVOY[scenario]
    want = ref["goaway"]
    got = seen[0] if seen else None
    envoy_says = "GOAWAY %s" % want if want else "no GOAWAY (it just closes the connection)"
    if got != want and got not in ref.get("cosmetic", ()):
        raise Fail("%s sent %s, Envoy 1.40 sends %s" % (t.suite.proxy, goaway_name(seen), envoy_says))
    diffs = []
    if got != want:
        diffs.append("%s where Envoy sends %s" % (goaway_name(seen), envoy_says))
    if seen and want and seen[1] != ref.get("last_stream_id", seen[1]):
        diffs.append("GOAWAY last_stream_id=%d, Envoy's %d" % (seen[1], ref["last_stream_id"]))
    if seen and want and seen[2] != ref.get("debug", seen[2]):
        diffs.append("GOAWAY debug data %r, Envoy's %r" % (bytes(seen[2]), ref["debug"]))
    n = protocol_errors(before, stats_snapshot(t))
    if "protocol_errors" in ref and n != ref["protocol_errors"]:
        diffs.append("http.h2_plain.downstream_cx_protocol_error +%d, Envoy +%d" % (n, ref["protocol_errors"]))
    for d in diffs:
        t.note("differs from Envoy 1.40 (judged cosmetic): " + d)
    return diffs


def with_diffs(text, diffs):
    return text + ("; differs from Envoy (cosmetic): " + "; ".join(diffs) if diffs else "")


# ---- scenarios: tools -----------------------------------------------------------------------------------------
def h2c_get(t):
    r = curl(t, plain_url(t, "/"), "--http2-prior-knowledge")
    check(r.rc == 0 and r.code == "200", "GET /: %r" % r)
    check(r.version == "2", "GET /: answered over HTTP/%s, expected HTTP/2" % r.version)
    check(r.body == b"ok\n", "GET /: body %r, expected 'ok\\n'" % r.body[:80])
    n = 1 << 20
    r = curl(t, plain_url(t, "/big?bytes=%d" % n), "--http2-prior-knowledge")
    check(r.rc == 0 and r.code == "200" and r.version == "2", "GET /big: %r" % r)
    check(len(r.body) == n and r.body == big_body(n), "GET /big: %d bytes back (%s), expected %d"
          % (len(r.body), "content differs" if len(r.body) == n else "short", n))
    t.suite.used.add("h2_plain")
    return "HTTP/2 200 'ok' and a 1 MiB body intact"


def h2c_post(t):
    body = random.Random(7).randbytes(100 * 1024)
    r = curl(t, plain_url(t, "/upload"), "--http2-prior-knowledge", data=body)
    check(r.rc == 0 and r.code == "200", "POST 100 KiB: %r" % r)
    check(r.version == "2", "POST: answered over HTTP/%s, expected HTTP/2" % r.version)
    check(r.body == body, "POST: %d bytes echoed back, %s" % (len(r.body), "content differs" if len(r.body) == len(body)
                                                               else "expected %d" % len(body)))
    t.suite.used.add("h2_plain")
    return "HTTP/2 200, the 102400-byte body echoed back intact"


def tls_alpn(t):
    r = curl(t, tls_url(t, "/"), "--http2", tls=True)
    check(r.rc == 0 and r.code == "200", "curl --http2 over TLS: %r" % r)
    check("ALPN: server accepted h2" in r.err or "ALPN, server accepted to use h2" in r.err,
          "curl --http2 over TLS: the server did not accept ALPN h2: %s"
          % short(" | ".join(l for l in r.err.splitlines() if "ALPN" in l), 200))
    check(r.version == "2", "curl --http2 over TLS: answered over HTTP/%s, expected HTTP/2" % r.version)
    r1 = curl(t, tls_url(t, "/"), "--http1.1", tls=True)
    check(r1.rc == 0 and r1.code == "200" and r1.version == "1.1", "curl --http1.1 over TLS: %r" % r1)
    check("ALPN: server accepted http/1.1" in r1.err or "ALPN, server accepted to use http/1.1" in r1.err,
          "curl --http1.1 over TLS: ALPN http/1.1 not accepted: %s"
          % short(" | ".join(l for l in r1.err.splitlines() if "ALPN" in l), 200))
    t.suite.used.add("h2_tls")
    return "ALPN h2: HTTP/2 200; ALPN http/1.1: HTTP/1.1 200"


def http1_on_auto(t):
    r = curl(t, plain_url(t, "/"), "--http1.1")
    check(r.rc == 0 and r.code == "200" and r.version == "1.1", "curl --http1.1: %r" % r)
    check(r.body == b"ok\n", "body %r" % r.body[:80])
    r = curl(t, plain_url(t, "/upload"), "--http1.1", data=b"x" * 5000)
    check(r.rc == 0 and r.code == "200" and r.version == "1.1" and r.body == b"x" * 5000,
          "HTTP/1.1 POST: %r, %d bytes back" % (r, len(r.body)))
    return "HTTP/1.1 GET 200 and POST 200 on the AUTO listener"


def h2c_upgrade_ignored(t):
    mark = t.suite.backend.mark()
    r = curl(t, plain_url(t, "/echo"), "--http2")
    check("> Upgrade: h2c" in r.err, "curl did not send Upgrade: h2c: %s" % short(r.err, 200))
    check(r.code != "101", "the proxy switched protocols (101) on Upgrade: h2c: %r" % r)
    check(r.rc == 0 and r.code == "200", "curl --http2 http://: %r" % r)
    check(r.version == "1.1", "answered over HTTP/%s, expected HTTP/1.1 (the upgrade ignored)" % r.version)
    try:
        doc = json.loads(r.body)
    except ValueError:
        raise Fail("/echo answered %r, not JSON" % r.body[:100])
    hdrs = {k: v for k, v in doc["headers"]}
    t.note("headers the backend got: %s" % ", ".join("%s=%s" % (k, short(v, 40)) for k, v in sorted(hdrs.items())))
    leaked = ["%s: %s" % (k, hdrs[k]) for k in ("upgrade", "http2-settings") if k in hdrs]
    conn = hdrs.get("connection", "")
    if "upgrade" in conn.lower() or "http2-settings" in conn.lower():
        leaked.append("connection: %s" % conn)
    check(not leaked, "the backend got the h2c upgrade headers: %s (Envoy drops them)" % "; ".join(leaked))
    check(len(t.suite.backend.since(mark)) == 1, "the backend saw %d requests, expected 1"
          % len(t.suite.backend.since(mark)))
    return "HTTP/1.1 200, no 101; the backend saw no Upgrade/HTTP2-Settings"


def nghttp_concurrent(t):
    paths = ["/", "/big?bytes=65536", "/big?bytes=300000", "/echo"]
    mark = t.suite.backend.mark()
    key = "http.h2_plain.downstream_cx_http2_total"
    cx_before = stats_snapshot(t).get(key, 0)
    rc, out, err = run_tool(["nghttp", "-n", "-s", "-m", "8", "-t", "10"] + [plain_url(t, p) for p in paths])
    check(rc == 0, "nghttp exit %d: %s" % (rc, short(err or out, 300)))
    # -s lines: responseEnd requestStart process code size request path
    rows = re.findall(r"^\s*\d+\s+\+\S+\s+\+\S+\s+\S+\s+(\d{3})\s+(\S+)\s+(\S+)\s*$", out, re.M)
    check(len(rows) == 8 * len(paths), "nghttp reported %d responses, expected %d: %s"
          % (len(rows), 8 * len(paths), short(out, 300)))
    codes = {}
    for code, _, _ in rows:
        codes[code] = codes.get(code, 0) + 1
    check(set(codes) == {"200"}, "status codes %s" % codes)
    want = {"/": 3, "/big?bytes=65536": 65536, "/big?bytes=300000": 300000}
    for _, size, path in rows:
        m = re.fullmatch(r"([\d.]+)([KMG]?)", size)
        n = float(m.group(1)) * 1024 ** " KMG".index(m.group(2) or " ") if m else -1
        if path in want:
            check(abs(n - want[path]) < (1024 if m and m.group(2) else 1),
                  "%s: nghttp got %s bytes, expected %d" % (path, size, want[path]))
    got = len(t.suite.backend.since(mark))
    check(got == 8 * len(paths), "the backend saw %d requests, expected %d" % (got, 8 * len(paths)))
    cx = stats_snapshot(t).get(key, 0) - cx_before
    check(cx == 1, "%s +%d, expected +1 (nghttp's one connection)" % (key, cx))
    t.suite.used.add("h2_plain")
    return "%d concurrent streams on one connection, all 200" % len(rows)


def h2load(t):
    rc, out, err = run_tool(["h2load", "-n", "2000", "-c", "4", "-m", "8", plain_url(t, "/")], timeout=30)
    req = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                    r"(\d+) errored, (\d+) timeout", out)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    proto = re.search(r"Application protocol: (\S+)", out)
    check(req and codes, "h2load exit %d, no summary: %s" % (rc, short(err or out, 300)))
    rps = re.search(r"finished in [^,]+, ([\d.]+) req/s", out)
    check(proto and proto.group(1) == "h2c", "h2load spoke %s, expected h2c" % (proto.group(1) if proto else "?"))
    check(int(req.group(4)) == 2000 and int(codes.group(1)) == 2000,
          "requests: %s; status codes: %s" % (req.group(0)[10:], codes.group(0)[14:]))
    t.suite.used.add("h2_plain")
    return "2000 requests, 2000 2xx (%s req/s)" % (rps.group(1) if rps else "?")


# ---- scenarios: raw-frame abuse -------------------------------------------------------------------------------
def split_preface(t):
    """The client magic in two TCP segments (split after "PRI * HTTP/2.0\r\n", which holds Envoy's 12-byte
    `PRI * HTTP/2` detection prefix), then SETTINGS and a GET: HTTP/2 200."""
    c = raw_conn(t)
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c.sock.sendall(PREFACE[:16])
    time.sleep(0.2)
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "GET"), (":scheme", "http"), (":authority", "127.0.0.1:%d" % t.suite.plain),
                          (":path", "/"), ("user-agent", "h2suite")], end_stream=True)
    c.sock.sendall(PREFACE[16:] + conn.data_to_send()[len(PREFACE):])
    deadline = time.monotonic() + IO_TIMEOUT

    def answered():
        return any(f[0] in ("HEADERS", "RST_STREAM") and f[2] == 1 or f[0] == "GOAWAY" for f in c.frames)

    while c.closed is None and time.monotonic() < deadline and not answered():
        c.pump(0.2)
    t.note("got: %s" % c.summary())
    t.note("the proxy's connection preface: %s" % server_preface(c))
    check(not c.raw.startswith(b"HTTP/"), "answered as HTTP/1 (%s)" % c.summary())
    check(c.count("HEADERS") >= 1, "no response HEADERS on stream 1 (%s)" % c.summary())
    status = None
    for name, flags, sid, payload in c.frames:
        if name == "HEADERS" and sid == 1:
            try:
                status = dict(hpack.Decoder().decode(payload)).get(":status")
            except Exception as e:
                raise Fail("cannot decode the response HEADERS: %s" % e)
            break
    check(status == "200", "stream 1 answered %s (%s)" % (status, c.summary()))
    t.suite.used.add("h2_plain")
    return "magic in two segments (16 + 8 bytes): HTTP/2 200"


def bad_preface(t):
    before = stats_snapshot(t)
    c = raw_conn(t)
    c.sock.sendall(BAD_PREFACE)
    c.drain(IO_TIMEOUT)
    t.note("sent %r; got: %s" % (BAD_PREFACE, c.summary()))
    note_stats(t, before)
    check(c.closed, "the connection is still open %ds after a bad client magic (%s)" % (IO_TIMEOUT, c.summary()))
    if c.raw.startswith(b"HTTP/"):
        raise Fail("%s took the connection for HTTP/1 and answered %r before closing; Envoy 1.40 takes every "
                   "connection that starts with `PRI * HTTP/2` for HTTP/2 and closes this one without sending a "
                   "byte (no SETTINGS, no GOAWAY)" % (t.suite.proxy, bytes(c.raw.split(b"\r\n", 1)[0])))
    diffs = compare(t, "bad_preface", c.goaway(), before)
    if c.frames and not ENVOY["bad_preface"].get("frames"):
        diffs.append("sent %s where Envoy sends nothing" % c.summary())
    return with_diffs("closed (%s), %s; %s" % (c.closed, goaway_name(c.goaway()), still_alive(t)), diffs)


def preface_no_settings(t):
    before = stats_snapshot(t)
    c = raw_conn(t)
    c.sock.sendall(PREFACE + PingFrame(0, opaque_data=b"12345678").serialize())
    c.drain(IO_TIMEOUT)
    t.note("sent the magic then PING (no SETTINGS); got: %s" % c.summary())
    note_stats(t, before)
    check(c.closed, "the connection is still open %ds after a preface without SETTINGS (%s)"
          % (IO_TIMEOUT, c.summary()))
    check(c.count("PING", 1) == 0, "the proxy answered the PING (%s)" % c.summary())
    diffs = compare(t, "preface_no_settings", c.goaway(), before)
    return with_diffs("closed (%s), %s; %s" % (c.closed, goaway_name(c.goaway()), still_alive(t)), diffs)


SETTINGS_FLOOD = 200000
RST_FLOOD = 20000


def settings_flood(t):
    before = stats_snapshot(t)
    c = raw_conn(t, rcvbuf=4096)
    frame = SettingsFrame(0).serialize()
    batch = frame * 2000
    deadline = time.monotonic() + 10
    c.send(PREFACE + client_settings(), deadline)
    frames = 0
    t0 = time.monotonic()
    while frames < SETTINGS_FLOOD and c.closed is None and c.send_error is None and time.monotonic() < deadline:
        n = c.send(batch, deadline)
        frames += n // len(frame)
        if n < len(batch):
            break
        # Whether the proxy has given up on the connection already (a peek: nothing is read).
        try:
            if c.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
                c.closed = "EOF"
        except BlockingIOError:
            pass
        except ConnectionResetError:
            c.closed = "RST"
    took = time.monotonic() - t0
    stopped = c.closed or c.send_error
    c.drain(3)
    acks = c.count("SETTINGS", 1)
    t.note("wrote %d empty SETTINGS in %.2fs (%s); then read: %s" % (
        frames, took, "the proxy ended the connection while we wrote: %s" % stopped if stopped else "all written",
        c.summary()))
    note_stats(t, before)
    check(c.closed, "the connection is still open after %d SETTINGS frames whose ACKs were not read (%d ACKs came "
          "once read; %s)" % (frames, acks, c.summary()))
    diffs = compare(t, "settings_flood", c.goaway(), before)
    return with_diffs("ended (%d ACKs came, %s, connection %s); %s" % (
        acks, goaway_name(c.goaway()), c.closed, still_alive(t)), diffs)


def rst_flood(t):
    before = stats_snapshot(t)
    c = raw_conn(t)
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    deadline = time.monotonic() + 10
    c.send(conn.data_to_send(), deadline)
    hdrs = [(":method", "GET"), (":scheme", "http"), (":authority", "127.0.0.1:%d" % t.suite.plain),
            (":path", "/"), ("user-agent", "h2suite-rapid-reset")]
    opened = 0
    mark = t.suite.backend.mark()
    t0 = time.monotonic()
    while opened < RST_FLOOD and c.closed is None and c.send_error is None and time.monotonic() < deadline:
        for _ in range(50):
            sid = conn.get_next_available_stream_id()
            conn.send_headers(sid, hdrs, end_stream=True)
            conn.reset_stream(sid, error_code=ErrorCodes.CANCEL)
            opened += 1
        data = conn.data_to_send()
        if c.send(data, deadline) < len(data):
            break
        c.pump(0)
        if c.goaway():
            break
    took = time.monotonic() - t0
    c.drain(3)
    t.note("wrote HEADERS + RST_STREAM for %d streams (50 a write) in %.2fs before the end was seen%s; got: %s; "
           "the backend saw %d of them" % (
        opened, took, " (write: %s)" % c.send_error if c.send_error else "", c.summary(),
        len(t.suite.backend.since(mark))))
    note_stats(t, before)
    check(c.closed or c.goaway(), "the connection is still open and no GOAWAY after %d rapid resets (%s)"
          % (opened, c.summary()))
    diffs = compare(t, "rst_flood", c.goaway(), before)
    return with_diffs("ended (%d streams opened and reset before the end was seen; %s, %s); %s" % (
        opened, goaway_name(c.goaway()), "closed (%s)" % c.closed if c.closed else "still open",
        still_alive(t)), diffs)


def rst_mixed(t):
    """A client that cancels some of its requests, not a flood: 115 rounds of 5 GETs answered and 2 GETs reset
    (CANCEL) at once, on one connection (575 answered, 230 reset: under Envoy's premature-reset rule, which ends a
    connection once at least half its streams, counted over 500 or more, were reset before a response). Envoy
    keeps the connection; so must the proxy."""
    before = stats_snapshot(t)
    c = H2Client(t.suite.plain)
    t.on_close("h2 connection", c.close)
    answered = resets = 0
    bad = []
    for _ in range(115):
        sids = [c.start("/", flush=False) for _ in range(5)]
        for _ in range(2):
            c.reset(c.start("/", flush=False), flush=False)
            resets += 1
        c.flush()
        c.wait(sids)
        for s in sids:
            r = c.results[s]
            if r.status == 200 and r.ended:
                answered += 1
            elif len(bad) < 3:
                bad.append("stream %d: %s" % (s, r.outcome()))
        if c.goaway or c.closed:
            break
    t.note("%d answered, %d reset by us; GOAWAY %s, closed %s" % (answered, resets, c.goaway, c.closed))
    note_stats(t, before)
    problems = []
    if c.goaway or c.closed:
        problems.append("%s ended the connection after %d answered and %d cancelled requests (%s%s); Envoy 1.40 "
                        "keeps it (it ends a connection once at least 50%% of its streams, counted over 500 or more, "
                        "were reset before a response)"
                        % (t.suite.proxy, answered, resets, goaway_name(c.goaway),
                           " last_stream_id=%s" % c.goaway[1] if c.goaway else ", closed"))
    elif answered != 575:
        problems.append("%d of 575 requests answered 200: %s" % (answered, "; ".join(bad)))
    else:
        r = c.request("/")
        if r.status != 200:
            problems.append("a GET after the cancels: %s" % r.outcome())
    # Envoy counts a client's RST_STREAM as a request reset, not as a connection protocol error.
    after = stats_snapshot(t)
    n = protocol_errors(before, after)
    if n:
        problems.append("http.h2_plain.downstream_cx_protocol_error +%d for %d client cancels, Envoy +0" % (n, resets))
    key = "http.h2_plain.downstream_rq_rx_reset"
    rx = after.get(key, 0) - before.get(key, 0)
    if rx != resets:
        problems.append("%s +%d%s, Envoy +%d (one per cancelled stream)" % (
            key, rx, "" if key in after else " (no such counter)", resets))
    check(not problems, "; ".join(problems))
    t.suite.used.add("h2_plain")
    return "575 answered, 230 cancelled, the connection kept and still usable; %s +%d" % (key, rx)


def oversized_headers(t):
    before = stats_snapshot(t)
    rnd = random.Random(11)
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    big = [("x-big-%d" % i, "".join(rnd.choice(alphabet) for _ in range(7000))) for i in range(10)]
    total = sum(len(k) + len(v) for k, v in big)
    mark = t.suite.backend.mark()
    c = H2Client(t.suite.plain)
    t.on_close("h2 connection", c.close)
    # The sidecar's HTTP/2 codec (NIOHTTP2) applies its own 16 KiB header-list bound until the client has acknowledged
    # the sidecar's SETTINGS, and ends the connection past it; a header block that large sent before the exchange
    # is a known difference (README). This client finishes the exchange first, as h2 clients that read SETTINGS do.
    c.settle()
    try:
        r = c.request("/oversized", headers=big)
    except OSError as e:
        raise Fail("the request failed: %s" % e)
    reached = [p for _, p, _ in t.suite.backend.since(mark) if p.startswith("/oversized")]
    outcome = r.outcome()
    after = None
    if not c.goaway and not c.closed:
        after = c.request("/")
    t.note("%d bytes of headers (10 x 7000 random); got %s%s; the backend saw %d; a GET / on the same connection "
           "after it: %s" % (total, outcome, ", GOAWAY %s last_stream_id=%s" % c.goaway[:2] if c.goaway else "",
                             len(reached), after.outcome() if after else "not possible (connection ended)"))
    note_stats(t, before)
    check(not reached, "the request reached the backend (%s)" % outcome)
    check(r.status != 200, "answered 200 to %d bytes of headers" % total)
    ref = ENVOY["oversized_headers"]
    if c.goaway or c.closed:
        raise Fail("%s ended the whole connection (%s%s) for one stream's oversized headers; Envoy 1.40 resets "
                   "only the stream (%s) and the connection carries the next request"
                   % (t.suite.proxy, goaway_name(c.goaway),
                      " last_stream_id=%s" % c.goaway[1] if c.goaway else ", closed", ref["outcome"]))
    check(outcome.startswith("status 431") or outcome.startswith("reset"),
          "%s: %s, Envoy 1.40: %s" % (t.suite.proxy, outcome, ref["outcome"]))
    check(after is not None and after.status == 200, "a GET / on the same connection afterwards: %s"
          % (after.outcome() if after else "-"))
    diffs = []
    if outcome != ref["outcome"]:
        diffs.append("%s where Envoy sends %s" % (outcome, ref["outcome"]))
    return with_diffs("%d bytes of headers: %s, not forwarded, the connection still carries a GET 200; %s"
                      % (total, outcome, still_alive(t)), diffs)

# Header blocks RFC 9113 calls malformed (8.1.1, 8.2, 8.3), each of which an HTTP/2-to-HTTP/1 proxy that let it
# through would turn into a smuggled or altered HTTP/1 request; and a body longer than its content-length.
MALFORMED = [
    ("a CR LF in a value", [("x-a", "1\r\nx-injected: 1")]),
    ("transfer-encoding", [("transfer-encoding", "chunked")]),
    ("connection", [("connection", "close")]),
    ("te other than trailers", [("te", "gzip")]),
    ("an upper-case name", [("X-Upper", "1")]),
    ("a colon inside a name", [("x:a", "1")]),
    ("a space in :path", None),
    ("a pseudo-header after a field", None),
    ("an unknown pseudo-header", [(":foo", "1")]),
    ("a body longer than its content-length", None),
]


def malformed_blocks(t):
    """Each malformed request on a connection of its own: it must not reach the backend nor be answered 200; the
    proxy resets the stream (or ends the connection) and stays up. Envoy 1.40 ends the connection for the malformed
    blocks (its default stream_error_on_invalid_http_message: false) and resets the stream for the long body; the
    sidecar resets the stream (PROTOCOL_ERROR) for each, as it did when NIOHTTP2 checked the blocks."""
    mark = t.suite.backend.mark()
    outcomes = []
    problems = []
    for i, (why, extra) in enumerate(MALFORMED):
        path = "/malformed-%d" % i
        base = [(":method", "GET"), (":scheme", "http"), (":authority", "127.0.0.1:%d" % t.suite.plain)]
        c = H2Client(t.suite.plain)
        t.on_close("h2 connection", c.close)
        c.settle()
        body = None
        if why == "a space in :path":
            block = base + [(":path", path + " x")]
        elif why == "a pseudo-header after a field":
            block = [(":method", "GET"), ("x-a", "1"), (":scheme", "http"), (":path", path),
                     (":authority", "127.0.0.1:%d" % t.suite.plain)]
        elif why == "a body longer than its content-length":
            # The bytes past the declared length are a second HTTP/1.1 request, for a proxy that would pass them on.
            block = [(":method", "POST")] + base[1:] + [(":path", path), ("content-length", "3")]
            body = b"abcGET /malformed-smuggled HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n"
        else:
            block = base + [(":path", path)] + extra
        sid = c.open_stream(block, end_stream=body is None)
        if body is not None:
            c.conn.send_data(sid, body, end_stream=True)
            c.flush()
        c.wait([sid])
        r = c.results[sid]
        outcomes.append("%s: %s" % (why, r.outcome()))
        if r.status == 200:
            problems.append("%s answered 200" % why)
        c.close()
    # The long body's head may go upstream before its DATA shows the lie (so it does in Envoy); what must never
    # arrive is a request made of the bytes past its length.
    long_body = "/malformed-%d" % (len(MALFORMED) - 1)
    reached = [p for _, p, _ in t.suite.backend.since(mark) if p.startswith("/malformed") and p != long_body]
    t.note("; ".join(outcomes))
    check(not reached, "reached the backend: %s" % ", ".join(reached))
    check(not problems, "; ".join(problems))
    resets = sum(1 for o in outcomes if "reset PROTOCOL_ERROR" in o)
    return "%d malformed requests, none forwarded nor answered (%d reset PROTOCOL_ERROR); %s" % (
        len(MALFORMED), resets, still_alive(t))


# ---- scenario: stats ---------------------------------------------------------------------------------------------
def stats(t):
    suite = t.suite
    if "h2_plain" not in suite.used:
        r = h2_request(suite.plain, "/")
        check(r.status == 200, "an h2c GET / (no earlier scenario used the plain listener): %s" % r.outcome())
    if "h2_tls" not in suite.used:
        r = curl(t, tls_url(t, "/"), "--http2", tls=True)
        check(r.rc == 0 and r.code == "200" and r.version == "2",
              "curl --http2 over TLS (no earlier scenario used the TLS listener): %r" % r)
    st = admin_stats(suite.admin)
    seen, bad = [], []
    for prefix in ("h2_plain", "h2_tls"):
        for name in ("downstream_cx_http2_total", "downstream_rq_http2_total"):
            key = "http.%s.%s" % (prefix, name)
            v = st.get(key)
            seen.append("%s=%s" % (key, v))
            if not v:
                bad.append("%s=%s" % (key, v))
    other = sorted("%s=%d" % (k, v) for k, v in st.items()
                   if k.startswith(("http.h2_plain.downstream_cx_http", "http.h2_plain.downstream_rq_http",
                                    "http.h2_plain.downstream_cx_protocol_error", "http2."))
                   and v)
    t.note("counters: %s" % ", ".join(other))
    check(not bad, "expected > 0: %s" % ", ".join(bad))
    return ", ".join(seen)


# ---- WebSocket: clients and checks ------------------------------------------------------------------------------
WS_CLIENT_LOG = quiet_logger("http2-suite.ws-client")
WS_KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455's sample Sec-WebSocket-Key
WS_LEGACY = "legacy" in inspect.signature(ws_connect).parameters  # websockets 17 and later


def ws_open(t, port, path, **opts):
    """A websockets client connection to the proxy's `port` (no keepalive pings, no message size limit, no HTTP
    proxy from the environment), closed when the scenario ends. Handshake errors (InvalidStatus ...) propagate."""
    kw = dict(proxy=None, open_timeout=IO_TIMEOUT, close_timeout=IO_TIMEOUT, ping_interval=None, max_size=None,
              logger=WS_CLIENT_LOG)
    if WS_LEGACY:
        kw["legacy"] = True  # a connection now, not a context manager (and no DeprecationWarning saying so)
    kw.update(opts)
    ws = ws_connect("ws://127.0.0.1:%d%s" % (port, path), **kw)

    def shut():
        ws.close_timeout = 1
        ws.close()

    t.on_close("websocket %s" % path, shut)
    return ws


def ws_upgrade(t, port, path, **opts):
    """ws_open, failing the scenario unless the upgrade succeeds (101)."""
    try:
        return ws_open(t, port, path, **opts)
    except InvalidStatus as e:
        raise Fail("the upgrade to %s was answered %d, expected 101 (%s)" % (
            path, e.response.status_code, short(e.response.body.decode(errors="replace"), 100)))
    except (OSError, TimeoutError, InvalidHandshake) as e:
        raise Fail("the upgrade to %s failed: %s: %s" % (path, type(e).__name__, e))


def ws_recv(ws, what, timeout=IO_TIMEOUT):
    try:
        return ws.recv(timeout=timeout)
    except TimeoutError:
        raise Fail("%s did not arrive within %ss" % (what, timeout))
    except ConnectionClosed as e:
        raise Fail("the connection closed while waiting for %s (%s)" % (what, close_text(e.rcvd)))


def ws_echo_check(ws, msg, what):
    try:
        ws.send(msg)
    except ConnectionClosed as e:
        raise Fail("sending %s: the connection is closed (%s)" % (what, close_text(e.rcvd)))
    got = ws_recv(ws, "the echo of " + what)
    check(type(got) is type(msg), "%s came back as %s" % (what, type(got).__name__))
    check(got == msg, "%s came back altered (%d of %d %s)" % (what, len(got), len(msg),
                                                              "chars" if isinstance(msg, str) else "bytes"))


def close_text(frame):
    return "close frame %d %r" % (frame.code, frame.reason) if frame else "no close frame"


def ws_closes(t, mark, path):
    """(code, reason) the WebSocket backend received on its connections to `path` since `mark` (waits up to 2 s
    for one)."""
    def got():
        return [(c, r) for p, c, r in t.suite.ws_backend.since(mark)[1] if p == path]

    return wait_for(got, 2) or []


def raw_upgrade(port, path):
    """A WebSocket upgrade request on a plain socket; reads until the proxy ends the connection or IO_TIMEOUT
    seconds pass. Returns (status, {header: value}, body, how the connection ended: 'EOF', 'RST' or None when it
    was still open)."""
    req = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (path, port, WS_KEY)).encode()
    s = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
    buf = bytearray()
    ended = None
    try:
        s.sendall(req)
        while True:
            try:
                data = s.recv(1 << 16)
            except socket.timeout:
                break
            except ConnectionResetError:
                ended = "RST"
                break
            if not data:
                ended = "EOF"
                break
            buf += data
    finally:
        s.close()
    head, _, body = bytes(buf).partition(b"\r\n\r\n")
    lines = head.decode(errors="replace").split("\r\n")
    m = re.match(r"HTTP/1\.[01] (\d{3})", lines[0])
    headers = {}
    for line in lines[1:]:
        k, sep, v = line.partition(":")
        if sep:
            headers[k.strip().lower()] = v.strip()
    return (int(m.group(1)) if m else None), headers, body, ended


def masked_text_frame(payload):
    """A client's (masked) WebSocket text frame holding `payload` (under 126 bytes)."""
    mask = b"\x5a\xa5\x0f\xf0"
    return bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def raw_upgrade_with_data(port, path, data, same_write, timeout=IO_TIMEOUT):
    """A WebSocket upgrade request on a plain socket with `data` right behind it: in the request's own write, or
    in a second write at once (both before the 101 can have come back). Reads until `data`'s length has come
    back after the response headers, the proxy ends the connection, or `timeout` seconds pass. Returns (status,
    the bytes after the response headers, how the connection ended: 'EOF', 'RST' or None)."""
    req = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (path, port, WS_KEY)).encode()
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = bytearray()
    ended = None
    deadline = time.monotonic() + timeout
    try:
        if same_write:
            s.sendall(req + data)
        else:
            s.sendall(req)
            s.sendall(data)
        while True:
            head, sep, rest = bytes(buf).partition(b"\r\n\r\n")
            left = deadline - time.monotonic()
            if (sep and len(rest) >= len(data) - 4) or left <= 0:  # a server's frame is unmasked: 4 bytes less
                break
            s.settimeout(left)
            try:
                chunk = s.recv(1 << 16)
            except socket.timeout:
                break
            except ConnectionResetError:
                ended = "RST"
                break
            if not chunk:
                ended = "EOF"
                break
            buf += chunk
    finally:
        s.close()
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    m = re.match(rb"HTTP/1\.[01] (\d{3})", head)
    return (int(m.group(1)) if m else None), rest, ended


def vmrss(pid):
    """The process's resident set size in bytes (VmRSS in /proc/PID/status), None once it is gone."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class RssSampler:
    """Samples a process's VmRSS every 20 ms in a thread until stopped; keeps the peak."""

    def __init__(self, pid):
        self.pid = pid
        self.base = vmrss(pid) or 0
        self.peak = self.base
        self.samples = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run, name="rss-sampler", daemon=True)
        self.thread.start()

    def run(self):
        while not self.done.wait(0.02):
            v = vmrss(self.pid)
            if v is None:
                return
            self.samples += 1
            self.peak = max(self.peak, v)

    def stop(self):
        self.done.set()
        self.thread.join(2)
        v = vmrss(self.pid)
        if v is not None:
            self.peak = max(self.peak, v)


def mib(n):
    return n / float(1 << 20)


# ---- scenarios: WebSocket ---------------------------------------------------------------------------------------
def ws_echo(t):
    ws = ws_upgrade(t, t.suite.ws, "/echo")
    t.note("101 headers: %s" % ", ".join("%s: %s" % (k, short(v, 60)) for k, v in ws.response.headers.raw_items()))
    ext = ws.response.headers.get("sec-websocket-extensions")
    ws_echo_check(ws, "h\u00e9llo w\u00f6rld \u2713 " * 8, "a text message")
    ws_echo_check(ws, bytes(range(256)) * 4, "a binary message")
    big = random.Random(5).randbytes(1 << 20)
    ws_echo_check(ws, big, "a 1 MiB binary message")
    msgs = ["burst %03d %s" % (i, "x" * (i % 50)) for i in range(200)]
    try:
        for m in msgs:
            ws.send(m)
    except ConnectionClosed as e:
        raise Fail("sending the burst: the connection is closed (%s)" % close_text(e.rcvd))
    got = [ws_recv(ws, "echo %d of the 200-message burst" % i) for i in range(len(msgs))]
    if got != msgs:
        i = next(i for i, (a, b) in enumerate(zip(got, msgs)) if a != b)
        raise Fail("the burst came back altered or reordered: message %d is %r, sent %r"
                   % (i, got[i][:40], msgs[i][:40]))
    ws.close()
    diffs = []
    upper = [k for k, _ in ws.response.headers.raw_items() if k != k.lower()]
    if upper and ENVOY["ws_echo"]["lowercase_headers"]:
        diffs.append("the 101's header names keep the backend's case (%s), Envoy 1.40 lowercases them"
                     % ", ".join(upper))
    for d in diffs:
        t.note("differs from Envoy 1.40 (judged cosmetic): " + d)
    return with_diffs("text, binary, 1 MiB and a burst of 200 messages echoed intact (%s)" % (
        "negotiated " + ext if ext else "no extension negotiated"), diffs)


def ws_server_first(t):
    """The backend speaks first: its message is written right after its 101, maybe in the same segment, and must
    come through before the client has sent a byte. Five connections."""
    for i in range(5):
        ws = ws_upgrade(t, t.suite.ws, "/first")
        got = ws_recv(ws, "the backend's first message (connection %d, nothing sent yet)" % (i + 1))
        check(got == SERVER_FIRST, "connection %d: the first message is %r, the backend sent %r"
              % (i + 1, got[:60], SERVER_FIRST))
        ws_echo_check(ws, "after the first %d" % i, "a text message after the backend's first")
        ws.close()
    return "5 connections: the backend's message before any client byte arrived, then echoes"


def ws_early_data(t):
    """The client's first frame right behind its upgrade request, before the 101 (RFC 6455 clients wait for the
    101; Envoy 1.40 carries the bytes anyway: they go upstream after the request headers and the echo comes
    back). Three times in the request's own write, twice in a second write at once."""
    problems, seen = [], []
    for i, same_write in enumerate((True, True, True, False, False)):
        payload = ("early frame %d" % i).encode()
        status, after, ended = raw_upgrade_with_data(t.suite.ws, "/echo?early=%d" % i, masked_text_frame(payload),
                                                     same_write, EARLY_WAIT)
        want = bytes([0x81, len(payload)]) + payload
        how = "in the request's write" if same_write else "in a second write right after it"
        t.note("frame %d %s: status %s, then %r, connection %s" % (i, how, status, after[:40],
                                                                    "ended (%s)" % ended if ended else "open"))
        if status != 101:
            problems.append("frame %d (%s): the upgrade got %s" % (i, how, status))
        elif after[:len(want)] != want:
            problems.append("frame %d %s: %s" % (
                i, how, "got %r back instead of its echo" % after[:40] if after else
                "no echo within %ds after the 101 (connection %s)" % (
                    EARLY_WAIT, "ended (%s)" % ended if ended else "still open")))
        else:
            seen.append(i)
    if problems:
        raise Fail("%s lost client bytes sent before the 101: %s; Envoy 1.40 forwards bytes behind the upgrade "
                   "request upstream and every frame's echo comes back" % (t.suite.proxy, "; ".join(problems)))
    return "5 frames sent before the 101 (3 with the request, 2 right after it): all echoed"


def ws_close(t):
    backend = t.suite.ws_backend
    # The client closes: its close frame reaches the backend, which echoes the code and reason back and closes the
    # TCP connection; the proxy must carry that close to the client.
    mark = backend.mark()
    ws = ws_upgrade(t, t.suite.ws, "/echo?close=client")
    ws_echo_check(ws, "before the close", "a text message")
    t0 = time.monotonic()
    ws.close(4000, "client done")
    took = time.monotonic() - t0
    rcvd = ws.protocol.close_rcvd
    t.note("client close: %s came back in %.2fs; state %s" % (close_text(rcvd), took, ws.protocol.state.name))
    check(rcvd is not None, "the client's close (4000 'client done') got no close frame back within %ss" % IO_TIMEOUT)
    check((rcvd.code, rcvd.reason) == (4000, "client done"),
          "the client's close (4000 'client done') came back as %s" % close_text(rcvd))
    check(took < 2, "the closing handshake took %.1fs: after the backend's close frame the client's TCP connection "
          "was not closed (the client waits for the server's side to close)" % took)
    seen = ws_closes(t, mark, "/echo?close=client")
    check(seen and seen[0] == (4000, "client done"), "the backend received %s, the client sent 4000 'client done'"
          % (seen or "no close frame"))
    # The backend closes with 4001 "bye" after one message: the client sees that close frame and the end of the
    # connection, and its echoed close frame reaches the backend.
    mark = backend.mark()
    ws = ws_upgrade(t, t.suite.ws, "/bye")
    ws.send("bye please")
    t0 = time.monotonic()
    try:
        msg = ws.recv(timeout=IO_TIMEOUT)
        raise Fail("got a message %r instead of the backend's close" % msg[:60])
    except TimeoutError:
        raise Fail("the connection is not closed %ss after the backend's close (%s arrived)"
                   % (IO_TIMEOUT, close_text(ws.protocol.close_rcvd)))
    except ConnectionClosed as e:
        rcvd = e.rcvd
    took2 = time.monotonic() - t0
    t.note("server close: %s reached the client, connection ended %.2fs after the message" % (close_text(rcvd), took2))
    check(rcvd is not None and (rcvd.code, rcvd.reason) == (4001, "bye"),
          "the backend closed with 4001 'bye'; the client got %s" % close_text(rcvd))
    seen = ws_closes(t, mark, "/bye")
    check(seen and seen[0] == (4001, "bye"), "the client's echo of the close: the backend received %s"
          % (seen or "no close frame"))
    diffs = []
    ref = ENVOY["ws_close"]["closed_after"]
    if abs(took - ref) > 0.5 or abs(took2 - ref) > 0.5:
        diffs.append("the client's connection ended %.2fs / %.2fs after the backend's close, Envoy 1.40 ends it "
                     "after its 1 s delayed_close_timeout" % (took, took2))
    for d in diffs:
        t.note("differs from Envoy 1.40 (judged cosmetic): " + d)
    return with_diffs("client close 4000 'client done' echoed back (connection ended after %.2fs); backend close "
                      "4001 'bye' reached the client (after %.2fs)" % (took, took2), diffs)


def ws_refused(t):
    suite = t.suite
    ref = ENVOY["ws_refused"]
    mark = suite.ws_backend.mark()
    seen, problems = [], []
    for what, port, path in (("listener ws_off (no upgrade_configs)", suite.ws_off, "/echo"),
                             ("listener ws, route /refused (websocket enabled: false)", suite.ws, "/refused/echo")):
        try:
            ws = ws_open(t, port, path)
            ws.close()
            problems.append("%s: the websockets client's upgrade succeeded (101); Envoy 1.40 answers %d"
                            % (what, ref["status"]))
            continue
        except InvalidStatus as e:
            code = e.response.status_code
        except (OSError, TimeoutError, InvalidHandshake) as e:
            problems.append("%s: the websockets client failed with %s: %s; Envoy 1.40 answers %d (InvalidStatus)"
                            % (what, type(e).__name__, e, ref["status"]))
            continue
        if code != ref["status"]:
            problems.append("%s: the websockets client got InvalidStatus %d, Envoy 1.40 answers %d"
                            % (what, code, ref["status"]))
        status, headers, body, ended = raw_upgrade(port, path)
        t.note("%s: raw upgrade answered %s %s body %r, connection %s" % (
            what, status, ", ".join("%s: %s" % kv for kv in sorted(headers.items())), body[:80],
            "ended (%s)" % ended if ended else "still open after %ds" % IO_TIMEOUT))
        if status != ref["status"]:
            problems.append("%s: a raw upgrade request got %s, Envoy 1.40 answers %d" % (what, status, ref["status"]))
        elif not ended:
            problems.append("%s: %d, but the connection was still open %ds later; Envoy 1.40 closes it after the %d"
                            % (what, status, IO_TIMEOUT, ref["status"]))
        if body != ref["body"]:
            problems.append("%s: the %s body is %r, Envoy 1.40's %r" % (what, status, body[:80], ref["body"]))
        seen.append("%s: InvalidStatus %d, closed (%s)" % (what.split(" (")[0], code, ended))
    reached = suite.ws_backend.since(mark)[0]
    if reached:
        problems.append("the backend accepted upgrades for %s" % reached)
    check(not problems, "; ".join(problems))
    return "; ".join(seen)


def ws_route_timeout(t):
    """Route /timeout has `timeout: 1s`. The control: a plain GET /timeout/slow (answered after SLOW_REPLY s) gets
    504 after about a second. A WebSocket on the same route stays open 2.5 s and still echoes: Envoy stops the
    route timeout once the upstream answered 101."""
    t0 = time.monotonic()
    try:
        status, body = http_call(t.suite.ws, "GET", "/timeout/slow", timeout=SLOW_REPLY + 3)
    except OSError as e:
        raise Fail("the control GET /timeout/slow failed: %s" % e)
    took = time.monotonic() - t0
    t.note("control: GET /timeout/slow -> %d %r after %.2fs" % (status, short(body, 60), took))
    check(status == 504 and took < SLOW_REPLY - 0.5,
          "the control GET /timeout/slow (the backend answers after %.1fs) got %d after %.1fs; the route's "
          "timeout: %ds should answer 504 after about %ds" % (SLOW_REPLY, status, took, WS_ROUTE_TIMEOUT,
                                                              WS_ROUTE_TIMEOUT))
    ws = ws_upgrade(t, t.suite.ws, "/timeout/echo")
    start = time.monotonic()
    for at in (0.0, 1.3, 2.5):
        time.sleep(max(0.0, start + at - time.monotonic()))
        ws_echo_check(ws, "at %.1fs" % at, "a message %.1fs after the upgrade" % at)
    lasted = time.monotonic() - start
    ws.close()
    rcvd = ws.protocol.close_rcvd
    check(rcvd is not None and rcvd.code == 1000, "the normal close at the end came back as %s" % close_text(rcvd))
    return "control GET 504 after %.1fs; the WebSocket on the same route echoed at 0, 1.3 and 2.5 s (open %.1fs)" % (
        took, lasted)


def ws_backpressure(t):
    """WS_FLOOD bytes in WS_FLOOD_MESSAGE-byte binary messages, sent as fast as the proxy takes them, to /sink,
    which reads slowly: the proxy must push back (its VmRSS grows by at most WS_RSS_LIMIT, and when the client's
    last write returns at most WS_IN_FLIGHT_LIMIT bytes are still unread by the backend: a proxy buffering
    without limit could still stay under the RSS bound), and every byte arrives (counted and hashed at the
    backend)."""
    suite = t.suite
    n = WS_FLOOD // WS_FLOOD_MESSAGE
    chunk = random.Random(3).randbytes(WS_FLOOD_MESSAGE)
    want = hashlib.sha256()
    for _ in range(n):
        want.update(chunk)
    ws = ws_upgrade(t, suite.ws, "/sink", compression=None)
    rss = RssSampler(suite.proc.pid)
    t.on_close("RSS sampler", rss.stop)
    t0 = time.monotonic()
    try:
        for _ in range(n):
            ws.send(chunk)
        sent = time.monotonic() - t0
        in_flight = WS_FLOOD - suite.ws_backend.sink_read  # written but not yet read by the backend
        ws.send("done")
    except ConnectionClosed as e:
        rss.stop()
        raise Fail("sending: the connection closed (%s)" % close_text(e.rcvd))
    reply = ws_recv(ws, "the backend's count", timeout=max(5, SCENARIO_LIMIT - 5 - (time.monotonic() - t0)))
    took = time.monotonic() - t0
    rss.stop()
    ws.close()
    grew = rss.peak - rss.base
    t.note("%d x %d bytes written in %.2fs (%.1f MiB of them not yet read by the backend then: in the proxy, the "
           "sockets' buffers and the backend's queue), counted by the backend after %.2fs; VmRSS %.1f MiB, peak "
           "%.1f MiB (%d samples)" % (n, WS_FLOOD_MESSAGE, sent, mib(in_flight), took, mib(rss.base), mib(rss.peak),
                                      rss.samples))
    try:
        total, count, digest = reply.split()
        total, count = int(total), int(count)
    except ValueError:
        raise Fail("the backend's count is %r" % reply[:80])
    check(total == WS_FLOOD and count == n, "the backend got %d bytes in %d messages, %d in %d were sent"
          % (total, count, WS_FLOOD, n))
    check(digest == want.hexdigest(), "the %d bytes arrived altered (sha256 differs)" % total)
    check(in_flight <= WS_IN_FLIGHT_LIMIT,
          "when the client's writes finished (%.1fs) the backend had read only %.1f of %d MiB: %.1f MiB were held "
          "between them (at most %d MiB allowed: the sockets' buffers and the backend's queue; Envoy 1.40 leaves "
          "12-19 MiB), so the proxy did not push back on the client" % (
              sent, mib(WS_FLOOD - in_flight), WS_FLOOD >> 20, mib(in_flight), WS_IN_FLIGHT_LIMIT >> 20))
    check(grew <= WS_RSS_LIMIT, "%s's VmRSS grew by %.1f MiB (%.1f -> %.1f MiB) while %d MiB went to a slow reader; "
          "at most %d MiB allowed" % (suite.proxy, mib(grew), mib(rss.base), mib(rss.peak), WS_FLOOD >> 20,
                                      WS_RSS_LIMIT >> 20))
    return ("%d MiB to a slow reader in %.1fs (writes done after %.1fs with %.1f MiB unread), all bytes intact; "
            "VmRSS +%.1f MiB" % (WS_FLOOD >> 20, took, sent, mib(in_flight), mib(grew)))


WS_COUNTERS = ("downstream_rq_1xx", "downstream_cx_upgrades_total", "downstream_rq_ws_on_non_ws_route",
               "downstream_rq_4xx")


def ws_stats(t):
    """Two upgrades and one refused upgrade on listener ws: http.ws.downstream_rq_1xx +2 (required, Envoy counts
    the 101). Envoy's other upgrade counters (ENVOY["ws_stats"]) are compared and any difference named on the PASS
    line."""
    suite = t.suite
    before = stats_snapshot(t)
    a = ws_upgrade(t, suite.ws, "/echo?stats=1")
    ws_echo_check(a, "one", "a text message")
    during = stats_snapshot(t)
    b = ws_upgrade(t, suite.ws, "/echo?stats=2")
    ws_echo_check(b, "two", "a text message")
    a.close()
    b.close()
    try:
        ws_open(t, suite.ws, "/refused/stats").close()
        raise Fail("the upgrade to /refused/stats succeeded")
    except InvalidStatus:
        pass
    key = "http.ws.downstream_rq_1xx"

    def counted():
        st = stats_snapshot(t)
        return st if st.get(key, 0) - before.get(key, 0) >= 2 else None

    after = wait_for(counted, 2) or stats_snapshot(t)
    delta = {name: after.get("http.ws." + name, 0) - before.get("http.ws." + name, 0) for name in WS_COUNTERS}
    active = during.get("http.ws.downstream_cx_upgrades_active")
    t.note("http.ws. deltas: %s; while one WebSocket was open: downstream_rq_1xx +%d, downstream_cx_upgrades_active=%s"
           % (", ".join("%s +%d%s" % (k, v, "" if "http.ws." + k in after else " (no such counter)")
                        for k, v in delta.items()),
              during.get(key, 0) - before.get(key, 0), active))
    check(key in after, "%s: no such counter" % key)
    check(delta["downstream_rq_1xx"] == 2, "%s +%d for 2 upgrades (101), Envoy 1.40 +2"
          % (key, delta["downstream_rq_1xx"]))
    ref = ENVOY["ws_stats"]
    diffs = []
    for name, want in ref["deltas"].items():
        if "http.ws." + name not in after:
            diffs.append("http.ws.%s: no such counter, Envoy +%d" % (name, want))
        elif delta[name] != want:
            diffs.append("http.ws.%s +%d, Envoy +%d" % (name, delta[name], want))
    if active != ref["active_during"]:
        diffs.append("http.ws.downstream_cx_upgrades_active=%s during an upgrade, Envoy %d"
                     % ("absent" if active is None else active, ref["active_during"]))
    if during.get(key, 0) - before.get(key, 0) != 1:
        diffs.append("%s counted when the stream ends, Envoy counts the 101 when it is sent" % key)
    for d in diffs:
        t.note("differs from Envoy 1.40 (not required by this scenario): " + d)
    text = "%s +2 for 2 upgrades" % key
    return text + ("; differs from Envoy (not required): " + "; ".join(diffs) if diffs else "")


# ---- HTTP/2 tunnels: extended CONNECT (RFC 8441) and CONNECT -------------------------------------------------------
WS_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455's Sec-WebSocket-Accept for WS_KEY


def ext_connect_headers(port, path):
    return [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"), (":path", path),
            (":authority", "127.0.0.1:%d" % port), ("sec-websocket-version", "13"), ("sec-websocket-key", WS_KEY)]


def masked_close_frame(code):
    mask = b"\x5a\xa5\x0f\xf0"
    payload = struct.pack("!H", code)
    return bytes([0x88, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def h2_ws_extended(t):
    """WebSocket over an HTTP/2 stream (RFC 8441) on the ws listener (allow_connect: true)."""
    suite = t.suite
    ref = ENVOY["h2_ws_extended"]
    mark = suite.ws_backend.mark()
    c = H2Client(suite.ws)
    try:
        c.settle()
        setting = c.conn.remote_settings.get(8)
        check(setting == 1, "SETTINGS_ENABLE_CONNECT_PROTOCOL is %s on the allow_connect listener; Envoy 1.40 "
              "sends 1" % setting)
        sid = c.open_stream(ext_connect_headers(suite.ws, "/echo"))
        res = c.results[sid]
        c.read_until(lambda: res.status is not None or res.ended)
        check(res.status == 200, "the extended CONNECT got %s; Envoy 1.40 answers 200 for the backend's 101"
              % res.outcome())
        got = dict(res.headers)
        check(got.get("sec-websocket-accept") == WS_ACCEPT, "sec-websocket-accept is %r, want %r (the backend's)"
              % (got.get("sec-websocket-accept"), WS_ACCEPT))
        t.note("200 headers: %s" % ", ".join("%s: %s" % kv for kv in res.headers))
        msg = b"hello through an HTTP/2 stream"
        want = bytes([0x81, len(msg)]) + msg
        c.send(sid, masked_text_frame(msg))
        c.read_until(lambda: len(res.body) >= len(want) or res.ended)
        check(bytes(res.body[:len(want)]) == want, "the echo frame is %r, want %r" % (bytes(res.body), want))
        other = c.results[c.start("/plain")]
        c.read_until(lambda: other.ended)
        check(other.status is not None, "a GET on the same connection while the tunnel is open got %s"
              % other.outcome())
        c.send(sid, masked_close_frame(1000))
        c.read_until(lambda: res.ended)
        close_back = bytes(res.body[len(want):])
        check(close_back[:4] == b"\x88\x02\x03\xe8", "the backend's close frame did not come back whole: %r"
              % close_back)
        check(res.reset == ref["reset"], "after the backend closed, the stream ended with %s; Envoy 1.40 resets it "
              "with %s" % ("END_STREAM" if res.end_stream and not res.reset else res.outcome(), ref["reset"]))
    finally:
        c.close()
    # A refused upgrade: read frame by frame (Envoy sends its GOAWAY before the 403, which the h2 package will not
    # read past).
    r = RawConn(suite.ws)
    try:
        block = hpack.Encoder().encode(ext_connect_headers(suite.ws, "/refused/echo"))
        headers_frame = len(block).to_bytes(3, "big") + bytes([1, 0x4]) + (1).to_bytes(4, "big") + block
        # As a client must (RFC 8441 3): :protocol only once the proxy's SETTINGS allowed it (acknowledged first).
        r.send(PREFACE + client_settings(), time.monotonic() + IO_TIMEOUT)
        deadline = time.monotonic() + IO_TIMEOUT
        while not r.count("SETTINGS") and r.closed is None and time.monotonic() < deadline:
            r.pump(0.05)
        settings_ack = SettingsFrame(0, flags={"ACK"}).serialize()
        r.send(settings_ack + headers_frame, time.monotonic() + IO_TIMEOUT)
        r.drain(1)
    finally:
        r.close()
    decoder = hpack.Decoder()
    refused = None
    for name, _, sid, payload in r.frames:
        if name == "HEADERS" and sid == 1:
            refused = dict(decoder.decode(payload)).get(":status")
    t.note("/refused: :status %s; %s" % (refused, r.summary()))
    check(refused == str(ref["refused_status"]), "an extended CONNECT on route /refused (websocket enabled: false) "
          "got :status %s (%s); Envoy 1.40 answers %d" % (refused, r.summary(), ref["refused_status"]))
    handshakes, closes = suite.ws_backend.since(mark)
    check(handshakes == ["/echo"], "the backend's handshakes: %s, want ['/echo']" % handshakes)
    wait_for(lambda: suite.ws_backend.since(mark)[1], IO_TIMEOUT, "the backend to record its close")
    closes = suite.ws_backend.since(mark)[1]
    check(closes and closes[0][1] == 1000, "the backend's close: %s, want code 1000" % closes)
    return ("SETTINGS_ENABLE_CONNECT_PROTOCOL=1; /refused %s; 200 with the backend's accept; a frame echoed and a GET "
            "answered beside the tunnel; close 1000 both ways; the stream then reset %s" % (refused, res.reset))


def h2_ws_not_allowed(t):
    """Extended CONNECT on listener ws_off (no allow_connect): the setting is 0 and the request is refused."""
    suite = t.suite
    ref = ENVOY["h2_ws_not_allowed"]
    mark = suite.ws_backend.mark()
    c = H2Client(suite.ws_off)
    try:
        c.settle()
        setting = c.conn.remote_settings.get(8)
        check(setting == ref["setting"], "SETTINGS_ENABLE_CONNECT_PROTOCOL is %s without allow_connect; Envoy 1.40 "
              "sends %s" % (setting, ref["setting"]))
        sid = c.open_stream(ext_connect_headers(suite.ws_off, "/echo"))
        res = c.results[sid]
        c.read_until(lambda: res.ended or res.status is not None)
        outcome = "connection closed" if c.closed else res.outcome()
    finally:
        c.close()
    t.note("outcome: %s" % outcome)
    check(res.status is None, "the extended CONNECT was answered %s; Envoy 1.40 refuses it (%s)"
          % (res.status, ref["outcome"]))
    check(outcome in (ref["outcome"],) + ref["cosmetic"], "the extended CONNECT ended with %s; Envoy 1.40: %s"
          % (outcome, ref["outcome"]))
    check(not suite.ws_backend.since(mark)[0], "the backend got a handshake")
    still_alive(t)
    diffs = [] if outcome == ref["outcome"] else ["%s (Envoy 1.40: %s)" % (outcome, ref["outcome"])]
    return with_diffs("SETTINGS_ENABLE_CONNECT_PROTOCOL=%s; refused: %s" % (setting, outcome), diffs)


def h2_connect_tunnel(t):
    """CONNECT on HTTP/2 streams, terminated by the proxy (connect_config) to the tcp_echo cluster."""
    suite = t.suite
    ref = ENVOY["h2_connect_tunnel"]
    mark = suite.echo.mark()
    c = H2Client(suite.ws)
    try:
        c.settle()
        a = c.results[c.open_stream([(":method", "CONNECT"), (":authority", "tunnel-a.example:443")])]
        sid_a = max(c.results)
        c.read_until(lambda: a.status is not None or a.ended)
        check(a.status == 200, "CONNECT got %s; Envoy 1.40 answers 200" % a.outcome())
        c.send(sid_a, b"hello over h2")
        c.read_until(lambda: len(a.body) >= 13 or a.ended)
        check(bytes(a.body) == b"hello over h2", "tunnel a echoed %r" % bytes(a.body))
        b = c.results[c.open_stream([(":method", "CONNECT"), (":authority", "tunnel-b.example:443")])]
        sid_b = max(c.results)
        c.read_until(lambda: b.status is not None or b.ended)
        check(b.status == 200, "a second CONNECT on the connection got %s" % b.outcome())
        c.send(sid_b, b"bye")
        c.read_until(lambda: b.reset is not None, IO_TIMEOUT)
        check(bytes(b.body) == b"closing", "tunnel b got %r before it ended, want b'closing'" % bytes(b.body))
        ending_b = ("END_STREAM, " if b.end_stream else "") + ("RST_STREAM %s" % b.reset if b.reset else "")
        check(ending_b == ref["upstream_closed"], "when the backend closed tunnel b, the stream ended with %s; Envoy "
              "1.40: %s" % (ending_b or a.outcome(), ref["upstream_closed"]))
        c.send(sid_a, b"still here")
        c.read_until(lambda: len(a.body) >= 23 or a.ended)
        check(bytes(a.body) == b"hello over h2still here", "tunnel a after b ended: %r" % bytes(a.body))
        c.end(sid_a)
        c.read_until(lambda: a.ended)
        check(a.end_stream and a.reset is None, "after the client's END_STREAM, tunnel a ended with %s; Envoy 1.40 "
              "half-closes the upstream and ends the stream when it closes" % a.outcome())
    finally:
        c.close()
    wait_for(lambda: len(suite.echo.since(mark)) >= 2, IO_TIMEOUT, "the echo backend to see both tunnels end")
    endings = sorted(suite.echo.since(mark))
    check(endings == ["client EOF", "closed by us"], "the echo backend's connections ended: %s" % endings)
    return ("two tunnels on one connection: echo both ways; backend close -> %s; client END_STREAM -> upstream "
            "EOF -> END_STREAM" % ending_b)


def h2_connect_backpressure(t):
    """A CONNECT tunnel whose backend sends H2_FLOOD bytes to a client that reads nothing for H2_STALL s, then reads
    slowly: the stream's flow-control window must stop the proxy reading the backend (VmRSS bounded), every byte
    must arrive intact, and a GET on the same connection must be answered while the tunnel is stalled."""
    suite = t.suite
    rss = RssSampler(suite.proc.pid)
    c = H2Client(suite.ws, timeout=SCENARIO_LIMIT)
    try:
        c.settle()
        a = c.results[c.open_stream([(":method", "CONNECT"), (":authority", "flood.example:443")])]
        sid = max(c.results)
        c.read_until(lambda: a.status is not None or a.ended)
        check(a.status == 200, "CONNECT got %s" % a.outcome())
        c.send(sid, b"flood %d" % H2_FLOOD)
        # Stalled: the h2 client acknowledges (WINDOW_UPDATE) only what it reads, and it reads nothing now.
        time.sleep(H2_STALL)
        stalled_peak = max(rss.peak, vmrss(suite.proc.pid) or 0)
        other = c.results[c.start("/plain")]
        c.read_until(lambda: other.ended, IO_TIMEOUT)
        check(other.status is not None, "a GET beside the stalled tunnel got %s" % other.outcome())
        c.read_until(lambda: a.ended or len(a.body) >= H2_FLOOD, SCENARIO_LIMIT - 10)
    finally:
        c.close()
        rss.stop()
    body = bytes(a.body)
    pattern = bytes(range(256)) * 256
    intact = len(body) == H2_FLOOD and all(body[i:i + len(pattern)] == pattern[:len(body[i:i + len(pattern)])]
                                          for i in range(0, len(body), len(pattern)))
    growth = rss.peak - rss.base
    t.note("VmRSS %.1f MiB -> peak %.1f MiB (%.1f MiB while stalled), %d samples; %d bytes received, stream %s"
           % (mib(rss.base), mib(rss.peak), mib(stalled_peak), rss.samples, len(body), a.outcome()))
    check(len(body) == H2_FLOOD, "received %d of %d bytes (%s)" % (len(body), H2_FLOOD, a.outcome()))
    check(intact, "the bytes arrived altered")
    check(growth <= H2_RSS_LIMIT, "VmRSS grew %.1f MiB while %d MiB went to a stalled client (limit %d MiB): the "
          "tunnel did not "
          "hold the backend back" % (mib(growth), H2_FLOOD >> 20, H2_RSS_LIMIT >> 20))
    return "%d MiB through a tunnel stalled %ss, intact; VmRSS +%.1f MiB (limit %d MiB); a GET answered beside it" % (
        H2_FLOOD >> 20, H2_STALL, mib(growth), H2_RSS_LIMIT >> 20)


# ---- upstream protocol by ALPN -------------------------------------------------------------------------------------
def cluster_cx(t, cluster):
    st = admin_stats(t.suite.admin)
    return {k: st.get("cluster.%s.upstream_cx_%s_total" % (cluster, k), 0) for k in ("http1", "http2")}


def upstream_auto_h2(t):
    suite, b = t.suite, t.suite.alpn_both
    conns0, reqs0 = b.snapshot()
    # One request alone first: the cluster learns the host speaks HTTP/2; then 200 more as 16 concurrent streams.
    status, body = http_call(suite.upstream, "GET", "/first")
    check(status == 200 and body == "h2 /first", "HTTP/1.1 GET /first: %s %r (the backend answers `h2 <path>` "
          "over HTTP/2)" % (status, short(body, 80)))
    rc, out, err = run_tool(["h2load", "-n", "200", "-c", "2", "-m", "8",
                             "http://127.0.0.1:%d/load" % suite.upstream], timeout=30)
    codes = re.search(r"status codes: (\d+) 2xx", out)
    check(codes and int(codes.group(1)) == 200, "h2load: %s" % short(out or err, 300))
    conns, reqs = b.snapshot()
    conns, reqs = conns[len(conns0):], reqs[len(reqs0):]
    protocols = sorted(set(p for p, _, _, _ in reqs))
    check(len(reqs) == 201 and protocols == ["h2"],
          "the backend got %d requests over %s, expected 201 over HTTP/2" % (len(reqs), protocols))
    check(conns == ["h2"], "backend connections by ALPN: %s, expected one, h2 (streams share it)" % conns)
    cx = cluster_cx(t, "auto_h2")
    check(cx["http2"] >= 1 and cx["http1"] == 0,
          "cluster.auto_h2 upstream_cx_http2_total %s, upstream_cx_http1_total %s" % (cx["http2"], cx["http1"]))
    return "201 requests (HTTP/1.1 and h2c downstream) as HTTP/2 streams on 1 upstream connection (ALPN h2); %s" % (
        ", ".join("upstream_cx_%s_total=%d" % kv for kv in sorted(cx.items())))


def upstream_auto_h1(t):
    suite, b = t.suite, t.suite.alpn_h1
    conns0, reqs0 = b.snapshot()
    for i in range(5):
        status, body = http_call(suite.upstream, "GET", "/auto-h1/%d" % i)
        check(status == 200 and body == "http/1.1 /auto-h1/%d" % i, "GET /auto-h1/%d: %s %r" % (i, status, body))
    r = h2_request(suite.upstream, "/auto-h1/h2c")
    check(r.status == 200 and bytes(r.body) == b"http/1.1 /auto-h1/h2c", "h2c GET: %s %r" % (r.outcome(), r.body))
    conns, reqs = b.snapshot()
    conns, reqs = conns[len(conns0):], reqs[len(reqs0):]
    check(len(reqs) == 6 and all(p == "http/1.1" for p, _, _, _ in reqs),
          "the backend got %s" % [(p, path) for p, _, path, _ in reqs])
    check(conns and all(c == "http/1.1" for c in conns), "backend connections by ALPN: %s" % conns)
    cx = cluster_cx(t, "auto_h1")
    check(cx["http1"] >= 1 and cx["http2"] == 0,
          "cluster.auto_h1 upstream_cx_http1_total %s, upstream_cx_http2_total %s" % (cx["http1"], cx["http2"]))
    return "6 requests as HTTP/1.1 over %d connection(s) (ALPN http/1.1, the backend's only offer)" % len(conns)


def upstream_auto_upgrade(t):
    suite, b = t.suite, t.suite.alpn_both
    status, body = http_call(suite.upstream, "GET", "/learn")
    check(status == 200 and body == "h2 /learn", "GET /learn: %s %r" % (status, body))
    conns0, reqs0 = b.snapshot()
    s = socket.create_connection(("127.0.0.1", suite.upstream), timeout=IO_TIMEOUT)
    if suite.proxy == "envoy":
        # ENVOY: the upgrade goes as an extended CONNECT on the HTTP/2 connection (the backend's h2 stack does not
        # take it, so nothing comes back). Pilotfish does not send extended CONNECT upstream: see below.
        try:
            s.sendall(("GET /ws HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % WS_KEY).encode())
            s.settimeout(1)
            try:
                answer = s.recv(65536)
            except socket.timeout:
                answer = b""
        finally:
            s.close()
        conns, reqs = b.snapshot()
        seen = [(p, m, path) for p, m, path, _ in reqs[len(reqs0):]]
        check(seen == [("h2", "CONNECT", "/ws")], "the backend got %s (answer %r)" % (seen, answer[:100]))
        return "Envoy: the upgrade went as an extended CONNECT on the HTTP/2 connection (answer %r)" % answer[:40]
    try:
        s.sendall(("GET /ws HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % WS_KEY).encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            data = s.recv(65536)
            check(data, "closed before an answer: %r" % buf[:200])
            buf += data
        head, _, rest = buf.partition(b"\r\n\r\n")
        check(head.startswith(b"HTTP/1.1 101"), "answered %r" % head[:200])
        s.sendall(b"tunnelled bytes")
        while len(rest) < len(b"tunnelled bytes"):
            data = s.recv(65536)
            check(data, "the tunnel closed after %r" % rest)
            rest += data
        check(rest == b"tunnelled bytes", "echo %r" % rest)
    finally:
        s.close()
    conns, reqs = b.snapshot()
    conns, reqs = conns[len(conns0):], reqs[len(reqs0):]
    check([(p, path) for p, _, path, _ in reqs] == [("http/1.1", "/ws")],
          "the backend got %s" % [(p, path) for p, _, path, _ in reqs])
    check(conns == ["http/1.1"], "backend connections by ALPN: %s" % conns)
    return "with the host known for HTTP/2, the upgrade went on a new connection offering http/1.1 alone: 101, echo"


def upstream_auto_downgrade(t):
    suite = t.suite
    # A backend of its own: it offers h2 first, then, its connections dropped, http/1.1 alone.
    b = suite.alpn_switch
    b.set_alpn(["h2", "http/1.1"])
    status, body = http_call(suite.upstream, "GET", "/switch/one")
    check(status == 200 and body == "h2 /switch/one", "before the switch: %s %r" % (status, body))
    b.set_alpn(["http/1.1"])
    b.drop_connections()
    time.sleep(0.3)  # the proxy sees its HTTP/2 connection end
    seen = []
    for i in range(3):
        status, body = http_call(suite.upstream, "GET", "/switch/%d" % i)
        seen.append((status, body))
    check(all(st == 200 and bd == "http/1.1 /switch/%d" % i for i, (st, bd) in enumerate(seen)),
          "after the backend stopped offering h2: %s (backend connections by ALPN: %s)" % (seen, b.snapshot()[0]))
    b.set_alpn(["h2", "http/1.1"])
    return "h2 while offered; after the backend dropped h2, the next 3 requests answered over HTTP/1.1: %s" % (
        ", ".join(str(st) for st, _ in seen))


def upstream_downstream_tls(t):
    suite, b = t.suite, t.suite.alpn_both
    conns0, reqs0 = b.snapshot()
    status, body = http_call(suite.upstream, "GET", "/down/h1")
    check(status == 200 and body == "http/1.1 /down/h1", "HTTP/1.1 GET /down/h1: %s %r" % (status, body))
    r = h2_request(suite.upstream, "/down/h2")
    check(r.status == 200 and bytes(r.body) == b"h2 /down/h2", "h2c GET /down/h2: %s %r" % (r.outcome(), r.body))
    conns, reqs = b.snapshot()
    conns, reqs = conns[len(conns0):], reqs[len(reqs0):]
    check(sorted((p, path) for p, _, path, _ in reqs) == [("h2", "/down/h2"), ("http/1.1", "/down/h1")],
          "the backend got %s" % [(p, path) for p, _, path, _ in reqs])
    check(sorted(conns) == ["h2", "http/1.1"], "backend connections by ALPN: %s" % conns)
    return "use_downstream_protocol_config over TLS: HTTP/1.1 in, ALPN http/1.1 out; h2c in, ALPN h2 out"


# ---- runner ------------------------------------------------------------------------------------------------------
CASES = [
    ("h2c_get", h2c_get),
    ("h2c_post", h2c_post),
    ("tls_alpn", tls_alpn),
    ("http1_on_auto", http1_on_auto),
    ("h2c_upgrade_ignored", h2c_upgrade_ignored),
    ("nghttp_concurrent", nghttp_concurrent),
    ("h2load", h2load),
    ("split_preface", split_preface),
    ("bad_preface", bad_preface),
    ("preface_no_settings", preface_no_settings),
    ("settings_flood", settings_flood),
    ("rst_flood", rst_flood),
    ("rst_mixed", rst_mixed),
    ("oversized_headers", oversized_headers),
    ("malformed_blocks", malformed_blocks),
    ("stats", stats),
    ("ws_echo", ws_echo),
    ("ws_server_first", ws_server_first),
    ("ws_early_data", ws_early_data),
    ("ws_close", ws_close),
    ("ws_refused", ws_refused),
    ("ws_route_timeout", ws_route_timeout),
    ("ws_backpressure", ws_backpressure),
    ("ws_stats", ws_stats),
    ("h2_ws_extended", h2_ws_extended),
    ("h2_ws_not_allowed", h2_ws_not_allowed),
    ("h2_connect_tunnel", h2_connect_tunnel),
    ("h2_connect_backpressure", h2_connect_backpressure),
    ("upstream_auto_h2", upstream_auto_h2),
    ("upstream_auto_h1", upstream_auto_h1),
    ("upstream_auto_upgrade", upstream_auto_upgrade),
    ("upstream_auto_downgrade", upstream_auto_downgrade),
    ("upstream_downstream_tls", upstream_downstream_tls),
]


def scenario(fn):
    def run(t):
        suite = t.suite
        suite.start()
        try:
            return fn(t)
        except Fail as e:
            dead = suite.proxy_state()
            raise Fail("%s; %s" % (e, dead) if dead else str(e))

    run.__name__ = fn.__name__
    run.__doc__ = fn.__doc__
    return run


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--proxy", choices=("envoy", "sidecar"), default="sidecar")
    ap.add_argument("--bin", help="the proxy binary (not needed with --list)")
    ap.add_argument("--only", action="append", default=[], help="scenario name or pattern with * and ?")
    ap.add_argument("names", nargs="*", help="scenario names or patterns (same as --only)")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true", help="print durations and observations")
    a = ap.parse_intermixed_args(argv)
    if not (a.bin or a.list):
        ap.error("--bin is required")
    scenarios = [(name, scenario(fn)) for name, fn in CASES]
    if not a.list:
        print("http2: %s %s" % (a.proxy, a.bin), file=sys.stderr, flush=True)
    forwarded = ["--proxy", a.proxy, "--bin", a.bin or "/bin/true"]
    forwarded += (["--list"] if a.list else []) + (["-v"] if a.verbose else []) + a.only + a.names
    return run_suite("http2", __doc__, scenarios, "pf-http2", suite_class=Http2Suite,
                     scenario_limit=SCENARIO_LIMIT, argv=forwarded)


if __name__ == "__main__":
    raise SystemExit(main())
