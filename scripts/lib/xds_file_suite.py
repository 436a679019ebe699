#!/usr/bin/env python3
"""Clusters from a CDS file (issue 15), the same scenarios against Envoy 1.40 and the sidecar.

Usage: python3 scripts/lib/xds_file_suite.py --proxy envoy|sidecar --bin PATH [NAME|PATTERN]... [--list] [-v]
(normally through scripts/e2e-xds).

The proxy: one listener (stat_prefix xds) whose route_config (validate_clusters: false) sends /static to the static
cluster `fixed` and everything else to `svc`, which only the CDS file (`dynamic_resources.cds_config`,
`path_config_source`) has; one worker; an admin on a free port. Backends are loopback HTTP/1.1 servers that answer
their own name. A new file is written beside the watched one and renamed into place, as Envoy expects.

Scenarios:
  initial          the file's cluster serves; cluster_manager.cds.update_success is 1.
  swap-under-load  4 keep-alive clients send requests for 4 s while the file moves `svc` between two backends 6
                   times: no request fails, both backends answer, update_success is 7.
  bad-resource     a file whose cluster has a connect_timeout of 0s (Envoy requires more) is rejected (update_rejected 1); the cluster
                   of the last good file keeps serving; the next good file is taken.
  removed-cluster  a file without clusters removes `svc`: its route answers 503 (no cluster), /static still 200.
  watched-dir      `watched_directory`: the file is a link through `..data`, swapped to a new directory as a
                   Kubernetes ConfigMap volume does; the new cluster serves.
  rds-under-load   the connection manager's routes come from an RDS file (`rds`, route_config_name dyn): 4
                   keep-alive clients send requests for 4 s while the file sends / to static cluster a or b in turn,
                   6 times: no request fails, both answer, http.xds.rds.dyn.update_success is 7.
  eds-under-load   a static EDS cluster `svc` (eds_cluster_config, path_config_source): 4 keep-alive clients send
                   requests for 4 s while its endpoints go from a to a+b to b to a+b to a to b: no request fails,
                   both answer, cluster.svc.update_success is 6 and membership_total follows the file.
  rds-bad          RDS files of another route configuration's name, and with two route configurations, are
                   rejected (update_rejected 2); the routes accepted before keep serving.

Output: a PASS/FAIL line per scenario and `xds-file: N passed, N failed, 0 skipped`; exit 1 if any failed. Only
loopback is used; processes are stopped by PID, pass or fail.
"""

import http.client
import os
import threading
import time

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
    sockaddr,
    to_yaml,
    wait_for,
)

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"


class NameServer(TcpServer):
    """HTTP/1.1 keep-alive server answering 200 with its name to every request."""

    def __init__(self, name):
        self.name = name
        self.count = 0
        super().__init__("backend-" + name)

    def serve(self, conn):
        body = self.name.encode()
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                _, buf = buf.split(b"\r\n\r\n", 1)
                with self.lock:
                    self.count += 1
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
        except OSError:
            pass
        finally:
            conn.close()


def cluster(name, port, extra=None):
    c = {"@type": CLUSTER, "name": name, "connect_timeout": "1s", "type": "STATIC",
         "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
             {"endpoint": {"address": sockaddr(port)}}]}]}}
    c.update(extra or {})
    return c


def cds_text(version, clusters):
    return to_yaml({"version_info": version, "resources": clusters}) + "\n"


def publish(path, text):
    """Writes `text` beside `path` and renames it into place."""
    staging = os.path.join(os.path.dirname(path), ".staging-" + os.path.basename(path))
    with open(staging, "w") as f:
        f.write(text)
    os.rename(staging, path)


