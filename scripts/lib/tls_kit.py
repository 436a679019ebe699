"""What scripts/lib/tls_suite.py's scenarios are made of: the PKI (made with `cryptography`), Envoy v3 config
builders for TLS contexts, SDS references, listeners and clusters, the in-process echo backends (plain and TLS,
reporting what they received and the handshake they saw), the clients (Python ssl, curl, openssl s_client), a
Kubernetes-style secret directory for SDS rotation and the rotation load generator."""

import datetime
import hashlib
import http.client
import ipaddress
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from suite_common import Fail, admin_stats, check, http_call, short, sockaddr, wait_for

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
except ImportError:  # pragma: no cover - the wrapper installs it
    print("tls: needs the Python package `cryptography`; run scripts/e2e-tls, which installs it", file=sys.stderr)
    sys.exit(1)

REQUEST_TIMEOUT = 5  # seconds for any single client connection or request
TOOL_TIMEOUT = 10  # seconds for a curl or openssl run
SPIFFE = "spiffe://cluster.local/ns/default/sa/"

TLS = "envoy.transport_sockets.tls"
DOWNSTREAM_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
UPSTREAM_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
SECRET = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
NET_RBAC = "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC"
HTTP_RBAC = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"
TLS_INSPECTOR = {
    "name": "envoy.filters.listener.tls_inspector",
    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"},
}


# ---- PKI ---------------------------------------------------------------------------------------------
class Cred:
    """A certificate (PEM file), its key (PEM file) and the certificate's SHA-256 fingerprint."""

    def __init__(self, name, cert, key, der, cn):
        self.name = name
        self.cert = cert
        self.key = key
        self.fp = hashlib.sha256(der).hexdigest()
        self.cn = cn

    def pem(self):
        with open(self.cert) as f:
            return f.read()


def fingerprint(der):
    return hashlib.sha256(der).hexdigest() if der else None


