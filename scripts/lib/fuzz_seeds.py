#!/usr/bin/env python3
"""Writes the seed inputs of the fuzz targets (see Sources/FuzzTargets) into Tests/Fuzz/seeds/<target>/.

scripts/fuzz starts each run from these seeds plus the committed corpus (Tests/Fuzz/corpus/<target>), which
libFuzzer grows and `scripts/fuzz --merge` minimises. Run this again when a seed source changes:

    .venv-e2e/bin/python scripts/lib/fuzz_seeds.py     (needs the h2 package for the HTTP/2 seeds, and xds-protos
                                                         for the xds ones: scripts/e2e-xds installs it there)

Sources: the smuggling suite's raw requests (scripts/lib/smuggling_suite.py), hand-written requests for each route
and filter of the in-process proxy (ProxyFuzz.config), HTTP/2 client frames written by the h2 library, the repo's
configs and Envoy's router_check configs (../shared/conformance), real TLS ClientHellos from Python's ssl module,
DiscoveryResponses like the ADS suite's control plane sends (Envoy's own messages, from xds-protos).
"""
import glob
import hashlib
import json
import os
import ssl
import struct
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "Tests", "Fuzz", "seeds")
sys.path.insert(0, os.path.join(ROOT, "scripts", "lib"))


def write(target, data, name=None):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    name = name or hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def http1():
    from smuggling_suite import CASES
    for name, raw in CASES.items():
        if len(raw) <= 8192:
            write("http1", raw, "smuggling-" + name)
    h = b"Host: fuzz.example\r\n"
    requests = {
        "direct": b"GET /direct HTTP/1.1\r\n" + h + b"\r\n",
        "backend": b"GET /x?y=1 HTTP/1.1\r\n" + h + b"Accept-Encoding: gzip\r\n\r\n",
        "chunked-response": b"GET /chunked HTTP/1.1\r\n" + h + b"TE: trailers\r\n\r\n",
        "retry-5xx": b"GET /status/503 HTTP/1.1\r\n" + h + b"\r\n",
        "backend-close": b"GET /close HTTP/1.1\r\n" + h + b"\r\n",
        "redirect": b"GET /redirect/a HTTP/1.1\r\n" + h + b"\r\n",
        "rewrite": b"GET /rewrite/a/../b HTTP/1.1\r\n" + h + b"\r\n",
        "normalise": b"GET //a/./b/%2Fc/../d HTTP/1.1\r\n" + h + b"\r\n",
        "post-cl": b"POST /p HTTP/1.1\r\n" + h + b"Content-Length: 5\r\nOrigin: http://fuzz.example\r\n\r\nhello",
        "post-chunked": b"POST /p HTTP/1.1\r\n" + h
        + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nx-t: 1\r\n\r\n",
        "csrf-cross-origin": b"POST /p HTTP/1.1\r\n" + h + b"Origin: http://evil.example\r\nContent-Length: 0\r\n\r\n",
        "cors-preflight": b"OPTIONS /p HTTP/1.1\r\n" + h + b"Origin: http://allowed.example\r\n"
        + b"Access-Control-Request-Method: POST\r\n\r\n",
        "fault-abort": b"GET /f HTTP/1.1\r\n" + h + b"x-envoy-fault-abort-request: 503\r\n\r\n",
        "fault-delay": b"GET /f HTTP/1.1\r\n" + h + b"x-envoy-fault-delay-request: 1\r\n\r\n",
        "websocket": b"GET /ws HTTP/1.1\r\n" + h + b"Connection: Upgrade\r\nUpgrade: websocket\r\n"
        + b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\nxyz",
        "expect": b"POST /p HTTP/1.1\r\n" + h + b"Expect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
        "http10": b"GET /x HTTP/1.0\r\n\r\n",
        "pipelined-mixed": b"GET /direct HTTP/1.1\r\n" + h + b"\r\nPOST /x HTTP/1.1\r\n" + h
        + b"Content-Length: 2\r\n\r\nhiGET /chunked HTTP/1.1\r\n" + h + b"Connection: close\r\n\r\n",
        "head": b"HEAD /x HTTP/1.1\r\n" + h + b"\r\n",
        "grpc": b"POST /pkg.Svc/M HTTP/1.1\r\n" + h + b"Content-Type: application/grpc\r\nTE: trailers\r\n"
        + b"grpc-timeout: 1S\r\nContent-Length: 5\r\n\r\n\x00\x00\x00\x00\x00",
        "h2c-upgrade": b"GET /x HTTP/1.1\r\n" + h + b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
        + b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
        "request-id": b"GET /x HTTP/1.1\r\n" + h + b"x-request-id: 2b0a8b87-9b4c-4b8b-8a60-4b8a1d1e0f31\r\n"
        + b"x-forwarded-for: 198.18.0.1\r\nx-envoy-internal: true\r\n\r\n",
    }
    for name, raw in requests.items():
        write("http1", raw, "request-" + name)