def bootstrap(admin, port, cds_path, fixed_port, watched=None):
    hcm = {"@type": HCM, "stat_prefix": "xds", "codec_type": "AUTO",
           "route_config": {"name": "r", "validate_clusters": False, "virtual_hosts": [
               {"name": "all", "domains": ["*"], "routes": [
                   {"match": {"prefix": "/static"}, "route": {"cluster": "fixed"}},
                   {"match": {"prefix": "/"}, "route": {"cluster": "svc"}}]}]},
           "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}]}
    static_cluster = cluster("fixed", fixed_port)
    del static_cluster["@type"]
    source = {"path": cds_path}
    if watched:
        source["watched_directory"] = {"path": watched}
    return {"admin": {"address": sockaddr(admin)},
            "node": {"id": "xds-file", "cluster": "xds-file"},
            "dynamic_resources": {"cds_config": {"resource_api_version": "V3", "path_config_source": source}},
            "static_resources": {
                "listeners": [{"name": "xds", "address": sockaddr(port), "filter_chains": [
                    {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}]}],
                "clusters": [static_cluster]}}


def route_text(version, name, cluster_name):
    rc = {"@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration", "name": name,
          "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
              {"match": {"prefix": "/"}, "route": {"cluster": cluster_name}}]}]}
    return to_yaml({"version_info": version, "resources": [rc]}) + "\n"


