#!/usr/bin/env python3
"""End-to-end tracing tests: the proxy's spans reach real collectors, and a request through two proxies is one
trace with the right parent links.

Usage: python3 scripts/lib/tracing_suite.py --proxy envoy|sidecar --bin PATH [NAME|PATTERN]... [--list] [-v]
(normally through scripts/e2e-tracing, which installs grpcio and opentelemetry-proto from PyPI).

Collectors, in this process on 127.0.0.1: a Zipkin receiver (POST /api/v2/spans, JSON v2, chunked or not) and an
OTLP/gRPC collector (opentelemetry.proto.collector.trace.v1.TraceService/Export on grpcio, with the message
classes of PyPI's opentelemetry-proto). An echo backend answers with the headers it got, as JSON. Each scenario
writes plain Envoy v3 bootstraps (tracing on the HTTP connection manager, `tracing.*.min_flush_spans: 1` in a
static runtime layer so that every span is reported at once), starts the proxy under test, sends requests and
checks what the backend got (the trace context, the request id's tracing digit, x-envoy-decorator-operation) and
the spans the collector received (ids, parents, names, kinds, tags, resource). The expectations are Envoy
1.40's, observed on this machine with --envoy; the sidecar must meet the same ones with the same YAML. Only
loopback addresses are used; every process is stopped by PID and every server closed, pass or fail.

Output: one line per scenario, then `tracing: N passed, N failed, 0 skipped`. About 15 s.
"""

import http.client
import http.server
import json
import threading
import time
from concurrent import futures

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as ts
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as tsg

from suite_common import Fail, check, free_ports, main as run_suite, short, wait_for

ROUTER = {"name": "envoy.filters.http.router",
          "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
H2 = {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
    "explicit_http_config": {"http2_protocol_options": {}}}}


# ---- servers in this process ---------------------------------------------------------------------------
class _Quiet(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def body(self):
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            out = b""
            while True:
                n = int(self.rfile.readline().strip().split(b";")[0], 16)
                if n == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(n)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("content-length", "0")))


def serve(handler_class, port, t, what):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler_class)
    srv.daemon_threads = True
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    t.on_close(what, lambda: (srv.shutdown(), srv.server_close()))
    return srv


def echo_backend(t, port):
    """200 with the request's headers as a JSON object (names lower-cased); `x-status` picks the status."""
    seen = []

    class H(_Quiet):
        def do_GET(self):
            self.body()
            headers = {k.lower(): v for k, v in self.headers.items()}
            seen.append(headers)
            payload = json.dumps(headers).encode()
            self.send_response(int(headers.get("x-status", "200")))
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    serve(H, port, t, "echo backend")
    return seen


def zipkin_collector(t, port):
    spans, posts = [], []

    class H(_Quiet):
        def do_POST(self):
            data = self.body()
            posts.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
            spans.extend(json.loads(data))
            self.send_response(202)
            self.send_header("content-length", "0")
            self.end_headers()

    serve(H, port, t, "zipkin collector")
    return spans, posts


def otlp_collector(t, port):
    """Spans as dicts: traceId/spanId/parentSpanId in hex, name, kind, flags, status code, attributes, resource."""
    spans = []

    class S(tsg.TraceServiceServicer):
        def Export(self, request, context):
            for rs in request.resource_spans:
                resource = {a.key: a.value.string_value for a in rs.resource.attributes}
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        spans.append({
                            "traceId": s.trace_id.hex(), "spanId": s.span_id.hex(), "parentSpanId": s.parent_span_id.hex(),
                            "name": s.name, "kind": s.kind, "flags": s.flags, "status": s.status.code,
                            "attributes": {a.key: a.value.string_value for a in s.attributes}, "resource": resource,
                        })
            return ts.ExportTraceServiceResponse()

    srv = grpc.server(futures.ThreadPoolExecutor(4))
    tsg.add_TraceServiceServicer_to_server(S(), srv)
    srv.add_insecure_port("127.0.0.1:%d" % port)
    srv.start()
    t.on_close("otlp collector", lambda: srv.stop(None))
    return spans


