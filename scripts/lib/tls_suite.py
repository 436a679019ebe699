#!/usr/bin/env python3
"""End-to-end TLS acceptance tests: `envoy.transport_sockets.tls` (DownstreamTlsContext on filter chains,
UpstreamTlsContext on clusters), SDS from files and RBAC, through a real proxy on loopback.

Usage: python3 scripts/lib/tls_suite.py --proxy envoy|sidecar --bin PATH [NAME]... [--list] [-v]
(normally through scripts/e2e-tls, which provides a Python with `cryptography`).

The suite makes its own PKI with `cryptography` (P-256 keys): a mesh root CA, an unrelated CA and a second mesh
CA for CA rotation, SPIFFE server/client/intruder certificates, an expired, a not-yet-valid and a wrong-CA client
certificate, two SNI certificates, backend certificates for upstream TLS (good, wrong SAN, wrong CA) and a
certificate whose key does not match. Backends are small Python HTTP servers in this process on 127.0.0.1 that
answer with a JSON account of what they received (method, path, headers, body and, for the TLS backend, the TLS
version, ALPN, SNI and the peer certificate's SANs). Clients are curl, `openssl s_client` and Python's ssl module.

Every scenario writes one plain Envoy v3 bootstrap (static_resources and admin only, plus node id and cluster where
SDS needs them: Envoy refuses SDS without; free 127.0.0.1 ports), starts the proxy under test on it with
--concurrency 1, waits for admin /ready, drives its clients and checks what they saw, what the backend saw and
the proxy's admin /stats (Envoy's stat names, compared as deltas). The expectations are Envoy 1.40's, observed on
this machine; the sidecar must meet the same ones with the same YAML.

Output: one line per scenario (`PASS name: what was measured`, `FAIL name: reason`; -v adds durations and notes
with what was observed, e.g. Envoy's exact messages and non-zero stat deltas), then `tls: N passed, N failed, 0
skipped`. Each scenario stops what it started (processes by PID, servers and threads by handle) and removes its
directory, pass or fail; the PKI directory is removed after the last scenario. Only loopback addresses are used.

Scenarios (--list; each docstring says what Envoy 1.40 does): termination, alpn, ssl_sni, mtls_accept, mtls_reject,
tls_params, upstream_tls, upstream_tls_reject, strict, permissive, config_missing_file, config_key_mismatch,
sds_rotation, sds_bad_rotation, sds_ca_rotation, rbac_network, rbac_http. About 10 s against Envoy, most of it sds_rotation's load.
"""

import json
import os
import shutil
import ssl
import sys
import tempfile
import time

from suite_common import Fail, ScenarioContext, Suite, check, free_ports, main as run_suite, short, wait_for
from tls_kit import (
    alert_matches,
    PROXY_KIND,
    backend_tls_context,
    bootstrap,
    chain,
    cluster,
    curl,
    delta,
    downstream_tls,
    EchoServer,
    expect_delta,
    hcm,
    HTTP_CLOSE,
    HTTP_RBAC,
    interesting,
    listener,
    lstat,
    NET_RBAC,
    Pki,
    plain_request,
    Proxy,
    RotationLoad,
    s_client,
    sds_file,
    sds_ref,
    SecretDir,
    seen_header,
    show,
    SPIFFE,
    TLS_INSPECTOR,
    tls_request,
    upstream_tls,
    validation,
)

SCENARIO_LIMIT = 60  # seconds a whole scenario may take (watchdog)


# ---- scenarios -------------------------------------------------------------------------------------------------
def scenario_termination(t):
    """TLS terminated at the proxy, plaintext HTTP to the backend. Envoy 1.40 sets x-forwarded-proto: https and,
    with the default forward_client_cert_details (SANITIZE), removes a client's x-forwarded-client-cert."""
    pki = t.pki
    echo = t.echo()
    port, admin = free_ports(2)
    p = t.proxy(
        [listener("tls", port, [chain([hcm("ingress")], downstream_tls(pki.server))])],
        [cluster("svc", echo.port)],
        admin,
        [port],
    )
    before = p.stats()
    c = curl(t, port, "/hello?x=1", data="ping-body", headers={"x-forwarded-client-cert": "By=spoofed"})
    check(c.rc == 0 and c.code == "200", "curl over HTTPS: %r" % c)
    seen = json.loads(c.body)
    check(
        seen["method"] == "POST" and seen["path"] == "/hello?x=1" and seen["body"] == "ping-body",
        "backend saw %s %s %r" % (seen["method"], seen["path"], seen["body"]),
    )
    check(seen["tls"] is None, "the backend is plaintext")
    xfp = seen_header(seen, "x-forwarded-proto")
    check(xfp == "https", "backend saw x-forwarded-proto %r, expected https" % xfp)
    xfcc = seen_header(seen, "x-forwarded-client-cert")
    check(xfcc is None, "backend saw x-forwarded-client-cert %r; SANITIZE (the default) removes it" % xfcc)
    o = tls_request(pki, port, "/py")
    check(o.status == 200 and o.version == "TLSv1.3", "python ssl: %r (%s)" % (o, o.version))
    check(o.peer_fp == pki.server.fp, "python ssl was not served the server certificate")
    after = p.stats()
    d = delta(before, after)
    t.note("stat deltas: %s" % show(interesting(d)))
    ls = lstat(port, "")
    # (http.<prefix>.downstream_cx_ssl_total is not checked: it counts every connection on a TLS chain, failed
    # handshakes and the readiness probe's bare TCP connection included, and that probe may be counted late.)
    expect_delta(
        d,
        {
            "ssl.handshake": 2,
            "ssl.no_certificate": 2,
            "ssl.versions.TLSv1.3": 2,
            "ssl.connection_error": 0,
            "ssl.curves.X25519": 2,
            "ssl.sigalgs.ecdsa_secp256r1_sha256": 0,
        },
        ls,
        "termination",
    )
    check(
        t.suite.proxy == "sidecar" or d.get(ls + "ssl.ciphers." + o.cipher, 0) >= 1, "no %sssl.ciphers.%s (changed: %s)" % (ls, o.cipher, show(d, ls))
    )
    expect_delta(d, {"http.ingress.downstream_rq_2xx": 2}, "", "termination")
    return (
        "curl and python over TLS 1.3: 200, backend saw plaintext POST with body, x-forwarded-proto: https, "
        "no x-forwarded-client-cert; ssl.handshake +2, ssl.no_certificate +2"
    )


