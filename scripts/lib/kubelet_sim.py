#!/usr/bin/env python3
"""A simulated kubelet: runs pods that `sidecar inject` wrote, in network namespaces, the way a kubelet would, from
the injected pod spec itself (containers, commands, args, env, securityContext, volumes, probes, restartPolicy).

Usage (as root): python3 scripts/lib/kubelet_sim.py --sidecar PATH --sidecar-init PATH [-v]
(normally through scripts/e2e-kubelet).

The node: a network namespace with a bridge at 198.18.K.1/24 (K from this run's PID); each pod gets its own
namespace with a veth on the bridge (web 198.18.K.2, client 198.18.K.3), a default route via the node, and the
node probes it as a kubelet does, from outside the pod (batch gets 198.18.K.4). Three manifests are injected with the real `sidecar inject`
(STRICT mTLS, mesh 198.18.0.0/15, REDIRECT capture, native sidecars):
  - pod `web` (service account web): a Python HTTP app on :8080 (GET / answers `hello from web`, GET /slow
    answers after 2 s, SIGTERM finishes the requests in flight, then exits) with an HTTP readiness probe on a named
    port and a TCP liveness probe;
  - Job pod `client` (service account client): a Python script that sends 20 GETs to http://198.18.K.2:8080/ and
    then GET /slow, and exits 0 only if every answer was 200 from web.

How a container runs: its command and args (`sidecar` and `sidecar-init` map to the binaries under test,
`python3` to this interpreter), its env, in the pod's namespace, in a private mount namespace where each
volumeMount is a bind mount of the volume's directory (emptyDir: a fresh directory; the identity Secret: what
`sidecar certs workload` issues for the pod's service account, the documented issuing step), under setpriv with
the container's runAsUser/runAsGroup, its capabilities (drop ALL, add the listed ones: bounding, inheritable and,
for a non-root user, ambient sets) and no_new_privs when allowPrivilegeEscalation is false. readOnlyRootFilesystem
is not emulated (the processes share this machine's root filesystem); the mount points of the volumes are created
on it when missing and removed afterwards.

Steps, each a PASS/FAIL line:
  1. web: the init container (sidecar-init apply) runs to completion with only NET_ADMIN and NET_RAW
  2. web: the native sidecar starts; its startupProbe (from the node) passes
  3. web: the app starts; its rewritten readiness and liveness probes (/app-health/app/readyz, livez on 15021) pass
     from the node under STRICT mTLS, while plaintext from the node to the app's port 8080 is refused
  4. client: the same start-up (init container, native sidecar, startup probe), then its app: 20 GETs through both
     sidecars over mTLS, all 200 (the web sidecar's inbound TLS listener counts the handshakes)
  5. web: terminated while the client's GET /slow is in flight (SIGTERM to the app, then, once it exited, to the
     native sidecar, as Kubernetes orders them): the slow request still answers 200
  6. client: the Job's app exits 0; the kubelet then stops the native sidecar (SIGTERM) and it exits within its
     drain time: the pod completes. And a second Job, `batch`, injected with a classic sidecar (pilotfish.io/
     native-sidecar: "false"): its pilotfish-bin init container copies the sidecar binary, the sidecar container's
     postStart hook (`sidecar wait-ready`) holds the app until the proxy is ready, the app (wrapped by `sidecar
     run-app`) sends 5 GETs to web over mTLS and exits 0, and the sidecar then quits by itself: no signal needed
  7. probes fail when the app is down: after web's app is gone its readiness path answers 503

Only 198.18.0.0/15 and loopback are used. Every namespace, process (by PID), directory and mount point created is
removed at the end, pass or fail. Exit status 0 when every step passed, 1 otherwise, 2 for bad usage.
"""

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import yaml  # PyYAML

HERE = os.path.dirname(os.path.abspath(__file__))
APP_UID = 1000
MESH = "198.18.0.0/15"


class Fail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def short(text, n=400):
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[:n] + "..."


WEB_APP = r'''
import signal, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        if self.path.startswith("/slow"):
            time.sleep(2)
        body = b"hello from web"
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

class S(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True

s = S(("0.0.0.0", 8080), H)
def stop(*a):
    # Stop accepting; server_close() below waits for the requests in flight.
    threading.Thread(target=s.shutdown).start()
signal.signal(signal.SIGTERM, stop)
print("READY", flush=True)
s.serve_forever()
s.server_close()
print("EXITED CLEANLY", flush=True)
'''

