#!/usr/bin/env python3
"""End-to-end acceptance tests for four Envoy HTTP filters: fault (envoy.filters.http.fault, HTTPFault),
local_ratelimit (envoy.filters.http.local_ratelimit, LocalRateLimit), cors (envoy.filters.http.cors, Cors plus
CorsPolicy in typed_per_filter_config) and csrf (envoy.filters.http.csrf, CsrfPolicy), through a real proxy on
loopback.

Usage: python3 scripts/lib/filters_suite.py --proxy envoy|sidecar --bin PATH [NAME|PATTERN]... [--list] [-v]
(normally through scripts/e2e-filters).

Every scenario starts an echo backend in this process (127.0.0.1; it answers 200 with a JSON account of the request
it got and `x-backend: echo`, and counts what reached it), writes one plain Envoy v3 bootstrap (admin, one listener
with one HTTP connection manager, stat_prefix `ingress`, whose http_filters are the filter under test then the
router, and cluster `svc`), starts the proxy under test on it with --concurrency 1, waits for admin /ready, sends
its requests and checks status, body, response headers (in order where Envoy's order is stable), what reached the
backend, timing where the filter delays, and the admin /stats deltas under Envoy's exact names. The expectations
are Envoy 1.40's, observed on this machine (see each scenario's docstring); the sidecar must meet the same ones with
the same YAML. Load is bounded in count and time.

Output: one line per scenario (`PASS name: what was measured`, `FAIL name: reason`; -v adds durations and notes),
then `filters: N passed, N failed, 0 skipped`. Each scenario stops what it started (the proxy by PID, the backend by
handle) and removes its directory, pass or fail. Only loopback addresses are used.

Scenarios (--list): fault_*, ratelimit_*, cors_*, csrf_*, mirror_*, format_*, access_log_* (select a group with e.g.
'fault_*'). About 30 s.
"""

import re
import sys
import threading
import time

from filters_kit import (
    CORS,
    CORS_TYPE,
    CSRF,
    CSRF_TYPE,
    FAULT,
    FILTER_CONFIG_TYPE,
    LRL,
    LRL_TYPE,
    Client,
    EchoServer,
    Proxy,
    bootstrap,
    cors_policy,
    csrf,
    delta,
    expect_stats,
    fault,
    hammer,
    http_filter,
    local_rl,
    paced,
    parallel,
    percent,
    request,
    route,
    runtime_percent,
    show,
    statuses,
)
from suite_common import Fail, ScenarioContext, Suite, check, free_ports, main as run_suite, short, wait_for

SCENARIO_LIMIT = 60  # seconds a whole scenario may take (watchdog)

F = "http.ingress.fault."
C = "http.ingress.cors."
X = "http.ingress.csrf."
GRPC = {"content-type": "application/grpc"}


# ---- shared checks ---------------------------------------------------------------------------------------------
def local_reply(r, status, body, what):
    """A reply the proxy made itself: `status`, body `body` as text/plain with its content-length, `server: envoy`
    and date, and no x-envoy-upstream-service-time (nothing went upstream)."""
    check(r.error is None, "%s: %s" % (what, r.error))
    check(r.status == status and r.body == body, "%s: %s %r, expected %d %r" % (what, r.status, r.body, status, body))
    check(r.header("content-type") == "text/plain", "%s: content-type %r, expected text/plain" % (what, r.header("content-type")))
    check(r.header("content-length") == str(len(body)), "%s: content-length %r" % (what, r.header("content-length")))
    check(r.header("server") == "envoy", "%s: server %r, expected envoy" % (what, r.header("server")))
    check(r.header("date") is not None, "%s: no date header" % what)
    check(
        r.header("x-envoy-upstream-service-time") is None,
        "%s: x-envoy-upstream-service-time %r on a local reply" % (what, r.header("x-envoy-upstream-service-time")),
    )


def grpc_reply(r, grpc_status, message, what):
    """A gRPC local reply over HTTP/1.1: 200, content-type application/grpc, grpc-status and grpc-message in the
    headers (trailers-only), empty body, content-length 0."""
    check(r.error is None, "%s: %s" % (what, r.error))
    check(r.status == 200 and r.body == "", "%s: %s %r, expected 200 with an empty body" % (what, r.status, r.body))
    got = (r.header("content-type"), r.header("grpc-status"), r.header("grpc-message"), r.header("content-length"))
    want = ("application/grpc", str(grpc_status), message, "0")
    check(got == want, "%s: content-type, grpc-status, grpc-message, content-length %r, expected %r" % (what, got, want))


def upstream(r, what):
    """A response from the echo backend."""
    check(r.error is None, "%s: %s" % (what, r.error))
    check(r.status == 200 and r.header("x-backend") == "echo", "%s: %s %r, expected the backend's 200" % (what, r.status, short(r.body, 100)))


def ours(d):
    """The filters' own stats in a delta (for notes)."""
    return {k: v for k, v in d.items() if any(m in k for m in (".fault.", "http_local_rate_limit.", ".cors.", ".csrf."))}


def present_at_zero(stats, names, what):
    """Envoy creates a filter's stats when it loads the config: each of `names` is in /stats, at 0."""
    bad = {n: stats.get(n) for n in names if stats.get(n) != 0}
    check(not bad, "%s: stats not present at 0 before any request: %s" % (what, bad))


def seen_header(r, name):
    """The value of request header `name` as the echo backend saw it (None when absent)."""
    values = [v for k, v in r.json()["headers"] if k == name]
    return values[0] if len(values) == 1 else (values or None)


def squash(text):
    return re.sub(r"\s+", "", text)


def exits_on(t, doc, what, envoy_message, sidecar_words, timeout=10.0):
    """Starts the proxy on a config it must refuse: it exits non-zero within `timeout`; for Envoy stderr holds
    `envoy_message`, for the sidecar every word of `sidecar_words`."""
    path = t.write_config(doc)
    proc = t.spawn(t.suite.proxy_argv(path), "proxy-%d" % t.proxy_runs)
    if not wait_for(lambda: not proc.alive(), timeout):
        raise Fail("%s: %s still running %.0fs after start; it must refuse the config" % (what, t.suite.proxy, timeout))
    rc, err = proc.popen.returncode, proc.stderr_text()
    check(rc != 0, "%s: exit status 0" % what)
    if t.suite.proxy == "envoy":
        # Envoy prints protobuf errors in an unstable "debug string" form with random extra spaces: compare the
        # message with all whitespace removed.
        check(squash(envoy_message) in squash(err), "%s: Envoy's message changed: %s" % (what, short(err[-700:])))
    else:
        missing = [w for w in sidecar_words if w not in err]
        check(not missing, "%s: stderr does not name %s: %s" % (what, missing, short(err[-700:])))
    t.note("%s: exit %d, %s" % (what, rc, short(envoy_message if t.suite.proxy == "envoy" else err[-300:], 200)))
    return rc


def doc_with(t, filters, **config):
    port, admin = free_ports(2)
    return bootstrap(port, admin, t.backend().port, filters, **config)


# ---- fault -----------------------------------------------------------------------------------------------------
def scenario_fault_abort(t):
    """abort {http_status: 418, percentage: 100%}: every request gets a local 418 with body 'fault filter abort'
    (text/plain, content-length 18, date and `server: envoy`, no x-envoy-upstream-service-time) and never reaches
    the backend; http.ingress.fault.aborts_injected counts each, delays_injected does not move (the counters
    aborts_injected, delays_injected, faults_overflow, response_rl_injected and the gauge active_faults are all in
    /stats at 0 from the start). A GET's connection
    stays open; a POST whose body the filter never read gets `connection: close` as well."""
    p = t.proxy([http_filter(FAULT, fault(abort={"http_status": 418, "percentage": percent(100)}))])
    before = p.stats()
    names = ["aborts_injected", "delays_injected", "faults_overflow", "response_rl_injected", "active_faults"]
    present_at_zero(before, [F + n for n in names], "fault")
    c = Client(p.port)
    for i in range(3):
        r = c.request("GET", "/a?x=%d" % i)
        local_reply(r, 418, "fault filter abort", "GET %d" % i)
        check(r.header("connection") is None, "GET: connection %r" % r.header("connection"))
    check(c.opened == 1, "the three GETs needed %d connections; the local replies must keep it open" % c.opened)
    c.close()
    r = request(p.port, "POST", "/a", body="payload")
    local_reply(r, 418, "fault filter abort", "POST")
    check(r.header("connection") == "close", "POST with an unread body: connection %r, expected close" % r.header("connection"))
    check(t.backend().hits == 0, "the backend got %d requests" % t.backend().hits)
    d = delta(before, p.stats())
    t.note("stat deltas: %s" % show(ours(d), F))
    expect_stats(d, {F + "aborts_injected": 4, F + "delays_injected": 0, F + "faults_overflow": 0}, "abort")
    check(p.stats().get(F + "active_faults") == 0, "active_faults gauge is not 0 after the aborts")
    return "4 x local 418 'fault filter abort' text/plain; backend untouched; fault.aborts_injected +4"


def scenario_fault_abort_grpc(t):
    """abort {grpc_status: 14}: a gRPC request (content-type application/grpc) gets 200 with content-type
    application/grpc, grpc-status 14, grpc-message 'fault filter abort', empty body and content-length 0; a plain
    request gets HTTP 200 (!) with the text body 'fault filter abort'. An http_status abort (418, on route /http)
    on a gRPC request becomes grpc-status 2 (UNKNOWN: 418 has no gRPC mapping); 503 becomes 14 (UNAVAILABLE)."""
    routes = [
        route("/http418", per_filter={FAULT: fault(abort={"http_status": 418, "percentage": percent(100)})}),
        route("/http503", per_filter={FAULT: fault(abort={"http_status": 503, "percentage": percent(100)})}),
        route("/"),
    ]
    p = t.proxy([http_filter(FAULT, fault(abort={"grpc_status": 14, "percentage": percent(100)}))], routes=routes)
    before = p.stats()
    grpc_reply(p.request("POST", "/pkg.Svc/Call", headers=GRPC, body=""), 14, "fault filter abort", "gRPC request")
    local_reply(p.request("GET", "/plain"), 200, "fault filter abort", "plain request, grpc_status abort")
    grpc_reply(p.request("POST", "/http418", headers=GRPC, body=""), 2, "fault filter abort", "gRPC request, http_status 418")
    grpc_reply(p.request("POST", "/http503", headers=GRPC, body=""), 14, "fault filter abort", "gRPC request, http_status 503")
    check(t.backend().hits == 0, "the backend got %d requests" % t.backend().hits)
    d = delta(before, p.stats())
    expect_stats(d, {F + "aborts_injected": 4}, "grpc abort")
    return "gRPC: 200 grpc-status 14 / 2 (from 418) / 14 (from 503) 'fault filter abort'; plain: 200 text body"