def scenario_alpn(t):
    """alpn_protocols [http/1.1] on the listener: a client offering http/1.1 gets it; a client offering only h2
    gets no ALPN at all (Envoy 1.40 does not fail the handshake) and can still speak HTTP/1.1; a listener without
    alpn_protocols selects nothing."""
    pki = t.pki
    echo = t.echo()
    with_alpn, without, admin = free_ports(3)
    p = t.proxy(
        [
            listener("alpn", with_alpn, [chain([hcm("alpn")], downstream_tls(pki.server, alpn=["http/1.1"]))]),
            listener("noalpn", without, [chain([hcm("noalpn")], downstream_tls(pki.server))]),
        ],
        [cluster("svc", echo.port)],
        admin,
        [with_alpn, without],
    )
    before = p.stats()
    s = s_client(t, with_alpn, alpn="http/1.1")
    check(s.alpn == "http/1.1", "s_client -alpn http/1.1: ALPN %r; %r" % (s.alpn, s))
    s2 = s_client(t, with_alpn, alpn="h2")
    check(s2.rc == 0 and s2.no_alpn and s2.verified, "s_client -alpn h2: expected 'No ALPN negotiated'; %r" % s2)
    cases = [
        (["http/1.1"], with_alpn, "http/1.1"),
        (["h2"], with_alpn, None),
        (["h2", "http/1.1"], with_alpn, "http/1.1"),
        (["http/1.1"], without, None),
    ]
    for offer, port, want in cases:
        o = tls_request(pki, port, "/alpn", alpn=offer)
        check(o.status == 200, "python offering %s: %r" % (offer, o))
        check(
            o.alpn == want,
            "python offering %s to %s: ALPN %r, expected %r"
            % (offer, "alpn" if port == with_alpn else "noalpn", o.alpn, want),
        )
    d = delta(before, p.stats())
    t.note("stat deltas: %s" % show(interesting(d)))
    expect_delta(d, {"ssl.handshake": 5, "ssl.connection_error": 0}, lstat(with_alpn, ""), "alpn listener")
    return (
        "http/1.1 offered -> http/1.1; only h2 offered -> no ALPN, handshake and HTTP/1.1 ok; no alpn_protocols -> none"
    )


def scenario_ssl_sni(t):
    """tls_inspector plus two chains matching server_names a.example.test / b.example.test: each name gets its
    certificate. An unknown name, or no SNI, matches no chain: Envoy 1.40 closes the connection (the client's
    ClientHello is answered with a TCP reset) and counts no_filter_chain_match; with a default_filter_chain that
    chain's certificate is served instead."""
    pki = t.pki
    echo = t.echo()
    strict, dflt, admin = free_ports(3)

    def chains():
        return [
            chain([hcm("sni_a")], downstream_tls(pki.sni_a), {"server_names": ["a.example.test"]}),
            chain([hcm("sni_b")], downstream_tls(pki.sni_b), {"server_names": ["b.example.test"]}),
        ]

    p = t.proxy(
        [
            listener("sni", strict, chains(), [TLS_INSPECTOR]),
            listener(
                "sni_default", dflt, chains(), [TLS_INSPECTOR], chain([hcm("sni_default")], downstream_tls(pki.server))
            ),
        ],
        [cluster("svc", echo.port)],
        admin,
        [strict, dflt],
    )
    before = p.stats()
    for name, cred in (("a.example.test", pki.sni_a), ("b.example.test", pki.sni_b)):
        s = s_client(t, strict, server_name=name)
        check(
            s.peer_fp == cred.fp,
            "s_client -servername %s: served %s, expected %s's certificate; %r"
            % (name, s.peer_fp and s.peer_fp[:16], cred.name, s),
        )
        o = tls_request(pki, strict, "/sni", server_name=name)
        check(o.status == 200 and o.peer_fp == cred.fp, "python SNI %s: %r" % (name, o))
    unknown = tls_request(pki, strict, "/sni", server_name="c.example.test")
    check(not unknown.handshake, "unknown SNI on a listener without default chain: handshake completed (%r)" % unknown)
    nosni = tls_request(pki, strict, "/sni", server_name=None)
    check(not nosni.handshake, "no SNI on a listener without default chain: handshake completed (%r)" % nosni)
    s = s_client(t, strict, server_name="c.example.test")
    check(s.rc != 0 and s.peer_fp is None, "s_client unknown SNI: %r" % s)
    t.note(
        "unknown SNI, no default chain: python %s; no SNI: python %s; s_client exit %d: %s"
        % (unknown.error, nosni.error, s.rc, short(s.err, 160))
    )
    for name in ("c.example.test", None):
        o = tls_request(pki, dflt, "/sni", server_name=name)
        check(
            o.status == 200 and o.peer_fp == pki.server.fp,
            "SNI %r with default_filter_chain: %r (expected the default chain's certificate)" % (name, o),
        )
    o = tls_request(pki, dflt, "/sni", server_name="b.example.test")
    check(o.status == 200 and o.peer_fp == pki.sni_b.fp, "SNI b.example.test with default_filter_chain: %r" % o)
    after = p.stats()
    d = delta(before, after)
    t.note("stat deltas: %s" % show(interesting(d)))
    expect_delta(
        d,
        {"no_filter_chain_match": 3, "ssl.handshake": 4, "ssl.connection_error": 0},
        lstat(strict, ""),
        "sni listener",
    )
    expect_delta(d, {"no_filter_chain_match": 0, "ssl.handshake": 3}, lstat(dflt, ""), "sni_default listener")
    return (
        "a/b served by name; unknown or no SNI: %s, no_filter_chain_match +3; default chain serves the rest"
        % unknown.error
    )


def mtls_listener(pki, port, stat_prefix="ingress", sans=(SPIFFE + "client",), filters=None):
    return listener(
        "mtls",
        port,
        [
            chain(
                filters or [hcm(stat_prefix)],
                downstream_tls(pki.server, require_client=True, validation_context=validation(pki.ca, list(sans))),
            )
        ],
    )


