"""Validation of Pilotfish's Kubernetes manifests: the schemas (kubernetes-validate --strict, per Kubernetes
version) and semantic checks of our own that the schemas miss, on every pod template.

Run through scripts/k8s-validate, which creates the venv with kubernetes-validate and runs --self-test first.

    k8s_validate.py [--kubernetes-validate PATH] [--versions 1.29,1.33] [FILE...]
    k8s_validate.py --self-test [--verbose]

Without FILE: every *.yaml / *.yml under k8s/, plus every Tests/SidecarTests/Injection/golden/*.out.yaml when
that directory exists. Prints one line per file, `PASS file (1.29, 1.33, semantic)`, or one `FAIL file: reason`
line per problem (the reason names the document and the path inside it), then `k8s-validate: N passed, N failed`;
exits 1 when a file failed, 2 on a usage error.

The semantic checks (importable: `check_document(doc)` returns `Problem`s), on every pod template found in a Pod,
PodTemplate, Deployment, StatefulSet, DaemonSet, ReplicaSet, ReplicationController, Job or CronJob (other
documents are schema-checked only):
  a  a probe (liveness/readiness/startup) on an init container only when its restartPolicy is Always
  b  an init container's restartPolicy, when set, is Always
  c  container names are unique across initContainers, containers and ephemeralContainers
  d  every volumeMount (and volumeDevice) names a volume of the pod
  e  no app container (any not named pilotfish-*) declares a containerPort in 15000-15090 (the sidecar's)
  f  a probe port given by name names a port of the same container
  g  at most one pilotfish-init, only among initContainers, and before pilotfish-proxy when that is one too
  h  a pod annotated pilotfish.io/status (JSON: {"initContainers": [names], "containers": [names],
     "volumes": [names], ...}, as Istio's sidecar.istio.io/status) has the containers it lists, each in the
     list it is listed in, and the volumes it lists
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
GOLDEN_DIR = os.path.join("Tests", "SidecarTests", "Injection", "golden")
DEFAULT_VERSIONS = ("1.29", "1.33")

SIDECAR_PORTS = range(15000, 15091)  # 15000-15090: admin, capture, health, reserved
PROBES = ("livenessProbe", "readinessProbe", "startupProbe")
STATUS_ANNOTATION = "pilotfish.io/status"
INIT_NAME = "pilotfish-init"
PROXY_NAME = "pilotfish-proxy"

# kind -> the path of its pod template (metadata + spec) inside the document.
POD_TEMPLATE_PATHS = {
    "Pod": (),
    "PodTemplate": ("template",),
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "ReplicationController": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}


@dataclass(frozen=True)
class Problem:
    rule: str  # a-h for the semantic rules; "doc" for a document that cannot be checked
    path: str  # where in the document, e.g. spec.template.spec.initContainers[1].readinessProbe
    message: str

    def __str__(self):
        return f"{self.path}: {self.message}" if self.path else self.message


def _join(prefix, *parts):
    out = prefix
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out = f"{out}.{part}" if out else part
    return out


def _list(value, path, problems):
    """A field that must be a list (or absent). A wrong type is reported, not skipped."""
    if value is None:
        return []
    if not isinstance(value, list):
        problems.append(Problem("doc", path, f"expected a list, found {type(value).__name__}"))
        return []
    return value


def pod_templates(doc):
    """Yields (path, metadata, spec) for the pod template of a workload document; nothing for other kinds."""
    kind = doc.get("kind")
    if kind not in POD_TEMPLATE_PATHS:
        return
    node, path = doc, ""
    for key in POD_TEMPLATE_PATHS[kind]:
        node = node.get(key) if isinstance(node, dict) else None
        path = _join(path, key)
    if not isinstance(node, dict):
        yield path or "(document)", None, None
        return
    yield path, node.get("metadata") or {}, node.get("spec")


def check_pod(path, metadata, spec):
    """Every semantic rule on one pod template. `path` is the template's path (metadata and spec below it)."""
    problems = []
    spec_path = _join(path, "spec")
    if not isinstance(spec, dict):
        return [Problem("doc", spec_path, "no pod spec (a mapping) here")]
    if not isinstance(metadata, dict):
        problems.append(Problem("doc", _join(path, "metadata"), "metadata is not a mapping"))
        metadata = {}

    lists = {}
    for field in ("initContainers", "containers", "ephemeralContainers"):
        entries = []
        for i, c in enumerate(_list(spec.get(field), _join(spec_path, field), problems)):
            cpath = _join(spec_path, field, i)
            if not isinstance(c, dict):
                problems.append(Problem("doc", cpath, "container is not a mapping"))
                continue
            name = c.get("name")
            entries.append((cpath + (f' "{name}"' if isinstance(name, str) else ""), name, c))
        lists[field] = entries
    inits, mains = lists["initContainers"], lists["containers"]
    every = inits + mains + lists["ephemeralContainers"]

    # (a) probes on init containers, (b) init container restartPolicy
    for cpath, _name, c in inits:
        policy = c.get("restartPolicy")
        if policy is not None and policy != "Always":
            problems.append(Problem(
                "b", _join(cpath, "restartPolicy"),
                f"an init container's restartPolicy can only be Always (a native sidecar), not {policy!r}"))
        for probe in PROBES:
            if probe in c and policy != "Always":
                problems.append(Problem(
                    "a", _join(cpath, probe),
                    "probe on an init container without restartPolicy: Always (only native sidecars may have "
                    "probes; the API server refuses it)"))

    # (c) unique names
    seen = {}
    for cpath, name, _c in every:
        if not isinstance(name, str) or not name:
            problems.append(Problem("c", _join(cpath, "name"), "container has no name"))
        elif name in seen:
            problems.append(Problem("c", _join(cpath, "name"), f"container name {name!r} is also {seen[name]}"))
        else:
            seen[name] = cpath

    # (d) mounts name volumes of the pod
    volumes = set()
    for i, v in enumerate(_list(spec.get("volumes"), _join(spec_path, "volumes"), problems)):
        if isinstance(v, dict) and isinstance(v.get("name"), str):
            volumes.add(v["name"])
        else:
            problems.append(Problem("d", _join(spec_path, "volumes", i), "volume has no name"))
    for cpath, _name, c in every:
        for field in ("volumeMounts", "volumeDevices"):
            for j, m in enumerate(_list(c.get(field), _join(cpath, field), problems)):
                mname = m.get("name") if isinstance(m, dict) else None
                if mname not in volumes:
                    problems.append(Problem(
                        "d", _join(cpath, field, j),
                        f"mounts volume {mname!r}, which the pod does not define"
                        + (f" (volumes: {', '.join(sorted(volumes))})" if volumes else " (the pod has no volumes)")))

    # (e) app containers off the sidecar's ports, (f) named probe ports
    for cpath, name, c in every:
        ports = _list(c.get("ports"), _join(cpath, "ports"), problems)
        port_names = {p.get("name") for p in ports if isinstance(p, dict) and p.get("name")}
        if not (isinstance(name, str) and name.startswith("pilotfish-")):
            for j, p in enumerate(ports):
                number = p.get("containerPort") if isinstance(p, dict) else None
                if isinstance(number, int) and number in SIDECAR_PORTS:
                    problems.append(Problem(
                        "e", _join(cpath, "ports", j, "containerPort"),
                        f"app container declares port {number}; 15000-15090 are the Pilotfish sidecar's"))
        for probe in PROBES:
            spec_probe = c.get(probe)
            if not isinstance(spec_probe, dict):
                continue
            for handler in ("httpGet", "tcpSocket"):
                h = spec_probe.get(handler)
                port = h.get("port") if isinstance(h, dict) else None
                if isinstance(port, str) and port not in port_names:
                    problems.append(Problem(
                        "f", _join(cpath, probe, handler, "port"),
                        f"probe port {port!r} names no port of this container"
                        + (f" (its ports: {', '.join(sorted(port_names))})" if port_names else " (it has none)")))

    # (g) pilotfish-init: one, an init container, before pilotfish-proxy
    init_at = [i for i, (_p, n, _c) in enumerate(inits) if n == INIT_NAME]
    proxy_at = [i for i, (_p, n, _c) in enumerate(inits) if n == PROXY_NAME]
    if len(init_at) > 1:
        problems.append(Problem(
            "g", _join(spec_path, "initContainers"),
            f"{len(init_at)} init containers named {INIT_NAME} (at {', '.join(map(str, init_at))}); at most one"))
    for cpath, name, _c in mains + lists["ephemeralContainers"]:
        if name == INIT_NAME:
            problems.append(Problem("g", cpath, f"{INIT_NAME} must be an init container"))
    if init_at and proxy_at and init_at[0] > proxy_at[0]:
        problems.append(Problem(
            "g", _join(spec_path, "initContainers", init_at[0]),
            f"{INIT_NAME} (initContainers[{init_at[0]}]) must come before {PROXY_NAME} "
            f"(initContainers[{proxy_at[0]}]): the proxy's traffic would start before capture is installed"))

    # (h) the status annotation's containers exist
    annotations = metadata.get("annotations") or {}
    if isinstance(annotations, dict) and STATUS_ANNOTATION in annotations:
        apath = _join(path, "metadata", "annotations", STATUS_ANNOTATION)
        raw = annotations[STATUS_ANNOTATION]
        try:
            status = json.loads(raw) if isinstance(raw, str) else None
        except ValueError as e:
            status = None
            problems.append(Problem("h", apath, f"not JSON: {e}"))
        else:
            if not isinstance(status, dict):
                problems.append(Problem(
                    "h", apath, 'expected a JSON object {"initContainers": [...], "containers": [...]}'))
        if isinstance(status, dict):
            for key, entries in (("initContainers", inits), ("containers", mains)):
                listed = status.get(key)
                if listed is None:
                    continue
                if not (isinstance(listed, list) and all(isinstance(n, str) for n in listed)):
                    problems.append(Problem("h", apath, f"{key} is not a list of container names"))
                    continue
                present = {n for _p, n, _c in entries}
                for n in listed:
                    if n not in present:
                        problems.append(Problem(
                            "h", apath, f"lists {key} {n!r}, which spec.{key} does not have"))
            listed = status.get("volumes")
            if listed is not None:
                if not (isinstance(listed, list) and all(isinstance(n, str) for n in listed)):
                    problems.append(Problem("h", apath, "volumes is not a list of volume names"))
                else:
                    for n in listed:
                        if n not in volumes:
                            problems.append(Problem(
                                "h", apath, f"lists volumes {n!r}, which spec.volumes does not have"))
    return problems


