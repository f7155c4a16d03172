package redis

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/periscope-apm/periscope/correlator/protocol"
	"github.com/periscope-apm/periscope/correlator/protocols/db"
	"github.com/periscope-apm/periscope/correlator/protocols/db/dbtest"
)

// FuzzDecoder feeds arbitrary bytes to both directions in arbitrary
// chunks: the decoder must not panic, must keep its buffers bounded and
// must never report an exchange twice.
func FuzzDecoder(f *testing.F) {
	f.Add([]byte(cmd("SET", "k", "v")), []byte("+OK\r\n"), uint64(1))
	f.Add([]byte(cmd("SUBSCRIBE", "c")+cmd("PING")), []byte("*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n>3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nx\r\n*2\r\n$4\r\npong\r\n$0\r\n\r\n"), uint64(2))
	f.Add([]byte("PING\r\nGET a\r\n"), []byte("|1\r\n+a\r\n:1\r\n$?\r\n;1\r\na\r\n;0\r\n*?\r\n.\r\n"), uint64(3))
	f.Fuzz(func(t *testing.T, reqs, resps []byte, seed uint64) {
		rng := rand.New(rand.NewPCG(seed, 0))
		rec := &dbtest.Recorder{T: t}
		d := New(&db.Stats{}).NewDecoder(protocol.Client, rec).(*decoder)
		for len(reqs)+len(resps) > 0 {
			side, src := protocol.Requests, &reqs
			if len(reqs) == 0 || len(resps) > 0 && rng.IntN(2) == 0 {
				side, src = protocol.Responses, &resps
			}
			n := 1 + rng.IntN(len(*src))
			c := protocol.Chunk{Bytes: (*src)[:n], Size: n, Time: dbtest.Base}
			if rng.IntN(8) == 0 {
				c.Bytes = c.Bytes[:rng.IntN(n+1)]
			}
			*src = (*src)[n:]
			if err := d.Feed(side, c); err != nil {
				return
			}
			for _, r := range []*reader{d.req, d.resp} {
				if cap(r.line) > maxInline+64 || len(r.stack) > maxDepth {
					t.Fatalf("reader grew: line %d stack %d", cap(r.line), len(r.stack))
				}
			}
			if d.pending.Len() > len(rec.Ended)+rec.Open()+int(d.stats.Overflowed.Load()) {
				t.Fatalf("pending %d more than commands", d.pending.Len())
			}
		}
	})
}

// FuzzValuesNeverKept sends commands whose values are fuzzed secrets and
// checks that no exchange holds one.
func FuzzValuesNeverKept(f *testing.F) {
	f.Add("SET", "key", "s3cr3t-val", uint64(0))
	f.Add("AUTH", "user", "passw0rd!", uint64(1))
	f.Add("HSET", "h", "field secret", uint64(2))
	f.Fuzz(func(t *testing.T, name, key, secret string, seed uint64) {
		if len(secret) < 6 || strings.Contains(key, secret) || strings.Contains(name, secret) ||
			strings.ContainsAny(name+key, "\r\n") || name == "" {
			return
		}
		args := []string{name, key, secret, "x", secret}
		if noKey[strings.ToUpper(name)] || subcommands[strings.ToUpper(name)] || procedures[strings.ToUpper(name)] {
			args = []string{name, secret, secret}
		}
		steps := []dbtest.Step{{Side: protocol.Requests, Bytes: cmd(args...)}, {Side: protocol.Responses, Bytes: "+OK\r\n"}}
		rec := &dbtest.Recorder{T: t}
		d := New(&db.Stats{}).NewDecoder(protocol.Client, rec)
		if err := dbtest.Play(d, steps, rand.New(rand.NewPCG(seed, 0))); err != nil {
			t.Fatal(err)
		}
		for _, x := range rec.Ended {
			for _, s := range []string{x.Query, x.Operation, x.Procedure, x.Namespace} {
				if strings.Contains(s, secret) && !procedures[strings.ToUpper(name)] && !subcommands[strings.ToUpper(name)] {
					t.Fatalf("secret %q kept in %+v", secret, *x)
				}
			}
		}
	})
}
