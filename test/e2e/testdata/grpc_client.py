"""gRPC client for the end-to-end tests (python3-grpcio, raw bytes).

usage: grpc_client.py PORT CA N
       grpc_client.py PORT CA loop

Over one TLS channel to localhost:PORT: N unary Echo calls, one Get
(NOT_FOUND), one List (3 answers), one Sum (4 requests), one Chat (2 each
way). Prints "done CALLS".

With "loop": Echo calls every 20 ms on one channel, "started" after the
first; on stdin "reconnect", 5 List calls (3 answers each: calls the old
channel never makes) on a new channel, then "reconnected";
on "stop" (or EOF) it prints "done CALLS" (calls on the first channel).
"""
import sys
import threading
import time

import grpc


def loop(port, ca):
    ch = grpc.secure_channel("localhost:" + port, grpc.ssl_channel_credentials(ca))
    echo = ch.unary_unary("/test.Echo/Echo")
    stop = threading.Event()
    calls = [0]

    def run():
        while not stop.is_set():
            assert echo(b"tick") == b"tick"
            calls[0] += 1
            if calls[0] == 1:
                print("started", flush=True)
            time.sleep(0.02)

    th = threading.Thread(target=run)
    th.start()
    for line in sys.stdin:
        if line.strip() != "reconnect":
            break
        stop.set()
        th.join()
        ch2 = grpc.secure_channel("localhost:" + port, grpc.ssl_channel_credentials(ca))
        for _ in range(5):
            assert len(list(ch2.unary_stream("/test.Echo/List")(b"fresh"))) == 3
        ch2.close()
        print("reconnected", flush=True)
    stop.set()
    th.join()
    ch.close()
    print("done", calls[0], flush=True)


def main():
    if sys.argv[3] == "loop":
        loop(sys.argv[1], open(sys.argv[2], "rb").read())
        return
    port, ca, n = sys.argv[1], open(sys.argv[2], "rb").read(), int(sys.argv[3])
    ch = grpc.secure_channel("localhost:" + port, grpc.ssl_channel_credentials(ca))
    calls = 0
    echo = ch.unary_unary("/test.Echo/Echo")
    for i in range(n):
        assert echo(b"hello %d" % i) == b"hello %d" % i
        calls += 1
    try:
        ch.unary_unary("/test.Echo/Get")(b"secret-key-42")
        raise SystemExit("Get did not fail")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.NOT_FOUND, e.code()
    calls += 1
    assert len(list(ch.unary_stream("/test.Echo/List")(b"x"))) == 3
    calls += 1
    assert ch.stream_unary("/test.Echo/Sum")(iter([b"a"] * 4)) == bytes([4])
    calls += 1
    assert len(list(ch.stream_stream("/test.Echo/Chat")(iter([b"a", b"b"])))) == 2
    calls += 1
    ch.close()
    print("done", calls, flush=True)


main()
