#!/usr/bin/env python3
"""The soak test (issue 18, item 4), run by scripts/soak: the real sidecar under steady load for a bounded time
while its backends die and come back and its TLS certificate rotates, then pass/fail on what must not drift.

Usage: python3 scripts/lib/soak_suite.py --bin PATH --seconds S [--warmup W] [--fault kill-both|hold-connections]

Set-up, all on 127.0.0.1 with free ports and a temporary directory: two backends (soak_agents.py backend, separate
processes), the sidecar (--concurrency 2) with a plain HTTP/1.1 listener and a TLS listener whose certificate
comes from SDS (path_config_source + watched_directory on a Kubernetes-style secret directory), one cluster over
both backends (round robin, max_retries circuit breaker 1000), and a route retry policy: retry_on
connect-failure,reset,5xx, num_retries 5, retry_back_off 10-100 ms, previous_hosts.

During the run, concurrently:
  load    8 keep-alive connections paced at SOAK_RPS (default 400) requests per second;
  churn   SOAK_CHURN_RATE (default 40) new connections per second, one `connection: close` request each;
  tls     one keep-alive TLS connection at 20 requests per second and 4 new TLS connections per second;
  chaos   every SOAK_KILL_EVERY seconds one backend (alternately) is killed with SIGKILL by PID, left down 2 s and
          started again on the same port; the next kill waits until it accepts again, so one backend is always up;
  rotate  every SOAK_ROTATE_EVERY seconds a new certificate (new key, new serial, same CA; openssl) is swapped into
          the secret directory; new TLS handshakes must present it within 5 s (SHA-256 of the served certificate),
          and keep doing so;
  sample  every few seconds the sidecar's VmRSS, open fds and threads from /proc/PID, and admin /stats.
Config reloads through file-based xDS are not part of it: the sidecar has no file xDS yet (static config only).

Checks at the end (a table; exit 1 if any fails, with the reason):
  requests     no request of load, churn or tls failed (every failure is one that retries can cover: one backend
               is always up);
  rotations    every rotation's certificate was served within 5 s, and only the new one afterwards;
  chaos        every killed backend came back;
  rss          median VmRSS of the first window after warm-up vs the median of the last window: growth <= 5 %;
  fds          open fds after the clients left (once downstream_cx_active is back to idle) <= the median of the
               first window after warm-up + 4, and, besides the upstream connections still pooled, <= the idle
               count before the run + 4 (under load the count swings with connections in flight);
  threads      the thread count never changed after warm-up;
  cx_active    downstream_cx_active back to its idle level at the end;
  alive        the sidecar did not exit.
Windows: warm-up is 20 % of the run unless --warmup (the long form: 120 s of 600 s), each window 10 % of the run
(60 s of 600 s).

--fault makes the run fail on purpose, to show that the checks can: kill-both kills the two backends together at
every chaos step (retries cannot cover, so requests fail); hold-connections opens a connection to the sidecar
every 2 s and keeps it until the end (the fd count grows and downstream_cx_active stays above idle).
Every process is started here and stopped by its PID; if this one dies, the sidecar gets SIGKILL (PR_SET_PDEATHSIG)
and the agents exit (they watch their parent).
"""

import argparse
import ctypes
import hashlib
import json
import os
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from suite_common import admin_stats, free_ports, http_call, sockaddr, to_yaml, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
AGENTS = os.path.join(HERE, "soak_agents.py")
HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
DOWNSTREAM_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
SECRET = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
PREVIOUS_HOSTS = "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"

RSS_GROWTH_LIMIT = 0.05
FD_SLACK = 4
ROTATION_DEADLINE = 5.0  # seconds for new handshakes to present a rotated certificate
BACKEND_DOWN = 2.0  # seconds a killed backend stays down
PR_SET_PDEATHSIG = 1


class Interrupted(BaseException):
    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


def on_signal(signum, _frame):
    raise Interrupted(signum)


def log(msg):
    print("[soak] %s" % msg, file=sys.stderr, flush=True)


_prctl = ctypes.CDLL(None, use_errno=True).prctl
RUNNER_PID = os.getpid()


