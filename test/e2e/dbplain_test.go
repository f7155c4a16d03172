package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/periscope-apm/periscope/test/e2e/harness"
	"github.com/periscope-apm/periscope/test/otlpreceiver"
)

// startRedis starts redis-server on a free loopback port with a private
// directory, no persistence and a password; it returns the port.
func startRedis(t *testing.T, password string) int {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("redis-server not installed (scripts/deps.sh): %v", err)
	}
	dir := t.TempDir()
	port := harness.FreePort(t)
	// The password goes in a config file: not on a command line.
	conf := filepath.Join(dir, "redis.conf")
	cfg := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nsave \"\"\nappendonly no\nrequirepass %s\n", port, dir, password)
	if err := os.WriteFile(conf, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startProc(t, nil, "redis-server", conf)
	waitListening(t, p, port)
	return port
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
	e := startAgent(t)
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

	redisSpans := func(pid int) func(otlpreceiver.Span) bool {
		return func(s otlpreceiver.Span) bool {
			return byPIDs(kindClient, pid)(s) && attrStr(s, "db.system.name") == "redis"
		}
	}
	key := func(s otlpreceiver.Span) string {
		return fmt.Sprintf("%s | %s | %s", attrStr(s, "db.operation.name"), attrStr(s, "db.query.text"), attrStr(s, "db.response.status_code"))
	}
	pySpans := e.spans(t, 64, redisSpans(py.PID))
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
	got := counts(pySpans, key)
	pipe := 0
	for k, n := range got {
		if strings.HasPrefix(k, "SET | SET pipe:") {
			pipe += n
			delete(got, k)
		}
	}
	if pipe != 50 || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("python spans (%d pipelined SET):\n%v\nwant 50 and\n%v", pipe, got, want)
	}
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
	if got := counts(cliSpans, key); fmt.Sprint(got) != fmt.Sprint(wantCLI) {
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
	noPlanted(t, e, "planted")
}
