"""gRPC server for the end-to-end tests (python3-grpcio, raw bytes: no
generated code).

usage: grpc_server.py CERT KEY

Service test.Echo over TLS on a free 127.0.0.1 port, printed as
"listening PORT":
  Echo   unary             answers the request
  Get    unary             fails with NOT_FOUND
  List   server streaming  3 messages
  Sum    client streaming  1 message: the number of messages received
  Chat   bidirectional     one answer per message
"""
import sys
from concurrent import futures

import grpc


def echo(req, ctx):
    return req


def get(req, ctx):
    ctx.abort(grpc.StatusCode.NOT_FOUND, "no such key: secret-key-42")


def list_(req, ctx):
    for i in range(3):
        yield bytes([i]) * 8


def sum_(it, ctx):
    return bytes([sum(1 for _ in it)])


def chat(it, ctx):
    for m in it:
        yield m


def main():
    cert, key = open(sys.argv[1], "rb").read(), open(sys.argv[2], "rb").read()
    handler = grpc.method_handlers_generic_handler("test.Echo", {
        "Echo": grpc.unary_unary_rpc_method_handler(echo),
        "Get": grpc.unary_unary_rpc_method_handler(get),
        "List": grpc.unary_stream_rpc_method_handler(list_),
        "Sum": grpc.stream_unary_rpc_method_handler(sum_),
        "Chat": grpc.stream_stream_rpc_method_handler(chat),
    })
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(key, cert)]))
    server.start()
    print("listening", port, flush=True)
    sys.stdin.readline()
    server.stop(0)


main()
