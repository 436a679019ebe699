#!/usr/bin/env python3
"""Config scale: push 1,000 clusters (EDS, 10 endpoints each, 10,000 in all) and 1,000 routes to a proxy through
discovery files, and measure how long each takes to apply and what it costs in resident memory. Run by
`scripts/bench xds` for Envoy 1.40 and the sidecar, one after the other, with the same files.

Usage: xds_scale.py --proxy NAME=BIN [--proxy NAME=BIN]... [--clusters N] [--endpoints N] [--routes N]
                    [--source files|ads]

Each proxy starts with one listener whose routes come from an RDS file (one route at first), a CDS file with
no clusters, and the node's id and cluster. Then, timed from the moment each file is moved into place:
  cds   1,000 clusters of type EDS, each reading its own EDS file (one ClusterLoadAssignment, as Envoy requires;
        written before the proxy starts), until cluster_manager.active_clusters reaches 1,000, no cluster is
        warming and every cluster counted its EDS update a success;
  rds   1,000 routes (/c<i> to cluster c<i>), until the RDS update counts as a success.
A request to /c0 then must reach a loopback backend (c0's endpoints are all that backend; the others' are
loopback ports nothing listens on, and nothing is sent to them). RSS is VmRSS before the push and 1 s after.
Prints one markdown table row per proxy: times, RSS before and after, and the RSS each cluster added.

With --source ads (on a Python with grpcio and xds-protos) the same resources come from a control plane over
ADS instead (scripts/lib/xds_ads_suite.py's, state of the world): the plane holds the 1,000 assignments from the
start, and times run from the push until the plane has the proxy's ACK of the new version (for CDS, also the ACK
of the assignments of every cluster, which Envoy only sends once its clusters warmed), and the same stats agree.

Envoy opens an inotify instance per watched file, and Linux allows 128 per user by default
(fs.inotify.max_user_instances): past about 120 EDS clusters its file subscriptions fail. Run as root, this
script raises the limit to what the run needs while Envoy runs and puts it back afterwards (and says so); the
sidecar shares one instance for every file and needs no change.
"""

import argparse
import http.client
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def addr(port):
    return {"socket_address": {"address": "127.0.0.1", "port_value": port}}


def publish(path, doc):
    staging = path + ".staging"
    with open(staging, "w") as f:
        json.dump(doc, f)
    os.rename(staging, path)


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def stats(admin):
    c = http.client.HTTPConnection("127.0.0.1", admin, timeout=10)
    try:
        c.request("GET", "/stats")
        body = c.getresponse().read().decode()
    finally:
        c.close()
    out = {}
    for line in body.splitlines():
        name, sep, value = line.rpartition(": ")
        if sep and value.strip().isdigit():
            out[name] = int(value)
    return out


