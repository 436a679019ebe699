#!/usr/bin/env python3
"""End-to-end gRPC interop tests: grpc's standard interop cases (doc/interop-test-descriptions.md in grpc/grpc),
run by a grpcio client through the proxy under test to a grpcio interop TestService server, over plaintext HTTP/2
(h2c) and over TLS with ALPN h2; one case of Pilotfish's own, flow_control (below); and gRPC-Web cases through
envoy.filters.http.grpc_web, written by hand over HTTP/1.1 (setup `grpcweb`, below).

Usage: python3 scripts/lib/grpc_interop_suite.py (--proxy envoy|sidecar --bin PATH | --direct)
           [--setup h2c|tls|grpcweb|all] [--flow-bytes SIZE] [NAME|PATTERN]... [--only NAME]... [--list] [-v]
(normally through scripts/e2e-grpc, which installs grpcio, grpcio-tools, protobuf and cryptography from PyPI).

The service: scripts/lib/grpc_interop/interop_test.proto, a minimal grpc.testing.TestService written from the
interop descriptions; its Python stubs are generated at run time with grpcio-tools into a temporary directory.
The server runs in this process on a free 127.0.0.1 port, plaintext h2c: EmptyCall, UnaryCall (response_size,
Echo Status, Echo Metadata), StreamingInputCall, StreamingOutputCall (sizes, interval_us) and FullDuplexCall
(sizes, interval_us, Echo Status, Echo Metadata); UnimplementedCall is left unimplemented (the generated default
answers UNIMPLEMENTED) and grpc.testing.UnimplementedService is not registered at all. The same server also has
grpc.testing.FlowControlService (not an interop service): StreamBytes streams total_bytes of zeros in responses of
chunk_size, as fast as flow control lets it, counting what it sent and how long it waited for its sends. Echo Status
on UnaryCall sends the handler's (empty) SimpleResponse and then the status (HEADERS, DATA, trailers); on
StreamingOutputCall it ends the call before any response, which grpcio sends as a trailers-only response.

The proxy: one Envoy v3 bootstrap per setup, the same file for Envoy and the sidecar: a static listener on a free
127.0.0.1 port with an http_connection_manager (codec_type AUTO, one virtual host `*`, prefix `/` to cluster
grpc_backend, with prefix /grpc.testing.FlowControlService/ before it to the same cluster without a route timeout,
the router filter), a STATIC cluster grpc_backend on the server with explicit HTTP/2
(typed_extension_protocol_options; windows as Envoy's edge best practices set them: initial_stream_window_size
64 KiB, initial_connection_window_size 1 MiB), and an admin on a free port. Setup `h2c`: the listener is plaintext
(gRPC clients speak HTTP/2 with prior knowledge). Setup `tls`: the listener also has a DownstreamTlsContext (a server
certificate from tls_kit's Pki, made at run time, alpn_protocols [h2, http/1.1]); the client uses
grpc.secure_channel with the test CA as root and ssl_target_name_override server.example.test. Setup `grpcweb`:
the h2c listener with envoy.filters.http.grpc_web (typed_config envoy.extensions.filters.http.grpc_web.v3.GrpcWeb)
before the router, no CORS filter (no case is a browser, and no case sends a preflight). The proxy of a setup is
started at that setup's first case and kept for its other cases; if it will not start (a proxy that does not know
the grpc_web filter refuses the bootstrap), each case of the setup fails with the proxy's reason. With --direct
the same cases run straight against the server (its plaintext port, and for `tls` a TLS port it also opens with
the same certificate), to tell a proxy failure from a test bug; `grpcweb` needs the proxy's filter and is left out
(--setup grpcweb --direct is refused).

Scenarios are named SETUP/CASE (h2c/empty_unary ... tls/timeout_on_sleeping_server); a NAME or PATTERN without a
`/` selects that case in every selected setup (`large_unary`, `cancel_*`). Cases: empty_unary, large_unary,
client_streaming, server_streaming, ping_pong, empty_stream, custom_metadata, status_code_and_message,
special_status_message, unimplemented_method, unimplemented_service, cancel_after_begin,
cancel_after_first_response, timeout_on_sleeping_server; each asserts what the interop description asserts (and,
where the description leaves clients free to, that payload bodies are zeros). Every case uses a channel of its own
(its own connection) that must connect within 5 s, every call has a deadline (10 s unless the case says
otherwise), a case is failed after 30 s, and cases not started within 120 s of the run's start, or of a setup
whose last 3 cases could not connect, are failed without running. With -v each case also notes what the server saw
(the call, how it ended, request headers the proxy added) and the proxy's reset/timeout counters that moved.

flow_control (h2c only, run after every other case; over TLS it would only double the time): per-stream flow
control through the proxy. On the case's one channel (one HTTP/2 connection to the proxy, one from the proxy to the
server), a StreamBytes call of --flow-bytes (default $GRPC_FLOW_BYTES, else 1 GiB, the volume the issue asks for;
scripts/test sets 256 MiB: about 10 s against a debug sidecar) in 64 KiB responses, read by a slow reader (a pause
of 100 ms after each response). Once the server waits for window, 50 UnaryCalls (1 KiB each way, 50 ms apart) on
the same channel must each be answered within 1 s, the server must have spent at least half of that phase waiting
for window (the stream was stalled, not merely slow), and the stream must not have ended. Then the reader drains the
rest (1 ms after each response, at most 64 MiB/s): every byte, all zeros, status OK. Meanwhile the proxy's VmRSS
(/proc/PID/status, every 50 ms from just before the stream to its end) may not grow by 64 MiB or more over its
value before the stream. The case's bound is 30 s + the volume at 4 MiB/s (the call's deadline too). With
--direct there is no proxy and no RSS check.

The grpcweb cases (setup `grpcweb` only; named grpcweb/grpcweb_*, so `grpcweb_*` selects them): a gRPC-Web client
written by hand with http.client, as a browser's grpc-web-javascript speaks it: HTTP/1.1 POST
/grpc.testing.TestService/METHOD with content-type application/grpc-web+proto (binary) or application/grpc-web-text
(the framed body base64-encoded, and `accept: application/grpc-web-text` to get a text response, as the JS client
sends it: Envoy answers in text only when accept asks for it), x-grpc-web: 1, x-user-agent:
grpc-web-javascript/0.1, a content-length, and a body of gRPC frames (flag byte, 4-byte big-endian length, the
message serialized with the generated classes). A response body is data frames (flag 0x00) then one trailer frame
(flag 0x80) whose payload is `name:value` lines, each ended by CRLF; a text body is base64, decoded 4 characters at
a time with padding ending a chunk (concatenated padded chunks, as the gRPC-Web protocol allows), and must also be
encoded frame by frame as Envoy encodes it (each frame's own base64, padded). What is required is what Envoy 1.40
answers (WEB_* and *_TRAILER below; Envoy's grpc_web_filter.cc):
  grpcweb_unary_binary: UnaryCall for 1000 bytes: 200, content-type application/grpc-web+proto, no content-length
    (chunked), one data frame (a SimpleResponse of 1000 zeros), then the trailer frame
    `grpc-status:0` CRLF `grpc-message:` CRLF exactly (the upstream's trailers in its order, lower-case).
  grpcweb_unary_text: the same in application/grpc-web-text with accept text: content-type
    application/grpc-web-text+proto, each frame base64-encoded on its own (padded); then a text request without
    accept, answered in binary (application/grpc-web+proto).
  grpcweb_error_status: UnaryCall with Echo Status 2 "test status message": 200, the status in the trailer frame
    after one empty data frame, nothing in the headers; the interop special_status_message comes through
    percent-encoded as the server sent it; StreamingOutputCall with Echo Status (trailers-only upstream): 200,
    grpc-status and grpc-message in the HTTP headers, content-length: 0, no body (no trailer frame).
  grpcweb_unimplemented: UnimplementedCall (trailers-only 12), binary and text: 200, content-type +proto /
    text+proto, grpc-status: 12 and grpc-message in the headers, content-length: 0, empty body.
  grpcweb_server_streaming: StreamingOutputCall for 31415/9/2653/58979 bytes, binary and text: 4 data frames, then
    the trailer frame.
  grpcweb_large: 271828 bytes up and 1 MiB down in text: one data frame (one base64 run of 1398120 characters),
    then the trailer frame.
  grpcweb_invalid_base64: text bodies Envoy cannot decode (a bad character, a length not a multiple of 4, padding
    inside: two padded chunks): 400, content-type application/grpc-web-text+proto, grpc-status: 13, grpc-message:
    Bad gRPC-web request, invalid base64 data., content-length: 0, empty body, connection: close.
  grpcweb_non_grpcweb_passthrough: grpcio over h2c through the same listener (the filter leaves non-gRPC-Web
    requests alone): a UnaryCall, a server stream, and an Echo Status error with its message.
  grpcweb_stats: after 2 UnaryCalls (status 0 and 2) and an UnimplementedCall over gRPC-Web, and a UnaryCall over
    h2c, Envoy's per-method counters cluster.grpc_backend.grpc-web.grpc.testing.TestService.METHOD.{STATUS,
    success,failure,total} move by exactly those calls (the h2c one not counted); a proxy with no grpc-web counters
    at all passes with a note (they are in Envoy's filter, not in its documentation).

Output: one line per scenario (`PASS name: what was seen` or `FAIL name: reason`), then
`grpc: N passed, N failed, 0 skipped`; exit status 1 if any failed. Only loopback addresses are used; every
process is stopped by PID and the server, channels and temporary directories closed, pass or fail (a SIGINT or
SIGTERM during cleanup is held until the cleanup is done). About 6 s against Envoy for both setups and 2 s for
grpcweb, plus flow_control: about 10 s with 256 MiB, 25 to 40 s with 1 GiB.
"""

import argparse
import base64
import http.client
import logging
import os
import shutil
import signal
import struct
import sys
import tempfile
import threading
import time
from concurrent import futures

import grpc

from suite_common import (
    Fail,
    ScenarioContext,
    Suite,
    admin_stats,
    check,
    free_ports,
    main as run_suite,
    short,
    sockaddr,
    wait_for,
)

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_DIR = os.path.join(HERE, "grpc_interop")
PROTO = "interop_test.proto"

CALL_TIMEOUT = 10  # seconds: the deadline of every call (but timeout_on_sleeping_server's 1 ms)
READY_TIMEOUT = 5  # seconds for a case's channel to connect before its procedure starts
UNREADY_LIMIT = 3  # consecutive cases of a setup whose channel never connected: the setup's others are not run
SCENARIO_LIMIT = 30  # seconds a case may take before the runner fails it (SIGALRM)
RUN_LIMIT = 120  # seconds after the run's start when cases still to come are failed without running
PIPE_LIMIT = 20  # seconds a request stream waits for its next message before it half-closes by itself
SERVER_NAME = "server.example.test"  # in the test server certificate's SANs (tls_kit.Pki)
SETUPS = ("h2c", "tls", "grpcweb")
INTEROP_SETUPS = ("h2c", "tls")  # where CASES run; grpcweb runs WEB_CASES

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
DOWNSTREAM_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
HTTP_OPTIONS = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
GRPC_WEB = "type.googleapis.com/envoy.extensions.filters.http.grpc_web.v3.GrpcWeb"