def scenario_fault_delay(t):
    """delay {fixed_delay: 0.3s, percentage: 100%}: the request reaches the backend after >= 0.3 s; while it waits
    the http.ingress.fault.active_faults gauge is 1, afterwards 0; delays_injected +1 per request. The delay is
    not part of x-envoy-upstream-service-time (which starts with the upstream request)."""
    p = t.proxy([http_filter(FAULT, fault(delay={"fixed_delay": "0.3s", "percentage": percent(100)}))])
    before = p.stats()
    r = p.request("GET", "/d1")
    upstream(r, "delayed request")
    check(r.elapsed >= 0.28, "delayed request took %.3f s, expected >= 0.3 s" % r.elapsed)
    ust = int(r.header("x-envoy-upstream-service-time") or -1)
    check(0 <= ust < 250, "x-envoy-upstream-service-time %d ms includes the fault delay" % ust)
    out = []
    th = threading.Thread(target=lambda: out.append(p.request("GET", "/d2")), daemon=True)
    th.start()
    seen = wait_for(lambda: p.stats().get(F + "active_faults") == 1, 0.25, 0.02)
    th.join(5)
    check(seen, "active_faults never read 1 while a request was delayed")
    check(out and out[0].status == 200 and out[0].elapsed >= 0.28, "second delayed request: %r" % (out and out[0]))
    after = p.stats()
    check(after.get(F + "active_faults") == 0, "active_faults %s after the delays" % after.get(F + "active_faults"))
    d = delta(before, after)
    t.note("first took %.3f s (upstream service time %d ms); stat deltas: %s" % (r.elapsed, ust, show(ours(d), F)))
    expect_stats(d, {F + "delays_injected": 2, F + "aborts_injected": 0}, "delay")
    check(t.backend().hits == 2, "the backend got %d requests, expected 2" % t.backend().hits)
    return "2 requests delayed %.2f s / %.2f s; active_faults 1 during, 0 after; delays_injected +2" % (r.elapsed, out[0].elapsed)


def scenario_fault_percentage(t):
    """Percentages: {numerator: 0} never aborts (and counts nothing); an abort without `percentage` never aborts
    either (an unset FractionalPercent is 0 %); {numerator: 50} (denominator HUNDRED by default) aborts roughly
    half of 200 requests (30-70 % accepted); {numerator: 200} is accepted and behaves as 100 %; {numerator: 5000,
    denominator: TEN_THOUSAND} is 50 % too."""
    results = {}
    cases = [
        ("0%", {"http_status": 503, "percentage": {"numerator": 0}}, 50, (0, 0)),
        ("unset", {"http_status": 503}, 50, (0, 0)),
        ("50%", {"http_status": 503, "percentage": {"numerator": 50}}, 200, (60, 140)),
        ("5000/10000", {"http_status": 503, "percentage": percent(5000, "TEN_THOUSAND")}, 200, (60, 140)),
        ("200%", {"http_status": 503, "percentage": percent(200)}, 20, (20, 20)),
    ]
    for label, abort, n, (lo, hi) in cases:
        p = t.proxy([http_filter(FAULT, fault(abort=abort))])
        before = p.stats()
        c = Client(p.port)
        rs = [c.request("GET", "/p") for _ in range(n)]
        c.close()
        counts = statuses(rs)
        aborted = counts.get(503, 0)
        check(counts.get(200, 0) + aborted == n, "%s: %s" % (label, counts))
        check(lo <= aborted <= hi, "%s: %d of %d aborted, expected %d..%d" % (label, aborted, n, lo, hi))
        d = delta(before, p.stats())
        expect_stats(d, {F + "aborts_injected": aborted}, label)
        results[label] = "%d/%d" % (aborted, n)
        p.stop()
    t.note("aborted: %s" % results)
    return "aborted: " + ", ".join("%s %s" % kv for kv in results.items())


def scenario_fault_header_abort(t):
    """abort {header_abort: {}, percentage: 100%}: without x-envoy-fault-abort-request nothing happens; with
    '429' the request gets a local 429 'fault filter abort'; values outside [200, 600) ('700') or not numbers
    ('abc') are ignored and the header goes upstream unchanged; x-envoy-fault-abort-grpc-request: 14 on a gRPC
    request gives grpc-status 14 (on a plain request: HTTP 200 'fault filter abort'). With header_abort but no
    `percentage` (0 %) the header is ignored."""
    p = t.proxy([http_filter(FAULT, fault(abort={"header_abort": {}, "percentage": percent(100)}))])
    before = p.stats()
    upstream(p.request("GET", "/none"), "no header")
    local_reply(p.request("GET", "/h", headers={"x-envoy-fault-abort-request": "429"}), 429, "fault filter abort", "header 429")
    local_reply(p.request("GET", "/h", headers={"x-envoy-fault-abort-request": "503"}), 503, "fault filter abort", "header 503")
    for bad in ("700", "abc", "199"):
        r = p.request("GET", "/h", headers={"x-envoy-fault-abort-request": bad})
        upstream(r, "header %r" % bad)
        check(seen_header(r, "x-envoy-fault-abort-request") == bad, "header %r did not reach the backend unchanged" % bad)
    grpc_reply(
        p.request("POST", "/g", headers={"x-envoy-fault-abort-grpc-request": "14", "content-type": "application/grpc"}, body=""),
        14,
        "fault filter abort",
        "grpc header on a gRPC request",
    )
    local_reply(p.request("GET", "/g", headers={"x-envoy-fault-abort-grpc-request": "14"}), 200, "fault filter abort", "grpc header on a plain request")
    d = delta(before, p.stats())
    t.note("stat deltas: %s" % show(ours(d), F))
    expect_stats(d, {F + "aborts_injected": 4}, "header abort")
    p.stop()
    p = t.proxy([http_filter(FAULT, fault(abort={"header_abort": {}}))])
    upstream(p.request("GET", "/h", headers={"x-envoy-fault-abort-request": "429"}), "header_abort without percentage")
    return "header 429/503 -> local reply; 700/abc/199 ignored and forwarded; grpc header -> grpc-status 14; no percentage -> ignored"


def scenario_fault_header_delay(t):
    """delay {header_delay: {}, percentage: 100%}: x-envoy-fault-delay-request: 300 delays the request >= 0.3 s
    (delays_injected +1) and the header still reaches the backend; no header, '0' and 'abc' do not delay and are
    not counted."""
    p = t.proxy([http_filter(FAULT, fault(delay={"header_delay": {}, "percentage": percent(100)}))])
    before = p.stats()
    r = p.request("GET", "/d", headers={"x-envoy-fault-delay-request": "300"})
    upstream(r, "header 300")
    check(r.elapsed >= 0.28, "header 300: took %.3f s" % r.elapsed)
    check(seen_header(r, "x-envoy-fault-delay-request") == "300", "the delay header did not reach the backend")
    quick = []
    for h in (None, "0", "abc"):
        r2 = p.request("GET", "/q", headers={} if h is None else {"x-envoy-fault-delay-request": h})
        upstream(r2, "header %r" % h)
        check(r2.elapsed < 0.2, "header %r: took %.3f s, expected no delay" % (h, r2.elapsed))
        quick.append("%.3f" % r2.elapsed)
    d = delta(before, p.stats())
    expect_stats(d, {F + "delays_injected": 1}, "header delay")
    return "header 300 -> %.2f s; none/0/abc -> %s s; delays_injected +1" % (r.elapsed, "/".join(quick))


def scenario_fault_max_active(t):
    """fixed_delay 0.5 s at 100 % with max_active_faults 2: of 6 simultaneous requests exactly 2 are delayed and
    the other 4 pass at once (all 200 from the backend); delays_injected +2, faults_overflow +4."""
    p = t.proxy([http_filter(FAULT, fault(delay={"fixed_delay": "0.5s", "percentage": percent(100)}, max_active_faults=2))])
    before = p.stats()
    rs = parallel(p.port, 6, path="/m")
    for i, r in enumerate(rs):
        upstream(r, "request %d" % i)
    times = sorted(r.elapsed for r in rs)
    slow = [x for x in times if x >= 0.45]
    fast = [x for x in times if x < 0.3]
    check(len(slow) == 2 and len(fast) == 4, "elapsed %s: expected 2 delayed (>= 0.5 s) and 4 not" % ["%.2f" % x for x in times])
    d = delta(before, p.stats())
    t.note("elapsed: %s; stat deltas: %s" % (["%.2f" % x for x in times], show(ours(d), F)))
    expect_stats(d, {F + "delays_injected": 2, F + "faults_overflow": 4}, "max_active_faults")
    return "6 at once: 2 delayed, 4 overflowed undelayed; delays_injected +2, faults_overflow +4"


def scenario_fault_per_route(t):
    """typed_per_filter_config under envoy.filters.http.fault replaces the filter's config for that route: /own
    with its own HTTPFault (abort 503) gets 503, /empty with an HTTPFault without abort or delay gets no fault,
    /disabled with envoy.config.route.v3.FilterConfig {disabled: true} gets no fault; other routes get the
    filter-level 418. Only the two aborts are counted."""
    routes = [
        route("/own", per_filter={FAULT: fault(abort={"http_status": 503, "percentage": percent(100)})}),
        route("/empty", per_filter={FAULT: fault()}),
        route("/disabled", per_filter={FAULT: {"@type": FILTER_CONFIG_TYPE, "disabled": True}}),
        route("/"),
    ]
    p = t.proxy([http_filter(FAULT, fault(abort={"http_status": 418, "percentage": percent(100)}))], routes=routes)
    before = p.stats()
    local_reply(p.request("GET", "/own"), 503, "fault filter abort", "/own")
    upstream(p.request("GET", "/empty"), "/empty")
    upstream(p.request("GET", "/disabled"), "/disabled")
    local_reply(p.request("GET", "/other"), 418, "fault filter abort", "/other")
    d = delta(before, p.stats())
    expect_stats(d, {F + "aborts_injected": 2}, "per route")
    return "/own 503, /empty 200, /disabled (FilterConfig disabled) 200, default 418; aborts_injected +2"


def scenario_fault_downstream_cluster(t):
    """x-envoy-downstream-service-cluster: web makes the filter count under http.ingress.fault.web.* as well
    (created on first use: only the counter of the fault that happened appears); the header is forwarded
    upstream. With disable_downstream_cluster_stats: true only the aggregate counters move."""
    p = t.proxy([http_filter(FAULT, fault(delay={"fixed_delay": "0.05s", "percentage": percent(100)}))])
    before = p.stats()
    r = p.request("GET", "/", headers={"x-envoy-downstream-service-cluster": "web"})
    upstream(r, "delayed with downstream cluster")
    check(seen_header(r, "x-envoy-downstream-service-cluster") == "web", "the downstream cluster header was not forwarded")
    after = p.stats()
    d = delta(before, after)
    expect_stats(d, {F + "delays_injected": 1, F + "web.delays_injected": 1}, "downstream cluster")
    check(F + "web.aborts_injected" not in after, "fault.web.aborts_injected exists without an abort")
    p.stop()
    p = t.proxy([http_filter(FAULT, fault(abort={"http_status": 503, "percentage": percent(100)}, disable_downstream_cluster_stats=True))])
    before = p.stats()
    local_reply(p.request("GET", "/", headers={"x-envoy-downstream-service-cluster": "web"}), 503, "fault filter abort", "abort")
    after = p.stats()
    expect_stats(delta(before, after), {F + "aborts_injected": 1}, "disabled downstream stats")
    check(not any(k.startswith(F + "web.") for k in after), "fault.web.* exists with disable_downstream_cluster_stats")
    return "fault.web.delays_injected +1 with the header; none with disable_downstream_cluster_stats"


def scenario_fault_match(t):
    """HTTPFault.headers restricts faults to requests whose headers all match (x-chaos exact 'yes'); upstream_cluster
    restricts them to requests routed to that cluster (svc: aborted; another name: never)."""
    m = [{"name": "x-chaos", "string_match": {"exact": "yes"}}]
    p = t.proxy([http_filter(FAULT, fault(abort={"http_status": 503, "percentage": percent(100)}, headers=m))])
    local_reply(p.request("GET", "/", headers={"x-chaos": "yes"}), 503, "fault filter abort", "x-chaos: yes")
    upstream(p.request("GET", "/", headers={"x-chaos": "no"}), "x-chaos: no")
    upstream(p.request("GET", "/"), "no x-chaos")
    p.stop()
    p = t.proxy([http_filter(FAULT, fault(abort={"http_status": 503, "percentage": percent(100)}, upstream_cluster="other"))])
    upstream(p.request("GET", "/"), "upstream_cluster other")
    p.stop()
    p = t.proxy([http_filter(FAULT, fault(abort={"http_status": 503, "percentage": percent(100)}, upstream_cluster="svc"))])
    local_reply(p.request("GET", "/"), 503, "fault filter abort", "upstream_cluster svc")
    return "headers matcher and upstream_cluster restrict the abort"


