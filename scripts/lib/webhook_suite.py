#!/usr/bin/env python3
"""The injection webhook (`sidecar webhook`) over real HTTPS, with AdmissionReview bodies from this Python client.

Usage: python3 scripts/lib/webhook_suite.py --bin PATH/TO/sidecar [NAME|PATTERN]... [--list] [-v]
(normally through scripts/e2e-k8s).

Setup (once): a mesh CA and a serving certificate for pilotfish-webhook.pilotfish-system.svc made with
`sidecar certs`, and `sidecar webhook --cert --key --port P --host 127.0.0.1 --image test-image:1` started on a free
loopback port, stopped by PID when the run ends. Every request checks the server's certificate against the CA and
the service's DNS name.

Scenarios:
  healthz          GET /healthz: 200 ok
  inject_pod       an AdmissionReview (CREATE) for a Pod with an HTTP readiness probe and STRICT mTLS: allowed, a
                   JSONPatch; the patch applied to the pod (RFC 6902, applied here) gives exactly what `sidecar inject`
                   makes of the same Pod offline, and the uid comes back
  reinvocation     the patched pod sent again (reinvocationPolicy IfNeeded), and again after another webhook added
                   a container of its own: allowed, no patch either time (the result is stable)
  opted_out        pilotfish.io/inject: "false" and sidecar.istio.io/inject label "false": allowed, no patch
  not_a_pod        a Deployment's AdmissionReview: allowed, no patch
  refused          a Pod with pilotfish.io/interception-mode: nat: not allowed, status 400, the message names the
                   annotation and the values it takes
  malformed        not JSON, a JSON array, kind ConfigMap, apiVersion v1beta1, no request, no uid, no object, a Pod
                   without spec: each 400 with a message naming what is wrong; 5 MiB: 413; GET /inject: 405;
                   POST /nope: 404; a TLS handshake without a request; the server still answers /healthz
  rotation         the certificate and key files replaced by a newly issued pair: within 5 s new connections get
                   the new certificate (another serial), without a restart

Output: a PASS/FAIL line per scenario and `webhook: N passed, N failed, 0 skipped`; exit 1 if any failed. Only
loopback is used; the webhook process is stopped by PID and the temporary directories removed, pass or fail.
"""

import base64
import copy
import http.client
import json
import os
import socket
import ssl
import subprocess
import sys
import time

from suite_common import Fail, ScenarioContext, Suite, check, free_port, main as run_suite, short, wait_for

SERVICE = "pilotfish-webhook.pilotfish-system.svc"
IMAGE = "test-image:1"


class WebhookSuite(Suite):
    def __init__(self, proxy, binary, verbose):
        super().__init__(proxy, binary, verbose)
        self.ctx = None
        self.proc = None
        self.broken = None

    def sidecar(self, *args, stdin=None):
        r = subprocess.run([self.bin] + list(args), input=stdin, capture_output=True, timeout=60)
        if r.returncode != 0:
            raise Fail("sidecar %s: exit %d: %s" % (" ".join(args), r.returncode, short(r.stderr.decode(), 300)))
        return r.stdout.decode()

    def issue(self, out):
        self.sidecar("certs", "workload", "--ca", self.ca_dir, "--namespace", "pilotfish-system",
                     "--service-account", "pilotfish-webhook", "--dns", SERVICE, "--out", out)

    def start(self):
        if self.broken:
            raise Fail(self.broken)
        if self.proc is not None:
            check(self.proc.alive(), "the webhook exited: %s" % self.proc.stderr_tail())
            return
        self.ctx = ScenarioContext(self, "shared", self.tmp_prefix)
        try:
            d = self.ctx.dir
            self.ca_dir = os.path.join(d, "ca")
            self.sidecar("certs", "ca", "--out", self.ca_dir)
            self.serving = os.path.join(d, "serving")
            self.issue(self.serving)
            self.port = free_port()
            self.proc = self.ctx.spawn([self.bin, "webhook", "--cert", os.path.join(self.serving, "tls.crt"),
                                        "--key", os.path.join(self.serving, "tls.key"), "--host", "127.0.0.1",
                                        "--port", str(self.port), "--secret-dir", os.path.join(d, "run"),
                                        "--image", IMAGE, "--log-level", "warning"], "webhook")

            def up():
                check(self.proc.alive(), "the webhook exited with status %s: %s"
                      % (self.proc.popen.returncode, self.proc.stderr_tail()))
                try:
                    return request(self, "GET", "/healthz")[0] == 200
                except (OSError, ssl.SSLError):
                    return False

            check(wait_for(up, 15), "the webhook did not answer /healthz within 15 s: %s" % self.proc.stderr_tail())
        except Fail as e:
            self.broken = "setup: %s" % e
            raise Fail(self.broken)

    def close(self):
        if self.ctx is not None:
            problems = self.ctx.close()
            if problems:
                print("webhook: cleanup: %s" % "; ".join(problems), file=sys.stderr, flush=True)