ECHO_INITIAL = "x-grpc-test-echo-initial"
ECHO_TRAILING = "x-grpc-test-echo-trailing-bin"
INITIAL_VALUE = "test_initial_metadata_value"
TRAILING_VALUE = b"\xab\xab\xab"

pb = pbg = None  # the generated message and service modules (load_stubs)
RUN_START = time.monotonic()
STATUS = {c.value[0]: c for c in grpc.StatusCode}


# ---- generated code -----------------------------------------------------------------------------------
def load_stubs():
    """Generates the Python stubs of interop_test.proto into a temporary directory, imports them and removes the
    directory (the modules stay loaded)."""
    global pb, pbg
    from grpc_tools import protoc

    out = tempfile.mkdtemp(prefix="pf-grpc-stubs-")
    try:
        rc = protoc.main(["grpc_tools.protoc", "-I", PROTO_DIR, "--python_out=" + out, "--grpc_python_out=" + out,
                          os.path.join(PROTO_DIR, PROTO)])
        if rc != 0:
            raise SystemExit("grpc: protoc failed on %s (status %d)" % (os.path.join(PROTO_DIR, PROTO), rc))
        sys.path.insert(0, out)
        try:
            import interop_test_pb2
            import interop_test_pb2_grpc
        finally:
            sys.path.remove(out)
        pb, pbg = interop_test_pb2, interop_test_pb2_grpc
    finally:
        shutil.rmtree(out, ignore_errors=True)


def zeros(n):
    return b"\0" * n


# ---- the interop server -------------------------------------------------------------------------------
class CallRecord:
    """One call as the server saw it: method, request metadata, how the handler ended and whether gRPC reported
    the call as cancelled (a client RST_STREAM, an expired grpc-timeout or a lost connection). A StreamBytes call
    also counts its progress: the payload bytes whose send completed, and the time the handler spent waiting for
    its sends to complete (grpcio's server takes the next response only when the previous one has gone into the
    HTTP/2 stream, which its flow-control window allows), with `waiting_since` set while it waits."""

    def __init__(self, method, context):
        self.method = method
        self.metadata = list(context.invocation_metadata())
        left = context.time_remaining()
        self.deadline_ms = None if left is None or left > 1e9 else int(left * 1000)  # from grpc-timeout
        self.end = "running"
        self.cancelled = None
        self.done = threading.Event()
        self.sent = 0
        self.send_wait = 0.0
        self.waiting_since = None
        self._context = context
        context.add_callback(self._finished)

    def _finished(self):
        # grpcio has no public "was this call cancelled"; its RPC state says so (observational only).
        state = getattr(self._context, "_state", None)
        self.cancelled = getattr(state, "client", None) == "cancelled"
        self.done.set()

    def blocked(self, now):
        """Seconds spent waiting for sends to complete so far, the wait in progress included."""
        since = self.waiting_since
        return self.send_wait + (now - since if since is not None else 0.0)

    def describe(self):
        how = self.end
        if self.done.is_set() and self.cancelled:
            how += ", cancelled"
        elif not self.done.is_set():
            how += ", not finished"
        return "%s (%s)" % (self.method.rsplit("/", 1)[-1], how)


def echo_metadata(context):
    """Echo Metadata: x-grpc-test-echo-initial back as initial metadata, x-grpc-test-echo-trailing-bin as trailing."""
    md = list(context.invocation_metadata())
    initial = [(k, v) for k, v in md if k == ECHO_INITIAL]
    trailing = [(k, v) for k, v in md if k == ECHO_TRAILING]
    if initial:
        context.send_initial_metadata(initial)
    if trailing:
        context.set_trailing_metadata(trailing)


def echo_status(request, context):
    """Echo Status: a non-zero response_status ends the call with that code and message. True if it did."""
    st = request.response_status
    if st.code == 0:
        return False
    context.set_code(STATUS.get(st.code, grpc.StatusCode.UNKNOWN))
    context.set_details(st.message)
    return True


def make_servicer(server):
    class TestService(pbg.TestServiceServicer):
        """The interop TestService; UnimplementedCall is deliberately not overridden."""

        def EmptyCall(self, request, context):
            rec = server.record("EmptyCall", context)
            rec.end = "ok"
            return pb.Empty()

        def UnaryCall(self, request, context):
            rec = server.record("UnaryCall", context)
            echo_metadata(context)
            if request.response_type != pb.COMPRESSABLE:
                rec.end = "INVALID_ARGUMENT"
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "unsupported response_type")
            if echo_status(request, context):
                rec.end = "status %d" % request.response_status.code
                return pb.SimpleResponse()
            rec.end = "ok"
            return pb.SimpleResponse(payload=pb.Payload(body=zeros(request.response_size)))

        def StreamingInputCall(self, request_iterator, context):
            rec = server.record("StreamingInputCall", context)
            total = 0
            try:
                for req in request_iterator:
                    total += len(req.payload.body)
            except grpc.RpcError:
                rec.end = "request stream broken after %d bytes" % total
                return pb.StreamingInputCallResponse()
            rec.end = "ok, %d bytes" % total
            return pb.StreamingInputCallResponse(aggregated_payload_size=total)

        def StreamingOutputCall(self, request, context):
            rec = server.record("StreamingOutputCall", context)
            if echo_status(request, context):
                rec.end = "status %d" % request.response_status.code
                return
            for n, p in enumerate(request.response_parameters):
                if p.interval_us:
                    time.sleep(p.interval_us / 1e6)
                if not context.is_active():
                    rec.end = "inactive after %d responses" % n
                    return
                yield pb.StreamingOutputCallResponse(payload=pb.Payload(body=zeros(p.size)))
            rec.end = "ok, %d responses" % len(request.response_parameters)

        def FullDuplexCall(self, request_iterator, context):
            rec = server.record("FullDuplexCall", context)
            echo_metadata(context)
            sent = 0
            try:
                for req in request_iterator:
                    if echo_status(req, context):
                        rec.end = "status %d" % req.response_status.code
                        return
                    for p in req.response_parameters:
                        if p.interval_us:
                            time.sleep(p.interval_us / 1e6)
                        yield pb.StreamingOutputCallResponse(payload=pb.Payload(body=zeros(p.size)))
                        sent += 1
            except grpc.RpcError:
                rec.end = "request stream broken after %d responses" % sent
                return
            rec.end = "ok, %d responses" % sent

    return TestService()


def make_flow_servicer(server):
    class FlowControlService(pbg.FlowControlServiceServicer):
        """Pilotfish's bulk stream for the flow_control case (not an interop service)."""

        def StreamBytes(self, request, context):
            rec = server.record("StreamBytes", context)
            total, size = request.total_bytes, request.chunk_size
            if total < 0 or size <= 0:
                rec.end = "INVALID_ARGUMENT"
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "total_bytes < 0 or chunk_size <= 0")
            full = pb.StreamingOutputCallResponse(payload=pb.Payload(body=zeros(size)))
            while rec.sent < total:
                if not context.is_active():
                    rec.end = "inactive after %d bytes" % rec.sent
                    return
                n = min(size, total - rec.sent)
                rec.waiting_since = time.monotonic()
                yield full if n == size else pb.StreamingOutputCallResponse(payload=pb.Payload(body=zeros(n)))
                # Back here only once that response's send completed.
                rec.send_wait += time.monotonic() - rec.waiting_since
                rec.waiting_since = None
                rec.sent += n
            rec.end = "ok, %d bytes" % rec.sent

    return FlowControlService()


class LogRecords(logging.Handler):
    """grpcio's server log (a handler's exception, e.g. the generated UnimplementedCall's NotImplementedError),
    kept for the notes instead of printed as a traceback."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines = []

    def emit(self, record):
        self.lines.append(short(record.getMessage(), 200))


class InteropServer:
    """The TestService on a free 127.0.0.1 port, plaintext; with `cred` (a tls_kit Cred) also on a TLS port."""

    def __init__(self, cred=None):
        self.lock = threading.Lock()
        self.calls = []
        self.log = LogRecords()
        logger = logging.getLogger("grpc._server")
        logger.addHandler(self.log)
        logger.propagate = False
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=32), options=[("grpc.so_reuseport", 0)])
        pbg.add_TestServiceServicer_to_server(make_servicer(self), self.server)
        pbg.add_FlowControlServiceServicer_to_server(make_flow_servicer(self), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.tls_port = None
        if cred is not None:
            with open(cred.key, "rb") as k, open(cred.cert, "rb") as c:
                creds = grpc.ssl_server_credentials([(k.read(), c.read())])
            self.tls_port = self.server.add_secure_port("127.0.0.1:0", creds)
        check(self.port and (cred is None or self.tls_port), "the interop server could not bind 127.0.0.1")
        self.server.start()

    def record(self, method, context):
        rec = CallRecord(method, context)
        with self.lock:
            self.calls.append(rec)
        return rec

    def mark(self):
        with self.lock:
            return len(self.calls), len(self.log.lines)

    def since(self, mark):
        with self.lock:
            return self.calls[mark[0]:], self.log.lines[mark[1]:]

    def close(self):
        self.server.stop(None).wait(5)
        logging.getLogger("grpc._server").removeHandler(self.log)


# ---- the proxy's bootstrap ----------------------------------------------------------------------------
def bootstrap(admin_port, listen_port, backend_port, cred=None, grpc_web=False):
    """The one bootstrap both proxies get: h2c listener (with `cred`, TLS with ALPN h2, http/1.1) to the HTTP/2
    cluster grpc_backend; with `grpc_web`, envoy.filters.http.grpc_web before the router."""
    hcm = {
        "@type": HCM,
        "stat_prefix": "grpc_ingress",
        "codec_type": "AUTO",
        "route_config": {
            "name": "grpc_route",
            "virtual_hosts": [{"name": "grpc", "domains": ["*"], "routes": [
                # The flow_control case's stream outlasts the default 15 s route timeout when run with 1 GiB.
                {"match": {"prefix": "/grpc.testing.FlowControlService/"},
                 "route": {"cluster": "grpc_backend", "timeout": "0s"}},
                {"match": {"prefix": "/"}, "route": {"cluster": "grpc_backend"}}]}],
        },
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}],
    }
    if grpc_web:
        hcm["http_filters"].insert(0, {"name": "envoy.filters.http.grpc_web", "typed_config": {"@type": GRPC_WEB}})
    chain = {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}
    if cred is not None:
        chain["transport_socket"] = {"name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": DOWNSTREAM_TLS,
            "common_tls_context": {
                "tls_certificates": [{"certificate_chain": {"filename": cred.cert},
                                      "private_key": {"filename": cred.key}}],
                "alpn_protocols": ["h2", "http/1.1"],
            }}}
    cluster = {
        "name": "grpc_backend",
        "type": "STATIC",
        "connect_timeout": "1s",
        # Windows as Envoy's edge best practices set them. With Envoy's own defaults (256 MiB) Envoy holds 30-40
        # MiB of flow_control's stalled stream (+48 to +61 MiB VmRSS, at the case's bound); with a connection window
        # no larger than the stream window, the stalled stream takes all of it and the unary calls beside it stall.
        "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": HTTP_OPTIONS, "explicit_http_config": {"http2_protocol_options": {
                "initial_stream_window_size": 65536, "initial_connection_window_size": 1048576}}}},
        "load_assignment": {"cluster_name": "grpc_backend",
                            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": sockaddr(backend_port)}}]}]},
    }
    return {
        "admin": {"address": sockaddr(admin_port)},
        "static_resources": {
            "listeners": [{"name": "grpc_ingress", "address": sockaddr(listen_port), "filter_chains": [chain]}],
            "clusters": [cluster],
        },
    }


# ---- suite ---------------------------------------------------------------------------------------------
class Target:
    """Where a setup's cases connect: a port, and the proxy (Proc) and admin port when there is one."""

    def __init__(self, port, proc=None, admin=None, config=None):
        self.port, self.proc, self.admin, self.config = port, proc, admin, config


