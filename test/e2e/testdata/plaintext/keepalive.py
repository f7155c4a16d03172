# A client whose keep-alive connection is older than the agent: it connects,
# sends one GET /ok, prints "ready" and waits for a line on stdin (the agent
# starts meanwhile), then sends N GETs of /ok on the same connection. Then
# it closes the socket with close_range (os.closerange), which the agent
# does not see, and reuses its descriptor number for a file through which
# it writes a request and reads a response: no span may come of it.
# Usage: keepalive.py HOST PORT N
import os
import socket
import sys
import tempfile

REQ = b"GET /ok HTTP/1.1\r\nHost: k\r\n\r\n"


def get(s, f):
    s.sendall(REQ)
    assert f.readline().split()[1] == b"200"
    length = 0
    while True:
        line = f.readline()
        if line == b"\r\n":
            break
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    assert len(f.read(length)) == length


s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
f = s.makefile("rb")
get(s, f)
print("ready", flush=True)
sys.stdin.readline()
for _ in range(int(sys.argv[3])):
    get(s, f)
fd = s.detach()
f.detach()
name = os.path.join(tempfile.gettempdir(), "periscope-phantom-%d" % os.getpid())
os.closerange(fd, fd + 1)
phantom = os.open(name, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
assert phantom == fd, (phantom, fd)
req = b"GET /phantom HTTP/1.1\r\nHost: k\r\n\r\n"
os.write(phantom, req)
os.pwrite(phantom, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", len(req))
os.read(phantom, 4096)
os.close(phantom)
os.unlink(name)
print("done", flush=True)
