# A server that accepts in one process and serves in another: the parent
# accepts each connection and passes the socket to a forked child over a
# UNIX socket (SCM_RIGHTS), then closes its copy; the child answers in
# HTTP/1.0 and closes. /ok 200 "ok\n" with Content-Length; /eof 200 whose
# body (11 bytes) ends at the close, without Content-Length.
# Usage: handoff.py PORT (prints the child's PID)
import os
import socket
import sys

parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
pid = os.fork()
if pid == 0:
    parent.close()
    while True:
        _, fds, _, _ = socket.recv_fds(child, 16, 1)
        conn = socket.socket(fileno=fds[0])
        f = conn.makefile("rb")
        line = f.readline()
        while f.readline() not in (b"\r\n", b""):
            pass
        path = line.split()[1]
        if path == b"/eof":
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n")
            conn.sendall(b"until close")
        else:
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
        f.close()
        conn.close()
child.close()
print(pid, flush=True)
ln = socket.create_server(("127.0.0.1", int(sys.argv[1])))
while True:
    conn, _ = ln.accept()
    socket.send_fds(parent, [b"x"], [conn.fileno()])
    conn.close()