class GrpcSuite(Suite):
    """Suite-wide: the interop server, the test PKI, one proxy per setup (started at the setup's first case,
    stopped by PID when the run ends) and, per setup, the reason its proxy did not start."""

    direct = False

    def __init__(self, proxy, binary, verbose):
        super().__init__(proxy, binary, verbose)
        self.shared = None  # a ScenarioContext holding the proxies and the certificates
        self.pki = None
        self.server = None
        self.targets = {}
        self.broken = {}  # setup -> why its cases are failed without running
        self.unready = {}  # setup -> consecutive cases whose channel never connected

    def context(self):
        if self.shared is None:
            self.shared = ScenarioContext(self, "shared", self.tmp_prefix)
        return self.shared

    def certs(self):
        if self.pki is None:
            from tls_kit import Pki  # needs `cryptography`; only the tls setup does

            d = os.path.join(self.context().dir, "pki")
            os.makedirs(d)
            self.pki = Pki(d)
        return self.pki

    def backend(self, setup):
        if self.server is None:
            cred = self.certs().server if self.direct and "tls" in self.setups else None
            self.server = InteropServer(cred)
        return self.server

    def target(self, setup):
        if setup in self.broken:
            raise Fail(self.broken[setup])
        if setup in self.targets:
            return self.targets[setup]
        server = self.backend(setup)
        if self.direct:
            tgt = Target(server.tls_port if setup == "tls" else server.port)
        else:
            cred = self.certs().server if setup == "tls" else None
            admin, listen = free_ports(2)
            try:
                doc = bootstrap(admin, listen, server.port, cred, grpc_web=setup == "grpcweb")
                proc, path = self.context().launch_proxy(doc, admin, [listen])
            except Fail as e:
                self.broken[setup] = "%s setup: %s" % (setup, e)
                raise Fail(self.broken[setup])
            tgt = Target(listen, proc, admin, path)
        self.targets[setup] = tgt
        return tgt

    def proxy_state(self, setup):
        """Why the setup's proxy is gone ('' while it runs, or without a proxy)."""
        tgt = self.targets.get(setup)
        if tgt is None or tgt.proc is None or tgt.proc.alive():
            return ""
        return "%s exited with status %s: %s" % (self.proxy, tgt.proc.popen.returncode, tgt.proc.stderr_tail(300))

    def close(self):
        with deferred_signals(redeliver=False):
            self._close()

    def _close(self):
        problems = []
        if self.shared is not None:
            problems += self.shared.close()
        if self.server is not None:
            self.server.close()
        if problems:
            print("grpc: cleanup: %s" % "; ".join(problems), file=sys.stderr, flush=True)


class Client:
    def __init__(self, channel, port, setup):
        self.channel = channel
        self.port = port
        self.setup = setup
        self.stub = pbg.TestServiceStub(channel)
        self.unimplemented = pbg.UnimplementedServiceStub(channel)
        self.flow = pbg.FlowControlServiceStub(channel)


def open_channel(t, setup, port):
    """A channel of the case's own (its own subchannel, so its own connection), closed with the case."""
    opts = [("grpc.use_local_subchannel_pool", 1), ("grpc.enable_retries", 0)]
    target = "127.0.0.1:%d" % port
    if setup == "tls":
        with open(t.suite.certs().ca.cert, "rb") as f:
            creds = grpc.ssl_channel_credentials(root_certificates=f.read())
        ch = grpc.secure_channel(target, creds, options=opts + [("grpc.ssl_target_name_override", SERVER_NAME)])
    else:
        ch = grpc.insecure_channel(target, options=opts)
    t.on_close("channel to %s" % target, ch.close)
    try:
        grpc.channel_ready_future(ch).result(timeout=READY_TIMEOUT)
    except grpc.FutureTimeoutError:
        via = "directly" if t.suite.direct else "through %s" % t.suite.proxy
        reason = "no HTTP/2 connection %s to %s within %ds (channel never READY)" % (via, target, READY_TIMEOUT)
        t.suite.unready[setup] = t.suite.unready.get(setup, 0) + 1
        if t.suite.unready[setup] >= UNREADY_LIMIT:
            t.suite.broken[setup] = "not run: %d %s cases had %s" % (UNREADY_LIMIT, setup, reason)
        raise Fail(reason)
    t.suite.unready[setup] = 0
    return Client(ch, port, setup)


class Pipe:
    """A request stream the case feeds one message at a time; `close()` half-closes it. It also ends by itself
    after PIPE_LIMIT seconds without a message, so that no grpcio thread waits on it forever."""

    def __init__(self):
        self.cond = threading.Condition()
        self.items = []
        self.closed = False

    def add(self, msg):
        with self.cond:
            self.items.append(msg)
            self.cond.notify_all()

    def close(self):
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def __iter__(self):
        return self

    def __next__(self):
        with self.cond:
            deadline = time.monotonic() + PIPE_LIMIT
            while not self.items and not self.closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(left)
            if self.items:
                return self.items.pop(0)
            raise StopIteration


def pipe(t):
    p = Pipe()
    t.on_close("request stream", p.close)
    return p


def err(e):
    """`CODE: details` of an RPC error, on one line."""
    code = e.code() if hasattr(e, "code") else None
    details = e.details() if hasattr(e, "details") else str(e)
    return "%s: %s" % (code.name if code else "?", short(repr(details or ""), 300))


def expect_error(fn, what):
    """Runs `fn`, which must fail with an RPC error; returns it."""
    try:
        fn()
    except grpc.RpcError as e:
        return e
    raise Fail("%s succeeded; an error status was expected" % what)


def md_get(md, key):
    return [v for k, v in (md or ()) if k == key]


def md_keys(md):
    return sorted({k for k, _ in (md or ())})


def out_req(sizes=(), body=0, status=None):
    req = pb.StreamingOutputCallRequest(response_type=pb.COMPRESSABLE,
                                        response_parameters=[pb.ResponseParameters(size=n) for n in sizes])
    if body:
        req.payload.body = zeros(body)
    if status is not None:
        req.response_status.code, req.response_status.message = status
    return req


def check_body(resp, size, what):
    body = resp.payload.body
    check(len(body) == size, "%s: payload body of %d bytes, expected %d" % (what, len(body), size))
    check(body == zeros(size), "%s: payload body is not all zeros" % what)


# ---- the interop cases ---------------------------------------------------------------------------------
def empty_unary(t, c):
    resp = c.stub.EmptyCall(pb.Empty(), timeout=CALL_TIMEOUT)
    check(resp is not None and isinstance(resp, pb.Empty), "EmptyCall answered %r, not an Empty" % (resp,))
    return "EmptyCall returned an Empty"


LARGE_REQUEST, LARGE_RESPONSE = 271828, 314159


def large_request():
    return pb.SimpleRequest(response_type=pb.COMPRESSABLE, response_size=LARGE_RESPONSE,
                            payload=pb.Payload(body=zeros(LARGE_REQUEST)))


def large_unary(t, c):
    resp = c.stub.UnaryCall(large_request(), timeout=CALL_TIMEOUT)
    check_body(resp, LARGE_RESPONSE, "UnaryCall")
    return "UnaryCall: %d bytes up, %d zero bytes back" % (LARGE_REQUEST, LARGE_RESPONSE)


STREAM_SIZES_IN = (27182, 8, 1828, 45904)
STREAM_SIZES_OUT = (31415, 9, 2653, 58979)


def client_streaming(t, c):
    reqs = [pb.StreamingInputCallRequest(payload=pb.Payload(body=zeros(n))) for n in STREAM_SIZES_IN]
    resp = c.stub.StreamingInputCall(iter(reqs), timeout=CALL_TIMEOUT)
    check(resp.aggregated_payload_size == 74922,
          "aggregated_payload_size %d, expected 74922" % resp.aggregated_payload_size)
    return "4 messages (%s bytes), aggregated_payload_size 74922" % "+".join(map(str, STREAM_SIZES_IN))


def server_streaming(t, c):
    call = c.stub.StreamingOutputCall(out_req(STREAM_SIZES_OUT), timeout=CALL_TIMEOUT)
    got = []
    for resp in call:
        got.append(len(resp.payload.body))
        check(resp.payload.body == zeros(got[-1]), "response %d: payload body is not all zeros" % len(got))
    check(call.code() == grpc.StatusCode.OK, "status %s" % call.code())
    check(tuple(got) == STREAM_SIZES_OUT, "response sizes %s, expected %s" % (got, list(STREAM_SIZES_OUT)))
    return "4 responses of %s bytes, OK" % "/".join(map(str, got))


def ping_pong(t, c):
    p = pipe(t)
    call = c.stub.FullDuplexCall(p, timeout=CALL_TIMEOUT)
    for i, (up, down) in enumerate(zip(STREAM_SIZES_IN, STREAM_SIZES_OUT)):
        p.add(out_req([down], up))
        try:
            resp = next(call)
        except StopIteration:
            raise Fail("the stream ended after %d responses (status %s)" % (i, call.code()))
        check_body(resp, down, "response %d" % (i + 1))
    p.close()
    extra = list(call)
    check(not extra, "%d responses after the fourth" % len(extra))
    check(call.code() == grpc.StatusCode.OK, "status %s" % call.code())
    return "4 request/response rounds (%s bytes back), half-close, OK" % "/".join(map(str, STREAM_SIZES_OUT))


def empty_stream(t, c):
    call = c.stub.FullDuplexCall(iter(()), timeout=CALL_TIMEOUT)
    got = list(call)
    check(not got, "%d responses to an empty stream" % len(got))
    check(call.code() == grpc.StatusCode.OK, "status %s" % call.code())
    return "no requests, no responses, OK"