def check_document(doc):
    """The semantic problems of one parsed document (an empty list for a document that is not a pod template)."""
    if not isinstance(doc, dict):
        return [Problem("doc", "", f"document is a {type(doc).__name__}, not a mapping")]
    if doc.get("kind") == "List" and isinstance(doc.get("items"), list):
        out = []
        for i, item in enumerate(doc["items"]):
            label = f"items[{i}]"
            if isinstance(item, dict):
                name = (item.get("metadata") or {}).get("name") if isinstance(item.get("metadata"), dict) else None
                label += f" ({item.get('kind', '?')}{' ' + name if name else ''})"
            out += [Problem(p.rule, f"{label} {p.path}" if p.path else label, p.message)
                    for p in check_document(item)]
        return out
    problems = []
    for path, metadata, spec in pod_templates(doc):
        if spec is None:
            problems.append(Problem("doc", path, f"{doc.get('kind')} without a pod template here"))
            continue
        problems += check_pod(path, metadata, spec)
    return problems


def describe(doc, index):
    if isinstance(doc, dict):
        name = (doc.get("metadata") or {}).get("name") if isinstance(doc.get("metadata"), dict) else None
        return f"doc {index} ({doc.get('kind', '?')}{' ' + name if name else ''})"
    return f"doc {index}"