def scenario_mtls_accept(t):
    """require_client_certificate with trusted_ca and a URI SAN matcher: the right client is served by curl,
    python and openssl; ssl.handshake counts it and ssl.no_certificate does not."""
    pki = t.pki
    echo = t.echo()
    port, admin = free_ports(2)
    p = t.proxy([mtls_listener(pki, port)], [cluster("svc", echo.port)], admin, [port])
    before = p.stats()
    c = curl(t, port, "/curl", cred=pki.client, headers={"x-forwarded-client-cert": "By=spoofed"})
    check(c.rc == 0 and c.code == "200", "curl --cert client: %r" % c)
    seen = json.loads(c.body)
    check(
        seen_header(seen, "x-forwarded-client-cert") is None,
        "backend saw x-forwarded-client-cert %r (SANITIZE removes it)" % seen_header(seen, "x-forwarded-client-cert"),
    )
    o = tls_request(pki, port, "/py", cred=pki.client)
    check(o.status == 200 and o.version == "TLSv1.3", "python ssl with client cert: %r" % o)
    s = s_client(t, port, cred=pki.client, send=HTTP_CLOSE)
    check(s.rc == 0 and "HTTP/1.1 200" in s.out, "s_client -cert client: %r; output %s" % (s, short(s.out[-300:], 200)))
    d = delta(before, p.stats())
    t.note("stat deltas: %s" % show(interesting(d)))
    # ssl.sigalgs.* counts the peer's (client certificate's) signature algorithm, so only mTLS moves it.
    expect_delta(
        d,
        {
            "ssl.handshake": 3,
            "ssl.no_certificate": 0,
            "ssl.fail_verify_no_cert": 0,
            "ssl.fail_verify_error": 0,
            "ssl.fail_verify_san": 0,
            "ssl.connection_error": 0,
            "ssl.sigalgs.ecdsa_secp256r1_sha256": 3,
        },
        lstat(port, ""),
        "mtls",
    )
    check(len(echo.requests) == 3, "backend got %d requests, expected 3" % len(echo.requests))
    return "curl, python and s_client with the client certificate: 200; ssl.handshake +3, no ssl.fail_*"


# Per rejected client: the alert the Python client reads after its (TLS 1.3) handshake, and the one counter that
# moves. Observed on Envoy 1.40 (BoringSSL).
MTLS_REJECTS = [
    ("no client cert", None, "SSLError TLSV13_ALERT_CERTIFICATE_REQUIRED", "ssl.fail_verify_no_cert"),
    ("wrong CA", "wrong_ca", "SSLError TLSV1_ALERT_UNKNOWN_CA", "ssl.fail_verify_error"),
    ("expired", "expired", "SSLError SSLV3_ALERT_CERTIFICATE_EXPIRED", "ssl.fail_verify_error"),
    ("not yet valid", "future", "SSLError SSLV3_ALERT_CERTIFICATE_EXPIRED", "ssl.fail_verify_error"),
    ("SAN mismatch", "intruder", "SSLError SSLV3_ALERT_CERTIFICATE_UNKNOWN", "ssl.fail_verify_san"),
]
FAIL_COUNTERS = [
    "ssl.fail_verify_no_cert",
    "ssl.fail_verify_error",
    "ssl.fail_verify_san",
    "ssl.handshake",
    "ssl.connection_error",
]


def scenario_mtls_reject(t):
    """Each rejected client completes its side of the TLS 1.3 handshake, then reads an alert (never an HTTP
    response); exactly one ssl.fail_verify_* counter moves per attempt, ssl.handshake and ssl.connection_error do
    not, and nothing reaches the backend."""
    pki = t.pki
    echo = t.echo()
    port, admin = free_ports(2)
    p = t.proxy([mtls_listener(pki, port)], [cluster("svc", echo.port)], admin, [port])
    ls = lstat(port, "")
    seen = []
    for label, attr, alert, counter in MTLS_REJECTS:
        cred = getattr(pki, attr) if attr else None
        before = p.stats()
        o = tls_request(pki, port, cred=cred, request=False)
        check(
            o.handshake and alert_matches(o.error, alert), "%s: python saw %r, expected %s after the handshake" % (label, o, alert)
        )
        r = tls_request(pki, port, "/rejected", cred=cred)
        check(r.status is None, "%s: python request got %r" % (label, r))
        c = curl(t, port, "/rejected", cred=cred)
        check(c.rc != 0 and c.code == "000", "%s: %r" % (label, c))
        d = delta(before, p.stats())
        expect_delta(d, {n: (3 if n == counter else 0) for n in FAIL_COUNTERS}, ls, label)
        t.note("%s: python reads %s (request: %s); %r; %s" % (label, alert, r.error, c, show(interesting(d), ls)))
        seen.append("%s -> %s" % (label, counter))
    check(not echo.requests, "backend got %d requests from rejected clients" % len(echo.requests))
    return "; ".join(seen)


