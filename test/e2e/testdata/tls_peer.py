"""TLS peers for the fault tests, built on python's ssl module (which calls
SSL_read_ex/SSL_write_ex, unlike openssl s_server/s_client).

usage: tls_peer.py MODE ARGS...

Servers print "listening PORT" once they accept connections; clients wait
for a line on stdin before they connect (so that the test can first make
sure the agent has attached to them).

  echo-server CERT KEY          echo every connection's bytes back until EOF
  garbage-client PORT CA        one connection sending binary bytes (no
                                newline anywhere), one speaking a text line
                                protocol; checks the echoes; prints "done"
  truncating-server CERT KEY    for each connection: read a request head,
                                answer "200, Content-Length: 1000" with
                                only 10 body bytes, close; prints "truncated"
  http-server CERT KEY          answer every request on every connection
                                (keep-alive) with 200 "ok\n"
  get-client PORT CA PATH...    GET each path over one keep-alive
                                http.client connection; prints, for each,
                                "incomplete N" when the response body is
                                cut short after N bytes, "complete N" else
  slow-server CERT KEY          read a request head, print "request", wait
                                for a line on stdin, answer 200, wait for
                                the client's EOF, close; print "closed"
  exit-client PORT CA           send a GET, print "sent", wait for a line on
                                stdin, then os._exit(0) without reading
                                the response
"""
import http.client
import os
import socket
import ssl
import sys
import threading


def server_context(cert, key):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


def client_context(ca):
    return ssl.create_default_context(cafile=ca)


def listen(cert, key):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(16)
    tls = server_context(cert, key).wrap_socket(ls, server_side=True)
    print("listening", tls.getsockname()[1], flush=True)
    return tls


def read_head(conn):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            raise EOFError("connection closed before the request head ended")
        data += chunk
    return data


def connect(port, ca):
    raw = socket.create_connection(("127.0.0.1", int(port)))
    return client_context(ca).wrap_socket(raw, server_hostname="127.0.0.1")


def recv_exactly(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise EOFError("short echo")
        data += chunk
    return data


def echo_server(cert, key):
    tls = listen(cert, key)

    def serve(conn):
        with conn:
            while True:
                data = conn.recv(4096)
                if not data:
                    return
                conn.sendall(data)

    while True:
        conn, _ = tls.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


def garbage_client(port, ca):
    sys.stdin.readline()
    # Binary: bytes that cannot start an HTTP message, and no newline.
    binary = bytes(b for b in range(256) if b not in (10, 13))
    with connect(port, ca) as c:
        for i in range(3):
            msg = binary[i:] + binary[:i]
            c.sendall(msg)
            assert recv_exactly(c, len(msg)) == msg
    # A text line protocol that is not HTTP.
    with connect(port, ca) as c:
        for line in (b"HELLO periscope\r\n", b"PING 1\r\n", b"STATS items 2 3\r\n", b"QUIT\r\n"):
            c.sendall(line)
            assert recv_exactly(c, len(line)) == line
    print("done", flush=True)


def truncating_server(cert, key):
    tls = listen(cert, key)
    while True:
        conn, _ = tls.accept()
        read_head(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\n")
        conn.sendall(b"0123456789")
        conn.close()
        print("truncated", flush=True)


def http_server(cert, key):
    tls = listen(cert, key)

    def serve(conn):
        with conn:
            buf = b""
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    buf += chunk
                _, buf = buf.split(b"\r\n\r\n", 1)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n")

    while True:
        conn, _ = tls.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


def get_client(port, ca, *paths):
    sys.stdin.readline()
    c = http.client.HTTPSConnection("127.0.0.1", int(port), context=client_context(ca))
    for path in paths:
        c.request("GET", path)
        r = c.getresponse()
        try:
            body = r.read()
            print("complete", len(body), flush=True)
        except http.client.IncompleteRead as e:
            print("incomplete", len(e.partial), flush=True)
    c.close()


def slow_server(cert, key):
    tls = listen(cert, key)
    conn, _ = tls.accept()
    read_head(conn)
    print("request", flush=True)
    sys.stdin.readline()
    try:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n")
        while conn.recv(4096):
            pass
    except OSError as e:  # the client is gone: a reset is fine
        print("error", type(e).__name__, flush=True)
    conn.close()
    print("closed", flush=True)


def exit_client(port, ca):
    sys.stdin.readline()
    c = connect(port, ca)
    c.sendall(b"GET /slow HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUser-Agent: exit-client\r\n\r\n" % int(port))
    print("sent", flush=True)
    sys.stdin.readline()
    os._exit(0)


MODES = {
    "echo-server": echo_server,
    "garbage-client": garbage_client,
    "truncating-server": truncating_server,
    "http-server": http_server,
    "get-client": get_client,
    "slow-server": slow_server,
    "exit-client": exit_client,
}

if __name__ == "__main__":
    MODES[sys.argv[1]](*sys.argv[2:])