def tls_context(suite):
    ctx = ssl.create_default_context(cafile=os.path.join(suite.ca_dir, "ca.crt"))
    return ctx


def connect(suite):
    raw = socket.create_connection(("127.0.0.1", suite.port), timeout=5)
    return tls_context(suite).wrap_socket(raw, server_hostname=SERVICE)


def request(suite, method, path, body=None, content_type="application/json"):
    """One HTTPS request; returns (status, body text)."""
    conn = http.client.HTTPSConnection("127.0.0.1", suite.port, timeout=10, context=tls_context(suite))
    conn.sock = connect(suite)
    try:
        headers = {"content-type": content_type} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        return r.status, r.read().decode(errors="replace")
    finally:
        conn.close()


def review(obj, uid="u-1", kind="Pod", operation="CREATE"):
    group, version = ("", "v1") if kind == "Pod" else ("apps", "v1")
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": uid, "kind": {"group": group, "version": version, "kind": kind},
                        "resource": {"group": group, "version": version, "resource": kind.lower() + "s"},
                        "namespace": "shop", "operation": operation, "object": obj}}


def post_review(t, obj, **kw):
    status, text = request(t.suite, "POST", "/inject", json.dumps(review(obj, **kw)))
    check(status == 200, "POST /inject: %d %s" % (status, short(text, 300)))
    doc = json.loads(text)
    check(doc.get("kind") == "AdmissionReview" and doc.get("apiVersion") == "admission.k8s.io/v1",
          "not an AdmissionReview: %s" % short(text, 200))
    return doc["response"]


