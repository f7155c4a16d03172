"""An HTTP handler that queries PostgreSQL (python3-psycopg2), for the
end-to-end tests.

usage: pg_handler.py HTTP_PORT PG_PORT   (the password in PGPASSWORD)

GET /items/N answers the secret of py_items row N, read with two queries
on one connection opened at start, on the thread serving the request.
Prints "listening" once it accepts connections.
"""
import http.server
import os
import sys

import psycopg2

conn = psycopg2.connect(host="127.0.0.1", port=int(sys.argv[2]), dbname="shop", user="app",
                        password=os.environ["PGPASSWORD"], sslmode="disable")
conn.autocommit = True


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        cur = conn.cursor()
        cur.execute("SELECT count(*) FROM py_items")
        cur.execute("SELECT secret FROM py_items WHERE id = %s", (int(self.path.rsplit("/", 1)[1]),))
        body = (cur.fetchone()[0] + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


srv = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
print("listening", flush=True)
srv.serve_forever()
