# Plain HTTP/1.1 server for the sockets collector's tests (http.server).
# Routes: /ok 200 "ok\n", /missing 404 "no\n", /fail 500 "err\n",
# /big 200 with 10 MiB. Usage: server.py PORT
import http.server
import socketserver
import sys

ROUTES = {"/ok": (200, b"ok\n"), "/missing": (404, b"no\n"), "/fail": (500, b"err\n")}
BIG = 10 << 20


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        path = self.path.split("?")[0]
        if path.startswith("/proxy/"):
            path = path[len("/proxy"):]
        if path == "/big":
            self.send_response(200)
            self.send_header("Content-Length", str(BIG))
            self.end_headers()
            chunk = b"x" * (1 << 20)
            for _ in range(BIG // len(chunk)):
                self.wfile.write(chunk)
            return
        code, body = ROUTES.get(path, (404, b"no\n"))
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


Server(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
