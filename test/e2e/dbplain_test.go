package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/periscope-apm/periscope/test/e2e/harness"
	"github.com/periscope-apm/periscope/test/otlpreceiver"
)

// dbAgentEnv makes the agent of the database tests export its metrics over
// OTLP every 500 ms, so that the planted-secret check covers them.
var dbAgentEnv = []string{"OTEL_METRIC_EXPORT_INTERVAL=500"}

// waitOTLPMetric waits until the OTLP receiver has a data point of metric
// name for db.system.name system.
func waitOTLPMetric(t *testing.T, e *env, name, system string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := e.recv.WaitForMetrics(ctx, 1, func(m otlpreceiver.Metric) bool {
		return m.Name == name && m.Attributes["db.system.name"] == system && m.Type == "histogram" && m.Unit == "s"
	}); err != nil {
		t.Fatalf("no OTLP %s for %s: %v", name, system, err)
	}
}

// startRedis starts redis-server on a free loopback port with a private
// directory, no persistence and a password; it returns the port.
func startRedis(t *testing.T, password string) int { return startRedisWith(t, password, "") }

// startRedisTLS starts a redis-server that serves TLS only, with the
// certificate and key given, and returns its port.
func startRedisTLS(t *testing.T, password, cert, key string) int {
	return startRedisWith(t, password, fmt.Sprintf("tls-cert-file %s\ntls-key-file %s\ntls-auth-clients no\n", cert, key))
}

// startRedisWith starts a redis-server with the config lines tls (its
// port a TLS port when set) and returns its port.
func startRedisWith(t *testing.T, password, tls string) int {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("redis-server not installed (scripts/deps.sh): %v", err)
	}
	dir := t.TempDir()
	port := harness.FreePort(t)
	// The password goes in a config file: not on a command line.
	conf := filepath.Join(dir, "redis.conf")
	cfg := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nsave \"\"\nappendonly no\nrequirepass %s\n", port, dir, password)
	if tls != "" {
		cfg = fmt.Sprintf("port 0\ntls-port %d\nbind 127.0.0.1\ndir %s\nsave \"\"\nappendonly no\nrequirepass %s\n", port, dir, password) + tls
	}
	if err := os.WriteFile(conf, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startProc(t, nil, "redis-server", conf)
	waitListening(t, p, port)
	return port
}

// redisSpans selects the Redis CLIENT spans of process pid.
func redisSpans(pid int) func(otlpreceiver.Span) bool {
	return func(s otlpreceiver.Span) bool {
		return byPIDs(kindClient, pid)(s) && attrStr(s, "db.system.name") == "redis"
	}
}

func redisKey(s otlpreceiver.Span) string {
	return fmt.Sprintf("%s | %s | %s", attrStr(s, "db.operation.name"), attrStr(s, "db.query.text"), attrStr(s, "db.response.status_code"))
}

// checkPyRedis checks the 114 CLIENT spans of redis_client.py's workload
// (process pid) and returns them.
func checkPyRedis(t *testing.T, e *env, pid int) []otlpreceiver.Span {
	t.Helper()
	pySpans := e.spans(t, 114, redisSpans(pid))
	want := map[string]int{
		"AUTH | AUTH ? | ":                   2,
		"SET | SET user:1 ? | ":              1,
		"SET | SET counter ? | ":             1,
		"GET | GET user:1 | ":                1,
		"LPUSH | LPUSH user:1 ? | WRONGTYPE": 1,
		"NOSUCHCMD | NOSUCHCMD ? | ERR":      1,
		"MULTI | MULTI | ":                   1,
		"INCRBY | INCRBY counter ? | ":       2, // redis-py sends INCR as INCRBY
		"EXEC | EXEC | ":                     1,
		"PUBLISH | PUBLISH ? ? | ":           3, // a channel is no key
	}
	got := counts(pySpans, redisKey)
	// Two pipelines of 50, each larger than a record one way: the SETs'
	// write, the GETs' reply (bpf/chunks.bpf.h).
	pipeSet, pipeGet := 0, 0
	for k, n := range got {
		switch {
		case strings.HasPrefix(k, "SET | SET pipe:") && strings.HasSuffix(k, "? | "):
			pipeSet += n
			delete(got, k)
		case strings.HasPrefix(k, "GET | GET pipe:") && strings.HasSuffix(k, " | "):
			pipeGet += n
			delete(got, k)
		}
	}
	if pipeSet != 50 || pipeGet != 50 || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("python spans (%d pipelined SET, %d GET):\n%v\nwant 50, 50 and\n%v", pipeSet, pipeGet, got, want)
	}
	return pySpans
}