def check_echoed(initial, trailing, what):
    check(md_get(initial, ECHO_INITIAL) == [INITIAL_VALUE],
          "%s: initial metadata %s=%s, expected [%r]; keys %s"
          % (what, ECHO_INITIAL, md_get(initial, ECHO_INITIAL), INITIAL_VALUE, md_keys(initial)))
    check(md_get(trailing, ECHO_TRAILING) == [TRAILING_VALUE],
          "%s: trailing metadata %s=%s, expected [%r]; keys %s"
          % (what, ECHO_TRAILING, md_get(trailing, ECHO_TRAILING), TRAILING_VALUE, md_keys(trailing)))


def custom_metadata(t, c):
    md = ((ECHO_INITIAL, INITIAL_VALUE), (ECHO_TRAILING, TRAILING_VALUE))
    resp, call = c.stub.UnaryCall.with_call(large_request(), metadata=md, timeout=CALL_TIMEOUT)
    check_body(resp, LARGE_RESPONSE, "UnaryCall")
    check_echoed(call.initial_metadata(), call.trailing_metadata(), "UnaryCall")
    t.note("UnaryCall response metadata: initial %s, trailing %s"
           % (md_keys(call.initial_metadata()), md_keys(call.trailing_metadata())))
    call = c.stub.FullDuplexCall(iter([out_req([LARGE_RESPONSE], LARGE_REQUEST)]), metadata=md, timeout=CALL_TIMEOUT)
    got = list(call)
    check(call.code() == grpc.StatusCode.OK, "FullDuplexCall: status %s" % call.code())
    check(len(got) == 1, "FullDuplexCall: %d responses, expected 1" % len(got))
    check_body(got[0], LARGE_RESPONSE, "FullDuplexCall")
    check_echoed(call.initial_metadata(), call.trailing_metadata(), "FullDuplexCall")
    return "UnaryCall and FullDuplexCall echoed %s in initial and %s (0xababab) in trailing metadata" % (
        ECHO_INITIAL, ECHO_TRAILING)


def check_status(e, code, message, what):
    check(e.code() == STATUS[code] and e.details() == message,
          "%s: got %s %r, expected %s %r" % (what, e.code().name, e.details(), STATUS[code].name, message))


def status_code_and_message(t, c):
    code, message = 2, "test status message"
    req = pb.SimpleRequest(response_type=pb.COMPRESSABLE)
    req.response_status.code, req.response_status.message = code, message
    e = expect_error(lambda: c.stub.UnaryCall(req, timeout=CALL_TIMEOUT), "UnaryCall")
    check_status(e, code, message, "UnaryCall")
    call = c.stub.FullDuplexCall(iter([out_req(status=(code, message))]), timeout=CALL_TIMEOUT)
    e = expect_error(lambda: list(call), "FullDuplexCall")
    check_status(e, code, message, "FullDuplexCall")
    return "UnaryCall and FullDuplexCall ended with UNKNOWN (2) %r" % message


def special_status_message(t, c):
    code, message = 2, "\t\ntest with whitespace\r\nand Unicode BMP \u263a and non-BMP \U0001f608\t\n"
    req = pb.SimpleRequest(response_type=pb.COMPRESSABLE)
    req.response_status.code, req.response_status.message = code, message
    e = expect_error(lambda: c.stub.UnaryCall(req, timeout=CALL_TIMEOUT), "UnaryCall")
    check_status(e, code, message, "UnaryCall")
    return "UNKNOWN (2) with the whitespace and Unicode message intact"


def unimplemented_method(t, c):
    e = expect_error(lambda: c.stub.UnimplementedCall(pb.Empty(), timeout=CALL_TIMEOUT), "UnimplementedCall")
    check(e.code() == grpc.StatusCode.UNIMPLEMENTED, "got %s, expected UNIMPLEMENTED" % err(e))
    t.note("initial metadata keys %s, trailing %s" % (md_keys(e.initial_metadata()), md_keys(e.trailing_metadata())))
    return "grpc.testing.TestService/UnimplementedCall: UNIMPLEMENTED %r" % e.details()


def unimplemented_service(t, c):
    e = expect_error(lambda: c.unimplemented.UnimplementedCall(pb.Empty(), timeout=CALL_TIMEOUT),
                     "UnimplementedService/UnimplementedCall")
    check(e.code() == grpc.StatusCode.UNIMPLEMENTED, "got %s, expected UNIMPLEMENTED" % err(e))
    t.note("initial metadata keys %s, trailing %s" % (md_keys(e.initial_metadata()), md_keys(e.trailing_metadata())))
    return "grpc.testing.UnimplementedService/UnimplementedCall: UNIMPLEMENTED %r" % e.details()


def cancel_after_begin(t, c):
    p = pipe(t)
    fut = c.stub.StreamingInputCall.future(p, timeout=CALL_TIMEOUT)
    fut.cancel()
    check(fut.cancelled(), "the call is not cancelled after cancel(); done=%s" % fut.done())
    check(fut.code() == grpc.StatusCode.CANCELLED, "status %s, expected CANCELLED" % fut.code())
    return "StreamingInputCall cancelled before any message: CANCELLED"


def cancel_after_first_response(t, c):
    p = pipe(t)
    call = c.stub.FullDuplexCall(p, timeout=CALL_TIMEOUT)
    p.add(out_req([31415], 27182))
    try:
        resp = next(call)
    except StopIteration:
        raise Fail("the stream ended before its first response (status %s)" % call.code())
    check_body(resp, 31415, "first response")
    call.cancel()
    try:
        more = list(call)
        raise Fail("the stream went on after cancel() (%d more responses, status %s)" % (len(more), call.code()))
    except grpc.RpcError:
        pass
    check(call.code() == grpc.StatusCode.CANCELLED, "status %s, expected CANCELLED" % call.code())
    return "FullDuplexCall cancelled after a 31415-byte response: CANCELLED"


def timeout_on_sleeping_server(t, c):
    p = pipe(t)
    call = c.stub.FullDuplexCall(p, timeout=0.001)
    p.add(out_req(body=27182))
    e = expect_error(lambda: next(call), "FullDuplexCall with a 1 ms deadline")
    check(e.code() == grpc.StatusCode.DEADLINE_EXCEEDED, "got %s, expected DEADLINE_EXCEEDED" % err(e))
    return "FullDuplexCall with a 1 ms deadline: DEADLINE_EXCEEDED"


# ---- flow_control: a bulk stream to a slow reader, unary calls beside it on the same connection -------------
MiB = 1 << 20
FLOW_CHUNK = 64 * 1024  # payload body of each StreamBytes response
FLOW_UNARY_CALLS = 50  # unary calls made while the bulk stream is stalled ...
FLOW_UNARY_LIMIT = 1.0  # ... each to be answered within this many seconds
FLOW_UNARY_GAP = 0.05  # seconds between two of them
FLOW_UNARY_SIZE = 1024  # their request and response payload bodies
FLOW_STALL_PAUSE = 0.1  # the reader's pause after each message while the unary calls run ...
FLOW_DRAIN_PAUSE = 0.001  # ... and afterwards, while it drains the rest (at most 64 MiB/s with 64 KiB messages)
FLOW_STALL_TIMEOUT = 5  # seconds for the server to be held back by flow control once the stream started
FLOW_STALL_BLOCKED = 0.5  # share of the unary phase the server must have spent waiting for window
FLOW_RSS_LIMIT = 64 * MiB  # growth of the proxy's VmRSS allowed from before the stream to its peak during it
FLOW_RSS_STEP = 0.05  # seconds between two VmRSS samples
FLOW_MIN_RATE = 4 * MiB  # bytes/s: the case's time bound is 30 s + the volume at this rate
FLOW_UNITS = {"": 1, "k": 1 << 10, "kib": 1 << 10, "m": MiB, "mib": MiB, "g": 1 << 30, "gib": 1 << 30}
FLOW_BYTES = 1 << 30  # the volume (main sets it from --flow-bytes / GRPC_FLOW_BYTES)


def parse_size(text):
    """`1GiB`, `256MiB`, `64k`, `1048576` (binary units, case-insensitive) -> bytes."""
    t = text.strip().lower()
    digits = t.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = t[len(digits):].strip()
    if not digits.strip().isdigit() or unit not in FLOW_UNITS:
        raise ValueError("not a size: %r (e.g. 1GiB, 256MiB, 1048576)" % text)
    return int(digits) * FLOW_UNITS[unit]


def mib(n):
    return "%.1f MiB" % (n / MiB)


