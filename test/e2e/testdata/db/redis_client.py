"""Redis workload for the end-to-end tests (python3-redis, RESP2).

usage: redis_client.py PORT [tls]   (the password in REDIS_PASSWORD)

With tls: over TLS (certificate not verified), after a line on stdin (the
test waits for the agent's probes on this process first).

Prints "done" at the end. Spans expected, all on 127.0.0.1:PORT:
  AUTH x2 (the command connection and the pub/sub one), SET x2, GET x1,
  LPUSH x1 (WRONGTYPE), NOSUCHCMD x1 (ERR), a pipeline of 50 SET (one
  write of ~11 KB), a pipeline of 50 GET (a reply of ~10 KB),
  MULTI + INCR x2 + EXEC (a transaction), PUBLISH x3 — and no span for
  the subscription or the 3 messages it receives.
"""
import os
import sys
import time

import redis

port = int(sys.argv[1])
pw = os.environ["REDIS_PASSWORD"]
tls = {}
if sys.argv[2:] == ["tls"]:
    tls = {"ssl": True, "ssl_cert_reqs": "none"}
    sys.stdin.readline()
r = redis.Redis(host="127.0.0.1", port=port, password=pw, **tls)
r.set("user:1", "planted-redis-value")
r.set("counter", 0)
assert r.get("user:1") == b"planted-redis-value"
for f in (lambda: r.lpush("user:1", "planted-redis-push"), lambda: r.execute_command("NOSUCHCMD", "planted-redis-arg")):
    try:
        f()
        sys.exit("expected an error")
    except redis.ResponseError:
        pass
# Values of 200 bytes: the pipeline of 50 SET is one write of ~11 KB and
# the 50 GET's reply one read of ~10 KB, both larger than a record.
value = "planted-redis-pipe".ljust(200, "x")
p = r.pipeline(transaction=False)
for i in range(50):
    p.set("pipe:%d" % i, value)
p.execute()
p = r.pipeline(transaction=False)
for i in range(50):
    p.get("pipe:%d" % i)
assert p.execute() == [value.encode()] * 50
t = r.pipeline(transaction=True)
t.incr("counter")
t.incr("counter")
assert t.execute() == [1, 2]

ps = r.pubsub()
ps.subscribe("news")
deadline = time.time() + 10
while ps.get_message(timeout=1) is None:  # the subscribe confirmation
    if time.time() > deadline:
        sys.exit("no subscribe confirmation")
for i in range(3):
    r.publish("news", "planted-redis-message")
got = 0
while got < 3 and time.time() < deadline:
    m = ps.get_message(timeout=1)
    if m and m["type"] == "message":
        got += 1
if got != 3:
    sys.exit("got %d messages" % got)
ps.close()
r.close()
print("done", flush=True)
