package mysql

import (
	"errors"
	"testing"

	"github.com/periscope-apm/periscope/correlator/protocol"
	"github.com/periscope-apm/periscope/correlator/protocols/db"
	"github.com/periscope-apm/periscope/correlator/protocols/db/dbtest"
)

// FuzzDecoder feeds arbitrary bytes to both directions in arbitrary
// chunks, some only partly captured: the decoder must not panic, must keep
// its state bounded, must end only exchanges it began and must fail only
// with ErrLostSync.
func FuzzDecoder(f *testing.F) {
	dbtest.SeedCaptures(f, "testdata")
	// a connection's TLS plaintext: it starts at the HandshakeResponse
	f.Add([]byte(handshakeAfterTLS(baseCaps|capSSL|capMySQL, "shop")+query("SELECT 1")),
		[]byte(pkt(3, okBody(0, 2))+resultSet(1, []string{"\x011"}, false, 2)), uint64(7))
	f.Fuzz(func(t *testing.T, reqs, resps []byte, seed uint64) {
		rec := &dbtest.Recorder{T: t}
		d := New(&db.Stats{}).NewDecoder(protocol.Client, rec).(*decoder)
		err := dbtest.Interleave(d, reqs, resps, seed, func() {
			if d.queue.Len() > len(reqs)+len(resps)+MaxPending || len(d.stmts) > MaxStatements {
				t.Fatalf("state grew: queue %d statements %d", d.queue.Len(), len(d.stmts))
			}
		})
		if err != nil && !errors.Is(err, db.ErrLostSync) {
			t.Fatalf("unexpected error: %v", err)
		}
	})
}
