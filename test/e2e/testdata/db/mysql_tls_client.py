"""MySQL/MariaDB over TLS for the end-to-end tests (python3-pymysql).

usage: mysql_tls_client.py PORT   (the password in MYSQL_PASSWORD)

Connects with TLS (the SSL request, then TLS records; the server's
self-signed certificate is not verified), runs SELECT 1 N times (env N, default 100) and
prints "done tls" with the cipher in use.
"""
import os
import ssl
import sys

import pymysql

ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
conn = pymysql.connect(host="127.0.0.1", port=int(sys.argv[1]), user="app",
                       password=os.environ["MYSQL_PASSWORD"], database="shop", ssl=ctx)
cur = conn.cursor()
for _ in range(int(os.environ.get("N", "100"))):
    cur.execute("SELECT 1")
    assert cur.fetchone()[0] == 1
cur.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
cipher = cur.fetchone()[1]
if not cipher:
    sys.exit("the connection is not encrypted")
conn.close()
print("done tls", cipher, flush=True)