CLIENT_APP = r'''
import http.client, sys, os
target, marker = sys.argv[1], sys.argv[2]
ok = 0
for i in range(20):
    c = http.client.HTTPConnection(target, 8080, timeout=10)
    c.request("GET", "/n/%d" % i)
    r = c.getresponse()
    body = r.read()
    c.close()
    if r.status == 200 and body == b"hello from web":
        ok += 1
    else:
        print("GET /n/%d: %d %r" % (i, r.status, body[:100]), flush=True)
print("GETS %d/20" % ok, flush=True)
open(marker, "w").write("slow started")
c = http.client.HTTPConnection(target, 8080, timeout=20)
c.request("GET", "/slow")
r = c.getresponse()
body = r.read()
print("SLOW %d %r" % (r.status, body[:100]), flush=True)
sys.exit(0 if ok == 20 and r.status == 200 and body == b"hello from web" else 1)
'''


BATCH_APP = r'''
import http.client, sys
ok = 0
for i in range(5):
    c = http.client.HTTPConnection(sys.argv[1], 8080, timeout=10)
    c.request("GET", "/batch/%d" % i)
    r = c.getresponse()
    ok += r.status == 200 and r.read() == b"hello from web"
    c.close()
print("BATCH %d/5" % ok, flush=True)
sys.exit(0 if ok == 5 else 1)
'''


def manifests(web_ip, marker):
    strict = {"pilotfish.io/mtls-mode": "STRICT", "pilotfish.io/mesh-cidrs": MESH,
              "pilotfish.io/interception-mode": "redirect"}
    app_sc = {"runAsUser": APP_UID, "runAsGroup": APP_UID, "allowPrivilegeEscalation": False,
              "capabilities": {"drop": ["ALL"]}}
    web = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "web", "namespace": "shop", "annotations": dict(strict)},
           "spec": {"serviceAccountName": "web", "containers": [{
               "name": "app", "image": "python:3", "command": ["python3", "-c", WEB_APP],
               "ports": [{"name": "http", "containerPort": 8080}],
               "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
               "livenessProbe": {"tcpSocket": {"port": 8080}, "timeoutSeconds": 2},
               "securityContext": app_sc}]}}
    client = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "client", "namespace": "shop"},
              "spec": {"backoffLimit": 0, "template": {
                  "metadata": {"annotations": dict(strict)},
                  "spec": {"serviceAccountName": "client", "restartPolicy": "Never", "containers": [{
                      "name": "app", "image": "python:3", "command": ["python3", "-c", CLIENT_APP],
                      "args": [web_ip, marker], "securityContext": app_sc}]}}}}
    batch = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "batch", "namespace": "shop"},
             "spec": {"backoffLimit": 0, "template": {
                 "metadata": {"annotations": dict(strict, **{"pilotfish.io/native-sidecar": "false"})},
                 "spec": {"serviceAccountName": "batch", "restartPolicy": "Never", "containers": [{
                     "name": "app", "image": "python:3", "command": ["python3", "-c", BATCH_APP],
                     "args": [web_ip], "securityContext": app_sc}]}}}}
    return yaml.safe_dump_all([web, client, batch], sort_keys=False)