// TestRedisPlain: python3-redis and redis-cli against a real Redis over
// plaintext TCP, seen by the sockets collector: one CLIENT span per
// command (a pipeline of 50 is 50 spans, MULTI/EXEC one per command, a
// subscription and its messages none), errors with their Redis error code,
// the command and key only, named "{command} {server}:{port}" (a key is
// no collection); no value, AUTH password or message reaches any
// exporter.
func TestRedisPlain(t *testing.T) {
	const password = "planted-redis-password"
	goclients := buildGoClients(t)
	e := startAgentOTLP(t, dbAgentEnv, append(selectExes(t, "redis-server", "redis-cli", python(t), goclients), "--log-level=debug")...)
	port := startRedis(t, password)
	env := []string{"REDIS_PASSWORD=" + password, "REDISCLI_AUTH=" + password}

	py := startProc(t, env, python(t), testdataPath(t, "db/redis_client.py"), fmt.Sprint(port))
	if code := py.wait(60 * time.Second); code != 0 || !strings.Contains(py.Output(), "done") {
		t.Fatalf("redis_client.py exited %d:\n%s", code, py.Output())
	}
	// redis-cli reads one command a line from stdin and runs them in turn.
	file := filepath.Join(t.TempDir(), "cli.txt")
	cli := "SET cli:1 planted-cli-value\nGET cli:1\nDEL cli:1\nHSET h f planted-cli-hash\nHGETALL h\nINCR h\n"
	if err := os.WriteFile(file, []byte(cli), 0o644); err != nil {
		t.Fatal(err)
	}
	rc := startProc(t, env, "sh", "-c", fmt.Sprintf("exec redis-cli -h 127.0.0.1 -p %d < %s", port, file))
	if code := rc.wait(30 * time.Second); code != 0 {
		t.Fatalf("redis-cli exited %d:\n%s", code, rc.Output())
	}

	pySpans := checkPyRedis(t, e, py.PID)
	// redis-cli asks COMMAND DOCS first: a reply far larger than the copy,
	// cut in its middle; the decoder resynchronises at the next command.
	cliSpans := e.spans(t, 8, redisSpans(rc.PID))
	wantCLI := map[string]int{
		"AUTH | AUTH ? | ":          1,
		"COMMAND | COMMAND DOCS | ": 1,
		"SET | SET cli:1 ? | ":      1,
		"GET | GET cli:1 | ":        1,
		"DEL | DEL cli:1 | ":        1,
		"HSET | HSET h ? ? | ":      1,
		"HGETALL | HGETALL h | ":    1,
		"INCR | INCR h | WRONGTYPE": 1,
	}
	if got := counts(cliSpans, redisKey); fmt.Sprint(got) != fmt.Sprint(wantCLI) {
		t.Errorf("redis-cli spans:\n%v\nwant\n%v", got, wantCLI)
	}
	for _, s := range append(pySpans, cliSpans...) {
		if attrStr(s, "server.address") != "127.0.0.1" || attrInt(s, "server.port") != int64(port) ||
			s.Name != fmt.Sprintf("%s 127.0.0.1:%d", attrStr(s, "db.operation.name"), port) {
			t.Errorf("span %q: attributes %v", s.Name, s.Attributes)
		}
		failed := attrStr(s, "db.response.status_code") != ""
		if failed != (attrStr(s, "error.type") != "") || failed != (s.Status == "ERROR") {
			t.Errorf("span %q: error.type %q status %v", s.Name, attrStr(s, "error.type"), s.Status)
		}
	}

	// go-redis speaks RESP3: HELLO 3 AUTH (its arguments never leave the
	// agent) on each of its two connections.
	gc := startProc(t, nil, goclients, "-system", "redis", "-addr", fmt.Sprintf("127.0.0.1:%d", port), "-password", password)
	if code := gc.wait(60 * time.Second); code != 0 {
		t.Fatalf("goclients redis exited %d:\n%s", code, gc.Output())
	}
	wantGo := map[string]int{
		"HELLO | HELLO ? ? ? ? | ": 3, // go-redis opened three connections (one for pub/sub)
		// go-redis v9 announces itself; Redis 7.0 knows neither.
		"CLIENT | CLIENT SETINFO ? ? | ERR":               6,
		"CLIENT | CLIENT MAINT_NOTIFICATIONS ? ? ? | ERR": 1,
		"SET | SET gkey ? | ":                             1,
		"GET | GET gkey | ":                               1,
		"MULTI | MULTI | ":                                1,
		"SET | SET gtx ? | ":                              1,
		"HSET | HSET ghash ? ? | ":                        1,
		"EXEC | EXEC | ":                                  1,
		"LPUSH | LPUSH gkey ? | WRONGTYPE":                1,
		"HGETALL | HGETALL ghash | ":                      1,
		"PUBLISH | PUBLISH ? ? | ":                        3,
	}
	got := counts(e.spans(t, 71, redisSpans(gc.PID)), redisKey)
	incr := 0
	for k, n := range got {
		if strings.HasPrefix(k, "INCR | INCR gcounter:") {
			incr += n
			delete(got, k)
		}
	}
	if incr != 50 || fmt.Sprint(got) != fmt.Sprint(wantGo) {
		t.Errorf("go-redis spans (%d pipelined INCR):\n%v\nwant 50 and\n%v", incr, got, wantGo)
	}
	// The histogram, client side and from the traced redis-server: by
	// command, never by key.
	// go-redis's 50 and redis-cli's one.
	checkHistograms(t, e, map[string]string{"db_system_name": "redis", "db_operation_name": "INCR", "server_port": fmt.Sprint(port)}, 51)
	noPlanted(t, e, "planted")
}

// selectExes returns --include-exe arguments selecting the files the
// programs named run (a link is followed), so that a test's spans are not
// lost among those of whatever else runs on the machine.
func selectExes(t *testing.T, programs ...string) []string {
	t.Helper()
	var args []string
	for _, p := range programs {
		path, err := exec.LookPath(p)
		if err == nil {
			path, err = filepath.EvalSymlinks(path)
		}
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		args = append(args, "--include-exe", path)
	}
	return args
}