def load_documents(filename):
    """The non-empty documents of a YAML file; raises ValueError with a readable reason."""
    try:
        with open(filename, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ValueError(f"cannot read: {e.strerror}")
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = " ".join(x for x in (getattr(e, "context", None), getattr(e, "problem", None)) if x) or str(e)
        raise ValueError(f"not valid YAML{where}: {what}")
    if not docs:
        raise ValueError("no YAML documents in the file")
    return docs


# ---------------------------------------------------------------------------------------------------------- schemas


def _minor(version):
    m = re.match(r"^v?(\d+)\.(\d+)", version)
    if not m:
        raise ValueError(f"not a Kubernetes version: {version!r}")
    return int(m.group(1)), int(m.group(2))


def resolve_versions(wanted):
    """Maps each wanted Kubernetes minor to a schema version kubernetes-validate bundles. Returns
    (resolved list of 'X.Y', bundled list, notes). A version newer than the newest bundled one falls back to the
    newest, loudly; one older than the oldest is an error (ValueError)."""
    from kubernetes_validate import utils  # the installed package's own list of bundled schema versions
    bundled = sorted({_minor(v) for v in utils.all_versions()})
    if not bundled:
        raise ValueError("kubernetes-validate bundles no schemas")
    resolved, notes = [], []
    for w in wanted:
        wm = _minor(w)
        if wm in bundled:
            resolved.append(wm)
        elif wm > bundled[-1]:
            notes.append(
                f"kubernetes-validate bundles schemas up to {bundled[-1][0]}.{bundled[-1][1]} only, not {w}: "
                f"validating against {bundled[-1][0]}.{bundled[-1][1]} instead")
            resolved.append(bundled[-1])
        else:
            raise ValueError(
                f"kubernetes-validate has no schemas for Kubernetes {w} "
                f"(it bundles {bundled[0][0]}.{bundled[0][1]} to {bundled[-1][0]}.{bundled[-1][1]})")
    def fmt(v):
        return f"{v[0]}.{v[1]}"
    return [fmt(v) for v in dict.fromkeys(resolved)], [fmt(v) for v in bundled], notes


def schema_problems(cli, filename, versions, docs):
    """Runs `kubernetes-validate --strict --quiet -k V.0 ... FILE`; every line it prints is a problem (ERROR,
    FATAL, and WARN too: a kind it has no schema for would otherwise pass unchecked).

    kubernetes-validate has no schema for `kind: List` (what `kubectl get -o yaml` and `sidecar inject` print
    for several objects): a file with a List is validated as its items, written one per document to a temporary
    file, after checking the List's own fields."""
    problems = []
    target = filename
    if any(isinstance(d, dict) and d.get("kind") == "List" for d in docs):
        expanded = []
        for i, d in enumerate(docs, 1):
            if isinstance(d, dict) and d.get("kind") == "List":
                extra = sorted(set(d) - {"apiVersion", "kind", "metadata", "items"})
                if d.get("apiVersion") != "v1" or not isinstance(d.get("items"), list) or extra:
                    problems.append(f"schema: doc {i} (List) must be apiVersion v1 with a list of items"
                                    + (f", and no {', '.join(extra)}" if extra else ""))
                    continue
                expanded += d["items"]
            else:
                expanded.append(d)
        fd, target = tempfile.mkstemp(prefix="k8s-validate-", suffix=".yaml")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            yaml.safe_dump_all(expanded, f, sort_keys=False)
    cmd = [cli, "--strict", "--quiet"]
    for v in versions:
        cmd += ["-k", f"{v}.0"]
    cmd.append(target)
    try:
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        return problems + [f"kubernetes-validate could not run: {e}"]
    finally:
        if target != filename:
            os.unlink(target)
    for line in (run.stdout + run.stderr).splitlines():
        line = line.strip()
        if not line:
            continue
        line = line.replace(f" {target} ", " ", 1)
        # "ERROR did not validate for resource kind/name against version 1.29: path: message"
        m = re.match(r"^ERROR did not validate for resource (\S+) against version ([\d.]+): (.*)$", line)
        if m:
            line = f"{m.group(1)} {m.group(3)}"
            problems.append(f"schema {m.group(2)}: {line}")
        else:
            problems.append(f"schema: {line}")
    if run.returncode != 0 and not problems:
        problems.append(f"schema: kubernetes-validate exited {run.returncode} without saying why")
    return problems


def default_files():
    files = []
    for base in (os.path.join(ROOT, "k8s"), os.path.join(ROOT, GOLDEN_DIR)):
        if not os.path.isdir(base):
            continue
        golden = base.endswith(GOLDEN_DIR)
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            for name in sorted(filenames):
                if (golden and name.endswith(".out.yaml")) or (not golden and name.endswith((".yaml", ".yml"))):
                    files.append(os.path.relpath(os.path.join(dirpath, name), os.getcwd()))
    return files


def validate_files(files, cli, versions):
    passed = failed = 0
    for filename in files:
        reasons = []
        try:
            docs = load_documents(filename)
        except ValueError as e:
            reasons.append(str(e))
            docs = []
        if docs:
            reasons += schema_problems(cli, filename, versions, docs)
            for i, doc in enumerate(docs, 1):
                reasons += [f"{describe(doc, i)} {p}" for p in check_document(doc)]
        if reasons:
            failed += 1
            for r in reasons:
                print(f"FAIL {filename}: {r}", flush=True)
        else:
            passed += 1
            print(f"PASS {filename} ({', '.join(versions)}, semantic)", flush=True)
    print(f"k8s-validate: {passed} passed, {failed} failed", flush=True)
    return failed == 0


# -------------------------------------------------------------------------------------------------------- self-test


def _pod(init=(), containers=({"name": "app", "image": "app:1"},), volumes=None, annotations=None):
    spec = {"containers": [dict(c) for c in containers]}
    if init:
        spec["initContainers"] = [dict(c) for c in init]
    if volumes is not None:
        spec["volumes"] = volumes
    meta = {"name": "t"}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def _deployment(pod):
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "t"},
            "spec": {"selector": {"matchLabels": {"a": "b"}},
                     "template": {"metadata": pod["metadata"], "spec": pod["spec"]}}}


