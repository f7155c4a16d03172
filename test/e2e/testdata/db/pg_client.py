"""PostgreSQL workload for the end-to-end tests (python3-psycopg2).

usage: pg_client.py PORT   (the password in PGPASSWORD)

psycopg2 binds parameters on the client: every statement is a simple
Query with the values as literals. Statements, all against database shop:
  CREATE TABLE py_items, INSERT x1, SELECT ... WHERE id = ? x100,
  SELECT FROM missing (42P01), then a transaction: BEGIN, UPDATE, COMMIT.
Prints "done".
"""
import os
import sys

import psycopg2

conn = psycopg2.connect(host="127.0.0.1", port=int(sys.argv[1]), dbname="shop", user="app",
                        password=os.environ["PGPASSWORD"], sslmode="disable")
conn.autocommit = True
cur = conn.cursor()
cur.execute("CREATE TABLE py_items (id int PRIMARY KEY, secret text)")
cur.execute("INSERT INTO py_items VALUES (%s, %s)", (1, "planted-py-insert"))
for _ in range(100):
    cur.execute("SELECT secret FROM py_items WHERE id = %s", (1,))
    assert cur.fetchone()[0] == "planted-py-insert"
try:
    cur.execute("SELECT * FROM missing WHERE s = %s", ("planted-py-bad",))
    sys.exit("expected an error")
except psycopg2.errors.UndefinedTable:
    pass
conn.autocommit = False
cur.execute("UPDATE py_items SET secret = %s WHERE id = %s", ("planted-py-tx", 1))
conn.commit()
conn.close()
print("done", flush=True)
