#!/usr/bin/env python3
"""Real-network-namespace tests for `sidecar-init` (Pilotfish's traffic-capture init tool).

Usage: python3 scripts/lib/netns_init_suite.py /path/to/sidecar-init [--only NAME] [--list] [-v]

Every test builds its own namespaces (`pfi-<pid>-<n>-<role>`), joined by a veth pair addressed from its
own 198.18.<k>.0/24 (client .1, pod .2; the pod's default route points at the client), applies the
capture rules inside the pod namespace with the real binary, and drives real TCP connections through
them with scripts/lib/capture_probe.py. No traffic leaves 198.18.0.0/15 or loopback; nothing outside
the test namespaces is touched. Each test removes what it created (processes by PID, namespaces by
name) in `finally`, so a failing test leaves nothing behind.

Output: one line per test (`PASS name`, `FAIL name: reason`, `SKIP name: reason`), then
`netns-init: N passed, N failed, N skipped`. Exit status 1 if any test failed. Without root the
whole suite is skipped with a banner (exit 0).

--only NAME selects tests by full name (`tproxy_inbound[nftables]`), base name (`tproxy_inbound`) or
a pattern with * and ? wildcards (`*[iptables*`, brackets literal); it may be repeated.
"""
import argparse
import difflib
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from suite_common import Fail, Interrupted, check, short

HERE = os.path.dirname(os.path.abspath(__file__))
PROBE = os.path.join(HERE, "capture_probe.py")
PY = sys.executable or "python3"

INBOUND = 15006
OUTBOUND = 15001
PROXY_UID = 1337
APP_UID = 1000
CMD_TIMEOUT = 30  # seconds, any single command (sidecar-init, nft, ip, iptables-*)
LISTEN_TIMEOUT = 3  # seconds a listener waits for its one connection

IPTABLES_SAVES = [
    "iptables-nft-save",
    "ip6tables-nft-save",
    "iptables-legacy-save",
    "ip6tables-legacy-save",
]


class Skip(Exception):
    pass