# ---- configs -------------------------------------------------------------------------------------------
def cluster(name, port, http2=False):
    c = {"name": name, "type": "STATIC", "connect_timeout": "1s",
         "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
             {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}}
    if http2:
        c["typed_extension_protocol_options"] = H2
    return c


def zipkin_tracing(extra=None):
    t = {"provider": {"name": "envoy.tracers.zipkin", "typed_config": {
        "@type": "type.googleapis.com/envoy.config.trace.v3.ZipkinConfig",
        "collector_cluster": "zipkin", "collector_endpoint": "/api/v2/spans", "collector_endpoint_version": "HTTP_JSON"}}}
    t.update(extra or {})
    return t


def otel_tracing(service):
    return {"provider": {"name": "envoy.tracers.opentelemetry", "typed_config": {
        "@type": "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
        "grpc_service": {"envoy_grpc": {"cluster_name": "otel"}, "timeout": "1s"}, "service_name": service}}}


def listener(name, port, direction, tracing, cluster_name, decorator=None, child_span=False):
    r = {"match": {"prefix": "/"}, "route": {"cluster": cluster_name}}
    if decorator:
        r["decorator"] = {"operation": decorator}
    router = json.loads(json.dumps(ROUTER))
    if child_span:
        router["typed_config"]["start_child_span"] = True
    return {"name": name, "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "traffic_direction": direction,
            "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
                "@type": HCM, "stat_prefix": name, "tracing": tracing,
                "route_config": {"virtual_hosts": [{"name": "vh", "domains": ["*"], "routes": [r]}]},
                "http_filters": [router]}}]}]}


def bootstrap(admin, listeners, clusters, node_cluster="proxy-a"):
    return {"node": {"id": node_cluster + "-id", "cluster": node_cluster},
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
            "layered_runtime": {"layers": [{"name": "static", "static_layer": {
                "tracing.zipkin.min_flush_spans": 1, "tracing.opentelemetry.min_flush_spans": 1}}]},
            "static_resources": {"listeners": listeners, "clusters": clusters}}