def rds_bootstrap(admin, port, rds_path, clusters):
    hcm = {"@type": HCM, "stat_prefix": "xds", "codec_type": "AUTO",
           "rds": {"route_config_name": "dyn", "config_source": {
               "resource_api_version": "V3", "path_config_source": {"path": rds_path}}},
           "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}]}
    statics = []
    for name, backend in clusters:
        c = cluster(name, backend.port)
        del c["@type"]
        statics.append(c)
    return {"admin": {"address": sockaddr(admin)},
            "node": {"id": "xds-file", "cluster": "xds-file"},
            "static_resources": {
                "listeners": [{"name": "xds", "address": sockaddr(port), "filter_chains": [
                    {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}]}],
                "clusters": statics}}


def load(port, seconds, changes, clients=4):
    """`clients` keep-alive clients GET / for about `seconds` while `changes()` runs; returns (ok, failures)."""
    stop = threading.Event()
    results = {"ok": 0, "bad": []}
    lock = threading.Lock()

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            while not stop.is_set():
                try:
                    conn.request("GET", "/")
                    r = conn.getresponse()
                    data = r.read().decode(errors="replace")
                    with lock:
                        if r.status == 200 and data in ("a", "b"):
                            results["ok"] += 1
                        else:
                            results["bad"].append("%d %s" % (r.status, data[:80]))
                except (OSError, http.client.HTTPException) as e:
                    with lock:
                        results["bad"].append("%s: %s" % (type(e).__name__, e))
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        finally:
            conn.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for th in threads:
        th.start()
    try:
        time.sleep(0.5)
        changes()
    finally:
        stop.set()
        for th in threads:
            th.join(10)
    return results["ok"], results["bad"]


def backends(t, *names):
    out = []
    for n in names:
        s = NameServer(n)
        t.on_close("backend " + n, s.close)
        out.append(s)
    return out


def start(t, cds_path, fixed, watched=None):
    admin, port = free_ports(2)
    proc, _ = t.launch_proxy(bootstrap(admin, port, cds_path, fixed.port, watched), admin, [port])
    return proc, admin, port


def body(port, path="/"):
    status, text = http_call(port, "GET", path)
    return "%d %s" % (status, text)


def stat(admin, name):
    return admin_stats(admin).get(name, 0)


def initial(t):
    a, fixed = backends(t, "a", "fixed")
    cds = os.path.join(t.dir, "cds.yaml")
    publish(cds, cds_text("1", [cluster("svc", a.port)]))
    proc, admin, port = start(t, cds, fixed)
    check(body(port) == "200 a", "GET / through svc: %s" % body(port))
    check(body(port, "/static") == "200 fixed", "GET /static: %s" % body(port, "/static"))
    check(stat(admin, "cluster_manager.cds.update_success") == 1, "update_success %d"
          % stat(admin, "cluster_manager.cds.update_success"))
    return "svc from the file serves; update_success 1"


def swap_under_load(t):
    a, b, fixed = backends(t, "a", "b", "fixed")
    cds = os.path.join(t.dir, "cds.yaml")
    publish(cds, cds_text("1", [cluster("svc", a.port)]))
    proc, admin, port = start(t, cds, fixed)

    def changes():
        for i in range(6):
            publish(cds, cds_text(str(i + 2), [cluster("svc", (b if i % 2 == 0 else a).port)]))
            time.sleep(0.55)

    ok, bad = load(port, 4, changes)
    success = stat(admin, "cluster_manager.cds.update_success")
    check(not bad, "%d failed requests of %d, first: %s" % (len(bad), ok + len(bad), bad[:3]))
    check(ok >= 100, "only %d requests in 4 s" % ok)
    check(a.count > 0 and b.count > 0, "backend a answered %d, b %d" % (a.count, b.count))
    check(success == 7, "update_success %d after 6 files" % success)
    return "%d requests, none failed (a %d, b %d); update_success %d" % (ok, a.count, b.count, success)


def bad_resource(t):
    a, b, fixed = backends(t, "a", "b", "fixed")
    cds = os.path.join(t.dir, "cds.yaml")
    publish(cds, cds_text("1", [cluster("svc", a.port)]))
    proc, admin, port = start(t, cds, fixed)
    publish(cds, cds_text("2", [cluster("svc", b.port, {"connect_timeout": "0s"})]))
    check(wait_for(lambda: stat(admin, "cluster_manager.cds.update_rejected") == 1, 5),
          "update_rejected %d" % stat(admin, "cluster_manager.cds.update_rejected"))
    check(body(port) == "200 a", "after the rejected file: %s" % body(port))
    check(proc.alive(), "the proxy died")
    publish(cds, cds_text("3", [cluster("svc", b.port)]))
    check(wait_for(lambda: body(port) == "200 b", 5), "the next good file was not taken: %s" % body(port))
    return "rejected (update_rejected 1), a kept serving; version 3 took svc to b"


def removed_cluster(t):
    a, fixed = backends(t, "a", "fixed")
    cds = os.path.join(t.dir, "cds.yaml")
    publish(cds, cds_text("1", [cluster("svc", a.port)]))
    proc, admin, port = start(t, cds, fixed)
    publish(cds, cds_text("2", []))
    check(wait_for(lambda: body(port).startswith("503"), 5), "GET / after svc was removed: %s" % body(port))
    check(body(port, "/static") == "200 fixed", "GET /static: %s" % body(port, "/static"))
    return "svc removed: 503; the static cluster still serves"


def watched_dir(t):
    a, b, fixed = backends(t, "a", "b", "fixed")
    d = os.path.join(t.dir, "configmap")
    os.mkdir(d)

    def swap(version, port):
        data = os.path.join(d, "..v" + version)
        os.mkdir(data)
        with open(os.path.join(data, "cds.yaml"), "w") as f:
            f.write(cds_text(version, [cluster("svc", port)]))
        os.symlink("..v" + version, os.path.join(d, "..data_tmp"))
        os.rename(os.path.join(d, "..data_tmp"), os.path.join(d, "..data"))

    swap("1", a.port)
    os.symlink("..data/cds.yaml", os.path.join(d, "cds.yaml"))
    proc, admin, port = start(t, os.path.join(d, "cds.yaml"), fixed, watched=d)
    check(body(port) == "200 a", "GET /: %s" % body(port))
    swap("2", b.port)
    check(wait_for(lambda: body(port) == "200 b", 5), "after the ..data swap: %s" % body(port))
    return "..data swapped: svc moved to b"


def eds_text(version, ports):
    la = {"@type": "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment", "cluster_name": "svc",
          "endpoints": [{"lb_endpoints": [{"endpoint": {"address": sockaddr(p)}} for p in ports]}]}
    return to_yaml({"version_info": version, "resources": [la]}) + "\n"


def eds_under_load(t):
    a, b, fixed = backends(t, "a", "b", "fixed")
    eds = os.path.join(t.dir, "eds.yaml")
    publish(eds, eds_text("1", [a.port]))
    admin, port = free_ports(2)
    doc = bootstrap(admin, port, os.path.join(t.dir, "unused-cds.yaml"), fixed.port)
    del doc["dynamic_resources"]
    doc["static_resources"]["clusters"].append({
        "name": "svc", "connect_timeout": "1s", "type": "EDS",
        "eds_cluster_config": {"eds_config": {"resource_api_version": "V3", "path_config_source": {"path": eds}}}})
    proc, _ = t.launch_proxy(doc, admin, [port])
    check(body(port) == "200 a", "GET /: %s" % body(port))
    steps = [[a.port, b.port], [b.port], [a.port, b.port], [a.port], [b.port]]
    seen = []

    def changes():
        for i, ports in enumerate(steps):
            publish(eds, eds_text(str(i + 2), ports))
            time.sleep(0.55)
            check(proc.alive(), "the proxy died: %s" % proc.stderr_tail())
            seen.append(stat(admin, "cluster.svc.membership_total"))

    ok, bad = load(port, 4, changes)
    check(proc.alive(), "the proxy died: %s" % proc.stderr_tail())
    success = stat(admin, "cluster.svc.update_success")
    check(not bad, "%d failed requests of %d, first: %s" % (len(bad), ok + len(bad), bad[:3]))
    check(a.count > 0 and b.count > 0, "backend a answered %d, b %d" % (a.count, b.count))
    check(success == 6, "cluster.svc.update_success %d after 5 files" % success)
    check(seen == [len(p) for p in steps], "membership_total after each file %s, files had %s"
          % (seen, [len(p) for p in steps]))
    return "%d requests, none failed (a %d, b %d); update_success %d; membership %s" % (
        ok, a.count, b.count, success, seen)


def rds_start(t, rds, a, b):
    admin, port = free_ports(2)
    proc, _ = t.launch_proxy(rds_bootstrap(admin, port, rds, [("a", a), ("b", b)]), admin, [port])
    return proc, admin, port


def rds_under_load(t):
    a, b = backends(t, "a", "b")
    rds = os.path.join(t.dir, "rds.yaml")
    publish(rds, route_text("1", "dyn", "a"))
    proc, admin, port = rds_start(t, rds, a, b)
    check(body(port) == "200 a", "GET /: %s" % body(port))

    def changes():
        for i in range(6):
            publish(rds, route_text(str(i + 2), "dyn", "b" if i % 2 == 0 else "a"))
            time.sleep(0.55)

    ok, bad = load(port, 4, changes)
    success = stat(admin, "http.xds.rds.dyn.update_success")
    check(not bad, "%d failed requests of %d, first: %s" % (len(bad), ok + len(bad), bad[:3]))
    check(a.count > 0 and b.count > 0, "backend a answered %d, b %d" % (a.count, b.count))
    check(success == 7, "http.xds.rds.dyn.update_success %d after 6 files" % success)
    return "%d requests, none failed (a %d, b %d); update_success %d" % (ok, a.count, b.count, success)


def rds_bad(t):
    a, b = backends(t, "a", "b")
    rds = os.path.join(t.dir, "rds.yaml")
    publish(rds, route_text("1", "dyn", "a"))
    proc, admin, port = rds_start(t, rds, a, b)
    publish(rds, route_text("2", "other", "b"))
    check(wait_for(lambda: stat(admin, "http.xds.rds.dyn.update_rejected") == 1, 5),
          "another name: update_rejected %d" % stat(admin, "http.xds.rds.dyn.update_rejected"))
    two = route_text("3", "dyn", "b").rstrip("\n") + "\n" + route_text("3", "dyn2", "b").split("resources:\n", 1)[1]
    publish(rds, two)
    check(wait_for(lambda: stat(admin, "http.xds.rds.dyn.update_rejected") == 2, 5),
          "two configurations: update_rejected %d" % stat(admin, "http.xds.rds.dyn.update_rejected"))
    check(body(port) == "200 a", "after the rejected files: %s" % body(port))
    return "another name and two configurations rejected; a kept serving"


SCENARIOS = [
    ("initial", initial),
    ("swap-under-load", swap_under_load),
    ("bad-resource", bad_resource),
    ("removed-cluster", removed_cluster),
    ("watched-dir", watched_dir),
    ("rds-under-load", rds_under_load),
    ("eds-under-load", eds_under_load),
    ("rds-bad", rds_bad),
]

if __name__ == "__main__":
    raise SystemExit(run_suite("xds-file", __doc__, SCENARIOS, "pf-xds", scenario_limit=60))