// buildGoClients builds scripts/dbcapture/goclients (pgx,
// go-sql-driver/mysql, go-redis workloads) into a temporary directory.
func buildGoClients(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("../../scripts/dbcapture/goclients")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "goclients")
	cmd := exec.Command(harness.GoTool(t), "build", "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
	start := time.Now()
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build goclients: %v\n%s", err, b)
	}
	t.Logf("built goclients in %v", time.Since(start).Round(time.Millisecond))
	return out
}

// runDone runs a client to its end: it must exit 0 and, when done is not
// empty, print it.
func runDone(t *testing.T, env []string, done, name string, args ...string) *proc {
	t.Helper()
	p := startProc(t, env, name, args...)
	if code := p.wait(60 * time.Second); code != 0 || !strings.Contains(p.Output(), done) {
		t.Fatalf("%s exited %d:\n%s", filepath.Base(name), code, p.Output())
	}
	return p
}

// wantDBSpans checks the exact CLIENT spans of process pid to system: n of
// them, counted by dbKey as want says.
func wantDBSpans(t *testing.T, e *env, system string, pid, n int, want map[string]int) {
	t.Helper()
	if got := counts(e.spans(t, n, dbSpans(system, pid)), dbKey); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s spans of pid %d:\n%v\nwant\n%v", system, pid, got, want)
	}
}

// checkHistograms checks that n operations of the series labels (with
// server_port) are in db.client.operation.duration, and in the traced
// server's periscope.db.server.operation.duration, on /metrics, and that
// both reached OTLP.
func checkHistograms(t *testing.T, e *env, labels map[string]string, n float64) {
	t.Helper()
	want := fmt.Sprint(n)
	waitMetric(t, e.agent, "db_client_operation_duration_seconds_count", labels, want, equals(n))
	server := map[string]string{}
	for k, v := range labels {
		if k != "server_port" {
			server[k] = v
		}
	}
	waitMetric(t, e.agent, "periscope_db_server_operation_duration_seconds_count", server, want, equals(n))
	waitOTLPMetric(t, e, "db.client.operation.duration", labels["db_system_name"])
	waitOTLPMetric(t, e, "periscope.db.server.operation.duration", labels["db_system_name"])
}

// dbSpans selects the CLIENT spans of a process to a database system.
func dbSpans(system string, pid int) func(otlpreceiver.Span) bool {
	return func(s otlpreceiver.Span) bool {
		return byPIDs(kindClient, pid)(s) && attrStr(s, "db.system.name") == system
	}
}

// dbKey is what the database tests compare of a span.
func dbKey(s otlpreceiver.Span) string {
	return fmt.Sprintf("%s | %s | %s", s.Name, attrStr(s, "db.query.text"), attrStr(s, "db.response.status_code"))
}

// TestPostgresPlain: psql (SSLRequest refused, then plaintext), psycopg2 and
// pgx (extended protocol: a statement prepared once and executed 100 times,
// a batch of 50 Executes before one Sync, a failing batch, a transaction)
// against a real PostgreSQL over plaintext TCP, seen by the sockets
// collector: exact CLIENT spans per client, a SERVER span for each from the
// traced backends, db.client.operation.duration on /metrics, and none of the
// planted secrets (literals, bound parameters, the password sent in clear)
// in any exporter.
func TestPostgresPlain(t *testing.T) {
	const password = "planted-pg-password"
	goclients := buildGoClients(t)
	e := startAgentOTLP(t, dbAgentEnv, append(selectExes(t, filepath.Join(pgBin, "psql"), python(t), goclients, filepath.Join(pgBin, "postgres"), "curl"), "--log-level=debug")...)
	port := startPostgres(t, password, false)

	psql := runPsqlWorkload(t, port, password, "prefer")
	checkPostgresSpans(t, e.spans(t, psqlStatements, dbSpans("postgresql", psql.PID)), port)

	py := runDone(t, []string{"PGPASSWORD=" + password}, "done", python(t), testdataPath(t, "db/pg_client.py"), fmt.Sprint(port))
	wantPy := map[string]int{
		"CREATE TABLE py_items | CREATE TABLE py_items (id int PRIMARY KEY, secret text) | ": 1,
		"INSERT py_items | INSERT INTO py_items VALUES (?, ?) | ":                            1,
		"SELECT py_items | SELECT secret FROM py_items WHERE id = ? | ":                      100,
		"SELECT missing | SELECT * FROM missing WHERE s = ? | 42P01":                         1,
		"BEGIN | BEGIN | ": 1,
		"UPDATE py_items | UPDATE py_items SET secret = ? WHERE id = ? | ": 1,
		"COMMIT | COMMIT | ": 1,
	}
	wantDBSpans(t, e, "postgresql", py.PID, 106, wantPy)

	gc := runDone(t, nil, "", goclients, "-system", "pgx", "-addr", fmt.Sprintf("127.0.0.1:%d", port), "-password", password, "-db", "shop")
	// The batch of 50 is one write of ~4.9 KB: copied in two records
	// (bpf/chunks.bpf.h), every Execute makes its span.
	wantDBSpans(t, e, "postgresql", gc.PID, 155, wantPgx())

	// An HTTP handler that queries PostgreSQL on the thread serving the
	// request: curl → handler → its two queries → the backend's spans, one
	// trace.
	httpPort := harness.FreePort(t)
	handler := startProc(t, []string{"PGPASSWORD=" + password}, python(t), testdataPath(t, "db/pg_handler.py"), fmt.Sprint(httpPort), fmt.Sprint(port))
	handler.expect("listening", 30*time.Second)
	curl := startProc(t, nil, "curl", "-sf", fmt.Sprintf("http://127.0.0.1:%d/items/1", httpPort))
	if code := curl.wait(30 * time.Second); code != 0 {
		t.Fatalf("curl exited %d:\n%s", code, curl.Output())
	}
	checkHandlerTrace(t, e, curl.PID, handler.PID, true)

	// The same with a Go net/http handler running pgx: Go runs the
	// handler's goroutine on any thread, so the queries are linked by
	// goroutine (gohttp's probes and the sockets collector both report it).
	goPort := harness.FreePort(t)
	goHandler := startProc(t, nil, goclients, "-system", "handler", "-listen", fmt.Sprintf("127.0.0.1:%d", goPort),
		"-addr", fmt.Sprintf("127.0.0.1:%d", port), "-password", password, "-db", "shop")
	goHandler.expect("listening", 30*time.Second)
	e.instrumented(t, goHandler.PID)
	curl = startProc(t, nil, "curl", "-sf", fmt.Sprintf("http://127.0.0.1:%d/items", goPort))
	if code := curl.wait(30 * time.Second); code != 0 {
		t.Fatalf("curl exited %d:\n%s", code, curl.Output())
	}
	// Known race, not the database's: curl's span (the sockets
	// collector's ring) and the Go server's (gohttp's ring) are linked by
	// 4-tuple only when curl's arrives before the server's span is
	// exported; it does not always. The handler → queries → backend chain
	// is exact.
	checkHandlerTrace(t, e, curl.PID, goHandler.PID, false)

	// psycopg2's 100 and the python handler's two.
	checkHistograms(t, e, map[string]string{"db_system_name": "postgresql", "db_operation_name": "SELECT",
		"db_collection_name": "py_items", "db_namespace": "shop", "server_port": fmt.Sprint(port)}, 102)
	noPlanted(t, e, "planted")
}

