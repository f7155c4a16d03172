"""HTTP/1.1 server of the cross-node linking test (keep-alive, every path
answers 200 with the path as its body).

usage: link_server.py ADDR PORT [CERT KEY]

With CERT and KEY it serves HTTPS through the ssl module (OpenSSL). It
prints "listening" once it accepts connections.
"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = self.path.encode() + b"\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


srv = ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), Handler)
srv.daemon_threads = True
if len(sys.argv) > 4:
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[3], sys.argv[4])
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print("listening", flush=True)
srv.serve_forever()
