"""Python and command-line client workloads that capture.sh records.

Run with /usr/bin/python3 (Debian's python3-psycopg2, python3-pymysql,
python3-redis). Values planted with "planted-" must never reach an exported
span; passwords are planted too.
"""
import sys


def psycopg(port, password):
    import psycopg2
    c = psycopg2.connect(host="127.0.0.1", port=port, dbname="testdb", user="app", password=password,
                         sslmode="disable")
    cur = c.cursor()
    cur.execute("CREATE TABLE IF NOT EXISTS pitems (id int PRIMARY KEY, name text)")
    cur.execute("INSERT INTO pitems (id, name) VALUES (%s, %s)", (1, "planted-py-literal"))
    cur.execute("SELECT name FROM pitems WHERE id IN (%s, %s, %s)", (1, 2, 3))
    cur.fetchall()
    c.commit()
    cur.execute("SELECT 1; SELECT 'planted-py-multi'; UPDATE pitems SET name = name WHERE id = 1")
    c.commit()
    try:
        cur.execute("SELECT * FROM missing_table WHERE secret = %s", ("planted-py-bad",))
    except psycopg2.Error:
        c.rollback()
    cur.execute("DO $$ BEGIN RAISE NOTICE 'planted-py-notice'; END $$")
    c.commit()
    import io
    cur.copy_expert("COPY pitems FROM STDIN", io.StringIO("2\tplanted-py-copy\n3\tthree\n"))
    out = io.StringIO()
    cur.copy_expert("COPY pitems TO STDOUT", out)
    c.commit()
    c.close()


def pymysql_run(port, password):
    import pymysql
    from pymysql.constants import CLIENT
    c = pymysql.connect(host="127.0.0.1", port=port, user="app", password=password, database="testdb",
                        client_flag=CLIENT.MULTI_STATEMENTS)
    cur = c.cursor()
    cur.execute("CREATE TABLE IF NOT EXISTS pitems (id int PRIMARY KEY, name varchar(64))")
    cur.execute("INSERT INTO pitems (id, name) VALUES (%s, %s)", (1, "planted-py-literal"))
    c.commit()
    cur.execute("SELECT id, name FROM pitems WHERE id IN (%s, %s)", (1, 2))
    cur.fetchall()
    cur.execute("SELECT 1; SELECT 'planted-py-multi'; UPDATE pitems SET name = name WHERE id = 1")
    while cur.nextset():
        pass
    try:
        cur.execute("SELECT * FROM missing_table WHERE secret = %s", ("planted-py-bad",))
    except pymysql.Error:
        pass
    c.select_db("mysql")
    c.close()


def redis_run(port, password):
    import redis
    r = redis.Redis(host="127.0.0.1", port=port, password=password)
    r.set("pkey", "planted-py-value")
    r.get("pkey")
    p = r.pipeline(transaction=False)
    for i in range(50):
        p.set("pk:%d" % i, "planted-py-pipe")
    p.execute()
    t = r.pipeline(transaction=True)
    t.incr("pcount")
    t.get("pkey")
    t.execute()
    try:
        r.lpush("pkey", "x")
    except redis.ResponseError:
        pass
    ps = r.pubsub()
    ps.subscribe("pchan")
    ps.get_message(timeout=1)
    for _ in range(3):
        r.publish("pchan", "planted-py-message")
        ps.get_message(timeout=1)
    ps.close()
    r.close()


if __name__ == "__main__":
    which, port, password = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    {"psycopg": psycopg, "pymysql": pymysql_run, "redis": redis_run}[which](port, password)