// wantPgx counts the CLIENT spans of goclients' pgx workload (155: a
// statement created, prepared and executed 100 times, a batch of 50 in one
// write, a failing batch, a transaction) by dbKey.
func wantPgx() map[string]int {
	return map[string]int{
		"CREATE TABLE gitems | CREATE TABLE IF NOT EXISTS gitems (id int PRIMARY KEY, name text) | ": 1,
		"INSERT gitems | INSERT INTO gitems (id, name) VALUES ($1, $2) | ":                           100,
		"SELECT gitems | SELECT name FROM gitems WHERE id = $1 | ":                                   50,
		// The failing batch: pgx prepares its statements first; the
		// failing Parse ends it (SELECT 1 and 2 never run).
		"SELECT no_such_table | SELECT * FROM no_such_table WHERE x = $1 | 42P01": 1,
		"begin | begin | ": 1,
		"UPDATE gitems | UPDATE gitems SET name = $1 WHERE id = $2 | ": 1,
		"commit | commit | ": 1,
	}
}

// checkHandlerTrace checks the trace of curl's request to a handler: the
// handler's SERVER span the child of curl's CLIENT span (withClient), the
// two queries the handler made children of the handler's span, and each
// query's SERVER span in the backend a child of the query, all one trace.
func checkHandlerTrace(t *testing.T, e *env, curlPID, handlerPID int, withClient bool) {
	t.Helper()
	client := e.spans(t, 1, byPIDs(kindClient, curlPID))[0]
	server := e.spans(t, 1, byPIDs(kindServer, handlerPID))[0]
	queries := e.spans(t, 2, func(s otlpreceiver.Span) bool {
		return byPIDs(kindClient, handlerPID)(s) && attrStr(s, "db.system.name") == "postgresql"
	})
	if withClient && (server.TraceID != client.TraceID || server.ParentSpanID != client.SpanID) {
		t.Errorf("handler span %q (trace %s parent %s) is not the child of curl's %s/%s", server.Name, server.TraceID, server.ParentSpanID, client.TraceID, client.SpanID)
	}
	ids := map[string]bool{}
	for _, q := range queries {
		ids[q.SpanID] = true
		if q.TraceID != server.TraceID || q.ParentSpanID != server.SpanID {
			t.Errorf("query %q (trace %s parent %s) is not the child of the handler's span %s/%s", q.Name, q.TraceID, q.ParentSpanID, server.TraceID, server.SpanID)
		}
	}
	backend := e.spans(t, 2, func(s otlpreceiver.Span) bool {
		return int(s.Kind) == kindServer && s.TraceID == server.TraceID && attrStr(s, "db.system.name") == "postgresql"
	})
	for _, b := range backend {
		if !ids[b.ParentSpanID] {
			t.Errorf("backend span %q: parent %s is not a query of the handler", b.Name, b.ParentSpanID)
		}
	}
}

// startMariaDB starts mariadbd as root on a free loopback port with a
// private data directory and a user app (password) owning database shop;
// it returns the port.
// mariaDB is a MariaDB server a test started.
type mariaDB struct {
	port int
	sock string // its Unix socket
	pid  int
}

