#!/usr/bin/env python3
"""Config from a control plane over ADS (issue 15), the same scenarios against Envoy 1.40 and the sidecar.

Usage: python3 scripts/lib/xds_ads_suite.py --proxy envoy|sidecar --bin PATH [NAME|PATTERN]... [--list] [-v]
(normally through scripts/e2e-xds, on .venv-e2e's Python with grpcio and xds-protos).

The control plane is written here with grpcio and xds-protos (Envoy's own generated messages): an
AggregatedDiscoveryService, state of the world, that answers each subscription with the resources it holds,
records every request (versions, nonces, error_detail, node), and pushes new resources to the open streams.
The proxy: one listener (stat_prefix xds) whose connection manager takes route configuration `dyn` over ADS;
CDS over ADS (`svc`, an EDS cluster whose endpoints come over ADS too); the static cluster `xds_cluster` to the
plane (HTTP/2, plaintext). Backends are loopback HTTP/1.1 servers that answer their own name.

Scenarios:
  initial         /ready is 503 PRE_INITIALIZING while the plane holds its answers; once it answers, 200 LIVE
                  and GET / reaches a; every response is ACKed with its version and nonce; the node is sent.
  under-load      4 keep-alive clients for 4 s while the plane moves svc's endpoints a → a+b → b → a+b → a and
                  the route between svc and the static cluster `b`: no request fails, both answer.
  nack            a cluster with connect_timeout 0s is NACKed (error_detail names the field, version stays 1);
                  a keeps serving; update_rejected 1; the next good push is ACKed and taken.
  unknown-field   (sidecar) a Cluster with track_cluster_stats set, a field Pilotfish's subset lacks: NACKed, naming
                  field number 49 of envoy.config.cluster.v3.Cluster; a keeps serving.
  eds-priorities  endpoints at priorities 0 (a) and 1 (b) with health_status: a UNHEALTHY sends everything to b
                  (/clusters: /failed_eds_health, priority 1), HEALTHY again brings it back; (sidecar) DEGRADED is
                  NACKed, naming health_status.
  tls-plane       the plane over mTLS (it requires a client certificate from the test CA): the ADS cluster's
                  UpstreamTlsContext with a client certificate, trusted_ca and sni; the plane sees the client's
                  CN and a serves. A proxy trusting another CA gets no stream and stays PRE_INITIALIZING.
  delta-*         initial, under-load, nack and plane-restart over DeltaAggregatedResources (api_type DELTA_GRPC):
                  subscriptions, per-resource versions, ACK/NACK by nonce, initial_resource_versions on the new
                  stream (svc); delta-removal: a cluster in removed_resources goes, svc keeps serving;
                  delta-eds-rds-removal: a removed route configuration and a removed assignment are kept (as
                  Envoy: a serves on).
  plane-restart   the plane is stopped: the proxy keeps serving, control_plane.connected_state goes to 0; a new
                  plane on the same port gets requests with the versions the proxy has, pushes b, and b serves.
  lds-initial     envoyproxy/examples' dynamic-config-cp on loopback: its bootstrap (no listener; CDS and LDS over
                  ADS); nothing listens and /ready is 503 until the plane answers; then listener_0 (RDS local_route
                  by api_config_source: a RouteDiscoveryService stream of its own, as the example) serves a, CDS/LDS/RDS are ACKed, /config_dump shows it; the plane stops and comes back with
                  version 2: b serves. delta-lds-initial: the same over DELTA_GRPC.
  lds-replace-under-load
                  4 keep-alive clients while the plane replaces the listener (new stat_prefix, new route
                  configuration to_b that arrives after it: the new listener warms): no request fails, the old
                  listener's connections drain within --drain-time-s 2, then only b answers.
  lds-removal     a second listener added, then left out (delta: removed_resources): its port stops accepting;
                  listener_0 keeps serving; listener_removed 1. delta-lds-removal: the same over DELTA_GRPC.
  lds-nack        a listener with two identical filter chains is NACKed (version stays 1); the listener keeps
                  serving; /config_dump shows the error_state.
  sds-initial     a static HTTPS listener whose certificate is the SDS secret server_cert over ADS (inline_bytes):
                  /ready waits for it; then the plane's certificate is served, ACKed, counted, shown in
                  /config_dump's SecretsConfigDump with the key redacted; version 2 (another certificate) is
                  served on the next handshake. delta-sds-initial: the same over DELTA_GRPC.
  sds-nack        a secret whose key does not match its certificate is NACKed; version 1's certificate serves on.
  sds-lds-warming a listener from LDS naming the secret warms (its port refuses; dynamic_warming_secrets shows
                  server_cert uninitialized) until the secret arrives, then serves it.
  sds-stream      Istio's form: the secret over a SecretDiscoveryService stream of its own (api_config_source).
  sds-cluster-warming
                  a CDS cluster whose client certificate and CA come by SDS warms (dynamic_warming_clusters; no
                  request reaches the backend) until both arrive, then reaches an mTLS backend as CN client.
  sds-not-ready   (sidecar; Envoy 1.40 segfaults on this config) static resources whose secrets never come:
                  /ready 503, TLS connections closed and requests to the cluster 503, counted as
                  *_context_secrets_not_ready.

Output: a PASS/FAIL line per scenario and `xds-ads: N passed, N failed, 0 skipped`; exit 1 if any failed. Only
loopback is used; processes are stopped by PID, pass or fail.
"""

import hashlib
import json
import os
import queue
import socket
import threading
import time
from concurrent import futures

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")  # before grpc loads: the TLS scenario's refused handshakes are expected

import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2  # noqa: F401
from envoy.extensions.filters.http.router.v3 import router_pb2  # noqa: F401 (registers the type for Any)
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2, tls_pb2  # noqa: F401 (tls: DownstreamTlsContext)
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2  # noqa: F401
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from envoy.service.route.v3 import rds_pb2_grpc
from envoy.service.secret.v3 import sds_pb2_grpc
from google.protobuf import json_format

from suite_common import (
    ScenarioContext,  # noqa: F401
    admin_get,
    admin_stats,
    check,
    free_ports,
    http_call,
    main as run_suite,
    short,
    sockaddr,
    wait_for,
)
from xds_file_suite import NameServer, backends, body, load

CDS = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
EDS = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
RDS = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
LDS = "type.googleapis.com/envoy.config.listener.v3.Listener"
SDS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
H2_OPTIONS = {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
    "explicit_http_config": {"http2_protocol_options": {}}}}
MESSAGES = {CDS: cluster_pb2.Cluster, EDS: endpoint_pb2.ClusterLoadAssignment, RDS: route_pb2.RouteConfiguration,
            LDS: listener_pb2.Listener, SDS: secret_pb2.Secret}
NAME_FIELD = {CDS: "name", EDS: "cluster_name", RDS: "name", LDS: "name", SDS: "name"}