def pod(annotations=None, labels=None, containers=None):
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-1", "namespace": "shop", "labels": labels or {"app": "web"},
                         **({"annotations": annotations} if annotations else {})},
            "spec": {"serviceAccountName": "web", "containers": containers or [
                {"name": "app", "image": "web:1", "ports": [{"name": "http", "containerPort": 8080}],
                 "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 5}}]}}


# ---- JSON Patch (RFC 6902: add, remove, replace; the operations the webhook emits) ----------------------------------
def pointer(path):
    check(path == "" or path.startswith("/"), "bad JSON pointer %r" % path)
    return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]


def apply_patch(doc, ops):
    doc = copy.deepcopy(doc)
    for op in ops:
        tokens = pointer(op["path"])
        if not tokens:
            check(op["op"] == "replace", "an op on the root: %r" % op)
            doc = op["value"]
            continue
        parent = doc
        for tok in tokens[:-1]:
            parent = parent[int(tok)] if isinstance(parent, list) else parent[tok]
        last = tokens[-1]
        if isinstance(parent, list):
            i = len(parent) if last == "-" else int(last)
            if op["op"] == "add":
                parent.insert(i, op["value"])
            elif op["op"] == "remove":
                del parent[i]
            elif op["op"] == "replace":
                parent[i] = op["value"]
            else:
                raise Fail("unexpected op %r" % op)
        else:
            if op["op"] in ("add", "replace"):
                check(op["op"] == "add" or last in parent, "replace of a missing key: %r" % op)
                parent[last] = op["value"]
            elif op["op"] == "remove":
                check(last in parent, "remove of a missing key: %r" % op)
                del parent[last]
            else:
                raise Fail("unexpected op %r" % op)
    return doc


def patch_of(response):
    check(response.get("patchType") == "JSONPatch", "patchType %r" % response.get("patchType"))
    return json.loads(base64.b64decode(response["patch"]))


def offline(t, obj):
    """What `sidecar inject` makes of `obj` (JSON in, YAML out, read with PyYAML)."""
    import yaml  # PyYAML: scripts/e2e-k8s installs it

    text = t.suite.sidecar("inject", "-q", "-f", "-", "--image", IMAGE, stdin=json.dumps(obj).encode())
    return yaml.safe_load(text)


# ---- scenarios ------------------------------------------------------------------------------------------------------
def healthz(t):
    status, text = request(t.suite, "GET", "/healthz")
    check(status == 200 and text == "ok\n", "GET /healthz: %d %r" % (status, text))
    return "200 ok over TLS (certificate checked against the mesh CA for %s)" % SERVICE


def inject_pod(t):
    original = pod(annotations={"pilotfish.io/mtls-mode": "STRICT"})
    response = post_review(t, original, uid="uid-inject")
    check(response.get("uid") == "uid-inject" and response.get("allowed") is True, "response %s" % response)
    ops = patch_of(response)
    patched = apply_patch(original, ops)
    expected = offline(t, original)
    check(patched == expected, "the patched pod differs from `sidecar inject`'s:\n  patched  %s\n  expected %s"
          % (short(json.dumps(patched, sort_keys=True), 600), short(json.dumps(expected, sort_keys=True), 600)))
    names = [c["name"] for c in patched["spec"]["initContainers"]]
    check(names == ["pilotfish-init", "pilotfish-proxy"], "init containers %s" % names)
    probe = patched["spec"]["containers"][0]["readinessProbe"]["httpGet"]
    check(probe["port"] == 15021 and probe["path"] == "/app-health/app/readyz", "probe %s" % probe)
    return "%d patch operations; the patched pod equals `sidecar inject`'s output" % len(ops)


def reinvocation(t):
    original = pod()
    patched = apply_patch(original, patch_of(post_review(t, original)))
    again = post_review(t, patched, uid="uid-again")
    check(again.get("allowed") is True and "patch" not in again, "second call: %s" % short(json.dumps(again), 300))
    # Another webhook (an OpenTelemetry injector, say) adds a container after ours; we are called again.
    other = copy.deepcopy(patched)
    other["spec"]["containers"].append({"name": "otel-agent", "image": "otel:1",
                                        "readinessProbe": {"tcpSocket": {"port": 4317}}})
    third = post_review(t, other, uid="uid-third")
    check(third.get("allowed") is True and "patch" not in third, "after another webhook: %s"
          % short(json.dumps(third), 300))
    return "no patch on reinvocation, nor after another webhook added a container"


def opted_out(t):
    for p in (pod(annotations={"pilotfish.io/inject": "false"}), pod(labels={"sidecar.istio.io/inject": "false"})):
        r = post_review(t, p)
        check(r.get("allowed") is True and "patch" not in r, "opted out, yet: %s" % short(json.dumps(r), 300))
    return "annotation and Istio label: allowed, no patch"


def not_a_pod(t):
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
                  "spec": {"template": pod()}}
    r = post_review(t, deployment, kind="Deployment")
    check(r.get("allowed") is True and "patch" not in r, "a Deployment: %s" % short(json.dumps(r), 300))
    return "a Deployment is allowed untouched"


def refused(t):
    r = post_review(t, pod(annotations={"pilotfish.io/interception-mode": "nat"}), uid="uid-bad")
    check(r.get("uid") == "uid-bad" and r.get("allowed") is False, "response %s" % short(json.dumps(r), 300))
    message = r.get("status", {}).get("message", "")
    check(r.get("status", {}).get("code") == 400 and "pilotfish.io/interception-mode" in message
          and "'nat' is not redirect or tproxy" in message, "status %s" % r.get("status"))
    return "refused: %s" % message


def malformed(t):
    s = t.suite
    base = review(pod())
    cases = [
        ("not JSON", "{ not json", "not JSON"),
        ("a JSON array", "[1, 2]", "not one JSON object"),
        ("kind ConfigMap", json.dumps(dict(base, kind="ConfigMap")), "kind: expected AdmissionReview"),
        ("apiVersion v1beta1", json.dumps(dict(base, apiVersion="admission.k8s.io/v1beta1")), "apiVersion"),
        ("no request", json.dumps({k: v for k, v in base.items() if k != "request"}), "request: missing"),
        ("no uid", json.dumps(dict(base, request={k: v for k, v in base["request"].items() if k != "uid"})),
         "request.uid: missing"),
        ("no object", json.dumps(dict(base, request={k: v for k, v in base["request"].items() if k != "object"})),
         "request.object: missing"),
        ("a Pod without spec", json.dumps(review({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}})),
         "request.object.spec: missing"),
    ]
    seen = []
    for what, body, needle in cases:
        status, text = request(s, "POST", "/inject", body)
        check(status == 400 and needle in text, "%s: %d %s (expected 400 naming %r)" % (what, status, short(text), needle))
        seen.append(what)
    status, text = request(s, "POST", "/inject", "x" * (5 << 20))
    check(status == 413, "5 MiB body: %d %s" % (status, short(text)))
    status, _ = request(s, "GET", "/inject")
    check(status == 405, "GET /inject: %d" % status)
    status, _ = request(s, "POST", "/nope", "{}")
    check(status == 404, "POST /nope: %d" % status)
    connect(s).close()  # a handshake, then nothing
    status, text = request(s, "GET", "/healthz")
    check(status == 200, "the webhook stopped answering after malformed input: %d" % status)
    return "400 for each of %d bad bodies, 413, 405, 404; still healthy" % len(seen)