func startMariaDB(t *testing.T, password string, extra ...string) mariaDB {
	t.Helper()
	for _, tool := range []string{"mariadb-install-db", "mariadbd", "mariadb"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not installed (scripts/deps.sh): %v", tool, err)
		}
	}
	dir := t.TempDir()
	data, sock := filepath.Join(dir, "data"), filepath.Join(dir, "sock")
	run(t, "mariadb-install-db", "--datadir="+data, "--user=root", "--auth-root-authentication-method=socket")
	port := harness.FreePort(t)
	args := append([]string{"--no-defaults", "--datadir=" + data, "--socket=" + sock, fmt.Sprintf("--port=%d", port),
		"--bind-address=127.0.0.1", "--user=root", "--skip-name-resolve", "--log-error=" + filepath.Join(dir, "log")}, extra...)
	p := startProc(t, nil, "mariadbd", args...)
	waitListening(t, p, port)
	// The password goes through a file: not on a command line.
	sql := filepath.Join(dir, "init.sql")
	init := fmt.Sprintf("CREATE DATABASE shop; CREATE USER 'app'@'%%' IDENTIFIED BY '%s'; GRANT ALL ON shop.* TO 'app'@'%%';\n", password)
	if err := os.WriteFile(sql, []byte(init), 0o600); err != nil {
		t.Fatal(err)
	}
	run(t, "sh", "-c", fmt.Sprintf("mariadb --no-defaults --skip-ssl --socket=%s < %s", sock, sql))
	return mariaDB{port: port, sock: sock, pid: p.PID}
}

// TestMySQLPlain: pymysql (COM_QUERY) and go-sql-driver/mysql (binary
// prepared statements executed 100 times, a multi-statement query, a
// transaction) against a real MariaDB over plaintext TCP: exact CLIENT
// spans with error codes, SERVER spans from the traced mariadbd, the
// histogram on /metrics, and no planted secret in any exporter.
func TestMySQLPlain(t *testing.T) {
	const password = "planted-mysql-password"
	goclients := buildGoClients(t)
	mariadbd, err := exec.LookPath("mariadbd")
	if err != nil {
		t.Fatal(err)
	}
	e := startAgentOTLP(t, dbAgentEnv, append(selectExes(t, python(t), goclients, mariadbd), "--log-level=debug")...)
	port := startMariaDB(t, password).port

	py := runDone(t, []string{"MYSQL_PASSWORD=" + password}, "done", python(t), testdataPath(t, "db/mysql_client.py"), fmt.Sprint(port))
	wantDBSpans(t, e, "mariadb", py.PID, 106, wantPyMySQL())

	gc := runDone(t, nil, "", goclients, "-system", "mysql", "-addr", fmt.Sprintf("127.0.0.1:%d", port), "-password", password, "-db", "shop")
	wantDBSpans(t, e, "mariadb", gc.PID, 108, wantGoMySQL())
	for _, s := range e.recv.Spans() {
		if attrStr(s, "db.system.name") == "mariadb" && (attrStr(s, "db.namespace") != "shop" || attrInt(s, "server.port") != int64(port)) {
			t.Errorf("span %q: attributes %v", s.Name, s.Attributes)
		}
	}
	checkHistograms(t, e, map[string]string{"db_system_name": "mariadb", "db_operation_name": "SELECT",
		"db_collection_name": "py_items", "db_namespace": "shop", "server_port": fmt.Sprint(port)}, 100)
	noPlanted(t, e, "planted")
}

// TestMySQLTLSUpgrade: a MySQL connection that turns to TLS after its SSL
// request (pymysql against MariaDB with a self-signed certificate) is no
// longer copied by the sockets collector: the greeting and the SSL request
// are (a data record each at both ends), the TLS records of 100 queries
// after them are not.
func TestMySQLTLSUpgrade(t *testing.T) {
	const password = "planted-mysql-password"
	mariadbd, err := exec.LookPath("mariadbd")
	if err != nil {
		t.Fatal(err)
	}
	e := startAgentOTLP(t, dbAgentEnv, selectExes(t, python(t), mariadbd)...)
	cert, key, _ := harness.GenerateCert(t, filepath.Join(t.TempDir(), "tls"))
	port := startMariaDB(t, password, "--ssl-cert="+cert, "--ssl-key="+key).port
	data := func() float64 {
		return e.agent.Metric(t, "periscope_events_read_total", map[string]string{"collector": "sockets", "type": "data"})
	}
	before := data()
	runDone(t, []string{"MYSQL_PASSWORD=" + password}, "done tls", python(t), testdataPath(t, "db/mysql_tls_client.py"), fmt.Sprint(port))
	// Records are read on a timer: wait until they stop coming.
	got := before
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		time.Sleep(500 * time.Millisecond)
		if v := data(); v != got {
			got, deadline = v, time.Now().Add(2*time.Second)
		}
	}
	// Greeting (server write, client read), SSL request (client write,
	// server read) and the server's read of the ClientHello's record
	// header; up to 8 for slack, far below the ~300 records the 100
	// queries' TLS records made before (3,027 for 1,000).
	n := got - before
	t.Logf("%v data records from the sockets collector", n)
	if n < 4 || n > 8 {
		t.Errorf("the sockets collector read %v data records for the TLS connection, want the greeting and the SSL request at both ends (4 to 8)", n)
	}
}