class Pki:
    """Every certificate the scenarios use, made once per run in `directory`."""

    def __init__(self, directory):
        self.dir = directory
        self.now = datetime.datetime.now(datetime.timezone.utc)
        root = self._ca("Pilotfish e2e mesh root CA")
        other = self._ca("Pilotfish e2e unrelated CA")
        root2 = self._ca("Pilotfish e2e mesh root CA 2")
        self.ca = self._write("ca", root)
        self.other_ca = self._write("other-ca", other)
        self.ca2 = self._write("ca2", root2)
        server_dns = ["localhost", "server.example.test"]
        self.server = self._leaf("server", root, "server", [SPIFFE + "server"], server_dns, ["127.0.0.1"])
        self.server_v2 = self._leaf("server-v2", root, "server v2", [SPIFFE + "server"], server_dns, ["127.0.0.1"])
        self.client = self._leaf("client", root, "client", [SPIFFE + "client"])
        self.intruder = self._leaf("intruder", root, "intruder", [SPIFFE + "intruder"])
        self.expired = self._leaf("expired", root, "client expired", [SPIFFE + "client"], before=-10, after=-1)
        self.future = self._leaf("future", root, "client not yet valid", [SPIFFE + "client"], before=1, after=10)
        self.wrong_ca = self._leaf("wrong-ca", other, "client from another CA", [SPIFFE + "client"])
        self.client_ca2 = self._leaf("client-ca2", root2, "client from CA 2", [SPIFFE + "client"])
        self.sni_a = self._leaf("sni-a", root, "a.example.test", [], ["a.example.test"])
        self.sni_b = self._leaf("sni-b", root, "b.example.test", [], ["b.example.test"])
        backend_dns = ["backend.example.test"]
        self.backend = self._leaf("backend", root, "backend", [SPIFFE + "backend"], backend_dns)
        self.backend_bad_san = self._leaf("backend-bad-san", root, "backend other", [SPIFFE + "other"], backend_dns)
        self.backend_wrong_ca = self._leaf("backend-wrong-ca", other, "backend", [SPIFFE + "backend"], backend_dns)
        # The server's certificate with the client's key: a key that does not match its certificate.
        mismatch_cert = os.path.join(directory, "mismatch.pem")
        mismatch_key = os.path.join(directory, "mismatch.key")
        shutil.copyfile(self.server.cert, mismatch_cert)
        shutil.copyfile(self.client.key, mismatch_key)
        with open(self.server.cert, "rb") as f:
            der = x509.load_pem_x509_certificate(f.read()).public_bytes(serialization.Encoding.DER)
        self.mismatch = Cred("mismatch", mismatch_cert, mismatch_key, der, "server")

    @staticmethod
    def _name(cn):
        return x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Pilotfish e2e"),
                x509.NameAttribute(NameOID.COMMON_NAME, cn),
            ]
        )

    @staticmethod
    def _key_usage(ca):
        return x509.KeyUsage(
            digital_signature=True,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=ca,
            crl_sign=ca,
            encipher_only=False,
            decipher_only=False,
        )

    def _ca(self, cn):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(self._name(cn))
            .issuer_name(self._name(cn))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.now - datetime.timedelta(days=1))
            .not_valid_after(self.now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(self._key_usage(True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return key, cert, cn

    def _leaf(self, name, issuer, cn, uris=(), dns=(), ips=(), before=-1, after=30):
        issuer_key, issuer_cert, _ = issuer
        key = ec.generate_private_key(ec.SECP256R1())
        sans = (
            [x509.UniformResourceIdentifier(u) for u in uris]
            + [x509.DNSName(d) for d in dns]
            + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(self._name(cn))
            .issuer_name(issuer_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.now + datetime.timedelta(days=before))
            .not_valid_after(self.now + datetime.timedelta(days=after))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(self._key_usage(False), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return self._write(name, (key, builder.sign(issuer_key, hashes.SHA256()), cn))

    def _write(self, name, item):
        key, cert, cn = item
        cert_path = os.path.join(self.dir, name + ".pem")
        key_path = os.path.join(self.dir, name + ".key")
        with open(cert_path, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        with open(key_path, "wb") as f:
            f.write(
                key.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                )
            )
        cred = Cred(name, cert_path, key_path, cert.public_bytes(serialization.Encoding.DER), cn)
        if cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            cred.issuer = (key, cert, cn)
        return cred


# ---- config -----------------------------------------------------------------------------------------------
def cert_entry(cred):
    return {"certificate_chain": {"filename": cred.cert}, "private_key": {"filename": cred.key}}


def validation(ca, sans=None):
    """validation_context: trust `ca` (a Cred or a path) and optionally require one of the URI SANs."""
    v = {"trusted_ca": {"filename": ca.cert if isinstance(ca, Cred) else ca}}
    if sans:
        v["match_typed_subject_alt_names"] = [{"san_type": "URI", "matcher": {"exact": s}} for s in sans]
    return v


def downstream_tls(cert=None, require_client=False, validation_context=None, alpn=None, tls_params=None, **common):
    ctx = dict(common)
    if cert is not None:
        ctx["tls_certificates"] = [cert_entry(cert)]
    if tls_params:
        ctx["tls_params"] = tls_params
    if validation_context:
        ctx["validation_context"] = validation_context
    if alpn:
        ctx["alpn_protocols"] = alpn
    tc = {"@type": DOWNSTREAM_TLS, "common_tls_context": ctx}
    if require_client:
        tc["require_client_certificate"] = True
    return {"name": TLS, "typed_config": tc}


def upstream_tls(cert, validation_context, sni=None, alpn=None):
    ctx = {"tls_certificates": [cert_entry(cert)], "validation_context": validation_context}
    if alpn:
        ctx["alpn_protocols"] = alpn
    tc = {"@type": UPSTREAM_TLS, "common_tls_context": ctx}
    if sni:
        tc["sni"] = sni
    return {"name": TLS, "typed_config": tc}


def hcm(stat_prefix, routes=None, http_filters=None):
    routes = routes or [{"match": {"prefix": "/"}, "route": {"cluster": "svc"}}]
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": HCM,
            "stat_prefix": stat_prefix,
            "route_config": {"name": "local", "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}]},
            "http_filters": (http_filters or [])
            + [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}],
        },
    }


def chain(filters, transport=None, match=None):
    c = {}
    if match is not None:
        c["filter_chain_match"] = match
    c["filters"] = filters
    if transport is not None:
        c["transport_socket"] = transport
    return c


def listener(name, port, chains, listener_filters=None, default_chain=None):
    l = {"name": name, "address": sockaddr(port)}
    if listener_filters:
        l["listener_filters"] = listener_filters
    l["filter_chains"] = chains
    if default_chain is not None:
        l["default_filter_chain"] = default_chain
    return l


def cluster(name, port, transport=None):
    c = {
        "name": name,
        "connect_timeout": "1s",
        "type": "STATIC",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": sockaddr(port)}}]}],
        },
    }
    if transport is not None:
        c["transport_socket"] = transport
    return c


NODE = {"id": "tls-e2e", "cluster": "tls-e2e"}


def bootstrap(admin_port, listeners, clusters, node=False):
    """With `node`, the bootstrap names the node: Envoy 1.40 refuses SDS secrets ("TlsCertificateSdsApi: node 'id'
    and 'cluster' are required") without node.id and node.cluster."""
    doc = {"node": NODE} if node else {}
    doc["admin"] = {"address": sockaddr(admin_port)}
    doc["static_resources"] = {"listeners": listeners, "clusters": clusters}
    return doc


def sds_ref(name, directory, file_name):
    """An SDS secret read from `directory/file_name`, reloaded when something is renamed into `directory`."""
    return {
        "name": name,
        "sds_config": {
            "path_config_source": {
                "path": os.path.join(directory, file_name),
                "watched_directory": {"path": directory},
            }
        },
    }


# ---- proxy ---------------------------------------------------------------------------------------------------
def lstat(port, name):
    """A listener stat: `listener.127.0.0.1_<port>.<name>`."""
    return "listener.127.0.0.1_%d.%s" % (port, name)


class Proxy:
    def __init__(self, t, listeners, clusters, admin, ports, node=False):
        self.t = t
        self.admin = admin
        self.proc, self.config_path = t.launch_proxy(bootstrap(admin, listeners, clusters, node), admin, ports)

    def stats(self):
        return admin_stats(self.admin)

    def wait_stat(self, name, at_least, timeout=3.0):
        """Stats are flushed to the admin view asynchronously in some proxies; poll briefly."""
        return wait_for(lambda: self.stats().get(name, 0) >= at_least, timeout) is not None


def delta(before, after, prefix=""):
    """Counters that changed between two /stats snapshots (only names starting with `prefix`)."""
    out = {}
    for name, value in after.items():
        if name.startswith(prefix) and "expiration_unix_time_seconds" not in name:
            d = value - before.get(name, 0)
            if d:
                out[name] = d
    return out


INTERESTING = (
    ".ssl.",
    "rbac.",
    "no_filter_chain_match",
    "sds.",
    "socket_factory",
    "upstream_cx_connect_fail",
    "listener_filter",
    "downstream_cx_ssl",
)


def interesting(d):
    """The TLS-, RBAC- and SDS-related counters of a delta, for notes."""
    return {
        k: v
        for k, v in d.items()
        if (any(m in k for m in INTERESTING) or k.startswith("sds.")) and not k.endswith((".update_time", ".version"))
    }


def show(d, strip=""):
    return ", ".join("%s +%d" % (k[len(strip) :] if k.startswith(strip) else k, v) for k, v in sorted(d.items()))


# Where the sidecar knowingly differs from Envoy 1.40 (README, "mTLS": what is not there), and only there:
# - swift-nio-ssl does not expose the negotiated cipher, curve or the peer's signature algorithm, so the sidecar
#   has no ssl.ciphers.*, ssl.curves.* or ssl.sigalgs.* counters;
# - its certificate verification runs in swift-nio-ssl's custom verification callback, which cannot choose the
#   TLS alert: every refused chain gets certificate_unknown, where Envoy sends unknown_ca / certificate_expired.
SIDECAR_MISSING_STATS = ("ssl.ciphers.", "ssl.curves.", "ssl.sigalgs.")
SIDECAR_CHAIN_ALERT = "SSLError SSLV3_ALERT_CERTIFICATE_UNKNOWN"
PROXY_KIND = {"name": "envoy"}


def alert_matches(got, envoy_alert):
    """The alert a refused client reads: Envoy's exactly; for the sidecar certificate_unknown stands in for
    the chain-verification alerts (see SIDECAR_CHAIN_ALERT)."""
    if got == envoy_alert:
        return True
    chain_alerts = ("SSLError TLSV1_ALERT_UNKNOWN_CA", "SSLError SSLV3_ALERT_CERTIFICATE_EXPIRED")
    return PROXY_KIND["name"] == "sidecar" and envoy_alert in chain_alerts and got == SIDECAR_CHAIN_ALERT


def expect_delta(d, expected, strip, what):
    """Every name in `expected` (relative to `strip`) changed by exactly that amount."""
    for name, want in expected.items():
        if PROXY_KIND["name"] == "sidecar" and name.startswith(SIDECAR_MISSING_STATS):
            continue
        got = d.get(strip + name, 0)
        check(
            got == want,
            "%s: %s%s changed by %d, expected %d (changed: %s)"
            % (what, strip, name, got, want, show(interesting(d), strip)),
        )


# ---- backends ---------------------------------------------------------------------------------------------
class EchoHandler(BaseHTTPRequestHandler):
    """Answers every request with a JSON account of what arrived (and, over TLS, of the handshake)."""

    protocol_version = "HTTP/1.1"
    timeout = 10
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall between them

    def setup(self):
        self.tls_info = None
        server = self.server
        with server.lock:
            server.conns.add(self.request)
        if server.tls is not None:
            self.request.settimeout(REQUEST_TIMEOUT)
            try:
                self.request = server.tls.wrap_socket(self.request, server_side=True)
            except (OSError, ssl.SSLError) as e:
                with server.lock:
                    server.handshake_errors.append(describe_error(e))
                raise
            peer = self.request.getpeercert() or {}
            self.tls_info = {
                "version": self.request.version(),
                "alpn": self.request.selected_alpn_protocol(),
                "sni": getattr(self.request, "sni", None),
                "peer_uris": [v for k, v in peer.get("subjectAltName", ()) if k == "URI"],
                "peer_subject": dict(x[0] for x in peer.get("subject", ())).get("commonName"),
            }
            with server.lock:
                server.handshakes.append(self.tls_info)
        super().setup()

    def _answer(self):
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        seen = {
            "method": self.command,
            "path": self.path,
            "headers": [[k.lower(), v] for k, v in self.headers.items()],
            "body": body.decode(errors="replace"),
            "tls": self.tls_info,
        }
        with self.server.lock:
            self.server.requests.append(seen)
        out = json.dumps(seen).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def finish(self):
        try:
            super().finish()
        finally:
            with self.server.lock:
                self.server.conns.discard(self.request)

    def log_message(self, *args):
        pass


class EchoServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, tls=None):
        self.tls = tls
        self.lock = threading.Lock()
        self.conns = set()
        self.requests = []
        self.handshakes = []
        self.handshake_errors = []
        super().__init__(("127.0.0.1", 0), EchoHandler)
        self.port = self.server_address[1]
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def handle_error(self, request, client_address):
        pass  # handshake failures are recorded in handshake_errors; the rest is the client's business

    def close(self):
        self.shutdown()
        self.server_close()
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.thread.join(5)
        check(not self.thread.is_alive(), "backend on %d did not stop" % self.port)


def backend_tls_context(pki, cred, alpn=("http/1.1",)):
    """A TLS backend presenting `cred` that requires a client certificate from the mesh CA."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cred.cert, cred.key)
    ctx.load_verify_locations(pki.ca.cert)
    ctx.verify_mode = ssl.CERT_REQUIRED
    if alpn:
        ctx.set_alpn_protocols(list(alpn))

    def on_sni(sock, name, _ctx):
        sock.sni = name

    ctx.sni_callback = on_sni
    return ctx


def seen_header(seen, name):
    values = [v for k, v in seen["headers"] if k == name]
    return values[0] if len(values) == 1 else (values or None)


# ---- clients ---------------------------------------------------------------------------------------------------
def describe_error(e):
    """The class and, for TLS errors, OpenSSL's reason (e.g. `SSLError TLSV1_ALERT_UNKNOWN_CA`)."""
    if isinstance(e, ssl.SSLError) and getattr(e, "reason", None):
        return "%s %s" % (type(e).__name__, e.reason)
    return type(e).__name__


class Outcome:
    """What one Python TLS client saw: the handshake, then the response or the error."""

    def __init__(self):
        self.handshake = False
        self.version = self.cipher = self.alpn = None
        self.peer_fp = None
        self.status = None
        self.headers = {}
        self.body = ""
        self.error = None
        self.started = None
        self.handshake_done = None

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            raise Fail("backend answer is not JSON: %s" % short(self.body, 200))

    def __repr__(self):
        if self.error:
            return "%s%s" % ("after handshake: " if self.handshake else "", self.error)
        return "%s %s" % (self.status, short(self.body, 100))


def client_context(pki, cred=None, alpn=None, min_version=None, max_version=None, ciphers=None, ca=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False  # chains are verified; which certificate was served is checked by fingerprint
    ctx.load_verify_locations(ca or pki.ca.cert)
    if cred is not None:
        ctx.load_cert_chain(cred.cert, cred.key)
    if alpn:
        ctx.set_alpn_protocols(alpn)
    if min_version:
        ctx.minimum_version = min_version
    if max_version:
        ctx.maximum_version = max_version
    if ciphers:
        ctx.set_ciphers(ciphers)
    return ctx


def tls_request(
    pki, port, path="/", method="GET", body=None, headers=None, server_name="localhost", request=True, **ctx_args
):
    """One TLS connection to 127.0.0.1:`port` with SNI `server_name` (None: no SNI). With `request`, one HTTP/1.1
    request (Connection: close) and its response; without, the client sends nothing after the handshake and waits
    for what the server does (a TLS 1.3 server reports a rejected client certificate only after the client's
    handshake has finished, with an alert)."""
    o = Outcome()
    o.started = time.monotonic()
    ctx = client_context(pki, **ctx_args)
    try:
        raw = socket.create_connection(("127.0.0.1", port), timeout=REQUEST_TIMEOUT)
    except OSError as e:
        o.error = describe_error(e)
        return o
    # Without this the request waits for the ACK of the client's Finished (Nagle), i.e. the peer's 40 ms delayed ACK.
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        s = ctx.wrap_socket(raw, server_hostname=server_name)
        o.handshake = True
        o.handshake_done = time.monotonic()
        o.version, o.cipher, o.alpn = s.version(), s.cipher()[0], s.selected_alpn_protocol()
        o.peer_fp = fingerprint(s.getpeercert(binary_form=True))
        if not request:
            s.settimeout(2.0)
            data = s.recv(1)
            o.error = "server sent data" if data else "EOF"
            return o
        lines = ["%s %s HTTP/1.1" % (method, path), "host: %s" % (server_name or "127.0.0.1"), "connection: close"]
        payload = (body or "").encode()
        if body is not None:
            lines.append("content-length: %d" % len(payload))
        for k, v in (headers or {}).items():
            lines.append("%s: %s" % (k, v))
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + payload)
        resp = http.client.HTTPResponse(s, method=method)
        resp.begin()
        o.body = resp.read().decode(errors="replace")
        o.status = resp.status
        o.headers = {k.lower(): v for k, v in resp.getheaders()}
    except socket.timeout:
        o.error = "timeout"
    except (OSError, ssl.SSLError, http.client.HTTPException) as e:
        o.error = describe_error(e)
    finally:
        raw.close()
    return o


def plain_request(port, path="/", method="GET", headers=None):
    """A plaintext HTTP/1.1 request; (status, body) or (None, error)."""
    try:
        status, body = http_call(port, method, path, timeout=REQUEST_TIMEOUT, headers=headers)
        return status, body
    except (OSError, http.client.HTTPException) as e:
        return None, describe_error(e)


def run_tool(argv, stdin=b""):
    try:
        r = subprocess.run(argv, input=stdin, capture_output=True, timeout=TOOL_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise Fail("%s did not finish within %ds" % (argv[0], TOOL_TIMEOUT))
    return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")


class CurlResult:
    def __init__(self, rc, code, body, err):
        self.rc, self.code, self.body, self.err = rc, code, body, err

    def __repr__(self):
        return "curl exit %d, http %s%s" % (self.rc, self.code, (": " + short(self.err, 160)) if self.err else "")


def curl(t, port, path="/", cred=None, scheme="https", data=None, headers=None, extra=()):
    """curl against https://localhost:<port> (resolved to 127.0.0.1), verifying the server with the mesh CA."""
    out = os.path.join(t.dir, "curl-body")
    argv = ["curl", "-sS", "--max-time", str(REQUEST_TIMEOUT), "-o", out, "-w", "%{http_code}"]
    argv += ["--resolve", "localhost:%d:127.0.0.1" % port]
    if scheme == "https":
        argv += ["--cacert", t.pki.ca.cert]
    if cred is not None:
        argv += ["--cert", cred.cert, "--key", cred.key]
    if data is not None:
        argv += ["--data-binary", data]
    for k, v in (headers or {}).items():
        argv += ["-H", "%s: %s" % (k, v)]
    argv += list(extra)
    argv.append("%s://localhost:%d%s" % (scheme, port, path))
    if os.path.exists(out):
        os.unlink(out)
    rc, stdout, stderr = run_tool(argv)
    body = ""
    if os.path.exists(out):
        with open(out, "rb") as f:
            body = f.read().decode(errors="replace")
    return CurlResult(rc, stdout.strip(), body, stderr.strip())


class SClient:
    def __init__(self, rc, out, err):
        self.rc, self.out, self.err = rc, out, err
        self.alpn = None
        for line in out.splitlines():
            if line.startswith("ALPN protocol: "):
                self.alpn = line[len("ALPN protocol: ") :].strip()
        self.no_alpn = "No ALPN negotiated" in out
        self.verified = "Verify return code: 0 (ok)" in out
        self.peer_fp = None
        begin, end = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"
        if begin in out:
            pem = out[out.index(begin) : out.index(end) + len(end)]
            self.peer_fp = fingerprint(ssl.PEM_cert_to_DER_cert(pem))

    def __repr__(self):
        return "s_client exit %d: %s" % (self.rc, short(self.err, 200))


def s_client(t, port, server_name=None, alpn=None, cred=None, extra=(), send=b""):
    """`openssl s_client` to 127.0.0.1:<port>; sends `send` (then waits for the server to close, -ign_eof) or
    nothing (stdin closed right after the handshake)."""
    argv = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-CAfile", t.pki.ca.cert]
    argv += ["-servername", server_name] if server_name else ["-noservername"]
    if alpn:
        argv += ["-alpn", alpn]
    if cred is not None:
        argv += ["-cert", cred.cert, "-key", cred.key]
    if send:
        argv.append("-ign_eof")
    argv += list(extra)
    rc, out, err = run_tool(argv, stdin=send)
    return SClient(rc, out, err)


HTTP_CLOSE = b"GET /s_client HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n"


# ---- SDS files ---------------------------------------------------------------------------------------------
class SecretDir:
    """A directory laid out like a mounted Kubernetes secret: the data lives in `..<n>/`, `..data` links to the
    current one and every file name links to `..data/<name>`. `swap` writes a new `..<n+1>/`, points `..data_tmp`
    at it and renames that over `..data` (one atomic rename, seen by inotify as IN_MOVED_TO in the directory), then
    removes the old data directory, as kubelet's AtomicWriter does."""

    def __init__(self, path, files):
        self.path = path
        self.generation = 0
        os.makedirs(path)
        self._write(files)
        os.symlink(self._gen_name(), os.path.join(path, "..data"))
        for name in files:
            os.symlink(os.path.join("..data", name), os.path.join(path, name))

    def _gen_name(self):
        return "..%d" % self.generation

    def _write(self, files):
        d = os.path.join(self.path, self._gen_name())
        os.makedirs(d)
        for name, content in files.items():
            with open(os.path.join(d, name), "w") as f:
                f.write(content)

    def swap(self, files):
        """Returns time.monotonic() just before and right after the rename."""
        old = self._gen_name()
        self.generation += 1
        self._write(files)
        tmp = os.path.join(self.path, "..data_tmp")
        os.symlink(self._gen_name(), tmp)
        before = time.monotonic()
        os.rename(tmp, os.path.join(self.path, "..data"))
        swapped = time.monotonic()
        shutil.rmtree(os.path.join(self.path, old))
        return before, swapped


def sds_file(secret):
    """An SDS file: a DiscoveryResponse with one Secret resource."""
    return json.dumps({"resources": [dict({"@type": SECRET}, **secret)]}, indent=2) + "\n"


# ---- rotation load --------------------------------------------------------------------------------------------
class RotationLoad:
    """`fresh` threads that each open a new TLS connection per request (at most one per `fresh_interval`), plus one
    keep-alive connection paced at `keepalive_interval`; bounded by `seconds` and `per_thread` requests per thread
    (so at most 4 x 700 + 300 requests)."""

    def __init__(self, pki, port, fresh=4, seconds=6.0, per_thread=700, fresh_interval=0.008, keepalive_interval=0.02):
        self.pki = pki
        self.port = port
        self.fresh_count = fresh
        self.seconds = seconds
        self.per_thread = per_thread
        self.fresh_interval = fresh_interval
        self.keepalive_interval = keepalive_interval
        self.lock = threading.Lock()
        self.fresh = []  # Outcome per request
        self.keepalive = []  # (t0, status or error, local port, peer fp)
        self.keepalive_connects = 0
        self.stopping = threading.Event()
        self.threads = []

    def start(self):
        self.started = time.monotonic()
        for k in range(self.fresh_count):
            self.threads.append(threading.Thread(target=self._fresh, daemon=True))
        self.threads.append(threading.Thread(target=self._keepalive, daemon=True))
        for th in self.threads:
            th.start()
        return self

    def _over(self):
        return self.stopping.is_set() or time.monotonic() - self.started > self.seconds

    def _fresh(self):
        for _ in range(self.per_thread):
            if self._over():
                break
            o = tls_request(self.pki, self.port, path="/load")
            with self.lock:
                self.fresh.append(o)
            self.stopping.wait(max(0.0, self.fresh_interval - (time.monotonic() - o.started)))

    def _keepalive(self):
        ctx = client_context(self.pki)
        conn = None
        sent = 0
        while not self._over() and sent < 300:
            t0 = time.monotonic()
            try:
                if conn is None:
                    conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=REQUEST_TIMEOUT, context=ctx)
                    conn.connect()
                    self.keepalive_connects += 1
                local = conn.sock.getsockname()[1]
                fp = fingerprint(conn.sock.getpeercert(binary_form=True))
                conn.request("GET", "/keepalive")
                resp = conn.getresponse()
                resp.read()
                result = resp.status
            except (OSError, ssl.SSLError, http.client.HTTPException) as e:
                result, local, fp = describe_error(e), None, None
                if conn is not None:
                    conn.close()
                conn = None
            sent += 1
            with self.lock:
                self.keepalive.append((t0, result, local, fp))
            self.stopping.wait(self.keepalive_interval)
        if conn is not None:
            conn.close()

    def join(self):
        for th in self.threads:
            th.join(self.seconds + 2 * REQUEST_TIMEOUT + 5)
        check(not any(th.is_alive() for th in self.threads), "load threads still busy")

    def stop(self):
        self.stopping.set()
        for th in self.threads:
            th.join(2 * REQUEST_TIMEOUT + 5)
