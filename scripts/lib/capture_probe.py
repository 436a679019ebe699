#!/usr/bin/env python3
"""Tiny socket helper for the sidecar-init network-namespace tests (scripts/lib/netns_init_suite.py).

Run inside a namespace with `ip netns exec NS python3 capture_probe.py MODE ...`. Every mode is bounded
in time and prints machine-readable lines on stdout (flushed at once):

  listen-transparent PORT   IP_TRANSPARENT listener on 0.0.0.0:PORT (where TPROXY delivers). Prints
                            READY, then for the one accepted connection `ORIGDST ip:port` (the accepted
                            socket's local address, which for TPROXY is the original destination) and
                            `PEER ip:port`.
  listen-redirect PORT      plain listener on 0.0.0.0:PORT. Prints READY, then `ORIGDST ip:port` from
                            getsockopt(SOL_IP, SO_ORIGINAL_DST) (or `ORIGDST none <errno>` when the
                            connection was not NATed), `LOCAL ip:port` and `PEER ip:port`.
  listen PORT [--bind ADDR] plain "application" listener. Prints READY, then `ACCEPTED LOCAL ip:port PEER ip:port`.
  connect ADDR PORT [--uid U] [--gid G] [--bind ADDR]
                            drops to gid/uid (setgroups([]), setgid, setuid) and connects. Prints
                            `CONNECTED LOCAL ip:port` or `ERROR <errno name> <message>`; exit status 0 or 1.

  udp-listen PORT [--bind ADDR]
                            UDP socket on PORT. Prints READY, then for the first datagram
                            `DATAGRAM LOCAL ip:port PEER ip:port DATA text`.
  udp-send ADDR PORT [--uid U] [--gid G]
                            drops to gid/uid and sends one datagram "pilotfish-probe". Prints SENT.

  echo PORT                 echo server for several connections (until --timeout of silence): echoes each
                            connection until EOF, then half-closes. Prints READY, then `PEER ip:port` per
                            connection.
  roundtrip ADDR PORT SIZE [--uid U] [--gid G]
                            sends SIZE deterministic bytes, half-closes, reads to EOF and prints
                            `ROUNDTRIP OK SIZE` when the echo is byte-exact (else `ROUNDTRIP MISMATCH ...`).

  http-echo PORT            HTTP/1.1 server (threads, keep-alive): answers every request 200 with a JSON body
                            {"path", "headers", "peer"}; exits after --timeout of no requests.
  tls-get ADDR PORT PATH --ca F [--cert F --key F] [--uid U] [--gid G]
                            one GET over TLS (ALPN http/1.1, the server's certificate checked against --ca);
                            prints `HTTP status`, `NO RESPONSE` or `TLS ERROR reason`.
  http-get ADDR PORT PATH [--count N] [--uid U] [--gid G]
                            N keep-alive GETs with http.client; prints `HTTP status` and `BODY json` for the
                            first, then `DONE ok=N errors=N`.

Listeners accept one connection, then exit 0; if none arrives within --timeout seconds they print
TIMEOUT and exit 2.
"""
import argparse
import encodings.idna  # noqa: F401 (imported before privileges are dropped: getaddrinfo needs it)
import errno
import os
import socket
import struct
import sys
import threading
import time

IP_TRANSPARENT = 19
SO_ORIGINAL_DST = 80


def out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def fmt(addr):
    return "%s:%d" % (addr[0], addr[1])


def listener(port, bind_addr="0.0.0.0", transparent=False):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if transparent:
        s.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)
    s.bind((bind_addr, port))
    s.listen(8)
    return s


def accept_one(s, timeout):
    s.settimeout(timeout)
    out("READY %s" % fmt(s.getsockname()))
    try:
        conn, peer = s.accept()
    except socket.timeout:
        out("TIMEOUT")
        sys.exit(2)
    conn.settimeout(timeout)
    return conn, peer


def original_dst(conn):
    try:
        raw = conn.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    except OSError as e:
        return None, errno.errorcode.get(e.errno, str(e.errno))
    # struct sockaddr_in: sa_family (host order u16), sin_port (network u16), sin_addr (4 bytes), zero[8]
    family = struct.unpack("=H", raw[0:2])[0]
    if family != socket.AF_INET:
        return None, "family-%d" % family
    port = struct.unpack("!H", raw[2:4])[0]
    return (socket.inet_ntoa(raw[4:8]), port), None


def drop_privileges(a):
    """Become --gid/--uid (no supplementary groups), so the kernel stamps our sockets with them."""
    if a.gid is not None or a.uid is not None:
        os.setgroups([])
    if a.gid is not None:
        os.setgid(a.gid)
    if a.uid is not None:
        os.setuid(a.uid)