def scenario_fault_config_rejected(t):
    """Configs the proxy must refuse at load (exit 1): HTTPFault has no `stat_prefix` field (its stats are always
    http.<hcm prefix>.fault.*, plus fault.<downstream cluster>.*); abort http_status must be in [200, 600); an
    abort needs one of http_status, grpc_status, header_abort; a delay needs fixed_delay or header_delay."""
    cases = [
        ("stat_prefix", fault(abort={"http_status": 503}, stat_prefix="mine"), "no such field: 'stat_prefix'", ["stat_prefix"]),
        ("http_status 600", fault(abort={"http_status": 600}), "FaultAbortValidationError.HttpStatus: value must be inside range [200, 600)", ["http_status"]),
        ("http_status 199", fault(abort={"http_status": 199}), "FaultAbortValidationError.HttpStatus: value must be inside range [200, 600)", ["http_status"]),
        ("abort without a type", fault(abort={"percentage": percent(100)}), 'caused by field: "error_type", reason: is required', ["abort"]),
        ("delay without a type", fault(delay={"percentage": percent(100)}), 'caused by field: "fault_delay_secifier", reason: is required', ["delay"]),
    ]
    for what, cfg, envoy_message, words in cases:
        exits_on(t, doc_with(t, [http_filter(FAULT, cfg)]), what, envoy_message, words)
    return "refused: %s" % ", ".join(c[0] for c in cases)


# ---- local_ratelimit -------------------------------------------------------------------------------------------
L = "lrl.http_local_rate_limit."  # stat_prefix lrl: LocalRateLimit stats are <stat_prefix>.http_local_rate_limit.*


def lrl_stats(d, prefix=L, **want):
    expect_stats(d, {prefix + k: v for k, v in want.items()}, prefix.rstrip("."))


def scenario_ratelimit_exhausted(t):
    """Token bucket max_tokens 3 (1 per 60 s), enabled and enforced 100 %: 3 requests pass, the rest get a local 429
    'local_rate_limited' (text/plain, content-length 18, date, server: envoy; no x-envoy-ratelimited, no
    x-ratelimit-* unless enabled) and do not reach the backend. Stats (at the root, not under http.ingress):
    lrl.http_local_rate_limit.enabled +1 per request, ok +1 per pass, rate_limited and enforced +1 per 429,
    shadow_mode 0 (all five in /stats at 0 from the start). A limited gRPC request gets 200 grpc-status 14
    (UNAVAILABLE) 'local_rate_limited'."""
    p = t.proxy([http_filter(LRL, local_rl(3, 1, "60s"))])
    before = p.stats()
    present_at_zero(before, [L + n for n in ("enabled", "enforced", "ok", "rate_limited", "shadow_mode")], "local_ratelimit")
    c = Client(p.port)
    rs = [c.request("GET", "/r%d" % i) for i in range(5)]
    c.close()
    for i in range(3):
        upstream(rs[i], "request %d" % i)
    for i in (3, 4):
        local_reply(rs[i], 429, "local_rate_limited", "request %d" % i)
        extra = [k for k in rs[i].names() if k.startswith("x-ratelimit") or k == "x-envoy-ratelimited"]
        check(not extra, "request %d: unexpected headers %s" % (i, extra))
    grpc_reply(p.request("POST", "/pkg.Svc/Call", headers=GRPC, body=""), 14, "local_rate_limited", "limited gRPC request")
    check(t.backend().hits == 3, "the backend got %d requests" % t.backend().hits)
    d = delta(before, p.stats())
    t.note("stat deltas: %s" % show(ours(d)))
    lrl_stats(d, enabled=6, ok=3, rate_limited=3, enforced=3, shadow_mode=0)
    return "3 x 200, then 429 'local_rate_limited'; gRPC 200 grpc-status 14; enabled +6 ok +3 rate_limited +3 enforced +3"


def scenario_ratelimit_enabled_enforced(t):
    """filter_enabled / filter_enforced (bucket of 1): without either field nothing is limited and no stat moves
    (both default to 0 %); filter_enabled 0 % likewise; enabled 100 % but enforced 0 % lets everything through but
    counts enabled, ok and rate_limited (not enforced), and adds request_headers_to_add_when_not_enforced to the
    requests that would have been limited (only those)."""
    notes = []
    for label, kw in (("no fields", {"enabled": None, "enforced": None}), ("enabled 0%", {"enabled": 0})):
        p = t.proxy([http_filter(LRL, local_rl(1, 1, "60s", **kw))])
        before = p.stats()
        for i in range(3):
            upstream(p.request("GET", "/"), "%s: request %d" % (label, i))
        lrl_stats(delta(before, p.stats()), enabled=0, ok=0, rate_limited=0, enforced=0)
        notes.append("%s: 3 x 200, no stats" % label)
        p.stop()
    hdr = [{"header": {"key": "x-would-limit", "value": "yes"}}]
    p = t.proxy([http_filter(LRL, local_rl(1, 1, "60s", enforced=0, request_headers_to_add_when_not_enforced=hdr))])
    before = p.stats()
    rs = [p.request("GET", "/") for _ in range(3)]
    for i, r in enumerate(rs):
        upstream(r, "enforced 0%%: request %d" % i)
    marks = [seen_header(r, "x-would-limit") for r in rs]
    check(marks == [None, "yes", "yes"], "x-would-limit as the backend saw it: %s, expected [None, yes, yes]" % marks)
    d = delta(before, p.stats())
    t.note("enforced 0%%: %s" % show(ours(d)))
    lrl_stats(d, enabled=3, ok=1, rate_limited=2, enforced=0)
    notes.append("enforced 0%: 3 x 200, rate_limited +2, enforced 0, header on 2")
    return "; ".join(notes)


def scenario_ratelimit_status_headers(t):
    """status {code: ServiceUnavailable} makes the limited reply 503 (body still 'local_rate_limited');
    response_headers_to_add (x-local-rate-limit: true) go on limited replies only, before the local reply's own
    headers; a status below 400 (OK) is replaced by 429."""
    add = [{"header": {"key": "x-local-rate-limit", "value": "true"}}]
    p = t.proxy([http_filter(LRL, local_rl(1, 1, "60s", status={"code": "ServiceUnavailable"}, response_headers_to_add=add))])
    ok = p.request("GET", "/")
    upstream(ok, "first")
    check(ok.header("x-local-rate-limit") is None, "x-local-rate-limit on a passed request")
    r = p.request("GET", "/")
    local_reply(r, 503, "local_rate_limited", "limited")
    check(r.header("x-local-rate-limit") == "true", "limited: x-local-rate-limit %r" % r.header("x-local-rate-limit"))
    names = r.names()
    check(names[0] == "x-local-rate-limit", "limited reply header order %s: x-local-rate-limit first" % names)
    p.stop()
    p = t.proxy([http_filter(LRL, local_rl(1, 1, "60s", status={"code": "OK"}))])
    upstream(p.request("GET", "/"), "first (status OK)")
    local_reply(p.request("GET", "/"), 429, "local_rate_limited", "status OK")
    return "503 with x-local-rate-limit: true (headers %s); status OK -> 429" % names


def scenario_ratelimit_x_headers(t):
    """enable_x_ratelimit_headers: DRAFT_VERSION_03 (max_tokens 3, 1 token per 2 s): every response, passed or
    limited, carries x-ratelimit-limit (max_tokens), x-ratelimit-remaining (whole tokens left after this request)
    and x-ratelimit-reset (0 while a whole token is left, else the seconds until the next token, rounded up). The
    passes read remaining 2/1/0 and reset 0/0/2; the 429 right after reads 0 and 2; one second later reset is 1;
    after 2 s the next request passes. Limited replies carry them between content-type and date."""
    p = t.proxy([http_filter(LRL, local_rl(3, 1, "2s", enable_x_ratelimit_headers="DRAFT_VERSION_03"))])
    c = Client(p.port)

    def xrl(r):
        return (r.status, r.header("x-ratelimit-limit"), r.header("x-ratelimit-remaining"), r.header("x-ratelimit-reset"))

    got = [xrl(c.request("GET", "/")) for _ in range(4)]
    t0 = time.monotonic()
    want = [(200, "3", "2", "0"), (200, "3", "1", "0"), (200, "3", "0", "2"), (429, "3", "0", "2")]
    check(got == want, "first four (status, limit, remaining, reset): %s, expected %s" % (got, want))
    time.sleep(max(0.0, t0 + 1.2 - time.monotonic()))
    limited = c.request("GET", "/")
    check(xrl(limited) == (429, "3", "0", "1"), "1.2 s later: %s, expected (429, 3, 0, 1)" % (xrl(limited),))
    names = limited.names()
    ct = names.index("content-type")
    check(names[ct + 1 : ct + 4] == ["x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"], "limited reply header order %s" % names)
    time.sleep(max(0.0, t0 + 2.1 - time.monotonic()))
    again = c.request("GET", "/")
    c.close()
    check(again.status == 200, "2.1 s after the bucket emptied: %s, expected a pass" % again.status)
    t.note("sequence %s; 1.2 s: %s; 2.1 s: %s; limited header order %s" % (got, xrl(limited), xrl(again), names))
    return "remaining 2/1/0, reset 0/0/2, 429 reset 2 -> 1 after 1.2 s; pass after 2 s"


def scenario_ratelimit_per_route(t):
    """A LocalRateLimit in a route's typed_per_filter_config has its own bucket and its own stat_prefix (own.*):
    /own (bucket 1) passes once; the other routes use the filter's bucket of 3, unaffected. A filter without
    token_bucket limits nothing (and counts nothing) on routes without their own config."""
    routes = [route("/own", per_filter={LRL: local_rl(1, 1, "60s", stat_prefix="own")}), route("/")]
    p = t.proxy([http_filter(LRL, local_rl(3, 1, "60s"))], routes=routes)
    before = p.stats()
    c = Client(p.port)
    own = [c.request("GET", "/own").status for _ in range(3)]
    other = [c.request("GET", "/x").status for _ in range(5)]
    c.close()
    check(own == [200, 429, 429], "/own: %s, expected [200, 429, 429]" % own)
    check(other == [200, 200, 200, 429, 429], "/x: %s, expected 3 x 200 then 429" % other)
    d = delta(before, p.stats())
    t.note("stat deltas: %s" % show(ours(d)))
    lrl_stats(d, "own.http_local_rate_limit.", enabled=3, ok=1, rate_limited=2, enforced=2)
    lrl_stats(d, enabled=5, ok=3, rate_limited=2, enforced=2)
    p.stop()
    p = t.proxy([http_filter(LRL, {"@type": LRL_TYPE, "stat_prefix": "lrl"})], routes=routes)
    before = p.stats()
    c = Client(p.port)
    own = [c.request("GET", "/own").status for _ in range(2)]
    other = [c.request("GET", "/x").status for _ in range(3)]
    c.close()
    check(own == [200, 429] and other == [200, 200, 200], "filter without bucket: /own %s, /x %s" % (own, other))
    d = delta(before, p.stats())
    lrl_stats(d, enabled=0, ok=0, rate_limited=0)
    return "/own: own bucket and own.* stats; other routes: the filter's; bucketless filter: only /own limited"


