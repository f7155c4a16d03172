"""HTTPS client for the end-to-end tests.

usage: https_client.py BASE_URL CA_FILE

New connections through urllib (which sends "Connection: close"):
  5 x GET /hello, 2 x GET /missing (404), 1 x POST /submit (a 300-byte body)
then one keep-alive connection through http.client:
  GET /items/1, GET /items/2, GET /nope (404), GET /items/3
and prints "done N" with N the number of requests made.
"""
import http.client
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request

base, ca = sys.argv[1], sys.argv[2]
ctx = ssl.create_default_context(cafile=ca)
n = 0


def get(path, want):
    global n
    try:
        with urllib.request.urlopen(base + path, context=ctx) as r:
            r.read()
            code = r.status
    except urllib.error.HTTPError as e:
        e.read()
        code = e.code
    n += 1
    assert code == want, (path, code, want)


for _ in range(5):
    get("/hello", 200)
for _ in range(2):
    get("/missing", 404)
req = urllib.request.Request(base + "/submit", data=b"p" * 300, method="POST")
with urllib.request.urlopen(req, context=ctx) as r:
    r.read()
    assert r.status == 201, r.status
n += 1

u = urllib.parse.urlsplit(base)
conn = http.client.HTTPSConnection(u.hostname, u.port, context=ctx)
for path, want in [("/items/1", 200), ("/items/2", 200), ("/nope", 404), ("/items/3", 200)]:
    conn.request("GET", path)
    r = conn.getresponse()
    r.read()
    assert r.status == want, (path, r.status, want)
    n += 1
conn.close()
print("done", n, flush=True)
