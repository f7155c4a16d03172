package redis

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

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
		// The command name is exported upper-cased and the key as it is,
		// with "?" for each value: a secret that overlaps them (or the
		// space between them) is not a value.
		up := string(upper(nil, []byte(name[:min(len(name), keepName)])))
		upSecret := string(upper(nil, []byte(secret)))
		if len(secret) < 6 || strings.Contains(key, secret) || strings.Contains(secret, "?") ||
			strings.Contains(up, upSecret) || strings.Contains(upSecret, up) ||
			strings.Contains(up+" "+key+" ", secret) ||
			(key != "" && strings.Contains(secret, key)) ||
			strings.ContainsAny(name+key, "\r\n") || name == "" {
			return
		}
		args := []string{name, key, secret, "x", secret}
		if !keyed[strings.ToUpper(name)] || subcommands[strings.ToUpper(name)] || procedures[strings.ToUpper(name)] {
			args = []string{name, secret, secret}
		}
		steps := []dbtest.Step{{Side: protocol.Requests, Bytes: cmd(args...)}, {Side: protocol.Responses, Bytes: "+OK\r\n"}}
		rec := &dbtest.Recorder{T: t}
		d := New(&db.Stats{}).NewDecoder(protocol.Client, rec)
		if err := dbtest.Play(d, steps, rand.New(rand.NewPCG(seed, 0))); err != nil {
			t.Fatal(err)
		}
		for _, x := range rec.Ended {
			// The query begins with the name as exported (the operation).
			for _, s := range []string{strings.TrimPrefix(x.Query, x.Operation), x.Operation, x.Procedure, x.Namespace} {
				if strings.Contains(s, secret) && !procedures[strings.ToUpper(name)] && !subcommands[strings.ToUpper(name)] {
					t.Fatalf("secret %q kept in %+v", secret, *x)
				}
			}
		}
	})
}

// FuzzResync cuts the calls of a synchronous conversation at fuzzed places
// (a copy of the first bytes and the last, the middle lost) and drops the
// start of some commands: command i is LRANGE li, answered by an array of i+1 elements, so
// an exchange that ends with rows ends with its own reply's count. Every
// exchange ends with its own count or with none (caught in a loss), never
// another's; the decoder never errs on a Redis connection.
func FuzzResync(f *testing.F) {
	f.Add(uint64(1), uint8(3))
	f.Add(uint64(42), uint8(1))
	f.Fuzz(func(t *testing.T, seed uint64, every uint8) {
		rng := rand.New(rand.NewPCG(seed, 0))
		rec := &dbtest.Recorder{T: t}
		d := New(&db.Stats{}).NewDecoder(protocol.Client, rec)
		want := map[string]int64{}
		for i := range 40 {
			at := dbtest.Base.Add(time.Duration(i) * time.Millisecond)
			key := fmt.Sprintf("l%02d", i) // fixed width: a key cut short is no other key
			want["LRANGE "+key+" ? ?"] = int64(i + 1)
			sides := []protocol.Side{protocol.Requests, protocol.Responses}
			for j, b := range []string{cmd("LRANGE", key, "0", "-1"), array(i + 1)} {
				side := sides[j]
				if i == 0 || every == 0 || rng.IntN(int(every)+1) != 0 {
					if err := d.Feed(side, protocol.Chunk{Bytes: []byte(b), Size: len(b), Time: at}); err != nil {
						t.Fatal(err)
					}
					continue
				}
				switch {
				case side == protocol.Requests && rng.IntN(3) == 0:
					// The start of a command lost (its first records
					// dropped): the rest breaks RESP.
					k := 1 + rng.IntN(len(b)-1)
					c := protocol.Chunk{Bytes: []byte(b[k:]), Size: len(b) - k, Time: at}
					if err := d.Feed(side, c); err != nil {
						t.Fatal(err)
					}
				default: // cut
					head := rng.IntN(len(b))
					tail := rng.IntN(len(b) - head + 1)
					c := protocol.Chunk{Bytes: []byte(b[:head]), Size: len(b), Tail: []byte(b[len(b)-tail:]), Time: at}
					if err := d.Feed(side, c); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
		for _, x := range rec.Ended {
			n, ok := want[x.Query]
			if !ok {
				// The name or key fell in a gap (inside its bulk
				// string): the command is decoded without them.
				continue
			}
			if x.Rows != 0 && x.Rows != n {
				t.Fatalf("%s ended with %d rows, want %d or 0", x.Query, x.Rows, n)
			}
		}
	})
}