def scenario_ratelimit_per_connection(t):
    """local_rate_limit_per_downstream_connection: true (bucket 2): each connection has its own bucket: A passes
    twice then 429, B (opened meanwhile) passes twice then 429, a new connection passes again."""
    p = t.proxy([http_filter(LRL, local_rl(2, 1, "60s", local_rate_limit_per_downstream_connection=True))])
    a, b = Client(p.port), Client(p.port)
    sa = [a.request("GET", "/").status for _ in range(3)]
    sb = [b.request("GET", "/").status for _ in range(3)]
    sa.append(a.request("GET", "/").status)
    check(a.opened == 1 and b.opened == 1, "connections were reopened (a %d, b %d)" % (a.opened, b.opened))
    a.close()
    b.close()
    fresh = request(p.port, "GET", "/").status
    check(sa == [200, 200, 429, 429] and sb == [200, 200, 429] and fresh == 200, "A %s, B %s, new %s" % (sa, sb, fresh))
    return "A %s, B %s, new connection %s" % (sa, sb, fresh)


def scenario_ratelimit_descriptors(t):
    """Descriptors: the route's rate_limits (request_headers x-user -> descriptor key user) and the filter's
    descriptor user=alice (bucket 2) over a default bucket of 5, with x-ratelimit headers: alice passes twice,
    then 429 (x-ratelimit-limit 2, the descriptor's); her passes also took default tokens
    (always_consume_default_token_bucket defaults to true), so bob (no matching descriptor) passes 3 times, not 5.
    With always_consume_default_token_bucket: false bob passes 5 times."""
    action = {"rate_limits": [{"actions": [{"request_headers": {"header_name": "x-user", "descriptor_key": "user"}}]}]}
    desc = [{"entries": [{"key": "user", "value": "alice"}], "token_bucket": {"max_tokens": 2, "tokens_per_fill": 1, "fill_interval": "60s"}}]
    out = []
    for consume, bob_passes in ((None, 3), (False, 5)):
        extra = {"descriptors": desc, "enable_x_ratelimit_headers": "DRAFT_VERSION_03"}
        if consume is not None:
            extra["always_consume_default_token_bucket"] = consume
        p = t.proxy([http_filter(LRL, local_rl(5, 1, "60s", **extra))], routes=[route(action=action)])
        c = Client(p.port)
        alice = [c.request("GET", "/", headers={"x-user": "alice"}) for _ in range(3)]
        bob = [c.request("GET", "/", headers={"x-user": "bob"}) for _ in range(6)]
        c.close()
        sa = [(r.status, r.header("x-ratelimit-limit"), r.header("x-ratelimit-remaining")) for r in alice]
        check(sa == [(200, "2", "1"), (200, "2", "0"), (429, "2", "0")], "alice (status, limit, remaining): %s" % sa)
        sb = [r.status for r in bob]
        check(sb == [200] * bob_passes + [429] * (6 - bob_passes), "always_consume %s: bob %s, expected %d passes" % (consume, sb, bob_passes))
        check(all(r.header("x-ratelimit-limit") == "5" for r in bob), "bob's x-ratelimit-limit is not 5")
        out.append("always_consume %s: bob %d passes" % ("default" if consume is None else consume, bob_passes))
        p.stop()
    return "alice limited at 2 by her descriptor; " + ", ".join(out)


def scenario_ratelimit_bound(t):
    """THE BOUND: rate r = tokens_per_fill / fill_interval = 10/s (1 per 100 ms), burst b = max_tokens = 5. Hammered
    from 4 keep-alive connections for 2 s (window T, first send to last reply), passes <= b + r*T (+1 for the
    token in flight at the edges), and, because refill is continuous, passes >= b + r*T - 3. Then a steady load
    at r/2 (5/s for 2 s) is never limited."""
    p = t.proxy([http_filter(LRL, local_rl(5, 1, "0.1s"))])
    before = p.stats()
    rs = hammer(p.port, 2.0, conns=4, path="/h")
    check(rs and all(r.error is None for r in rs), "hammer: errors %s" % [r.error for r in rs if r.error][:3])
    window = max(r.t1 for r in rs) - min(r.t0 for r in rs)
    passes = sum(r.status == 200 for r in rs)
    limited = sum(r.status == 429 for r in rs)
    check(passes + limited == len(rs), "hammer statuses %s" % statuses(rs))
    bound = 5 + 10 * window
    t.note("hammer: %d requests in %.2f s, %d passed (bound %.1f), %d limited" % (len(rs), window, passes, bound, limited))
    check(limited > 0, "hammer: nothing was limited (%d requests)" % len(rs))
    check(passes <= bound + 1, "hammer: %d passed in %.2f s, more than b + r*T = %.1f" % (passes, window, bound))
    check(passes >= bound - 3, "hammer: only %d passed in %.2f s, expected about b + r*T = %.1f" % (passes, window, bound))
    d = delta(before, p.stats())
    lrl_stats(d, ok=passes, rate_limited=limited)
    time.sleep(0.15)
    steady = paced(p.port, 5, 2.0, path="/s")
    ss = statuses(steady)
    check(ss == {200: len(steady)} and len(steady) >= 9, "steady 5/s for 2 s: %s" % ss)
    return "hammer %d req / %.2f s: %d passed (b + r*T = %.1f); steady 5/s: %d x 200" % (len(rs), window, passes, bound, len(steady))


def scenario_ratelimit_refill_continuous(t):
    """Refill is continuous, not in whole fills at fill_interval ticks: with max_tokens 5 and tokens_per_fill 5 per
    1 s (one token per 200 ms), after the bucket is emptied, bursts of 5 requests every 50 ms for 1.2 s never get
    more than 2 passes in one burst (a tick refill would let 5 through at once) and get about one pass per 200 ms
    (4-7 in total), the first 0.1-0.45 s after the bucket emptied."""
    p = t.proxy([http_filter(LRL, local_rl(5, 5, "1s"))])
    c = Client(p.port)
    first = [c.request("GET", "/").status for _ in range(6)]
    check(first == [200] * 5 + [429], "emptying the bucket: %s" % first)
    t0 = time.monotonic()
    bursts = []
    while time.monotonic() - t0 < 1.2:
        at = time.monotonic() - t0
        ok = sum(c.request("GET", "/").status == 200 for _ in range(5))
        bursts.append((at, ok))
        time.sleep(0.05)
    c.close()
    total = sum(ok for _, ok in bursts)
    firsts = [at for at, ok in bursts if ok]
    t.note("bursts with passes: %s" % [("%.2f" % at, ok) for at, ok in bursts if ok])
    check(max(ok for _, ok in bursts) <= 2, "a burst got %d passes: tokens arrived in a lump" % max(ok for _, ok in bursts))
    check(4 <= total <= 7, "%d passes in 1.2 s at one token per 200 ms" % total)
    check(firsts and 0.1 <= firsts[0] <= 0.45, "first pass %.2f s after the bucket emptied" % (firsts[0] if firsts else -1))
    return "%d passes in 1.2 s, at most %d per burst, first after %.2f s" % (total, max(ok for _, ok in bursts), firsts[0])


def scenario_ratelimit_config_rejected(t):
    """Configs the proxy must refuse at load: fill_interval under 50 ms; an empty stat_prefix; a token_bucket
    without fill_interval; a per-route LocalRateLimit without token_bucket; two descriptors with the same entries.
    (Accepted, by contrast: max_tokens 0, which limits every request, and status codes below 400.)"""
    bucket_route = [route(per_filter={LRL: {"@type": LRL_TYPE, "stat_prefix": "r"}})]
    dup = [{"entries": [{"key": "a", "value": "b"}], "token_bucket": {"max_tokens": 1, "fill_interval": "1s"}}] * 2
    cases = [
        ("fill_interval 10ms", [http_filter(LRL, local_rl(1, 1, "0.01s"))], {}, "local rate limit token bucket fill timer must be >= 50ms", ["fill_interval"]),
        ("empty stat_prefix", [http_filter(LRL, local_rl(1, 1, "1s", stat_prefix=""))], {}, "LocalRateLimitValidationError.StatPrefix: value length must be at least 1 characters", ["stat_prefix"]),
        ("no fill_interval", [http_filter(LRL, {"@type": LRL_TYPE, "stat_prefix": "x", "token_bucket": {"max_tokens": 1}})], {}, "TokenBucketValidationError.FillInterval: value is required", ["fill_interval"]),
        ("per-route without token_bucket", [http_filter(LRL, local_rl(1, 1, "1s"))], {"routes": bucket_route}, "local rate limit token bucket must be set for per filter configs", ["token_bucket"]),
        ("duplicate descriptor", [http_filter(LRL, local_rl(1, 1, "1s", descriptors=dup))], {}, "duplicate descriptor in the local rate descriptor: a=b", ["duplicate"]),
    ]
    for what, filters, extra, envoy_message, words in cases:
        exits_on(t, doc_with(t, filters, **extra), what, envoy_message, words)
    p = t.proxy([http_filter(LRL, local_rl(0, 1, "1s"))])
    st = [p.request("GET", "/").status for _ in range(2)]
    check(st == [429, 429], "max_tokens 0: %s, expected every request limited" % st)
    return "refused: %s; max_tokens 0 accepted and limits all" % ", ".join(c[0] for c in cases)


# ---- cors ------------------------------------------------------------------------------------------------------
CORS_FILTER = http_filter(CORS, {"@type": CORS_TYPE})
A = "https://a.example"


def preflight(origin, method="POST", **extra):
    h = {"origin": origin, "access-control-request-method": method}
    h.update(extra)
    return h


def cors_headers(r):
    return [(k, v) for k, v in r.headers if k.startswith("access-control-")]


def scenario_cors_preflight(t):
    """CorsPolicy on the virtual host (typed_per_filter_config envoy.filters.http.cors) with the Cors filter in
    http_filters. A preflight (OPTIONS + Origin + Access-Control-Request-Method) from an allowed origin is answered
    by the proxy: 200, empty body, content-length 0, no content-type, no x-envoy-upstream-service-time, headers in
    this order: access-control-allow-origin (the request's origin), -allow-methods, -allow-headers, -max-age,
    -expose-headers, then date, server, content-length. The requested method is not checked against
    allow_methods. Nothing reaches the backend; http.ingress.cors.origin_valid +1 each (origin_valid and
    origin_invalid are in /stats at 0 from the start)."""
    pol = cors_policy([A], allow_methods="GET,POST", allow_headers="x-custom,content-type", expose_headers="x-backend,x-exp", max_age="600")
    p = t.proxy([CORS_FILTER], vhost={"typed_per_filter_config": {CORS: pol}})
    before = p.stats()
    present_at_zero(before, [C + "origin_valid", C + "origin_invalid"], "cors")
    want = [
        ("access-control-allow-origin", A),
        ("access-control-allow-methods", "GET,POST"),
        ("access-control-allow-headers", "x-custom,content-type"),
        ("access-control-max-age", "600"),
        ("access-control-expose-headers", "x-backend,x-exp"),
    ]
    for method in ("POST", "DELETE"):
        r = p.request("OPTIONS", "/any", headers=preflight(A, method, **{"access-control-request-headers": "x-custom"}))
        check(r.error is None and r.status == 200 and r.body == "", "preflight (%s): %r" % (method, r))
        check(cors_headers(r) == want, "preflight (%s) CORS headers %s, expected %s" % (method, cors_headers(r), want))
        check(r.names() == [k for k, _ in want] + ["date", "server", "content-length"], "preflight header order %s" % r.names())
        check(r.header("content-length") == "0", "preflight content-length %r" % r.header("content-length"))
    check(t.backend().hits == 0, "a preflight reached the backend")
    d = delta(before, p.stats())
    expect_stats(d, {C + "origin_valid": 2, C + "origin_invalid": 0}, "preflight")
    return "local 200, empty, ACAO/methods/headers/max-age/expose in order; method not checked; origin_valid +2"