def scenario_tls_params(t):
    """tls_minimum_protocol_version TLSv1_3 refuses a TLS 1.2 client with a protocol_version alert; cipher_suites
    restricts TLS 1.2 only (a TLS 1.2 client offering other suites gets handshake_failure, a TLS 1.3 client is
    unaffected). Each refusal counts ssl.connection_error."""
    pki = t.pki
    echo = t.echo()
    v13, ciph, admin = free_ports(3)
    p = t.proxy(
        [
            listener(
                "v13",
                v13,
                [
                    chain(
                        [hcm("v13")], downstream_tls(pki.server, tls_params={"tls_minimum_protocol_version": "TLSv1_3"})
                    )
                ],
            ),
            listener(
                "ciphers",
                ciph,
                [
                    chain(
                        [hcm("ciphers")],
                        downstream_tls(pki.server, tls_params={"cipher_suites": ["ECDHE-ECDSA-AES256-GCM-SHA384"]}),
                    )
                ],
            ),
        ],
        [cluster("svc", echo.port)],
        admin,
        [v13, ciph],
    )
    before = p.stats()
    o = tls_request(pki, v13, max_version=ssl.TLSVersion.TLSv1_2)
    check(
        not o.handshake and o.error == "SSLError TLSV1_ALERT_PROTOCOL_VERSION",
        "TLS 1.2 client to TLSv1_3 minimum: %r" % o,
    )
    c = curl(t, v13, "/", extra=["--tls-max", "1.2"])
    check(c.rc == 35, "curl --tls-max 1.2: %r" % c)
    ok13 = tls_request(pki, v13)
    check(ok13.status == 200 and ok13.version == "TLSv1.3", "TLS 1.3 client: %r" % ok13)
    t.note("TLSv1_3 minimum, TLS 1.2 client: python %s; %r" % (o.error, c))
    weak = tls_request(
        pki,
        ciph,
        max_version=ssl.TLSVersion.TLSv1_2,
        ciphers="ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305",
    )
    check(
        not weak.handshake and weak.error == "SSLError SSLV3_ALERT_HANDSHAKE_FAILURE",
        "TLS 1.2 client with other ciphers: %r" % weak,
    )
    s = s_client(t, ciph, extra=["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"])
    check(s.rc != 0 and "handshake failure" in s.err, "s_client -tls1_2 -cipher ECDHE-ECDSA-AES128-GCM-SHA256: %r" % s)
    good12 = tls_request(pki, ciph, max_version=ssl.TLSVersion.TLSv1_2, ciphers="ECDHE-ECDSA-AES256-GCM-SHA384")
    check(
        good12.status == 200 and good12.cipher == "ECDHE-ECDSA-AES256-GCM-SHA384" and good12.version == "TLSv1.2",
        "TLS 1.2 client with the allowed cipher: %r %s %s" % (good12, good12.version, good12.cipher),
    )
    good13 = tls_request(pki, ciph)
    check(good13.status == 200 and good13.version == "TLSv1.3", "TLS 1.3 client to cipher_suites listener: %r" % good13)
    d = delta(before, p.stats())
    t.note("stat deltas: %s" % show(interesting(d)))
    expect_delta(d, {"ssl.connection_error": 2, "ssl.handshake": 1, "ssl.versions.TLSv1.3": 1}, lstat(v13, ""), "v13")
    expect_delta(
        d,
        {
            "ssl.connection_error": 2,
            "ssl.handshake": 2,
            "ssl.versions.TLSv1.2": 1,
            "ssl.versions.TLSv1.3": 1,
            "ssl.ciphers.ECDHE-ECDSA-AES256-GCM-SHA384": 1,
        },
        lstat(ciph, ""),
        "ciphers",
    )
    return (
        "TLS 1.2 vs TLSv1_3 minimum: protocol_version alert; TLS 1.2 other ciphers: handshake_failure; "
        "ssl.connection_error +2 each; TLS 1.3 unaffected by cipher_suites"
    )


def upstream_cluster(pki, name, port, sans=(SPIFFE + "backend",)):
    return cluster(
        name,
        port,
        upstream_tls(pki.server, validation(pki.ca, list(sans)), sni="backend.example.test", alpn=["http/1.1"]),
    )


def scenario_upstream_tls(t):
    """UpstreamTlsContext with sni, a client certificate, trusted_ca + URI SAN matcher and alpn_protocols: the
    backend (which requires a client certificate) sees the proxy's SPIFFE identity, the SNI and ALPN http/1.1."""
    pki = t.pki
    backend = t.echo(backend_tls_context(pki, pki.backend))
    port, admin = free_ports(2)
    p = t.proxy(
        [listener("plain", port, [chain([hcm("ingress")])])],
        [upstream_cluster(pki, "svc", backend.port)],
        admin,
        [port],
    )
    before = p.stats()
    for i in range(2):
        status, body = plain_request(port, "/up%d" % i)
        check(status == 200, "request %d through upstream TLS: %s %s" % (i, status, short(str(body), 300)))
    tls = json.loads(body)["tls"]
    check(tls is not None, "backend answered without TLS")
    check(tls["peer_uris"] == [SPIFFE + "server"], "backend saw client certificate URIs %r" % tls["peer_uris"])
    check(tls["sni"] == "backend.example.test", "backend saw SNI %r" % tls["sni"])
    check(tls["alpn"] == "http/1.1", "backend saw ALPN %r" % tls["alpn"])
    # Envoy's client side defaults to tls_maximum_protocol_version TLSv1_2 (the server side to TLSv1_3).
    check(
        tls["version"] == "TLSv1.2",
        "backend negotiated %s with the proxy; Envoy's upstream default maximum is " "TLS 1.2" % tls["version"],
    )
    d = delta(before, p.stats(), "cluster.svc.")
    t.note("backend saw %s; cluster deltas: %s" % (tls, show(d, "cluster.svc.")))
    expect_delta(
        d,
        {
            "ssl.handshake": 1,
            "upstream_cx_total": 1,
            "upstream_cx_connect_fail": 0,
            "ssl.connection_error": 0,
            "upstream_rq_200": 2,
            "ssl.versions.TLSv1.2": 1,
        },
        "cluster.svc.",
        "upstream",
    )
    return "backend saw client SAN %s, SNI %s, ALPN %s over %s; 2 requests on 1 TLS connection" % (
        tls["peer_uris"][0],
        tls["sni"],
        tls["alpn"],
        tls["version"],
    )


# Envoy 1.40 does not add the TLS error to the body (same body as a refused connection).
UPSTREAM_TLS_FAILURE = (
    "upstream connect error or disconnect/reset before headers. reset reason: remote connection failure"
)


def scenario_upstream_tls_reject(t):
    """A backend certificate with the wrong SAN or from another CA fails the proxy's verification: 503 with
    Envoy's 'upstream connect error or disconnect/reset before headers. reset reason: remote connection failure'
    body (the TLS error is not in it),
    the cluster's ssl.fail_verify_san / ssl.fail_verify_error and upstream_cx_connect_fail; the backend reads
    the proxy's alert."""
    pki = t.pki
    bad_san = t.echo(backend_tls_context(pki, pki.backend_bad_san))
    bad_ca = t.echo(backend_tls_context(pki, pki.backend_wrong_ca))
    port, admin = free_ports(2)
    routes = [
        {"match": {"prefix": "/san"}, "route": {"cluster": "bad_san"}},
        {"match": {"prefix": "/ca"}, "route": {"cluster": "bad_ca"}},
    ]
    p = t.proxy(
        [listener("plain", port, [chain([hcm("ingress", routes)])])],
        [upstream_cluster(pki, "bad_san", bad_san.port), upstream_cluster(pki, "bad_ca", bad_ca.port)],
        admin,
        [port],
    )
    results = []
    for path, name, counter, backend in (
        ("/san", "bad_san", "ssl.fail_verify_san", bad_san),
        ("/ca", "bad_ca", "ssl.fail_verify_error", bad_ca),
    ):
        before = p.stats()
        status, body = plain_request(port, path)
        check(status == 503, "%s: %s %s, expected 503" % (name, status, short(str(body))))
        check(body == UPSTREAM_TLS_FAILURE, "%s: 503 body %r, expected %r" % (name, body, UPSTREAM_TLS_FAILURE))
        prefix = "cluster.%s." % name
        d = delta(before, p.stats(), prefix)
        expect_delta(
            d, {counter: 1, "upstream_cx_connect_fail": 1, "ssl.handshake": 0, "upstream_rq_503": 1}, prefix, name
        )
        wait_for(lambda: backend.handshake_errors, 2.0)
        t.note("%s: 503 %r; backend handshake: %s; %s" % (name, body, backend.handshake_errors, show(d, prefix)))
        results.append("%s: 503, %s +1, upstream_cx_connect_fail +1" % (name, counter))
        check(not backend.requests, "%s: the backend got a request" % name)
    return "; ".join(results)


