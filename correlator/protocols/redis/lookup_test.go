package redis

import (
	"strconv"
	"testing"

	"github.com/periscope-apm/periscope/correlator/protocols/db/dbtest"
)

// A connection's decoder keeps the last command name it looked up: each
// command is still named by its own name, however the names before it
// began, ended or were cased.
func TestLookupKeepsLast(t *testing.T) {
	names := []string{"GET", "GET", "GETEX", "GE", "get", "GETX", "GETX", "SET", "GET", "CLIENT", "CLIENTX", "GET"}
	var steps []dbtest.Step
	var ws []want
	for _, n := range names {
		steps = append(steps, dbtest.Step{Side: req, Bytes: cmd(n, "k")}, dbtest.Step{Side: resp, Bytes: "+OK\r\n"})
		op := map[string]string{"get": "GET"}[n]
		if op == "" {
			op = n
		}
		query := op + " k"
		switch op {
		case "GE", "GETX", "CLIENTX":
			query = op + " ?" // not a known command: its argument may be a value
		case "CLIENT":
			query = "CLIENT K"
		}
		ws = append(ws, want{op: op, query: query})
	}
	rec, _ := run(t, steps, nil)
	check(t, rec, ws)
}

func TestAtoi(t *testing.T) {
	for _, s := range []string{"0", "7", "12", "007", "123456789", "1234567890", "-1", "+5", "", "1a", " 1", "99999999999999999999", "-"} {
		n, err := atoi([]byte(s))
		wn, werr := strconv.Atoi(s)
		if n != wn || (err == nil) != (werr == nil) {
			t.Errorf("atoi(%q) = %d, %v; strconv.Atoi: %d, %v", s, n, err, wn, werr)
		}
	}
}

func FuzzAtoi(f *testing.F) {
	for _, s := range []string{"0", "12", "-1", "+5", "1234567890", "x"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		n, err := atoi(p)
		wn, werr := strconv.Atoi(string(p))
		if n != wn || (err == nil) != (werr == nil) {
			t.Fatalf("atoi(%q) = %d, %v; strconv.Atoi: %d, %v", p, n, err, wn, werr)
		}
	})
}