// wantPyMySQL are the spans of testdata/db/mysql_client.py's workload.
func wantPyMySQL() map[string]int {
	return map[string]int{
		"CREATE TABLE py_items | CREATE TABLE py_items (id int PRIMARY KEY, secret varchar(?)) | ": 1,
		"INSERT py_items | INSERT INTO py_items VALUES (?, ?) | ":                                  1,
		"SELECT py_items | SELECT secret FROM py_items WHERE id = ? | ":                            100,
		"SELECT missing | SELECT * FROM missing WHERE s = ? | 1146":                                1,
		"BEGIN | BEGIN | ": 1,
		"UPDATE py_items | UPDATE py_items SET secret = ? WHERE id = ? | ": 1,
		"COMMIT | COMMIT | ": 1,
	}
}

// wantGoMySQL are the spans of goclients' go-sql-driver/mysql workload.
func wantGoMySQL() map[string]int {
	return map[string]int{
		"CREATE TABLE gitems | CREATE TABLE IF NOT EXISTS gitems (id int PRIMARY KEY, name varchar(?)) | ": 1,
		"INSERT gitems | INSERT INTO gitems (id, name) VALUES (?, ?) | ":                                   100, // one COM_STMT_PREPARE, 100 COM_STMT_EXECUTE
		"SELECT gitems | SELECT id, name FROM gitems WHERE id < ? | ":                                      1,
		"SELECT no_such_table | SELECT * FROM no_such_table WHERE x = ? | 1146":                            1,
		"UPDATE gitems | UPDATE gitems SET name = ? WHERE id = ? | ":                                       2, // in the multi-statement query, and in the transaction
		"DELETE gitems | DELETE FROM gitems WHERE id = ? | ":                                               1,
		"START TRANSACTION | START TRANSACTION | ":                                                         1,
		"COMMIT | COMMIT | ": 1,
	}
}

