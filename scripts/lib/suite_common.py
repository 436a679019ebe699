"""What the end-to-end suites (resilience_suite.py, tls_suite.py) share: failures, free ports, polling, block
YAML, processes stopped by PID, the proxy under test started on a bootstrap and polled until ready, admin /stats,
and the runner that prints one PASS/FAIL line per scenario and the `label: N passed, N failed, 0 skipped` summary.

Every scenario gets a context (`ScenarioContext`) with its own temporary directory; whatever it starts is
registered there and stopped by PID (processes) or by its own close function (servers, threads) when the scenario
ends, pass or fail. After the last scenario the runner fails the run if a child process or a temporary directory
of this run is still present. Only loopback addresses are used.
"""

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

START_TIMEOUT = 15  # seconds for a proxy to answer /ready and accept on its listeners


class Fail(Exception):
    pass


class Interrupted(BaseException):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def short(text, limit=400):
    text = " ".join(text.strip().split())
    return text if len(text) <= limit else text[:limit] + "..."


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def free_ports(n):
    """`n` distinct free loopback ports (all bound at once, then released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_for(pred, timeout, step=0.05):
    """Polls `pred` until it returns a truthy value (returned) or `timeout` seconds pass (None)."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            return None
        time.sleep(step)


# ---- YAML -------------------------------------------------------------------------------------------
PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


def scalar(v):
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(str(v))  # a JSON string is a valid YAML double-quoted scalar


def to_yaml(obj, indent=0):
    """Block-style YAML for dicts, lists and scalars (every string double-quoted)."""
    pad = " " * indent
    lines = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            key = k if PLAIN_KEY.match(k) else json.dumps(k)
            if isinstance(v, (dict, list)) and v:
                lines.append("%s%s:" % (pad, key))
                lines.append(to_yaml(v, indent + 2))
            else:
                lines.append("%s%s: %s" % (pad, key, "{}" if v == {} else "[]" if v == [] else scalar(v)))
    elif isinstance(obj, list):
        for v in obj:
            if isinstance(v, (dict, list)) and v:
                inner = to_yaml(v, indent + 2)
                lines.append(pad + "- " + inner[indent + 2 :])
            else:
                lines.append("%s- %s" % (pad, "{}" if v == {} else "[]" if v == [] else scalar(v)))
    else:
        lines.append(pad + scalar(obj))
    return "\n".join(lines)


def sockaddr(port):
    return {"socket_address": {"address": "127.0.0.1", "port_value": port}}


# ---- processes ----------------------------------------------------------------------------------------
class Proc:
    """A process started by a scenario; output goes to files in the scenario's directory; stopped by PID."""

    def __init__(self, argv, name, workdir, stdout_pipe=False):
        self.name = name
        self.err_path = os.path.join(workdir, "%s.stderr" % name)
        self.out_path = os.path.join(workdir, "%s.stdout" % name)
        self.err_file = open(self.err_path, "wb")
        self.out_file = None if stdout_pipe else open(self.out_path, "wb")
        self.popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout_pipe else self.out_file,
            stderr=self.err_file,
            start_new_session=True,
        )
        self.pid = self.popen.pid

    def alive(self):
        return self.popen.poll() is None

    def stderr_text(self):
        try:
            with open(self.err_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def stderr_tail(self, limit=600):
        return short(self.stderr_text()[-4000:], limit)

    def stop(self, sig=signal.SIGKILL):
        if self.popen.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        if self.popen.stdout is not None:
            self.popen.stdout.close()
        for f in (self.err_file, self.out_file):
            if f is not None:
                f.close()


class TcpServer:
    """A TCP server on a free 127.0.0.1 port for a suite's backends: each connection is served by `serve(conn)`
    (the subclass's) on a thread of its own; `close()` stops accepting."""

    def __init__(self, name):
        self.lock = threading.Lock()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.open = True
        threading.Thread(target=self._accept, name=name, daemon=True).start()

    def _accept(self):
        while self.open:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn):
        raise NotImplementedError

    def close(self):
        self.open = False
        self.sock.close()