def strict_chain(pki):
    return chain(
        [hcm("mtls")],
        downstream_tls(pki.server, require_client=True, validation_context=validation(pki.ca)),
        {"transport_protocol": "tls"},
    )


def scenario_strict(t):
    """A STRICT port (tls_inspector, only a transport_protocol: tls chain): plaintext HTTP matches no chain and
    the connection is closed with a reset before any response (curl: exit 56 'Connection reset by peer');
    no_filter_chain_match counts it. mTLS works."""
    pki = t.pki
    echo = t.echo()
    port, admin = free_ports(2)
    p = t.proxy(
        [listener("strict", port, [strict_chain(pki)], [TLS_INSPECTOR])], [cluster("svc", echo.port)], admin, [port]
    )
    before = p.stats()
    status, err = plain_request(port, "/plain")
    check(status is None, "plaintext to STRICT: got %s" % status)
    c = curl(t, port, "/plain", scheme="http")
    check(c.rc != 0 and c.code == "000", "curl plaintext to STRICT: %r" % c)
    # A reset, not an orderly close (which curl reports as exit 52, empty reply).
    check(c.rc == 56 and "reset" in c.err.lower(), "curl plaintext to STRICT was not reset: %r" % c)
    o = tls_request(pki, port, "/mtls", cred=pki.client)
    check(o.status == 200, "mTLS to STRICT: %r" % o)
    d = delta(before, p.stats())
    t.note("plaintext: python %s; %r; stat deltas: %s" % (err, c, show(interesting(d))))
    expect_delta(d, {"no_filter_chain_match": 2, "ssl.handshake": 1}, lstat(port, ""), "strict")
    check(len(echo.requests) == 1, "backend got %d requests" % len(echo.requests))
    return "plaintext: %s / curl exit %d, no_filter_chain_match +2; mTLS 200" % (err, c.rc)


def scenario_permissive(t):
    """PERMISSIVE: a tls chain (mTLS) and a raw_buffer chain on one port; both plaintext and mTLS are served,
    x-forwarded-proto is http and https respectively."""
    pki = t.pki
    echo = t.echo()
    port, admin = free_ports(2)
    chains = [strict_chain(pki), chain([hcm("plain")], None, {"transport_protocol": "raw_buffer"})]
    p = t.proxy([listener("permissive", port, chains, [TLS_INSPECTOR])], [cluster("svc", echo.port)], admin, [port])
    before = p.stats()
    status, body = plain_request(port, "/plain")
    check(status == 200, "plaintext to PERMISSIVE: %s %s" % (status, short(str(body))))
    check(
        seen_header(json.loads(body), "x-forwarded-proto") == "http",
        "plaintext: x-forwarded-proto %r" % seen_header(json.loads(body), "x-forwarded-proto"),
    )
    o = tls_request(pki, port, "/mtls", cred=pki.client)
    check(o.status == 200, "mTLS to PERMISSIVE: %r" % o)
    check(
        seen_header(o.json(), "x-forwarded-proto") == "https",
        "mTLS: x-forwarded-proto %r" % seen_header(o.json(), "x-forwarded-proto"),
    )
    d = delta(before, p.stats())
    t.note("stat deltas: %s" % show(interesting(d)))
    expect_delta(d, {"no_filter_chain_match": 0, "ssl.handshake": 1}, lstat(port, ""), "permissive")
    expect_delta(d, {"http.plain.downstream_rq_2xx": 1, "http.mtls.downstream_rq_2xx": 1}, "", "permissive")
    return "plaintext 200 (x-forwarded-proto http) and mTLS 200 (https) on one port"


def start_and_expect_exit(t, doc, timeout=10.0):
    """Starts the proxy on `doc` and waits for it to exit; returns (exit status, stderr)."""
    path = t.write_config(doc)
    proc = t.spawn(t.suite.proxy_argv(path), "proxy-%d" % t.proxy_runs)
    if not wait_for(lambda: not proc.alive(), timeout):
        raise Fail("%s still running %.0fs after start on a bad config" % (t.suite.proxy, timeout))
    return proc.popen.returncode, proc.stderr_text()


def one_listener_doc(pki, transport, echo_port):
    port, admin = free_ports(2)
    return bootstrap(admin, [listener("tls", port, [chain([hcm("ingress")], transport)])], [cluster("svc", echo_port)])


def scenario_config_missing_file(t):
    """A certificate chain, private key or trusted CA file that does not exist: the proxy does not start (exit 1)
    and stderr names the path. Envoy 1.40's messages (recorded in the notes) are checked exactly for Envoy."""
    pki = t.pki
    missing = os.path.join(t.dir, "no-such-dir")
    cases = [
        (
            "certificate_chain",
            downstream_tls(
                None,
                tls_certificates=[
                    {
                        "certificate_chain": {"filename": missing + "/cert.pem"},
                        "private_key": {"filename": pki.server.key},
                    }
                ],
            ),
            missing + "/cert.pem",
            "Failed to load incomplete certificate from %s: certificate chain not set",
        ),
        (
            "private_key",
            downstream_tls(
                None,
                tls_certificates=[
                    {
                        "certificate_chain": {"filename": pki.server.cert},
                        "private_key": {"filename": missing + "/key.pem"},
                    }
                ],
            ),
            missing + "/key.pem",
            "Failed to load incomplete private key from path: %s",
        ),
        (
            "trusted_ca",
            downstream_tls(pki.server, validation_context={"trusted_ca": {"filename": missing + "/ca.pem"}}),
            missing + "/ca.pem",
            "Invalid path: %s",
        ),
    ]
    for what, transport, path, envoy_message in cases:
        rc, err = start_and_expect_exit(t, one_listener_doc(pki, transport, free_ports(1)[0]))
        check(rc != 0, "missing %s: exit status %d" % (what, rc))
        check(path in err, "missing %s: stderr does not name %s: %s" % (what, path, short(err[-600:])))
        if t.suite.proxy == "envoy":
            check(envoy_message % path in err, "missing %s: Envoy's message changed: %s" % (what, short(err[-600:])))
        t.note("missing %s: exit %d, %r" % (what, rc, last_line(err)))
    return "missing certificate_chain / private_key / trusted_ca: exit 1, path named"