def scenario_cors_simple(t):
    """Actual (non-preflight) requests go upstream: from an allowed origin the response gets
    access-control-allow-origin (the origin) and access-control-expose-headers appended after the backend's
    headers (no -allow-methods / -max-age); from another origin nothing is added (origin_invalid +1); without
    Origin nothing happens and nothing is counted. OPTIONS without Access-Control-Request-Method (or with an empty
    one) is an actual request. A preflight from a disallowed origin goes upstream (forward_not_matching_preflights
    defaults to true) and gets no CORS headers; with forward_not_matching_preflights: false it gets a local 200,
    empty, without access-control-allow-origin (and without -expose-headers) but, oddly, with the policy's
    -allow-credentials, -allow-methods, -allow-headers and -max-age."""
    pol = cors_policy([A], allow_methods="GET,POST", expose_headers="x-backend", max_age="600")
    nofwd = cors_policy(
        [A],
        allow_methods="GET",
        allow_headers="x-h",
        expose_headers="x-e",
        max_age="5",
        allow_credentials=True,
        forward_not_matching_preflights=False,
    )
    p = t.proxy([CORS_FILTER], routes=[route("/nofwd", per_filter={CORS: nofwd}), route("/")], vhost={"typed_per_filter_config": {CORS: pol}})
    before = p.stats()
    r = p.request("GET", "/", headers={"origin": A})
    upstream(r, "GET from allowed origin")
    want = [("access-control-allow-origin", A), ("access-control-expose-headers", "x-backend")]
    check(cors_headers(r) == want, "allowed GET: %s" % cors_headers(r))
    check(r.names()[-2:] == [k for k, _ in want], "allowed GET: CORS headers not last: %s" % r.names())
    r = p.request("POST", "/", headers={"origin": A}, body="x")
    upstream(r, "POST from allowed origin")
    check(cors_headers(r) == want, "allowed POST: %s" % cors_headers(r))
    for what, h in (("OPTIONS without ACRM", {"origin": A}), ("OPTIONS with empty ACRM", preflight(A, ""))):
        r = p.request("OPTIONS", "/", headers=h)
        upstream(r, what)
        check(cors_headers(r) == want, "%s: %s" % (what, cors_headers(r)))
    r = p.request("GET", "/", headers={"origin": "https://evil.example"})
    upstream(r, "GET from another origin")
    check(cors_headers(r) == [], "disallowed GET: %s" % cors_headers(r))
    r = p.request("GET", "/")
    upstream(r, "GET without origin")
    check(cors_headers(r) == [], "GET without origin: %s" % cors_headers(r))
    hits = t.backend().hits
    r = p.request("OPTIONS", "/", headers=preflight("https://evil.example"))
    upstream(r, "preflight from another origin")
    check(cors_headers(r) == [] and t.backend().hits == hits + 1, "disallowed preflight: %s" % cors_headers(r))
    r = p.request("OPTIONS", "/nofwd", headers=preflight("https://evil.example"))
    check(r.status == 200 and r.body == "" and t.backend().hits == hits + 1, "disallowed preflight, not forwarded: %r" % r)
    nofwd_want = [
        ("access-control-allow-credentials", "true"),
        ("access-control-allow-methods", "GET"),
        ("access-control-allow-headers", "x-h"),
        ("access-control-max-age", "5"),
    ]
    check(cors_headers(r) == nofwd_want, "disallowed preflight, not forwarded: %s, expected %s" % (cors_headers(r), nofwd_want))
    check(r.names() == [k for k, _ in nofwd_want] + ["date", "server", "content-length"], "not-forwarded preflight headers %s" % r.names())
    d = delta(before, p.stats())
    t.note("stat deltas: %s" % show(ours(d), C))
    expect_stats(d, {C + "origin_valid": 4, C + "origin_invalid": 3}, "simple")
    return "allowed: ACAO + expose appended; disallowed/no origin: none; bad preflight forwarded (or local 200); valid +4 invalid +3"


def scenario_cors_credentials(t):
    """allow_credentials: true adds access-control-allow-credentials: true right after -allow-origin, on preflights
    and actual responses; false or unset: no such header. An origin matcher that matches '*' (exact '*') allows
    every origin, and the reply still names the request's origin, never '*'."""
    routes = [
        route("/creds", per_filter={CORS: cors_policy([A], allow_credentials=True, allow_methods="GET")}),
        route("/nocreds", per_filter={CORS: cors_policy([A], allow_credentials=False, allow_methods="GET")}),
        route("/star", per_filter={CORS: cors_policy([{"exact": "*"}])}),
    ]
    p = t.proxy([CORS_FILTER], routes=routes)
    r = p.request("OPTIONS", "/creds", headers=preflight(A, "GET"))
    want = [("access-control-allow-origin", A), ("access-control-allow-credentials", "true"), ("access-control-allow-methods", "GET")]
    check(r.status == 200 and cors_headers(r) == want, "preflight with credentials: %s" % cors_headers(r))
    r = p.request("GET", "/creds", headers={"origin": A})
    upstream(r, "GET with credentials")
    check(cors_headers(r) == want[:2], "GET with credentials: %s" % cors_headers(r))
    r = p.request("OPTIONS", "/nocreds", headers=preflight(A, "GET"))
    check(cors_headers(r) == [want[0], want[2]], "preflight, allow_credentials false: %s" % cors_headers(r))
    for origin in ("https://anything.example", "null"):
        r = p.request("OPTIONS", "/star", headers=preflight(origin, "GET"))
        check(r.status == 200 and cors_headers(r) == [("access-control-allow-origin", origin)], "'*' preflight from %s: %s" % (origin, cors_headers(r)))
        r = p.request("GET", "/star", headers={"origin": origin})
        check(cors_headers(r) == [("access-control-allow-origin", origin)], "'*' GET from %s: %s" % (origin, cors_headers(r)))
    return "credentials header after ACAO when true only; '*' matcher echoes the origin"


def scenario_cors_origin_match(t):
    """allow_origin_string_match: exact (case-sensitive: HTTPS://A.EXAMPLE does not match), prefix
    ('https://app.' matches https://app.foo, not http://app.foo), safe_regex (a full match:
    https://[a-z]+\\.example\\.com matches https://abc.example.com, not with a suffix, not upper case). Several
    matchers: any one suffices. Origin compared as sent: a list 'a, b' matches nothing."""
    routes = [
        route("/exact", per_filter={CORS: cors_policy([A, "https://b.example"])}),
        route("/prefix", per_filter={CORS: cors_policy([{"prefix": "https://app."}])}),
        route("/regex", per_filter={CORS: cors_policy([{"safe_regex": {"regex": r"https://[a-z]+\.example\.com"}}])}),
    ]
    p = t.proxy([CORS_FILTER], routes=routes)
    cases = [
        ("/exact", A, True),
        ("/exact", "https://b.example", True),
        ("/exact", "HTTPS://A.EXAMPLE", False),
        ("/exact", "https://a.example:443", False),
        ("/exact", A + ", https://b.example", False),
        ("/prefix", "https://app.foo", True),
        ("/prefix", "http://app.foo", False),
        ("/regex", "https://abc.example.com", True),
        ("/regex", "https://abc.example.com.evil", False),
        ("/regex", "https://ABC.example.com", False),
    ]
    before = p.stats()
    for path, origin, ok in cases:
        r = p.request("GET", path, headers={"origin": origin})
        upstream(r, "%s from %s" % (path, origin))
        got = cors_headers(r)
        want = [("access-control-allow-origin", origin)] if ok else []
        check(got == want, "%s from %r: %s, expected %s" % (path, origin, got, want))
    d = delta(before, p.stats())
    valid = sum(1 for c in cases if c[2])
    expect_stats(d, {C + "origin_valid": valid, C + "origin_invalid": len(cases) - valid}, "origin match")
    return "%d matched, %d not (exact case-sensitive, prefix, full-match regex)" % (valid, len(cases) - valid)


def scenario_cors_filter_enabled(t):
    """filter_enabled 0 %: no CORS handling at all (preflight forwarded, no headers, no stats). filter_enabled 0 %
    with shadow_enabled 100 %: origins are checked and counted (origin_valid / origin_invalid) but nothing is
    added and preflights are forwarded. A CorsPolicy without the Cors filter in http_filters does nothing."""
    routes = [
        route("/off", per_filter={CORS: cors_policy([A], allow_methods="GET", filter_enabled=runtime_percent(0, "cors_off"))}),
        route("/shadow", per_filter={CORS: cors_policy([A], allow_methods="GET", filter_enabled=runtime_percent(0, "cors_off"), shadow_enabled=runtime_percent(100, "cors_shadow"))}),
    ]
    p = t.proxy([CORS_FILTER], routes=routes)
    before = p.stats()
    for path in ("/off", "/shadow"):
        for method, h in (("OPTIONS", preflight(A, "GET")), ("GET", {"origin": A}), ("GET", {"origin": "https://evil.example"})):
            r = p.request(method, path, headers=h)
            upstream(r, "%s %s" % (method, path))
            check(cors_headers(r) == [], "%s %s: %s" % (method, path, cors_headers(r)))
    d = delta(before, p.stats())
    t.note("stat deltas: %s" % show(ours(d), C))
    expect_stats(d, {C + "origin_valid": 2, C + "origin_invalid": 1}, "off + shadow")
    p.stop()
    p = t.proxy([], vhost={"typed_per_filter_config": {CORS: cors_policy([A], allow_methods="GET")}})
    r = p.request("OPTIONS", "/", headers=preflight(A, "GET"))
    upstream(r, "policy without the filter")
    check(cors_headers(r) == [], "policy without the filter: %s" % cors_headers(r))
    return "0 %: untouched, no stats; shadow: counted (valid +2, invalid +1), untouched; no filter: untouched"


def scenario_cors_route_override(t):
    """A route's CorsPolicy overrides the virtual host's field by field: the route sets only origins (b.example),
    so a.example (allowed on the host) is refused there, while allow_methods, max_age and allow_credentials come
    from the host's policy. allow_private_network_access: true answers a preflight carrying
    access-control-request-private-network: true with access-control-allow-private-network: true (after -max-age,
    before -expose-headers); without that request header (or with 'false') nothing is added."""
    vpol = cors_policy([A], allow_methods="PUT", max_age="60", allow_credentials=True)
    routes = [
        route("/merge", per_filter={CORS: cors_policy(["https://b.example"])}),
        route("/pna", per_filter={CORS: cors_policy([A], allow_private_network_access=True)}),
        route("/"),
    ]
    p = t.proxy([CORS_FILTER], routes=routes, vhost={"typed_per_filter_config": {CORS: vpol}})
    r = p.request("OPTIONS", "/merge", headers=preflight("https://b.example", "PUT"))
    want = [
        ("access-control-allow-origin", "https://b.example"),
        ("access-control-allow-credentials", "true"),
        ("access-control-allow-methods", "PUT"),
        ("access-control-max-age", "60"),
    ]
    check(r.status == 200 and cors_headers(r) == want, "route policy merged with host policy: %s, expected %s" % (cors_headers(r), want))
    r = p.request("OPTIONS", "/merge", headers=preflight(A, "PUT"))
    upstream(r, "host's origin on the overriding route")
    check(cors_headers(r) == [], "a.example on /merge: %s" % cors_headers(r))
    r = p.request("OPTIONS", "/", headers=preflight(A, "PUT"))
    check(r.status == 200 and cors_headers(r) == [("access-control-allow-origin", A)] + want[1:], "host policy: %s" % cors_headers(r))
    r = p.request("OPTIONS", "/pna", headers=preflight(A, "GET", **{"access-control-request-private-network": "true"}))
    pna = [("access-control-allow-origin", A)] + want[1:] + [("access-control-allow-private-network", "true")]
    check(cors_headers(r) == pna, "private network preflight: %s, expected %s" % (cors_headers(r), pna))
    for v in (None, "false"):
        h = preflight(A, "GET") if v is None else preflight(A, "GET", **{"access-control-request-private-network": v})
        r = p.request("OPTIONS", "/pna", headers=h)
        check(r.header("access-control-allow-private-network") is None, "private network header with request value %r" % v)
    return "route origins replace host origins, other fields inherited; private network access answered"