class ControlPlane:
    """A state-of-the-world ADS server: per type, a version and resources by name."""

    def __init__(self, port, hold=False, tls=None):
        """`tls`: (certificate file, key file, CA file whose clients it requires) for a TLS port; plaintext without.
        It serves both StreamAggregatedResources and DeltaAggregatedResources."""
        self.port = port
        self.nonce_versions = {}  # nonce -> the version_info / system_version_info of the response it named
        self.peers = []  # the client certificate's common name on each stream (TLS), or None
        self.lock = threading.Lock()
        self.state = {}  # type_url -> (version, {name: message})
        self.requests = []  # every DiscoveryRequest, in order
        self.route_streams = 0  # RouteDiscoveryService streams opened
        self.secret_streams = 0  # SecretDiscoveryService streams opened
        self.streams = []
        self.nonce = 0
        self.released = threading.Event()
        if not hold:
            self.released.set()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(self._Servicer(self), self.server)
        rds_pb2_grpc.add_RouteDiscoveryServiceServicer_to_server(self._RouteServicer(self), self.server)
        sds_pb2_grpc.add_SecretDiscoveryServiceServicer_to_server(self._SecretServicer(self), self.server)
        if tls:
            cert, key, ca = (open(f, "rb").read() for f in tls)
            creds = grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=True)
            self.server.add_secure_port("127.0.0.1:%d" % port, creds)
        else:
            self.server.add_insecure_port("127.0.0.1:%d" % port)
        self.server.start()

    class _Servicer(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):
        def __init__(self, plane):
            self.plane = plane

        def StreamAggregatedResources(self, request_iterator, context):
            return self.plane._stream(request_iterator, context)

        def DeltaAggregatedResources(self, request_iterator, context):
            return self.plane._delta_stream(request_iterator, context)

    def _own_stream(self, counter, requests, context):
        """A stream of one type's own service (an `api_config_source`), counted in attribute `counter`."""
        with self.lock:
            setattr(self, counter, getattr(self, counter) + 1)
        return self._stream(requests, context)

    class _RouteServicer(rds_pb2_grpc.RouteDiscoveryServiceServicer):
        """RouteDiscoveryService: an `api_config_source` stream of route configurations only."""

        def __init__(self, plane):
            self.plane = plane

        def StreamRoutes(self, request_iterator, context):
            return self.plane._own_stream("route_streams", request_iterator, context)

        def DeltaRoutes(self, request_iterator, context):
            return self.plane._delta_stream(request_iterator, context)

    class _SecretServicer(sds_pb2_grpc.SecretDiscoveryServiceServicer):
        """SecretDiscoveryService: an `api_config_source` stream of secrets only (as Istio's proxies have)."""

        def __init__(self, plane):
            self.plane = plane

        def StreamSecrets(self, request_iterator, context):
            return self.plane._own_stream("secret_streams", request_iterator, context)

        def DeltaSecrets(self, request_iterator, context):
            return self.plane._delta_stream(request_iterator, context)

    class _Stream:
        def __init__(self):
            self.out = queue.Queue()
            self.names = {}  # type_url -> set of names (empty: wildcard)
            self.sent = {}  # type_url -> version sent

    def _serve(self, s, requests, context, on_request, on_release):
        """The life of one stream `s`: its requests read on a thread (`on_request(r)`, under the lock), and once
        the plane is released `on_release()` (under the lock), then what is put on `s.out`, until it ends."""
        cn = context.auth_context().get("x509_common_name")
        with self.lock:
            self.streams.append(s)
            self.peers.append(cn[0].decode() if cn else None)

        def reader():
            try:
                for r in requests:
                    with self.lock:
                        self.requests.append(r)
                        on_request(r)
            except Exception:
                pass
            s.out.put(None)

        threading.Thread(target=reader, daemon=True).start()
        self.released.wait()
        with self.lock:
            on_release()
        while True:
            m = s.out.get()
            if m is None:
                break
            yield m
        with self.lock:
            self.streams.remove(s)

    def _stream(self, requests, context):
        s = self._Stream()

        def on_request(r):
            if r.response_nonce == "" or set(r.resource_names) != s.names.get(r.type_url):
                s.names[r.type_url] = set(r.resource_names)
                if self.released.is_set():
                    self._send(s, r.type_url, force=True)

        def on_release():
            for t in list(s.names):
                if s.sent.get(t) is None:
                    self._send(s, t, force=True)

        return self._serve(s, requests, context, on_request, on_release)

    class _DeltaStream:
        def __init__(self):
            self.out = queue.Queue()
            self.subs = {}  # type_url -> set of names, or None for a wildcard subscription
            self.sent = {}  # type_url -> {name: resource version the proxy has}
            self.answered = set()  # type_urls this stream got a response for
            self.delta = True

    def _delta_stream(self, requests, context):
        s = self._DeltaStream()

        def on_request(r):
            if r.response_nonce:
                return  # an ACK or NACK
            t = r.type_url
            subscribe, unsubscribe = set(r.resource_names_subscribe), set(r.resource_names_unsubscribe)
            first = t not in s.subs
            if first:
                # The legacy wildcard: a first request without names.
                s.subs[t] = None if not subscribe or "*" in subscribe else subscribe
                s.sent[t] = dict(r.initial_resource_versions)
            else:
                if s.subs[t] is not None:
                    s.subs[t] = (s.subs[t] | subscribe) - unsubscribe
                for n in unsubscribe:
                    s.sent[t].pop(n, None)
            if self.released.is_set():
                self._send_delta(s, t, force=first)

        def on_release():
            # Types a request was already answered for (the plane was released before the stream's first
            # requests were read) get nothing more: a second, empty response would count as another update.
            for t in list(s.subs):
                if t not in s.answered:
                    self._send_delta(s, t, force=True)

        return self._serve(s, requests, context, on_request, on_release)

    def resource_version(self, type_url, name):
        """The version the delta protocol gives resource `name` of `type_url` as held now."""
        with self.lock:
            return self._resource_version(self.state[type_url][1][name])

    @staticmethod
    def _resource_version(m):
        return hashlib.sha256(m.SerializeToString(deterministic=True)).hexdigest()[:12]

    def _send_delta(self, s, type_url, force=False):
        """What changed for this stream since it last heard: resources with new versions, and names removed."""
        if type_url not in s.subs or type_url not in self.state:
            return
        version, resources = self.state[type_url]
        names = s.subs[type_url]
        wanted = {n: m for n, m in resources.items() if names is None or n in names}
        sent = s.sent[type_url]
        changed = [(n, m) for n, m in sorted(wanted.items()) if sent.get(n) != self._resource_version(m)]
        removed = sorted(n for n in sent if n not in wanted)
        if not changed and not removed and not force:
            return
        self.nonce += 1
        resp = discovery_pb2.DeltaDiscoveryResponse(system_version_info=version, type_url=type_url,
                                                    nonce=str(self.nonce))
        for n, m in changed:
            r = resp.resources.add()
            r.name = n
            r.version = self._resource_version(m)
            r.resource.Pack(m)
            sent[n] = r.version
        for n in removed:
            del sent[n]
        resp.removed_resources.extend(removed)
        self.nonce_versions[resp.nonce] = version
        s.answered.add(type_url)
        s.out.put(resp)

    def _send(self, s, type_url, force=False):
        if type_url not in s.names or type_url not in self.state:
            return
        version, resources = self.state[type_url]
        if not force and s.sent.get(type_url) == version:
            return
        names = s.names[type_url]
        chosen = [m for n, m in sorted(resources.items()) if not names or n in names]
        self.nonce += 1
        resp = discovery_pb2.DiscoveryResponse(version_info=version, type_url=type_url, nonce=str(self.nonce))
        for m in chosen:
            resp.resources.add().Pack(m)
        s.sent[type_url] = version
        s.out.put(resp)

    def set(self, type_url, version, resources):
        """Holds `resources` (dicts in Envoy's JSON form, or messages) as `type_url` at `version`, and pushes
        them to every stream subscribed to the type."""
        msgs = {}
        for r in resources:
            if isinstance(r, dict):
                r = json_format.ParseDict(r, MESSAGES[type_url]())
            msgs[getattr(r, NAME_FIELD[type_url])] = r
        with self.lock:
            self.state[type_url] = (version, msgs)
            for s in self.streams:
                if getattr(s, "delta", False):
                    self._send_delta(s, type_url)
                else:
                    self._send(s, type_url)

    def release(self):
        with self.lock:
            self.released.set()

    def acks(self, type_url):
        """(version_info, response_nonce, error_detail message) of every request for `type_url`. A delta request
        has no version_info: its entry has the version of the response its nonce answers (None for none)."""
        with self.lock:
            return [(r.version_info if hasattr(r, "version_info") else self.nonce_versions.get(r.response_nonce),
                     r.response_nonce, r.error_detail.message if r.HasField("error_detail") else None)
                    for r in self.requests if r.type_url == type_url]

    def acks_with_names(self, type_url):
        """As `acks`, with each request's resource names as a set."""
        with self.lock:
            return [(r.version_info, r.response_nonce, r.error_detail.message if r.HasField("error_detail") else None,
                     set(r.resource_names)) for r in self.requests if r.type_url == type_url]

    def stop(self):
        self.server.stop(0)


