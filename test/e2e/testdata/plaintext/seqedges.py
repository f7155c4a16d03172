# A keep-alive HTTP/1.1 server whose responses are written in ways that
# move a connection's TCP sequence unlike plain reads and writes:
#   /iov    200, a 40-byte body, the response written by one sendmsg of 41
#           buffers: the headers, then the body a byte each (more buffers
#           than the sockets collector copies bytes from).
#   /fin    200 "ok\n", the headers first, then (the client has read them
#           alone) the body and the FIN in one segment (TCP_CORK), so the
#           client's read of the body also takes the FIN, which moves its
#           socket's copied_seq one past the bytes read. Closes.
# Usage: seqedges.py PORT
import socket
import sys
import threading
import time


def serve(conn):
    f = conn.makefile("rb")
    while True:
        line = f.readline()
        if not line:
            break
        while f.readline() not in (b"\r\n", b""):
            pass
        path = line.split()[1]
        if path == b"/fin":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n")
            time.sleep(0.2)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
            conn.sendall(b"ok\n")
            conn.shutdown(socket.SHUT_WR)
            break
        body = b"0123456789" * 4
        pieces = [b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n"] + [bytes([b]) for b in body]
        sent = conn.sendmsg(pieces)
        rest = b"".join(pieces)[sent:]
        if rest:
            conn.sendall(rest)
    f.close()
    conn.close()


ln = socket.create_server(("127.0.0.1", int(sys.argv[1])))
while True:
    c, _ = ln.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
