#!/usr/bin/env python3
"""End-to-end gRPC interop tests: grpc's standard interop cases (doc/interop-test-descriptions.md in grpc/grpc),
run by a grpcio client through the proxy under test to a grpcio interop TestService server, over plaintext HTTP/2
(h2c) and over TLS with ALPN h2.

Usage: python3 scripts/lib/grpc_interop_suite.py (--proxy envoy|sidecar --bin PATH | --direct)
           [--setup h2c|tls|all] [NAME|PATTERN]... [--only NAME]... [--list] [-v]
(normally through scripts/e2e-grpc, which installs grpcio, grpcio-tools, protobuf and cryptography from PyPI).

The service: scripts/lib/grpc_interop/interop_test.proto, a minimal grpc.testing.TestService written from the
interop descriptions; its Python stubs are generated at run time with grpcio-tools into a temporary directory.
The server runs in this process on a free 127.0.0.1 port, plaintext h2c: EmptyCall, UnaryCall (response_size,
Echo Status, Echo Metadata), StreamingInputCall, StreamingOutputCall (sizes, interval_us) and FullDuplexCall
(sizes, interval_us, Echo Status, Echo Metadata); UnimplementedCall is left unimplemented (the generated default
answers UNIMPLEMENTED) and grpc.testing.UnimplementedService is not registered at all.

The proxy: one Envoy v3 bootstrap per setup, the same file for Envoy and the sidecar: a static listener on a free
127.0.0.1 port with an http_connection_manager (codec_type AUTO, one virtual host `*`, prefix `/` to cluster
grpc_backend, the router filter), a STATIC cluster grpc_backend on the server with explicit HTTP/2
(typed_extension_protocol_options), and an admin on a free port. Setup `h2c`: the listener is plaintext (gRPC
clients speak HTTP/2 with prior knowledge). Setup `tls`: the listener also has a DownstreamTlsContext (a server
certificate from tls_kit's Pki, made at run time, alpn_protocols [h2, http/1.1]); the client uses
grpc.secure_channel with the test CA as root and ssl_target_name_override server.example.test. The proxy of a
setup is started at that setup's first case and kept for its other cases; if it will not start, each case of the
setup fails with the proxy's reason. With --direct the same cases run straight against the server (its plaintext
port, and for `tls` a TLS port it also opens with the same certificate), to tell a proxy failure from a test bug.

Scenarios are named SETUP/CASE (h2c/empty_unary ... tls/timeout_on_sleeping_server); a NAME or PATTERN without a
`/` selects that case in every selected setup (`large_unary`, `cancel_*`). Cases: empty_unary, large_unary,
client_streaming, server_streaming, ping_pong, empty_stream, custom_metadata, status_code_and_message,
special_status_message, unimplemented_method, unimplemented_service, cancel_after_begin,
cancel_after_first_response, timeout_on_sleeping_server; each asserts what the interop description asserts (and,
where the description leaves clients free to, that payload bodies are zeros). Every case uses a channel of its own
(its own connection) that must connect within 5 s, every call has a deadline (10 s unless the case says
otherwise), a case is failed after 30 s, and cases not started within 120 s of the run's start, or of a setup
whose last 3 cases could not connect, are failed without running. With -v each case also notes
what the server saw (the call, how it ended, request headers the proxy added) and the proxy's reset/timeout
counters that moved.

Output: one line per scenario (`PASS name: what was seen` or `FAIL name: reason`), then
`grpc: N passed, N failed, 0 skipped`; exit status 1 if any failed. Only loopback addresses are used; every
process is stopped by PID and the server, channels and temporary directories closed, pass or fail (a SIGINT or
SIGTERM during cleanup is held until the cleanup is done). About 6 s against Envoy for both setups.
"""

import argparse
import logging
import os
import shutil
import signal
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
SETUPS = ("h2c", "tls")

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
DOWNSTREAM_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
HTTP_OPTIONS = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

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
    the call as cancelled (a client RST_STREAM, an expired grpc-timeout or a lost connection)."""

    def __init__(self, method, context):
        self.method = method
        self.metadata = list(context.invocation_metadata())
        left = context.time_remaining()
        self.deadline_ms = None if left is None or left > 1e9 else int(left * 1000)  # from grpc-timeout
        self.end = "running"
        self.cancelled = None
        self.done = threading.Event()
        self._context = context
        context.add_callback(self._finished)

    def _finished(self):
        # grpcio has no public "was this call cancelled"; its RPC state says so (observational only).
        state = getattr(self._context, "_state", None)
        self.cancelled = getattr(state, "client", None) == "cancelled"
        self.done.set()

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
def bootstrap(admin_port, listen_port, backend_port, cred=None):
    """The one bootstrap both proxies get: h2c listener (with `cred`, TLS with ALPN h2, http/1.1) to the HTTP/2
    cluster grpc_backend."""
    hcm = {
        "@type": HCM,
        "stat_prefix": "grpc_ingress",
        "codec_type": "AUTO",
        "route_config": {
            "name": "grpc_route",
            "virtual_hosts": [{"name": "grpc", "domains": ["*"],
                               "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "grpc_backend"}}]}],
        },
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}],
    }
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
        "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": HTTP_OPTIONS, "explicit_http_config": {"http2_protocol_options": {}}}},
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
                proc, path = self.context().launch_proxy(bootstrap(admin, listen, server.port, cred), admin, [listen])
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

# Request headers every grpcio client sends itself; the others the server sees were added on the way.
CLIENT_HEADERS = {"user-agent", ECHO_INITIAL, ECHO_TRAILING, "grpc-accept-encoding", "grpc-timeout"}


def observe(t, setup, mark, stats_before):
    """Notes (-v) on what the server saw of the case and the proxy counters about resets and timeouts."""
    suite = t.suite
    calls, logs = suite.server.since(mark)
    for rec in calls:
        if not rec.done.is_set():
            rec.done.wait(2)
    if calls:
        t.note("server saw: %s" % ", ".join(r.describe() for r in calls))
        added = {}
        for r in calls:
            for k, v in r.metadata:
                if k not in CLIENT_HEADERS:
                    added.setdefault(k, "<random>" if k == "x-request-id" else short(str(v), 40))
        if added and not suite.direct:
            t.note("request headers the server got from %s: %s"
                   % (suite.proxy, ", ".join("%s=%s" % kv for kv in sorted(added.items()))))
        t.note("deadline left at the server's handler start (grpc-timeout): %s"
               % ", ".join("none" if r.deadline_ms is None else "%d ms" % r.deadline_ms for r in calls))
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


def scenario(setup, case, fn):
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
            c = open_channel(t, setup, tgt.port)
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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--proxy", choices=("envoy", "sidecar"), default="sidecar")
    ap.add_argument("--bin", help="the proxy binary (not needed with --direct or --list)")
    ap.add_argument("--direct", action="store_true", help="run the cases straight against the interop server")
    ap.add_argument("--setup", choices=("h2c", "tls", "all"), default="all")
    ap.add_argument("--only", action="append", default=[], help="scenario name or pattern with * and ?")
    ap.add_argument("names", nargs="*", help="scenario names or patterns (same as --only)")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true", help="print durations and observations")
    a = ap.parse_intermixed_args(argv)
    if not (a.bin or a.direct or a.list):
        ap.error("--bin is required without --direct")

    setups = SETUPS if a.setup == "all" else (a.setup,)
    scenarios = [("%s/%s" % (s, name), scenario(s, name, fn)) for s in setups for name, fn in CASES]
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