def scenario_cors_deprecated_field(t):
    """Envoy 1.40 still honours the deprecated VirtualHost `cors` field (CorsPolicy in route_components) when the
    Cors filter is present: a preflight from the allowed origin is answered locally like with typed_per_filter_config."""
    legacy = {"allow_origin_string_match": [{"exact": A}], "allow_methods": "GET"}
    p = t.proxy([CORS_FILTER], vhost={"cors": legacy})
    r = p.request("OPTIONS", "/", headers=preflight(A, "GET"))
    check(r.status == 200 and r.body == "", "preflight: %r" % r)
    want = [("access-control-allow-origin", A), ("access-control-allow-methods", "GET")]
    check(cors_headers(r) == want, "preflight: %s" % cors_headers(r))
    check(t.backend().hits == 0, "the preflight reached the backend")
    r = p.request("GET", "/", headers={"origin": "https://evil.example"})
    check(cors_headers(r) == [], "disallowed GET: %s" % cors_headers(r))
    return "vhost cors field: preflight answered %s" % want


def scenario_cors_config_rejected(t):
    """Refused at load: a field on the Cors filter config itself (it has none; the policy goes in
    typed_per_filter_config) and an invalid safe_regex in allow_origin_string_match."""
    exits_on(t, doc_with(t, [http_filter(CORS, {"@type": CORS_TYPE, "allow_methods": "GET"})]), "field on Cors", "no such field: 'allow_methods'", ["allow_methods"])
    bad = cors_policy([{"safe_regex": {"regex": "(("}}])
    exits_on(t, doc_with(t, [CORS_FILTER], vhost={"typed_per_filter_config": {CORS: bad}}), "bad regex", "missing ): ((", ["(("])
    return "refused: field on Cors, regex '(('"


# ---- csrf ------------------------------------------------------------------------------------------------------
HOST = "app.example:8080"


def csrf_call(p, method, origin=None, referer=None, host=HOST, path="/", body="x", extra=None):
    h = {"host": host}
    if origin is not None:
        h["origin"] = origin
    if referer is not None:
        h["referer"] = referer
    h.update(extra or {})
    return p.request(method, path, headers=h, body=body if method in ("POST", "PUT", "PATCH") else None)


def scenario_csrf_origin(t):
    """CsrfPolicy filter_enabled 100 %: a POST whose Origin host[:port] differs from the Host header gets a local
    403 'Invalid origin' (text/plain, content-length 14; `connection: close` since the body was never read) and
    request_invalid +1 (http.ingress.csrf.*); the same host and port passes whatever the scheme (request_valid +1);
    host equal but port missing or different is invalid; the comparison is case-sensitive; x-forwarded-host does
    not count. A mismatching gRPC request gets 200 grpc-status 7 (PERMISSION_DENIED) 'Invalid origin'. The three
    counters are in /stats at 0 from the start."""
    p = t.proxy([http_filter(CSRF, csrf())])
    before = p.stats()
    present_at_zero(before, [X + n for n in ("missing_source_origin", "request_invalid", "request_valid")], "csrf")
    upstream(csrf_call(p, "POST", "http://app.example:8080"), "same origin")
    upstream(csrf_call(p, "POST", "https://app.example:8080"), "same host, other scheme")
    upstream(csrf_call(p, "POST", "http://app.example:8080/some/path"), "origin with a path")
    r = csrf_call(p, "POST", "http://evil.example")
    local_reply(r, 403, "Invalid origin", "other origin")
    check(r.header("connection") == "close", "403 to a POST with a body: connection %r" % r.header("connection"))
    r = csrf_call(p, "DELETE", "http://evil.example")
    local_reply(r, 403, "Invalid origin", "DELETE without body")
    check(r.header("connection") is None, "403 to a DELETE without body: connection %r" % r.header("connection"))
    for what, origin, host in (
        ("port missing in origin", "http://app.example", HOST),
        ("port missing in host", "http://app.example:8080", "app.example"),
        ("upper case", "http://APP.example:8080", HOST),
    ):
        local_reply(csrf_call(p, "POST", origin, host=host), 403, "Invalid origin", what)
    local_reply(csrf_call(p, "POST", "http://other.example", extra={"x-forwarded-host": "other.example"}), 403, "Invalid origin", "x-forwarded-host")
    grpc_reply(csrf_call(p, "POST", "http://evil.example", extra=GRPC, body=""), 7, "Invalid origin", "gRPC")
    d = delta(before, p.stats())
    t.note("stat deltas: %s" % show(ours(d), X))
    expect_stats(d, {X + "request_valid": 3, X + "request_invalid": 7, X + "missing_source_origin": 0}, "origin")
    return "same host:port valid (any scheme); other/port/case/xfh 403 'Invalid origin'; gRPC grpc-status 7"


def scenario_csrf_methods(t):
    """Only mutating methods are checked: GET, HEAD and OPTIONS from another origin pass and count nothing; PUT,
    DELETE, PATCH and POST are refused (request_invalid +4)."""
    p = t.proxy([http_filter(CSRF, csrf())])
    before = p.stats()
    for m in ("GET", "HEAD", "OPTIONS"):
        r = csrf_call(p, m, "http://evil.example")
        check(r.error is None and r.status == 200 and r.header("x-backend") == "echo", "%s: %r" % (m, r))
    for m in ("PUT", "DELETE", "PATCH", "POST"):
        local_reply(csrf_call(p, m, "http://evil.example"), 403, "Invalid origin", m)
    d = delta(before, p.stats())
    expect_stats(d, {X + "request_invalid": 4, X + "request_valid": 0, X + "missing_source_origin": 0}, "methods")
    return "GET/HEAD/OPTIONS unchecked; PUT/DELETE/PATCH/POST 403"


def scenario_csrf_source(t):
    """The source origin is Origin, else Referer (host[:port] of the URL): without both, or with Origin 'null', a
    POST gets 403 'Invalid origin' and counts missing_source_origin (not request_invalid); a Referer on the same
    host:port passes; a bad Referer is invalid; a bad Origin is invalid even with a good Referer."""
    p = t.proxy([http_filter(CSRF, csrf())])
    before = p.stats()
    local_reply(csrf_call(p, "POST"), 403, "Invalid origin", "no origin, no referer")
    local_reply(csrf_call(p, "POST", "null"), 403, "Invalid origin", "origin null")
    upstream(csrf_call(p, "POST", referer="http://app.example:8080/page?x=1"), "good referer")
    local_reply(csrf_call(p, "POST", referer="http://evil.example/page"), 403, "Invalid origin", "bad referer")
    local_reply(csrf_call(p, "POST", "http://evil.example", referer="http://app.example:8080/"), 403, "Invalid origin", "bad origin, good referer")
    d = delta(before, p.stats())
    t.note("stat deltas: %s" % show(ours(d), X))
    expect_stats(d, {X + "missing_source_origin": 2, X + "request_invalid": 2, X + "request_valid": 1}, "source")
    return "missing/null -> 403 + missing_source_origin +2; referer used when no origin; origin wins"


def scenario_csrf_additional_origins(t):
    """additional_origins are StringMatchers on the source origin's host[:port], not on the full origin URL: exact
    'trusted.example' admits https://trusted.example (not :8443), prefix 'partner.' admits https://partner.foo,
    safe_regex '.*\\.corp\\.example' admits http://x.corp.example but not with a suffix; an exact
    'https://trusted2.example' matches nothing."""
    matchers = ["trusted.example", {"prefix": "partner."}, {"safe_regex": {"regex": r".*\.corp\.example"}}, "https://trusted2.example"]
    p = t.proxy([http_filter(CSRF, csrf(additional_origins=matchers))])
    before = p.stats()
    cases = [
        ("https://trusted.example", True),
        ("http://trusted.example", True),
        ("https://trusted.example:8443", False),
        ("https://partner.foo", True),
        ("http://x.corp.example", True),
        ("http://x.corp.example.evil", False),
        ("https://trusted2.example", False),
    ]
    for origin, ok in cases:
        r = csrf_call(p, "POST", origin)
        if ok:
            upstream(r, origin)
        else:
            local_reply(r, 403, "Invalid origin", origin)
    d = delta(before, p.stats())
    valid = sum(1 for c in cases if c[1])
    expect_stats(d, {X + "request_valid": valid, X + "request_invalid": len(cases) - valid}, "additional origins")
    return "%d admitted by host matchers, %d refused (incl. a full-URL exact matcher)" % (valid, len(cases) - valid)


def scenario_csrf_shadow(t):
    """filter_enabled 0 % with shadow_enabled 100 %: everything passes but is counted (request_invalid,
    request_valid, missing_source_origin); filter_enabled 0 % alone: nothing checked, nothing counted. A route's
    CsrfPolicy in typed_per_filter_config replaces the filter's: /open (0 %) passes, /shadow counts, other routes
    are enforced."""
    p = t.proxy([http_filter(CSRF, csrf(enabled=0, shadow=100))])
    before = p.stats()
    upstream(csrf_call(p, "POST", "http://evil.example"), "shadow, bad origin")
    upstream(csrf_call(p, "POST", "http://app.example:8080"), "shadow, good origin")
    upstream(csrf_call(p, "POST"), "shadow, no origin")
    expect_stats(delta(before, p.stats()), {X + "request_invalid": 1, X + "request_valid": 1, X + "missing_source_origin": 1}, "shadow")
    p.stop()
    p = t.proxy([http_filter(CSRF, csrf(enabled=0))])
    before = p.stats()
    upstream(csrf_call(p, "POST", "http://evil.example"), "0 %, bad origin")
    expect_stats(delta(before, p.stats()), {X + "request_invalid": 0, X + "request_valid": 0}, "0 %")
    p.stop()
    routes = [route("/open", per_filter={CSRF: csrf(enabled=0)}), route("/shadow", per_filter={CSRF: csrf(enabled=0, shadow=100)}), route("/")]
    p = t.proxy([http_filter(CSRF, csrf())], routes=routes)
    before = p.stats()
    upstream(csrf_call(p, "POST", "http://evil.example", path="/open"), "/open")
    upstream(csrf_call(p, "POST", "http://evil.example", path="/shadow"), "/shadow")
    local_reply(csrf_call(p, "POST", "http://evil.example", path="/x"), 403, "Invalid origin", "/x")
    expect_stats(delta(before, p.stats()), {X + "request_invalid": 2}, "per route")
    return "shadow counts without refusing; 0 % does nothing; per-route policy replaces the filter's"


