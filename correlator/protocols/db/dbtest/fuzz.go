package dbtest

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/periscope-apm/periscope/correlator/protocol"
)

// SeedCaptures adds each capture in dir to f as (requests, responses, seed).
func SeedCaptures(f *testing.F, dir string) {
	files, _ := filepath.Glob(filepath.Join(dir, "*.capture"))
	for _, path := range files {
		steps, err := LoadCapture(path)
		if err != nil {
			f.Fatal(err)
		}
		var reqs, resps strings.Builder
		for _, s := range steps {
			if s.Side == protocol.Requests {
				reqs.WriteString(s.Bytes)
			} else {
				resps.WriteString(s.Bytes)
			}
		}
		if reqs.Len()+resps.Len() < 1<<16 {
			f.Add([]byte(reqs.String()), []byte(resps.String()), uint64(len(path)))
		}
	}
	if _, err := os.Stat(dir); err != nil {
		f.Fatal(err)
	}
}

// Interleave feeds reqs and resps to d in random chunks (some only partly
// captured), calling check after each; it stops at the first error, which
// must be a decoding error (the caller checks what it returned).
func Interleave(d protocol.Decoder, reqs, resps []byte, seed uint64, check func()) error {
	rng := rand.New(rand.NewPCG(seed, 0))
	for len(reqs)+len(resps) > 0 {
		side, src := protocol.Requests, &reqs
		if len(reqs) == 0 || len(resps) > 0 && rng.IntN(2) == 0 {
			side, src = protocol.Responses, &resps
		}
		n := 1 + rng.IntN(len(*src))
		c := protocol.Chunk{Bytes: (*src)[:n], Size: n, Time: Base}
		if rng.IntN(8) == 0 {
			c.Bytes = c.Bytes[:rng.IntN(n+1)]
			if rng.IntN(2) == 0 {
				c.Tail = (*src)[n-rng.IntN(n-len(c.Bytes)+1) : n]
			}
		}
		*src = (*src)[n:]
		if err := d.Feed(side, c); err != nil {
			return err
		}
		check()
	}
	return nil
}