def vm_rss(pid):
    """VmRSS of `pid` in bytes (None once the process is gone)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class RssSampler:
    """The proxy's VmRSS every FLOW_RSS_STEP seconds in a thread of its own, from `start()` to `stop()`: the
    first sample and the peak."""

    def __init__(self, pid):
        self.pid = pid
        self.first = self.peak = vm_rss(pid)
        check(self.first is not None, "no VmRSS for the proxy (pid %d)" % pid)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopping.wait(FLOW_RSS_STEP):
            v = vm_rss(self.pid)
            if v is not None and v > self.peak:
                self.peak = v

    def stop(self):
        self.stopping.set()
        self.thread.join(5)
        v = vm_rss(self.pid)
        if v is not None and v > self.peak:
            self.peak = v


class SlowReader:
    """Reads the bulk stream in a thread of its own, pausing after each message: FLOW_STALL_PAUSE until
    `release()`, FLOW_DRAIN_PAUSE after. Counts the payload bytes read and notes the first body that is not all
    zeros and the error the stream ended with."""

    def __init__(self, call):
        self.call = call
        self.read = 0
        self.messages = 0
        self.bad = None
        self.error = None
        self.released = threading.Event()
        self.finished = None
        self.thread = threading.Thread(target=self._run, name="slow-reader", daemon=True)
        self.thread.start()

    def _run(self):
        try:
            for resp in self.call:
                body = resp.payload.body
                if self.bad is None and body.strip(b"\0"):
                    self.bad = "response %d: payload body is not all zeros" % (self.messages + 1)
                self.read += len(body)
                self.messages += 1
                if self.released.is_set():
                    time.sleep(FLOW_DRAIN_PAUSE)
                else:
                    self.released.wait(FLOW_STALL_PAUSE)
        except grpc.RpcError as e:
            self.error = e
        except Exception as e:  # a bug here must still end the thread and be reported
            self.error = e
        self.finished = time.monotonic()

    def why(self):
        e = self.error
        if e is None:
            return "no error"
        return err(e) if isinstance(e, grpc.RpcError) else "%s: %s" % (type(e).__name__, e)

    def release(self):
        self.released.set()

    def stop(self):
        self.call.cancel()
        self.thread.join(5)


class case_alarm:
    """A time bound of the case's own instead of the runner's SCENARIO_LIMIT (the bulk stream's volume sets it);
    the runner clears the alarm after the case, this restores its handler."""

    def __init__(self, seconds, what):
        self.seconds, self.what = seconds, what

    def __enter__(self):
        def on_alarm(signum, frame):
            raise Fail("%s still running after %d s" % (self.what, self.seconds))

        self.old = signal.signal(signal.SIGALRM, on_alarm)
        signal.alarm(self.seconds)
        return self

    def __exit__(self, *exc):
        signal.alarm(0)
        signal.signal(signal.SIGALRM, self.old)
        return False


def flow_control(t, c):
    """Per-stream flow control through the proxy: on the case's one channel (one HTTP/2 connection), a StreamBytes
    call of FLOW_BYTES in 64 KiB responses read by a slow reader, so that the server is held back by flow control,
    while FLOW_UNARY_CALLS UnaryCalls on the same connection must each be answered within FLOW_UNARY_LIMIT; then
    the reader drains the rest. The proxy's VmRSS may not grow by FLOW_RSS_LIMIT or more."""
    total = FLOW_BYTES
    limit = int(30 + total / FLOW_MIN_RATE)
    with case_alarm(limit, "flow_control (%s)" % mib(total)):
        return flow_control_run(t, c, total, limit)


def flow_control_run(t, c, total, limit):
    suite = t.suite
    tgt = suite.targets.get(c.setup)
    proc = tgt.proc if tgt is not None else None
    small = pb.SimpleRequest(response_type=pb.COMPRESSABLE, response_size=FLOW_UNARY_SIZE,
                             payload=pb.Payload(body=zeros(FLOW_UNARY_SIZE)))
    # A first unary call, so that the proxy's upstream connection exists before the baseline sample.
    check_body(c.stub.UnaryCall(small, timeout=CALL_TIMEOUT), FLOW_UNARY_SIZE, "first UnaryCall")
    rss = None
    if proc is not None:
        rss = RssSampler(proc.pid)
        t.on_close("RSS sampler", rss.stop)

    def check_rss(when):
        # Checked as the case goes too, so that a proxy that buffers the stream is stopped long before 1 GiB.
        if rss is not None:
            grown = rss.peak - rss.first
            check(grown < FLOW_RSS_LIMIT, "%s VmRSS grew by %s %s (%s before, peak %s; limit %s)"
                  % (suite.proxy, mib(grown), when, mib(rss.first), mib(rss.peak), mib(FLOW_RSS_LIMIT)))

    mark = suite.server.mark()
    call = c.flow.StreamBytes(pb.StreamBytesRequest(total_bytes=total, chunk_size=FLOW_CHUNK), timeout=limit)
    reader = SlowReader(call)
    t.on_close("bulk stream", reader.stop)

    def stream_record():
        return next((r for r in suite.server.since(mark)[0] if r.method == "StreamBytes"), None)

    rec = wait_for(stream_record, FLOW_STALL_TIMEOUT)
    check(rec is not None, "the server saw no StreamBytes call within %d s" % FLOW_STALL_TIMEOUT)

    # Held back: the server waits for window while the reader is at its first messages.
    def held():
        return rec.waiting_since is not None and time.monotonic() - rec.waiting_since > 2 * FLOW_STALL_PAUSE
    check(wait_for(held, FLOW_STALL_TIMEOUT) or reader.error is not None,
          "the server was not held back by flow control within %d s: it sent %s, the reader read %s"
          % (FLOW_STALL_TIMEOUT, mib(rec.sent), mib(reader.read)))
    if reader.error is not None:
        raise Fail("the bulk stream ended before the unary calls (%s read): %s" % (mib(reader.read), reader.why()))
    t.note("stalled after %s sent by the server, %s read" % (mib(rec.sent), mib(reader.read)))

    # The unary calls, beside the stalled stream.
    t0, blocked0, sent0, read0 = time.monotonic(), rec.blocked(time.monotonic()), rec.sent, reader.read
    lat = []
    for i in range(FLOW_UNARY_CALLS):
        s0 = time.monotonic()
        try:
            resp = c.stub.UnaryCall(small, timeout=2 * FLOW_UNARY_LIMIT)
        except grpc.RpcError as e:
            raise Fail("UnaryCall %d of %d beside the stalled stream (deadline %.0f s): %s"
                       % (i + 1, FLOW_UNARY_CALLS, 2 * FLOW_UNARY_LIMIT, err(e)))
        lat.append(time.monotonic() - s0)
        check_body(resp, FLOW_UNARY_SIZE, "UnaryCall %d" % (i + 1))
        check(lat[-1] < FLOW_UNARY_LIMIT, "UnaryCall %d of %d took %.2f s beside the stalled stream (limit %.1f s)"
              % (i + 1, FLOW_UNARY_CALLS, lat[-1], FLOW_UNARY_LIMIT))
        check_rss("during the unary calls")
        time.sleep(FLOW_UNARY_GAP)
    t1 = time.monotonic()
    blocked = (rec.blocked(t1) - blocked0) / (t1 - t0)
    lead = rec.sent - reader.read
    t.note("unary phase %.1f s: server sent %s (%s more), reader read %s (%s more), server waiting for window "
           "%.0f%% of it, in flight %s" % (t1 - t0, mib(rec.sent), mib(rec.sent - sent0), mib(reader.read),
                                          mib(reader.read - read0), 100 * blocked, mib(lead)))
    check(reader.finished is None, "the bulk stream ended during the unary calls (%s read): %s"
          % (mib(reader.read), reader.why()))
    check(blocked >= FLOW_STALL_BLOCKED,
          "the stream was not stalled during the unary calls: the server waited for window %.0f%% of the time "
          "(at least %.0f%% expected); sent %s, read %s"
          % (100 * blocked, 100 * FLOW_STALL_BLOCKED, mib(rec.sent), mib(reader.read)))
    lat.sort()

    # The rest.
    reader.release()
    deadline = t0 + max(1, limit - 5)
    while reader.thread.is_alive() and time.monotonic() < deadline:
        reader.thread.join(0.2)
        check_rss("while the reader drained the stream (%s read)" % mib(reader.read))
    check(not reader.thread.is_alive(),
          "the bulk stream did not finish: %s of %s read" % (mib(reader.read), mib(total)))
    if reader.error is not None:
        raise Fail("the bulk stream ended after %s of %s: %s" % (mib(reader.read), mib(total), reader.why()))
    check(call.code() == grpc.StatusCode.OK, "bulk stream status %s" % call.code())
    check(reader.read == total, "the bulk stream carried %d bytes, expected %d" % (reader.read, total))
    check(reader.bad is None, reader.bad or "")
    drain = reader.finished - t1

    summary = ("%s in %d responses to a slow reader (server waiting for window %.0f%% of the unary phase); %d "
               "UnaryCalls beside it, max %.0f ms, median %.0f ms; drained in %.1f s"
               % (mib(total), reader.messages, 100 * blocked, FLOW_UNARY_CALLS, 1000 * lat[-1],
                  1000 * lat[len(lat) // 2], drain))
    if rss is None:
        return summary + "; no proxy, no RSS"
    rss.stop()
    check(proc.alive(), "%s exited during the stream" % suite.proxy)
    check_rss("during the stream")
    growth = rss.peak - rss.first
    return summary + "; %s VmRSS %s before, peak %s (+%s)" % (suite.proxy, mib(rss.first), mib(rss.peak), mib(growth))


# ---- gRPC-Web over HTTP/1.1 (setup grpcweb) ---------------------------------------------------------------------
# What Envoy 1.40's grpc_web filter answers, as the cases require it of both proxies. Response content-type: the
# filter replaces the upstream's with application/grpc-web-text+proto when the request's accept is
# application/grpc-web-text(+proto), else application/grpc-web+proto (whatever the request's content-type was).
# It removes content-length, so a streamed response goes out chunked; a trailers-only upstream response keeps
# grpc-status/grpc-message in the HTTP headers with content-length: 0 and no body (no trailer frame). Otherwise the
# upstream's trailers become one trailer frame, `name:value` CRLF lines in the upstream's order (grpcio: grpc-status,
# grpc-message, then custom trailing metadata), names as received (lower-case), values verbatim. In text, every gRPC
# frame (data or trailer) is base64-encoded on its own and padded, once the whole frame is in. A text request body
# it cannot decode is answered by a local 400 made gRPC-Web: grpc-status 13 and the message in the headers.
WEB_PROTO = "application/grpc-web+proto"
WEB_TEXT = "application/grpc-web-text"
WEB_TEXT_PROTO = "application/grpc-web-text+proto"
WEB_HEADERS = {"x-grpc-web": "1", "x-user-agent": "grpc-web-javascript/0.1"}
WEB_TRAILER_FLAG = 0x80
WEB_UNARY_SIZE = 1000
WEB_LARGE_RESPONSE = 1 << 20
OK_TRAILER = b"grpc-status:0\r\ngrpc-message:\r\n"
ERROR_STATUS = (2, "test status message")
ERROR_TRAILER = b"grpc-status:2\r\ngrpc-message:test status message\r\n"
SPECIAL_MESSAGE = "\t\ntest with whitespace\r\nand Unicode BMP \u263a and non-BMP \U0001f608\t\n"
# grpc-message as grpcio percent-encodes it (PROTOCOL-HTTP2.md); the proxy copies it into the trailer frame as is.
SPECIAL_TRAILER = (b"grpc-status:2\r\ngrpc-message:%09%0Atest with whitespace%0D%0Aand Unicode BMP %E2%98%BA and "
                   b"non-BMP %F0%9F%98%88%09%0A\r\n")
UNIMPLEMENTED_MESSAGE = "Method not implemented!"  # grpcio's, for a method the servicer does not override
BAD_BASE64_MESSAGE = "Bad gRPC-web request, invalid base64 data."  # Envoy's local reply
B64_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")


def web_frame(msg, flag=0):
    """One gRPC(-Web) frame: the flag byte, the 4-byte big-endian length, the payload (a message or bytes)."""
    payload = msg if isinstance(msg, bytes) else msg.SerializeToString()
    return struct.pack(">BI", flag, len(payload)) + payload


def web_b64decode(text, what):
    """A grpc-web-text body: base64, possibly several padded chunks one after the other (the gRPC-Web protocol lets
    a server encode each chunk on its own), decoded 4 characters at a time, a group with padding ending a chunk."""
    check(len(text) % 4 == 0, "%s: a text body of %d characters, not a multiple of 4: %r"
          % (what, len(text), text[:80]))
    out, i = bytearray(), 0
    while i < len(text):
        group = text[i:i + 4]
        data = group.rstrip(b"=")
        check(len(data) >= 2 and all(c in B64_CHARS for c in data),
              "%s: not base64 at character %d: %r" % (what, i, text[max(0, i - 8):i + 12]))
        out += base64.b64decode(group)
        i += 4
    return bytes(out)


def web_frames(data, what):
    """The (flag, payload) frames of a decoded body; a frame cut short fails."""
    frames, i = [], 0
    while i < len(data):
        check(len(data) - i >= 5, "%s: %d bytes after the last whole frame: %r" % (what, len(data) - i, data[i:]))
        flag, n = struct.unpack(">BI", data[i:i + 5])
        check(len(data) - i - 5 >= n, "%s: a frame of %d bytes (flag 0x%02x) cut short at %d"
              % (what, n, flag, len(data) - i - 5))
        frames.append((flag, data[i + 5:i + 5 + n]))
        i += 5 + n
    return frames


class WebResponse:
    """One gRPC-Web response: HTTP status, headers (in order, names as sent), the raw body, and, decoded (base64
    when the content-type is a text one), its frames (a body that is not frames fails when they are asked for,
    after the checks of the status and headers)."""

    def __init__(self, what, resp, body):
        self.what = what
        self.status, self.reason = resp.status, resp.reason
        self.headers = resp.getheaders()
        self.body = body
        self.content_type = self.header("content-type")
        self.text = (self.content_type or "").startswith(WEB_TEXT)
        self.error = None
        try:
            self._frames = web_frames(web_b64decode(body, what) if self.text else body, what)
        except Fail as e:
            self._frames = []
            self.error = "%s (%s; body %r)" % (e, self.head(), body[:80])

    @property
    def frames(self):
        if self.error is not None:
            raise Fail(self.error)
        return self._frames

    def header(self, name):
        """The value of header `name` (None when absent; several values joined with `, `)."""
        vals = [v for k, v in self.headers if k.lower() == name]
        return ", ".join(vals) if vals else None

    def head(self):
        return "%d %s, %s" % (self.status, self.reason, ", ".join("%s: %s" % (k, short(v, 60))
                                                                for k, v in self.headers if k.lower() != "date"))

    def messages(self):
        return [p for f, p in self.frames if not f & WEB_TRAILER_FLAG]

    def trailer(self):
        """The trailer frame's payload (it must be the last frame, and the only one); None without one."""
        flags = [f for f, _ in self.frames]
        trailers = [i for i, f in enumerate(flags) if f & WEB_TRAILER_FLAG]
        if not trailers:
            return None
        check(trailers == [len(flags) - 1], "%s: trailer frames at %s of %d frames (flags %s); expected one, last"
              % (self.what, trailers, len(flags), ["0x%02x" % f for f in flags]))
        return self.frames[-1][1]


class WebClient:
    """gRPC-Web by hand over HTTP/1.1 (http.client), as a browser's grpc-web-javascript: one keep-alive connection
    of the case's own (reopened by http.client after a `connection: close`), closed with the case."""

    def __init__(self, t, port):
        self.t = t
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=CALL_TIMEOUT)
        t.on_close("HTTP/1.1 connection to 127.0.0.1:%d" % port, self.conn.close)

    def call(self, method, msgs=(), text=False, accept=None, body=None, service="grpc.testing.TestService"):
        """POSTs `msgs` framed (or `body` as is) to /SERVICE/METHOD: binary (application/grpc-web+proto) or with
        `text` application/grpc-web-text, base64 (and accept: application/grpc-web-text unless `accept` says
        otherwise; "" for none). Returns the WebResponse."""
        path = "/%s/%s" % (service, method)
        if body is None:
            body = b"".join(web_frame(m) for m in msgs)
            if text:
                body = base64.b64encode(body)
        headers = dict(WEB_HEADERS)
        headers["content-type"] = WEB_TEXT if text else WEB_PROTO
        if accept is None and text:
            accept = WEB_TEXT
        if accept:
            headers["accept"] = accept
        what = "%s (%s%s)" % (method, "text" if text else "binary", ", accept %s" % accept if accept else "")
        try:
            self.conn.request("POST", path, body=body, headers=headers)
            resp = self.conn.getresponse()
            raw = resp.read()
        except (OSError, http.client.HTTPException) as e:
            self.conn.close()
            raise Fail("%s: POST %s over HTTP/1.1 to 127.0.0.1:%d: %s: %s"
                       % (what, path, self.port, type(e).__name__, e or "no response"))
        r = WebResponse(what, resp, raw)
        frames = "not frames" if r.error else [("trailer" if f & WEB_TRAILER_FLAG else "data", len(p))
                                              for f, p in r.frames]
        self.t.note("%s: %s; body %d bytes, frames %s" % (what, r.head(), len(raw), frames))
        return r


def check_streamed(r, ctype, what):
    """A response that went through the upstream's headers/data/trailers: 200, `ctype`, no content-length (chunked),
    no grpc-status in the headers, a trailer frame last; every frame base64-encoded on its own in text."""
    check(r.status == 200, "%s: HTTP %d %s, expected 200 (%s)" % (what, r.status, r.reason, r.head()))
    check(r.content_type == ctype, "%s: content-type %r, expected %r" % (what, r.content_type, ctype))
    check(r.header("content-length") is None, "%s: content-length %s; Envoy removes it and sends the response "
          "chunked" % (what, r.header("content-length")))
    check((r.header("transfer-encoding") or "").lower() == "chunked",
          "%s: transfer-encoding %r, expected chunked (%s)" % (what, r.header("transfer-encoding"), r.head()))
    check(r.header("grpc-status") is None, "%s: grpc-status %s in the HTTP headers; Envoy leaves it to the trailer "
          "frame" % (what, r.header("grpc-status")))
    check(r.trailer() is not None, "%s: no trailer frame (frames %s)" % (what, [f for f, _ in r.frames]))
    if r.text:
        per_frame = b"".join(base64.b64encode(web_frame(p, f)) for f, p in r.frames)
        check(r.body == per_frame, "%s: the text body decodes, but it is not each frame base64-encoded on its own as "
              "Envoy sends it (%d characters, %d per frame; starts %r)" % (what, len(r.body), len(per_frame),
                                                                          r.body[:60]))


def check_trailers_only(r, ctype, status, code, message, what):
    """A response with no body: `status`, `ctype`, grpc-status `code` and grpc-message `message` in the HTTP
    headers, content-length: 0, no trailer frame."""
    check(r.status == status, "%s: HTTP %d %s, expected %d (%s)" % (what, r.status, r.reason, status, r.head()))
    check(r.content_type == ctype, "%s: content-type %r, expected %r" % (what, r.content_type, ctype))
    check(r.header("grpc-status") == str(code) and r.header("grpc-message") == message,
          "%s: headers grpc-status %r, grpc-message %r; expected %r, %r (%s)"
          % (what, r.header("grpc-status"), r.header("grpc-message"), str(code), message, r.head()))
    check(r.header("content-length") == "0", "%s: content-length %r, expected 0 (%s)"
          % (what, r.header("content-length"), r.head()))
    check(r.body == b"", "%s: a body of %d bytes (%r), expected none (no trailer frame)"
          % (what, len(r.body), r.body[:80]))


def check_web_trailer(r, expected, what):
    got = r.trailer()
    check(got == expected, "%s: trailer frame %r, expected %r" % (what, got, expected))


def check_web_messages(r, cls, sizes, what):
    """The data frames: uncompressed, one `cls` message for each of `sizes`, each a payload body of that many
    zeros."""
    flags = [f for f, _ in r.frames if not f & WEB_TRAILER_FLAG]
    check(all(f == 0 for f in flags), "%s: data frame flags %s, expected 0x00" % (what, flags))
    msgs = r.messages()
    check(len(msgs) == len(sizes), "%s: %d data frames of %s bytes, expected %d"
          % (what, len(msgs), [len(m) for m in msgs], len(sizes)))
    for i, (m, n) in enumerate(zip(msgs, sizes)):
        try:
            msg = cls.FromString(m)
        except Exception as e:  # protobuf's DecodeError
            raise Fail("%s: data frame %d is not a %s: %s" % (what, i + 1, cls.__name__, e))
        check_body(msg, n, "%s message %d" % (what, i + 1))


def web_unary(size, status=None, body=0):
    req = pb.SimpleRequest(response_type=pb.COMPRESSABLE, response_size=size)
    if body:
        req.payload.body = zeros(body)
    if status is not None:
        req.response_status.code, req.response_status.message = status
    return req


def grpcweb_unary_binary(t, w):
    r = w.call("UnaryCall", [web_unary(WEB_UNARY_SIZE)])
    check_streamed(r, WEB_PROTO, r.what)
    check_web_messages(r, pb.SimpleResponse, [WEB_UNARY_SIZE], r.what)
    check_web_trailer(r, OK_TRAILER, r.what)
    return "200 %s, chunked, one data frame (%d zero bytes), trailer frame %r" % (WEB_PROTO, WEB_UNARY_SIZE,
                                                                                  OK_TRAILER)


def grpcweb_unary_text(t, w):
    r = w.call("UnaryCall", [web_unary(WEB_UNARY_SIZE)], text=True)
    check_streamed(r, WEB_TEXT_PROTO, r.what)
    check_web_messages(r, pb.SimpleResponse, [WEB_UNARY_SIZE], r.what)
    check_web_trailer(r, OK_TRAILER, r.what)
    # The response is text only when accept asks for it, whatever the request's content-type.
    b = w.call("UnaryCall", [web_unary(WEB_UNARY_SIZE)], text=True, accept="")
    check_streamed(b, WEB_PROTO, b.what)
    check_web_messages(b, pb.SimpleResponse, [WEB_UNARY_SIZE], b.what)
    check_web_trailer(b, OK_TRAILER, b.what)
    return ("200 %s, frames base64-encoded one by one (%d + %d characters), %d zero bytes, OK trailer; without "
            "accept the answer is %s" % (WEB_TEXT_PROTO, len(base64.b64encode(web_frame(r.messages()[0]))),
                                         len(base64.b64encode(web_frame(r.trailer(), WEB_TRAILER_FLAG))),
                                         WEB_UNARY_SIZE, WEB_PROTO))


def grpcweb_error_status(t, w):
    r = w.call("UnaryCall", [web_unary(0, ERROR_STATUS)])
    check_streamed(r, WEB_PROTO, r.what)
    # grpcio sends the handler's empty SimpleResponse before the status: one data frame of 0 bytes.
    check(r.messages() == [b""], "%s: data frames of %s bytes, expected one empty message (the server sends its "
          "empty SimpleResponse)" % (r.what, [len(m) for m in r.messages()]))
    check_web_trailer(r, ERROR_TRAILER, r.what)
    s = w.call("UnaryCall", [web_unary(0, (2, SPECIAL_MESSAGE))])
    check_streamed(s, WEB_PROTO, s.what + " with the special status message")
    check_web_trailer(s, SPECIAL_TRAILER, s.what + " with the special status message")
    # StreamingOutputCall ends before any response: the upstream answers trailers-only (one HEADERS frame).
    o = w.call("StreamingOutputCall", [out_req(status=ERROR_STATUS)])
    check_trailers_only(o, WEB_PROTO, 200, ERROR_STATUS[0], ERROR_STATUS[1], o.what)
    return ("UnaryCall: 200, empty data frame, status in the trailer frame %r (special message percent-encoded as "
            "sent); StreamingOutputCall (trailers-only): 200, grpc-status: 2 and grpc-message in the headers, "
            "content-length: 0, no body" % ERROR_TRAILER)


def grpcweb_unimplemented(t, w):
    seen = []
    for text, ctype in ((False, WEB_PROTO), (True, WEB_TEXT_PROTO)):
        r = w.call("UnimplementedCall", [pb.Empty()], text=text)
        check_trailers_only(r, ctype, 200, 12, UNIMPLEMENTED_MESSAGE, r.what)
        seen.append(ctype)
    return ("200 (%s), grpc-status: 12 and grpc-message: %s in the headers, content-length: 0, no body"
            % (" / ".join(seen), UNIMPLEMENTED_MESSAGE))


def grpcweb_server_streaming(t, w):
    for text, ctype in ((False, WEB_PROTO), (True, WEB_TEXT_PROTO)):
        r = w.call("StreamingOutputCall", [out_req(STREAM_SIZES_OUT)], text=text)
        check_streamed(r, ctype, r.what)
        check_web_messages(r, pb.StreamingOutputCallResponse, STREAM_SIZES_OUT, r.what)
        check_web_trailer(r, OK_TRAILER, r.what)
    return "binary and text: 4 data frames of %s zero bytes, then the OK trailer frame" % "/".join(
        map(str, STREAM_SIZES_OUT))


def grpcweb_large(t, w):
    t0 = time.monotonic()
    r = w.call("UnaryCall", [web_unary(WEB_LARGE_RESPONSE, body=LARGE_REQUEST)], text=True)
    took = time.monotonic() - t0
    check_streamed(r, WEB_TEXT_PROTO, r.what)
    check_web_messages(r, pb.SimpleResponse, [WEB_LARGE_RESPONSE], r.what)
    check_web_trailer(r, OK_TRAILER, r.what)
    return "%d bytes up, %d zero bytes back in %d base64 characters (one run for the data frame), %.2f s" % (
        LARGE_REQUEST, WEB_LARGE_RESPONSE, len(r.body), took)


def grpcweb_invalid_base64(t, w):
    good = base64.b64encode(web_frame(web_unary(WEB_UNARY_SIZE)))
    frame = web_frame(web_unary(WEB_UNARY_SIZE))
    bodies = [("a character outside base64", b"!!!!" + good),
              ("%d characters" % (len(good) + 1), good + b"A"),
              ("two padded chunks", base64.b64encode(frame[:4]) + base64.b64encode(frame[4:]))]
    for why, body in bodies:
        r = w.call("UnaryCall", body=body, text=True)
        what = "%s, %s" % (r.what, why)
        check_trailers_only(r, WEB_TEXT_PROTO, 400, 13, BAD_BASE64_MESSAGE, what)
        # A local reply sent before the filter chain saw the request's end: Envoy closes the HTTP/1.1 connection.
        check((r.header("connection") or "").lower() == "close", "%s: connection %r, expected close (Envoy closes "
              "the HTTP/1.1 connection after this local reply) (%s)" % (what, r.header("connection"), r.head()))
    return ("%s: 400, %s, grpc-status: 13, grpc-message: %s, content-length: 0, no body, connection: close"
            % (", ".join(why for why, _ in bodies), WEB_TEXT_PROTO, BAD_BASE64_MESSAGE))


def grpcweb_non_grpcweb_passthrough(t, w):
    c = open_channel(t, "grpcweb", w.port)
    resp = c.stub.UnaryCall(web_unary(WEB_UNARY_SIZE), timeout=CALL_TIMEOUT)
    check_body(resp, WEB_UNARY_SIZE, "UnaryCall")
    call = c.stub.StreamingOutputCall(out_req(STREAM_SIZES_OUT), timeout=CALL_TIMEOUT)
    got = [len(m.payload.body) for m in call]
    check(call.code() == grpc.StatusCode.OK, "StreamingOutputCall: status %s" % call.code())
    check(tuple(got) == STREAM_SIZES_OUT, "StreamingOutputCall: response sizes %s, expected %s"
          % (got, list(STREAM_SIZES_OUT)))
    e = expect_error(lambda: c.stub.UnaryCall(web_unary(0, ERROR_STATUS), timeout=CALL_TIMEOUT), "UnaryCall")
    check_status(e, ERROR_STATUS[0], ERROR_STATUS[1], "UnaryCall with Echo Status")
    return "grpcio over h2c through the grpc_web listener: UnaryCall, 4-response stream, UNKNOWN %r intact" % (
        ERROR_STATUS[1])


WEB_STAT_PREFIX = "cluster.grpc_backend.grpc-web.grpc.testing.TestService."


def grpcweb_stats(t, w):
    tgt = t.suite.targets.get("grpcweb")
    check(tgt is not None and tgt.admin, "no admin port for the grpcweb proxy")
    before = admin_stats(tgt.admin)
    for req, trailer in ((web_unary(10), OK_TRAILER), (web_unary(0, ERROR_STATUS), ERROR_TRAILER)):
        r = w.call("UnaryCall", [req])
        check_streamed(r, WEB_PROTO, r.what)
        check_web_trailer(r, trailer, r.what)
    check_trailers_only(w.call("UnimplementedCall", [pb.Empty()]), WEB_PROTO, 200, 12, UNIMPLEMENTED_MESSAGE,
                        "UnimplementedCall")
    c = open_channel(t, "grpcweb", w.port)
    check_body(c.stub.UnaryCall(web_unary(10), timeout=CALL_TIMEOUT), 10, "UnaryCall over h2c")
    after = admin_stats(tgt.admin)
    moved = {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}
    web = {k: v for k, v in moved.items() if "grpc-web" in k}
    expected = {WEB_STAT_PREFIX + k: v for k, v in (
        ("UnaryCall.0", 1), ("UnaryCall.2", 1), ("UnaryCall.success", 1), ("UnaryCall.failure", 1),
        ("UnaryCall.total", 2), ("UnimplementedCall.12", 1), ("UnimplementedCall.failure", 1),
        ("UnimplementedCall.total", 1))}
    other = sorted(k for k in moved if k.startswith("cluster.grpc_backend.grpc."))
    if other:
        t.note("other gRPC counters that moved: %s" % ", ".join("%s +%d" % (k, moved[k]) for k in other))
    if not any("grpc-web" in k for k in after):
        return ("no grpc-web counters at all (Envoy has %s{0,2,12,success,failure,total}); other gRPC counters "
                "that moved: %s" % (WEB_STAT_PREFIX + "METHOD.", ", ".join(other) or "none"))
    check(web == expected, "grpc-web counters moved %s; expected %s" % (
        ", ".join("%s +%d" % kv for kv in sorted(web.items())) or "none",
        ", ".join("%s +%d" % kv for kv in sorted(expected.items()))))
    return "%s{UnaryCall.{0,2,success,failure,total}, UnimplementedCall.{12,failure,total}} moved by the 3 " \
           "gRPC-Web calls (+1 each, UnaryCall.total +2), not by the h2c one" % WEB_STAT_PREFIX


# (name, procedure): setup grpcweb only; each procedure gets a WebClient instead of a channel.
WEB_CASES = [
    ("grpcweb_unary_binary", grpcweb_unary_binary),
    ("grpcweb_unary_text", grpcweb_unary_text),
    ("grpcweb_error_status", grpcweb_error_status),
    ("grpcweb_unimplemented", grpcweb_unimplemented),
    ("grpcweb_server_streaming", grpcweb_server_streaming),
    ("grpcweb_large", grpcweb_large),
    ("grpcweb_invalid_base64", grpcweb_invalid_base64),
    ("grpcweb_non_grpcweb_passthrough", grpcweb_non_grpcweb_passthrough),
    ("grpcweb_stats", grpcweb_stats),
]


CASES = [
    ("empty_unary", empty_unary),
    ("large_unary", large_unary),
    ("client_streaming", client_streaming),
    ("server_streaming", server_streaming),
    ("ping_pong", ping_pong),
    ("empty_stream", empty_stream),
    ("custom_metadata", custom_metadata),
    ("status_code_and_message", status_code_and_message),
    ("special_status_message", special_status_message),
    ("unimplemented_method", unimplemented_method),
    ("unimplemented_service", unimplemented_service),
    ("cancel_after_begin", cancel_after_begin),
    ("cancel_after_first_response", cancel_after_first_response),
    ("timeout_on_sleeping_server", timeout_on_sleeping_server),
]
LAST_CASES = [("h2c", "flow_control", flow_control)]  # (setup, name, procedure)

# Request headers every grpcio client sends itself; the others the server sees were added on the way.
CLIENT_HEADERS = {"user-agent", ECHO_INITIAL, ECHO_TRAILING, "grpc-accept-encoding", "grpc-timeout"}


def runs(items, tolerance_ms=None):
    """Consecutive equal items as one `item ×N` (flow_control's 50 unary calls); with `tolerance_ms`, `N ms`
    items within that many milliseconds of a run's first count as equal."""
    out = []
    for item in items:
        if out:
            first, n = out[-1]
            same = item == first
            if not same and tolerance_ms is not None and item.endswith(" ms") and first.endswith(" ms"):
                same = abs(int(item[:-3]) - int(first[:-3])) <= tolerance_ms
            if same:
                out[-1] = (first, n + 1)
                continue
        out.append((item, 1))
    return [item if n == 1 else "%s ×%d" % (item, n) for item, n in out]


def observe(t, setup, mark, stats_before):
    """Notes (-v) on what the server saw of the case and the proxy counters about resets and timeouts."""
    suite = t.suite
    calls, logs = suite.server.since(mark)
    for rec in calls:
        if not rec.done.is_set():
            rec.done.wait(2)
    if calls:
        t.note("server saw: %s" % ", ".join(runs([r.describe() for r in calls])))
        added = {}
        for r in calls:
            for k, v in r.metadata:
                if k not in CLIENT_HEADERS:
                    added.setdefault(k, "<random>" if k == "x-request-id" else short(str(v), 40))
        if added and not suite.direct:
            t.note("request headers the server got from %s: %s"
                   % (suite.proxy, ", ".join("%s=%s" % kv for kv in sorted(added.items()))))
        t.note("deadline left at the server's handler start (grpc-timeout): %s" % ", ".join(runs(
            ["none" if r.deadline_ms is None else "%d ms" % r.deadline_ms for r in calls], tolerance_ms=200)))
    else:
        t.note("server saw no call")
    for line in logs:
        t.note("server log: %s" % line)
    tgt = suite.targets.get(setup)
    if stats_before is not None and tgt is not None and tgt.proc is not None and tgt.proc.alive():
        try:
            after = admin_stats(tgt.admin)
        except (Fail, OSError):
            return
        moved = {k: v - stats_before.get(k, 0) for k, v in after.items()
                 if v != stats_before.get(k, 0) and ("reset" in k or "timeout" in k or "cancel" in k)}
        if moved:
            t.note("%s counters: %s" % (suite.proxy, ", ".join("%s +%d" % kv for kv in sorted(moved.items()))))


def scenario(setup, case, fn, web=False):
    """The runner's procedure for SETUP/CASE: the setup's proxy, then `fn` with a channel of the case's own (with
    `web`, a WebClient: gRPC-Web over HTTP/1.1)."""

    def run(t):
        if time.monotonic() - RUN_START > RUN_LIMIT:
            raise Fail("not run: the run is past its %d s bound" % RUN_LIMIT)
        suite = t.suite
        tgt = suite.target(setup)
        dead = suite.proxy_state(setup)
        check(not dead, "not run: " + dead)
        stats = None
        if tgt.proc is not None and suite.verbose:
            try:
                stats = admin_stats(tgt.admin)
            except (Fail, OSError):
                pass
        mark = suite.server.mark()
        try:
            c = WebClient(t, tgt.port) if web else open_channel(t, setup, tgt.port)
            return fn(t, c)
        except grpc.RpcError as e:
            raise Fail("unexpected %s" % err(e))
        except Fail as e:
            dead = suite.proxy_state(setup)
            raise Fail("%s; %s" % (e, dead) if dead else str(e))
        finally:
            if suite.verbose:
                observe(t, setup, mark, stats)

    run.__name__ = "%s/%s" % (setup, case)
    run.__doc__ = fn.__doc__
    return run


class deferred_signals:
    """Holds SIGINT and SIGTERM back while cleanup runs. The runner blocks them around a scenario's cleanup with
    pthread_sigmask, but that only blocks the main thread: grpcio's own threads still take a process signal, and
    Python then raises the runner's Interrupted in the middle of, say, a channel's close (which can leave the
    interpreter hanging at exit). Here the handlers only record the signal; on the way out it is sent again to
    the main thread alone, where the runner's mask keeps it pending until its own unblock raises Interrupted
    where the runner expects it (with `redeliver` False it is dropped: the run is ending anyway)."""

    def __init__(self, redeliver=True):
        self.redeliver = redeliver
        self.got = []

    def __enter__(self):
        self.old = {s: signal.signal(s, lambda signum, frame: self.got.append(signum))
                    for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc):
        for s, handler in self.old.items():
            signal.signal(s, handler)
        if self.redeliver:
            for s in sorted(set(self.got)):
                signal.pthread_kill(threading.main_thread().ident, s)
        return False


class CaseContext(ScenarioContext):
    """A scenario context whose directory name has no `/` (scenario names are SETUP/CASE) and whose cleanup is not
    cut short by a signal."""

    def __init__(self, suite, name, tmp_prefix):
        super().__init__(suite, name.replace("/", "-"), tmp_prefix)
        self.name = name

    def close(self):
        with deferred_signals():
            return super().close()


# ---- standalone modes: --serve PORT and --cases-against HOST:PORT ------------------------------------------------
# For tests that place the server and the client apart (e.g. in two network namespaces with sidecars between them,
# scripts/lib/netns_init_suite.py's two_pod_grpc): `--serve PORT` runs the interop TestService alone on
# 0.0.0.0:PORT, plaintext h2c, prints `READY 0.0.0.0:PORT` once listening and one `CALL method (how it ended)`
# line per finished call, and runs until killed (SIGTERM/SIGINT stop it cleanly) or for --timeout seconds.
# `--cases-against HOST:PORT` runs the 14 interop cases (or those named/patterned, from CASES) against that address
# over plaintext h2c, each on a channel of its own, and prints `PASS case: what was seen` / `FAIL case: reason` per
# case, then `grpc-cases: N passed, N failed`; exit status 1 if any failed.
INTEROP_CASES = ("empty_unary", "large_unary", "client_streaming", "server_streaming", "ping_pong", "empty_stream",
                 "custom_metadata", "status_code_and_message", "special_status_message", "unimplemented_method",
                 "unimplemented_service", "cancel_after_begin", "cancel_after_first_response",
                 "timeout_on_sleeping_server")


class StandaloneRecorder:
    """What make_servicer needs of a server in --serve mode: record() a call; each finished call is printed."""

    def record(self, method, context):
        rec = CallRecord(method, context)
        context.add_callback(lambda: print("CALL %s" % rec.describe(), flush=True))
        return rec


def serve_standalone(port, timeout=None):
    """--serve PORT: the TestService on 0.0.0.0:PORT, plaintext, until SIGTERM/SIGINT or `timeout` seconds."""
    load_stubs()
    logging.getLogger("grpc._server").addHandler(LogRecords())  # no handler tracebacks on stderr
    logging.getLogger("grpc._server").propagate = False
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32), options=[("grpc.so_reuseport", 0)])
    pbg.add_TestServiceServicer_to_server(make_servicer(StandaloneRecorder()), server)
    try:
        bound = server.add_insecure_port("0.0.0.0:%d" % port)
    except RuntimeError as e:
        bound = 0
        print("grpc-serve: %s" % e, file=sys.stderr, flush=True)
    if not bound:
        print("grpc-serve: could not bind 0.0.0.0:%d" % port, file=sys.stderr, flush=True)
        return 1
    stop = threading.Event()
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, lambda signum, frame: stop.set())
    server.start()
    print("READY 0.0.0.0:%d" % bound, flush=True)
    stop.wait(timeout)
    server.stop(1).wait(5)
    print("STOPPED", flush=True)
    return 0


