package postgres

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
	f.Add([]byte(code(codeSSL)+startup(cstr("database"), cstr("x"))+msg('Q', cstr("SELECT 1; SELECT 2"))),
		[]byte("N"+authOK+row+complete("SELECT 1")+errorResp("XX000")+ready), uint64(1))
	f.Fuzz(func(t *testing.T, reqs, resps []byte, seed uint64) {
		rec := &dbtest.Recorder{T: t}
		d := New(&db.Stats{}).NewDecoder(protocol.Client, rec).(*decoder)
		err := dbtest.Interleave(d, reqs, resps, seed, func() {
			if d.queue.Len() > MaxPending+len(reqs)+len(resps) || len(d.statements) > MaxStatements ||
				len(d.portals) > MaxStatements || len(d.batchParse) > maxBatchParses {
				t.Fatalf("state grew: queue %d statements %d portals %d", d.queue.Len(), len(d.statements), len(d.portals))
			}
		})
		if err != nil && !errors.Is(err, db.ErrLostSync) {
			t.Fatalf("unexpected error: %v", err)
		}
	})
}