def serial_now(suite):
    with connect(suite) as c:
        der = c.getpeercert(binary_form=True)
    return der


def rotation(t):
    s = t.suite
    before = serial_now(s)
    fresh = os.path.join(t.dir, "fresh")
    s.issue(fresh)
    # Replace the files the webhook reads (key first, as `sidecar certs` and Kubernetes' atomic swap would).
    for name in ("tls.key", "tls.crt"):
        tmp = os.path.join(s.serving, name + ".new")
        with open(os.path.join(fresh, name), "rb") as src, open(tmp, "wb") as dst:
            dst.write(src.read())
        os.rename(tmp, os.path.join(s.serving, name))
    changed = wait_for(lambda: serial_now(s) != before, 5, 0.2)
    check(changed, "the webhook still serves the old certificate 5 s after the files changed")
    check(s.proc.alive(), "the webhook exited during the rotation")
    status, _ = request(s, "GET", "/healthz")
    check(status == 200, "/healthz after rotation: %d" % status)
    return "a new certificate served within 5 s, same process"


CASES = [("healthz", healthz), ("inject_pod", inject_pod), ("reinvocation", reinvocation), ("opted_out", opted_out),
         ("not_a_pod", not_a_pod), ("refused", refused), ("malformed", malformed), ("rotation", rotation)]


def scenario(fn):
    def run(t):
        t.suite.start()
        return fn(t)

    run.__name__ = fn.__name__
    return run


if __name__ == "__main__":
    args = sys.argv[1:]
    if "--proxy" not in args:
        args = ["--proxy", "sidecar"] + args
    raise SystemExit(run_suite("webhook", __doc__, [(n, scenario(f)) for n, f in CASES], "pf-webhook",
                               suite_class=WebhookSuite, argv=args))