def http2():
    try:
        import h2.config
        import h2.connection
        import h2.events  # noqa: F401
    except ImportError:
        print("fuzz_seeds: no h2 module; HTTP/2 seeds skipped (use .venv-e2e/bin/python)", file=sys.stderr)
        return

    def session(build):
        c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        c.initiate_connection()
        c.data_to_send()  # the preface and SETTINGS, which ProxyFuzz sends itself
        build(c)
        return c.data_to_send()

    base = [(":method", "GET"), (":scheme", "http"), (":authority", "fuzz.example")]

    def get(path, extra=()):
        return lambda c: c.send_headers(1, base[:1] + [(":path", path)] + base[1:] + list(extra), end_stream=True)

    def post(c):
        c.send_headers(1, [(":method", "POST"), (":path", "/p"), (":scheme", "http"), (":authority", "fuzz.example"),
                           ("content-length", "5")])
        c.send_data(1, b"hello", end_stream=True)

    def post_trailers(c):
        c.send_headers(1, [(":method", "POST"), (":path", "/pkg.Svc/M"), (":scheme", "http"),
                           (":authority", "fuzz.example"), ("content-type", "application/grpc"), ("te", "trailers")])
        c.send_data(1, b"\x00\x00\x00\x00\x00")
        c.send_headers(1, [("x-trailer", "1")], end_stream=True)

    def many(c):
        for i, path in enumerate(["/direct", "/x", "/chunked", "/redirect", "/status/503"]):
            c.send_headers(1 + 2 * i, base[:1] + [(":path", path)] + base[1:], end_stream=True)

    def reset(c):
        c.send_headers(1, base[:1] + [(":path", "/x")] + base[1:])
        c.reset_stream(1)

    def control(c):
        c.ping(b"12345678")
        c.increment_flow_control_window(65535)
        c.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1})
        c.send_headers(1, base[:1] + [(":path", "/x")] + base[1:], end_stream=True)
        c.close_connection()

    def extended_connect(c):
        c.send_headers(1, [(":method", "CONNECT"), (":protocol", "websocket"), (":path", "/ws"), (":scheme", "http"),
                           (":authority", "fuzz.example")])
        c.send_data(1, b"frame")

    sessions = {
        "get-direct": get("/direct"),
        "get-backend": get("/x", [("accept-encoding", "gzip")]),
        "get-chunked": get("/chunked"),
        "fault-abort": get("/f", [("x-envoy-fault-abort-request", "503")]),
        "cors": get("/x", [("origin", "http://allowed.example")]),
        "post": post,
        "trailers": post_trailers,
        "many-streams": many,
        "reset": reset,
        "control": control,
        "extended-connect": extended_connect,
    }
    import h2.settings  # noqa: F401
    for name, build in sessions.items():
        write("http2", session(build), "session-" + name)
    # A CONTINUATION and a PRIORITY frame written by hand (h2 does not send them on its own).
    hpack_get = session(get("/x"))
    length = struct.unpack(">I", b"\x00" + hpack_get[:3])[0]
    block = hpack_get[9:9 + length]
    first, rest = block[:2], block[2:]
    frames = (struct.pack(">I", len(first))[1:] + b"\x01\x01" + struct.pack(">I", 1) + first
              + struct.pack(">I", len(rest))[1:] + b"\x09\x04" + struct.pack(">I", 1) + rest
              + struct.pack(">I", 5)[1:] + b"\x02\x00" + struct.pack(">I", 3) + b"\x00\x00\x00\x01\x10")
    write("http2", frames, "frames-continuation-priority")