def get(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("GET", path)
        r = c.getresponse()
        r.read()
        return r.status
    finally:
        c.close()


class Backend(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


def wait(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if pred():
                return
        except OSError:
            pass
        time.sleep(0.02)
    raise RuntimeError("%s: not within %d s" % (what, timeout))


def run(name, binary, n_clusters, n_endpoints, n_routes, backend_port, log, source="files"):
    work = tempfile.mkdtemp(prefix="pf-xds-scale-")
    proc = None
    plane = None
    restore = []
    try:
        admin, listener = free_port(), free_port()
        cds, rds = (os.path.join(work, f) for f in ("cds.json", "rds.json"))
        os.mkdir(os.path.join(work, "eds"))
        # Endpoints of the clusters other than c0: loopback ports from 40000 on, never sent anything.
        for i in range(n_clusters):
            ports = [backend_port] * n_endpoints if i == 0 else [40000 + (i * n_endpoints + j) % 20000
                                                                  for j in range(n_endpoints)]
            la = {"@type": "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
                  "cluster_name": "c%d" % i,
                  "endpoints": [{"lb_endpoints": [{"endpoint": {"address": addr(p)}} for p in ports]}]}
            publish(os.path.join(work, "eds", "c%d.json" % i), {"version_info": "1", "resources": [la]})
        publish(cds, {"version_info": "0", "resources": []})

        def routes(n):
            return {"@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration", "name": "scale",
                    "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
                        {"match": {"prefix": "/c%d" % i}, "route": {"cluster": "c%d" % i}} for i in range(n)]}]}

        publish(rds, {"version_info": "0", "resources": [routes(1)]})
        hcm = {"@type": HCM, "stat_prefix": "scale", "codec_type": "AUTO",
               "rds": {"route_config_name": "scale", "config_source": {"path_config_source": {"path": rds}}},
               "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}]}
        bootstrap = {"admin": {"address": addr(admin)}, "node": {"id": "scale", "cluster": "scale"},
                     "dynamic_resources": {"cds_config": {"path_config_source": {"path": cds}}},
                     "static_resources": {"listeners": [{"name": "scale", "address": addr(listener), "filter_chains": [
                         {"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                       "typed_config": hcm}]}]}]}}
        if source == "ads":
            from xds_ads_suite import CDS, EDS, RDS, ControlPlane, H2_OPTIONS
            plane = ControlPlane(free_port())
            plane.set(EDS, "1", [{"cluster_name": "c%d" % i, "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": addr(p)}} for p in ([backend_port] * n_endpoints if i == 0 else [
                    40000 + (i * n_endpoints + j) % 20000 for j in range(n_endpoints)])]}]}
                for i in range(n_clusters)])
            plane.set(CDS, "0", [])
            first = routes(1)
            del first["@type"]
            plane.set(RDS, "0", [first])
            ads = {"ads": {}, "resource_api_version": "V3"}
            hcm["rds"]["config_source"] = ads
            bootstrap["dynamic_resources"] = {
                "ads_config": {"api_type": "GRPC", "transport_api_version": "V3",
                               "grpc_services": [{"envoy_grpc": {"cluster_name": "xds"}}]},
                "cds_config": ads}
            bootstrap["static_resources"]["clusters"] = [{
                "name": "xds", "type": "STATIC", "connect_timeout": "1s",
                "typed_extension_protocol_options": H2_OPTIONS,
                "load_assignment": {"cluster_name": "xds", "endpoints": [{"lb_endpoints": [
                    {"endpoint": {"address": addr(plane.port)}}]}]}}]
        config = os.path.join(work, "bootstrap.json")
        with open(config, "w") as f:
            json.dump(bootstrap, f)
        limit_path = "/proc/sys/fs/inotify/max_user_instances"
        if name == "envoy" and n_clusters > 100 and os.geteuid() == 0:
            with open(limit_path) as f:
                saved_limit = f.read().strip()
            if int(saved_limit) < n_clusters + 256:
                log("envoy: raising %s from %s to %d for the run" % (limit_path, saved_limit, n_clusters + 256))
                with open(limit_path, "w") as f:
                    f.write(str(n_clusters + 256))
                restore.append((limit_path, saved_limit))
        argv = [binary, "-c", config, "--concurrency", "1", "--log-level", "error"]
        if name == "envoy":
            argv += ["--disable-hot-restart", "--base-id", str(os.getpid() % 40000 + 7)]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "stderr"), "wb"),
                                start_new_session=True)
        wait(lambda: get(admin, "/ready") == 200, 30, "%s ready" % name)
        time.sleep(1)
        before = rss_kb(proc.pid)

        cluster_list = [{"@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster", "name": "c%d" % i,
                         "type": "EDS", "connect_timeout": "1s",
                         "eds_cluster_config": {"service_name": "c%d" % i,
                                                "eds_config": {"path_config_source": {
                                                    "path": os.path.join(work, "eds", "c%d.json" % i)}}}}
                        for i in range(n_clusters)]
        if plane:
            for c in cluster_list:
                del c["@type"]
                c["eds_cluster_config"]["eds_config"] = {"ads": {}, "resource_api_version": "V3"}

        def acked(url, version, names=None):
            for v, nonce, error, got in plane.acks_with_names(url):
                if v == version and nonce and error is None and (names is None or got == names):
                    return True
            return False

        log("%s: pushing %d clusters%s" % (name, n_clusters, " over ADS" if plane else ""))
        t0 = time.monotonic()
        if plane:
            plane.set(CDS, "1", cluster_list)
            everyone = set("c%d" % i for i in range(n_clusters))
            wait(lambda: acked(CDS, "1") and acked(EDS, "1", everyone), 300, "%s: ACKs of CDS and EDS" % name)
        else:
            publish(cds, {"version_info": "1", "resources": cluster_list})

        def clusters_active():
            s = stats(admin)
            return s.get("cluster_manager.active_clusters", 0) >= n_clusters and \
                s.get("cluster_manager.warming_clusters", 0) == 0 and \
                s.get("cluster_manager.cds.update_success", 0) >= 2 and \
                all(s.get("cluster.c%d.update_success" % i, 0) >= 1 for i in range(n_clusters))

        if plane:
            t_cds = time.monotonic() - t0
            wait(clusters_active, 10, "%s: %d clusters active after the ACK" % (name, n_clusters))
        else:
            wait(clusters_active, 300, "%s: %d clusters active" % (name, n_clusters))
            t_cds = time.monotonic() - t0
        log("%s: pushing %d routes" % (name, n_routes))
        t0 = time.monotonic()
        if plane:
            rc = routes(n_routes)
            del rc["@type"]
            plane.set(RDS, "1", [rc])
            wait(lambda: acked(RDS, "1"), 300, "%s: ACK of %d routes" % (name, n_routes))
        else:
            publish(rds, {"version_info": "1", "resources": [routes(n_routes)]})
            wait(lambda: stats(admin).get("http.scale.rds.scale.update_success", 0) >= 2, 300,
                 "%s: %d routes" % (name, n_routes))
        t_rds = time.monotonic() - t0
        status = get(listener, "/c0")
        if status != 200:
            raise RuntimeError("%s: GET /c0 answered %d" % (name, status))
        time.sleep(1)
        after = rss_kb(proc.pid)
        return {"name": name, "cds_s": t_cds, "rds_s": t_rds, "before_kb": before, "after_kb": after,
                "per_cluster_kb": (after - before) / n_clusters}
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if plane is not None:
            plane.stop()
        for path, value in restore:
            with open(path, "w") as f:
                f.write(value)
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--proxy", action="append", required=True, help="NAME=BIN (envoy or sidecar)")
    ap.add_argument("--clusters", type=int, default=1000)
    ap.add_argument("--endpoints", type=int, default=10)
    ap.add_argument("--routes", type=int, default=1000)
    ap.add_argument("--source", choices=["files", "ads"], default="files")
    a = ap.parse_args()

    def log(msg):
        print("[xds-scale] " + msg, file=sys.stderr, flush=True)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Backend)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    rows = []
    try:
        for spec in a.proxy:
            name, _, binary = spec.partition("=")
            rows.append(run(name, binary, a.clusters, a.endpoints, a.routes, server.server_address[1], log,
                            a.source))
    finally:
        server.shutdown()
    base = next((r for r in rows if r["name"] == "envoy"), rows[0])
    done = "ACKed" if a.source == "ads" else "applied"
    print("| proxy | %d clusters (CDS + EDS) %s | %d routes (RDS) %s | RSS MB before | RSS MB after | "
          "kB per cluster | per cluster vs Envoy |" % (a.clusters, done, a.routes, done))
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        ratio = r["per_cluster_kb"] / base["per_cluster_kb"] if base["per_cluster_kb"] > 0 else float("nan")
        print("| %s | %.2f s | %.2f s | %.1f | %.1f | %.1f | %.2fx |" % (
            r["name"], r["cds_s"], r["rds_s"], r["before_kb"] / 1024, r["after_kb"] / 1024, r["per_cluster_kb"],
            ratio))
    return 0


if __name__ == "__main__":
    sys.exit(main())