_HTTP_PROBE = {"httpGet": {"path": "/", "port": 8080}}
_INIT = {"name": INIT_NAME, "image": "p:1"}
_PROXY = {"name": PROXY_NAME, "image": "p:1", "restartPolicy": "Always", "readinessProbe": _HTTP_PROBE,
          "ports": [{"name": "health", "containerPort": 15021}]}
_STATUS = json.dumps({"initContainers": [INIT_NAME, PROXY_NAME], "containers": [], "volumes": []})

# One document per rule that the checker must refuse, each with the rule it must be refused under. Some sit in
# a Deployment or CronJob to cover the template paths.
SELF_TEST_BAD = [
    ("a", "probe on a plain init container",
     _pod(init=[{"name": "setup", "image": "x:1", "readinessProbe": _HTTP_PROBE}])),
    ("b", "init container restartPolicy OnFailure",
     _deployment(_pod(init=[{"name": "setup", "image": "x:1", "restartPolicy": "OnFailure"}]))),
    ("c", "an init container and a container with one name",
     _pod(init=[{"name": "app", "image": "x:1"}])),
    ("d", "mount of a volume the pod lacks",
     _pod(containers=[{"name": "app", "image": "a:1", "volumeMounts": [{"name": "data", "mountPath": "/d"}]}],
          volumes=[{"name": "other", "emptyDir": {}}])),
    ("e", "app container on the sidecar's port 15021",
     {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "t"},
      "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": {
          "restartPolicy": "Never",
          "containers": [{"name": "app", "image": "a:1", "ports": [{"containerPort": 15021}]}]}}}}}}),
    ("f", "probe on a port name the container lacks",
     _pod(containers=[{"name": "app", "image": "a:1", "ports": [{"name": "http", "containerPort": 8080}],
                       "livenessProbe": {"tcpSocket": {"port": "htp"}}}])),
    ("g", "pilotfish-init after pilotfish-proxy",
     _pod(init=[_PROXY, _INIT])),
    ("g", "two pilotfish-init",
     _pod(init=[_INIT, dict(_INIT, name=INIT_NAME)], containers=[{"name": "app", "image": "a:1"}])),
    ("h", "status lists a container the pod lacks",
     _pod(init=[_INIT], annotations={STATUS_ANNOTATION: _STATUS})),
    ("h", "status lists a volume the pod lacks",
     _pod(init=[_INIT, _PROXY], annotations={STATUS_ANNOTATION: json.dumps(
         {"initContainers": [INIT_NAME, PROXY_NAME], "containers": [], "volumes": ["pilotfish-run"]})})),
    ("h", "status that is not JSON",
     _pod(annotations={STATUS_ANNOTATION: "initContainers=pilotfish-init"})),
]