def config():
    for path in sorted(glob.glob(os.path.join(ROOT, "examples", "**", "*.yaml"), recursive=True)):
        with open(path, "rb") as f:
            data = f.read()
        write("config", data, "example-" + os.path.relpath(path, os.path.join(ROOT, "examples")).replace("/", "-"))
    swift_tests = os.path.join(ROOT, "Sources", "FuzzTargets", "ProxyFuzz.swift")
    with open(swift_tests) as f:
        text = f.read()
    start = text.index('"""\n        static_resources:') + 4
    end = text.index('        """', start)
    proxy = "\n".join(line[8:] for line in text[start:end].splitlines()).replace("\\(backendPort)", "9")
    write("config", proxy.encode(), "proxy-fuzz")
    try:
        import yaml
        write("config", json.dumps(yaml.safe_load(proxy)).encode(), "proxy-fuzz.json")
    except ImportError:
        pass
    conformance = os.path.join(ROOT, "..", "shared", "conformance", "envoy-router-check", "config")
    for path in sorted(glob.glob(os.path.join(conformance, "*.yaml"))):
        with open(path, "rb") as f:
            body = f.read()
        # A route configuration inside a bootstrap, where the connection manager holds it.
        indented = b"".join(b"              " + line + b"\n" for line in body.splitlines())
        boot = (b"static_resources:\n  listeners:\n  - name: l\n    address: {socket_address: {address: 127.0.0.1, "
                b"port_value: 1}}\n    filter_chains:\n    - filters:\n      - name: h\n        typed_config:\n"
                b"          \"@type\": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager"
                b".v3.HttpConnectionManager\n          stat_prefix: s\n          http_filters: [{name: "
                b"envoy.filters.http.router, typed_config: {\"@type\": type.googleapis.com/envoy.extensions.filters."
                b"http.router.v3.Router}}]\n          route_config:\n" + indented)
        write("config", boot, "router-check-" + os.path.basename(path))