def last_line(text):
    lines = [l for l in text.strip().splitlines() if l.strip()]
    return lines[-1] if lines else ""


def scenario_config_key_mismatch(t):
    """A private key that does not belong to the certificate: the proxy does not start; stderr names the key's
    path and says so (Envoy 1.40: 'Failed to load private key from <key>, Cause: ...KEY_VALUES_MISMATCH'; the
    sidecar must say 'does not match')."""
    pki = t.pki
    rc, err = start_and_expect_exit(t, one_listener_doc(pki, downstream_tls(pki.mismatch), free_ports(1)[0]))
    check(rc != 0, "exit status %d" % rc)
    check(pki.mismatch.key in err, "stderr does not name the key %s: %s" % (pki.mismatch.key, short(err[-600:])))
    if t.suite.proxy == "envoy":
        want = (
            "Failed to load private key from %s, Cause: error:0b000074:X.509 certificate routines:"
            "OPENSSL_internal:KEY_VALUES_MISMATCH" % pki.mismatch.key
        )
        check(want in err, "Envoy's message changed: %s" % short(err[-600:]))
    else:
        check("does not match" in err.lower(), "stderr does not say the key does not match: %s" % short(err[-600:]))
    t.note("exit %d, %r" % (rc, last_line(err)))
    return "exit %d; %s" % (rc, short(last_line(err), 200))


def sds_server(t):
    """A proxy whose TLS listener takes its certificate from SDS: path_config_source + watched_directory on a
    Kubernetes-style secret directory whose Secret references tls.crt / tls.key by filename. Returns the proxy, the
    listener port, the SecretDir and `files(cred, key=None)`, the directory's contents for a certificate (and a key,
    by default the certificate's own)."""
    echo = t.echo()
    secret_dir = os.path.join(t.dir, "server-secret")

    def files(cred, key=None):
        with open((key or cred).key) as f:
            key_pem = f.read()
        secret = {
            "name": "server_cert",
            "tls_certificate": {
                "certificate_chain": {"filename": os.path.join(secret_dir, "tls.crt")},
                "private_key": {"filename": os.path.join(secret_dir, "tls.key")},
            },
        }
        return {"sds.yaml": sds_file(secret), "tls.crt": cred.pem(), "tls.key": key_pem}

    secrets = SecretDir(secret_dir, files(t.pki.server))
    port, admin = free_ports(2)
    transport = downstream_tls(
        None, tls_certificate_sds_secret_configs=[sds_ref("server_cert", secret_dir, "sds.yaml")]
    )
    p = t.proxy(
        [listener("sds", port, [chain([hcm("ingress")], transport)])], [cluster("svc", echo.port)], admin, [port], True
    )
    return p, port, secrets, files


def scenario_sds_rotation(t):
    """The server certificate from SDS (path_config_source + watched_directory, the secret's files referenced by
    filename) in a Kubernetes-style directory; the certificate is rotated by an atomic ..data swap under load
    (4 threads with a new TLS connection per request and one keep-alive connection, ~6 s): no request fails, new
    handshakes present the new certificate within 2 s, the keep-alive connection keeps working on its old
    session. Envoy 1.40 counts server_ssl_socket_factory.ssl_context_update_by_sds."""
    pki = t.pki
    p, port, secrets, files = sds_server(t)
    first = tls_request(pki, port, "/before")
    check(
        first.status == 200 and first.peer_fp == pki.server.fp,
        "before rotation: %r (served %s)" % (first, first.peer_fp),
    )
    before = p.stats()
    load = RotationLoad(pki, port).start()
    t.on_close("rotation load", load.stop)
    time.sleep(2.0)
    swap_start, swapped = secrets.swap(files(pki.server_v2))
    load.join()
    d = delta(before, p.stats())
    fresh = sorted(load.fresh, key=lambda o: o.started)
    failed = [o for o in fresh if o.status != 200]
    check(fresh, "no requests were made")
    check(
        not failed,
        "%d of %d new-connection requests failed, first: %r" % (len(failed), len(fresh), failed[0] if failed else None),
    )
    new = [o for o in fresh if o.peer_fp == pki.server_v2.fp]
    old_after = [o for o in fresh if o.peer_fp == pki.server.fp and o.started > swapped]
    other = [o for o in fresh if o.peer_fp not in (pki.server.fp, pki.server_v2.fp)]
    check(not other, "%d handshakes presented an unknown certificate" % len(other))
    check(
        new,
        "no handshake presented the new certificate (%d requests, last %.1fs after the swap)"
        % (len(fresh), fresh[-1].started - swapped),
    )
    early = [o for o in new if o.handshake_done < swap_start]
    check(not early, "%d handshakes completed before the swap presented the new certificate" % len(early))
    late_old = [o for o in old_after if o.started > swapped + 2.0]
    check(
        not late_old, "%d handshakes more than 2 s after the swap still presented the old certificate" % len(late_old)
    )
    first_new = min(o.handshake_done for o in new) - swapped
    last_old = max(o.handshake_done for o in fresh if o.peer_fp == pki.server.fp) - swapped
    ka = load.keepalive
    ka_bad = [r for r in ka if r[1] != 200]
    check(not ka_bad, "keep-alive: %d of %d failed: %r" % (len(ka_bad), len(ka), ka_bad[:3]))
    check(load.keepalive_connects == 1, "keep-alive reconnected %d times" % (load.keepalive_connects - 1))
    ka_after = [r for r in ka if r[0] > swapped + 0.5]
    check(len(ka_after) >= 10, "keep-alive made only %d requests after the swap" % len(ka_after))
    check(all(r[3] == pki.server.fp for r in ka), "keep-alive connection's certificate changed")
    # Envoy counts the initial load and each reload; the swap fires both the SDS file's directory watch (same
    # Secret, so no reload) and the watch on the certificate files' directory (new contents: one reload).
    after = p.stats()
    expect_delta(delta({}, after), {"server_ssl_socket_factory.ssl_context_update_by_sds": 2}, lstat(port, ""), "sds")
    expect_delta(d, {"sds.server_cert.update_success": 1}, "", "sds")
    t.note(
        "%d new-connection requests + %d keep-alive, 0 failed; first new-cert handshake completed %.3fs after the "
        "swap, last old-cert handshake completed %.3fs after it" % (len(fresh), len(ka), first_new, last_old)
    )
    t.note("stat deltas: %s" % show(interesting(d)))
    return (
        "%d+%d requests, 0 failed; new certificate %.0f ms after the swap (last old one %+.0f ms); keep-alive "
        "kept its connection" % (len(fresh), len(ka), first_new * 1000, last_old * 1000)
    )