# Must pass clean: an injected pod as the injector makes it (native sidecar with probes, named probe ports,
# the identity volume mounted, the status naming what is there).
SELF_TEST_GOOD = _deployment(_pod(
    init=[_INIT, _PROXY],
    containers=[{"name": "app", "image": "a:1", "ports": [{"name": "http", "containerPort": 8080}],
                 "readinessProbe": {"httpGet": {"path": "/", "port": "http"}},
                 "livenessProbe": {"tcpSocket": {"port": "http"}},
                 "volumeMounts": [{"name": "data", "mountPath": "/d"}]}],
    volumes=[{"name": "data", "emptyDir": {}}, {"name": "pilotfish-run", "emptyDir": {"medium": "Memory"}}],
    annotations={STATUS_ANNOTATION: json.dumps({"initContainers": [INIT_NAME, PROXY_NAME], "containers": [],
                                                "volumes": ["pilotfish-run"]})}))


def self_test(verbose=False):
    ok = True
    for rule, what, doc in SELF_TEST_BAD:
        problems = check_document(doc)
        caught = [p for p in problems if p.rule == rule]
        if caught:
            if verbose:
                print(f"self-test: rule {rule} caught {what}: {caught[0]}", file=sys.stderr)
        else:
            ok = False
            print(f"self-test: FAIL rule {rule} did not catch {what} (found: {problems or 'nothing'})",
                  file=sys.stderr)
    clean = check_document(SELF_TEST_GOOD)
    if clean:
        ok = False
        print(f"self-test: FAIL the good injected pod was refused: {'; '.join(map(str, clean))}", file=sys.stderr)
    rules = sorted({r for r, _w, _d in SELF_TEST_BAD})
    if rules != list("abcdefgh"):
        ok = False
        print(f"self-test: FAIL the bad documents cover rules {rules}, not a-h", file=sys.stderr)
    print(f"self-test: {'ok' if ok else 'FAILED'} ({len(SELF_TEST_BAD)} bad documents for rules "
          f"{rules[0]}-{rules[-1]}, one good injected pod)", file=sys.stderr)
    return ok


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--self-test", action="store_true", help="check that every semantic rule catches a bad document")
    ap.add_argument("-v", "--verbose", action="store_true", help="with --self-test: show what each rule caught")
    ap.add_argument("--kubernetes-validate", default="kubernetes-validate", metavar="PATH",
                    help="the kubernetes-validate command (default: on PATH)")
    ap.add_argument("--versions", default=",".join(DEFAULT_VERSIONS),
                    help="Kubernetes versions to validate against, comma-separated (default %(default)s)")
    ap.add_argument("files", nargs="*", help="YAML files (default: k8s/**/*.yaml and the injection goldens)")
    args = ap.parse_args(argv)

    if args.self_test:
        if args.files:
            ap.error("--self-test takes no files")
        return 0 if self_test(args.verbose) else 1

    try:
        versions, bundled, notes = resolve_versions([v.strip() for v in args.versions.split(",") if v.strip()])
    except ImportError:
        print("k8s-validate: the kubernetes_validate package is not importable by this Python "
              "(run through scripts/k8s-validate, which installs it)", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"k8s-validate: {e}", file=sys.stderr)
        return 2
    print(f"k8s-validate: kubernetes-validate schemas bundled for {bundled[0]} to {bundled[-1]}; "
          f"validating against {', '.join(versions)}", file=sys.stderr)
    for note in notes:
        bar = "!" * 100
        print(f"{bar}\nk8s-validate: WARNING: {note}\n{bar}", file=sys.stderr)

    files = args.files or default_files()
    if not files:
        print("k8s-validate: no files given and none found under k8s/", file=sys.stderr)
        return 2
    return 0 if validate_files(files, args.kubernetes_validate, versions) else 1


if __name__ == "__main__":
    sys.exit(main())