class StandaloneContext:
    """What a case needs of its context in --cases-against mode: notes and resources closed when it ends."""

    def __init__(self):
        self.notes = []
        self.closers = []

    def note(self, text):
        self.notes.append(text)

    def on_close(self, what, fn):
        self.closers.append((what, fn))

    def close(self):
        for what, fn in reversed(self.closers):
            try:
                fn()
            except Exception:  # a stuck resource must not keep the others open
                pass


class CaseTimeout(Exception):
    pass


def cases_against(target, patterns=(), verbose=False):
    """--cases-against HOST:PORT: the interop cases over plaintext h2c, one channel (connection) per case."""
    import fnmatch

    load_stubs()
    by_name = dict(CASES)
    if patterns:
        names = [n for n, _ in CASES if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    else:
        names = [n for n in INTEROP_CASES if n in by_name]
    if not names:
        print("grpc-cases: no case matches %s" % list(patterns), file=sys.stderr)
        return 2

    def on_alarm(signum, frame):
        raise CaseTimeout()

    signal.signal(signal.SIGALRM, on_alarm)
    opts = [("grpc.use_local_subchannel_pool", 1), ("grpc.enable_retries", 0), ("grpc.enable_http_proxy", 0)]
    passed = failed = 0
    for name in names:
        t = StandaloneContext()
        t0 = time.monotonic()
        signal.alarm(SCENARIO_LIMIT)
        try:
            ch = grpc.insecure_channel(target, options=opts)
            t.on_close("channel", ch.close)
            try:
                grpc.channel_ready_future(ch).result(timeout=READY_TIMEOUT)
            except grpc.FutureTimeoutError:
                raise Fail("no HTTP/2 connection to %s within %ds (channel never READY)" % (target, READY_TIMEOUT))
            result = "PASS %s: %s" % (name, by_name[name](t, Client(ch, target, "h2c")))
            passed += 1
        except CaseTimeout:
            result = "FAIL %s: not finished within %d s" % (name, SCENARIO_LIMIT)
            failed += 1
        except grpc.RpcError as e:
            result = "FAIL %s: unexpected %s" % (name, err(e))
            failed += 1
        except Fail as e:
            result = "FAIL %s: %s" % (name, e)
            failed += 1
        except Exception as e:  # a bug in a case still reports the others
            result = "FAIL %s: %s: %s" % (name, type(e).__name__, e)
            failed += 1
        finally:
            signal.alarm(0)
            t.close()
        took = " (%.2fs)" % (time.monotonic() - t0) if verbose else ""
        print(result + took, flush=True)
        if verbose:
            for n in t.notes:
                print("    " + n, flush=True)
    print("grpc-cases: %d passed, %d failed (against %s)" % (passed, failed, target), flush=True)
    return 1 if failed else 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--proxy", choices=("envoy", "sidecar"), default="sidecar")
    ap.add_argument("--bin", help="the proxy binary (not needed with --direct or --list)")
    ap.add_argument("--direct", action="store_true", help="run the cases straight against the interop server")
    ap.add_argument("--setup", choices=SETUPS + ("all",), default="all")
    ap.add_argument("--flow-bytes", default=os.environ.get("GRPC_FLOW_BYTES") or "1GiB",
                    help="volume of the flow_control case's stream (default $GRPC_FLOW_BYTES, else 1GiB)")
    ap.add_argument("--only", action="append", default=[], help="scenario name or pattern with * and ?")
    ap.add_argument("names", nargs="*", help="scenario names or patterns (same as --only)")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true", help="print durations and observations")
    ap.add_argument("--serve", type=int, metavar="PORT",
                    help="standalone: run only the interop server on 0.0.0.0:PORT (h2c), print READY, until killed")
    ap.add_argument("--cases-against", metavar="HOST:PORT",
                    help="standalone: run the 14 interop cases (or those named) against HOST:PORT over h2c")
    ap.add_argument("--timeout", type=float, help="with --serve: stop after this many seconds")
    a = ap.parse_intermixed_args(argv)
    if a.serve is not None:
        return serve_standalone(a.serve, a.timeout)
    if a.cases_against:
        return cases_against(a.cases_against, a.only + a.names, a.verbose)
    if not (a.bin or a.direct or a.list):
        ap.error("--bin is required without --direct")

    global FLOW_BYTES
    try:
        FLOW_BYTES = parse_size(a.flow_bytes)
    except ValueError as e:
        ap.error("--flow-bytes: %s" % e)
    setups = SETUPS if a.setup == "all" else (a.setup,)
    if a.direct:  # gRPC-Web needs the proxy's filter: the server speaks only HTTP/2
        if a.setup == "grpcweb":
            ap.error("--setup grpcweb needs a proxy (its grpc_web filter); it cannot run with --direct")
        setups = tuple(s for s in setups if s != "grpcweb")
    scenarios = [("%s/%s" % (s, name), scenario(s, name, fn)) for s in setups if s in INTEROP_SETUPS
                 for name, fn in CASES]
    scenarios += [("grpcweb/%s" % name, scenario("grpcweb", name, fn, web=True)) for name, fn in WEB_CASES
                  if "grpcweb" in setups]
    # Last, after every setup's interop cases (it takes the longest); h2c only, TLS would only double its time.
    scenarios += [("%s/%s" % (s, name), scenario(s, name, fn)) for s, name, fn in LAST_CASES if s in setups]
    patterns = [p if "/" in p else "*/" + p for p in a.only + a.names]
    GrpcSuite.direct = a.direct
    GrpcSuite.setups = setups
    if not a.list:
        load_stubs()
        target = "the interop server directly" if a.direct else "%s %s" % (a.proxy, a.bin)
        print("grpc: %s, setups %s" % (target, ", ".join(setups)), file=sys.stderr, flush=True)
    forwarded = ["--proxy", a.proxy, "--bin", a.bin if a.bin and not a.direct else "/bin/true"]
    forwarded += (["--list"] if a.list else []) + (["-v"] if a.verbose else []) + patterns
    return run_suite("grpc", __doc__, scenarios, "pf-grpc", suite_class=GrpcSuite, context_class=CaseContext,
                     scenario_limit=SCENARIO_LIMIT, argv=forwarded)


if __name__ == "__main__":
    raise SystemExit(main())
