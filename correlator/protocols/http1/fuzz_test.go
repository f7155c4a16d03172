package http1

import (
	"testing"
	"time"

	"github.com/periscope-apm/periscope/correlator/httpspan"
	"github.com/periscope-apm/periscope/correlator/protocol"
)

// FuzzDecoder feeds two streams, split at arbitrary points, and checks that
// every exchange that began ends at most once.
func FuzzDecoder(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"), []byte("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"), uint8(3))
	f.Add([]byte("POST /u HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n"), []byte("HTTP/1.1 101 Switching\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n"), uint8(7))
	sem, err := httpspan.New(httpspan.Config{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, reqs, resps []byte, split uint8) {
		r := &rec{}
		d := New(sem, nil).NewDecoder(protocol.Server, r)
		n := int(split)%8 + 1
		for i := 0; i < n; i++ {
			for _, s := range []struct {
				side protocol.Side
				b    []byte
			}{{protocol.Requests, reqs}, {protocol.Responses, resps}} {
				part := s.b[i*len(s.b)/n : (i+1)*len(s.b)/n]
				if err := d.Feed(s.side, protocol.Chunk{Bytes: part, Size: len(part), Time: time.Unix(int64(i), 0)}); err != nil {
					return
				}
			}
		}
		d.EOF(time.Unix(99, 0))
		if len(r.ended) > len(r.begun) {
			t.Fatalf("%d exchanges ended, %d began", len(r.ended), len(r.begun))
		}
	})
}
