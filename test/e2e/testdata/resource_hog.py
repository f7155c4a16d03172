"""A python server holding resources, for the resource metrics test.

usage: resource_hog.py MB FILES

It imports ssl (so libssl is mapped and the agent traces it), fills MB
mebibytes of memory (resident: every page is written), opens FILES
descriptors on /dev/null, listens on a free 127.0.0.1 port with
http.server and prints "ready PORT", then serves until killed.
"""
import ssl  # noqa: F401  (maps libssl: the OpenSSL collector traces this process)
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

mb, nfiles = int(sys.argv[1]), int(sys.argv[2])
hog = b"\x01" * (mb << 20)
files = [open("/dev/null", "rb") for _ in range(nfiles)]


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\n")

    def log_message(self, *args):
        pass


srv = HTTPServer(("127.0.0.1", 0), Handler)
print("ready", srv.server_address[1], flush=True)
srv.serve_forever()