def get(port, path, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        body = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body
    finally:
        c.close()


def upstream_headers(port, path, headers=None):
    status, _, body = get(port, path, headers)
    check(status in (200, 503), "GET %s: %d %s" % (path, status, short(body.decode(errors="replace"))))
    return json.loads(body)


def wait_spans(spans, n, what):
    check(wait_for(lambda: len(spans) >= n, 10), "%s: %d of %d spans reached the collector: %s"
          % (what, len(spans), n, short(json.dumps(spans))))
    time.sleep(0.2)  # nothing more is coming
    check(len(spans) == n, "%s: expected %d spans, got %d: %s" % (what, n, len(spans), short(json.dumps(spans))))


def by_name(spans, name):
    found = [s for s in spans if s["name"] == name]
    check(len(found) == 1, "one span named %r expected, got %s" % (name, [s["name"] for s in spans]))
    return found[0]


# ---- scenarios -----------------------------------------------------------------------------------------
def zipkin_spans(t):
    """Zipkin: a root span (64-bit trace, span id = trace id, named by the route decorator, SERVER, shared, the
    response names the operation), a B3 continuation (the caller's span id, shared), a single `b3` header answered
    in kind, and an egress listener with start_child_span (CLIENT span plus `router svc egress` child, parented on
    it, carrying the upstream address; 503 marks both as errors). Tags and localEndpoint as Envoy's."""
    admin, ingress, egress, up, zk = free_ports(5)
    echo_backend(t, up)
    spans, posts = zipkin_collector(t, zk)
    t.launch_proxy(bootstrap(admin, [
        listener("ingress", ingress, "INBOUND", zipkin_tracing(), "svc", decorator="checkout"),
        listener("egress", egress, "OUTBOUND", zipkin_tracing(), "svc", child_span=True),
    ], [cluster("svc", up), cluster("zipkin", zk)]), admin, [ingress, egress])

    status, rh, body = get(ingress, "/root", {"x-request-id": "11111111-2222-4333-8444-555555555555"})
    check(status == 200 and rh.get("x-envoy-decorator-operation") == "checkout",
          "the response names the decorator: %s" % rh)
    h = json.loads(body)
    check(h["x-request-id"] == "11111111-2222-9333-8444-555555555555", "request id digit: %s" % h["x-request-id"])
    check(h["x-b3-spanid"] == h["x-b3-traceid"] and len(h["x-b3-traceid"]) == 16 and h["x-b3-sampled"] == "1"
          and "x-b3-parentspanid" not in h, "root context upstream: %s" % h)
    root_trace = h["x-b3-traceid"]
    h = upstream_headers(ingress, "/b3", {"x-b3-traceid": "463ac35c9f6413ad48485a3953bb6124",
                                          "x-b3-spanid": "a2fb4a1d1a96d312", "x-b3-sampled": "1"})
    check(h["x-b3-traceid"] == "463ac35c9f6413ad48485a3953bb6124" and h["x-b3-spanid"] == "a2fb4a1d1a96d312",
          "a shared server span passes the caller's ids on: %s" % h)
    single = "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"
    h = upstream_headers(ingress, "/single", {"b3": single})
    check(h.get("b3") == single and "x-b3-traceid" not in h, "a single b3 header is answered in kind: %s" % h)
    h = upstream_headers(egress, "/child", {"x-status": "503"})
    check(h["x-b3-parentspanid"] == h["x-b3-traceid"] and h["x-b3-spanid"] != h["x-b3-traceid"],
          "the child span's context goes upstream: %s" % h)
    child_id = h["x-b3-spanid"]

    wait_spans(spans, 5, "zipkin")
    check(all(p == "/api/v2/spans" and hd.get("content-type") == "application/json" and hd.get("host") == "zipkin"
              for p, hd in posts), "collector POSTs: %s" % posts)
    roots = [s for s in spans if s["traceId"] == root_trace]
    check(len(roots) == 1 and roots[0]["name"] == "checkout", "the root span, named by the decorator: %s" % roots)
    root = roots[0]
    check(root["traceId"] == root_trace and root["id"] == root_trace and "parentId" not in root
          and root["kind"] == "SERVER" and root.get("shared") is True, "root span: %s" % root)
    check(root["localEndpoint"]["serviceName"] == "proxy-a" and root["localEndpoint"]["port"] == 0,
          "localEndpoint: %s" % root["localEndpoint"])
    check(root["annotations"][0]["value"] == "ss", "server annotation: %s" % root["annotations"])
    tags = root["tags"]
    want = {"component": "proxy", "http.method": "GET", "http.url": "http://127.0.0.1:%d/root" % ingress,
            "http.protocol": "HTTP/1.1", "http.status_code": "200", "response_flags": "-", "upstream_cluster": "svc",
            "upstream_cluster.name": "svc", "node_id": "proxy-a-id", "downstream_cluster": "-",
            "peer.address": "127.0.0.1", "request_size": "0", "guid:x-request-id": "11111111-2222-9333-8444-555555555555"}
    wrong = {k: (tags.get(k), v) for k, v in want.items() if tags.get(k) != v}
    check(not wrong and "error" not in tags, "root span tags (got, want): %s" % wrong)
    shared = [s for s in spans if s["traceId"] == "463ac35c9f6413ad48485a3953bb6124"]
    check(len(shared) == 1 and shared[0]["id"] == "a2fb4a1d1a96d312" and shared[0]["name"] == "checkout",
          "B3 continuation span: %s" % shared)
    egress_span = by_name(spans, "127.0.0.1:%d" % egress)
    child = by_name(spans, "router svc egress")
    check(egress_span["kind"] == "CLIENT" and "shared" not in egress_span, "egress span: %s" % egress_span)
    check(child["id"] == child_id and child["parentId"] == egress_span["id"] and child["kind"] == "CLIENT",
          "child span: %s" % child)
    check(child["tags"].get("upstream_address") == "127.0.0.1:%d" % up and child["tags"].get("error") == "true"
          and egress_span["tags"].get("error") == "true", "503 marks errors; child tags %s" % child["tags"])
    return "5 spans: root, B3 continuation, single b3, egress + child, with Envoy's ids, names, kinds and tags"


def zipkin_sampling(t):
    """random_sampling 0: the request id says not traced (digit 4), the upstream gets x-b3-sampled: 0 and nothing is
    exported; a client's x-client-trace-id forces the trace (digit b) whatever random_sampling says."""
    admin, ingress, up, zk = free_ports(4)
    echo_backend(t, up)
    spans, _ = zipkin_collector(t, zk)
    t.launch_proxy(bootstrap(admin, [
        listener("ingress", ingress, "INBOUND", zipkin_tracing({"random_sampling": {"value": 0}}), "svc"),
    ], [cluster("svc", up), cluster("zipkin", zk)]), admin, [ingress])
    for i in range(5):
        h = upstream_headers(ingress, "/n%d" % i)
        check(h["x-b3-sampled"] == "0" and h["x-request-id"][14] == "4", "unsampled request upstream: %s" % h)
    h = upstream_headers(ingress, "/client", {"x-client-trace-id": "c-1"})
    check(h["x-b3-sampled"] == "1" and h["x-request-id"][14] == "b", "client-forced trace upstream: %s" % h)
    wait_spans(spans, 1, "zipkin sampling")
    check(spans[0]["tags"].get("guid:x-client-trace-id") == "c-1", "the forced span: %s" % spans[0])
    return "5 unsampled requests propagated sampled=0 and exported nothing; x-client-trace-id forced one"


def otel_spans(t):
    """OpenTelemetry over gRPC: a root span (128-bit trace, SERVER `ingress`), a W3C continuation (parent = the
    caller's span, flags 0x301, tracestate passed on), an egress span `egress <host>` (CLIENT) whose 503 sets
    status ERROR; the upstream gets traceparent with the proxy's span id and a tracestate header; the resource
    carries service.name."""
    admin, ingress, egress, up, otel = free_ports(5)
    echo_backend(t, up)
    spans = otlp_collector(t, otel)
    t.launch_proxy(bootstrap(admin, [
        listener("ingress", ingress, "INBOUND", otel_tracing("front"), "svc"),
        listener("egress", egress, "OUTBOUND", otel_tracing("front"), "svc"),
    ], [cluster("svc", up), cluster("otel", otel, http2=True)]), admin, [ingress, egress])
    h = upstream_headers(ingress, "/root")
    v, trace, span, flags = h["traceparent"].split("-")
    check(v == "00" and flags == "01" and h.get("tracestate") == "", "root context upstream: %s" % h)
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    h2 = upstream_headers(ingress, "/w3c", {"traceparent": parent, "tracestate": "k=v"})
    _, trace2, span2, _ = h2["traceparent"].split("-")
    check(trace2 == "0af7651916cd43dd8448eb211c80319c" and span2 != "b7ad6b7169203331" and h2.get("tracestate") == "k=v",
          "W3C continuation upstream: %s" % h2)
    upstream_headers(egress, "/bad", {"x-status": "503"})
    wait_spans(spans, 3, "otlp")
    root = [s for s in spans if s["traceId"] == trace][0]
    check(root["spanId"] == span and root["parentSpanId"] == "" and root["name"] == "ingress" and root["kind"] == 2
          and root["flags"] == 0x101, "root span: %s" % root)
    cont = [s for s in spans if s["traceId"] == trace2][0]
    check(cont["spanId"] == span2 and cont["parentSpanId"] == "b7ad6b7169203331" and cont["flags"] == 0x301,
          "continued span: %s" % cont)
    bad = by_name(spans, "egress 127.0.0.1:%d" % egress)
    check(bad["kind"] == 3 and bad["status"] == 2 and bad["attributes"].get("error") == "true"
          and bad["attributes"].get("http.status_code") == "503", "egress 503 span: %s" % bad)
    check(root["resource"].get("service.name") == "front", "resource: %s" % root["resource"])
    check(root["attributes"].get("zone") == "" and root["attributes"].get("upstream_cluster") == "svc",
          "attributes: %s" % root["attributes"])
    return "root, W3C continuation and egress error spans over OTLP/gRPC with Envoy's ids, flags and status"


def otel_two_proxies_one_trace(t):
    """The two-sidecar path over OTLP: the caller's sidecar (egress, CLIENT span, root) and the callee's (ingress,
    SERVER span, child of the caller's) report one trace; the route decorator of the egress route travels as
    x-envoy-decorator-operation and names the callee's span."""
    admin_a, admin_b, la, lb, up, otel = free_ports(6)
    echo_backend(t, up)
    spans = otlp_collector(t, otel)
    t.launch_proxy(bootstrap(admin_b, [listener("inbound", lb, "INBOUND", otel_tracing("service-b"), "app")],
                             [cluster("app", up), cluster("otel", otel, http2=True)], "pod-b"), admin_b, [lb])
    t.launch_proxy(bootstrap(admin_a, [listener("outbound", la, "OUTBOUND", otel_tracing("service-a"), "pod_b",
                                                decorator="getStock")],
                             [cluster("pod_b", lb), cluster("otel", otel, http2=True)], "pod-a"), admin_a, [la])
    h = upstream_headers(la, "/stock")
    check("x-envoy-decorator-operation" not in h, "the callee consumed the decorator header: %s" % h)
    wait_spans(spans, 2, "two proxies")
    a = [s for s in spans if s["resource"].get("service.name") == "service-a"]
    b = [s for s in spans if s["resource"].get("service.name") == "service-b"]
    check(len(a) == 1 and len(b) == 1, "one span per proxy: %s" % spans)
    a, b = a[0], b[0]
    check(a["traceId"] == b["traceId"], "one trace: %s vs %s" % (a["traceId"], b["traceId"]))
    check(a["parentSpanId"] == "" and b["parentSpanId"] == a["spanId"], "parent links: a=%s b=%s" % (a, b))
    check(a["kind"] == 3 and b["kind"] == 2 and a["name"] == "getStock" and b["name"] == "getStock",
          "kinds and names: a=%s/%s b=%s/%s" % (a["kind"], a["name"], b["kind"], b["name"]))
    _, trace, span, _ = h["traceparent"].split("-")
    check(trace == a["traceId"] and span == b["spanId"], "the app got the callee's span: %s" % h["traceparent"])
    return "one trace: caller CLIENT span %s -> callee SERVER span %s -> app" % (a["spanId"], b["spanId"])


def zipkin_two_proxies_one_trace(t):
    """The same path with Zipkin: the callee's SERVER span shares the caller's CLIENT span id (shared_span_context),
    both in one trace."""
    admin_a, admin_b, la, lb, up, zk = free_ports(6)
    echo_backend(t, up)
    spans, _ = zipkin_collector(t, zk)
    t.launch_proxy(bootstrap(admin_b, [listener("inbound", lb, "INBOUND", zipkin_tracing(), "app")],
                             [cluster("app", up), cluster("zipkin", zk)], "pod-b"), admin_b, [lb])
    t.launch_proxy(bootstrap(admin_a, [listener("outbound", la, "OUTBOUND", zipkin_tracing(), "pod_b")],
                             [cluster("pod_b", lb), cluster("zipkin", zk)], "pod-a"), admin_a, [la])
    h = upstream_headers(la, "/stock")
    wait_spans(spans, 2, "two proxies")
    client = [s for s in spans if s["kind"] == "CLIENT"]
    server = [s for s in spans if s["kind"] == "SERVER"]
    check(len(client) == 1 and len(server) == 1, "one span each: %s" % spans)
    c, s = client[0], server[0]
    check(c["traceId"] == s["traceId"] == h["x-b3-traceid"], "one trace: %s" % spans)
    check(s["id"] == c["id"] and s.get("shared") is True, "the server span shares the client's id: %s" % spans)
    check(c["localEndpoint"]["serviceName"] == "pod-a" and s["localEndpoint"]["serviceName"] == "pod-b",
          "service names: %s" % [c["localEndpoint"], s["localEndpoint"]])
    return "one trace, shared span %s (CLIENT in pod-a, SERVER in pod-b)" % c["id"]


SCENARIOS = [
    ("zipkin_spans", zipkin_spans),
    ("zipkin_sampling", zipkin_sampling),
    ("otel_spans", otel_spans),
    ("otel_two_proxies_one_trace", otel_two_proxies_one_trace),
    ("zipkin_two_proxies_one_trace", zipkin_two_proxies_one_trace),
]

if __name__ == "__main__":
    raise SystemExit(run_suite("tracing", __doc__, SCENARIOS, "pf-tracing"))
