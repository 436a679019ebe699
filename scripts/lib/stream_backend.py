"""A test upstream for the streaming checks: GET /download?bytes=N streams N zero bytes, PUT/POST /upload
reads a chunked or content-length body and answers with the byte count, anything else answers
'Hello from service!'. HTTP/1.1 keep-alive. Usage: stream_backend.py HOST PORT"""
import socketserver
import sys
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlparse, parse_qs

CHUNK = b"\0" * (1 << 20)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _reply(self, body: bytes, status=200):
        self.send_response(status)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/download":
            n = int(parse_qs(url.query).get("bytes", ["0"])[0])
            self.send_response(200)
            self.send_header("content-length", str(n))
            self.end_headers()
            while n > 0:
                k = min(n, len(CHUNK))
                self.wfile.write(CHUNK[:k])
                n -= k
            return
        self._reply(b"Hello from service!\n")

    def _read_body(self) -> int:
        total = 0
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return total
                left = size
                while left > 0:
                    got = len(self.rfile.read(min(left, 1 << 20)))
                    if got == 0:
                        return total
                    left -= got
                    total += got
                self.rfile.readline()
        n = int(self.headers.get("content-length", "0"))
        while n > 0:
            got = len(self.rfile.read(min(n, 1 << 20)))
            if got == 0:
                break
            n -= got
            total += got
        return total

    def do_PUT(self):
        self._reply(f"{self._read_body()}\n".encode())

    do_POST = do_PUT


class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    allow_reuse_address = True
    daemon_threads = True


if __name__ == "__main__":
    with Server((sys.argv[1], int(sys.argv[2])), Handler) as s:
        s.serve_forever()