def eds_cluster(name="svc", extra=None):
    c = {"name": name, "connect_timeout": "1s", "type": "EDS",
         "eds_cluster_config": {"eds_config": {"ads": {}, "resource_api_version": "V3"}}}
    c.update(extra or {})
    return c


def assignment(ports, name="svc"):
    return {"cluster_name": name, "endpoints": [{"lb_endpoints": [
        {"endpoint": {"address": sockaddr(p)}} for p in ports]}]}


def routes(cluster_name, name="dyn"):
    return {"name": name, "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
        {"match": {"prefix": "/"}, "route": {"cluster": cluster_name}}]}]}


# The RDS config source of envoyproxy/examples' dynamic-config-cp (resource.go): a RouteDiscoveryService stream of its
# own to xds_cluster, not the ADS stream.
ROUTE_STREAM = {"resource_api_version": "V3", "api_config_source": {
    "api_type": "GRPC", "transport_api_version": "V3", "set_node_on_first_message_only": True,
    "grpc_services": [{"envoy_grpc": {"cluster_name": "xds_cluster"}}]}}


def listener(port, route_name, stat_prefix="ingress", name="listener_0", extra=None, source=None):
    """An HTTP listener on `port` whose routes come over ADS, or from `source`."""
    hcm = {"@type": HCM, "stat_prefix": stat_prefix, "codec_type": "AUTO",
           "rds": {"route_config_name": route_name,
                   "config_source": source or {"ads": {}, "resource_api_version": "V3"}},
           "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}]}
    chain = {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}
    doc = {"name": name, "address": sockaddr(port), "filter_chains": [chain]}
    doc.update(extra or {})
    return doc


def static_cluster(name, port):
    return {"name": name, "connect_timeout": "1s", "type": "STATIC",
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": sockaddr(port)}}]}]}}


def bootstrap(admin, port, plane_port, statics=(), plane_tls=None, delta=False):
    """`plane_tls`: the transport_socket of the cluster to the plane (plaintext without); `delta`: DELTA_GRPC."""
    hcm = {"@type": HCM, "stat_prefix": "xds", "codec_type": "AUTO",
           "rds": {"route_config_name": "dyn", "config_source": {"ads": {}, "resource_api_version": "V3"}},
           "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}]}
    clusters = [{"name": "xds_cluster", "connect_timeout": "1s", "type": "STATIC",
                 "typed_extension_protocol_options": H2_OPTIONS,
                 "load_assignment": {"cluster_name": "xds_cluster", "endpoints": [{"lb_endpoints": [
                     {"endpoint": {"address": sockaddr(plane_port)}}]}]}}]
    if plane_tls:
        clusters[0]["transport_socket"] = plane_tls
    for name, p in statics:
        clusters.append({"name": name, "connect_timeout": "1s", "type": "STATIC",
                         "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                             {"endpoint": {"address": sockaddr(p)}}]}]}})
    return {"admin": {"address": sockaddr(admin)},
            "node": {"id": "xds-ads", "cluster": "xds-ads"},
            "dynamic_resources": {
                "ads_config": {"api_type": "DELTA_GRPC" if delta else "GRPC", "transport_api_version": "V3",
                               "grpc_services": [{"envoy_grpc": {"cluster_name": "xds_cluster"}}]},
                "cds_config": {"ads": {}, "resource_api_version": "V3"}},
            "static_resources": {
                "listeners": [{"name": "xds", "address": sockaddr(port), "filter_chains": [
                    {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}]}],
                "clusters": clusters}}


def lds_bootstrap(admin, plane_port, delta=False):
    """The dynamic-config-cp bootstrap: no listener and no cluster but the plane's; CDS and LDS over ADS."""
    doc = bootstrap(admin, 0, plane_port, delta=delta)
    doc["dynamic_resources"]["lds_config"] = {"ads": {}, "resource_api_version": "V3"}
    doc["static_resources"].pop("listeners")
    doc["node"] = {"id": "test-id", "cluster": "test-cluster"}
    return doc


def start_lds(t, p, drain_time=None):
    """A proxy on `lds_bootstrap`, once /ready says 200 (its listeners come from the plane). `drain_time`:
    --drain-time-s for both proxies (Envoy's default is 600 s)."""
    admin = free_ports(1)[0]
    path = t.write_config(lds_bootstrap(admin, p.port, delta=is_delta(t)))
    argv = t.suite.proxy_argv(path) + (["--drain-time-s", str(drain_time)] if drain_time else [])
    proc = t.spawn(argv, "proxy")
    check(wait_for(lambda: ready(admin)[0] == 200 or not proc.alive(), 15), "/ready: %s; %s"
          % (ready(admin), proc.stderr_tail()))
    check(proc.alive(), "the proxy exited: %s" % proc.stderr_tail())
    return proc, admin


def listeners_dump(admin):
    """/config_dump's ListenersConfigDump."""
    dump = json.loads(admin_get(admin, "/config_dump"))
    return [c for c in dump["configs"] if c["@type"].endswith("ListenersConfigDump")][0]


def refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return False
    except OSError:
        return True


def lds_initial(t):
    """envoyproxy/examples' dynamic-config-cp on loopback: the bootstrap as written (node, ADS with CDS and LDS),
    the plane's snapshot (listener_0 whose RDS local_route comes by a route stream of its own, as resource.go
    has it; example_proxy_cluster), then a second snapshot."""
    a, b = backends(t, "a", "b")
    port = free_ports(1)[0]
    p = plane(t, hold=True)
    p.set(CDS, "1", [static_cluster("example_proxy_cluster", a.port)])
    p.set(LDS, "1", [listener(port, "local_route", stat_prefix="http", source=ROUTE_STREAM)])
    p.set(RDS, "1", [routes("example_proxy_cluster", name="local_route")])
    admin = free_ports(1)[0]
    path = t.write_config(lds_bootstrap(admin, p.port, delta=is_delta(t)))
    proc = t.spawn(t.suite.proxy_argv(path), "proxy")
    check(wait_for(lambda: ready(admin)[0] == 503, 10), "/ready while the plane holds its answers: %s" % (ready(admin),))
    check(refused(port), "port %d accepts connections before any listener arrived" % port)
    p.release()
    check(wait_for(lambda: ready(admin)[0] == 200, 10), "/ready after the plane answered: %s" % (ready(admin),))
    # Ready means the listener warmed (its routes arrived by their own stream): it serves at once.
    check(body(port) == "200 a", "GET / on the listener from LDS once ready: %s" % body(port))
    for url in (CDS, LDS, RDS):
        check(wait_for(lambda: any(v == "1" and n and e is None for v, n, e in p.acks(url)), 5),
              "no ACK of version 1 for %s: %s" % (url, p.acks(url)))
    check(p.route_streams >= 1, "local_route did not come by a RouteDiscoveryService stream")
    check(stat(admin, "listener_manager.lds.update_success") == 1, "lds.update_success %d"
          % stat(admin, "listener_manager.lds.update_success"))
    check(stat(admin, "listener_manager.listener_added") == 1, "listener_added %d"
          % stat(admin, "listener_manager.listener_added"))
    check(stat(admin, "http.http.rds.local_route.update_success") == 1, "rds update_success %d"
          % stat(admin, "http.http.rds.local_route.update_success"))
    dynamic = {d["name"]: d for d in listeners_dump(admin).get("dynamic_listeners", [])}
    active = dynamic.get("listener_0", {}).get("active_state", {})
    check(active.get("listener", {}).get("name") == "listener_0", "config_dump's listener_0: %s" % dynamic)
    # State of the world: the response's version. Delta: the listener's own version, as Envoy shows it.
    want = p.resource_version(LDS, "listener_0") if is_delta(t) else "1"
    check(active.get("version_info") == want, "config_dump's listener_0 version %r, expected %r"
          % (active.get("version_info"), want))
    # The example's second snapshot: the plane goes away, then comes back with version 2 (service2).
    p.stop()
    check(wait_for(lambda: stat(admin, "control_plane.connected_state") == 0, 10), "connected_state stayed 1")
    check(body(port) == "200 a", "while the plane is away: %s" % body(port))
    q = plane(t, port=p.port)
    q.set(CDS, "2", [static_cluster("example_proxy_cluster", b.port)])
    q.set(LDS, "2", [listener(port, "local_route", stat_prefix="http", source=ROUTE_STREAM)])
    q.set(RDS, "2", [routes("example_proxy_cluster", name="local_route")])
    check(wait_for(lambda: body(port) == "200 b", 15), "after the plane's version 2: %s" % body(port))
    check(stat(admin, "listener_manager.listener_modified") == 0, "an identical listener was modified")
    return "no port before the plane; listener_0 from LDS serves a (CDS, LDS, RDS ACKed); version 2 serves b"


def lds_replace_under_load(t):
    """A listener replaced under 4 keep-alive clients: the new one routes to b by a new route configuration (it
    warms until RDS brings it), the old one's connections drain (Connection: close) and no request fails."""
    a, b = backends(t, "a", "b")
    port = free_ports(1)[0]
    p = plane(t)
    p.set(CDS, "1", [static_cluster("a", a.port), static_cluster("b", b.port)])
    p.set(LDS, "1", [listener(port, "to_a", stat_prefix="one")])
    p.set(RDS, "1", [routes("a", name="to_a")])
    proc, admin = start_lds(t, p, drain_time=2)
    check(wait_for(lambda: body(port) == "200 a", 10), "GET /: %s" % body(port))
    seen = {"after": []}

    def changes():
        time.sleep(1)
        p.set(LDS, "2", [listener(port, "to_b", stat_prefix="two")])
        time.sleep(0.5)
        p.set(RDS, "2", [routes("a", name="to_a"), routes("b", name="to_b")])
        check(wait_for(lambda: stat(admin, "listener_manager.listener_modified") == 1, 5), "listener_modified %d"
              % stat(admin, "listener_manager.listener_modified"))
        # Every old connection closes within the drain time: then only b answers.
        time.sleep(3)
        before = b.count
        time.sleep(1)
        seen["after"] = (a.count, b.count - before)
        check(proc.alive(), "the proxy died: %s" % proc.stderr_tail())

    a0 = a.count
    ok, bad = load(port, 4, changes)
    check(not bad, "%d failed requests of %d, first: %s" % (len(bad), ok + len(bad), bad[:3]))
    check(a.count > a0 and b.count > 0, "backend a answered %d, b %d" % (a.count - a0, b.count))
    a_end = a.count
    check(body(port) == "200 b" and a.count == a_end, "after the drain: %s" % body(port))
    check(wait_for(lambda: stat(admin, "listener_manager.total_listeners_draining") == 0, 5),
          "total_listeners_draining %d" % stat(admin, "listener_manager.total_listeners_draining"))
    check(stat(admin, "http.two.rds.to_b.update_success") >= 1, "rds to_b never taken")
    return "%d requests, none failed (a %d, then b %d); the old listener drained" % (ok, a.count - a0, b.count)


def lds_nack(t):
    """A listener Envoy refuses (two filter chains with the same match) is NACKed; the running one keeps serving
    and /config_dump shows the refusal on it."""
    (a,) = backends(t, "a")
    port = free_ports(1)[0]
    p = plane(t)
    p.set(CDS, "1", [static_cluster("a", a.port)])
    p.set(LDS, "1", [listener(port, "to_a")])
    p.set(RDS, "1", [routes("a", name="to_a")])
    proc, admin = start_lds(t, p)
    check(wait_for(lambda: body(port) == "200 a", 10), "GET /: %s" % body(port))
    bad = listener(port, "to_a")
    bad["filter_chains"] = bad["filter_chains"] * 2
    p.set(LDS, "2", [bad])
    check(wait_for(lambda: any(e for v, n, e in p.acks(LDS)), 5), "no NACK: %s" % p.acks(LDS))
    version, _, error = [x for x in p.acks(LDS) if x[2]][0]
    if not is_delta(t):
        check(version == "1", "the NACK's version_info is %r, not the last accepted 1" % version)
    check("filter" in error and "chain" in error, "the NACK does not name the filter chains: %s" % error)
    check(stat(admin, "listener_manager.lds.update_rejected") == 1, "update_rejected %d"
          % stat(admin, "listener_manager.lds.update_rejected"))
    check(body(port) == "200 a", "after the NACK: %s" % body(port))
    dump = listeners_dump(admin)
    check("error_state" in json.dumps(dump), "config_dump does not show the refusal: %s" % short(json.dumps(dump)))
    return "NACKed at version 1 (%s); listener_0 kept serving" % error[:100]


def lds_removal(t):
    """A second listener added, then removed by the plane (state of the world: left out; delta: removed_resources):
    its port stops accepting, listener_0 keeps serving."""
    a, b = backends(t, "a", "b")
    port, other = free_ports(2)
    p = plane(t)
    p.set(CDS, "1", [static_cluster("a", a.port), static_cluster("b", b.port)])
    p.set(LDS, "1", [listener(port, "to_a")])
    p.set(RDS, "1", [routes("a", name="to_a"), routes("b", name="to_b")])
    proc, admin = start_lds(t, p)
    check(wait_for(lambda: body(port) == "200 a", 10), "GET /: %s" % body(port))
    p.set(LDS, "2", [listener(port, "to_a"), listener(other, "to_b", stat_prefix="other", name="listener_1")])
    check(wait_for(lambda: not refused(other) and body(other) == "200 b", 10), "listener_1 never served")
    p.set(LDS, "3", [listener(port, "to_a")])
    check(wait_for(lambda: refused(other), 10), "listener_1's port still accepts after its removal")
    check(body(port) == "200 a", "listener_0 after the removal: %s" % body(port))
    check(stat(admin, "listener_manager.listener_removed") == 1, "listener_removed %d"
          % stat(admin, "listener_manager.listener_removed"))
    check(any(v == "3" and n and e is None for v, n, e in p.acks(LDS)), "removal not ACKed: %s" % p.acks(LDS))
    return "listener_1 added (b serves) and removed (its port refuses); listener_0 kept serving"


def is_delta(t):
    """The scenario runs over DeltaAggregatedResources (the delta-* names)."""
    return t.name.startswith("delta-")


def plane(t, port=None, hold=False, tls=None):
    port = port or free_ports(1)[0]
    p = ControlPlane(port, hold=hold, tls=tls)
    t.on_close("control plane", p.stop)
    return p


def seed(p, a_port, version="1"):
    p.set(CDS, version, [eds_cluster()])
    p.set(EDS, version, [assignment([a_port])])
    p.set(RDS, version, [routes("svc")])


def start(t, p, statics=(), plane_tls=None):
    admin, port = free_ports(2)
    proc, _ = t.launch_proxy(bootstrap(admin, port, p.port, statics, plane_tls, delta=is_delta(t)), admin, [port])
    return proc, admin, port


def stat(admin, name):
    return admin_stats(admin).get(name, 0)


def clusters_dump(admin):
    """/config_dump's ClustersConfigDump."""
    dump = json.loads(admin_get(admin, "/config_dump"))
    return [c for c in dump["configs"] if c["@type"].endswith("ClustersConfigDump")][0]


def active_clusters(admin, dump=None):
    """The dynamic active clusters of /config_dump (or of `dump`, a ClustersConfigDump), by name."""
    dump = dump if dump is not None else clusters_dump(admin)
    return {c["cluster"]["name"]: c for c in dump.get("dynamic_active_clusters", [])}


def ready(admin):
    """Admin /ready as (status, text); (0, error) while the admin does not answer."""
    try:
        status, text = http_call(admin, "GET", "/ready", timeout=1)
        return status, text.strip()
    except OSError as e:
        return 0, str(e)


def initial(t):
    (a,) = backends(t, "a")
    p = plane(t, hold=True)
    seed(p, a.port)
    admin, port = free_ports(2)
    path = t.write_config(bootstrap(admin, port, p.port, delta=is_delta(t)))
    proc = t.spawn(t.suite.proxy_argv(path), "proxy")
    check(wait_for(lambda: ready(admin)[0] == 503, 10), "/ready while the plane holds its answers: %s" % (ready(admin),))
    time.sleep(0.5)
    check(ready(admin) == (503, "PRE_INITIALIZING"), "/ready said %s" % (ready(admin),))
    p.release()
    check(wait_for(lambda: ready(admin)[0] == 200, 10), "/ready after the plane answered: %s" % (ready(admin),))
    check(wait_for(lambda: body(port) == "200 a", 5), "GET /: %s" % body(port))
    for url in (CDS, EDS, RDS):
        check(wait_for(lambda: any(v == "1" and n and e is None for v, n, e in p.acks(url)), 5),
              "no ACK of version 1 for %s: %s" % (url, p.acks(url)))
    with p.lock:
        first = p.requests[0]
    check(first.node.id == "xds-ads" and first.node.cluster == "xds-ads", "node on the first request: %s" % first.node)
    check(stat(admin, "control_plane.connected_state") == 1, "connected_state %d"
          % stat(admin, "control_plane.connected_state"))
    if is_delta(t):
        # The cluster's own version in /config_dump, as Envoy shows it.
        want = p.resource_version(CDS, "svc")
        got = [c.get("version_info") for c in clusters_dump(admin).get("dynamic_active_clusters", [])
               if c["cluster"]["name"] == "svc"]
        check(got == [want], "config_dump's svc cluster version %s, expected %s" % (got, [want]))
    return "PRE_INITIALIZING until the plane answered, then LIVE; a serves; CDS, EDS and RDS ACKed at version 1"


def under_load(t):
    a, b = backends(t, "a", "b")
    p = plane(t)
    seed(p, a.port)
    proc, admin, port = start(t, p, statics=[("b", b.port)])
    check(body(port) == "200 a", "GET /: %s" % body(port))
    steps = [[a.port, b.port], [b.port], [a.port, b.port], [a.port]]

    def changes():
        for i, ports in enumerate(steps):
            p.set(EDS, str(i + 2), [assignment(ports)])
            time.sleep(0.4)
            p.set(RDS, str(i + 2), [routes("b" if i % 2 == 0 else "svc")])
            time.sleep(0.4)
            check(proc.alive(), "the proxy died: %s" % proc.stderr_tail())

    ok, bad = load(port, 4, changes)
    check(not bad, "%d failed requests of %d, first: %s" % (len(bad), ok + len(bad), bad[:3]))
    check(ok >= 100, "only %d requests" % ok)
    check(a.count > 0 and b.count > 0, "backend a answered %d, b %d" % (a.count, b.count))
    eds = stat(admin, "cluster.svc.update_success")
    rds = stat(admin, "http.xds.rds.dyn.update_success")
    check(eds == 5 and rds == 5, "update_success: cluster.svc %d, rds.dyn %d (want 5 each)" % (eds, rds))
    return "%d requests, none failed (a %d, b %d); EDS and RDS update_success 5" % (ok, a.count, b.count)


def nack(t):
    a, b = backends(t, "a", "b")
    p = plane(t)
    seed(p, a.port)
    proc, admin, port = start(t, p)

    def svc_version():
        return active_clusters(admin).get("svc", {}).get("version_info")

    # State of the world: the response's version_info. Delta: the resource's own version, as Envoy shows it.
    accepted = "1" if not is_delta(t) else p.resource_version(CDS, "svc")
    check(svc_version() == accepted, "config_dump's svc version %r, expected %r" % (svc_version(), accepted))
    p.set(CDS, "2", [eds_cluster(extra={"connect_timeout": "0s"})])
    check(wait_for(lambda: any(e for v, n, e in p.acks(CDS)), 5), "no NACK: %s" % p.acks(CDS))
    version, _, error = [x for x in p.acks(CDS) if x[2]][0]
    if not is_delta(t):
        check(version == "1", "the NACK's version_info is %r, not the last accepted 1" % version)
    check("connect_timeout" in error, "the NACK does not name connect_timeout: %s" % error)
    check(stat(admin, "cluster_manager.cds.update_rejected") == 1, "update_rejected %d"
          % stat(admin, "cluster_manager.cds.update_rejected"))
    check(body(port) == "200 a", "after the NACK: %s" % body(port))
    clusters = clusters_dump(admin)
    active = active_clusters(admin, clusters)
    check(active.get("svc", {}).get("version_info") == accepted, "config_dump's svc: %s" % active.get("svc"))
    check("connect_timeout" in json.dumps(clusters), "config_dump does not show the refusal: %s" % short(json.dumps(clusters)))
    # CDS, then EDS (the order the protocol asks of a control plane): Envoy warms the new cluster until its
    # assignment arrives, and ACKs the CDS update then.
    p.set(CDS, "3", [eds_cluster(extra={"connect_timeout": "2s"})])
    time.sleep(0.2)
    p.set(EDS, "3", [assignment([b.port])])
    check(wait_for(lambda: ("3", True, None) in [(v, bool(n), e) for v, n, e in p.acks(CDS)], 5),
          "version 3 not ACKed: %s" % p.acks(CDS))
    check(wait_for(lambda: body(port) == "200 b", 5), "after version 3: %s" % body(port))
    return "NACKed at version 1 (%s); a kept serving; version 3 ACKed and b serves" % error[:90]


def unknown_field(t):
    if t.suite.proxy == "envoy":
        return "skip: Envoy knows every field"
    (a,) = backends(t, "a")
    p = plane(t)
    seed(p, a.port)
    proc, admin, port = start(t, p)
    p.set(CDS, "2", [eds_cluster(extra={"track_cluster_stats": {"timeout_budgets": True}})])
    check(wait_for(lambda: any(e for v, n, e in p.acks(CDS)), 5), "no NACK: %s" % p.acks(CDS))
    error = [x for x in p.acks(CDS) if x[2]][0][2]
    check("49" in error and "envoy.config.cluster.v3.Cluster" in error, "the NACK does not name field 49: %s" % error)
    check(body(port) == "200 a", "after the NACK: %s" % body(port))
    return "NACKed: %s" % error[:120]


def plane_restart(t):
    a, b = backends(t, "a", "b")
    p = plane(t)
    seed(p, a.port)
    proc, admin, port = start(t, p)
    check(stat(admin, "control_plane.connected_state") == 1, "connected_state before: %d"
          % stat(admin, "control_plane.connected_state"))
    p.stop()
    check(wait_for(lambda: stat(admin, "control_plane.connected_state") == 0, 10),
          "connected_state after the plane stopped: %d" % stat(admin, "control_plane.connected_state"))
    for _ in range(20):
        check(body(port) == "200 a", "while the plane is away: %s" % body(port))
    q = plane(t, port=p.port)
    seed(q, a.port)
    q.set(EDS, "2", [assignment([b.port])])
    check(wait_for(lambda: body(port) == "200 b", 15), "after the new plane pushed b: %s" % body(port))
    if is_delta(t):
        with q.lock:
            first = [r for r in q.requests if r.type_url == CDS][0]
        held = dict(first.initial_resource_versions)
        check(set(held) == {"svc"}, "the new stream's CDS request holds %s, not svc" % held)
    else:
        first = q.acks(CDS)[0]
        check(first[0] == "1", "the new stream's CDS request has version %r, not the 1 the proxy has" % first[0])
    check(stat(admin, "control_plane.connected_state") == 1, "connected_state after: %d"
          % stat(admin, "control_plane.connected_state"))
    return "served through the outage; reconnected with version 1; b from the new plane serves"


def prioritized(groups, name="svc"):
    """An assignment with one locality per (zone, priority, port, health_status) in `groups`."""
    return {"cluster_name": name, "endpoints": [
        {"locality": {"region": "r", "zone": zone}, "priority": priority, "load_balancing_weight": 1,
         "lb_endpoints": [{"endpoint": {"address": sockaddr(port)}, "health_status": health}]}
        for zone, priority, port, health in groups]}


def eds_priorities(t):
    a, b = backends(t, "a", "b")
    p = plane(t)
    seed(p, a.port)
    p.set(EDS, "1", [prioritized([("z0", 0, a.port, "HEALTHY"), ("z1", 1, b.port, "HEALTHY")])])
    proc, admin, port = start(t, p)

    def answers(n=10):
        return sorted({body(port) for _ in range(n)})

    check(answers() == ["200 a"], "priority 0 healthy: %s" % answers())
    p.set(EDS, "2", [prioritized([("z0", 0, a.port, "UNHEALTHY"), ("z1", 1, b.port, "HEALTHY")])])
    check(wait_for(lambda: answers() == ["200 b"], 5), "priority 0 UNHEALTHY: %s" % answers())
    clusters = admin_get(admin, "/clusters")
    line = "svc::127.0.0.1:%d::health_flags::/failed_eds_health" % a.port
    check(line in clusters, "/clusters lacks %s: %s" % (line, short(clusters)))
    check("svc::127.0.0.1:%d::priority::1" % b.port in clusters, "/clusters lacks b's priority 1")
    p.set(EDS, "3", [prioritized([("z0", 0, a.port, "HEALTHY"), ("z1", 1, b.port, "HEALTHY")])])
    check(wait_for(lambda: answers() == ["200 a"], 5), "priority 0 healthy again: %s" % answers())
    if t.suite.proxy == "sidecar":
        p.set(EDS, "4", [prioritized([("z0", 0, a.port, "DEGRADED"), ("z1", 1, b.port, "HEALTHY")])])
        check(wait_for(lambda: any(e for v, n, e in p.acks(EDS)), 5), "no NACK of DEGRADED: %s" % p.acks(EDS))
        error = [x for x in p.acks(EDS) if x[2]][0][2]
        check("health_status" in error and "DEGRADED" in error, "the NACK does not name health_status: %s" % error)
        check(answers() == ["200 a"], "after the NACK: %s" % answers())
    return "P0 a; a UNHEALTHY over EDS: P1 b takes all (/failed_eds_health); a HEALTHY: back to a"


def tls_plane(t):
    from tls_kit import Pki, upstream_tls, validation
    pki = Pki(t.dir)
    (a,) = backends(t, "a")
    p = plane(t, tls=(pki.server.cert, pki.server.key, pki.ca.cert))
    seed(p, a.port)
    mtls = upstream_tls(pki.client, validation(pki.ca), sni="server.example.test")
    proc, admin, port = start(t, p, plane_tls=mtls)
    check(wait_for(lambda: body(port) == "200 a", 10), "GET / over config from the TLS plane: %s" % body(port))
    check(p.peers and p.peers[0] == "client", "the plane saw client certificates %s" % p.peers)
    check(stat(admin, "control_plane.connected_state") == 1, "connected_state %d"
          % stat(admin, "control_plane.connected_state"))
    # A proxy that trusts another CA does not take the plane's certificate: no stream, no config.
    q = plane(t, tls=(pki.server.cert, pki.server.key, pki.ca.cert))
    seed(q, a.port)
    admin2, port2 = free_ports(2)
    wrong = upstream_tls(pki.client, validation(pki.other_ca))
    path = t.write_config(bootstrap(admin2, port2, q.port, plane_tls=wrong))
    t.spawn(t.suite.proxy_argv(path), "proxy-wrong-ca")
    check(wait_for(lambda: ready(admin2)[0] == 503, 10), "/ready of the proxy trusting another CA: %s" % (ready(admin2),))
    time.sleep(2)
    with q.lock:
        seen = len(q.requests)
    check(seen == 0, "the plane got %d requests from a proxy that should not trust it" % seen)
    check(ready(admin2)[0] == 503, "/ready of the proxy trusting another CA: %s" % (ready(admin2),))
    check(stat(admin2, "control_plane.connected_state") == 0, "connected_state %d with the wrong CA"
          % stat(admin2, "control_plane.connected_state"))
    return "mTLS to the plane (it saw CN %s); a proxy trusting another CA never got a stream" % p.peers[0]


def delta_removal(t):
    a, b = backends(t, "a", "b")
    p = plane(t)
    seed(p, a.port)
    p.set(CDS, "2", [eds_cluster(), eds_cluster("extra")])
    p.set(EDS, "2", [assignment([a.port]), assignment([b.port], name="extra")])
    proc, admin, port = start(t, p)
    check(wait_for(lambda: "extra::" in admin_get(admin, "/clusters"), 5), "cluster extra never arrived")
    p.set(CDS, "3", [eds_cluster()])
    check(wait_for(lambda: "extra::" not in admin_get(admin, "/clusters"), 5), "cluster extra still there after its removal")
    check(body(port) == "200 a", "svc after the removal: %s" % body(port))
    check(any(v == "3" and n and e is None for v, n, e in p.acks(CDS)), "removal not ACKed: %s" % p.acks(CDS))
    return "cluster extra removed by removed_resources (ACKed); svc kept serving"


def delta_eds_rds_removal(t):
    """Over delta: a route configuration or an assignment in removed_resources is kept (Envoy 1.40 logs it and
    keeps serving the routes and endpoints it has)."""
    a, b = backends(t, "a", "b")
    p = plane(t)
    seed(p, a.port)
    proc, admin, port = start(t, p)
    check(body(port) == "200 a", "GET /: %s" % body(port))
    p.set(RDS, "2", [])
    check(wait_for(lambda: any(v == "2" and n for v, n, e in p.acks(RDS)), 5), "the RDS removal got no answer: %s"
          % p.acks(RDS))
    time.sleep(0.3)
    check(body(port) == "200 a", "after the route configuration's removal: %s" % body(port))
    p.set(EDS, "3", [])
    check(wait_for(lambda: any(v == "3" and n for v, n, e in p.acks(EDS)), 5), "the EDS removal got no answer: %s"
          % p.acks(EDS))
    time.sleep(0.3)
    check(body(port) == "200 a", "after the assignment's removal: %s" % body(port))
    check(proc.alive(), "the proxy died: %s" % proc.stderr_tail())
    return "a removed route configuration and a removed assignment were kept; a serves on"


# ---- SDS: secrets from the plane ------------------------------------------------------------------------------------
SDS_ADS = {"ads": {}, "resource_api_version": "V3"}
# Istio's form: a SecretDiscoveryService stream of its own (there to a unix socket; here the plane's port).
SECRET_STREAM = {"resource_api_version": "V3", "api_config_source": {
    "api_type": "GRPC", "transport_api_version": "V3",
    "grpc_services": [{"envoy_grpc": {"cluster_name": "xds_cluster"}}]}}


def b64(path):
    import base64
    with open(path, "rb") as f:
        return base64.b64encode(f.read()).decode()


def cert_secret(name, cred, key=None):
    """A tls_certificate Secret with the PEM inline (inline_bytes, as control planes send it); `key`: another key."""
    return {"name": name, "tls_certificate": {"certificate_chain": {"inline_bytes": b64(cred.cert)},
                                              "private_key": {"inline_bytes": b64(key or cred.key)}}}


def tls_listener(port, name="tls", stat_prefix="tls", secret="server_cert", source=None):
    """An HTTPS listener (routes `dyn` over ADS) whose certificate is the SDS secret `secret` from `source`."""
    doc = listener(port, "dyn", stat_prefix=stat_prefix, name=name)
    doc["filter_chains"][0]["transport_socket"] = {"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
        "common_tls_context": {"tls_certificate_sds_secret_configs": [
            {"name": secret, "sds_config": source or SDS_ADS}]}}}
    return doc


def https(pki, port):
    """One HTTPS GET / (trusting the test CA): (status, body, fingerprint of the certificate served), or the error."""
    from tls_kit import tls_request
    o = tls_request(pki, port)
    return (o.status, (o.body or "").strip(), o.peer_fp) if not o.error else ("error", o.error, None)


def asked_for(p, type_url, name):
    """Some request for `type_url` named `name` (state of the world: resource_names; delta: subscribe)."""
    with p.lock:
        requests = [r for r in p.requests if r.type_url == type_url]
    return any(name in (r.resource_names_subscribe if hasattr(r, "resource_names_subscribe") else r.resource_names)
               for r in requests)


def secrets_dump(admin):
    dump = json.loads(admin_get(admin, "/config_dump"))
    found = [c for c in dump["configs"] if c["@type"].endswith("SecretsConfigDump")]
    return found[0] if found else {}


def sds_start(t, pki, p, source=None, hold_check=True):
    """The standard bootstrap plus a static HTTPS listener whose certificate comes from the plane. Returns the
    process, admin port and the HTTPS port, once /ready says 200 (after the plane was released)."""
    admin, port, tport = free_ports(3)
    doc = bootstrap(admin, port, p.port, delta=is_delta(t))
    doc["static_resources"]["listeners"].append(tls_listener(tport, source=source))
    path = t.write_config(doc)
    proc = t.spawn(t.suite.proxy_argv(path), "proxy")
    if hold_check:
        check(wait_for(lambda: ready(admin)[0] == 503, 10), "/ready while the plane holds its answers: %s"
              % (ready(admin),))
        p.release()
    check(wait_for(lambda: ready(admin)[0] == 200 or not proc.alive(), 15), "/ready: %s; %s"
          % (ready(admin), proc.stderr_tail()))
    return proc, admin, tport


def sds_initial(t):
    """A static listener's certificate from SDS over ADS: /ready waits for it; the plane's certificate is served
    (ACKed, sds.server_cert.update_success, /config_dump's dynamic_active_secrets with the key redacted); version 2
    of the secret (another certificate) is served on the next handshake."""
    from tls_kit import Pki
    pki = Pki(t.dir)
    (a,) = backends(t, "a")
    p = plane(t, hold=True)
    seed(p, a.port)
    p.set(SDS, "1", [cert_secret("server_cert", pki.server)])
    proc, admin, tport = sds_start(t, pki, p)
    got = https(pki, tport)
    check(got == (200, "a", pki.server.fp), "HTTPS once ready: %s (the plane's certificate is %s)"
          % (got, pki.server.fp[:12]))
    check(wait_for(lambda: any(v == "1" and n and e is None for v, n, e in p.acks(SDS)), 5),
          "no ACK of the secret: %s" % p.acks(SDS))
    check(asked_for(p, SDS, "server_cert"), "server_cert was never asked for")
    check(stat(admin, "sds.server_cert.update_success") >= 1, "sds.server_cert.update_success %d"
          % stat(admin, "sds.server_cert.update_success"))
    dump = secrets_dump(admin)
    active = {d["name"]: d for d in dump.get("dynamic_active_secrets", [])}
    check("server_cert" in active, "config_dump's secrets: %s" % short(json.dumps(dump)))
    key = active["server_cert"].get("secret", {}).get("tls_certificate", {}).get("private_key")
    # A bytes field: Envoy shows the base64 of "[redacted]".
    check(key == {"inline_bytes": "W3JlZGFjdGVkXQ=="}, "config_dump's private_key: %s" % key)
    check(active["server_cert"].get("version_info") == ("1" if not is_delta(t) else p.resource_version(SDS, "server_cert")),
          "config_dump's secret version: %s" % active["server_cert"].get("version_info"))
    p.set(SDS, "2", [cert_secret("server_cert", pki.server_v2)])
    check(wait_for(lambda: https(pki, tport)[2] == pki.server_v2.fp, 5), "version 2's certificate never served: %s"
          % (https(pki, tport),))
    check(https(pki, tport)[:2] == (200, "a"), "HTTPS after the rotation: %s" % (https(pki, tport),))
    return "the plane's certificate served once ready (ACKed, key redacted in /config_dump); version 2 rotated it"


def sds_nack(t):
    """A secret whose key does not match its certificate is NACKed (version stays 1, update_rejected); the
    certificate of version 1 keeps being served."""
    from tls_kit import Pki
    pki = Pki(t.dir)
    (a,) = backends(t, "a")
    p = plane(t, hold=True)
    seed(p, a.port)
    p.set(SDS, "1", [cert_secret("server_cert", pki.server)])
    proc, admin, tport = sds_start(t, pki, p)
    check(https(pki, tport) == (200, "a", pki.server.fp), "HTTPS: %s" % (https(pki, tport),))
    p.set(SDS, "2", [cert_secret("server_cert", pki.server_v2, key=pki.client.key)])
    check(wait_for(lambda: any(e for v, n, e in p.acks(SDS)), 5), "no NACK: %s" % p.acks(SDS))
    version, _, error = [x for x in p.acks(SDS) if x[2]][0]
    if not is_delta(t):
        check(version == "1", "the NACK's version_info is %r, not the last accepted 1" % version)
    check(stat(admin, "sds.server_cert.update_rejected") >= 1, "sds.server_cert.update_rejected %d"
          % stat(admin, "sds.server_cert.update_rejected"))
    check(https(pki, tport) == (200, "a", pki.server.fp), "after the NACK: %s" % (https(pki, tport),))
    check(proc.alive(), "the proxy died: %s" % proc.stderr_tail())
    return "NACKed (%s); version 1's certificate still served" % short(error, 100)


def sds_lds_warming(t):
    """A listener from LDS whose certificate comes by SDS warms until the secret arrives: its port does not accept
    before, and serves the plane's certificate after."""
    from tls_kit import Pki
    pki = Pki(t.dir)
    (a,) = backends(t, "a")
    port = free_ports(1)[0]
    p = plane(t)
    p.set(CDS, "1", [static_cluster("a", a.port)])
    p.set(RDS, "1", [routes("a")])
    doc = tls_listener(port, name="listener_0", stat_prefix="ingress")
    p.set(LDS, "1", [doc])
    admin = free_ports(1)[0]
    path = t.write_config(lds_bootstrap(admin, p.port, delta=is_delta(t)))
    proc = t.spawn(t.suite.proxy_argv(path), "proxy")
    check(wait_for(lambda: any(v == "1" and n and e is None for v, n, e in p.acks(LDS)), 10),
          "no ACK of the listener: %s" % p.acks(LDS))
    check(wait_for(lambda: asked_for(p, SDS, "server_cert"), 5), "server_cert was never asked for")
    time.sleep(0.5)
    check(refused(port), "port %d accepts before the listener's secret arrived" % port)
    warming = [d["name"] for d in listeners_dump(admin).get("dynamic_listeners", []) if "warming_state" in d]
    check(warming == ["listener_0"], "listeners warming: %s" % warming)
    awaited = {d["name"]: d.get("version_info") for d in secrets_dump(admin).get("dynamic_warming_secrets", [])}
    check(awaited == {"server_cert": "uninitialized"}, "config_dump's dynamic_warming_secrets: %s" % awaited)
    p.set(SDS, "1", [cert_secret("server_cert", pki.server)])
    check(wait_for(lambda: https(pki, port) == (200, "a", pki.server.fp), 10), "HTTPS once the secret arrived: %s"
          % (https(pki, port),))
    check(wait_for(lambda: ready(admin)[0] == 200, 5), "/ready: %s" % (ready(admin),))
    return "listener_0 warmed until server_cert arrived (its port refused), then served it"


def sds_stream(t):
    """Istio's form: the secret from a SecretDiscoveryService stream of its own (sds_config.api_config_source to
    xds_cluster): /ready waits for it, then it is served, and version 2 rotates it."""
    from tls_kit import Pki
    pki = Pki(t.dir)
    (a,) = backends(t, "a")
    p = plane(t, hold=True)
    seed(p, a.port)
    p.set(SDS, "1", [cert_secret("server_cert", pki.server)])
    proc, admin, tport = sds_start(t, pki, p, source=SECRET_STREAM)
    check(https(pki, tport) == (200, "a", pki.server.fp), "HTTPS once ready: %s" % (https(pki, tport),))
    check(p.secret_streams >= 1, "the secret did not come by a SecretDiscoveryService stream")
    p.set(SDS, "2", [cert_secret("server_cert", pki.server_v2)])
    check(wait_for(lambda: https(pki, tport)[2] == pki.server_v2.fp, 5), "version 2's certificate never served: %s"
          % (https(pki, tport),))
    return "server_cert by its own SecretDiscoveryService stream; served once ready; version 2 rotated it"


def ca_secret(name, cred):
    return {"name": name, "validation_context": {"trusted_ca": {"inline_bytes": b64(cred.cert)}}}


def secure_cluster(name, port, source=None):
    """A cluster to a TLS backend whose client certificate (client_cert) and CA (mesh_ca) come by SDS."""
    c = static_cluster(name, port)
    c["transport_socket"] = {"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
        "sni": "backend.example.test",
        "common_tls_context": {
            "tls_certificate_sds_secret_configs": [{"name": "client_cert", "sds_config": source or SDS_ADS}],
            "validation_context_sds_secret_config": {"name": "mesh_ca", "sds_config": source or SDS_ADS}}}}
    return c


def status_or_error(port):
    try:
        return http_call(port, "GET", "/", timeout=2)[0]
    except OSError as e:
        return str(e)


def sds_cluster_warming(t):
    """A cluster from CDS whose client certificate and CA come by SDS warms until both arrive (/config_dump's
    dynamic_warming_clusters; requests routed to it fail with 503), then reaches the mTLS backend with the plane's
    client certificate."""
    from tls_kit import EchoServer, Pki, backend_tls_context
    pki = Pki(t.dir)
    backend = EchoServer(backend_tls_context(pki, pki.backend))
    t.on_close("TLS backend", backend.close)
    p = plane(t)
    p.set(CDS, "1", [secure_cluster("secure", backend.port)])
    p.set(RDS, "1", [routes("secure")])
    admin, port = free_ports(2)
    path = t.write_config(bootstrap(admin, port, p.port, delta=is_delta(t)))
    proc = t.spawn(t.suite.proxy_argv(path), "proxy")
    check(wait_for(lambda: asked_for(p, SDS, "client_cert") and asked_for(p, SDS, "mesh_ca"), 10),
          "the cluster's secrets were never asked for")
    check(wait_for(lambda: any(v == "1" and n and e is None for v, n, e in p.acks(CDS)), 10), "no ACK of the cluster")
    time.sleep(0.5)
    # Envoy holds its listeners until the cluster warmed (its init manager waits for it): refused. Pilotfish serves
    # the listener, whose route names a cluster it does not have yet: 503. Either way no request reaches the backend.
    first = status_or_error(port)
    check(first != 200, "GET / while the cluster waits for its secrets: %s" % first)
    dump = clusters_dump(admin)
    warming = [c["cluster"]["name"] for c in dump.get("dynamic_warming_clusters", [])]
    check(warming == ["secure"], "dynamic_warming_clusters: %s" % warming)
    check("secure" not in active_clusters(admin, dump), "the waiting cluster is shown active")
    p.set(SDS, "1", [cert_secret("client_cert", pki.client), ca_secret("mesh_ca", pki.ca)])
    check(wait_for(lambda: status_or_error(port) == 200, 10), "GET / once the secrets arrived: %s"
          % (status_or_error(port),))
    with backend.lock:
        seen = [h.get("peer_subject") for h in backend.handshakes]
    check(seen and seen[-1] == "client", "the backend saw client certificates %s" % seen)
    check(wait_for(lambda: ready(admin)[0] == 200, 5), "/ready: %s" % (ready(admin),))
    check("secure" in active_clusters(admin), "the cluster is not active once warm")
    return ("cluster secure warmed until client_cert and mesh_ca arrived (GET / %s meanwhile), then reached the "
            "backend as CN client" % first)


def sds_not_ready(t):
    """Static resources whose secrets never arrive: /ready stays 503; (sidecar) the HTTPS listener accepts and closes
    each connection (downstream_context_secrets_not_ready) and a request routed to the cluster whose client
    certificate is missing gets 503 (upstream_context_secrets_not_ready), as Envoy's not-ready TLS sockets; Envoy
    holds its listeners until its init is done; Envoy 1.40 crashes (SIGSEGV at start) on a static cluster whose
    client certificate comes by SDS over ADS, so the scenario is the sidecar's only."""
    if t.suite.proxy == "envoy":
        return "skip: Envoy 1.40 segfaults at start on a static cluster with SDS over ADS"
    from tls_kit import Pki, tls_request
    pki = Pki(t.dir)
    p = plane(t)
    p.set(CDS, "1", [])
    p.set(RDS, "1", [routes("secure")])
    admin, port, tport = free_ports(3)
    doc = bootstrap(admin, port, p.port, delta=is_delta(t))
    doc["static_resources"]["listeners"].append(tls_listener(tport))
    doc["static_resources"]["clusters"].append(secure_cluster("secure", free_ports(1)[0]))
    path = t.write_config(doc)
    proc = t.spawn(t.suite.proxy_argv(path), "proxy")
    check(wait_for(lambda: asked_for(p, SDS, "server_cert") and asked_for(p, SDS, "client_cert"), 10),
          "the secrets were never asked for")
    time.sleep(1)
    check(ready(admin)[0] == 503, "/ready while the secrets are awaited: %s; %s" % (ready(admin), proc.stderr_tail()))
    tls = tls_request(pki, tport)
    check(tls.status is None and tls.error, "HTTPS before the certificate arrived: %r" % tls)
    got = status_or_error(port)
    check(got == 503, "GET / to the cluster without its client certificate: %s" % got)
    down = [v for k, v in admin_stats(admin).items() if k.endswith("downstream_context_secrets_not_ready")]
    check(sum(down) >= 1, "downstream_context_secrets_not_ready: %s" % down)
    check(stat(admin, "cluster.secure.client_ssl_socket_factory.upstream_context_secrets_not_ready") >= 1,
          "upstream_context_secrets_not_ready %d"
          % stat(admin, "cluster.secure.client_ssl_socket_factory.upstream_context_secrets_not_ready"))
    check(proc.alive(), "the proxy died: %s" % proc.stderr_tail())
    return "secrets never sent: /ready 503, HTTPS %s, GET / %s" % (tls.error, got)


SCENARIOS = [
    ("initial", initial),
    ("under-load", under_load),
    ("nack", nack),
    ("unknown-field", unknown_field),
    ("plane-restart", plane_restart),
    ("eds-priorities", eds_priorities),
    ("tls-plane", tls_plane),
    ("delta-initial", initial),
    ("delta-under-load", under_load),
    ("delta-nack", nack),
    ("delta-plane-restart", plane_restart),
    ("delta-removal", delta_removal),
    ("delta-eds-rds-removal", delta_eds_rds_removal),
    ("lds-initial", lds_initial),
    ("lds-replace-under-load", lds_replace_under_load),
    ("lds-nack", lds_nack),
    ("lds-removal", lds_removal),
    ("delta-lds-initial", lds_initial),
    ("delta-lds-removal", lds_removal),
    ("sds-initial", sds_initial),
    ("sds-nack", sds_nack),
    ("sds-lds-warming", sds_lds_warming),
    ("sds-stream", sds_stream),
    ("sds-cluster-warming", sds_cluster_warming),
    ("sds-not-ready", sds_not_ready),
    ("delta-sds-initial", sds_initial),
]

if __name__ == "__main__":
    raise SystemExit(run_suite("xds-ads", __doc__, SCENARIOS, "pf-ads", scenario_limit=60))