def scenario_csrf_config_rejected(t):
    """CsrfPolicy.filter_enabled is required, in http_filters and in typed_per_filter_config alike."""
    exits_on(t, doc_with(t, [http_filter(CSRF, {"@type": CSRF_TYPE})]), "filter without filter_enabled", "CsrfPolicyValidationError.FilterEnabled: value is required", ["filter_enabled"])
    routes = [route(per_filter={CSRF: {"@type": CSRF_TYPE}})]
    exits_on(t, doc_with(t, [http_filter(CSRF, csrf())], routes=routes), "route without filter_enabled", "CsrfPolicyValidationError.FilterEnabled: value is required", ["filter_enabled"])
    return "refused: CsrfPolicy without filter_enabled (filter and route)"


# ---- request mirroring ---------------------------------------------------------------------------------------
def scenario_mirror_route(t):
    """Route request_mirror_policies [{cluster: mirror}]: the client gets the main backend's answer; the mirror
    cluster gets a copy with `-shadow` added to the host before its port, `x-envoy-internal: true`, and the body;
    its answers count in cluster.mirror.*. A policy with runtime_fraction 0 % mirrors nothing, and
    disable_shadow_host_suffix_append keeps the host."""
    mirror = EchoServer()
    t.on_close("mirror backend on %d" % mirror.port, mirror.close)
    routes = [
        route("/none", action={"request_mirror_policies": [
            {"cluster": "mirror", "runtime_fraction": {"default_value": percent(0)}}]}),
        route("/keep", action={"request_mirror_policies": [
            {"cluster": "mirror", "disable_shadow_host_suffix_append": True}]}),
        route("/", action={"request_mirror_policies": [{"cluster": "mirror"}]}),
    ]
    p = t.proxy([], routes=routes, clusters={"mirror": mirror.port})
    r = request(p.port, "GET", "/a?x=1", {"host": "api.example.com:8080"})
    check(r.status == 200 and r.header("x-backend") == "echo", "GET: %d from %r" % (r.status, r.header("x-backend")))
    check(wait_for(lambda: mirror.hits == 1, 5), "the mirror got %d copies of the GET" % mirror.hits)
    copy = mirror.requests[0]
    host = [v for k, v in copy["headers"] if k == "host"]
    check(host == ["api.example.com-shadow:8080"], "the copy's host: %r" % host)
    check(copy["path"] == "/a?x=1", "the copy's path: %r" % copy["path"])
    internal = [v for k, v in copy["headers"] if k == "x-envoy-internal"]
    check(internal == ["true"], "the copy's x-envoy-internal: %r" % internal)
    r = request(p.port, "POST", "/b", {"host": "api.example.com"}, body="mirrored body")
    check(r.status == 200, "POST: %d" % r.status)
    check(wait_for(lambda: mirror.hits == 2, 5), "the mirror got %d copies after the POST" % mirror.hits)
    check(mirror.requests[1]["body"] == "mirrored body", "the copy's body: %r" % mirror.requests[1]["body"])
    for _ in range(5):
        check(request(p.port, "GET", "/none").status == 200, "a request on the 0 % route failed")
    r = request(p.port, "GET", "/keep", {"host": "api.example.com"})
    check(wait_for(lambda: mirror.hits == 3, 5), "the mirror got %d copies in all (expected 3)" % mirror.hits)
    host = [v for k, v in mirror.requests[2]["headers"] if k == "host"]
    check(host == ["api.example.com"], "disable_shadow_host_suffix_append: host %r" % host)
    check(wait_for(lambda: p.stats().get("cluster.mirror.upstream_rq_200") == 3, 5),
          "cluster.mirror.upstream_rq_200 is %r" % p.stats().get("cluster.mirror.upstream_rq_200"))
    check(t.backend().hits == 8, "the main backend got %d requests, expected 8" % t.backend().hits)
    return "3 copies (GET with -shadow host before the port, POST with its body, one with the host kept), none on the 0 % route; cluster.mirror.upstream_rq_200 3"


# ---- header value formatting (the substitution formatter) -------------------------------------------------------
def add(key, value, **extra):
    """A HeaderValueOption for *_headers_to_add."""
    h = {"header": {"key": key, "value": value}}
    h.update(extra)
    return h


def scenario_format_request_headers(t):
    """Route request_headers_to_add with Envoy's command operators, as Envoy 1.40 renders them for the upstream:
    %REQ(x-a)% copies the client's header (the first of two values), %REQ(x-nope?x-a):3% falls back to x-a and
    keeps 3 bytes, %REQ(x-nope)% renders empty so the header is not added at all, unless keep_empty_value (then
    it is sent empty); pseudo-headers :method, :path (with its query) and :authority (the Host); in request headers
    %RESP(x-backend)% is empty and %RESPONSE_CODE% is 0; %PROTOCOL%, %ROUTE_NAME% and %UPSTREAM_CLUSTER% are
    HTTP/1.1, r0 and svc; %%  is a literal percent sign."""
    routes = [route("/", name="r0", request_headers_to_add=[
        add("x-copy", "%REQ(x-a)%"),
        add("x-alt", "%REQ(x-nope?x-a):3%"),
        add("x-absent", "%REQ(x-nope)%"),
        add("x-kept", "%REQ(x-nope)%", keep_empty_value=True),
        add("x-line", "%REQ(:method)% %REQ(:path)% %REQ(:authority)%"),
        add("x-response", "[%RESP(x-backend)%][%RESPONSE_CODE%]"),
        add("x-info", "%PROTOCOL% %ROUTE_NAME% %UPSTREAM_CLUSTER% 100%%"),
    ])]
    p = t.proxy([], routes=routes)
    r = p.request("GET", "/f?q=1", {"x-a": "hello", "X-A": "two"})
    upstream(r, "GET")
    got = {name: seen_header(r, name) for name in ("x-copy", "x-alt", "x-absent", "x-kept", "x-line", "x-response", "x-info")}
    want = {
        "x-copy": "hello",
        "x-alt": "hel",
        "x-absent": None,
        "x-kept": "",
        "x-line": "GET /f?q=1 127.0.0.1:%d" % p.port,
        "x-response": "[][0]",
        "x-info": "HTTP/1.1 r0 svc 100%",
    }
    check(got == want, "headers the backend saw: %r, expected %r" % (got, want))
    return "REQ with alternative and :3, empty not added (kept with keep_empty_value), pseudo-headers, RESP empty and RESPONSE_CODE 0 upstream"


def scenario_format_response_headers(t):
    """Route response_headers_to_add: %RESPONSE_CODE% and %RESP(:status)% are the upstream's 200, %RESP(x-backend)%
    copies a response header, %REQ(x-a)% the request's, %RESPONSE_FLAGS% is '-', %UPSTREAM_HOST% the backend's
    address, %ROUTE_NAME% the route's name (direct_response routes too), and %RESP(x-nope)% adds nothing. On a direct_response route %RESP(:status)% is its 201 but
    %RESPONSE_CODE% is still 0 (Envoy sets it only as the reply leaves); on a route to a closed port the local 503
    carries flags UF, the host it tried and RESPONSE_CODE 0; with one retry the flags are URX,UF (in the order
    Envoy sets them) and %UPSTREAM_REQUEST_ATTEMPT_COUNT% is 2. A local reply's mutations are applied before its
    content-length and content-type: %RESP(content-type)% does not see them, and they come after."""
    adds = [
        add("x-code", "%RESPONSE_CODE%/%RESP(:status)%"),
        add("x-copy", "%RESP(x-backend)%|%REQ(x-a)%"),
        add("x-flags", "%RESPONSE_FLAGS%"),
        add("x-host", "%UPSTREAM_HOST%"),
        add("x-absent", "%RESP(x-nope)%"),
        add("x-ctype", "%RESP(content-type)%"),
        add("x-route", "%ROUTE_NAME%"),
        add("x-attempts", "%UPSTREAM_REQUEST_ATTEMPT_COUNT%"),
    ]
    dead = free_ports(1)[0]
    routes = [
        {"name": "rd", "match": {"prefix": "/direct"},
         "direct_response": {"status": 201, "body": {"inline_string": "made here"}}, "response_headers_to_add": adds},
        route("/dead", cluster="dead", name="rdead", response_headers_to_add=adds),
        route("/retry", cluster="dead", name="rretry", response_headers_to_add=adds,
              action={"retry_policy": {"retry_on": "connect-failure", "num_retries": 1}}),
        route("/", name="r0", response_headers_to_add=adds),
    ]
    p = t.proxy([], routes=routes, clusters={"dead": dead})
    r = p.request("GET", "/f", {"x-a": "q"})
    upstream(r, "GET")
    got = [r.header(n) for n in ("x-code", "x-copy", "x-flags", "x-host", "x-absent", "x-route", "x-attempts")]
    want = ["200/200", "echo|q", "-", "127.0.0.1:%d" % t.backend().port, None, "r0", "1"]
    check(got == want, "upstream response: %r, expected %r" % (got, want))
    check(r.header("x-ctype") == r.header("content-type"), "upstream x-ctype %r" % r.header("x-ctype"))
    r = p.request("GET", "/direct", {"x-a": "q"})
    check(r.status == 201 and r.body == "made here", "direct_response: %s %r" % (r.status, r.body))
    got = [r.header(n) for n in ("x-code", "x-copy", "x-flags", "x-host", "x-absent", "x-ctype", "x-route", "x-attempts")]
    want = ["0/201", "|q", "-", None, None, None, "rd", "0"]
    check(got == want, "direct_response: %r, expected %r" % (got, want))
    # The route's headers come before the reply's own content-length and content-type.
    names = r.names()
    check(names.index("x-code") < names.index("content-length") < names.index("content-type"),
          "direct_response header order: %r" % names)
    r = p.request("GET", "/dead", {"x-a": "q"})
    check(r.status == 503, "closed port: %s" % r.status)
    got = [r.header(n) for n in ("x-code", "x-copy", "x-flags", "x-host", "x-absent", "x-route", "x-attempts")]
    want = ["0/503", "|q", "UF", "127.0.0.1:%d" % dead, None, "rdead", "1"]
    check(got == want, "closed port: %r, expected %r" % (got, want))
    r = p.request("GET", "/retry")
    check(r.status == 503, "closed port, retried: %s" % r.status)
    got = [r.header(n) for n in ("x-flags", "x-attempts", "x-route")]
    want = ["URX,UF", "2", "rretry"]
    check(got == want, "closed port, retried once: %r, expected %r" % (got, want))
    return "upstream 200: RESPONSE_CODE, RESP, REQ, flags '-', UPSTREAM_HOST; direct 201: RESPONSE_CODE 0; closed port: UF"