def http_call(port, method, path, timeout=3.0, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.read().decode(errors="replace")
    finally:
        conn.close()


class Suite:
    """The proxy under test (`envoy` or `sidecar`) and its binary; subclasses add suite-wide resources, which
    `close()` releases after the last scenario."""

    def __init__(self, proxy, binary, verbose):
        self.proxy = proxy
        self.bin = binary
        self.verbose = verbose
        self.base_id = (os.getpid() % 40000) * 100  # Envoy --base-id: unique per run and per proxy start

    def proxy_argv(self, config_path):
        """Both proxies get the same bootstrap and one worker; Envoy also a fresh --base-id per start."""
        if self.proxy == "envoy":
            self.base_id += 1
            return [
                self.bin,
                "--disable-hot-restart",
                "--concurrency",
                "1",
                "-c",
                config_path,
                "--log-level",
                "warn",
                "--base-id",
                str(self.base_id),
            ]
        return [self.bin, "-c", config_path, "--concurrency", "1", "--log-level", "warn"]

    def close(self):
        pass


class ScenarioContext:
    """Per-scenario context: its processes, other resources and directory; `close()` stops and removes them."""

    def __init__(self, suite, name, tmp_prefix):
        self.suite = suite
        self.name = name
        self.dir = tempfile.mkdtemp(prefix="%s%s-" % (tmp_prefix, name))
        self.procs = []
        self.closers = []  # (description, function) for resources that are not processes, closed in reverse
        self.notes = []
        self.proxy_runs = 0

    def spawn(self, argv, name, stdout_pipe=False):
        p = Proc(argv, name, self.dir, stdout_pipe)
        self.procs.append(p)
        return p

    def on_close(self, what, fn):
        self.closers.append((what, fn))

    def note(self, text):
        self.notes.append(text)

    def write_config(self, doc):
        """Writes `doc` as block YAML into the scenario's directory; returns the path."""
        self.proxy_runs += 1
        path = os.path.join(self.dir, "proxy-%d.yaml" % self.proxy_runs)
        with open(path, "w") as f:
            f.write(to_yaml(doc) + "\n")
        return path

    def launch_proxy(self, doc, admin_port, listener_ports):
        """Starts the proxy under test on `doc` and waits until its admin /ready answers 200 and every port in
        `listener_ports` accepts a TCP connection (closed at once, before any byte is sent). Returns the Proc and
        the config path."""
        path = self.write_config(doc)
        suite = self.suite
        proc = self.spawn(suite.proxy_argv(path), "proxy-%d" % self.proxy_runs)

        def up():
            if not proc.alive():
                raise Fail(
                    "%s exited with status %s on %s: %s"
                    % (suite.proxy, proc.popen.returncode, os.path.basename(path), proc.stderr_tail())
                )
            try:
                status, _ = http_call(admin_port, "GET", "/ready", timeout=1)
                if status != 200:
                    return False
                for port in listener_ports:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return False

        if not wait_for(up, START_TIMEOUT, 0.05):
            raise Fail("%s not ready within %ds: %s" % (suite.proxy, START_TIMEOUT, proc.stderr_tail()))
        return proc, path

    def close(self):
        problems = []
        for what, fn in reversed(self.closers):
            try:
                fn()
            except Exception as e:  # one stuck resource must not keep the others alive
                problems.append("closing %s: %s: %s" % (what, type(e).__name__, e))
        for p in self.procs:
            p.stop()
            if p.popen.poll() is None:
                problems.append("process %d (%s) did not exit" % (p.pid, p.name))
        shutil.rmtree(self.dir, ignore_errors=True)
        return problems


def admin_get(admin_port, path):
    status, body = http_call(admin_port, "GET", path, timeout=5)
    check(status == 200, "admin %s: %d %s" % (path, status, short(body)))
    return body


def admin_stats(admin_port):
    """Admin /stats as {name: value} for counters and gauges (histogram lines are skipped)."""
    out = {}
    for line in admin_get(admin_port, "/stats").splitlines():
        name, sep, value = line.rpartition(": ")
        if sep and value.strip().lstrip("-").isdigit():
            out[name] = int(value)
    return out


# ---- runner --------------------------------------------------------------------------------------------
def selects(pattern, name):
    if pattern == name:
        return True
    rx = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(rx, name) is not None


def leftovers(tmp_prefix):
    """Child processes of this run that are still alive, and temporary directories of this run."""
    left = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/status" % pid) as f:
                status = dict(l.split(":", 1) for l in f.read().splitlines() if ":" in l)
        except OSError:
            continue
        if status.get("PPid", "").strip() == str(os.getpid()) and status.get("State", "").strip()[:1] != "Z":
            left.append("process %s (%s)" % (pid, status.get("Name", "?").strip()))
    left += ["directory " + d for d in os.listdir(tempfile.gettempdir()) if d.startswith(tmp_prefix)]
    return left


def main(
    label,
    description,
    scenarios,
    tmp_tag,
    suite_class=Suite,
    context_class=ScenarioContext,
    scenario_limit=120,
    argv=None,
):
    """Parses `--proxy envoy|sidecar --bin PATH [NAME|--only NAME]... [--list] [-v]`, runs the selected
    scenarios (functions of a context returning a one-line observation or raising Fail) and prints the results.
    Names may use * and ? wildcards. Returns the exit status."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--proxy", choices=("envoy", "sidecar"), default="sidecar")
    ap.add_argument("--bin", required=True, help="the proxy binary")
    ap.add_argument("--only", action="append", default=[], help="scenario name or pattern with * and ?")
    ap.add_argument("names", nargs="*", help="scenario names or patterns (same as --only)")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true", help="print durations and observations")
    a = ap.parse_args(argv)

    wanted = a.only + a.names
    selected = scenarios
    if wanted:
        unknown = [o for o in wanted if not any(selects(o, s[0]) for s in scenarios)]
        if unknown:
            print("%s: no scenario matches %s (see --list)" % (label, unknown), file=sys.stderr)
            return 2
        selected = [s for s in scenarios if any(selects(o, s[0]) for o in wanted)]
    if a.list:
        for name, _ in selected:
            print(name)
        return 0
    binary = shutil.which(a.bin) or a.bin
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        print("%s: proxy binary not found or not executable: %s" % (label, a.bin), file=sys.stderr)
        return 1
    binary = os.path.abspath(binary)

    def on_signal(signum, frame):
        raise Interrupted()

    def on_alarm(signum, frame):
        raise Fail("scenario still running after %d s" % scenario_limit)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGALRM, on_alarm)

    tmp_prefix = "%s-%d-" % (tmp_tag, os.getpid())
    suite = suite_class(a.proxy, binary, a.verbose)
    suite.tmp_prefix = tmp_prefix
    passed = failed = 0
    start = time.monotonic()
    interrupted = False
    try:
        for name, fn in selected:
            t = context_class(suite, name, tmp_prefix)
            t0 = time.monotonic()
            status, reason = "PASS", ""
            try:
                signal.alarm(scenario_limit)
                reason = fn(t) or ""
            except Fail as e:
                status, reason = "FAIL", str(e)
            except Interrupted:
                status, reason, interrupted = "FAIL", "interrupted", True
            except Exception as e:  # a bug in the scenario itself still must not leak anything
                status, reason = "FAIL", "%s: %s" % (type(e).__name__, e)
            finally:
                signal.alarm(0)
                signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
                try:
                    problems = t.close()
                finally:
                    try:
                        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
                    except Interrupted:
                        interrupted = True
            if problems:
                status = "FAIL"
                reason = (reason + "; " if reason else "") + "cleanup: " + "; ".join(problems)
            took = " (%.1fs)" % (time.monotonic() - t0) if a.verbose else ""
            print("%s %s%s%s" % (status, name, ": " + reason if reason else "", took), flush=True)
            if a.verbose:
                for n in t.notes:
                    print("    note: %s" % n, flush=True)
            passed += status == "PASS"
            failed += status == "FAIL"
            if interrupted:
                break
    finally:
        suite.close()
    left = leftovers(tmp_prefix)
    if left:
        print("FAIL leftovers: still present after the scenarios: %s" % ", ".join(left), flush=True)
        failed += 1
    if a.verbose:
        print("%s: took %.1fs against %s" % (label, time.monotonic() - start, a.proxy))
    print("%s: %d passed, %d failed, 0 skipped" % (label, passed, failed), flush=True)
    return 1 if failed or interrupted else 0