def die_with_parent():
    """preexec_fn for the sidecar (started by the main thread, which lives to the end): it is killed if this
    process dies, even by SIGKILL. PR_SET_PDEATHSIG follows the forking thread, so the agents, some started by the
    chaos thread, watch their parent themselves instead (soak_agents.py)."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != RUNNER_PID:  # the soak died before prctl: nobody is left to send the signal
        os._exit(1)


class Children:
    """Every process this run starts, by name; `stop_all` stops each by its PID."""

    def __init__(self, workdir):
        self.dir = workdir
        self.lock = threading.Lock()
        self.procs = {}

    def start(self, name, argv, stdout=None, pdeathsig=False):
        err = open(os.path.join(self.dir, "%s.stderr" % name), "ab")
        out = subprocess.PIPE if stdout == "pipe" else open(os.path.join(self.dir, "%s.stdout" % name), "ab")
        p = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            preexec_fn=die_with_parent if pdeathsig else None,
            close_fds=True,
            env=dict(os.environ, SOAK_PARENT_PID=str(os.getpid())),
        )
        err.close()
        if out is not subprocess.PIPE:
            out.close()
        with self.lock:
            self.procs[name] = p
        return p

    def get(self, name):
        with self.lock:
            return self.procs.get(name)

    def kill(self, name, sig=signal.SIGKILL, wait=5.0):
        p = self.get(name)
        if p is None:
            return
        if p.poll() is None:
            try:
                os.kill(p.pid, sig)
            except ProcessLookupError:
                pass
        try:
            p.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            os.kill(p.pid, signal.SIGKILL)
            p.wait(timeout=5)
        if p.stdout is not None:
            p.stdout.close()

    def stop_all(self):
        with self.lock:
            names = list(self.procs)
        for name in names:
            # The sidecar drains on SIGTERM (up to --drain-time-s); the others have nothing to finish.
            self.kill(name, signal.SIGTERM if name == "sidecar" else signal.SIGKILL, wait=8.0)

    def stderr_tail(self, name, limit=1500):
        try:
            with open(os.path.join(self.dir, "%s.stderr" % name), "rb") as f:
                return f.read()[-limit:].decode(errors="replace")
        except OSError:
            return ""


# ---- certificates (openssl) -------------------------------------------------------------------------------------
class Pki:
    """A CA and server certificates from it, each with a new P-256 key and its own serial; made with openssl."""

    def __init__(self, workdir):
        self.dir = os.path.join(workdir, "pki")
        os.makedirs(self.dir)
        self.ca = os.path.join(self.dir, "ca.crt")
        self.ca_key = os.path.join(self.dir, "ca.key")
        self.generation = 0
        self._openssl(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", self.ca_key, "-out", self.ca, "-days", "2", "-subj", "/CN=pilotfish soak CA",
            "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip
        self.ext = os.path.join(self.dir, "server.ext")
        with open(self.ext, "w") as f:
            f.write(
                "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
                "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n"
            )

    def _openssl(self, *args):
        r = subprocess.run(["openssl", *args], stdin=subprocess.DEVNULL, capture_output=True)
        if r.returncode != 0:
            raise RuntimeError("openssl %s failed: %s" % (args[0], r.stderr.decode(errors="replace")[-400:]))
        return r.stdout.decode()

    def server(self):
        """A new server certificate: (cert PEM, key PEM, serial hex, SHA-256 of the DER)."""
        self.generation += 1
        base = os.path.join(self.dir, "server-%d" % self.generation)
        serial = "%016x" % ((os.getpid() << 40) ^ (int(time.time() * 1000) << 8) ^ self.generation)
        self._openssl(
            "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", base + ".key",
            "-out", base + ".csr", "-subj", "/CN=soak server %d" % self.generation,
        )  # fmt: skip
        self._openssl(
            "x509", "-req", "-in", base + ".csr", "-CA", self.ca, "-CAkey", self.ca_key, "-set_serial",
            "0x" + serial, "-days", "1", "-extfile", self.ext, "-out", base + ".crt",
        )  # fmt: skip
        with open(base + ".crt") as f:
            cert = f.read()
        with open(base + ".key") as f:
            key = f.read()
        fp = hashlib.sha256(ssl.PEM_cert_to_DER_cert(cert)).hexdigest()
        return cert, key, serial, fp


class SecretDir:
    """A directory laid out like a mounted Kubernetes secret (as scripts/lib/tls_kit.py's): `..data` links to the
    current `..<n>/`; `swap` renames a new link over `..data` atomically and removes the old data, as kubelet's
    AtomicWriter does."""

    def __init__(self, path, files):
        self.path = path
        self.generation = 0
        os.makedirs(path)
        self._write(files)
        os.symlink("..0", os.path.join(path, "..data"))
        for name in files:
            os.symlink(os.path.join("..data", name), os.path.join(path, name))

    def _write(self, files):
        d = os.path.join(self.path, "..%d" % self.generation)
        os.makedirs(d)
        for name, content in files.items():
            with open(os.path.join(d, name), "w") as f:
                f.write(content)

    def swap(self, files):
        old = "..%d" % self.generation
        self.generation += 1
        self._write(files)
        tmp = os.path.join(self.path, "..data_tmp")
        os.symlink("..%d" % self.generation, tmp)
        os.rename(tmp, os.path.join(self.path, "..data"))
        shutil.rmtree(os.path.join(self.path, old))
        return time.monotonic()


def secret_files(secret_dir, cert, key):
    secret = {
        "@type": SECRET,
        "name": "soak_server_cert",
        "tls_certificate": {
            "certificate_chain": {"filename": os.path.join(secret_dir, "tls.crt")},
            "private_key": {"filename": os.path.join(secret_dir, "tls.key")},
        },
    }
    return {"sds.yaml": json.dumps({"resources": [secret]}, indent=2) + "\n", "tls.crt": cert, "tls.key": key}


def served_fingerprint(port, ca):
    """SHA-256 of the certificate a new TLS handshake presents (verified against the CA), or None."""
    ctx = ssl.create_default_context(cafile=ca)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=3) as raw:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                return hashlib.sha256(s.getpeercert(binary_form=True)).hexdigest()
    except (OSError, ssl.SSLError):
        return None


# ---- the sidecar's config ---------------------------------------------------------------------------------------
def bootstrap(admin, plain_port, tls_port, backend_ports, secret_dir):
    route = {
        "match": {"prefix": "/"},
        "route": {
            "cluster": "svc",
            "timeout": "8s",
            "retry_policy": {
                "retry_on": "connect-failure,reset,5xx",
                "num_retries": 5,
                "retry_back_off": {"base_interval": "0.01s", "max_interval": "0.1s"},
                "retry_host_predicate": [
                    {"name": "envoy.retry_host_predicates.previous_hosts", "typed_config": {"@type": PREVIOUS_HOSTS}}
                ],
                "host_selection_retry_max_attempts": 5,
            },
        },
    }

    def hcm(prefix):
        return {
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": HCM,
                "stat_prefix": prefix,
                "codec_type": "HTTP1",
                "route_config": {
                    "name": "soak",
                    "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [route]}],
                },
                "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}],
            },
        }

    sds = {
        "name": "soak_server_cert",
        "sds_config": {
            "path_config_source": {
                "path": os.path.join(secret_dir, "sds.yaml"),
                "watched_directory": {"path": secret_dir},
            }
        },
    }
    tls = {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {"@type": DOWNSTREAM_TLS, "common_tls_context": {"tls_certificate_sds_secret_configs": [sds]}},
    }
    return {
        "node": {"id": "soak", "cluster": "soak"},
        "admin": {"address": sockaddr(admin)},
        "static_resources": {
            "listeners": [
                {"name": "plain", "address": sockaddr(plain_port), "filter_chains": [{"filters": [hcm("soak")]}]},
                {
                    "name": "tls",
                    "address": sockaddr(tls_port),
                    "filter_chains": [{"filters": [hcm("soak_tls")], "transport_socket": tls}],
                },
            ],
            "clusters": [
                {
                    "name": "svc",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "lb_policy": "ROUND_ROBIN",
                    # Envoy's default max_retries (3) is exceeded when a backend dies under 8+ connections.
                    "circuit_breakers": {"thresholds": [{"priority": "DEFAULT", "max_retries": 1000}]},
                    "load_assignment": {
                        "cluster_name": "svc",
                        "endpoints": [{"lb_endpoints": [{"endpoint": {"address": sockaddr(p)}} for p in backend_ports]}],
                    },
                }
            ],
        },
    }


# ---- /proc and admin samples ------------------------------------------------------------------------------------
STAT_KEYS = {
    "downstream_cx_active": ("http.soak.downstream_cx_active", "http.soak_tls.downstream_cx_active"),
    "downstream_cx_total": ("http.soak.downstream_cx_total", "http.soak_tls.downstream_cx_total"),
    "downstream_rq_total": ("http.soak.downstream_rq_total", "http.soak_tls.downstream_rq_total"),
    "upstream_cx_active": ("cluster.svc.upstream_cx_active",),
    "upstream_cx_total": ("cluster.svc.upstream_cx_total",),
    "upstream_cx_connect_fail": ("cluster.svc.upstream_cx_connect_fail",),
    "upstream_rq_retry": ("cluster.svc.upstream_rq_retry",),
    "upstream_rq_retry_success": ("cluster.svc.upstream_rq_retry_success",),
    "upstream_rq_retry_overflow": ("cluster.svc.upstream_rq_retry_overflow",),
    "upstream_rq_retry_limit_exceeded": ("cluster.svc.upstream_rq_retry_limit_exceeded",),
    "ssl_context_update_by_sds": (),  # filled from the listener's name, below
}


def proc_sample(pid):
    with open("/proc/%d/status" % pid) as f:
        rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
    return {"rss_kb": rss, "fds": len(os.listdir("/proc/%d/fd" % pid)), "threads": len(os.listdir("/proc/%d/task" % pid))}


def fd_kinds(pid):
    """Open fds by kind (`socket`, `anon_inode:[eventfd]`, a file's path...), to say what a growth is made of."""
    kinds = {}
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        kind = target.split(":[", 1)[0] if target.startswith(("socket:", "pipe:")) else target
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def kinds_delta(before, after):
    d = {k: after.get(k, 0) - before.get(k, 0) for k in set(before) | set(after)}
    return ", ".join("%s %+d" % (k, v) for k, v in sorted(d.items()) if v) or "none"


def stats_sample(admin, tls_port):
    raw = admin_stats(admin)
    out = {k: sum(raw.get(n, 0) for n in names) for k, names in STAT_KEYS.items()}
    out["ssl_context_update_by_sds"] = raw.get(
        "listener.127.0.0.1_%d.server_ssl_socket_factory.ssl_context_update_by_sds" % tls_port, 0
    )
    return out


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def mib(kb):
    return kb / 1024.0


# ---- the run ----------------------------------------------------------------------------------------------------
class Soak:
    def __init__(self, a, workdir):
        self.a = a
        self.dir = workdir
        self.children = Children(workdir)
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.samples = []  # (elapsed, proc sample, stats sample or None)
        self.clients = {}  # name -> latest JSON line
        self.kills = []  # (elapsed, backend, restarted ok, seconds to accept again)
        self.rotations = []  # dicts: elapsed, serial, fp, served_after (s or None), stayed (bool)
        self.held = []  # sockets of --fault hold-connections
        self.problems = []  # errors of the background threads, reported as failures
        self.t0 = None

    def elapsed(self):
        return time.monotonic() - self.t0

    # -- processes
    def start_backend(self, i):
        name = "backend-%d" % i
        p = self.children.start(name, [sys.executable, AGENTS, "backend", "b%d" % i, str(self.backend_ports[i])])
        ok = wait_for(lambda: self._accepts(self.backend_ports[i]) or p.poll() is not None, 5.0, 0.02)
        return bool(ok) and p.poll() is None

    @staticmethod
    def _accepts(port):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def start_sidecar(self, config):
        # --drain-time-s 1: stopped with SIGTERM at the end, it has nothing left to drain; interrupted, it is quick.
        argv = [self.a.bin, "-c", config, "--concurrency", "2", "--log-level", "warn", "--drain-time-s", "1"]
        p = self.children.start("sidecar", argv, pdeathsig=True)
        self.sidecar = p

        def up():
            if p.poll() is not None:
                raise RuntimeError(
                    "sidecar exited with status %s: %s" % (p.returncode, self.children.stderr_tail("sidecar", 600))
                )
            try:
                status, _ = http_call(self.admin, "GET", "/ready", timeout=1)
            except OSError:
                return False
            return status == 200 and self._accepts(self.plain_port) and self._accepts(self.tls_port)

        if not wait_for(up, 20.0, 0.1):
            raise RuntimeError("sidecar not ready within 20 s: %s" % self.children.stderr_tail("sidecar", 600))

    def start_client(self, name, argv):
        p = self.children.start(name, [sys.executable, AGENTS] + argv, stdout="pipe")

        def read():
            for line in p.stdout:
                try:
                    doc = json.loads(line)
                except ValueError:
                    continue
                with self.lock:
                    self.clients[name] = doc

        threading.Thread(target=read, name="read-" + name, daemon=True).start()
        return p

    # -- background activities
    def sampler(self):
        while not self.stop.is_set():
            self.take_sample()
            self.stop.wait(self.a.sample_every)

    def take_sample(self):
        try:
            ps = proc_sample(self.sidecar.pid)
        except (OSError, StopIteration):
            return None
        try:
            st = stats_sample(self.admin, self.tls_port)
        except Exception:  # a slow admin answer under load is a gap in the stats, not a failure
            st = None
        s = (self.elapsed(), ps, st)
        with self.lock:
            self.samples.append(s)
        return s

    def chaos(self):
        i = 0
        self.stop.wait(min(5.0, self.a.kill_every))
        while not self.stop.is_set():
            victims = [0, 1] if self.a.fault == "kill-both" else [i % 2]
            t = self.elapsed()
            for v in victims:
                self.children.kill("backend-%d" % v)
            time.sleep(BACKEND_DOWN)
            for v in victims:
                t1 = time.monotonic()
                ok = self.start_backend(v)
                if not ok:  # e.g. the port is briefly not bindable: try once more, then report
                    time.sleep(0.5)
                    ok = self.start_backend(v)
                with self.lock:
                    self.kills.append((t, "b%d" % v, ok, time.monotonic() - t1))
                if not ok:
                    self.problems.append("backend b%d did not come back on port %d" % (v, self.backend_ports[v]))
            i += 1
            self.stop.wait(max(0.0, self.a.kill_every - BACKEND_DOWN))

    def rotator(self):
        while not self.stop.wait(self.a.rotate_every):
            cert, key, serial, fp = self.pki.server()
            swapped = self.secrets.swap(secret_files(self.secret_dir, cert, key))
            rec = {"elapsed": self.elapsed(), "serial": serial, "fp": fp, "served_after": None, "stayed": False}
            seen = wait_for(lambda: served_fingerprint(self.tls_port, self.pki.ca) == fp, ROTATION_DEADLINE, 0.05)
            if seen:
                rec["served_after"] = time.monotonic() - swapped
                # Once served, every new handshake must present it (no flapping back to the old certificate).
                rec["stayed"] = all(served_fingerprint(self.tls_port, self.pki.ca) == fp for _ in range(3))
            with self.lock:
                self.rotations.append(rec)

    def holder(self):
        while not self.stop.wait(2.0):
            try:
                self.held.append(socket.create_connection(("127.0.0.1", self.plain_port), timeout=2))
            except OSError:
                pass

    # -- progress
    def client_counts(self):
        with self.lock:
            c = dict(self.clients)
        ok = sum(v.get("ok", 0) for v in c.values())
        fail = sum(v.get("fail", 0) for v in c.values())
        return ok, fail, c

    def progress(self, last):
        ok, fail, c = self.client_counts()
        with self.lock:
            s = self.samples[-1] if self.samples else None
            kills, rots = len(self.kills), len(self.rotations)
        now = self.elapsed()
        rps = (ok + fail - last[1]) / max(0.001, now - last[0])
        load = c.get("load", {})
        line = "%4.0fs/%ds  %5.0f rps  failures %d (load %d, churn %d, tls %d)" % (
            now, self.a.seconds, rps, fail, load.get("fail", 0), c.get("churn", {}).get("fail", 0),
            c.get("tls", {}).get("fail", 0),
        )  # fmt: skip
        if s:
            line += "  RSS %.1f MiB  fds %d  threads %d" % (mib(s[1]["rss_kb"]), s[1]["fds"], s[1]["threads"])
            if s[2]:
                line += "  cx_active %d  retries %d" % (s[2]["downstream_cx_active"], s[2]["upstream_rq_retry"])
        line += "  kills %d  rotations %d" % (kills, rots)
        log(line)
        return now, ok + fail

    # -- main
    def run(self):
        a = self.a
        self.plain_port, self.tls_port, self.admin, b0, b1 = free_ports(5)
        self.backend_ports = [b0, b1]
        self.pki = Pki(self.dir)
        cert, key, serial, fp = self.pki.server()
        self.secret_dir = os.path.join(self.dir, "secret")
        self.secrets = SecretDir(self.secret_dir, secret_files(self.secret_dir, cert, key))
        for i in (0, 1):
            if not self.start_backend(i):
                raise RuntimeError("backend b%d did not start: %s" % (i, self.children.stderr_tail("backend-%d" % i)))
        config = os.path.join(self.dir, "sidecar.yaml")
        with open(config, "w") as f:
            f.write(to_yaml(bootstrap(self.admin, self.plain_port, self.tls_port, self.backend_ports, self.secret_dir)))
            f.write("\n")
        self.start_sidecar(config)
        first = served_fingerprint(self.tls_port, self.pki.ca)
        if first != fp:
            raise RuntimeError("the TLS listener does not serve the SDS certificate (got %s)" % first)
        log(
            "sidecar PID %d: plain :%d, TLS :%d (SDS %s, serial 0x%s), admin :%d, backends :%d :%d"
            % (self.sidecar.pid, self.plain_port, self.tls_port, self.secret_dir, serial, self.admin, b0, b1)
        )
        self.t0 = time.monotonic()
        idle = self.take_sample()
        if idle is None or idle[2] is None:
            raise RuntimeError("no idle sample of the sidecar (/proc or admin /stats)")
        self.idle = idle
        self.idle_fd_kinds = fd_kinds(self.sidecar.pid)
        log(
            "idle: RSS %.1f MiB, fds %d, threads %d, downstream_cx_active %d"
            % (mib(idle[1]["rss_kb"]), idle[1]["fds"], idle[1]["threads"], idle[2]["downstream_cx_active"])
        )
        self.t0 = time.monotonic()
        secs = str(a.seconds)
        self.start_client("load", ["load", str(self.plain_port), "--rps", str(a.rps), "--connections", "8",
                                   "--seconds", secs, "--max-requests", str(int(a.rps * a.seconds * 1.1) + 100)])
        self.start_client("churn", ["churn", str(self.plain_port), "--rate", str(a.churn_rate), "--seconds", secs,
                                    "--max-requests", str(int(a.churn_rate * a.seconds * 1.1) + 100)])
        self.start_client("tls", ["tls", str(self.tls_port), "--ca", self.pki.ca, "--rps", "20", "--fresh-rate", "4",
                                  "--seconds", secs, "--max-requests", str(int(24 * a.seconds * 1.1) + 100)])  # fmt: skip
        threads = [threading.Thread(target=f, name=f.__name__, daemon=True) for f in (self.sampler, self.chaos, self.rotator)]
        if a.fault == "hold-connections":
            threads.append(threading.Thread(target=self.holder, name="holder", daemon=True))
        for t in threads:
            t.start()
        last = (0.0, 0)
        next_progress = 10.0
        while self.elapsed() < a.seconds:
            time.sleep(0.25)
            if self.sidecar.poll() is not None:
                self.problems.append("the sidecar exited with status %s" % self.sidecar.returncode)
                break
            if self.elapsed() >= next_progress:
                next_progress += 10.0
                last = self.progress(last)
        self.stop.set()
        for t in threads:
            t.join(timeout=ROTATION_DEADLINE + BACKEND_DOWN + 15)
        if self.elapsed() - last[0] >= 3.0:
            self.progress(last)
        for name in ("load", "churn", "tls"):
            p = self.children.get(name)
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.problems.append("client %s did not stop within 20 s of its end" % name)
                self.children.kill(name, signal.SIGTERM)
        time.sleep(0.5)  # the readers' last lines
        # Quiesce: the clients are gone; wait for the sidecar to see every downstream connection closed.
        target = self.idle[2]["downstream_cx_active"]

        def quiet():
            try:
                return stats_sample(self.admin, self.tls_port)["downstream_cx_active"] <= target
            except Exception:
                return False

        self.quiesced = wait_for(quiet, 15.0, 0.2) is not None
        self.final = self.take_sample()
        self.final_fd_kinds = fd_kinds(self.sidecar.pid) if self.final else {}

    # -- verdict
    def evaluate(self):
        a = self.a
        rows = []

        def row(name, ok, detail):
            rows.append((name, "PASS" if ok else "FAIL", detail))

        _, _, c = self.client_counts()
        for name in ("load", "churn", "tls"):
            d = c.get(name, {})
            detail = "%d requests, %d failed" % (d.get("ok", 0) + d.get("fail", 0), d.get("fail", 0))
            if name == "load":
                detail += ", %d connections" % d.get("connects", 0)
            if name == "churn":
                detail += " (%d connections, %d ticks skipped at 32 open)" % (d.get("connects", 0), d.get("skipped", 0))
            if name == "tls":
                detail += " (keep-alive connects %d, %d certificates seen by new handshakes)" % (
                    d.get("keepalive_connects", 0), len(d.get("fingerprints", {})))  # fmt: skip
            if d.get("fail"):
                t_first, first = d["first_failures"][0]
                detail += "; by reason: %s; first at %.1f s: %s" % (
                    json.dumps(d.get("reasons", {})), t_first - self.t0, first)  # fmt: skip
            ok = bool(d.get("done")) and d.get("fail", 1) == 0 and d.get("ok", 0) > 0
            if not d.get("done"):
                detail += "; the client did not finish"
            row("requests: " + name, ok, detail)

        rots = self.rotations
        late = [r for r in rots if r["served_after"] is None or not r["stayed"]]
        served = [r["served_after"] for r in rots if r["served_after"] is not None]
        detail = "%d rotations, %d served within %.0f s (slowest %.2f s)" % (
            len(rots), len(served), ROTATION_DEADLINE, max(served) if served else float("nan"))  # fmt: skip
        if rots:
            detail += "; serials 0x%s .. 0x%s" % (rots[0]["serial"], rots[-1]["serial"])
        if late:
            detail += "; not served or not kept: serials %s" % ", ".join("0x" + r["serial"] for r in late[:5])
        row("certificate rotation (SDS)", bool(rots) and not late, detail)

        down = [k for k in self.kills if not k[2]]
        slow = max((k[3] for k in self.kills), default=0.0)
        row("backend kills", bool(self.kills) and not down,
            "%d SIGKILLs, %d restarts on the same port failed (slowest restart %.2f s)"
            % (len(self.kills), len(down), slow))  # fmt: skip

        warm = a.warmup
        win = a.window
        end = self.run_end
        after = [s for s in self.samples if s[0] >= warm and s[0] <= end]
        first_w = [s for s in after if s[0] < warm + win]
        last_w = [s for s in after if s[0] >= end - win]
        rss_first = median([s[1]["rss_kb"] for s in first_w])
        rss_last = median([s[1]["rss_kb"] for s in last_w])
        growth = (rss_last - rss_first) / rss_first if first_w and last_w else float("nan")
        peak = max((s[1]["rss_kb"] for s in self.samples), default=0)
        row("RSS flat after warm-up", first_w != [] and last_w != [] and growth <= RSS_GROWTH_LIMIT,
            "median %.2f MiB in [%.0f s, %.0f s) -> %.2f MiB in [%.0f s, %.0f s]: %+.2f %% (limit +%.0f %%); idle "
            "%.2f MiB, peak %.2f MiB, %d samples"
            % (mib(rss_first), warm, warm + win, mib(rss_last), end - win, end, growth * 100, RSS_GROWTH_LIMIT * 100,
               mib(self.idle[1]["rss_kb"]), mib(peak), len(self.samples)))  # fmt: skip

        fd_first = median([s[1]["fds"] for s in first_w])
        fd_last = median([s[1]["fds"] for s in last_w])
        fd_end = self.final[1]["fds"] if self.final else -1
        up_end = self.final[2]["upstream_cx_active"] if self.final and self.final[2] else -1
        fd_idle, up_idle = self.idle[1]["fds"], self.idle[2]["upstream_cx_active"]
        # Under load the count swings with connections in flight (churn, reconnects after kills); at the end,
        # with no client left, every fd beyond the idle ones must be an upstream connection still pooled.
        ok = self.final is not None and fd_end <= fd_first + FD_SLACK and fd_end - up_end <= fd_idle - up_idle + FD_SLACK
        row("open fds back to warm-up level", ok,
            "idle %d; median in the first window after warm-up %.0f, in the last %.0f; at the end %d (<= %.0f + %d), "
            "%d of them pooled upstream connections, so %d besides them (idle %d, <= +%d); end vs idle by kind: %s"
            % (fd_idle, fd_first, fd_last, fd_end, fd_first, FD_SLACK, up_end, fd_end - up_end, fd_idle - up_idle,
               FD_SLACK, kinds_delta(self.idle_fd_kinds, self.final_fd_kinds)))  # fmt: skip

        th = [s[1]["threads"] for s in after] + ([self.final[1]["threads"]] if self.final else [])
        row("threads constant", bool(th) and min(th) == max(th),
            "idle %d; after warm-up min %d, max %d; at the end %d"
            % (self.idle[1]["threads"], min(th or [0]), max(th or [0]), self.final[1]["threads"] if self.final else -1))

        cx_end = self.final[2]["downstream_cx_active"] if self.final and self.final[2] else -1
        cx_idle = self.idle[2]["downstream_cx_active"]
        row("downstream_cx_active back to idle", cx_end == cx_idle,
            "idle %d, at the end %d (waited %s)" % (cx_idle, cx_end, "until idle" if self.quiesced else "15 s"))

        alive = self.sidecar.poll() is None
        row("sidecar alive, no errors", alive and not self.problems,
            "; ".join(self.problems) or "PID %d still running" % self.sidecar.pid)
        return rows

    def trend(self):
        """Medians of RSS, fds and threads per tenth of the run: the shape behind the two windows compared."""
        tenth = self.a.seconds / 10.0
        parts = {"RSS MiB": [], "fds": [], "threads": []}
        for i in range(10):
            xs = [s[1] for s in self.samples if i * tenth <= s[0] < (i + 1) * tenth]
            parts["RSS MiB"].append("%.1f" % mib(median([x["rss_kb"] for x in xs])) if xs else "-")
            parts["fds"].append("%.0f" % median([x["fds"] for x in xs]) if xs else "-")
            parts["threads"].append("%.0f" % median([x["threads"] for x in xs]) if xs else "-")
        return "\n".join("%s by tenth of the run: %s" % (k, " ".join(v)) for k, v in parts.items())

    def stats_summary(self):
        s = self.final[2] if self.final and self.final[2] else {}
        keys = ("downstream_cx_total", "downstream_rq_total", "upstream_cx_total", "upstream_cx_connect_fail",
                "upstream_rq_retry", "upstream_rq_retry_success", "upstream_rq_retry_overflow",
                "upstream_rq_retry_limit_exceeded", "ssl_context_update_by_sds")  # fmt: skip
        return ", ".join("%s %d" % (k, s.get(k, 0)) for k in keys)


def print_table(rows, title):
    w0 = max(len(r[0]) for r in rows)
    print(title)
    print("| %-*s | result | detail |" % (w0, "check"))
    print("|%s|--------|--------|" % ("-" * (w0 + 2)))
    for name, result, detail in rows:
        print("| %-*s | %-6s | %s |" % (w0, name, result, detail))
    sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser(description="soak test of the sidecar (see the module docstring)")
    ap.add_argument("--bin", required=True)
    ap.add_argument("--seconds", type=int, required=True)
    ap.add_argument("--warmup", type=float, default=None, help="default: 20 %% of --seconds")
    ap.add_argument("--fault", choices=("kill-both", "hold-connections"), default=None)
    a = ap.parse_args()
    a.warmup = a.warmup if a.warmup is not None else round(a.seconds * 0.2)
    a.window = max(5.0, a.seconds * 0.1)
    a.rps = float(os.environ.get("SOAK_RPS", "400"))
    a.churn_rate = float(os.environ.get("SOAK_CHURN_RATE", "40"))
    a.kill_every = float(os.environ.get("SOAK_KILL_EVERY", "10" if a.seconds >= 300 else "6"))
    a.rotate_every = float(os.environ.get("SOAK_ROTATE_EVERY", "20" if a.seconds >= 300 else "8"))
    a.sample_every = max(1.0, a.seconds / 200.0)
    if a.warmup + 2 * a.window > a.seconds:
        print("soak: --seconds %d is too short for a %.0f s warm-up and two %.0f s windows"
              % (a.seconds, a.warmup, a.window), file=sys.stderr)  # fmt: skip
        return 2
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)  # unwinds through the finally below, which stops every process

    workdir = tempfile.mkdtemp(prefix="soak-%d-" % os.getpid())
    soak = Soak(a, workdir)
    log(
        "%d s: warm-up %.0f s, windows %.0f s, samples every %.0f s; load %.0f rps on 8 connections, churn %.0f "
        "connections/s, TLS 20 rps + 4 handshakes/s; a backend killed every %.0f s, certificate rotated every %.0f s%s"
        % (a.seconds, a.warmup, a.window, a.sample_every, a.rps, a.churn_rate, a.kill_every, a.rotate_every,
           "; FAULT " + a.fault if a.fault else "")
    )  # fmt: skip
    rows = None
    status = 1
    try:
        soak.run()
        soak.run_end = a.seconds
        rows = soak.evaluate()
    except Interrupted as e:
        log("interrupted by signal %d: stopping every process by PID" % e.signum)
        status = 128 + e.signum
    except Exception as e:
        log("error: %s: %s" % (type(e).__name__, e))
    finally:
        soak.stop.set()
        for s in soak.held:
            s.close()
        tail = soak.children.stderr_tail("sidecar", 1500)
        soak.children.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    if rows is None:
        if tail.strip():
            log("sidecar stderr (tail): %s" % tail)
        return status
    print_table(rows, "soak %s, %d s, sidecar %s" % (time.strftime("%Y-%m-%d %H:%M"), a.seconds, a.bin))
    print(soak.trend())
    print("stats at the end: %s" % soak.stats_summary())
    failed = [r for r in rows if r[1] == "FAIL"]
    if failed:
        for name, _, detail in failed:
            log("FAIL %s: %s" % (name, detail))
        if tail.strip():
            log("sidecar stderr (tail): %s" % tail)
        log("soak: %d of %d checks failed" % (len(failed), len(rows)))
        return 1
    log("soak: all %d checks passed" % len(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