def scenario_format_start_time(t):
    """%START_TIME% (Envoy's default 2026-12-05T21:55:08.190Z form), %START_TIME(%s)% (epoch seconds, within a few
    seconds of the client's clock), %START_TIME(%s.%3f)% and %START_TIME(%Y/%m/%d %H:%M:%S.%6f)% in request and
    response headers; the request's and the response's start time are the same instant; %DURATION% is a whole
    number of milliseconds."""
    fmts = [
        add("x-start", "%START_TIME%"),
        add("x-epoch", "%START_TIME(%s)%"),
        add("x-ms", "%START_TIME(%s.%3f)%"),
        add("x-custom", "%START_TIME(%Y/%m/%d %H:%M:%S.%6f)%"),
        add("x-duration", "%DURATION%"),
    ]
    p = t.proxy([], routes=[route("/", request_headers_to_add=fmts, response_headers_to_add=fmts)])
    before = time.time()
    r = p.request("GET", "/t")
    after = time.time()
    upstream(r, "GET")
    patterns = {
        "x-start": r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z",
        "x-epoch": r"\d{10}",
        "x-ms": r"\d{10}\.\d{3}",
        "x-custom": r"\d{4}/\d\d/\d\d \d\d:\d\d:\d\d\.\d{6}",
        "x-duration": r"\d+",
    }
    for side, value in (("request", lambda n: seen_header(r, n)), ("response", r.header)):
        for name, pattern in patterns.items():
            v = value(name)
            check(isinstance(v, str) and re.fullmatch(pattern, v), "%s %s: %r does not match %s" % (side, name, v, pattern))
        epoch = int(value("x-epoch"))
        check(before - 5 <= epoch <= after + 5, "%s x-epoch %d is not now (%d)" % (side, epoch, before))
        ms = value("x-ms")
        check(ms.split(".")[0] == value("x-epoch"), "%s: %%s.%%3f %r vs %%s %r" % (side, ms, value("x-epoch")))
        check(value("x-start")[:19].replace("T", " ") == time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch)),
              "%s: %%START_TIME%% %r is not %d" % (side, value("x-start"), epoch))
    same = [seen_header(r, n) == r.header(n) for n in ("x-start", "x-ms", "x-custom")]
    check(all(same), "request and response start times differ: %r" % [(seen_header(r, n), r.header(n)) for n in ("x-start", "x-ms", "x-custom")])
    return "START_TIME default, (%%s), (%%s.%%3f), (%%Y/%%m/%%d %%H:%%M:%%S.%%6f) present and equal upstream and downstream: %s" % r.header("x-start")


def scenario_format_config_rejected(t):
    """Malformed commands are refused at load: more than one alternative header, an unknown command, a lone '%'."""
    def doc(value):
        return doc_with(t, [], routes=[route("/", request_headers_to_add=[add("x", value)])])
    exits_on(t, doc("%REQ(a?b?c)%"), "two alternatives", "More than 1 alternative header specified in token: a?b?c",
             ["request_headers_to_add", "More than 1 alternative header"])
    exits_on(t, doc("%NO_SUCH_COMMAND%"), "unknown command", "Not supported field in StreamInfo: NO_SUCH_COMMAND",
             ["request_headers_to_add", "NO_SUCH_COMMAND"])
    exits_on(t, doc("50%"), "lone percent", "Couldn't find valid command at position 2",
             ["request_headers_to_add", "position 2"])
    return "refused: %REQ(a?b?c)%, %NO_SUCH_COMMAND%, '50%'"



# ---- access logs (HttpConnectionManager access_log) ----------------------------------------------------------
FILE_LOG_TYPE = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"


def access_log_lines(t, path, count):
    """The lines of the log at `path`, waiting until there are `count`."""
    import os

    def read():
        if not os.path.exists(path):
            return []
        with open(path, encoding="utf-8") as f:
            return f.read().splitlines()

    check(wait_for(lambda: len(read()) >= count, 5),
          "access log %s has %d lines, expected %d: %r" % (path, len(read()), count, read()))
    return read()


def scenario_access_log_default(t):
    """A file access log without log_format writes Envoy's default line per request once its stream ends:
    `[START_TIME] "METHOD PATH PROTOCOL" CODE FLAGS BYTES_RECEIVED BYTES_SENT DURATION UPSTREAM_SERVICE_TIME
    "XFF" "USER-AGENT" "X-REQUEST-ID" "AUTHORITY" "UPSTREAM_HOST"`. Compared field by field except the start time,
    the durations and the backend's body size (the echo body holds the proxy's own headers); a direct_response is
    logged with the upstream host and service time `-`."""
    import os
    import re as _re

    routes = [{"match": {"path": "/direct"}, "direct_response": {"status": 418, "body": {"inline_string": "tea"}}}, route("/")]
    # Envoy 1.40 writes the first line at once but later ones only at a flush it may not reach before it exits:
    # each request gets its own proxy and log.
    lines, ports = [], []
    for i, target in enumerate(["/a?x=1", "/direct"]):
        path = os.path.join(t.dir, "access-%d.log" % i)
        p = t.proxy([], routes=routes, hcm={"access_log": [
            {"name": "envoy.access_loggers.file", "typed_config": {"@type": FILE_LOG_TYPE, "path": path}}]})
        r = p.request("GET", target, {"user-agent": "e2e-ua", "x-request-id": "rid-%d" % (i + 1)})
        check(r.status == (200 if i == 0 else 418), "%s: status %d" % (target, r.status))
        lines.append(access_log_lines(t, path, 1)[0])
        ports.append(p.port)
        p.stop()
    pattern = _re.compile(r'^\[(\S+)\] "(\S+) (\S+) (\S+)" (\d+) (\S+) (\d+) (\d+) (\d+) (\S+) "([^"]*)" "([^"]*)" "([^"]*)" "([^"]*)" "([^"]*)"$')
    fields = []
    for line in lines:
        m = pattern.match(line)
        check(m is not None, "line %r is not Envoy's default format" % line)
        fields.append(m.groups())
    t.note("lines: %r" % lines)
    a, d = fields[0], fields[1]
    check(_re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", a[0]) is not None, "start time %r" % a[0])
    check(a[1:6] == ("GET", "/a?x=1", "HTTP/1.1", "200", "-"), "upstream request: %r" % (a[1:6],))
    check(a[6] == "0" and a[9] != "-", "upstream request: bytes received %s, service time %s" % (a[6], a[9]))
    check(a[10:] == ("-", "e2e-ua", "rid-1", "127.0.0.1:%d" % ports[0], "127.0.0.1:%d" % t.backend().port),
          "upstream request: %r" % (a[10:],))
    check(d[1:6] == ("GET", "/direct", "HTTP/1.1", "418", "-") and d[6] == "0" and d[7] == "3",
          "direct response: %r" % (d[1:9],))
    check(d[9] == "-" and d[10:] == ("-", "e2e-ua", "rid-2", "127.0.0.1:%d" % ports[1], "-"), "direct response: %r" % (d[9:],))
    return "2 lines in Envoy's default format: method, path, protocol, code, flags, bytes, XFF, UA, request id, authority, upstream host"


def scenario_access_log_json(t):
    """json_format: keys sorted, %RESPONSE_CODE% and %BYTES_*% as numbers, a missing header as null, text as
    strings; omit_empty_values drops the null key."""
    import json
    import os

    path = os.path.join(t.dir, "access.json")
    fmt = {"code": "%RESPONSE_CODE%", "method": "%REQ(:METHOD)%", "path": "%REQ(:PATH)%", "sent": "%BYTES_SENT%",
           "received": "%BYTES_RECEIVED%", "missing": "%REQ(x-nope)%", "mixed": "c=%RESPONSE_CODE%", "lit": "x"}
    routes = [{"match": {"path": "/direct"}, "direct_response": {"status": 418, "body": {"inline_string": "tea"}}}]
    p = t.proxy([], routes=routes, hcm={"access_log": [
        {"name": "envoy.access_loggers.file", "typed_config": {"@type": FILE_LOG_TYPE, "path": path,
                                                              "log_format": {"json_format": fmt}}},
        {"name": "envoy.access_loggers.file", "typed_config": {"@type": FILE_LOG_TYPE, "path": path + ".omit",
                                                              "log_format": {"json_format": {"code": "%RESPONSE_CODE%", "missing": "%REQ(x-nope)%"},
                                                                             "omit_empty_values": True}}}]})
    r = request(p.port, "GET", "/direct")
    check(r.status == 418, "status %d" % r.status)
    line = access_log_lines(t, path, 1)[0]
    want = '{"code":418,"lit":"x","method":"GET","missing":null,"mixed":"c=418","path":"/direct","received":0,"sent":3}'
    check(line == want, "json line %r, expected %r" % (line, want))
    json.loads(line)
    omit = access_log_lines(t, path + ".omit", 1)[0]
    check(omit == '{"code":418}', "omit_empty_values line %r" % omit)
    return "json line byte-equal to Envoy's; omit_empty_values drops the null key"


SCENARIOS = [
    ("fault_abort", scenario_fault_abort),
    ("fault_abort_grpc", scenario_fault_abort_grpc),
    ("fault_delay", scenario_fault_delay),
    ("fault_percentage", scenario_fault_percentage),
    ("fault_header_abort", scenario_fault_header_abort),
    ("fault_header_delay", scenario_fault_header_delay),
    ("fault_max_active", scenario_fault_max_active),
    ("fault_per_route", scenario_fault_per_route),
    ("fault_downstream_cluster", scenario_fault_downstream_cluster),
    ("fault_match", scenario_fault_match),
    ("fault_config_rejected", scenario_fault_config_rejected),
    ("ratelimit_exhausted", scenario_ratelimit_exhausted),
    ("ratelimit_enabled_enforced", scenario_ratelimit_enabled_enforced),
    ("ratelimit_status_headers", scenario_ratelimit_status_headers),
    ("ratelimit_x_headers", scenario_ratelimit_x_headers),
    ("ratelimit_per_route", scenario_ratelimit_per_route),
    ("ratelimit_per_connection", scenario_ratelimit_per_connection),
    ("ratelimit_descriptors", scenario_ratelimit_descriptors),
    ("ratelimit_bound", scenario_ratelimit_bound),
    ("ratelimit_refill_continuous", scenario_ratelimit_refill_continuous),
    ("ratelimit_config_rejected", scenario_ratelimit_config_rejected),
    ("cors_preflight", scenario_cors_preflight),
    ("cors_simple", scenario_cors_simple),
    ("cors_credentials", scenario_cors_credentials),
    ("cors_origin_match", scenario_cors_origin_match),
    ("cors_filter_enabled", scenario_cors_filter_enabled),
    ("cors_route_override", scenario_cors_route_override),
    ("cors_deprecated_field", scenario_cors_deprecated_field),
    ("cors_config_rejected", scenario_cors_config_rejected),
    ("csrf_origin", scenario_csrf_origin),
    ("csrf_methods", scenario_csrf_methods),
    ("csrf_source", scenario_csrf_source),
    ("csrf_additional_origins", scenario_csrf_additional_origins),
    ("csrf_shadow", scenario_csrf_shadow),
    ("csrf_config_rejected", scenario_csrf_config_rejected),
    ("mirror_route", scenario_mirror_route),
    ("format_request_headers", scenario_format_request_headers),
    ("format_response_headers", scenario_format_response_headers),
    ("format_start_time", scenario_format_start_time),
    ("format_config_rejected", scenario_format_config_rejected),
    ("access_log_default", scenario_access_log_default),
    ("access_log_json", scenario_access_log_json),
]


# ---- runner ----------------------------------------------------------------------------------------------------
class T(ScenarioContext):
    """Per-scenario context with one echo backend (made on first use) and proxies in front of it."""

    _backend = None

    def backend(self):
        if self._backend is None:
            self._backend = EchoServer()
            self.on_close("backend on %d" % self._backend.port, self._backend.close)
        return self._backend

    def proxy(self, filters, **config):
        return ProxyRun(self, filters, **config)


class ProxyRun(Proxy):
    def __init__(self, t, filters, **config):
        super().__init__(t, t.backend(), filters, **config)

    def stop(self):
        self.proc.stop()


if __name__ == "__main__":
    sys.exit(
        run_suite(
            "filters",
            "HTTP filter (fault, local_ratelimit, cors, csrf) and request mirroring end-to-end tests",
            SCENARIOS,
            "pff",
            suite_class=Suite,
            context_class=T,
            scenario_limit=SCENARIO_LIMIT,
        )
    )
