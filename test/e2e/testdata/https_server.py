"""HTTPS server for the end-to-end tests: http.server wrapped with ssl.

usage: https_server.py CERT KEY

It starts WITHOUT the ssl module loaded (so libssl is not mapped), prints
"started", and waits for a line on stdin. Then it imports ssl (libssl is
loaded now, late, like a real python program that imports ssl lazily),
listens on a free 127.0.0.1 port and prints "listening PORT".

Routes (HTTP/1.1, keep-alive, every answer has a Content-Length):
  GET  /hello, /items/N   200 "hello\n"
  POST /submit            201, the body's length
  anything else           404
"""
import sys

assert "ssl" not in sys.modules, "ssl must not be loaded yet"
print("started", flush=True)
sys.stdin.readline()

import ssl  # noqa: E402  (late on purpose)
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # noqa: E402


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _send(self, code, body):
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/hello" or self.path.startswith("/items/"):
            self._send(200, b"hello\n")
        else:
            self._send(404, b"not found\n")

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        if self.path == "/submit":
            self._send(201, b"got %d bytes\n" % len(body))
        else:
            self._send(404, b"not found\n")

    def log_message(self, fmt, *args):
        sys.stderr.write("server: " + (fmt % args) + "\n")


ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
httpd.daemon_threads = True
httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
print("listening", httpd.server_address[1], flush=True)
httpd.serve_forever()