def serve_until_idle(handler, a, last_request):
    """Serves HTTP with `handler` on --bind (0.0.0.0) and args[0], says READY, and returns 0 once --timeout seconds
    pass without a request (keep-alive connections carry many: the handler updates last_request[0])."""
    import http.server
    srv = http.server.ThreadingHTTPServer((a.bind or "0.0.0.0", int(a.args[0])), handler)
    srv.daemon_threads = True
    out("READY %s" % fmt(srv.server_address))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    while time.monotonic() - last_request[0] < a.timeout:
        time.sleep(0.2)
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["listen-transparent", "listen-redirect", "listen", "connect", "udp-listen", "udp-send", "echo",
                                       "roundtrip", "http-echo", "http-get", "tls-get", "zipkin-collector"])
    ap.add_argument("args", nargs="+")
    ap.add_argument("--uid", type=int)
    ap.add_argument("--gid", type=int)
    ap.add_argument("--bind", default=None)
    ap.add_argument("--timeout", type=float, default=6.0)
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--ca")
    a = ap.parse_args()
    try:
        if a.mode == "http-echo":
            import http.server
            import json

            last_request = [time.monotonic()]

            class Handler(http.server.BaseHTTPRequestHandler):
                protocol_version = "HTTP/1.1"
                # Headers and body are separate writes: without this, Nagle holds the body for the
                # peer's delayed ACK (40 ms a request).
                disable_nagle_algorithm = True

                def do_GET(self):
                    last_request[0] = time.monotonic()
                    body = json.dumps({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                                       "peer": "%s:%d" % self.client_address[:2]}).encode()
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

                def log_message(self, *args):
                    pass
            return serve_until_idle(Handler, a, last_request)
        if a.mode == "zipkin-collector":
            # A Zipkin receiver: POST /api/v2/spans (JSON v2, chunked or not); each span goes to the file args[1], one
            # JSON object per line.
            import http.server
            import json

            last_request = [time.monotonic()]
            sink = open(a.args[1], "a")
            lock = threading.Lock()

            class Collector(http.server.BaseHTTPRequestHandler):
                protocol_version = "HTTP/1.1"

                def do_POST(self):
                    last_request[0] = time.monotonic()
                    if self.headers.get("transfer-encoding", "").lower() == "chunked":
                        data = b""
                        while True:
                            n = int(self.rfile.readline().strip().split(b";")[0], 16)
                            if n == 0:
                                self.rfile.readline()
                                break
                            data += self.rfile.read(n)
                            self.rfile.readline()
                    else:
                        data = self.rfile.read(int(self.headers.get("content-length", "0")))
                    with lock:
                        for span in json.loads(data):
                            sink.write(json.dumps(span) + "\n")
                        sink.flush()
                    self.send_response(202)
                    self.send_header("content-length", "0")
                    self.end_headers()

                def log_message(self, *args):
                    pass
            return serve_until_idle(Collector, a, last_request)
        if a.mode == "tls-get":
            import ssl
            addr, port, path = a.args[0], int(a.args[1]), a.args[2]
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.load_verify_locations(a.ca)
            if a.cert:
                ctx.load_cert_chain(a.cert, a.key)
            ctx.set_alpn_protocols(["http/1.1"])
            drop_privileges(a)
            try:
                raw = socket.create_connection((addr, port), timeout=min(a.timeout, 5.0))
                c = ctx.wrap_socket(raw)
                c.sendall(("GET %s HTTP/1.1\r\nhost: %s\r\nconnection: close\r\n\r\n" % (path, addr)).encode())
                data = b""
                while True:
                    d = c.recv(65536)
                    if not d:
                        break
                    data += d
                out("HTTP %s" % data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/") else "NO RESPONSE")
                return 0
            except (OSError, ssl.SSLError) as e:
                out("TLS ERROR %s" % e)
                return 1
        if a.mode == "http-get":
            import http.client
            addr, port, path = a.args[0], int(a.args[1]), a.args[2]
            drop_privileges(a)
            ok = errors = 0
            first_error = None
            conn = None
            for i in range(a.count):
                try:
                    if conn is None:
                        conn = http.client.HTTPConnection(addr, port, timeout=5)
                    conn.request("GET", path, headers={"host": "%s:%d" % (addr, port)})
                    r = conn.getresponse()
                    body = r.read()
                    if i == 0:
                        out("HTTP %d" % r.status)
                        out("BODY %s" % body.decode(errors="replace"))
                    if r.status == 200:
                        ok += 1
                    else:
                        errors += 1
                        first_error = first_error or "request %d: HTTP %d %s" % (i, r.status, body[:200])
                except Exception as e:
                    errors += 1
                    if i == 0:
                        out("ERROR %s %s" % (type(e).__name__, e))
                    first_error = first_error or "request %d: %s %s" % (i, type(e).__name__, e)
                    conn = None
            out("DONE ok=%d errors=%d%s" % (ok, errors, "" if not first_error else " first: " + first_error))
            return 0 if errors == 0 else 1
        if a.mode == "echo":
            srv = listener(int(a.args[0]), a.bind or "0.0.0.0")
            srv.settimeout(a.timeout)
            out("READY %s" % fmt(srv.getsockname()))

            def serve(conn):
                conn.settimeout(a.timeout)
                try:
                    while True:
                        d = conn.recv(65536)
                        if not d:
                            break
                        conn.sendall(d)
                    conn.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                finally:
                    conn.close()
            while True:
                try:
                    conn, peer = srv.accept()
                except socket.timeout:
                    return 0
                out("PEER %s" % fmt(peer))
                threading.Thread(target=serve, args=(conn,), daemon=True).start()
        if a.mode == "roundtrip":
            addr, port, size = a.args[0], int(a.args[1]), int(a.args[2])
            drop_privileges(a)
            payload = bytes((i * 131 + 17) & 0xFF for i in range(size))
            c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            c.settimeout(min(a.timeout, 5.0))
            try:
                c.connect((addr, port))  # numeric only: after dropping privileges no codec can be imported
            except OSError as e:
                out("ROUNDTRIP ERROR %s %s" % (errno.errorcode.get(e.errno, str(e.errno)), e))
                return 1
            c.settimeout(5.0)
            got = bytearray()

            def reader():
                try:
                    while True:
                        d = c.recv(65536)
                        if not d:
                            break
                        got.extend(d)
                except OSError:
                    pass
            t = threading.Thread(target=reader)
            t.start()
            c.sendall(payload)
            c.shutdown(socket.SHUT_WR)
            t.join(10)
            c.close()
            if bytes(got) == payload:
                out("ROUNDTRIP OK %d" % size)
                return 0
            out("ROUNDTRIP MISMATCH sent %d got %d" % (size, len(got)))
            return 1
        if a.mode == "udp-listen":
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            u.bind((a.bind or "0.0.0.0", int(a.args[0])))
            u.settimeout(a.timeout)
            out("READY %s" % fmt(u.getsockname()))
            try:
                data, peer = u.recvfrom(2048)
            except socket.timeout:
                out("TIMEOUT")
                return 2
            out("DATAGRAM LOCAL %s PEER %s DATA %s" % (fmt(u.getsockname()), fmt(peer), data.decode(errors="replace")))
            return 0
        if a.mode == "udp-send":
            drop_privileges(a)
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            u.sendto(b"pilotfish-probe", (a.args[0], int(a.args[1])))
            out("SENT")
            return 0
        if a.mode in ("listen-transparent", "listen-redirect", "listen"):
            port = int(a.args[0])
            s = listener(port, a.bind or "0.0.0.0", transparent=(a.mode == "listen-transparent"))
            conn, peer = accept_one(s, a.timeout)
            if a.mode == "listen-transparent":
                out("ORIGDST %s" % fmt(conn.getsockname()))
                out("PEER %s" % fmt(peer))
            elif a.mode == "listen-redirect":
                dst, err = original_dst(conn)
                out("ORIGDST %s" % (fmt(dst) if dst else "none " + err))
                out("LOCAL %s" % fmt(conn.getsockname()))
                out("PEER %s" % fmt(peer))
            else:
                out("ACCEPTED LOCAL %s PEER %s" % (fmt(conn.getsockname()), fmt(peer)))
            conn.close()
            s.close()
            return 0
        # connect
        addr, port = a.args[0], int(a.args[1])
        drop_privileges(a)
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(min(a.timeout, 3.0))
        if a.bind:
            s.bind((a.bind, 0))
        try:
            s.connect((addr, port))
        except socket.timeout:
            out("ERROR ETIMEDOUT connect timed out")
            return 1
        except OSError as e:
            out("ERROR %s %s" % (errno.errorcode.get(e.errno, str(e.errno)), e.strerror))
            return 1
        out("CONNECTED LOCAL %s" % fmt(s.getsockname()))
        s.close()
        return 0
    except OSError as e:
        out("ERROR %s %s" % (errno.errorcode.get(e.errno, str(e.errno)), e.strerror))
        return 1


if __name__ == "__main__":
    sys.exit(main())