def clean_env(extra=None):
    """The caller's environment without any PILOTFISH_* variable (they would change the tool's defaults)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PILOTFISH_")}
    env.update(extra or {})
    return env


def normalise_counters(text):
    text = re.sub(r"counter packets \d+ bytes \d+", "counter", text)
    text = re.sub(r"\[\d+:\d+\]", "[0:0]", text)
    return "\n".join(l.rstrip() for l in text.splitlines() if l.strip() and not l.lstrip().startswith("#"))


IPTABLES_NFT_TABLE = re.compile(r"table (ip|ip6|arp|bridge) (filter|nat|mangle|raw|security) \{$")


def normalise_nft(text):
    """`nft list ruleset` without counters. In the tables iptables-nft manages, each rule becomes `<rule>`:
    nft's rendering of xtables expressions is not stable from one listing to the next, and those rules
    are compared through iptables-nft-save anyway; their tables and chains still count here."""
    out, in_xt, depth = [], False, 0
    for l in normalise_counters(text).splitlines():
        s = l.strip()
        if depth == 0:
            in_xt = bool(IPTABLES_NFT_TABLE.match(s))
        if s.endswith("{"):
            depth += 1
            out.append(l)
        elif s == "}":
            depth -= 1
            out.append(l)
        elif in_xt and depth == 2 and not s.startswith(("type ", "policy ")):
            out.append(l[: len(l) - len(l.lstrip())] + "<rule>")
        else:
            out.append(l)
    return "\n".join(out)


def nft_parse(text):
    """{'table ip nat': {'chain OUTPUT': [lines]}} from `nft list ruleset` text."""
    tables, table, chain = {}, None, None
    for l in text.splitlines():
        l = l.strip()
        if l.startswith("table "):
            table, chain = l.rstrip(" {"), None
            tables[table] = {}
        elif l.startswith(("chain ", "set ", "map ", "flowtable ")) and table:
            chain = l.rstrip(" {")
            tables[table][chain] = []
        elif l == "}":
            if chain:
                chain = None
            else:
                table = None
        elif table and chain and l:
            tables[table][chain].append(l)
    return tables


def nft_changes(a, b):
    """What differs between two `nft list ruleset` texts, table by table and chain by chain."""
    ta, tb = nft_parse(a), nft_parse(b)
    if ta == tb:
        return "same tables, chains and rules, listed in another order (tables or chains were re-created)"
    out = []
    for t in sorted(set(ta) | set(tb)):
        if t not in tb:
            out.append("%s removed" % t)
        elif t not in ta:
            out.append("%s added (%s)" % (t, ", ".join("%s%s" % (c, " [%d rules]" % len(r) if r[1:] else "") for c, r in tb[t].items())))
        else:
            for c in sorted(set(ta[t]) | set(tb[t])):
                if c not in tb[t]:
                    out.append("%s: %s removed" % (t, c))
                elif c not in ta[t]:
                    out.append("%s: %s added%s" % (t, c, " with %s" % tb[t][c][1:] if tb[t][c][1:] else " (empty)"))
                elif ta[t][c] != tb[t][c]:
                    out.append("%s: %s: %s" % (t, c, diff("\n".join(ta[t][c]), "\n".join(tb[t][c]), limit=6)))
    return "; ".join(out)


def diff(a, b, name_a="before", name_b="after", limit=12):
    lines = list(difflib.unified_diff(a.splitlines(), b.splitlines(), name_a, name_b, lineterm="", n=0))
    lines = [l for l in lines if not l.startswith(("---", "+++", "@@"))]
    more = " ... (%d more)" % (len(lines) - limit) if len(lines) > limit else ""
    return " | ".join(lines[:limit]) + more


class Proc:
    """A helper process started by a test; stopped by PID in the test's cleanup."""

    def __init__(self, argv, name):
        self.name = name
        self.popen = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
        )
        self.pid = self.popen.pid
        self.buf = b""
        self.err = b""

    def _pump(self, timeout):
        """Reads whatever is available within `timeout` seconds. Returns False at EOF."""
        fds = [f for f in (self.popen.stdout, self.popen.stderr) if f is not None and not f.closed]
        if not fds:
            return False
        ready, _, _ = select.select(fds, [], [], max(0.0, timeout))
        eof = False
        for f in ready:
            chunk = os.read(f.fileno(), 65536)
            if not chunk:
                if f is self.popen.stdout:
                    eof = True
                f.close()
            elif f is self.popen.stdout:
                self.buf += chunk
            else:
                self.err += chunk
        return not eof

    @property
    def lines(self):
        return self.buf.decode(errors="replace").splitlines()

    def wait_line(self, prefix, timeout):
        deadline = time.monotonic() + timeout
        while True:
            for l in self.lines:
                if l.startswith(prefix):
                    return l
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            if not self._pump(min(left, 0.2)) and self.popen.poll() is not None:
                # drain what remains, then give up
                for l in self.lines:
                    if l.startswith(prefix):
                        return l
                return None

    def finish(self, timeout):
        """Waits up to `timeout` for exit, collecting output; returns the exit status or None."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._pump(min(0.2, max(0.0, deadline - time.monotonic()))):
                break
        try:
            return self.popen.wait(timeout=max(0.05, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            return None

    def stop(self):
        if self.popen.poll() is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.popen.wait(timeout=3)
        except subprocess.TimeoutExpired:
            pass
        # collect anything still buffered
        for f in (self.popen.stdout, self.popen.stderr):
            if f is not None and not f.closed:
                try:
                    while True:
                        r, _, _ = select.select([f], [], [], 0)
                        if not r:
                            break
                        chunk = os.read(f.fileno(), 65536)
                        if not chunk:
                            break
                        if f is self.popen.stdout:
                            self.buf += chunk
                        else:
                            self.err += chunk
                except (OSError, ValueError):
                    pass
                f.close()


class Pair:
    def __init__(self, client, pod, k):
        self.client = client
        self.pod = pod
        self.k = k
        self.client_ip = "198.18.%d.1" % k
        self.pod_ip = "198.18.%d.2" % k
        self.subnet = "198.18.%d.0/24" % k
        # A second client address outside the /24 (still in 198.18.0.0/15), reached via the default route.
        self.client_ip2 = "198.19.%d.1" % k


class T:
    """Per-test context: namespaces, processes and helpers; `close()` removes everything it created."""

    def __init__(self, suite, index, name):
        self.suite = suite
        self.bin = suite.bin
        self.index = index
        self.name = name
        self.prefix = "pfi-%d-%d" % (os.getpid(), index)
        self.k = (index - 1) % 250 + 1  # this test's 198.18.<k>.0/24
        self.namespaces = []
        self.procs = []
        self.tmpdirs = []

    # ---- cleanup -------------------------------------------------------------------------------
    def close(self):
        problems = []
        for p in self.procs:
            p.stop()
            if p.popen.poll() is None:
                problems.append("process %d (%s) did not exit" % (p.pid, p.name))
        for ns in reversed(self.namespaces):
            r = subprocess.run(["ip", "netns", "del", ns], capture_output=True, text=True, timeout=CMD_TIMEOUT)
            if r.returncode != 0 and os.path.exists("/run/netns/" + ns):
                problems.append("ip netns del %s: %s" % (ns, short(r.stderr)))
        for d in self.tmpdirs:
            shutil.rmtree(d, ignore_errors=True)
        return problems

    # ---- namespaces ----------------------------------------------------------------------------
    def netns(self, role):
        name = "%s-%s" % (self.prefix, role)
        r = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, timeout=CMD_TIMEOUT)
        if r.returncode != 0:
            raise Fail("ip netns add %s: %s" % (name, short(r.stderr)))
        self.namespaces.append(name)
        self.sh(name, ["ip", "link", "set", "lo", "up"])
        return name

    def pair(self):
        client = self.netns("cli")
        pod = self.netns("pod")
        p = Pair(client, pod, self.k)
        self.sh(None, ["ip", "-n", client, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", pod])
        for ns, ip in ((client, p.client_ip), (pod, p.pod_ip)):
            # No IPv6 on the veth: no link-local addresses or routes appearing while a test runs.
            self.sh(ns, ["sysctl", "-qw", "net.ipv6.conf.eth0.disable_ipv6=1"])
            self.sh(ns, ["ip", "addr", "add", ip + "/24", "dev", "eth0"])
            self.sh(ns, ["ip", "link", "set", "eth0", "up"])
        self.sh(client, ["ip", "addr", "add", p.client_ip2 + "/32", "dev", "lo"])
        self.sh(pod, ["ip", "route", "add", "default", "via", p.client_ip])
        return p

    # ---- commands ------------------------------------------------------------------------------
    def run(self, ns, argv, env=None, input=None, timeout=CMD_TIMEOUT):
        full = (["ip", "netns", "exec", ns] if ns else []) + list(argv)
        try:
            return subprocess.run(
                full, input=input, capture_output=True, text=True, env=clean_env(env), timeout=timeout
            )
        except subprocess.TimeoutExpired:
            raise Fail("timed out after %ds: %s" % (timeout, " ".join(full)))

    def sh(self, ns, argv, input=None):
        r = self.run(ns, argv, input=input)
        if r.returncode != 0:
            raise Fail("%s failed (%d): %s" % (" ".join(argv), r.returncode, short(r.stderr or r.stdout)))
        return r.stdout

    def tool(self, ns, args, env=None):
        return self.run(ns, [self.bin] + list(args), env=env)

    def apply(self, ns, backend, *args, env=None):
        r = self.tool(ns, ["apply", "--backend", backend] + list(args), env=env)
        if r.returncode != 0:
            raise Fail(
                "sidecar-init apply --backend %s %s exited %d: %s"
                % (backend, " ".join(args), r.returncode, short(r.stderr))
            )
        return r

    # ---- probes --------------------------------------------------------------------------------
    def spawn(self, ns, args, name):
        p = Proc(["ip", "netns", "exec", ns, PY, PROBE] + list(args), name)
        self.procs.append(p)
        return p

    def listener(self, ns, mode, port, bind=None):
        args = [mode, str(port), "--timeout", str(LISTEN_TIMEOUT)]
        if bind:
            args += ["--bind", bind]
        p = self.spawn(ns, args, "%s %s:%s" % (mode, ns, port))
        if not p.wait_line("READY", 5):
            p.stop()
            raise Fail("listener %s %s in %s never became ready: %s" % (mode, port, ns, short(p.err.decode(errors="replace") + " ".join(p.lines))))
        return p

    def connect(self, ns, addr, port, uid=None, gid=None, bind=None):
        args = [PY, PROBE, "connect", addr, str(port), "--timeout", "3"]
        if uid is not None:
            args += ["--uid", str(uid)]
        if gid is not None:
            args += ["--gid", str(gid)]
        if bind:
            args += ["--bind", bind]
        r = self.run(ns, args, timeout=10)
        return (r.stdout.strip() or r.stderr.strip())

    def flow(self, client_ns, addr, port, catch, silent=(), uid=None, gid=None, bind=None, what=""):
        """Starts listeners, connects, and returns the parsed output of the listener that must get the
        connection. `catch` and each of `silent` are (ns, mode, port[, bind]); the silent ones must not
        see any connection."""
        what = what or "connection to %s:%d" % (addr, port)
        if uid is not None:
            what += " as uid %d" % uid
        started = []
        try:
            c = self.listener(*catch)
            started.append(c)
            quiet = []
            for s in silent:
                q = self.listener(*s)
                started.append(q)
                quiet.append((s, q))
            result = self.connect(client_ns, addr, port, uid=uid, gid=gid, bind=bind)
            if result.startswith("CONNECTED"):
                c.finish(LISTEN_TIMEOUT)
            time.sleep(0.05)
            seen = []
            for s, q in quiet:
                q.stop()
                hits = [l for l in q.lines if l.startswith(("ORIGDST", "ACCEPTED"))]
                if hits:
                    seen.append("the %s listener on :%s got %s" % (s[1], s[2], " ".join(hits)))
            c.stop()
            elsewhere = ("; instead " + "; ".join(seen)) if seen else ""
            check(result.startswith("CONNECTED"),
                  "%s: client got %r (expected it to reach the %s listener on :%s)%s" % (what, result, catch[1], catch[2], elsewhere))
            got = {}
            for l in c.lines:
                if " " in l:
                    key, val = l.split(" ", 1)
                    got[key] = val
            check("ORIGDST" in got or "ACCEPTED" in got,
                  "%s: connected, but the %s listener on :%s got nothing (%s)%s" % (what, catch[1], catch[2], " / ".join(c.lines), elsewhere))
            check(not seen, "%s: must reach only the %s listener on :%s, but %s" % (what, catch[1], catch[2], "; ".join(seen)))
            got["_client"] = result
            return got
        finally:
            for p in started:
                p.stop()

    # ---- state -------------------------------------------------------------------------------
    def snapshot(self, ns):
        """Everything sidecar-init may touch in `ns`, comment lines and counters stripped."""
        snap = {}
        snap["nft list ruleset"] = normalise_nft(self.sh(ns, ["nft", "list", "ruleset"]))
        for cmd in (["ip", "rule"], ["ip", "-6", "rule"], ["ip", "route", "show", "table", "all"],
                    ["ip", "-6", "route", "show", "table", "all"]):
            snap[" ".join(cmd)] = self.sh(ns, cmd).strip()
        for tool in IPTABLES_SAVES:
            if shutil.which(tool):
                snap[tool] = normalise_counters(self.sh(ns, [tool]))
        return snap

    def same(self, before, after, what):
        changed = [k for k in before if before[k] != after.get(k)]
        if changed:
            unchanged = [k for k in before if k not in changed]
            parts = []
            for k in changed:
                a, b = before[k], after.get(k, "")
                if k == "nft list ruleset":
                    parts.append("`%s` changed: %s" % (k, nft_changes(a, b)))
                    continue
                parts.append("`%s` changed: %s" % (k, diff(a, b)))
            details = "; ".join(parts)
            raise Fail("%s: %s (unchanged: %s)" % (what, details, ", ".join(unchanged)))

    def rule_count(self, ns, backend):
        if backend == "nftables":
            out = self.sh(ns, ["nft", "-a", "list", "table", "inet", "pilotfish"])
            return sum(1 for l in out.splitlines() if "counter" in l)
        n = 0
        for tool in IPTABLES_SAVES:
            if shutil.which(tool):
                n += sum(1 for l in self.sh(ns, [tool]).splitlines() if l.startswith("-A"))
        return n

    def ours(self, ns, backend):
        """Our live rules, as text: the inet pilotfish table, or every PILOTFISH line of every iptables-save."""
        if backend == "nftables":
            r = self.run(ns, ["nft", "list", "table", "inet", "pilotfish"])
            return normalise_counters(r.stdout) if r.returncode == 0 else ""
        out = []
        for tool in IPTABLES_SAVES:
            if shutil.which(tool):
                text = normalise_counters(self.sh(ns, [tool]))
                table = ""
                for l in text.splitlines():
                    if l.startswith("*"):
                        table = l
                    elif "PILOTFISH" in l:
                        out.append("%s %s %s" % (tool, table, l))
        return "\n".join(out)

    def table_routes(self, ns, fam, table):
        """Routes of one table ('' when the kernel has no such table)."""
        r = self.run(ns, ["ip", fam, "route", "show", "table", str(table)])
        if r.returncode != 0:
            if "does not exist" in r.stderr:
                return ""
            raise Fail("ip %s route show table %s: %s" % (fam, table, short(r.stderr)))
        return r.stdout.strip()

    def ip_rules(self, ns):
        return self.sh(ns, ["ip", "rule"]) + self.sh(ns, ["ip", "-6", "rule"])


# ---- the tests -----------------------------------------------------------------------------------

BACKENDS = ["nftables", "iptables"]
MODES = ["tproxy", "redirect"]


def inbound_listener_mode(mode):
    return "listen-transparent" if mode == "tproxy" else "listen-redirect"


def t_tproxy_inbound(t, backend, variant=None):
    p = t.pair()
    extra = ["--iptables-variant", variant] if variant else []
    t.apply(p.pod, backend, "--mode", "tproxy", *extra)
    if variant:
        own = "iptables-%s-save" % variant
        other = "iptables-%s-save" % ("nft" if variant == "legacy" else "legacy")
        check("PILOTFISH_" in t.sh(p.pod, [own]), "--iptables-variant %s: no PILOTFISH chains in %s" % (variant, own))
        check("PILOTFISH_" not in t.sh(p.pod, [other]), "--iptables-variant %s: PILOTFISH chains in %s" % (variant, other))
    got = t.flow(p.client, p.pod_ip, 8080, catch=(p.pod, "listen-transparent", INBOUND))
    check(got["ORIGDST"] == "%s:8080" % p.pod_ip, "TPROXY listener saw ORIGDST %s, expected %s:8080" % (got["ORIGDST"], p.pod_ip))
    check(got.get("PEER", "").split(":")[0] == p.client_ip,
          "TPROXY must keep the client's address: peer %s, expected %s" % (got.get("PEER"), p.client_ip))


def t_redirect_inbound(t, backend):
    p = t.pair()
    t.apply(p.pod, backend, "--mode", "redirect")
    got = t.flow(p.client, p.pod_ip, 8080, catch=(p.pod, "listen-redirect", INBOUND))
    check(got["ORIGDST"] == "%s:8080" % p.pod_ip, "REDIRECT listener saw ORIGDST %s, expected %s:8080" % (got["ORIGDST"], p.pod_ip))


def t_outbound_captured_for_app(t, backend, mode):
    p = t.pair()
    t.apply(p.pod, backend, "--mode", mode)
    got = t.flow(p.pod, p.client_ip, 9, uid=APP_UID, gid=APP_UID, catch=(p.pod, "listen-redirect", OUTBOUND))
    check(got["ORIGDST"] == "%s:9" % p.client_ip, "outbound listener saw ORIGDST %s, expected %s:9" % (got["ORIGDST"], p.client_ip))


def t_outbound_not_captured_for_proxy_uid(t, backend, mode):
    p = t.pair()
    t.apply(p.pod, backend, "--mode", mode)
    # control: the app's connection to the same server is captured, so the rules are live
    got = t.flow(p.pod, p.client_ip, 9095, uid=APP_UID, gid=APP_UID, catch=(p.pod, "listen-redirect", OUTBOUND),
                 silent=[(p.client, "listen", 9095, p.client_ip)])
    check(got["ORIGDST"] == "%s:9095" % p.client_ip, "app connection captured with ORIGDST %s" % got["ORIGDST"])
    for uid, gid, port in ((PROXY_UID, PROXY_UID, 9090), (APP_UID, PROXY_UID, 9093), (PROXY_UID, APP_UID, 9094)):
        got = t.flow(
            p.pod, p.client_ip, port, uid=uid, gid=gid,
            catch=(p.client, "listen", port, p.client_ip),
            silent=[(p.pod, "listen-redirect", OUTBOUND)],
            what="uid %d gid %d to %s:%d" % (uid, gid, p.client_ip, port))
        check(got["ACCEPTED"].startswith("LOCAL %s:%d PEER %s:" % (p.client_ip, port, p.pod_ip)),
              "uid %d gid %d: the server saw %r" % (uid, gid, got["ACCEPTED"]))


def t_exclusions(t, backend, mode):
    p = t.pair()
    t.apply(p.pod, backend, "--mode", mode, "--exclude-inbound-ports", "8081", "--exclude-outbound-ports", "9091",
            "--exclude-outbound-cidrs", p.subnet)
    capture = (p.pod, inbound_listener_mode(mode), INBOUND)
    # inbound: excluded port reaches the app itself; a neighbouring port is still captured
    got = t.flow(p.client, p.pod_ip, 8081, catch=(p.pod, "listen", 8081), silent=[capture], what="inbound to excluded port 8081")
    check(got["ACCEPTED"].startswith("LOCAL %s:8081 PEER %s:" % (p.pod_ip, p.client_ip)), "app on 8081 saw %r" % got["ACCEPTED"])
    got = t.flow(p.client, p.pod_ip, 8082, catch=capture, silent=[(p.pod, "listen", 8082)], what="inbound to 8082 (not excluded)")
    check(got["ORIGDST"] == "%s:8082" % p.pod_ip, "inbound 8082 captured with ORIGDST %s" % got["ORIGDST"])
    out = (p.pod, "listen-redirect", OUTBOUND)
    # outbound: excluded port (to an address outside the excluded CIDR)
    got = t.flow(p.pod, p.client_ip2, 9091, uid=APP_UID, gid=APP_UID, catch=(p.client, "listen", 9091, p.client_ip2),
                 silent=[out], what="outbound to excluded port 9091")
    check(got["ACCEPTED"].startswith("LOCAL %s:9091" % p.client_ip2), "server on 9091 saw %r" % got["ACCEPTED"])
    # outbound: excluded CIDR (port not excluded)
    got = t.flow(p.pod, p.client_ip, 9092, uid=APP_UID, gid=APP_UID, catch=(p.client, "listen", 9092, p.client_ip),
                 silent=[out], what="outbound to excluded CIDR %s" % p.subnet)
    check(got["ACCEPTED"].startswith("LOCAL %s:9092" % p.client_ip), "server on 9092 saw %r" % got["ACCEPTED"])
    # control: same port, address outside the excluded CIDR, is captured
    got = t.flow(p.pod, p.client_ip2, 9092, uid=APP_UID, gid=APP_UID, catch=out,
                 silent=[(p.client, "listen", 9092, p.client_ip2)], what="outbound to %s:9092 (not excluded)" % p.client_ip2)
    check(got["ORIGDST"] == "%s:9092" % p.client_ip2, "outbound 9092 captured with ORIGDST %s" % got["ORIGDST"])


def t_validate(t, backend, mode):
    p = t.pair()
    bare = t.netns("bare")
    r = t.tool(bare, ["validate"])
    check(r.returncode != 0, "validate in a namespace without rules exited 0: %s" % short(r.stderr))
    check("not in effect" in r.stderr, "validate without rules: stderr lacks 'not in effect': %s" % short(r.stderr))
    t.apply(p.pod, backend, "--mode", mode)
    r = t.tool(p.pod, ["validate"])
    check(r.returncode == 0, "validate after apply exited %d: %s" % (r.returncode, short(r.stderr)))
    r = t.tool(p.pod, ["validate", "--outbound-probe", "%s:9" % p.client_ip])
    check(r.returncode == 0, "validate --outbound-probe %s:9 after apply exited %d: %s" % (p.client_ip, r.returncode, short(r.stderr)))
    r = t.tool(p.pod, ["cleanup"])
    check(r.returncode == 0, "cleanup exited %d: %s" % (r.returncode, short(r.stderr)))
    r = t.tool(p.pod, ["validate"])
    check(r.returncode != 0 and "not in effect" in r.stderr,
          "validate after cleanup: exit %d, stderr %s (expected non-zero, 'not in effect')" % (r.returncode, short(r.stderr)))


def t_reapply_idempotent(t, backend):
    ns = t.netns("pod")
    t.apply(ns, backend, "--mode", "tproxy")
    n1, rules1 = t.rule_count(ns, backend), t.ours(ns, backend)
    snap1 = t.snapshot(ns)
    t.apply(ns, backend, "--mode", "tproxy")
    n2, rules2 = t.rule_count(ns, backend), t.ours(ns, backend)
    check(n1 > 0, "no rules counted after apply")
    check(n1 == n2, "rule count changed on re-apply: %d then %d" % (n1, n2))
    check(rules1 == rules2, "rules changed on re-apply: %s" % diff(rules1, rules2))
    t.same(snap1, t.snapshot(ns), "re-apply")
    for cmd in (["ip", "rule"], ["ip", "-6", "rule"]):
        lines = [l for l in t.sh(ns, cmd).splitlines() if "fwmark 0x539 lookup 133" in l]
        check(len(lines) == 1, "`%s` has %d 'fwmark 0x539 lookup 133' lines after two applies" % (" ".join(cmd), len(lines)))
    # tproxy -> redirect: no policy routing, no mangle leftovers; identical to a fresh redirect install
    t.apply(ns, backend, "--mode", "redirect")
    rules = t.ip_rules(ns)
    check("fwmark" not in rules, "fwmark rule left after switching to redirect: %s" % short(rules))
    for fam in ("-4", "-6"):
        out = t.table_routes(ns, fam, 133)
        check(not out, "`ip %s route show table 133` not empty after switching to redirect: %s" % (fam, short(out)))
    live = t.ours(ns, backend)
    if backend == "nftables":
        check("tproxy" not in live and "output_mark" not in live and "type filter" not in live and "type route" not in live,
              "stale tproxy/mangle chains after switching to redirect: %s" % short(live))
    else:
        stale = [l for l in live.splitlines() if "*mangle" in l]
        check(not stale, "stale mangle chains after switching to redirect: %s" % short(" | ".join(stale)))
    fresh = t.netns("ref")
    t.apply(fresh, backend, "--mode", "redirect")
    ref = t.ours(fresh, backend)
    check(live == ref, "after tproxy->redirect the rules differ from a fresh redirect install: %s" % diff(ref, live, "fresh", "switched"))
    check(t.rule_count(ns, backend) == t.rule_count(fresh, backend), "rule count differs from a fresh redirect install")


def prepopulate_foreign(t, ns):
    t.sh(ns, ["nft", "-f", "-"], input=(
        "table inet othertool {\n"
        "  chain out {\n"
        "    type filter hook output priority 0; policy accept;\n"
        "    tcp dport 4444 counter accept comment \"othertool\"\n"
        "  }\n"
        "}\n"))
    t.sh(ns, ["iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "--dport", "5555", "-m", "comment",
              "--comment", "othertool", "-j", "RETURN"])
    t.sh(ns, ["ip", "rule", "add", "fwmark", "0x99", "lookup", "99", "pref", "1000"])
    t.sh(ns, ["ip", "route", "add", "local", "default", "dev", "lo", "table", "99"])
    t.sh(ns, ["ip", "-6", "rule", "add", "fwmark", "0x99", "lookup", "99", "pref", "1000"])


def t_cleanup_restores_exactly(t, backend, mode):
    p = t.pair()
    prepopulate_foreign(t, p.pod)
    before = t.snapshot(p.pod)
    t.apply(p.pod, backend, "--mode", mode)
    applied = t.snapshot(p.pod)
    check(applied != before, "apply changed nothing")
    r = t.tool(p.pod, ["cleanup"])
    check(r.returncode == 0, "cleanup exited %d: %s" % (r.returncode, short(r.stderr)))
    t.same(before, t.snapshot(p.pod), "cleanup after apply --backend %s --mode %s" % (backend, mode))
    r = t.tool(p.pod, ["cleanup"])
    check(r.returncode == 0, "second cleanup exited %d: %s" % (r.returncode, short(r.stderr)))
    t.same(before, t.snapshot(p.pod), "second cleanup")


def t_atomic_failure(t, backend):
    p = t.pair()
    t.apply(p.pod, backend, "--mode", "tproxy")
    before = t.snapshot(p.pod)
    args = ["apply", "--backend", backend, "--mode", "redirect", "--exclude-inbound-ports", "7777"]
    r = t.tool(p.pod, args, env={"PILOTFISH_INIT_FAULT": "mid-batch"})
    check(r.returncode != 0, "apply with PILOTFISH_INIT_FAULT=mid-batch exited 0: %s" % short(r.stderr))
    t.same(before, t.snapshot(p.pod), "failed apply (injected fault)")
    r = t.tool(p.pod, ["validate"])
    check(r.returncode == 0, "validate after the failed apply exited %d: %s" % (r.returncode, short(r.stderr)))
    # The same change without the fault goes through, so the fault was what stopped it.
    r = t.tool(p.pod, args)
    check(r.returncode == 0, "the same apply without the fault exited %d: %s" % (r.returncode, short(r.stderr)))
    check("7777" in t.ours(p.pod, backend), "apply without the fault did not install the 7777 exclusion")


def t_atomic_failure_fresh(t, backend):
    """A failed first apply leaves a pristine namespace as it was (routing undone, no tables or chains)."""
    ns = t.netns("pod")
    before = t.snapshot(ns)
    r = t.tool(ns, ["apply", "--backend", backend, "--mode", "tproxy"], env={"PILOTFISH_INIT_FAULT": "mid-batch"})
    check(r.returncode != 0, "apply with PILOTFISH_INIT_FAULT=mid-batch exited 0: %s" % short(r.stderr))
    t.same(before, t.snapshot(ns), "failed first apply (injected fault)")


def split_iptables_dry_run(text):
    """{'iptables': restore input, 'ip6tables': restore input} from iptables --dry-run output."""
    parts, current = {}, None
    for l in text.splitlines():
        m = re.match(r"# (ip6?tables)-restore", l)
        if m:
            current = m.group(1)
            parts[current] = ""
        elif l.startswith("#"):
            current = None if l.startswith("# Policy routing") else current
        elif current:
            parts[current] += l + "\n"
    return parts


def t_dry_run_changes_nothing(t, backend):
    ns = t.netns("pod")
    rich = ["--include-inbound-ports", "8080,8443", "--exclude-outbound-cidrs", "198.18.0.0/15,198.19.128.0/17",
            "--exclude-outbound-ports", "9091", "--exclude-interfaces", "eth9", "--capture-dns"]
    configs = [["--mode", "tproxy"], ["--mode", "redirect"], ["--mode", "tproxy"] + rich, ["--mode", "redirect"] + rich]
    before = t.snapshot(ns)
    outputs = []
    for cfg in configs:
        r = t.tool(ns, ["apply", "--backend", backend, "--dry-run"] + cfg)
        check(r.returncode == 0, "--dry-run %s exited %d: %s" % (" ".join(cfg), r.returncode, short(r.stderr)))
        if backend == "nftables":
            check("table inet pilotfish" in r.stdout, "nftables --dry-run output lacks 'table inet pilotfish'")
        else:
            check("*nat" in r.stdout and "PILOTFISH_OUTBOUND" in r.stdout, "iptables --dry-run output lacks '*nat' / PILOTFISH_OUTBOUND")
        outputs.append((cfg, r.stdout))
    t.same(before, t.snapshot(ns), "--dry-run")
    # dry-run next to live rules changes nothing either
    t.apply(ns, backend, "--mode", "tproxy")
    live = t.snapshot(ns)
    r = t.tool(ns, ["apply", "--backend", backend, "--dry-run", "--mode", "redirect"])
    check(r.returncode == 0, "--dry-run over live rules exited %d" % r.returncode)
    t.same(live, t.snapshot(ns), "--dry-run over live rules")
    # what --dry-run prints is exactly what apply installs
    for i, (cfg, text) in enumerate(outputs):
        loaded = t.netns("load%d" % i)
        applied = t.netns("appl%d" % i)
        if backend == "nftables":
            script = "".join(l + "\n" for l in text.splitlines() if not l.startswith("#"))
            r = t.run(loaded, ["nft", "-f", "-"], input=script)
            check(r.returncode == 0, "nft -f of the --dry-run output (%s) failed: %s" % (" ".join(cfg), short(r.stderr)))
            t.apply(applied, backend, *cfg)
            a = normalise_counters(t.sh(loaded, ["nft", "list", "ruleset"]))
            b = normalise_counters(t.sh(applied, ["nft", "list", "ruleset"]))
            check(a == b, "%s: `nft -f` of the dry-run output and apply differ: %s" % (" ".join(cfg), diff(a, b, "nft -f", "apply")))
        else:
            parts = split_iptables_dry_run(text)
            check(set(parts) == {"iptables", "ip6tables"}, "iptables --dry-run sections: %s" % sorted(parts))
            for cmd, body in parts.items():
                r = t.run(loaded, [cmd + "-nft-restore", "--noflush"], input=body)
                check(r.returncode == 0, "%s-restore of the --dry-run output (%s) failed: %s" % (cmd, " ".join(cfg), short(r.stderr)))
            t.apply(applied, backend, *cfg)
            for cmd in ("iptables-nft-save", "ip6tables-nft-save"):
                a = normalise_counters(t.sh(loaded, [cmd]))
                b = normalise_counters(t.sh(applied, [cmd]))
                check(a == b, "%s %s: restore of the dry-run output and apply differ: %s" % (cmd, " ".join(cfg), diff(a, b, "restore", "apply")))


def t_bad_input(t, backend):
    ns = t.netns("pod")
    before = t.snapshot(ns)
    cases = [
        (["--inbound-port", "70000"], ["--inbound-port", "70000"]),
        (["--exclude-outbound-cidrs", "10.1.2.3/8"], ["--exclude-outbound-cidrs", "10.1.2.3/8"]),
        (["--mode", "bogus"], ["--mode", "bogus"]),
        (["--inbound-port", "15001", "--outbound-port", "15001"], ["--inbound-port", "15001"]),
        (["--exclude-inbound-ports", "80,http"], ["--exclude-inbound-ports", "http"]),
    ]
    if backend == "nftables":
        cases.append((["--iptables-variant", "legacy"], ["--iptables-variant"]))
    else:
        cases.append((["--iptables-variant", "bogus"], ["--iptables-variant", "bogus"]))
    for args, words in cases:
        r = t.tool(ns, ["apply", "--backend", backend] + args)
        check(r.returncode == 64, "%s: exit %d, expected 64 (stderr: %s)" % (" ".join(args), r.returncode, short(r.stderr)))
        missing = [w for w in words if w not in r.stderr]
        check(not missing, "%s: stderr does not name %s: %s" % (" ".join(args), missing, short(r.stderr)))
    t.same(before, t.snapshot(ns), "rejected flags")
    check(not t.ours(ns, backend), "rules present after rejected flags")


def t_missing_cap_net_admin(t, backend):
    if not shutil.which("setpriv"):
        raise Skip("setpriv is not installed")
    ns = t.netns("pod")
    # A copy the unprivileged user can surely execute, whatever the permissions along the given path.
    d = tempfile.mkdtemp(prefix="pfi-%d-" % os.getpid())
    t.tmpdirs.append(d)
    os.chmod(d, 0o755)
    binary = os.path.join(d, "sidecar-init")
    shutil.copy2(t.bin, binary)
    os.chmod(binary, 0o755)
    before = t.snapshot(ns)
    drop = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all"]
    r = t.run(ns, drop + [binary, "apply", "--backend", backend, "--mode", "tproxy"])
    check(r.returncode not in (0, 126, 127), "apply without CAP_NET_ADMIN exited %d: %s" % (r.returncode, short(r.stderr)))
    check("CAP_NET_ADMIN" in r.stderr, "apply without CAP_NET_ADMIN: stderr does not mention CAP_NET_ADMIN: %s" % short(r.stderr))
    t.same(before, t.snapshot(ns), "apply without CAP_NET_ADMIN")
    # cleanup without the capability must not half-remove live rules
    t.apply(ns, backend, "--mode", "tproxy")
    live = t.snapshot(ns)
    r = t.run(ns, drop + [binary, "cleanup"])
    check(r.returncode != 0 and "CAP_NET_ADMIN" in r.stderr,
          "cleanup without CAP_NET_ADMIN: exit %d, stderr %s" % (r.returncode, short(r.stderr)))
    t.same(live, t.snapshot(ns), "cleanup without CAP_NET_ADMIN")


def t_env_vars(t, backend):
    ns = t.netns("pod")
    env = {"PILOTFISH_MODE": "redirect", "PILOTFISH_EXCLUDE_INBOUND_PORTS": "8081"}
    if backend != "nftables":
        env["PILOTFISH_BACKEND"] = backend
    r = t.tool(ns, [], env=env)
    check(r.returncode == 0, "apply from environment variables exited %d: %s" % (r.returncode, short(r.stderr)))
    live = t.ours(ns, backend)
    check(live, "no rules of ours after apply from environment variables (backend %s)" % backend)
    if backend == "nftables":
        check("redirect to :15006" in live, "PILOTFISH_MODE=redirect: no 'redirect to :15006' rule")
        check(re.search(r"tcp dport 8081 .*return", live), "PILOTFISH_EXCLUDE_INBOUND_PORTS=8081: no 8081 exclusion")
    else:
        check("REDIRECT --to-ports 15006" in live, "PILOTFISH_MODE=redirect: no REDIRECT to 15006")
        check(re.search(r"--dport 8081 .*-j RETURN", live), "PILOTFISH_EXCLUDE_INBOUND_PORTS=8081: no 8081 exclusion")
    check("tproxy" not in live.lower(), "PILOTFISH_MODE=redirect but TPROXY rules installed")
    check("fwmark" not in t.ip_rules(ns), "PILOTFISH_MODE=redirect but a fwmark ip rule was added")
    # a flag beats its variable
    r = t.tool(ns, ["apply", "--backend", backend, "--mode", "redirect"], env={"PILOTFISH_MODE": "bogus"})
    check(r.returncode == 0, "--mode redirect with PILOTFISH_MODE=bogus exited %d: %s" % (r.returncode, short(r.stderr)))
    # a bad variable is reported by name
    r = t.tool(ns, ["apply", "--backend", backend], env={"PILOTFISH_INBOUND_PORT": "70000"})
    check(r.returncode == 64 and "PILOTFISH_INBOUND_PORT" in r.stderr,
          "PILOTFISH_INBOUND_PORT=70000: exit %d, stderr %s (expected 64 naming the variable)" % (r.returncode, short(r.stderr)))


def t_short_aliases(t, backend):
    ns = t.netns("pod")
    t.apply(ns, backend, "-m", "redirect", "-z", "15106", "-p", "15101", "-d", "8081", "-o", "9091", "-x", "198.18.5.0/24")
    live = t.ours(ns, backend)
    for word in ("15106", "15101", "8081", "9091", "198.18.5.0/24"):
        check(word in live, "short aliases: %s missing from the live rules" % word)


def t_self_call(t, backend, mode):
    p = t.pair()
    t.apply(p.pod, backend, "--mode", mode)
    app = (p.pod, "listen", 8080)
    sidecar = (p.pod, "listen-redirect", INBOUND)
    got = t.flow(p.pod, p.pod_ip, 8080, uid=PROXY_UID, gid=PROXY_UID, catch=sidecar, silent=[app],
                 what="proxy uid calling its own pod %s:8080" % p.pod_ip)
    check(got["ORIGDST"] == "%s:8080" % p.pod_ip, "proxy self-call: ORIGDST %s, expected %s:8080" % (got["ORIGDST"], p.pod_ip))
    got = t.flow(p.pod, p.pod_ip, 8080, uid=APP_UID, gid=APP_UID, catch=app, silent=[sidecar],
                 what="app calling its own pod %s:8080" % p.pod_ip)
    check(got["ACCEPTED"].startswith("LOCAL %s:8080" % p.pod_ip), "app self-call reached %r" % got["ACCEPTED"])
    got = t.flow(p.pod, p.pod_ip, 8080, uid=PROXY_UID, gid=PROXY_UID, bind="127.0.0.6", catch=app, silent=[sidecar],
                 what="inbound passthrough from 127.0.0.6 to %s:8080" % p.pod_ip)
    check(got["ACCEPTED"].startswith("LOCAL %s:8080 PEER 127.0.0.6:" % p.pod_ip), "passthrough reached %r" % got["ACCEPTED"])


def t_loopback_app_sidecar(t, backend, mode):
    """App and sidecar talk over 127.0.0.1 in both directions without being captured."""
    p = t.pair()
    t.apply(p.pod, backend, "--mode", mode)
    outbound = (p.pod, "listen-redirect", OUTBOUND)
    inbound = (p.pod, "listen-redirect", INBOUND)
    admin = (p.pod, "listen", 15000)
    got = t.flow(p.pod, "127.0.0.1", 15000, uid=APP_UID, gid=APP_UID, catch=admin, silent=[outbound, inbound],
                 what="app to the sidecar's 127.0.0.1:15000")
    check(got["ACCEPTED"].startswith("LOCAL 127.0.0.1:15000"), "app -> sidecar reached %r" % got["ACCEPTED"])
    app = (p.pod, "listen", 8080)
    got = t.flow(p.pod, "127.0.0.1", 8080, uid=PROXY_UID, gid=PROXY_UID, catch=app, silent=[outbound, inbound],
                 what="sidecar to the app's 127.0.0.1:8080")
    check(got["ACCEPTED"].startswith("LOCAL 127.0.0.1:8080"), "sidecar -> app reached %r" % got["ACCEPTED"])


def t_fail_closed(t, backend, mode):
    """With nothing on the capture port, a captured connection fails instead of reaching the app."""
    p = t.pair()
    t.apply(p.pod, backend, "--mode", mode)
    app = t.listener(p.pod, "listen", 8080)
    try:
        result = t.connect(p.client, p.pod_ip, 8080)
        app.stop()
        reached = [l for l in app.lines if l.startswith("ACCEPTED")]
        check(not reached, "with no sidecar the connection bypassed capture and reached the app: %s" % reached)
        check(not result.startswith("CONNECTED"), "with no sidecar the client still connected: %r" % result)
        check(("ECONNREFUSED" in result) or ("ETIMEDOUT" in result), "unexpected client result %r" % result)
    finally:
        app.stop()


POD_TCP_SIDECAR = """\
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: 15000}}
static_resources:
  listeners:
  - name: virtual_inbound
    address: {socket_address: {address: 0.0.0.0, port_value: 15006}}
    transparent: %(transparent)s
    listener_filters:
    - name: envoy.filters.listener.original_dst
      typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: inbound
          cluster: inbound_passthrough
  - name: virtual_outbound
    address: {socket_address: {address: 0.0.0.0, port_value: 15001}}
    listener_filters:
    - name: envoy.filters.listener.original_dst
      typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: outbound
          cluster: outbound_passthrough
  clusters:
  - name: inbound_passthrough
    type: ORIGINAL_DST
    lb_policy: CLUSTER_PROVIDED
    connect_timeout: 1s
    upstream_bind_config: {source_address: {address: 127.0.0.6, port_value: 0}}
  - name: outbound_passthrough
    type: ORIGINAL_DST
    lb_policy: CLUSTER_PROVIDED
    connect_timeout: 1s