def scenario_sds_bad_rotation(t):
    """A rotation to a key that does not match the certificate is refused: the old certificate keeps being served,
    Envoy 1.40 logs 'Failed to reload certificates: Failed to load private key from <inline>, Cause: ...
    KEY_VALUES_MISMATCH' and counts sds.server_cert.key_rotation_failed (twice: the SDS file's and the certificate
    files' watches both fire on the one rename); a later good rotation is picked up."""
    pki = t.pki
    p, port, secrets, files = sds_server(t)

    def served():
        return tls_request(pki, port, "/").peer_fp

    check(served() == pki.server.fp, "the first certificate is not served")
    secrets.swap(files(pki.server_v2, key=pki.client))
    failed = "sds.server_cert.key_rotation_failed"
    rejected = wait_for(lambda: p.stats().get(failed, 0) >= 1, 2.0)
    check(rejected, "%s did not move within 2 s of the swap to a mismatched key" % failed)
    for _ in range(5):
        check(served() == pki.server.fp, "after the bad rotation the old certificate is no longer served")
    after_bad = p.stats()
    update = lstat(port, "server_ssl_socket_factory.ssl_context_update_by_sds")
    check(after_bad.get(update, 0) == 1, "%s is %d after a refused rotation" % (update, after_bad.get(update, 0)))
    if t.suite.proxy == "envoy":
        want = "Failed to reload certificates: Failed to load private key from <inline>, Cause: "
        check(want in p.proc.stderr_text() and "KEY_VALUES_MISMATCH" in p.proc.stderr_text(), "Envoy's warning changed")
    _, swapped = secrets.swap(files(pki.server_v2))
    got = wait_for(lambda: served() == pki.server_v2.fp, 2.0, 0.02)
    check(got, "the good rotation after a bad one was not served within 2 s")
    t.note(
        "after the bad swap: %s %d, %s %d; good swap served after %.0f ms"
        % (failed, after_bad.get(failed, 0), update, after_bad.get(update, 0), (time.monotonic() - swapped) * 1000)
    )
    return "mismatched key refused (old certificate kept, %s %d), next good rotation served" % (
        failed,
        after_bad.get(failed, 0),
    )


def scenario_sds_ca_rotation(t):
    """The trusted CA from SDS (validation_context_sds_secret_config, the CA inline in the SDS file, with the URI
    SAN matcher): a client from CA 2 is refused until the file is swapped to a bundle of both CAs, after which both
    clients are accepted; after a swap to CA 2 alone the CA 1 client is refused."""
    pki = t.pki
    echo = t.echo()
    secret_dir = os.path.join(t.dir, "ca-secret")

    def files(*cas):
        secret = {
            "name": "mesh_ca",
            "validation_context": {
                "trusted_ca": {"inline_string": "".join(c.pem() for c in cas)},
                "match_typed_subject_alt_names": [{"san_type": "URI", "matcher": {"exact": SPIFFE + "client"}}],
            },
        }
        return {"ca.yaml": sds_file(secret)}

    secrets = SecretDir(secret_dir, files(pki.ca))
    port, admin = free_ports(2)
    transport = downstream_tls(
        pki.server, require_client=True, validation_context_sds_secret_config=sds_ref("mesh_ca", secret_dir, "ca.yaml")
    )
    p = t.proxy(
        [listener("sds_ca", port, [chain([hcm("ingress")], transport)])],
        [cluster("svc", echo.port)],
        admin,
        [port],
        node=True,
    )

    refusals = []

    def accepted(cred):
        o = tls_request(pki, port, "/ca", cred=cred)
        if o.status != 200:
            refusals.append(o.error)
        return o.status == 200

    check(accepted(pki.client), "CA 1 client refused before rotation")
    o = tls_request(pki, port, cred=pki.client_ca2, request=False)
    check(alert_matches(o.error, "SSLError TLSV1_ALERT_UNKNOWN_CA"), "CA 2 client before rotation: %r" % o)
    timings = []
    for label, cas, cred, want in (
        ("bundle CA1+CA2", (pki.ca, pki.ca2), pki.client_ca2, True),
        ("CA2 only", (pki.ca2,), pki.client, False),
    ):
        _, swapped = secrets.swap(files(*cas))
        got = wait_for(lambda: accepted(cred) == want, 5.0, 0.02)
        took = time.monotonic() - swapped
        check(got, "%s: %s client still %s 5 s after the swap" % (label, cred.name, "refused" if want else "accepted"))
        check(took <= 2.0, "%s: took %.2fs" % (label, took))
        timings.append("%s in %.0f ms" % (label, took * 1000))
        if want:
            check(accepted(pki.client), "%s: the CA 1 client is refused" % label)
    check(accepted(pki.client_ca2), "CA 2 client refused after rotation to CA 2")
    # How many polls were refused depends on how fast the reload was; each refusal is one fail_verify_error.
    after = delta({}, p.stats())
    expect_delta(
        after,
        {"server_ssl_socket_factory.ssl_context_update_by_sds": 3, "ssl.fail_verify_error": len(refusals) + 1},
        lstat(port, ""),
        "sds ca",
    )
    expect_delta(after, {"sds.mesh_ca.update_success": 3}, "", "sds ca")
    d = delta({}, after, "sds.")
    t.note("sds stats: %s" % show(interesting(d)))
    t.note(
        "listener: %s"
        % show(
            {
                k: v
                for k, v in delta({}, p.stats(), lstat(port, "")).items()
                if "fail_verify" in k or "sds" in k or "handshake" in k
            },
            lstat(port, ""),
        )
    )
    return "trust followed the file: " + ", ".join(timings)


