package sqltext

import (
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestSanitize(t *testing.T) {
	cases := []struct {
		d       Dialect
		in, out string
	}{
		{Postgres, "SELECT * FROM users WHERE name = 'bob'", "SELECT * FROM users WHERE name = ?"},
		{Postgres, "SELECT 'it''s'", "SELECT ?"},
		{Postgres, `SELECT E'a\'b', 'c\'`, "SELECT ?, ?"},
		{Postgres, "SELECT $$dollar ' body$$, $tag$x$$y$tag$", "SELECT ?, ?"},
		{Postgres, "SELECT U&'d\\0061t', B'1010', X'ff', N'nat'", "SELECT ?, ?, ?, ?"},
		{Postgres, "SELECT 1, -2.5, 3e10, .5, 0x1F, 1_000", "SELECT ?, -?, ?, ?, ?, ?"},
		{Postgres, "SELECT * FROM t WHERE id IN (1, 2, 3)", "SELECT * FROM t WHERE id IN (?)"},
		{Postgres, "SELECT * FROM t WHERE id in ('a','b') AND x IN (SELECT y FROM u)", "SELECT * FROM t WHERE id in (?) AND x IN (SELECT y FROM u)"},
		{Postgres, "SELECT * FROM t WHERE id IN (-1, +2)", "SELECT * FROM t WHERE id IN (?)"},
		{Postgres, "SELECT ARRAY[1,2], '{1,2}'::int[]", "SELECT ARRAY[?,?], ?::int[]"},
		{Postgres, "SELECT * FROM t WHERE a = $1 AND b = $2", "SELECT * FROM t WHERE a = $1 AND b = $2"},
		{Postgres, "SELECT \"Weird 'name'\" FROM \"T\"", "SELECT \"Weird 'name'\" FROM \"T\""},
		{Postgres, "SELECT true, FALSE, NULL", "SELECT ?, ?, NULL"},
		{Postgres, "SELECT 1 -- the password is hunter2\n, 2", "SELECT ? , ?"},
		{Postgres, "/* a /* nested */ secret */ SELECT 1", "SELECT ?"},
		{Postgres, "SELECT   a,\n\t b  FROM t", "SELECT a, b FROM t"},
		{Postgres, "SELECT 1; SELECT 'x'", "SELECT ?; SELECT ?"},
		{Postgres, "INSERT INTO t VALUES ('unterminated", "INSERT INTO t VALUES (?"},
		{Postgres, "SELECT $cut$ never closed", "SELECT ?"},
		{Postgres, "SELECT interval '1 day', DATE '2020-01-01'", "SELECT interval ?, DATE ?"},
		{Postgres, "SELECT t1.c2 FROM t1", "SELECT t1.c2 FROM t1"},
		{Postgres, "SELECT x::text, :name", "SELECT x::text, :name"},
		{MySQL, `SELECT "dq", 'a\'b', 'c''d'`, "SELECT ?, ?, ?"},
		{MySQL, "SELECT `col` FROM `t` # trailing\nWHERE a = 0b101", "SELECT `col` FROM `t` WHERE a = ?"},
		{MySQL, "SELECT _utf8mb4'x', X'0A'", "SELECT ?, ?"},
		{MySQL, "SELECT * FROM t WHERE a = ? AND b IN (?, ?, ?)", "SELECT * FROM t WHERE a = ? AND b IN (?)"},
		{MySQL, "/*!40101 SET NAMES utf8 */", ""},
	}
	for _, c := range cases {
		if got := Sanitize(c.in, c.d); got != c.out {
			t.Errorf("Sanitize(%q, %d)\n got %q\nwant %q", c.in, c.d, got, c.out)
		}
	}
}

func TestStatements(t *testing.T) {
	got := Statements("BEGIN; INSERT INTO t VALUES (1);; SELECT ';' ; COMMIT;", Postgres)
	want := []string{"BEGIN", "INSERT INTO t VALUES (?)", "SELECT ?", "COMMIT"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	if got := Statements("  -- only a comment\n ", Postgres); len(got) != 0 {
		t.Fatalf("empty query gave %q", got)
	}
}

func TestSummary(t *testing.T) {
	cases := []struct {
		d       Dialect
		in, out string
	}{
		{Postgres, "SELECT * FROM wuser_table WHERE username = ?", "SELECT wuser_table"},
		{Postgres, "INSERT INTO shipping_details (order_id, address) SELECT order_id, address FROM orders WHERE order_id = ?", "INSERT shipping_details SELECT orders"},
		{Postgres, "SELECT * FROM songs, artists WHERE songs.artist_id = artists.id", "SELECT songs artists"},
		{Postgres, "SELECT * FROM songs s, artists AS a", "SELECT songs artists"},
		{Postgres, "SELECT order_date FROM (SELECT * FROM orders o JOIN customers c ON o.customer_id = c.customer_id)", "SELECT SELECT orders customers"},
		{Postgres, `SELECT * FROM "song list", public.artists`, `SELECT "song list" public.artists`},
		{Postgres, "UPDATE accounts SET balance = balance - ? WHERE id = ?", "UPDATE accounts"},
		{Postgres, "DELETE FROM sessions WHERE expires < now()", "DELETE sessions"},
		{Postgres, "SELECT EXTRACT(YEAR FROM ts) FROM events", "SELECT events"},
		{Postgres, "SELECT * FROM t FOR UPDATE", "SELECT t"},
		{Postgres, "WITH x AS (DELETE FROM q RETURNING *) SELECT * FROM x", "DELETE q SELECT x"},
		{Postgres, "CREATE TABLE IF NOT EXISTS items (id int)", "CREATE TABLE items"},
		{Postgres, "DROP TABLE a, b", "DROP TABLE a b"},
		{Postgres, "TRUNCATE accounts", "TRUNCATE accounts"},
		{Postgres, "COPY items FROM STDIN", "COPY items"},
		{Postgres, "BEGIN", "BEGIN"},
		{Postgres, "START TRANSACTION", "START TRANSACTION"},
		{Postgres, "SET search_path TO ?", "SET"},
		{Postgres, "SELECT ?", "SELECT"},
		{Postgres, "select * from Users", "select Users"},
		{MySQL, "INSERT INTO t (a) VALUES (?) ON DUPLICATE KEY UPDATE a = ?", "INSERT t"},
		{MySQL, "SELECT * FROM `db`.`tbl` WHERE x = ?", "SELECT `db`.`tbl`"},
		{MySQL, "USE shop", "USE shop"},
		{MySQL, "REPLACE INTO kv VALUES (?, ?)", "REPLACE kv"},
	}
	for _, c := range cases {
		if got := Summary(c.in, c.d); got != c.out {
			t.Errorf("Summary(%q)\n got %q\nwant %q", c.in, got, c.out)
		}
	}
	long := "SELECT * FROM " + strings.Repeat("a_rather_long_table_name_here, ", 20) + "z"
	if got := Summary(long, Postgres); len(got) > maxSummary || strings.HasSuffix(got, "_") {
		t.Fatalf("summary not cut at a token: %d %q", len(got), got)
	}
}

func TestSingle(t *testing.T) {
	for _, c := range []struct{ stmt, op, coll string }{
		{"SELECT secret FROM items WHERE id = ?", "SELECT", "items"},
		{"select * from a, b", "select", ""},
		{"SELECT * FROM a JOIN a ON a.x = a.y", "SELECT", "a"},
		{"INSERT INTO items VALUES (?, ?)", "INSERT", "items"},
		{"INSERT INTO t SELECT * FROM u", "", ""},
		{"UPDATE items SET secret = ? WHERE id = ?", "UPDATE", "items"},
		{"CREATE TABLE IF NOT EXISTS gitems (id int)", "CREATE TABLE", "gitems"},
		{"BEGIN", "BEGIN", ""},
		{"SELECT count(*) FROM (SELECT id FROM t) s", "", ""},
		{"SELECT ?", "SELECT", ""},
		{"", "", ""},
	} {
		op, coll := Single(c.stmt, Postgres)
		if op != c.op || coll != c.coll {
			t.Errorf("Single(%q) = %q, %q; want %q, %q", c.stmt, op, coll, c.op, c.coll)
		}
	}
}

// A Cache gives each statement the Info Describe gives it, the same one
// every time it is asked again, and holds no more than its bounds.
func TestCache(t *testing.T) {
	c := NewCache(Postgres)
	stmts := []string{"SELECT secret FROM items WHERE id = ?", "INSERT INTO t SELECT * FROM u", "BEGIN", ""}
	for round := range 2 {
		for _, s := range stmts {
			buf := []byte(s)
			in := c.Info(buf)
			if *in != Describe(s, Postgres) {
				t.Fatalf("round %d: %+v, want %+v", round, *in, Describe(s, Postgres))
			}
			copy(buf, strings.Repeat("x", len(buf))) // the cache keeps no reference to its argument
			if again := c.Info([]byte(s)); again != in || again.Text != s {
				t.Fatalf("round %d: %q asked again gave another Info %+v", round, s, *again)
			}
		}
	}
	q := "SELECT * FROM users WHERE id = 7; UPDATE t SET a = 'x';; SELECT * FROM users WHERE id = 8"
	infos := c.Statements(nil, q, 1<<20)
	if len(infos) != 3 || infos[0] != infos[2] || *infos[0] != Describe("SELECT * FROM users WHERE id = ?", Postgres) ||
		infos[1].Text != "UPDATE t SET a = ?" {
		t.Fatalf("Statements(%q) = %+v", q, infos)
	}
	if cut := c.Statements(infos[:0], q, 6); len(cut) != 3 || cut[0].Text != "SELECT" || cut[1].Text != "UPDATE" {
		t.Fatalf("Statements cut to 6: %+v", cut)
	}
	if in := c.Joined(q, 1<<20); in.Text != Sanitize(q, Postgres) || in.Summary != Summary(Sanitize(q, Postgres), Postgres) {
		t.Fatalf("Joined(%q) = %+v", q, *in)
	}
	if in := c.Joined("SELECT 'secret'", 3); in.Text != "SEL" {
		t.Fatalf("Joined cut to 3: %+v", *in)
	}
	for i := range maxCached + 10 {
		c.Info([]byte("SELECT a FROM t" + strconv.Itoa(i)))
	}
	if len(c.infos) > maxCached {
		t.Fatalf("%d statements held, bound %d", len(c.infos), maxCached)
	}
	long := []byte(strings.Repeat("x", 2048))
	for i := range maxCachedBytes/len(long) + 10 {
		long[0] = byte(i)
		long[1] = byte(i >> 8)
		c.Info(long)
	}
	if c.bytes > maxCachedBytes {
		t.Fatalf("%d bytes held, bound %d", c.bytes, maxCachedBytes)
	}
}