def inspectors():
    for sni, alpn in [("fuzz.example", ["h2", "http/1.1"]), (None, None), ("a.b", ["istio-peer-exchange", "istio"])]:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        if alpn:
            ctx.set_alpn_protocols(alpn)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx.wrap_bio(incoming, outgoing, server_hostname=sni)
        try:
            obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        write("inspectors", outgoing.read(), "clienthello-" + (sni or "nosni"))
    write("inspectors", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", "http11")
    write("inspectors", b"GET / HTTP/1.0\r\n\r\n", "http10")
    write("inspectors", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "h2-preface")
    write("inspectors", b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00", "tls-short")


def routes():
    # byte 0: table (0 is ours), byte 1: flags, bytes 2-9: random value, then method, authority, path, runtime key,
    # headers (RouteFuzz).
    def req(table, flags, method, authority, path, runtime="", headers=()):
        text = "\n".join([method, authority, path, runtime] + [f"{k}: {v}" for k, v in headers])
        return bytes([table, flags]) + b"\x00" * 8 + text.encode()

    cases = {
        "exact": req(0, 16, "GET", "exact.example", "/exact"),
        "exact-header": req(0, 16, "GET", "exact.example:8080", "/x", headers=[("x-version", "v2")]),
        "tls-redirect": req(0, 0, "GET", "exact.example", "/x"),
        "regex-rewrite": req(0, 0, "GET", "a.wild.example", "/users/42/profile"),
        "separated-prefix": req(0, 0, "GET", "wild.org", "/api/v1"),
        "redirect": req(0, 0, "GET", "x.wild.example", "/OLD/thing?q=1"),
        "https-redirect": req(0, 0, "GET", "x.wild.example", "/other"),
        "query": req(0, 0, "GET", "any", "/q?debug&mode=FASTER"),
        "headers": req(0, 0, "GET", "any", "/h", headers=[("x-range", "15"), ("x-suffix", "a.svc")]),
        "grpc": req(0, 0, "POST", "any", "/grpc/x", headers=[("content-type", "application/grpc")]),
        "split": req(0, 0, "GET", "any", "/split", runtime="split.on"),
        "normalise": req(0, 1 | 2 | 12, "GET", "any", "//a/../b/%2f/c"),
        "mutations": req(0, 32, "PUT", "any", "/", headers=[("x-remove", "1")]),
    }
    for name, data in cases.items():
        write("routes", data, name)
    for table in range(1, 8):
        write("routes", req(table, 0, "GET", "www.lyft.com", "/new_endpoint/x"), f"conformance-{table}")


def xds():
    """Serialized DiscoveryResponses: CDS (an EDS cluster with health checks, outlier detection and TLS; a static
    one), EDS (priorities, localities, health status), RDS (routes with retries and a typed_per_filter_config), one
    with a field Pilotfish's subset lacks, LDS (filter chains by SNI, tcp_proxy, RDS by api_config_source and
    ADS, a bind_to_port: false listener) and SDS (a certificate and a validation context, inline_bytes)."""
    from envoy.config.cluster.v3 import cluster_pb2
    from envoy.config.endpoint.v3 import endpoint_pb2
    from envoy.config.route.v3 import route_pb2
    from envoy.extensions.transport_sockets.tls.v3 import tls_pb2  # noqa: F401 (registers the type for Any)
    from envoy.extensions.filters.http.fault.v3 import fault_pb2  # noqa: F401
    from envoy.service.discovery.v3 import discovery_pb2
    from google.protobuf import json_format

    def response(type_url, message, items, version="1"):
        r = discovery_pb2.DiscoveryResponse(version_info=version, type_url=type_url, nonce="1")
        for item in items:
            r.resources.add().Pack(json_format.ParseDict(item, message()))
        return r.SerializeToString()

    cds = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
    eds = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
    rds = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
    clusters = [
        {"name": "svc", "type": "EDS", "connect_timeout": "1s", "lb_policy": "LEAST_REQUEST",
         "eds_cluster_config": {"eds_config": {"ads": {}, "resource_api_version": "V3"}, "service_name": "svc"},
         "common_lb_config": {"healthy_panic_threshold": {"value": 40}, "locality_weighted_lb_config": {}},
         "health_checks": [{"timeout": "1s", "interval": "2s", "unhealthy_threshold": 2, "healthy_threshold": 1,
                            "http_health_check": {"path": "/healthz"}}],
         "outlier_detection": {"consecutive_5xx": 3, "interval": "1s"},
         "circuit_breakers": {"thresholds": [{"max_connections": 10, "max_retries": 2}]},
         "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
             "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
             "sni": "svc.example", "common_tls_context": {"alpn_protocols": ["h2"]}}}},
        {"name": "static", "type": "STATIC", "connect_timeout": "0.25s", "load_assignment": {
            "cluster_name": "static", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                "socket_address": {"address": "127.0.0.1", "port_value": 8080}}}}]}]}},
    ]
    write("xds", response(cds, cluster_pb2.Cluster, clusters), "cds")
    assignments = [{"cluster_name": "svc", "endpoints": [
        {"locality": {"region": "r", "zone": "z%d" % p}, "priority": p, "load_balancing_weight": 1 + p,
         "lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "198.18.0.%d" % (i + 1),
                                                                        "port_value": 8080}},
                                        "health_check_config": {"port_value": 9090}, "hostname": "h%d" % i},
                           "health_status": status, "load_balancing_weight": 2}
                          for i, status in enumerate(["HEALTHY", "UNHEALTHY", "DRAINING"])]}
        for p in range(2)]}]
    write("xds", response(eds, endpoint_pb2.ClusterLoadAssignment, assignments), "eds")
    routes = [{"name": "dyn", "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
        {"match": {"prefix": "/api", "headers": [{"name": "x-canary", "string_match": {"exact": "1"}}]},
         "route": {"cluster": "svc", "timeout": "2s", "retry_policy": {"retry_on": "5xx", "num_retries": 2}},
         "typed_per_filter_config": {"envoy.filters.http.fault": {
             "@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault",
             "abort": {"http_status": 503, "percentage": {"numerator": 10}}}}},
        {"match": {"prefix": "/"}, "route": {"weighted_clusters": {"clusters": [
            {"name": "svc", "weight": 90}, {"name": "static", "weight": 10}]}}}]}]}]
    write("xds", response(rds, route_pb2.RouteConfiguration, routes), "rds")
    unknown = dict(clusters[1], track_cluster_stats={"timeout_budgets": True})
    write("xds", response(cds, cluster_pb2.Cluster, [unknown]), "cds-unknown-field")
    from envoy.config.listener.v3 import listener_pb2
    from envoy.extensions.filters.http.router.v3 import router_pb2  # noqa: F401
    from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2  # noqa: F401
    from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2  # noqa: F401
    from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2  # noqa: F401
    lds = "type.googleapis.com/envoy.config.listener.v3.Listener"
    hcm = {"@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
           "stat_prefix": "http", "codec_type": "AUTO",
           "rds": {"route_config_name": "dyn", "config_source": {"resource_api_version": "V3", "api_config_source": {
               "api_type": "GRPC", "transport_api_version": "V3",
               "grpc_services": [{"envoy_grpc": {"cluster_name": "xds_cluster"}}]}}},
           "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
               "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}
    listeners = [
        {"name": "listener_0", "address": {"socket_address": {"address": "0.0.0.0", "port_value": 10000}},
         "listener_filters": [{"name": "envoy.filters.listener.tls_inspector", "typed_config": {
             "@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"}}],
         "filter_chains": [
             {"filter_chain_match": {"server_names": ["a.example"]}, "filters": [
                 {"name": "envoy.filters.network.tcp_proxy", "typed_config": {
                     "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                     "stat_prefix": "tcp", "cluster": "static"}}]},
             {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}]},
        {"name": "virtual", "address": {"socket_address": {"address": "0.0.0.0", "port_value": 8080}},
         "bind_to_port": False, "filter_chains": [
             {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": dict(
                 hcm, rds={"route_config_name": "r8080", "config_source": {"ads": {}, "resource_api_version": "V3"}})}]}]},
    ]
    write("xds", response(lds, listener_pb2.Listener, listeners), "lds")

    # SDS: a certificate and a validation context, inline_bytes as control planes send them (a throwaway
    # self-signed EC pair: the decoder reads the PEM text, it does not build a TLS context).
    from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
    import base64
    pem = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n").decode()
    key = base64.b64encode(b"-----BEGIN PRIVATE KEY-----\nMIGH\n-----END PRIVATE KEY-----\n").decode()
    secrets = [
        {"name": "server_cert", "tls_certificate": {"certificate_chain": {"inline_bytes": pem},
                                                    "private_key": {"inline_bytes": key}}},
        {"name": "mesh_ca", "validation_context": {"trusted_ca": {"inline_bytes": pem}, "match_typed_subject_alt_names": [
            {"san_type": "URI", "matcher": {"prefix": "spiffe://cluster.local/"}}]}},
    ]
    write("xds", response("type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret", secret_pb2.Secret,
                          secrets), "sds")


if __name__ == "__main__":
    xds()
    http1()
    http2()
    config()
    inspectors()
    routes()
    for target in sorted(os.listdir(OUT)):
        print(f"fuzz_seeds: {target}: {len(os.listdir(os.path.join(OUT, target)))} seeds")
