"""gRPC client for the end-to-end tests (python3-grpcio, raw bytes).

usage: grpc_client.py PORT CA N

Over one TLS channel to localhost:PORT: N unary Echo calls, one Get
(NOT_FOUND), one List (3 answers), one Sum (4 requests), one Chat (2 each
way). Prints "done CALLS".
"""
import sys

import grpc


def main():
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
