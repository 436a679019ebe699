"""A TLS backend that speaks HTTP/2 or HTTP/1.1, whichever each connection's ALPN settles on, for the upstream
protocol scenarios (a cluster's auto_config and use_downstream_protocol_config over TLS).

AlpnBackend(cert, key, alpn) listens on a free 127.0.0.1 port and offers the protocols in `alpn` (server order
decides when the client offers several). Every connection is recorded with the protocol its handshake chose
(`"h2"`, `"http/1.1"`, or None when the client offered no ALPN), and every request (as its headers arrive) with
that protocol, its method, path and headers.

- HTTP/2 (the PyPI `h2` package): every stream is answered 200 with `x-upstream-protocol: h2` and the body
  `h2 <path>` once it ends (an extended CONNECT, which does not end, is recorded and never answered).
- HTTP/1.1 (keep-alive): answered 200 with `x-upstream-protocol: http/1.1` and the body `http/1.1 <path>`. A
  request with `Upgrade: websocket` is answered 101 (with the RFC 6455 accept key), after which the connection
  echoes every byte it reads until the client closes.

set_alpn() changes what new handshakes offer and drop_connections() closes the open ones (an upstream that stops
speaking HTTP/2). Only loopback is used; close() stops the listener and every connection.
"""

import base64
import hashlib
import socket
import ssl
import threading

import h2.config
import h2.connection
import h2.events

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
READ_LIMIT = 64 * 1024  # the most a request head may be


class AlpnBackend:
    def __init__(self, cert, key, alpn):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.ctx.set_alpn_protocols(list(alpn))
        self.lock = threading.Lock()
        self.connections = []  # the ALPN protocol of each accepted connection
        self.requests = []  # (protocol, method, path, [(name, value)])
        self.sockets = set()
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.port = self.listener.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw):
        with self.lock:
            self.sockets.add(raw)
        conn = None
        try:
            raw.settimeout(30)
            conn = self.ctx.wrap_socket(raw, server_side=True)
            protocol = conn.selected_alpn_protocol()
            with self.lock:
                # wrap_socket took over the descriptor: shutting the connection down goes through the TLS socket.
                self.sockets.discard(raw)
                self.sockets.add(conn)
                self.connections.append(protocol)
            if protocol == "h2":
                self._serve_h2(conn)
            else:
                self._serve_http1(conn, protocol or "http/1.1")
        except (OSError, ssl.SSLError, ValueError):
            pass
        finally:
            with self.lock:
                self.sockets.discard(raw)
                self.sockets.discard(conn)
            for sock in (conn, raw):
                try:
                    if sock is not None:
                        sock.close()
                except OSError:
                    pass

    def _record(self, protocol, method, path, headers):
        with self.lock:
            self.requests.append((protocol, method, path, headers))

    def _serve_h2(self, conn):
        h2c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        h2c.initiate_connection()
        conn.sendall(h2c.data_to_send())
        heads = {}
        while True:
            data = conn.recv(65536)
            if not data:
                return
            for event in h2c.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    heads[event.stream_id] = list(event.headers)
                    fields = dict(event.headers)
                    self._record("h2", fields.get(":method", ""), fields.get(":path", ""), list(event.headers))
                elif isinstance(event, h2.events.DataReceived):
                    h2c.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    path = dict(heads.pop(event.stream_id, [])).get(":path", "")
                    body = ("h2 %s" % path).encode()
                    h2c.send_headers(event.stream_id, [(":status", "200"), ("x-upstream-protocol", "h2"),
                                                       ("content-length", str(len(body)))])
                    h2c.send_data(event.stream_id, body, end_stream=True)
                elif isinstance(event, h2.events.ConnectionTerminated):
                    conn.sendall(h2c.data_to_send())
                    return
            conn.sendall(h2c.data_to_send())

    def _serve_http1(self, conn, protocol):
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                data = conn.recv(65536)
                if not data or len(buf) > READ_LIMIT:
                    return
                buf += data
            head, _, buf = buf.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = (lines[0].split(" ") + ["", ""])[:3]
            headers = []
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers.append((name.strip().lower(), value.strip()))
            fields = dict(headers)
            self._record(protocol, method, path, headers)
            length = int(fields.get("content-length", "0") or 0)
            while len(buf) < length:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
            buf = buf[length:]
            if fields.get("upgrade", "").lower() == "websocket":
                accept = base64.b64encode(hashlib.sha1(fields.get("sec-websocket-key", "").encode() + WS_GUID)
                                          .digest()).decode()
                conn.sendall(("HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
                              "sec-websocket-accept: %s\r\n\r\n" % accept).encode())
                if buf:
                    conn.sendall(buf)
                while True:
                    data = conn.recv(65536)
                    if not data:
                        return
                    conn.sendall(data)
            body = ("%s %s" % (protocol, path)).encode()
            conn.sendall(("HTTP/1.1 200 OK\r\nx-upstream-protocol: %s\r\ncontent-length: %d\r\n\r\n"
                          % (protocol, len(body))).encode() + body)

    def set_alpn(self, alpn):
        """What new handshakes offer from now on (connections already up keep theirs)."""
        self.ctx.set_alpn_protocols(list(alpn))

    def drop_connections(self):
        """Closes every connection it holds (the proxy sees them end)."""
        with self.lock:
            open_sockets = list(self.sockets)
        for s in open_sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def snapshot(self):
        """(connections, requests) recorded so far."""
        with self.lock:
            return list(self.connections), list(self.requests)

    def close(self):
        self.closed = True
        try:
            self.listener.close()
        except OSError:
            pass
        self.drop_connections()