class Proc:
    def __init__(self, argv, name, env, log):
        self.name = name
        self.log = log
        self.out = open(log, "wb")
        self.popen = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=self.out,
                                      stderr=subprocess.STDOUT, start_new_session=True)
        self.pid = self.popen.pid

    def text(self):
        with open(self.log, "rb") as f:
            return f.read().decode(errors="replace")

    def alive(self):
        return self.popen.poll() is None

    def exit_status(self, timeout, what):
        """Its exit status once it ends within `timeout` seconds; else Fail saying `what` did not happen."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise Fail("%s (%s, after %d s): %s" % (what, self.name, timeout, short(self.text())))

    def signal(self, sig):
        if self.alive():
            try:
                os.killpg(self.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self):
        self.signal(signal.SIGKILL)
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self.out.close()


class Kubelet:
    def __init__(self, args, workdir):
        self.a = args
        self.dir = workdir
        self.k = os.getpid() % 200 + 20
        self.prefix = "pf-kl-%d" % os.getpid()
        self.namespaces = []
        self.procs = []
        self.mountpoints = []
        self.node = self.netns("node")
        self.sh(self.node, ["ip", "link", "add", "br0", "type", "bridge"])
        self.sh(self.node, ["ip", "addr", "add", "198.18.%d.1/24" % self.k, "dev", "br0"])
        self.sh(self.node, ["ip", "link", "set", "br0", "up"])
        self.ca = os.path.join(workdir, "ca")
        self.run([args.sidecar, "certs", "ca", "--out", self.ca, "--trust-domain", "cluster.local"])

    # ---- plumbing --------------------------------------------------------------------------------------------------
    def run(self, argv, timeout=60):
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise Fail("%s: exit %d: %s" % (" ".join(argv[:4]), r.returncode, short(r.stderr or r.stdout)))
        return r.stdout

    def sh(self, ns, argv):
        return self.run((["ip", "netns", "exec", ns] if ns else []) + argv)

    def netns(self, role):
        name = "%s-%s" % (self.prefix, role)
        self.run(["ip", "netns", "add", name])
        self.namespaces.append(name)
        self.sh(name, ["ip", "link", "set", "lo", "up"])
        return name

    def pod_netns(self, name, ip):
        ns = self.netns(name)
        host = "v%d%s" % (os.getpid() % 100000, name[:3])
        self.run(["ip", "-n", self.node, "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", ns])
        self.sh(self.node, ["ip", "link", "set", host, "master", "br0", "up"])
        self.sh(ns, ["sysctl", "-qw", "net.ipv6.conf.eth0.disable_ipv6=1"])
        self.sh(ns, ["ip", "addr", "add", ip + "/24", "dev", "eth0"])
        self.sh(ns, ["ip", "link", "set", "eth0", "up"])
        self.sh(ns, ["ip", "route", "add", "default", "via", "198.18.%d.1" % self.k])
        return ns

    def curl(self, ns, url, timeout=3):
        """(status, body) of a GET from `ns`; status 0 when nothing answered."""
        r = subprocess.run(["ip", "netns", "exec", ns, "curl", "-s", "-m", str(timeout), "-o", "-", "-w",
                            "\n%{http_code}", url], capture_output=True, text=True, timeout=timeout + 5)
        body, _, code = r.stdout.rpartition("\n")
        return int(code or 0), body

    def close(self):
        problems = []
        for p in self.procs:
            p.stop()
            if p.alive():
                problems.append("process %d (%s) did not exit" % (p.pid, p.name))
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
            if os.path.exists("/run/netns/" + ns):
                problems.append("namespace %s is still there" % ns)
        for d in reversed(self.mountpoints):
            try:
                os.rmdir(d)
            except OSError as e:
                problems.append("mount point %s: %s" % (d, e))
        return problems

    # ---- pods --------------------------------------------------------------------------------------------------------
    def volumes(self, pod_name, namespace, spec):
        out = {}
        for v in spec.get("volumes", []):
            d = os.path.join(self.dir, "%s-vol-%s" % (pod_name, v["name"]))
            if "emptyDir" in v:
                os.makedirs(d)
                os.chmod(d, 0o777)  # an emptyDir is writable by the pod's users
            elif "secret" in v:
                name = v["secret"]["secretName"]
                check(name.startswith("pilotfish-identity-"), "secret volume %s: only identities are simulated" % name)
                account = name[len("pilotfish-identity-"):]
                self.run([self.a.sidecar, "certs", "workload", "--ca", self.ca, "--namespace", namespace,
                          "--service-account", account, "--out", d])
                # A Secret volume is readable by the pod (kubelet: defaultMode 0644, files owned by root).
                for f in os.listdir(d):
                    os.chmod(os.path.join(d, f), 0o644)
                os.chmod(d, 0o755)
            else:
                raise Fail("volume %s: %s is not simulated" % (v["name"], sorted(v)))
            out[v["name"]] = d
        return out

    def start(self, pod_name, ns, container, volumes, pod_spec, hook=None):
        """Starts one container as the kubelet would (or, with `hook`, that command in the container's context, as
        a lifecycle exec hook runs); returns its Proc."""
        command = list(hook) if hook else \
            list(container.get("command") or []) + [str(a) for a in container.get("args") or []]
        check(command, "container %s has no command (images are not simulated)" % container["name"])
        exe = {"sidecar": self.a.sidecar, "sidecar-init": self.a.sidecar_init, "python3": sys.executable}
        check(command[0] in exe or command[0].startswith("/"),
              "container %s: command %s is not simulated" % (container["name"], command[0]))
        command[0] = exe.get(command[0], command[0])  # an absolute path is the container's own (a volume's)
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}
        for e in container.get("env") or []:
            check("value" in e, "container %s env %s: only plain values are simulated" % (container["name"], e["name"]))
            env[e["name"]] = str(e["value"])
        sc = dict(pod_spec.get("securityContext") or {})
        sc.update(container.get("securityContext") or {})
        uid, gid = int(sc.get("runAsUser", 0)), int(sc.get("runAsGroup", sc.get("runAsUser", 0)))
        check(not (sc.get("runAsNonRoot") and uid == 0), "container %s: runAsNonRoot with uid 0" % container["name"])
        caps = sc.get("capabilities") or {}
        check(caps.get("drop") == ["ALL"], "container %s: capabilities must drop ALL" % container["name"])
        add = ",".join("+" + c.lower() for c in caps.get("add") or [])
        setpriv = ["setpriv", "--reuid", str(uid), "--regid", str(gid), "--clear-groups",
                   "--bounding-set", "-all" + ("," + add if add else ""), "--inh-caps", "-all" + ("," + add if add else "")]
        if uid != 0:
            setpriv += ["--ambient-caps", "-all" + ("," + add if add else "")]
        if sc.get("allowPrivilegeEscalation") is False:
            setpriv.append("--no-new-privs")
        mounts = []
        for m in container.get("volumeMounts") or []:
            path = m["mountPath"]
            if not os.path.isdir(path):
                missing = []
                p = path
                while not os.path.exists(p):
                    missing.append(p)
                    p = os.path.dirname(p)
                os.makedirs(path)
                self.mountpoints += reversed(missing)
            ro = ",ro" if m.get("readOnly") else ""
            mounts.append("mount --bind %s %s" % (shlex.quote(volumes[m["name"]]), shlex.quote(path)))
            if ro:
                mounts.append("mount -o remount,bind,ro %s" % shlex.quote(path))
        script = "set -e; " + "; ".join(mounts + ["exec " + " ".join(shlex.quote(x) for x in setpriv + ["--"] + command)])
        argv = ["ip", "netns", "exec", ns, "unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", script]
        what = "%s/%s%s" % (pod_name, container["name"], " postStart" if hook else "")
        p = Proc(argv, what, env, os.path.join(self.dir, what.replace("/", "-").replace(" ", "-") + ".log"))
        self.procs.append(p)
        return p

    def probe(self, ns_from, pod_ip, probe, timeout=20):
        """Polls a probe (httpGet only: the injector rewrote the others) from the node until it passes; returns how
        many tries it took."""
        check("httpGet" in probe, "probe %s: only httpGet is simulated" % probe)
        g = probe["httpGet"]
        url = "http://%s:%s%s" % (pod_ip, g["port"], g.get("path", "/"))
        deadline = time.monotonic() + timeout
        tries = 0
        while time.monotonic() < deadline:
            tries += 1
            code, _ = self.curl(ns_from, url)
            if 200 <= code < 400:
                return tries, url
            time.sleep(0.2)
        raise Fail("probe %s never passed within %ds (last status %s)" % (url, timeout, code))

    def start_pod(self, obj, ns, ip, step):
        """Init containers in order (a native sidecar: started, then its startupProbe), then the containers.
        Returns (sidecar Proc, app Procs)."""
        meta = obj["metadata"]
        spec = obj["spec"]
        name = meta["name"]
        vols = self.volumes(name, meta.get("namespace", "default"), spec)
        sidecar = None
        for c in spec.get("initContainers", []):
            if c.get("restartPolicy") == "Always":
                sidecar = self.start(name, ns, c, vols, spec)
                tries, url = self.probe(self.node, ip, c["startupProbe"])
                step("%s: native sidecar %s started; startupProbe %s passed after %d tries"
                     % (name, c["name"], url, tries))
            else:
                p = self.start(name, ns, c, vols, spec)
                rc = p.exit_status(30, "the init container did not finish")
                check(rc == 0, "init container %s/%s exited %d: %s" % (name, c["name"], rc, short(p.text())))
                caps = (c.get("securityContext") or {}).get("capabilities", {}).get("add")
                step("%s: init container %s done (exit 0) with only %s" % (name, c["name"], caps))
        apps = []
        for c in spec["containers"]:
            p = self.start(name, ns, c, vols, spec)
            hook = (((c.get("lifecycle") or {}).get("postStart") or {}).get("exec") or {}).get("command")
            if hook:
                # The kubelet starts the next container only once this container's postStart hook returned.
                h = self.start(name, ns, c, vols, spec, hook=hook)
                rc = h.exit_status(60, "the postStart hook did not return")
                check(rc == 0, "%s/%s postStart hook exited %d: %s" % (name, c["name"], rc, short(h.text())))
                step("%s: container %s started; its postStart hook (%s) returned 0" % (name, c["name"], " ".join(hook)))
            if c["name"] == "pilotfish-proxy":
                sidecar = p
            else:
                apps.append(p)
        return sidecar, apps


def stat(kubelet, ns, prefix):
    text = kubelet.sh(ns, ["curl", "-s", "http://127.0.0.1:15000/stats"])
    return sum(int(line.split(": ")[1]) for line in text.splitlines()
               if line.startswith(prefix) and line.split(": ")[1].isdigit())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sidecar", required=True)
    ap.add_argument("--sidecar-init", required=True)
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args()
    for tool in ("ip", "setpriv", "unshare", "curl", "mount"):
        if not shutil.which(tool):
            print("kubelet: FAIL: %s is not installed" % tool)
            return 1
    workdir = tempfile.mkdtemp(prefix="pf-kubelet-%d-" % os.getpid())
    os.chmod(workdir, 0o755)
    kubelet = None
    passed = failed = 0

    def step(text):
        nonlocal passed
        passed += 1
        print("PASS %s" % text, flush=True)

    try:
        kubelet = Kubelet(a, workdir)
        k = kubelet.k
        web_ip, client_ip = "198.18.%d.2" % k, "198.18.%d.3" % k
        shared = os.path.join(workdir, "shared")  # where the client's app (UID 1000) says it started GET /slow
        os.makedirs(shared)
        os.chmod(shared, 0o777)
        marker = os.path.join(shared, "slow-started")
        src = os.path.join(workdir, "pods.yaml")
        with open(src, "w") as f:
            f.write(manifests(web_ip, marker))
        r = subprocess.run([a.sidecar, "inject", "-f", src], capture_output=True, text=True, timeout=30)
        check(r.returncode == 0, "sidecar inject: %s" % short(r.stderr))
        docs = list(yaml.safe_load_all(r.stdout))
        web, job, batch_job = docs[0], docs[1], docs[2]

        def job_pod(job, name):
            return {"metadata": dict(job["spec"]["template"]["metadata"], name=name, namespace="shop"),
                    "spec": job["spec"]["template"]["spec"]}

        client = job_pod(job, "client")
        batch = job_pod(batch_job, "batch")
        step("sidecar inject: web and the client Job injected (%s)" % short(r.stderr.strip().replace("\n", "; "), 200))

        # Steps 1-3: web.
        web_ns = kubelet.pod_netns("web", web_ip)
        web_sidecar, (web_app,) = kubelet.start_pod(web, web_ns, web_ip, step)
        probes = {p: web["spec"]["containers"][0][p] for p in ("readinessProbe", "livenessProbe")}
        for kind, probe in probes.items():
            check(probe["httpGet"]["port"] == 15021, "%s was not rewritten: %s" % (kind, probe))
            tries, url = kubelet.probe(kubelet.node, web_ip, probe)
            step("web: %s through the sidecar passed (%s, %d tries)" % (kind, url, tries))
        code, _ = kubelet.curl(kubelet.node, "http://%s:8080/" % web_ip)
        check(code == 0, "plaintext from the node to web:8080 answered %d under STRICT mTLS" % code)
        step("web: plaintext from the node to the app's port is refused under STRICT mTLS")

        # Step 4b: a Job with a classic sidecar completes by itself: its app runs under `sidecar run-app`, which asks
        # the sidecar to quit when the app exits; the kubelet sends no signal.
        batch_ns = kubelet.pod_netns("batch", "198.18.%d.4" % k)
        batch_sidecar, (batch_app,) = kubelet.start_pod(batch, batch_ns, "198.18.%d.4" % k, step)
        rc = batch_app.exit_status(30, "the batch Job's app did not finish")
        check(rc == 0 and "BATCH 5/5" in batch_app.text(), "batch app exited %d: %s" % (rc, short(batch_app.text())))
        batch_sidecar.exit_status(15, "the classic sidecar still runs after its app exited (no /quitquitquit?)")
        step("batch: Job with a classic sidecar: 5 GETs over mTLS, the app exited 0 and the sidecar quit by itself "
             "(sidecar run-app, /quitquitquit): the pod completed")

        # Step 4: the client Job's pod.
        client_ns = kubelet.pod_netns("client", client_ip)
        handshakes0 = stat(kubelet, web_ns, "listener.0.0.0.0_15006.ssl.handshake")
        client_sidecar, (client_app,) = kubelet.start_pod(client, client_ns, client_ip, step)
        deadline = time.monotonic() + 30
        while not os.path.exists(marker) and time.monotonic() < deadline and client_app.alive():
            time.sleep(0.1)
        check(os.path.exists(marker), "the client never reached its slow request: %s" % short(client_app.text()))
        check("GETS 20/20" in client_app.text(), "client GETs: %s" % short(client_app.text()))
        handshakes = stat(kubelet, web_ns, "listener.0.0.0.0_15006.ssl.handshake") - handshakes0
        check(handshakes > 0, "web's inbound listener counted no TLS handshake: the client's traffic was not mTLS")
        step("client: 20 GETs from the client pod's app through both sidecars, all 200 (%d mTLS handshakes at web)"
             % handshakes)

        # Step 5: terminate web while the slow request is in flight (app first, then the native sidecar).
        time.sleep(0.5)
        check("SLOW" not in client_app.text(), "the slow request was no longer in flight when web was terminated")
        web_app.signal(signal.SIGTERM)
        # The app exits once every connection it serves is closed (server_close joins the handler threads), and the
        # sidecar's idle pooled connections to it close when the inbound ORIGINAL_DST cluster's cleanup drops the
        # unused host: up to two cleanup_interval (5 s) after the slow request ends. 10 s was too tight under load.
        web_app.exit_status(20, "web's app did not exit after SIGTERM")
        check("EXITED CLEANLY" in web_app.text(), "web's app: %s" % short(web_app.text()))
        # Step 7 fits here: the app is gone, the sidecar still runs.
        code, body = kubelet.curl(kubelet.node, "http://%s:15021%s" % (web_ip, probes["readinessProbe"]["httpGet"]["path"]))
        check(code == 503, "web's readiness path with the app gone: %d %s" % (code, short(body)))
        web_sidecar.signal(signal.SIGTERM)
        web_sidecar.exit_status(15, "web's sidecar did not exit after SIGTERM")
        step("web: terminated (app, then its native sidecar) with the client's GET /slow in flight; readiness "
             "answered 503 once the app was gone")

        # Step 6: the Job's app finishes; then its native sidecar is stopped.
        rc = client_app.exit_status(20, "the client's app did not finish")
        check("SLOW 200" in client_app.text(), "the in-flight slow request: %s" % short(client_app.text()))
        check(rc == 0, "the client's app exited %d: %s" % (rc, short(client_app.text())))
        step("client: the slow request in flight during web's termination answered 200; the Job's app exited 0")
        t0 = time.monotonic()
        client_sidecar.signal(signal.SIGTERM)
        client_sidecar.exit_status(15, "the client's sidecar did not exit after SIGTERM")
        step("client: its native sidecar exited %.1f s after SIGTERM: the Job's pod completed"
             % (time.monotonic() - t0))
    except Fail as e:
        failed += 1
        print("FAIL %s" % e, flush=True)
        if kubelet is not None:
            for p in kubelet.procs:
                print("    %s (pid %d): %s" % (p.name, p.pid, short(p.text(), 600)), flush=True)
    finally:
        problems = kubelet.close() if kubelet else []
        shutil.rmtree(workdir, ignore_errors=True)
        if problems:
            failed += 1
            print("FAIL cleanup: %s" % "; ".join(problems), flush=True)
    print("kubelet: %d passed, %d failed, 0 skipped" % (passed, failed), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