// TestMySQLTLS: pymysql (OpenSSL through Python's ssl), go-sql-driver/mysql
// (Go crypto/tls) and the mariadb client (OpenSSL) over TLS against a real
// MariaDB: the greeting and the SSL request go over the socket, the rest
// inside TLS, where the decoder starts at the client's HandshakeResponse
// (sequence 2). The same exact CLIENT spans as over plaintext, named
// mariadb (the greeting, seen on the socket, says so), db.namespace from
// the HandshakeResponse, SERVER spans from the traced mariadbd, and none
// of the planted secrets in any exporter.
func TestMySQLTLS(t *testing.T) {
	const password = "planted-mysql-password"
	goclients := buildGoClients(t)
	mariadbd, err := exec.LookPath("mariadbd")
	if err != nil {
		t.Fatal(err)
	}
	// goclients waits for its probes before it connects (the decoder
	// needs the connection's first bytes).
	e := startAgentOTLP(t, dbAgentEnv, selectExes(t, python(t), goclients, mariadbd, "mariadb")...)
	cert, key, _ := harness.GenerateCert(t, filepath.Join(t.TempDir(), "tls"))
	db := startMariaDB(t, password, "--ssl-cert="+cert, "--ssl-key="+key)
	port := db.port
	unixSessions(t, e, db)

	// pymysql first: the first TCP connection to the server, whose TLS
	// spans are named by the greeting its own socket carried, whichever
	// ring is read first (the spans wait for it).
	py := startProc(t, []string{"MYSQL_PASSWORD=" + password}, python(t), testdataPath(t, "db/mysql_client.py"), fmt.Sprint(port), "tls")
	e.instrumented(t, py.PID)
	py.send("go")
	py.mustSucceed(60 * time.Second)
	wantDBSpans(t, e, "mariadb", py.PID, 106, wantPyMySQL())

	gc := startProc(t, nil, goclients, "-system", "mysql", "-addr", fmt.Sprintf("127.0.0.1:%d", port),
		"-password", password, "-db", "shop", "-sslmode", "require", "-wait-stdin")
	e.instrumented(t, gc.PID)
	gc.send("go")
	gc.mustSucceed(60 * time.Second)
	wantDBSpans(t, e, "mariadb", gc.PID, 108, wantGoMySQL())

	// MariaDB's own client (its HandshakeResponse says MariaDB). It reads
	// its options (the password among them) from a FIFO before it
	// connects: it waits there until the agent has probed it (a
	// short-lived client could be done before). The statements come on
	// stdin: a literal on the command line would be exported with the
	// process's arguments.
	dir := t.TempDir()
	script, opts := filepath.Join(dir, "cli.sql"), filepath.Join(dir, "cli.cnf")
	if err := os.WriteFile(script, []byte("CREATE TABLE cli_items (id int); SELECT * FROM cli_items WHERE id = 'planted-cli';\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(opts, 0o600); err != nil {
		t.Fatal(err)
	}
	cli := startProc(t, nil, "sh", "-c", fmt.Sprintf(
		"exec mariadb --defaults-file=%s --ssl --skip-ssl-verify-server-cert -h 127.0.0.1 -P %d -u app shop < %s", opts, port, script))
	e.instrumented(t, cli.PID)
	if err := os.WriteFile(opts, []byte("[client]\npassword="+password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cli.mustSucceed(60 * time.Second)
	wantCLI := map[string]int{
		"CREATE TABLE cli_items | CREATE TABLE cli_items (id int) | ": 1,
		"SELECT cli_items | SELECT * FROM cli_items WHERE id = ? | ":  1,
	}
	wantDBSpans(t, e, "mariadb", cli.PID, 2, wantCLI)

	for _, s := range e.recv.Spans() {
		if byPIDs(kindClient, py.PID, gc.PID, cli.PID)(s) && (attrStr(s, "db.namespace") != "shop" || attrInt(s, "server.port") != int64(port)) {
			t.Errorf("span %q: attributes %v", s.Name, s.Attributes)
		}
	}
	want := map[string]int{}
	for _, m := range []map[string]int{wantPyMySQL(), wantGoMySQL(), wantCLI} {
		for k, n := range m {
			want[k] += n
		}
	}
	server := e.spans(t, 106+108+2, func(s otlpreceiver.Span) bool {
		return int(s.Kind) == kindServer && attrStr(s, "db.system.name") == "mariadb" && attrStr(s, "db.namespace") == "shop" &&
			attrInt(s, "server.port") == int64(port)
	})
	if got := counts(server, dbKey); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("mariadbd's SERVER spans:\n%v\nwant\n%v", got, want)
	}
	noPlanted(t, e, "planted")
}

// unixSessions runs two TLS sessions of the mariadb client on the server's
// Unix socket, on two databases, before the TCP sessions of TestMySQLTLS.
// A TLS session on a Unix socket is never bound to a TCP socket, and
// mariadbd's next session gets the freed SSL* at the same address: each
// session must still be a connection of its own (SSL_free ends it), with
// its own db.namespace, and so must the TCP sessions after them.
func unixSessions(t *testing.T, e *env, db mariaDB) {
	t.Helper()
	e.instrumented(t, db.pid)
	for _, s := range []struct{ db, sql string }{
		{"shop", "CREATE TABLE unix_items (id int)"},
		{"mysql", "SELECT host FROM user"},
	} {
		run(t, "mariadb", "--no-defaults", "--ssl", "--skip-ssl-verify-server-cert", "--socket="+db.sock, "-D", s.db, "-e", s.sql)
	}
	for name, ns := range map[string]string{"CREATE TABLE unix_items": "shop", "SELECT user": "mysql"} {
		got := e.spans(t, 1, func(s otlpreceiver.Span) bool {
			return int(s.Kind) == kindServer && s.Name == name && attrStr(s, "db.system.name") == "mariadb"
		})
		if attrStr(got[0], "db.namespace") != ns {
			t.Errorf("mariadbd's span %q on the Unix socket: db.namespace %q, want %q (attributes %v)", name, attrStr(got[0], "db.namespace"), ns, got[0].Attributes)
		}
	}
}

// TestDBBoundedMemory: a result set of 1 GiB (psql copying a generated
// table out of a traced PostgreSQL) and a pipeline of 100,000 commands
// (redis-cli --pipe into a traced redis-server) do not grow the agent: its
// resident memory after them is within 96 MiB of what it was before (a
// decoder that kept the result would hold 1 GiB). Each pipelined SET is a
// SERVER span of redis-server, or a loss the agent counts.
func TestDBBoundedMemory(t *testing.T) {
	const password = "planted-pg-password"
	redisServer, err := exec.LookPath("redis-server")
	if err == nil {
		redisServer, err = filepath.EvalSymlinks(redisServer)
	}
	if err != nil {
		t.Fatal(err)
	}
	e := startAgentOTLP(t, dbAgentEnv, selectExes(t, filepath.Join(pgBin, "postgres"), redisServer)...)
	pgPort := startPostgres(t, password, false)
	rdPort := startRedis(t, password)
	psql := func(sql string) {
		t.Helper()
		cmd := exec.Command(filepath.Join(pgBin, "psql"), "-X", "-q", "-o", "/dev/null", "-c", sql,
			fmt.Sprintf("host=127.0.0.1 port=%d dbname=shop user=app", pgPort))
		cmd.Env = append(os.Environ(), "PGPASSWORD="+password)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("psql %s: %v\n%s", sql, err, out)
		}
	}
	// Warm up: the decoders, rings and exporters in use once.
	psql("SELECT 1")
	e.spans(t, 1, func(s otlpreceiver.Span) bool { return attrStr(s, "db.query.text") == "SELECT ?" })
	before := rssBytes(t, e.agent.PID)

	t0 := time.Now()
	psql("COPY (SELECT repeat('x', 1023) FROM generate_series(1, 1048576)) TO STDOUT")
	e.spans(t, 1, func(s otlpreceiver.Span) bool {
		return strings.HasPrefix(attrStr(s, "db.query.text"), "COPY (SELECT repeat(?, ?)")
	})
	t.Logf("1 GiB result: %s", time.Since(t0).Round(time.Millisecond))

	// The pipeline: one span per command at the server, or, where the
	// agent could not keep up (records the ring dropped, spans the
	// exporter's queue had no room for), losses it counts.
	counters := func() (built, ringDrops, overflowed, queueFull float64) {
		return e.agent.Metric(t, "periscope_spans_total", map[string]string{"kind": "server"}),
			e.agent.Metric(t, "periscope_events_dropped_total", nil),
			e.agent.Metric(t, "periscope_db_decoder_events_total", map[string]string{"event": "overflowed"}),
			e.agent.Metric(t, "periscope_spans_dropped_total", map[string]string{"exporter": "otlp", "reason": "queue_full"})
	}
	built0, ring0, over0, full0 := counters()
	// This test's server only: the agent traces every redis-server of
	// the machine, and another one under load (a benchmark beside the
	// test) made 6,491 SET spans more than the test sent (sys18).
	isSet := func(s otlpreceiver.Span) bool {
		return int(s.Kind) == kindServer && attrStr(s, "db.system.name") == "redis" && attrStr(s, "db.operation.name") == "SET" &&
			attrInt(s, "server.port") == int64(rdPort)
	}
	t0 = time.Now()
	var pipe strings.Builder
	fmt.Fprintf(&pipe, "*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n", len(password), password)
	for i := range 100_000 {
		k := fmt.Sprintf("k:%d", i)
		fmt.Fprintf(&pipe, "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$1\r\nv\r\n", len(k), k)
	}
	cli := exec.Command("redis-cli", "-h", "127.0.0.1", "-p", fmt.Sprint(rdPort), "--pipe")
	cli.Stdin = strings.NewReader(pipe.String())
	if out, err := cli.CombinedOutput(); err != nil || !strings.Contains(string(out), "replies: 100001") {
		t.Fatalf("redis-cli --pipe: %v\n%s", err, out)
	}
	// Until the spans stop coming (or all came). Two equal counts 2 s
	// apart end the wait only once some span came: redis-cli may finish
	// before the first export leaves the agent (ci26: 0 at once).
	received := 0
	var sets []otlpreceiver.Span
	for last, deadline := -1, time.Now().Add(time.Minute); ; time.Sleep(2 * time.Second) {
		sets = filterSpans(e.recv.Spans(), isSet)
		received = len(sets)
		if received >= 100_000 || (received == last && received > 0) || time.Now().After(deadline) {
			break
		}
		last = received
	}
	built1, ring1, over1, full1 := counters()
	built, ringDrops, overflowed, queueFull := built1-built0, ring1-ring0, over1-over0, full1-full0
	t.Logf("pipeline of 100,000 in %s: %d SET spans received; %v server spans built, %v records dropped by the ring, %v commands overflowed, %v spans dropped at the exporter's queue",
		time.Since(t0).Round(time.Millisecond), received, built, ringDrops, overflowed, queueFull)
	switch distinct := distinctSpanIDs(sets); {
	case distinct < received:
		t.Errorf("%d SET spans received, %d of them again (the same span ID)", received, received-distinct)
	case received > 100_000:
		t.Errorf("%d SET spans for 100,000 commands", received)
	case ringDrops > 0 || overflowed > 0:
		// Counted before the spans: the rest cannot be told apart.
	case built < 100_000:
		t.Errorf("%v server spans built for 100,000 SETs (and AUTH, and redis-cli's closing ECHO), and no loss counted", built)
	case float64(received)+queueFull < 100_000:
		t.Errorf("%d SET spans received, %v spans counted as dropped at the exporter: %v SETs lost silently",
			received, queueFull, 100_000-float64(received)-queueFull)
	}

	after := rssBytes(t, e.agent.PID)
	t.Logf("agent RSS %d MiB before, %d MiB after", before>>20, after>>20)
	if after-before > 96<<20 {
		t.Errorf("the agent grew by %d MiB (from %d MiB)", (after-before)>>20, before>>20)
	}
	noPlanted(t, e, "planted")
}

// TestRedisTLS: python3-redis over TLS (OpenSSL, through Python's ssl)
// against a redis-server that serves TLS (OpenSSL): the same exact 114
// CLIENT spans as over plaintext, as many SERVER spans from the traced
// redis-server, each the child of its CLIENT span, and no value, AUTH
// password or message in any exporter.
func TestRedisTLS(t *testing.T) {
	const password = "planted-redis-password"
	e := startAgentOTLP(t, dbAgentEnv, selectExes(t, "redis-server", python(t))...)
	cert, key, _ := harness.GenerateCert(t, filepath.Join(t.TempDir(), "tls"))
	port := startRedisTLS(t, password, cert, key)
	py := startProc(t, []string{"REDIS_PASSWORD=" + password}, python(t), testdataPath(t, "db/redis_client.py"), fmt.Sprint(port), "tls")
	e.instrumented(t, py.PID)
	py.send("go")
	py.mustSucceed(60 * time.Second)
	clients := map[string]bool{}
	for _, s := range checkPyRedis(t, e, py.PID) {
		clients[s.SpanID] = true
		if attrInt(s, "server.port") != int64(port) || s.Name != fmt.Sprintf("%s 127.0.0.1:%d", attrStr(s, "db.operation.name"), port) {
			t.Errorf("span %q: attributes %v", s.Name, s.Attributes)
		}
	}
	server := e.spans(t, 114, func(s otlpreceiver.Span) bool {
		return int(s.Kind) == kindServer && attrStr(s, "db.system.name") == "redis" && attrInt(s, "server.port") == int64(port)
	})
	for _, s := range server {
		if !clients[s.ParentSpanID] {
			t.Errorf("server span %q: parent %q is not a python span", s.Name, s.ParentSpanID)
		}
	}
	noPlanted(t, e, "planted")
}