def rbac_principal(name):
    return {"authenticated": {"principal_name": {"exact": SPIFFE + name}}}


def scenario_rbac_network(t):
    """Network RBAC (ALLOW, principal spiffe://.../sa/client) before the HCM on an mTLS listener whose validation
    accepts any mesh certificate: the client is served; the intruder completes the handshake but its connection is
    closed on its first bytes, without a response."""
    pki = t.pki
    echo = t.echo()
    port, admin = free_ports(2)
    rbac = {
        "name": "envoy.filters.network.rbac",
        "typed_config": {
            "@type": NET_RBAC,
            "stat_prefix": "mesh.",
            "rules": {
                "action": "ALLOW",
                "policies": {"client-only": {"permissions": [{"any": True}], "principals": [rbac_principal("client")]}},
            },
        },
    }
    p = t.proxy(
        [mtls_listener(pki, port, sans=(), filters=[rbac, hcm("ingress")])], [cluster("svc", echo.port)], admin, [port]
    )
    before = p.stats()
    ok = tls_request(pki, port, "/net", cred=pki.client)
    check(ok.status == 200, "client: %r" % ok)
    bad = tls_request(pki, port, "/net", cred=pki.intruder)
    check(bad.handshake and bad.status is None, "intruder: %r" % bad)
    c = curl(t, port, "/net", cred=pki.intruder)
    check(c.rc != 0 and c.code == "000", "curl as intruder: %r" % c)
    d = delta(before, p.stats())
    t.note("intruder: python %s; %r; stat deltas: %s" % (bad.error, c, show(interesting(d))))
    expect_delta(d, {"mesh.rbac.allowed": 1, "mesh.rbac.denied": 2}, "", "network rbac")
    check(len(echo.requests) == 1, "backend got %d requests" % len(echo.requests))
    return "client 200; intruder: handshake ok, then %s (curl exit %d); mesh.rbac.allowed +1, denied +2" % (
        bad.error,
        c.rc,
    )


def scenario_rbac_http(t):
    """HTTP RBAC (ALLOW GET /public for principal .../sa/client): GET /public 200; POST /admin and the
    intruder's GET /public get 403 'RBAC: access denied'; http.<prefix>.rbac.allowed / denied count them."""
    pki = t.pki
    echo = t.echo()
    port, admin = free_ports(2)
    permission = {
        "and_rules": {
            "rules": [
                {"header": {"name": ":method", "string_match": {"exact": "GET"}}},
                {"url_path": {"path": {"prefix": "/public"}}},
            ]
        }
    }
    rbac = {
        "name": "envoy.filters.http.rbac",
        "typed_config": {
            "@type": HTTP_RBAC,
            "rules": {
                "action": "ALLOW",
                "policies": {"public-read": {"permissions": [permission], "principals": [rbac_principal("client")]}},
            },
        },
    }
    p = t.proxy(
        [mtls_listener(pki, port, sans=(), filters=[hcm("ingress", http_filters=[rbac])])],
        [cluster("svc", echo.port)],
        admin,
        [port],
    )
    before = p.stats()
    ok = tls_request(pki, port, "/public/doc", cred=pki.client)
    check(ok.status == 200, "GET /public: %r" % ok)
    denied = tls_request(pki, port, "/admin", method="POST", body="x", cred=pki.client)
    check(denied.status == 403 and denied.body == "RBAC: access denied", "POST /admin: %r" % denied)
    intruder = tls_request(pki, port, "/public/doc", cred=pki.intruder)
    check(intruder.status == 403 and intruder.body == "RBAC: access denied", "intruder GET /public: %r" % intruder)
    d = delta(before, p.stats())
    t.note("403 headers: %s; stat deltas: %s" % (denied.headers, show(interesting(d))))
    expect_delta(
        d,
        {"http.ingress.rbac.allowed": 1, "http.ingress.rbac.denied": 2, "http.ingress.downstream_rq_4xx": 2},
        "",
        "http rbac",
    )
    check(len(echo.requests) == 1, "backend got %d requests" % len(echo.requests))
    return (
        "GET /public 200; POST /admin and intruder 403 'RBAC: access denied'; http.ingress.rbac.allowed +1, denied +2"
    )


SCENARIOS = [
    ("termination", scenario_termination),
    ("alpn", scenario_alpn),
    ("ssl_sni", scenario_ssl_sni),
    ("mtls_accept", scenario_mtls_accept),
    ("mtls_reject", scenario_mtls_reject),
    ("tls_params", scenario_tls_params),
    ("upstream_tls", scenario_upstream_tls),
    ("upstream_tls_reject", scenario_upstream_tls_reject),
    ("strict", scenario_strict),
    ("permissive", scenario_permissive),
    ("config_missing_file", scenario_config_missing_file),
    ("config_key_mismatch", scenario_config_key_mismatch),
    ("sds_rotation", scenario_sds_rotation),
    ("sds_bad_rotation", scenario_sds_bad_rotation),
    ("sds_ca_rotation", scenario_sds_ca_rotation),
    ("rbac_network", scenario_rbac_network),
    ("rbac_http", scenario_rbac_http),
]


# ---- runner --------------------------------------------------------------------------------------------
class TlsSuite(Suite):
    """The proxy under test plus the PKI, made on first use and removed after the last scenario."""

    def __init__(self, proxy, binary, verbose):
        super().__init__(proxy, binary, verbose)
        PROXY_KIND["name"] = proxy
        self._pki = None
        self._pki_dir = None

    @property
    def pki(self):
        if self._pki is None:
            self._pki_dir = tempfile.mkdtemp(prefix=self.tmp_prefix + "pki-")
            self._pki = Pki(self._pki_dir)
        return self._pki

    def close(self):
        if self._pki_dir:
            shutil.rmtree(self._pki_dir, ignore_errors=True)


class T(ScenarioContext):
    @property
    def pki(self):
        return self.suite.pki

    def echo(self, tls=None):
        server = EchoServer(tls)
        self.on_close("backend on %d" % server.port, server.close)
        return server

    def proxy(self, listeners, clusters, admin, ports, node=False):
        return Proxy(self, listeners, clusters, admin, ports, node)


if __name__ == "__main__":
    sys.exit(
        run_suite(
            "tls",
            "TLS, SDS and RBAC end-to-end tests",
            SCENARIOS,
            "pft",
            suite_class=TlsSuite,
            context_class=T,
            scenario_limit=SCENARIO_LIMIT,
        )
    )
