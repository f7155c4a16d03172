# Plain HTTP/1.1 clients for the sockets collector's tests.
#   client.py urllib URL...    urllib.request, one connection per request
#   client.py requests URL...  python3-requests, one keep-alive session
#   client.py torture HOST PORT N: on raw sockets, N GETs of /ok on one
#     keep-alive connection, a pipelined burst of 10, a GET of /big (10 MiB)
#     read whole, a GET written one byte per send, a POST with
#     "Expect: 100-continue", a POST with a chunked body, then binary
#     garbage on a connection of its own.
#   client.py threads HOST PORT T N: T threads at once, each N GETs of /ok
#     on a keep-alive connection of its own, while one more connection,
#     opened first, stays idle (its server thread waits in a read
#     throughout).
#   client.py busy HOST PORT T SECONDS: T threads, each GETs of /ok on a
#     keep-alive connection of its own, a millisecond apart, for SECONDS;
#     "ready" once every connection has had its first answer.
import socket
import sys
import time


def read_response(f):
    status = f.readline()
    if status.split()[1] == b"100":
        assert f.readline() == b"\r\n"
        status = f.readline()
    length = 0
    while True:
        line = f.readline()
        if line in (b"\r\n", b""):
            break
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    body = f.read(length)
    assert len(body) == length, (status, len(body), length)
    return int(status.split()[1])


def torture(host, port, n):
    req = b"GET /ok HTTP/1.1\r\nHost: t\r\n\r\n"
    with socket.create_connection((host, port)) as s:
        f = s.makefile("rb")
        for _ in range(n):
            s.sendall(req)
            assert read_response(f) == 200
        s.sendall(req * 10)
        for _ in range(10):
            assert read_response(f) == 200
        s.sendall(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_response(f) == 200
        for b in b"GET /ok HTTP/1.1\r\nHost: t\r\n\r\n":
            s.send(bytes([b]))
            time.sleep(0.001)
        assert read_response(f) == 200
        s.sendall(b"POST /ok HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        assert f.readline().split()[1] == b"100"
        assert f.readline() == b"\r\n"
        s.sendall(b"hello")
        assert read_response(f) == 200
        s.sendall(b"POST /ok HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        s.sendall(b"5\r\nhello\r\n")
        s.sendall(b"6\r\n world\r\n0\r\n\r\n")
        assert read_response(f) == 200
    with socket.create_connection((host, port)) as s:
        s.sendall(bytes(range(256)) * 4)
        s.shutdown(socket.SHUT_WR)
        s.recv(65536)
    print("done")


def threads(host, port, t, n):
    import threading
    idle = socket.create_connection((host, port))
    req = b"GET /ok HTTP/1.1\r\nHost: t\r\n\r\n"
    failed = []

    def run():
        try:
            with socket.create_connection((host, port)) as s:
                f = s.makefile("rb")
                for _ in range(n):
                    s.sendall(req)
                    assert read_response(f) == 200
        except Exception as e:
            failed.append(e)

    ts = [threading.Thread(target=run) for _ in range(t)]
    for th in ts:
        th.start()
    for th in ts:
        th.join()
    idle.close()
    assert not failed, failed
    print("done")


def busy(host, port, t, seconds):
    import threading
    req = b"GET /ok HTTP/1.1\r\nHost: t\r\n\r\n"
    started = threading.Barrier(t + 1)
    end = time.monotonic() + seconds
    failed = []

    def run():
        try:
            with socket.create_connection((host, port)) as s:
                f = s.makefile("rb")
                s.sendall(req)
                assert read_response(f) == 200
                started.wait()
                while time.monotonic() < end:
                    time.sleep(0.001)
                    s.sendall(req)
                    assert read_response(f) == 200
        except Exception as e:
            failed.append(e)
            started.abort()

    ts = [threading.Thread(target=run) for _ in range(t)]
    for th in ts:
        th.start()
    started.wait()
    print("ready", flush=True)
    for th in ts:
        th.join()
    assert not failed, failed
    print("done")


def main():
    mode = sys.argv[1]
    if mode == "busy":
        busy(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]))
        return
    if mode == "threads":
        threads(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
        return
    if mode == "torture":
        torture(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return
    if mode == "urllib":
        import urllib.error
        import urllib.request
        for url in sys.argv[2:]:
            try:
                with urllib.request.urlopen(url) as r:
                    r.read()
                    print(r.status)
            except urllib.error.HTTPError as e:
                e.read()
                print(e.code)
        return
    import requests
    with requests.Session() as s:
        for url in sys.argv[2:]:
            print(s.get(url).status_code)


main()