"""


def t_sidecar_tcp_passthrough(t, backend, mode):
    """The real sidecar, as UID 1337, behind the real capture rules: raw TCP in and out of the pod goes
    through it byte-exact (tcp_proxy to ORIGINAL_DST), and with the sidecar stopped capture fails closed."""
    sidecar = t.suite.sidecar
    if not sidecar:
        raise Skip("no sidecar binary given (--sidecar PATH)")
    p = t.pair()
    t.apply(p.pod, backend, "--mode", mode)
    cfg = write_config(t, "sidecar.yaml", POD_TCP_SIDECAR % {"transparent": "true" if mode == "tproxy" else "false"})
    app = t.spawn(p.pod, ["echo", "9000", "--timeout", "8"], "app echo :9000")
    server = t.spawn(p.client, ["echo", "7000", "--timeout", "8"], "server echo :7000")
    for proc in (app, server):
        check(proc.wait_line("READY", 5), "%s never became ready" % proc.name)
    proxy = start_sidecar(t, p.pod, ["-c", cfg, "--concurrency", "1"], "sidecar")

    size = 1 << 20
    r = t.run(p.client, [PY, PROBE, "roundtrip", p.pod_ip, "9000", str(size)], timeout=20)
    check("ROUNDTRIP OK" in r.stdout, "inbound client -> %s:9000: %s" % (p.pod_ip, short(r.stdout + r.stderr)))
    r = t.run(p.pod, [PY, PROBE, "roundtrip", p.client_ip, "7000", str(size), "--uid", str(APP_UID), "--gid", str(APP_UID)], timeout=20)
    check("ROUNDTRIP OK" in r.stdout, "outbound app -> %s:7000: %s" % (p.client_ip, short(r.stdout + r.stderr)))
    app.wait_line("PEER", 2)
    server.wait_line("PEER", 2)
    check(any(l.startswith("PEER 127.0.0.6:") for l in app.lines), "the app saw %s, expected the sidecar's 127.0.0.6 passthrough" % app.lines)
    check(any(l.startswith("PEER %s:" % p.pod_ip) for l in server.lines), "the server saw %s" % server.lines)
    stats = t.run(p.pod, ["curl", "-s", "http://127.0.0.1:15000/stats"], timeout=5).stdout
    for name, want in (("tcp.inbound.downstream_cx_total", 1), ("tcp.outbound.downstream_cx_total", 1),
                       ("tcp.inbound.downstream_cx_rx_bytes_total", size), ("tcp.outbound.downstream_cx_tx_bytes_total", size),
                       ("cluster.inbound_passthrough.upstream_cx_total", 1), ("cluster.outbound_passthrough.upstream_cx_total", 1)):
        m = re.search(r"^%s: (\d+)$" % re.escape(name), stats, re.M)
        check(m and int(m.group(1)) == want, "stat %s is %s, expected %d" % (name, m.group(1) if m else "missing", want))

    # Capture is real: without the sidecar, captured connections fail instead of bypassing it.
    proxy.stop()
    r = t.run(p.client, [PY, PROBE, "roundtrip", p.pod_ip, "9000", "1024", "--timeout", "3"], timeout=20)
    check("ROUNDTRIP OK" not in r.stdout, "with the sidecar stopped the inbound connection still went through")
    r = t.run(p.pod, [PY, PROBE, "roundtrip", p.client_ip, "7000", "1024", "--uid", str(APP_UID), "--gid", str(APP_UID),
                      "--timeout", "3"], timeout=20)
    check("ROUNDTRIP OK" not in r.stdout, "with the sidecar stopped the outbound connection still went through")


def write_config(t, name, text):
    """A config file the sidecar (UID 1337) can read, in a temp dir the test removes."""
    d = tempfile.mkdtemp(prefix="pfi-%d-" % os.getpid())
    t.tmpdirs.append(d)
    os.chmod(d, 0o755)
    path = os.path.join(d, name)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o644)
    return path


def start_sidecar(t, ns, args, name):
    """Runs the real sidecar in `ns` as a kubelet would: UID/GID 1337 with only CAP_NET_ADMIN (for the
    transparent listener). Returns its Proc once admin /ready answers 200."""
    proxy = Proc(["ip", "netns", "exec", ns, "setpriv", "--reuid", "1337", "--regid", "1337", "--clear-groups",
                  "--inh-caps", "+net_admin", "--ambient-caps", "+net_admin", t.suite.sidecar] + list(args), name)
    t.procs.append(proxy)
    for _ in range(100):
        r = t.run(ns, ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:15000/ready"], timeout=5)
        if r.stdout.strip() == "200":
            return proxy
        if proxy.popen.poll() is not None:
            break
        time.sleep(0.1)
    proxy.finish(0.5)
    raise Fail("%s did not become ready: %s" % (name, short(proxy.err.decode(errors="replace"), 400)))


def stat_value(t, ns, name):
    text = t.run(ns, ["curl", "-s", "http://127.0.0.1:15000/stats"], timeout=5).stdout
    m = re.search(r"^%s: (\d+)$" % re.escape(name), text, re.M)
    return int(m.group(1)) if m else None


def t_two_pod_mesh(t, backend, mode):
    """Two pods, each with sidecar-init and `sidecar --pod-defaults --tracing zipkin` as UID 1337: HTTP and raw
    TCP from the client pod's app go out through its sidecar and in through the server pod's sidecar; the HTTP
    request is one trace in the Zipkin collector (the server pod's port 9411, outside capture)."""
    if not t.suite.sidecar:
        raise Skip("no sidecar binary given (--sidecar PATH)")
    p = t.pair()
    client, server = p.client, p.pod
    client_ip, server_ip = p.client_ip, p.pod_ip
    t.apply(client, backend, "--mode", mode)
    t.apply(server, backend, "--mode", mode, "--exclude-inbound-ports", "9100,9411")
    # The apps stop after --timeout seconds without a new connection; the test uses 9100 last.
    web = t.spawn(server, ["http-echo", "8080", "--timeout", "120"], "server app http :8080")
    echo = t.spawn(server, ["echo", "9000", "--timeout", "120"], "server app echo :9000")
    excluded = t.spawn(server, ["echo", "9100", "--timeout", "120"], "server app echo :9100 (excluded)")
    spans_file = os.path.join(tempfile.mkdtemp(prefix="pfi-spans-%d-" % os.getpid()), "spans.jsonl")
    t.tmpdirs.append(os.path.dirname(spans_file))
    collector = t.spawn(server, ["zipkin-collector", "9411", spans_file, "--timeout", "120"], "zipkin collector :9411")
    for proc in (web, echo, excluded, collector):
        check(proc.wait_line("READY", 5), "%s never became ready" % proc.name)
    sidecar_args = ["--pod-defaults", "--capture-mode", mode, "--concurrency", "1", "--tracing", "zipkin"]
    # The collector lives in the server pod: its own sidecar reaches it on loopback (a sidecar's connection to its
    # own pod IP is sent to its inbound capture, as istio-iptables does for a pod calling itself).
    client_sidecar = start_sidecar(t, client, sidecar_args + ["--tracing-collector", "%s:9411" % server_ip],
                                   "client sidecar")
    server_sidecar = start_sidecar(t, server, sidecar_args + ["--tracing-collector", "127.0.0.1:9411"],
                                   "server sidecar")
    app = ["--uid", str(APP_UID), "--gid", str(APP_UID)]

    # Least privilege: once listening, no thread keeps a capability, except CAP_NET_ADMIN (bit 12) in
    # TPROXY mode, which original_src needs for its transparent upstream sockets.
    allowed = (1 << 12) if mode == "tproxy" else 0
    for proc in (client_sidecar, server_sidecar):
        for task in os.listdir("/proc/%d/task" % proc.pid):
            with open("/proc/%d/task/%s/status" % (proc.pid, task)) as f:
                status = f.read()
            check("\nUid:\t1337\t" in status, "%s thread %s does not run as UID 1337" % (proc.name, task))
            eff = re.search(r"^CapEff:\t([0-9a-f]+)$", status, re.M).group(1)
            check(int(eff, 16) & ~allowed == 0, "%s thread %s still has capabilities %s" % (proc.name, task, eff))

    # HTTP capture: the server app sees the headers the sidecars add.
    r = t.run(client, [PY, PROBE, "http-get", server_ip, "8080", "/hello"] + app, timeout=20)
    check("HTTP 200" in r.stdout, "client app -> %s:8080: %s" % (server_ip, short(r.stdout + r.stderr)))
    body = json.loads(r.stdout.split("BODY ", 1)[1].split("\n", 1)[0])
    check(body["path"] == "/hello", "the server app saw path %r" % body["path"])
    check(re.match(r"^[0-9a-f-]{36}$", body["headers"].get("x-request-id", "")), "no x-request-id reached the app: %s" % body["headers"])
    check(body["headers"].get("x-forwarded-proto") == "http", "no x-forwarded-proto reached the app: %s" % body["headers"])
    # Source IP: with TPROXY the sidecar connects from the client's own address (original_src); with
    # REDIRECT from the 127.0.0.6 passthrough address.
    want_peer = client_ip if mode == "tproxy" else "127.0.0.6"
    check(body["peer"].split(":")[0] == want_peer, "the server app saw peer %s, expected %s" % (body["peer"], want_peer))
    # One trace: the client sidecar's CLIENT span and the server sidecar's SERVER span, which shares its id
    # (Zipkin's shared_span_context), in the trace whose ids reached the app.
    def hello_spans():
        try:
            with open(spans_file) as f:
                spans = [json.loads(l) for l in f if l.strip()]
        except OSError:
            return None
        found = [s for s in spans if s.get("tags", {}).get("http.url", "").endswith("/hello")]
        return found if len(found) >= 2 else None
    deadline = time.monotonic() + 15
    spans = None
    while time.monotonic() < deadline and not spans:
        spans = hello_spans()
        time.sleep(0.25)
    if not spans or len(spans) != 2:
        counts = ["%s %s=%s" % (side, name, stat_value(t, ns, "tracing.zipkin." + name))
                  for side, ns in (("client", client), ("server", server)) for name in ("reports_sent", "reports_failed")]
        raise Fail("the /hello request's spans in the collector: %s (%s)" % (short(json.dumps(spans)), ", ".join(counts)))
    kinds = {s["kind"]: s for s in spans}
    check(set(kinds) == {"CLIENT", "SERVER"}, "span kinds: %s" % list(kinds))
    check(kinds["CLIENT"]["traceId"] == kinds["SERVER"]["traceId"] == body["headers"].get("x-b3-traceid"),
          "one trace, the app's x-b3-traceid: %s / %s" % (short(json.dumps(spans)), body["headers"].get("x-b3-traceid")))
    check(kinds["SERVER"]["id"] == kinds["CLIENT"]["id"] == body["headers"].get("x-b3-spanid"),
          "the server span shares the client span's id: %s" % short(json.dumps(spans)))
    for ns, name in ((client, "http.outbound_http.downstream_rq_total"), (server, "http.inbound_http.downstream_rq_total"),
                     (client, "http.outbound_http.downstream_rq_2xx"), (server, "http.inbound_http.downstream_rq_2xx")):
        v = stat_value(t, ns, name)
        check(v == 1, "%s sidecar: %s is %s, expected 1" % ("client" if ns == client else "server", name, v))

    # TCP passthrough, byte-exact, through both sidecars' tcp_proxy chains.
    r = t.run(client, [PY, PROBE, "roundtrip", server_ip, "9000", str(1 << 20)] + app, timeout=30)
    check("ROUNDTRIP OK" in r.stdout, "client app -> %s:9000 (TCP): %s" % (server_ip, short(r.stdout + r.stderr)))
    for ns, name in ((client, "tcp.outbound_tcp.downstream_cx_total"), (server, "tcp.inbound_tcp.downstream_cx_total")):
        v = stat_value(t, ns, name)
        check(v == 1, "%s: %s is %s, expected 1" % (ns, name, v))

    # Bounded load: 10,000 keep-alive requests, zero errors.
    r = t.run(client, [PY, PROBE, "http-get", server_ip, "8080", "/load", "--count", "10000"] + app, timeout=180)
    check("DONE ok=10000 errors=0" in r.stdout, "10,000 requests through both sidecars: %s" % short(r.stdout + r.stderr))

    # ORIGINAL_DST hosts are cleaned up: once unused for cleanup_interval (5 s), the pooled connections
    # to them are closed.
    for _ in range(60):
        active = [stat_value(t, client, "cluster.outbound_passthrough.upstream_cx_active"),
                  stat_value(t, server, "cluster.inbound_passthrough.upstream_cx_active")]
        if active == [0, 0]:
            break
        time.sleep(0.25)
    check(active == [0, 0], "idle ORIGINAL_DST connections were not cleaned up after 15 s: %s" % active)

    # Exclusions: the excluded port bypasses the server sidecar (still works with it gone, below).
    # Capture is real: with the server sidecar stopped, captured connections fail.
    server_sidecar.stop()
    r = t.run(client, [PY, PROBE, "http-get", server_ip, "8080", "/after", "--timeout", "3"] + app, timeout=30)
    check("HTTP 200" not in r.stdout, "with the server sidecar stopped, HTTP still reached the app: %s" % short(r.stdout))
    r = t.run(client, [PY, PROBE, "roundtrip", server_ip, "9100", "4096"] + app, timeout=30)
    check("ROUNDTRIP OK" in r.stdout, "excluded port 9100 did not bypass the stopped sidecar: %s" % short(r.stdout + r.stderr))
    client_sidecar.stop()


def issue_identity(t, ca_dir, namespace, service_account, trust_domain="cluster.local"):
    """`sidecar certs workload`: a pod identity directory (tls.crt, tls.key, ca.crt) the sidecar's UID reads."""
    d = tempfile.mkdtemp(prefix="pfi-id-%d-" % os.getpid())
    t.tmpdirs.append(d)
    r = t.run(None, [t.suite.sidecar, "certs", "workload", "--ca", ca_dir, "--namespace", namespace,
                     "--service-account", service_account, "--trust-domain", trust_domain, "--out", d], timeout=30)
    check(r.returncode == 0, "sidecar certs workload: %s" % short(r.stdout + r.stderr))
    for f in os.listdir(d) + [""]:
        os.chown(os.path.join(d, f), PROXY_UID, PROXY_UID)  # as a Secret volume with fsGroup 1337
    return d


def t_two_pod_mtls(t, backend, mode, mtls):
    """Two pods with `sidecar --pod-defaults --mtls STRICT|PERMISSIVE` and identities from `sidecar certs`:
    the apps speak plaintext, the veth between the pods carries only TLS (captured with tcpdump, the
    request's marker never appears), an identity from another CA is refused, and plaintext to the pod is
    refused in STRICT mode and served in PERMISSIVE mode."""
    if not t.suite.sidecar:
        raise Skip("no sidecar binary given (--sidecar PATH)")
    if not shutil.which("tcpdump"):
        raise Fail("tcpdump is not installed (scripts/bootstrap installs it)")
    p = t.pair()
    client, server = p.client, p.pod
    t.apply(client, backend, "--mode", mode)
    t.apply(server, backend, "--mode", mode)
    ca = tempfile.mkdtemp(prefix="pfi-ca-%d-" % os.getpid())
    t.tmpdirs.append(ca)
    r = t.run(None, [t.suite.sidecar, "certs", "ca", "--out", ca, "--trust-domain", "cluster.local", "--force"], timeout=30)
    check(r.returncode == 0, "sidecar certs ca: %s" % short(r.stdout + r.stderr))
    client_id = issue_identity(t, ca, "default", "client")
    server_id = issue_identity(t, ca, "default", "server")
    web = t.spawn(server, ["http-echo", "8080", "--timeout", "120"], "server app http :8080")
    echo = t.spawn(server, ["echo", "9000", "--timeout", "120"], "server app echo :9000")
    for proc in (web, echo):
        check(proc.wait_line("READY", 5), "%s never became ready" % proc.name)
    sidecars = []
    for ns, ident in ((client, client_id), (server, server_id)):
        run_dir = tempfile.mkdtemp(prefix="pfi-run-%d-" % os.getpid())
        t.tmpdirs.append(run_dir)
        os.chown(run_dir, PROXY_UID, PROXY_UID)
        sidecars.append(start_sidecar(t, ns, ["--pod-defaults", "--capture-mode", mode, "--concurrency", "1",
                                              "--mtls", mtls, "--identity-dir", ident, "--mesh-cidrs", "198.18.0.0/15",
                                              "--secret-dir", run_dir], "%s sidecar" % ("client" if ns == client else "server")))
    app = ["--uid", str(APP_UID), "--gid", str(APP_UID)]

    # Everything between the pods is captured on the client pod's end of the veth.
    pcap = os.path.join(ca, "veth.pcap")
    dump = Proc(["ip", "netns", "exec", client, "tcpdump", "-i", "eth0", "-U", "-n", "-s", "0", "-w", pcap, "tcp"], "tcpdump")
    t.procs.append(dump)
    time.sleep(1.0)  # tcpdump opens the capture before anything is sent
    marker = "pilotfish-secret-%d-%d" % (os.getpid(), t.k)
    r = t.run(client, [PY, PROBE, "http-get", p.pod_ip, "8080", "/" + marker] + app, timeout=20)
    check("HTTP 200" in r.stdout, "client app -> %s:8080 over mTLS: %s" % (p.pod_ip, short(r.stdout + r.stderr)))
    body = json.loads(r.stdout.split("BODY ", 1)[1].split("\n", 1)[0])
    check(body["path"] == "/" + marker, "the server app saw path %r" % body["path"])
    # The app spoke plain HTTP: the client sidecar says so (x-forwarded-proto: http) and the server sidecar keeps
    # it, as Envoy keeps an incoming x-forwarded-proto; the mTLS hop is the sidecars' business.
    check(body["headers"].get("x-forwarded-proto") == "http", "x-forwarded-proto after mTLS: %s" % body["headers"])
    r = t.run(client, [PY, PROBE, "roundtrip", p.pod_ip, "9000", str(1 << 20)] + app, timeout=30)
    check("ROUNDTRIP OK" in r.stdout, "client app -> %s:9000 (TCP over mTLS): %s" % (p.pod_ip, short(r.stdout + r.stderr)))
    r = t.run(client, [PY, PROBE, "http-get", p.pod_ip, "8080", "/load", "--count", "2000"] + app, timeout=120)
    check("DONE ok=2000 errors=0" in r.stdout, "2,000 requests over mTLS: %s" % short(r.stdout + r.stderr))
    time.sleep(0.3)
    dump.stop()
    with open(pcap, "rb") as f:
        captured = f.read()
    check(len(captured) > 100000, "tcpdump captured only %d bytes" % len(captured))
    check(marker.encode() not in captured, "the request's marker appeared in plaintext on the veth")
    check(b"HTTP/1.1" not in captured, "plaintext HTTP appeared on the veth")
    check(b"\x16\x03\x01" in captured, "no TLS handshake record seen on the veth")
    for ns, name in ((client, "cluster.outbound_mtls_http.ssl.handshake"), (server, "listener.0.0.0.0_15006.ssl.handshake"),
                     (client, "http.outbound_mtls_http.downstream_rq_2xx"), (server, "http.inbound_mtls_http.downstream_rq_2xx"),
                     (client, "tcp.outbound_mtls_tcp.downstream_cx_total"), (server, "tcp.inbound_mtls_tcp.downstream_cx_total")):
        v = stat_value(t, ns, name)
        check(v is not None and v >= 1, "%s: %s is %s" % (ns, name, v))

    # A peer outside the mesh's CA is refused and counted, whatever the mode.
    other_ca = tempfile.mkdtemp(prefix="pfi-ca2-%d-" % os.getpid())
    t.tmpdirs.append(other_ca)
    t.run(None, [t.suite.sidecar, "certs", "ca", "--out", other_ca, "--trust-domain", "cluster.local", "--force"], timeout=30)
    rogue = issue_identity(t, other_ca, "default", "client")
    r = t.run(client, [PY, PROBE, "tls-get", p.pod_ip, "8080", "/rogue", "--cert", rogue + "/tls.crt", "--key",
                       rogue + "/tls.key", "--ca", server_id + "/ca.crt", "--uid", str(PROXY_UID), "--gid", str(PROXY_UID)], timeout=20)
    check("HTTP 200" not in r.stdout, "a certificate from another CA was accepted: %s" % short(r.stdout))
    v = stat_value(t, server, "listener.0.0.0.0_15006.ssl.fail_verify_error")
    check(v == 1, "ssl.fail_verify_error is %s after the rogue certificate" % v)

    # Plaintext straight to the pod (as the proxy UID, which capture lets out uncaptured).
    r = t.run(client, [PY, PROBE, "http-get", p.pod_ip, "8080", "/plain", "--timeout", "3",
                       "--uid", str(PROXY_UID), "--gid", str(PROXY_UID)], timeout=20)
    if mtls == "STRICT":
        check("HTTP 200" not in r.stdout, "STRICT served plaintext: %s" % short(r.stdout))
        v = stat_value(t, server, "listener.0.0.0.0_15006.no_filter_chain_match")
        check(v is not None and v >= 1, "plaintext to STRICT not counted as no_filter_chain_match (%s)" % v)
    else:
        check("HTTP 200" in r.stdout, "PERMISSIVE refused plaintext: %s" % short(r.stdout + r.stderr))
    for s_ in sidecars:
        s_.stop()


GRPC_SUITE = os.path.join(HERE, "grpc_interop_suite.py")
E2E_VENV_PY = os.path.join(os.path.dirname(os.path.dirname(HERE)), ".venv-e2e", "bin", "python")
GRPC_PORT = 50051
GRPC_CASES = 14  # grpc_interop_suite.INTEROP_CASES
GRPC_STATS = ("cluster.outbound_mtls_h2.", "cluster.outbound_mtls_http.upstream_cx_total", "http.outbound_mtls_http.",
              "http.outbound_http.downstream_rq_total", "cluster.outbound_passthrough.upstream_cx_total",
              "listener.0.0.0.0_15006.", "http.inbound_mtls_http.", "cluster.inbound_passthrough.")


def as_app(argv):
    """`argv` run as the app's UID/GID (what capture applies to), without supplementary groups."""
    return ["setpriv", "--reuid", str(APP_UID), "--regid", str(APP_UID), "--clear-groups"] + list(argv)


def grpc_diagnosis(t, sides):
    """The sidecars' gRPC-relevant counters (non-zero), their stderr tails and their /clusters lines of the
    clusters gRPC uses, for a failure message."""
    out = []
    for side, ns, proc in sides:
        text = t.run(ns, ["curl", "-s", "http://127.0.0.1:15000/stats"], timeout=5).stdout
        stats = [l for l in text.splitlines() if l.startswith(GRPC_STATS) and not l.endswith(": 0")
                 and ": P" not in l and "No recorded values" not in l]
        clusters = t.run(ns, ["curl", "-s", "http://127.0.0.1:15000/clusters"], timeout=5).stdout
        hosts = [l for l in clusters.splitlines() if l.startswith(("outbound_mtls_h2::", "inbound_passthrough::"))
                 and ("cx_" in l or "rq_" in l) and not l.endswith("::0")]
        if proc.popen.poll() is None:
            proc._pump(0.1)
        else:
            proc.finish(0.1)
        err = proc.err.decode(errors="replace").strip()
        out.append("%s sidecar%s: stats {%s}; clusters {%s}; stderr: %s"
                   % (side, "" if proc.popen.poll() is None else " (exited %s)" % proc.popen.returncode,
                      ", ".join(stats), ", ".join(hosts), short(err, 600) if err else "(empty)"))
    return " || ".join(out)


def t_two_pod_grpc(t, backend, mode, mtls):
    """gRPC between two pods with `sidecar --pod-defaults --mtls STRICT`: the client pod's app (as APP_UID) runs
    the 14 grpc interop cases (scripts/lib/grpc_interop_suite.py --cases-against, h2c, a channel per case) against
    the server pod's interop server (--serve 50051, h2c). The client sidecar's http_inspector sees h2c and sends
    every call over one mTLS HTTP/2 connection (cluster outbound_mtls_h2, ALPN h2); the server sidecar terminates it
    on its ALPN h2 chain and proxies HTTP/2 (h2c) to the app. On the veth only TLS (tcpdump: no HTTP/2 preface,
    method path, echoed metadata or status message in the clear; the server pod's loopback capture, where its sidecar
    speaks h2c to the app, must show the preface, so the capture would see plaintext HTTP/2; HPACK's Huffman coding
    hides the method path even there). Needs .venv-e2e (grpcio, grpcio-tools, protobuf), which scripts/e2e-grpc and
    scripts/e2e-init create."""
    if not t.suite.sidecar:
        raise Skip("no sidecar binary given (--sidecar PATH)")
    if not shutil.which("tcpdump"):
        raise Fail("tcpdump is not installed (scripts/bootstrap installs it)")
    if not os.access(E2E_VENV_PY, os.X_OK):
        raise Fail("%s is missing: run scripts/e2e-grpc first (it creates the venv with grpcio, grpcio-tools and "
                   "protobuf; scripts/e2e-init also does when it runs as root)" % E2E_VENV_PY)
    r = t.run(None, [E2E_VENV_PY, "-c", "import grpc, grpc_tools.protoc, google.protobuf"], timeout=30)
    check(r.returncode == 0, "%s lacks grpcio/grpcio-tools/protobuf: run scripts/e2e-grpc first (%s)"
          % (E2E_VENV_PY, short(r.stderr, 200)))
    p = t.pair()
    client, server = p.client, p.pod
    t.apply(client, backend, "--mode", mode)
    t.apply(server, backend, "--mode", mode)
    ca = tempfile.mkdtemp(prefix="pfi-ca-%d-" % os.getpid())
    t.tmpdirs.append(ca)
    r = t.run(None, [t.suite.sidecar, "certs", "ca", "--out", ca, "--trust-domain", "cluster.local", "--force"], timeout=30)
    check(r.returncode == 0, "sidecar certs ca: %s" % short(r.stdout + r.stderr))
    client_id = issue_identity(t, ca, "default", "grpc-client")
    server_id = issue_identity(t, ca, "default", "grpc-server")

    # The server pod's app: the interop TestService on 0.0.0.0:50051, h2c, as the app's UID.
    app_server = Proc(["ip", "netns", "exec", server] + as_app([E2E_VENV_PY, GRPC_SUITE, "--serve", str(GRPC_PORT),
                                                                "--timeout", "180"]), "server app grpc :%d" % GRPC_PORT)
    t.procs.append(app_server)
    if not app_server.wait_line("READY", 30):
        app_server.finish(0.5)
        raise Fail("the interop server never became ready: %s" % short(app_server.err.decode(errors="replace")
                                                                       + " ".join(app_server.lines)))
    sidecars = []
    for side, ns, ident in (("client", client, client_id), ("server", server, server_id)):
        run_dir = tempfile.mkdtemp(prefix="pfi-run-%d-" % os.getpid())
        t.tmpdirs.append(run_dir)
        os.chown(run_dir, PROXY_UID, PROXY_UID)
        sidecars.append((side, ns, start_sidecar(t, ns, ["--pod-defaults", "--capture-mode", mode, "--concurrency", "1",
                                                         "--mtls", mtls, "--identity-dir", ident, "--mesh-cidrs",
                                                         "198.18.0.0/15", "--secret-dir", run_dir], "%s sidecar" % side)))

    # Everything between the pods, captured on the client pod's end of the veth; and, as the control that the
    # needles below are visible when in the clear, the server pod's loopback (its sidecar's h2c to the app).
    veth_pcap, lo_pcap = os.path.join(ca, "veth.pcap"), os.path.join(ca, "lo.pcap")
    dumps = []
    for ns, dev, path in ((client, "eth0", veth_pcap), (server, "lo", lo_pcap)):
        d = Proc(["ip", "netns", "exec", ns, "tcpdump", "-i", dev, "-U", "-n", "-s", "0", "-w", path, "tcp"],
                 "tcpdump %s" % dev)
        t.procs.append(d)
        dumps.append(d)
    time.sleep(1.0)  # tcpdump opens the capture before anything is sent

    target = "%s:%d" % (p.pod_ip, GRPC_PORT)
    r = t.run(client, as_app([E2E_VENV_PY, GRPC_SUITE, "--cases-against", target]), timeout=240)
    results = [l for l in r.stdout.splitlines() if l.startswith(("PASS ", "FAIL "))]
    passed = [l for l in results if l.startswith("PASS ")]
    if r.returncode != 0 or len(passed) != GRPC_CASES or len(results) != GRPC_CASES:
        failed = [l for l in results if l.startswith("FAIL ")]
        app_server._pump(0.2)
        raise Fail("interop cases from the client app to %s through both sidecars: exit %d, %d/%d passed; %s; "
                   "server app saw: %s; client stderr: %s; %s"
                   % (target, r.returncode, len(passed), GRPC_CASES, " | ".join(failed) or short(r.stdout, 300),
                      ", ".join(l[5:] for l in app_server.lines if l.startswith("CALL ")) or "no call",
                      short(r.stderr, 300) or "(empty)", grpc_diagnosis(t, sidecars)))
    time.sleep(0.3)
    for d in dumps:
        d.stop()

    # One mTLS HTTP/2 connection between the sidecars carried every call; each case's channel was its own h2c
    # connection from the app to the client sidecar, and the server sidecar spoke HTTP/2 to the app.
    want = [
        (client, "cluster.outbound_mtls_h2.upstream_cx_total", lambda v: v == 1, "exactly 1"),
        (client, "cluster.outbound_mtls_h2.upstream_cx_http2_total", lambda v: v == 1, "exactly 1"),
        (client, "cluster.outbound_mtls_h2.ssl.handshake", lambda v: v == 1, "exactly 1"),
        (client, "cluster.outbound_mtls_h2.upstream_rq_total", lambda v: v >= GRPC_CASES, ">= %d" % GRPC_CASES),
        (client, "http.outbound_mtls_http.downstream_cx_http2_total", lambda v: v >= GRPC_CASES, ">= %d" % GRPC_CASES),
        (client, "http.outbound_mtls_http.downstream_rq_http2_total", lambda v: v >= GRPC_CASES, ">= %d" % GRPC_CASES),
        (server, "listener.0.0.0.0_15006.ssl.handshake", lambda v: v >= 1, ">= 1"),
        (server, "http.inbound_mtls_http.downstream_cx_http2_total", lambda v: v >= 1, ">= 1"),
        (server, "http.inbound_mtls_http.downstream_rq_http2_total", lambda v: v >= GRPC_CASES, ">= %d" % GRPC_CASES),
        (server, "cluster.inbound_passthrough.upstream_cx_http2_total", lambda v: v >= 1, ">= 1"),
    ]
    bad, seen = [], []
    for ns, name, ok, what in want:
        v = stat_value(t, ns, name)
        seen.append("%s %s=%s" % ("client" if ns == client else "server", name, v))
        if v is None or not ok(v):
            bad.append("%s sidecar %s is %s, expected %s" % ("client" if ns == client else "server", name, v, what))
    for name in ("cluster.outbound_mtls_http.upstream_cx_total", "cluster.outbound_passthrough.upstream_cx_total"):
        v = stat_value(t, client, name)
        if v:
            bad.append("client sidecar %s is %d: gRPC did not all go to outbound_mtls_h2" % (name, v))
    check(not bad, "%s; %s" % ("; ".join(bad), grpc_diagnosis(t, sidecars)))

    # Only TLS on the veth: no HTTP/2 preface, method path, metadata or status message of the calls in the clear.
    with open(veth_pcap, "rb") as f:
        veth = f.read()
    with open(lo_pcap, "rb") as f:
        lo = f.read()
    check(len(veth) > 500000, "tcpdump captured only %d bytes on the veth" % len(veth))
    check(b"\x16\x03\x01" in veth, "no TLS handshake record seen on the veth")
    needles = [b"PRI * HTTP/2.0", b"grpc.testing", b"TestService", b"test_initial_metadata_value",
               b"test status message"]
    visible = [n for n in needles if n in lo]
    check(b"PRI * HTTP/2.0" in lo, "control: the HTTP/2 preface is not in the server pod's loopback capture (%d bytes)"
          % len(lo))
    leaked = [n.decode() for n in needles if n in veth]
    check(not leaked, "in the clear on the veth: %s" % leaked)
    if t.suite.verbose:
        print("    %s: %s" % (t.name, ", ".join(seen)), flush=True)
        print("    %s: %d bytes on the veth, none of %s in the clear; the server pod's loopback showed %s"
              % (t.name, len(veth), [n.decode() for n in needles], [n.decode() for n in visible]), flush=True)
    for _, _, s_ in sidecars:
        s_.stop()

HANDOFF_SIDECAR = """\
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: 15000}}
static_resources:
  listeners:
  - name: virtual_outbound
    address: {socket_address: {address: 0.0.0.0, port_value: 15001}}
    use_original_dst: true
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: passthrough, cluster: passthrough}
  - name: port_%(port)d
    address: {socket_address: {address: 0.0.0.0, port_value: %(port)d}}
    bind_to_port: false
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: port_%(port)d
          route_config: {virtual_hosts: [{name: all, domains: ["*"], routes: [{match: {prefix: "/"}, direct_response: {status: 200, body: {inline_string: "handed off to port_%(port)d"}}}]}]}
          http_filters: [{name: envoy.filters.http.router}]
  - name: port_%(http_port)d
    address: {socket_address: {address: 0.0.0.0, port_value: %(http_port)d}}
    bind_to_port: false
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: port_%(http_port)d
          route_config: {virtual_hosts: [{name: all, domains: ["*"], routes: [{match: {prefix: "/"}, route: {cluster: passthrough}}]}]}
          http_filters: [{name: envoy.filters.http.router}]
  clusters:
  - {name: passthrough, type: ORIGINAL_DST, lb_policy: CLUSTER_PROVIDED, connect_timeout: 1s}
"""


def t_use_original_dst_handoff(t):
    """Envoy's virtual-listener pattern: 15001 with use_original_dst hands a captured connection to the
    bind_to_port: false listener of its original port; other ports fall through to its own passthrough."""
    if not t.suite.sidecar:
        raise Skip("no sidecar binary given (--sidecar PATH)")
    p = t.pair()
    t.apply(p.pod, "nftables", "--mode", "redirect")
    cfg = write_config(t, "handoff.yaml", HANDOFF_SIDECAR % {"port": 7000, "http_port": 7002})
    echo = t.spawn(p.client, ["echo", "7001", "--timeout", "20"], "server echo :7001")
    check(echo.wait_line("READY", 5), "echo never became ready")
    web = t.spawn(p.client, ["http-echo", "7002", "--timeout", "20"], "server http :7002")
    check(web.wait_line("READY", 5), "http server never became ready")
    start_sidecar(t, p.pod, ["-c", cfg, "--concurrency", "1"], "sidecar")
    app = ["--uid", str(APP_UID), "--gid", str(APP_UID)]
    r = t.run(p.pod, [PY, PROBE, "http-get", p.client_ip, "7000", "/x"] + app, timeout=20)
    check("HTTP 200" in r.stdout and "handed off to port_7000" in r.stdout, "port 7000 was not handed off: %s" % short(r.stdout + r.stderr))
    r = t.run(p.pod, [PY, PROBE, "roundtrip", p.client_ip, "7001", "65536"] + app, timeout=20)
    check("ROUNDTRIP OK" in r.stdout, "port 7001 did not pass through: %s" % short(r.stdout + r.stderr))
    check(stat_value(t, p.pod, "http.port_7000.downstream_rq_total") == 1, "no request counted on the virtual listener")
    # A virtual HTTP listener routing to ORIGINAL_DST goes where the app was going.
    r = t.run(p.pod, [PY, PROBE, "http-get", p.client_ip, "7002", "/via-handoff"] + app, timeout=20)
    check("HTTP 200" in r.stdout and '"path": "/via-handoff"' in r.stdout and "x-request-id" in r.stdout,
          "port 7002 was not proxied to its original destination: %s" % short(r.stdout + r.stderr))
    check(stat_value(t, p.pod, "tcp.passthrough.downstream_cx_total") == 1, "the passthrough did not count exactly the 7001 connection")


def t_pod_calls_its_own_service(t, mode):
    """A pod calls its own service VIP. The other namespace plays the node (kube-proxy): DNAT of the VIP
    to the pod and masquerade for the hairpin. The app's connection goes out through its sidecar and
    comes back in through the same sidecar to the app."""
    if not t.suite.sidecar:
        raise Skip("no sidecar binary given (--sidecar PATH)")
    p = t.pair()
    node, pod, pod_ip = p.client, p.pod, p.pod_ip
    vip = "198.19.%d.100" % t.k
    t.sh(node, ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
    t.sh(node, ["nft", "-f", "-"], input=(
        "table ip kubeproxy {\n"
        " chain pre { type nat hook prerouting priority dstnat; ip daddr %s tcp dport 80 dnat to %s:8080; }\n"
        " chain post { type nat hook postrouting priority srcnat; ip saddr %s ip daddr %s masquerade; }\n"
        "}\n") % (vip, pod_ip, pod_ip, pod_ip))
    t.apply(pod, "nftables", "--mode", mode)
    web = t.spawn(pod, ["http-echo", "8080", "--timeout", "20"], "app http :8080")
    check(web.wait_line("READY", 5), "app never became ready")
    start_sidecar(t, pod, ["--pod-defaults", "--capture-mode", mode, "--concurrency", "1"], "sidecar")
    r = t.run(pod, [PY, PROBE, "http-get", vip, "80", "/self", "--uid", str(APP_UID), "--gid", str(APP_UID)], timeout=20)
    check("HTTP 200" in r.stdout and '"path": "/self"' in r.stdout, "pod calling its own service %s:80: %s" % (vip, short(r.stdout + r.stderr)))
    check(stat_value(t, pod, "http.outbound_http.downstream_rq_total") == 1, "the self-call did not go out through the pod's sidecar")
    check(stat_value(t, pod, "http.inbound_http.downstream_rq_total") == 1, "the self-call did not come back in through the pod's sidecar")


def t_admin_not_reachable_from_outside(t, mode):
    """`sidecar --pod-defaults` binds admin to 127.0.0.1:15000 and the readiness listener to 0.0.0.0:15021, and
    sidecar-init never captures either port: from the client namespace, <podIP>:15000 gets no admin answer
    (refused, reset or nothing at all, and never an admin body), and 15021 answers its readiness path only."""
    if not t.suite.sidecar:
        raise Skip("no sidecar binary given (--sidecar PATH)")
    p = t.pair()
    t.apply(p.pod, "nftables", "--mode", mode)
    start_sidecar(t, p.pod, ["--pod-defaults", "--capture-mode", mode, "--concurrency", "1"], "sidecar")

    def get(port, path):
        r = t.run(p.client, ["curl", "-s", "-m", "3", "-o", "-", "-w", "\n%{http_code}",
                             "http://%s:%d%s" % (p.pod_ip, port, path)], timeout=10)
        body, _, code = r.stdout.rpartition("\n")
        return r.returncode, code, body

    admin_words = ("LIVE", "server.", "cluster.", "listener.", "admin commands", "\"configs\"")
    for path in ("/ready", "/stats", "/config_dump", "/server_info"):
        rc, code, body = get(15000, path)
        check(rc != 0 and code == "000",
              "from outside, %s:15000%s answered (curl exit %d, HTTP %s): %s" % (p.pod_ip, path, rc, code, short(body)))
        check(not any(w in body for w in admin_words), "admin content from outside on :15000%s: %s" % (path, short(body)))
    rc, code, body = get(15021, "/healthz/ready")
    check(rc == 0 and code == "200", "readiness %s:15021/healthz/ready: curl exit %d, HTTP %s" % (p.pod_ip, rc, code))
    for path in ("/stats", "/ready", "/config_dump", "/quitquitquit"):
        rc, code, body = get(15021, path)
        check(code == "404" and not any(w in body for w in admin_words),
              ":15021%s must not be the admin's: HTTP %s %s" % (path, code, short(body)))
    # The requests above reached the readiness listener (and not something else on 15021).
    check(stat_value(t, p.pod, "http.readiness.downstream_rq_total") == 5, "the readiness listener did not see the 5 requests")


def t_sidecar_needs_net_admin(t):
    """A transparent (TPROXY) sidecar without CAP_NET_ADMIN refuses to start and says why; REDIRECT
    mode needs no capability at all."""
    if not t.suite.sidecar:
        raise Skip("no sidecar binary given (--sidecar PATH)")
    ns = t.netns("pod")
    r = t.run(ns, ["setpriv", "--reuid", "1337", "--regid", "1337", "--clear-groups", "--inh-caps=-all",
                   t.suite.sidecar, "--pod-defaults", "--capture-mode", "tproxy"], timeout=15)
    check(r.returncode == 1, "exit %d without CAP_NET_ADMIN" % r.returncode)
    check("CAP_NET_ADMIN" in r.stderr and "virtual_inbound" in r.stderr, "unclear error: %s" % short(r.stderr))
    proxy = Proc(["ip", "netns", "exec", ns, "setpriv", "--reuid", "1337", "--regid", "1337", "--clear-groups",
                  "--inh-caps=-all", t.suite.sidecar, "--pod-defaults", "--capture-mode", "redirect", "--concurrency", "1"],
                 "redirect-mode sidecar without capabilities")
    t.procs.append(proxy)
    for _ in range(50):
        if t.run(ns, ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:15000/ready"], timeout=5).stdout == "200":
            break
        time.sleep(0.1)
    else:
        raise Fail("redirect-mode sidecar without capabilities did not start: %s" % short(proxy.err.decode(errors="replace")))
    proxy.stop()


def t_dns_capture(t, backend):
    """--capture-dns sends the app's DNS (UDP 53) to the DNS port; the sidecar's own DNS goes out."""
    p = t.pair()
    t.apply(p.pod, backend, "--mode", "redirect", "--capture-dns")
    for uid, where, ns, port in ((APP_UID, "the DNS capture port", p.pod, 15053), (PROXY_UID, "the real server", p.client, 53)):
        catch = t.listener(ns, "udp-listen", port)
        other = t.listener(p.pod if ns == p.client else p.client, "udp-listen", 53 if ns == p.pod else 15053)
        try:
            r = t.run(p.pod, [PY, PROBE, "udp-send", p.client_ip, "53", "--uid", str(uid), "--gid", str(uid)], timeout=10)
            check("SENT" in r.stdout, "udp-send as uid %d failed: %s" % (uid, short(r.stdout + r.stderr)))
            catch.finish(3)
            got = [l for l in catch.lines if l.startswith("DATAGRAM")]
            check(got, "DNS from uid %d to %s:53 did not reach %s (:%d): %s" % (uid, p.client_ip, where, port, " / ".join(catch.lines)))
            other.stop()
            stray = [l for l in other.lines if l.startswith("DATAGRAM")]
            check(not stray, "DNS from uid %d also reached the wrong listener: %s" % (uid, stray))
        finally:
            catch.stop()
            other.stop()


def t_ipv6_off(t, backend):
    ns = t.netns("pod")
    t.apply(ns, backend, "--mode", "tproxy", "--ipv6", "false")
    live = t.ours(ns, backend)
    check(live, "no rules installed")
    if backend == "nftables":
        check("ip6 " not in live and "::" not in live, "--ipv6 false: IPv6 rules installed: %s" % short(live))
        check("meta nfproto ipv4" in live, "--ipv6 false: hooks are not limited to IPv4")
    else:
        v6 = [l for l in live.splitlines() if l.startswith("ip6tables")]
        check(not v6, "--ipv6 false: ip6tables rules installed: %s" % short(" | ".join(v6)))
    rules6, routes6 = t.sh(ns, ["ip", "-6", "rule"]), t.table_routes(ns, "-6", 133)
    check("fwmark" not in rules6, "--ipv6 false: IPv6 fwmark rule added: %s" % short(rules6))
    check(not routes6, "--ipv6 false: IPv6 routes added to table 133: %s" % short(routes6))
    check("fwmark 0x539 lookup 133" in t.sh(ns, ["ip", "rule"]), "--ipv6 false: IPv4 policy routing missing")


def t_backend_switch(t, first, second):
    """One installation of ours at a time: applying with the other backend replaces the first one."""
    ns = t.netns("pod")
    t.apply(ns, first, "--mode", "tproxy")
    check(t.ours(ns, first), "no %s rules after apply" % first)
    t.apply(ns, second, "--mode", "tproxy")
    left = t.ours(ns, first)
    check(not left, "after apply --backend %s the %s rules are still installed: %s" % (second, first, short(left, 200)))
    ref = t.netns("ref")
    t.apply(ref, second, "--mode", "tproxy")
    check(t.ours(ns, second) == t.ours(ref, second), "the %s rules differ from a fresh %s install" % (second, second))
    r = t.tool(ns, ["validate"])
    check(r.returncode == 0, "validate after switching backends exited %d: %s" % (r.returncode, short(r.stderr)))


def t_iptables_variant_auto(t, existing):
    """--iptables-variant auto uses the variant that already has rules (nft when neither has)."""
    ns = t.netns("pod")
    if existing:
        t.sh(ns, ["iptables-%s" % existing, "-t", "filter", "-A", "INPUT", "-p", "tcp", "--dport", "7", "-j", "ACCEPT"])
    t.apply(ns, "iptables", "--mode", "redirect")
    expect = existing or "nft"
    # Asking iptables-legacy when it has no tables would create them, so it is only read when it has some.
    dumps = {"nft": t.sh(ns, ["iptables-nft-save"]),
             "legacy": t.sh(ns, ["iptables-legacy-save"]) if existing == "legacy" else ""}
    check("PILOTFISH_OUTBOUND" in dumps[expect], "auto did not install into iptables-%s" % expect)
    unused = "legacy" if expect == "nft" else "nft"
    check("PILOTFISH" not in dumps[unused], "auto also installed into iptables-%s" % unused)
    if existing:
        check("--dport 7" in dumps[existing], "the existing iptables-%s rule is gone" % existing)


def build_tests():
    tests = []

    def add(base, fn, *params, label=None):
        name = "%s[%s]" % (base, label or ",".join(params))
        tests.append((name, base, fn, params))

    for b in BACKENDS:
        add("tproxy_inbound", t_tproxy_inbound, b)
    add("tproxy_inbound", t_tproxy_inbound, "iptables", "legacy", label="iptables,legacy")
    for b in BACKENDS:
        add("redirect_inbound", t_redirect_inbound, b)
    for base, fn in (("outbound_captured_for_app", t_outbound_captured_for_app),
                     ("outbound_not_captured_for_proxy_uid", t_outbound_not_captured_for_proxy_uid),
                     ("exclusions", t_exclusions), ("validate", t_validate),
                     ("cleanup_restores_exactly", t_cleanup_restores_exactly), ("self_call", t_self_call),
                     ("loopback_app_sidecar", t_loopback_app_sidecar), ("fail_closed", t_fail_closed)):
        for b in BACKENDS:
            for m in MODES:
                add(base, fn, b, m)
    for base, fn in (("reapply_idempotent", t_reapply_idempotent), ("atomic_failure", t_atomic_failure),
                     ("atomic_failure_fresh", t_atomic_failure_fresh),
                     ("dry_run_changes_nothing", t_dry_run_changes_nothing), ("bad_input", t_bad_input),
                     ("missing_cap_net_admin", t_missing_cap_net_admin), ("env_vars", t_env_vars),
                     ("short_aliases", t_short_aliases)):
        for b in BACKENDS:
            add(base, fn, b)
    for b in BACKENDS:
        add("ipv6_off", t_ipv6_off, b)
    for b in BACKENDS:
        add("dns_capture", t_dns_capture, b)
    for b in BACKENDS:
        for m in MODES:
            add("sidecar_tcp_passthrough", t_sidecar_tcp_passthrough, b, m)
    add("sidecar_needs_net_admin", t_sidecar_needs_net_admin, label="tproxy refuses, redirect runs")
    for m in MODES:
        add("admin_not_reachable_from_outside", t_admin_not_reachable_from_outside, m)
    for m in MODES:
        add("pod_calls_its_own_service", t_pod_calls_its_own_service, m)
    add("use_original_dst_handoff", t_use_original_dst_handoff, label="redirect")
    for m in MODES:
        add("two_pod_mesh", t_two_pod_mesh, "nftables", m)
    add("two_pod_mesh", t_two_pod_mesh, "iptables", "tproxy")
    add("two_pod_mtls", t_two_pod_mtls, "nftables", "tproxy", "STRICT")
    add("two_pod_mtls", t_two_pod_mtls, "nftables", "redirect", "PERMISSIVE")
    add("iptables_variant_auto", t_iptables_variant_auto, "legacy", label="legacy has rules")
    add("iptables_variant_auto", t_iptables_variant_auto, "nft", label="nft has rules")
    add("iptables_variant_auto", t_iptables_variant_auto, "", label="neither has rules")
    add("backend_switch", t_backend_switch, "nftables", "iptables", label="nftables->iptables")
    add("backend_switch", t_backend_switch, "iptables", "nftables", label="iptables->nftables")
    for m in MODES:
        add("two_pod_grpc", t_two_pod_grpc, "nftables", m, "STRICT")
    return tests


class Suite:
    def __init__(self, binary, verbose=False):
        self.bin = binary
        self.verbose = verbose

    def requirements(self, params):
        if "iptables" in params:
            for tool in ("iptables-nft-restore", "iptables-nft-save", "ip6tables-nft-save"):
                if not shutil.which(tool):
                    return "%s is not installed" % tool
        if "legacy" in params and not shutil.which("iptables-legacy-restore"):
            return "iptables-legacy is not installed"
        return None


def selects(pattern, name, base):
    """--only: full name, base name, or a pattern where * and ? are wildcards (brackets are literal)."""
    if pattern in (name, base):
        return True
    rx = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(rx, name) is not None


def our_leftovers():
    """Namespaces of this run still present, and child processes of this run still alive."""
    prefix = "pfi-%d-" % os.getpid()
    r = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=CMD_TIMEOUT)
    left = ["namespace " + l.split()[0] for l in r.stdout.splitlines() if l.startswith(prefix)]
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/status" % pid) as f:
                status = dict(l.split(":", 1) for l in f.read().splitlines() if ":" in l)
        except OSError:
            continue
        if status.get("PPid", "").strip() == str(os.getpid()) and status.get("State", "").strip()[:1] != "Z":
            left.append("process %s (%s)" % (pid, status.get("Name", "?").strip()))
    left += ["directory " + os.path.join(tempfile.gettempdir(), d) for d in os.listdir(tempfile.gettempdir()) if d.startswith(prefix)]
    return left


def main():
    ap = argparse.ArgumentParser(description="sidecar-init network-namespace tests")
    ap.add_argument("binary")
    ap.add_argument("--sidecar", help="the sidecar binary, for the tests that run it behind the capture rules")
    ap.add_argument("--only", action="append", default=[], help="test name, base name, or pattern with * and ?")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true", help="print each test's duration")
    a = ap.parse_args()

    tests = build_tests()
    if a.only:
        tests = [x for x in tests if any(selects(o, x[0], x[1]) for o in a.only)]
        if not tests:
            print("netns-init: no test matches %s" % a.only, file=sys.stderr)
            return 2
    if a.list:
        for x in tests:
            print(x[0])
        return 0

    if os.geteuid() != 0:
        bar = "=" * 78
        print(bar)
        print("SKIPPED: sidecar-init network-namespace tests need root")
        print("         (they create network namespaces and install netfilter rules; run as root)")
        print(bar)
        print("netns-init: 0 passed, 0 failed, %d skipped" % len(tests))
        return 0

    binary = os.path.abspath(a.binary)
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        print("netns-init: sidecar-init binary not found or not executable: %s" % binary, file=sys.stderr)
        return 1
    for tool in ("ip", "nft"):
        if not shutil.which(tool):
            print("netns-init: %s is required" % tool, file=sys.stderr)
            return 1

    def on_signal(signum, frame):
        raise Interrupted()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    suite = Suite(binary, a.verbose)
    suite.sidecar = os.path.abspath(a.sidecar) if a.sidecar else None
    passed = failed = skipped = 0
    start = time.monotonic()
    all_names = [x[0] for x in build_tests()]
    interrupted = False
    for name, base, fn, params in tests:
        index = all_names.index(name) + 1  # stable per test: its namespaces and 198.18.<index>.0/24
        t = T(suite, index, name)
        t0 = time.monotonic()
        status, reason = "PASS", ""
        try:
            missing = suite.requirements(params)
            if missing:
                raise Skip(missing)
            fn(t, *params)
        except Skip as e:
            status, reason = "SKIP", str(e)
        except Fail as e:
            status, reason = "FAIL", str(e)
        except Interrupted:
            status, reason, interrupted = "FAIL", "interrupted", True
        except Exception as e:  # a bug in the test itself still must not leak anything
            status, reason = "FAIL", "%s: %s" % (type(e).__name__, e)
        finally:
            # Cleanup must run to the end even if Ctrl-C or SIGTERM arrives meanwhile.
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
        passed += status == "PASS"
        failed += status == "FAIL"
        skipped += status == "SKIP"
        if interrupted:
            break
    leftovers = our_leftovers()
    if leftovers:
        print("FAIL leftovers: still present after the tests: %s" % ", ".join(leftovers), flush=True)
        failed += 1
    if a.verbose:
        print("netns-init: took %.1fs" % (time.monotonic() - start))
    print("netns-init: %d passed, %d failed, %d skipped" % (passed, failed, skipped), flush=True)
    return 1 if failed or interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
