// Command goclients runs the Go clients' workloads that
// scripts/dbcapture/capture.sh records: pgx (extended protocol, a
// statement prepared once and executed 100 times, a pipeline of 50, a
// failing batch, a transaction), go-sql-driver/mysql (binary prepared
// statements, multi-statements) and go-redis (RESP3, pipeline of 50,
// MULTI/EXEC, pub/sub). Values planted with "planted-" must never reach an
// exported span.
package main

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	_ "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

func main() {
	system := flag.String("system", "", "pgx, mysql or redis")
	addr := flag.String("addr", "", "server address")
	pass := flag.String("password", "", "password")
	dbName := flag.String("db", "testdb", "database (PostgreSQL, MySQL)")
	listen := flag.String("listen", "", "handler: the HTTP address to serve")
	sslmode := flag.String("sslmode", "disable", "pgx: libpq's sslmode (disable, require); mysql: require is TLS without verifying the certificate")
	waitStdin := flag.Bool("wait-stdin", false, "read a line from stdin before connecting (a test waits until the agent probes this process)")
	flag.Parse()
	if *waitStdin {
		if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
			log.Fatalf("wait for stdin: %v", err)
		}
	}
	if *system == "handler" {
		log.Fatal(serveHandler(*listen, *addr, *pass, *dbName))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var err error
	switch *system {
	case "pgx":
		err = runPgx(ctx, *addr, *pass, *dbName, *sslmode)
	case "mysql":
		err = runMySQL(ctx, *addr, *pass, *dbName, *sslmode == "require")
	case "redis":
		err = runRedis(ctx, *addr, *pass)
	default:
		err = fmt.Errorf("unknown system %q", *system)
	}
	if err != nil {
		log.Fatal(err)
	}
}

func runPgx(ctx context.Context, addr, pass, dbName, sslmode string) error {
	c, err := pgx.Connect(ctx, fmt.Sprintf("postgres://app:%s@%s/%s?sslmode=%s", pass, addr, dbName, sslmode))
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "CREATE TABLE IF NOT EXISTS gitems (id int PRIMARY KEY, name text)"); err != nil {
		return err
	}
	for i := range 100 {
		if _, err := c.Exec(ctx, "INSERT INTO gitems (id, name) VALUES ($1, $2)", i, fmt.Sprintf("planted-pgx-%d", i)); err != nil {
			return err
		}
	}
	b := &pgx.Batch{}
	for i := range 50 {
		b.Queue("SELECT name FROM gitems WHERE id = $1", i)
	}
	if err := c.SendBatch(ctx, b).Close(); err != nil {
		return err
	}
	bad := &pgx.Batch{}
	bad.Queue("SELECT 1")
	bad.Queue("SELECT * FROM no_such_table WHERE x = $1", "planted-pgx-bad")
	bad.Queue("SELECT 2")
	if err := c.SendBatch(ctx, bad).Close(); err == nil {
		return errors.New("the failing batch did not fail")
	}
	tx, err := c.Begin(ctx)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, "UPDATE gitems SET name = $1 WHERE id = $2", "planted-pgx-tx", 1); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

func runMySQL(ctx context.Context, addr, pass, dbName string, tls bool) error {
	dsn := fmt.Sprintf("app:%s@tcp(%s)/%s?multiStatements=true", pass, addr, dbName)
	if tls {
		dsn += "&tls=skip-verify"
	}
	d, err := sql.Open("mysql", dsn)
	if err != nil {
		return err
	}
	defer d.Close()
	d.SetMaxOpenConns(1)
	if _, err := d.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS gitems (id int PRIMARY KEY, name varchar(64))"); err != nil {
		return err
	}
	st, err := d.PrepareContext(ctx, "INSERT INTO gitems (id, name) VALUES (?, ?)")
	if err != nil {
		return err
	}
	for i := range 100 {
		if _, err := st.ExecContext(ctx, i, fmt.Sprintf("planted-mysql-%d", i)); err != nil {
			return err
		}
	}
	st.Close()
	rows, err := d.QueryContext(ctx, "SELECT id, name FROM gitems WHERE id < ?", 10)
	if err != nil {
		return err
	}
	n := 0
	for rows.Next() {
		n++
	}
	rows.Close()
	if n != 10 {
		return fmt.Errorf("got %d rows", n)
	}
	if _, err := d.ExecContext(ctx, "SELECT * FROM no_such_table WHERE x = ?", "planted-mysql-bad"); err == nil {
		return errors.New("the failing statement did not fail")
	}
	if _, err := d.ExecContext(ctx, "UPDATE gitems SET name = 'planted-mysql-multi' WHERE id = 1; DELETE FROM gitems WHERE id = 99"); err != nil {
		return err
	}
	tx, err := d.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, "UPDATE gitems SET name = ? WHERE id = ?", "planted-mysql-tx", 2); err != nil {
		return err
	}
	return tx.Commit()
}

func runRedis(ctx context.Context, addr, pass string) error {
	c := redis.NewClient(&redis.Options{Addr: addr, Password: pass, PoolSize: 1, Protocol: 3})
	defer c.Close()
	if err := c.Set(ctx, "gkey", "planted-redis-value", 0).Err(); err != nil {
		return err
	}
	if err := c.Get(ctx, "gkey").Err(); err != nil {
		return err
	}
	p := c.Pipeline()
	for i := range 50 {
		p.Incr(ctx, fmt.Sprintf("gcounter:%d", i))
	}
	if _, err := p.Exec(ctx); err != nil {
		return err
	}
	if _, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, "gtx", "planted-redis-tx", 0)
		p.HSet(ctx, "ghash", "f", "planted-redis-hash")
		return nil
	}); err != nil {
		return err
	}
	if err := c.LPush(ctx, "gkey", "x").Err(); err == nil {
		return errors.New("LPUSH on a string did not fail")
	}
	if err := c.HGetAll(ctx, "ghash").Err(); err != nil {
		return err
	}
	sub := c.Subscribe(ctx, "gchan")
	if _, err := sub.Receive(ctx); err != nil {
		return err
	}
	for range 3 {
		if err := c.Publish(ctx, "gchan", "planted-redis-message").Err(); err != nil {
			return err
		}
		if _, err := sub.ReceiveMessage(ctx); err != nil {
			return err
		}
	}
	return sub.Close()
}

// serveHandler serves GET /items on listen: each request runs two pgx
// queries on one connection opened at start (the end-to-end tests check
// that they are children of the request's span). It prints "listening".
func serveHandler(listen, addr, pass, dbName string) error {
	ctx := context.Background()
	c, err := pgx.Connect(ctx, fmt.Sprintf("postgres://app:%s@%s/%s?sslmode=disable", pass, addr, dbName))
	if err != nil {
		return err
	}
	var mu sync.Mutex
	http.HandleFunc("/items", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		var n int
		var name string
		if err := c.QueryRow(r.Context(), "SELECT count(*) FROM gitems").Scan(&n); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if err := c.QueryRow(r.Context(), "SELECT name FROM gitems WHERE id = $1", 2).Scan(&name); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "%d %s\n", n, name)
	})
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	fmt.Println("listening")
	return http.Serve(l, nil)
}
