# WSGI app for gunicorn's pre-fork test (the master listens, its workers
# accept on the same socket). Routes: /ok 200 "ok\n", /missing 404 "no\n",
# /fail 500 "err\n".
ROUTES = {"/ok": ("200 OK", b"ok\n"), "/missing": ("404 Not Found", b"no\n"), "/fail": ("500 Internal Server Error", b"err\n")}


def app(environ, start_response):
    status, body = ROUTES.get(environ["PATH_INFO"], ROUTES["/missing"])
    start_response(status, [("Content-Length", str(len(body)))])
    return [body]
