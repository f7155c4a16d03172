"""MySQL/MariaDB workload for the end-to-end tests (python3-pymysql).

usage: mysql_client.py PORT [tls]   (the password in MYSQL_PASSWORD)

pymysql binds parameters on the client: every statement is a COM_QUERY
with the values as literals. Against database shop (autocommit is the
server default: no SET AUTOCOMMIT): CREATE TABLE py_items, INSERT x1,
SELECT ... WHERE id = ? x100, SELECT FROM missing (error 1146), then a
transaction: BEGIN, UPDATE, COMMIT.
With "tls": over TLS (the SSL request, then TLS; the server's self-signed
certificate is not verified), checked before it prints "done"; it first
waits for a line on stdin (libssl is loaded: the test waits until the agent
probes this process, whose connection's first bytes the decoder needs).
"""
import os
import ssl
import sys

import pymysql

tls = None
if sys.argv[2:] == ["tls"]:
    tls = ssl.create_default_context()
    tls.check_hostname = False
    tls.verify_mode = ssl.CERT_NONE
    sys.stdin.readline()
conn = pymysql.connect(host="127.0.0.1", port=int(sys.argv[1]), user="app",
                       password=os.environ["MYSQL_PASSWORD"], database="shop", autocommit=True, ssl=tls)
if tls is not None and not isinstance(conn._sock, ssl.SSLSocket):
    sys.exit("the connection is not encrypted")
cur = conn.cursor()
cur.execute("CREATE TABLE py_items (id int PRIMARY KEY, secret varchar(64))")
cur.execute("INSERT INTO py_items VALUES (%s, %s)", (1, "planted-py-insert"))
for _ in range(100):
    cur.execute("SELECT secret FROM py_items WHERE id = %s", (1,))
    assert cur.fetchone()[0] == "planted-py-insert"
try:
    cur.execute("SELECT * FROM missing WHERE s = %s", ("planted-py-bad",))
    sys.exit("expected an error")
except pymysql.err.ProgrammingError:
    pass
conn.begin()
cur.execute("UPDATE py_items SET secret = %s WHERE id = %s", ("planted-py-tx", 1))
conn.commit()
conn.close()
print("done", flush=True)
