package redis

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"github.com/periscope-apm/periscope/correlator/protocol"
	"github.com/periscope-apm/periscope/correlator/protocols/db"
	"github.com/periscope-apm/periscope/correlator/protocols/db/dbtest"
)

// TestCaptures replays what real clients and a real Redis 7.0 said to each
// other (scripts/dbcapture/capture.sh): go-redis speaks RESP3, redis-py
// and redis-cli RESP2; the subscribed connections make no exchange for
// their subscription and messages.
func TestCaptures(t *testing.T) {
	hello := []string{
		" | HELLO | HELLO ? ? ? ? |  | rows 14",
		" | CLIENT | CLIENT SETINFO ? ? |  | error ERR ERR",
		" | CLIENT | CLIENT SETINFO ? ? |  | error ERR ERR",
	}
	var incr []string
	for i := range 50 {
		incr = append(incr, fmt.Sprintf(" | INCR | INCR gcounter:%d | ", i))
	}
	var set []string
	for i := range 50 {
		set = append(set, fmt.Sprintf(" | SET | SET pk:%d ? | ", i))
	}
	publish := dbtest.Repeat(" | PUBLISH | PUBLISH ? ? | ", 3)
	cases := map[string][]string{
		"goredis-1": slices.Concat(
			[]string{" | HELLO | HELLO ? ? ? ? |  | rows 14", " | CLIENT | CLIENT MAINT_NOTIFICATIONS ? ? ? |  | error ERR ERR"},
			hello[1:],
			[]string{" | SET | SET gkey ? | ", " | GET | GET gkey | "},
			[]string{" | LPUSH | LPUSH gkey ? |  | error WRONGTYPE WRONGTYPE", " | HGETALL | HGETALL ghash |  | rows 2"},
			publish),
		"goredis-2": slices.Concat(hello, incr,
			[]string{" | MULTI | MULTI | ", " | SET | SET gtx ? | ", " | HSET | HSET ghash ? ? | ", " | EXEC | EXEC |  | rows 2"}),
		"goredis-3":   hello,
		"redis-cli-1": {" | AUTH | AUTH ? | ", " | SET | SET clikey ? | "},
		"redis-py-1": slices.Concat(
			[]string{" | AUTH | AUTH ? | ", " | SET | SET pkey ? | ", " | GET | GET pkey | "},
			set,
			[]string{" | MULTI | MULTI | ", " | INCRBY | INCRBY pcount ? | ", " | GET | GET pkey | ", " | EXEC | EXEC |  | rows 2",
				" | LPUSH | LPUSH pkey ? |  | error WRONGTYPE WRONGTYPE"}),
		"redis-py-2": slices.Concat([]string{" | AUTH | AUTH ? | "}, publish),
	}
	for name, want := range cases {
		for _, role := range []protocol.Role{protocol.Client, protocol.Server} {
			got := dbtest.Replay(t, "testdata/"+name+".capture", func(h protocol.Handler) protocol.Decoder {
				return New(&db.Stats{}).NewDecoder(role, h)
			})
			dbtest.Compare(t, name, got, want)
		}
	}
}

// TestCapturesCapped replays the captures as the sockets collector sees
// them (4096 bytes from the start of each read, 128 from its end): every
// read of these workloads fits, so the exchanges are the same.
func TestCapturesCapped(t *testing.T) {
	files, err := filepath.Glob("testdata/*.capture")
	if err != nil || len(files) == 0 {
		t.Fatalf("no captures: %v", err)
	}
	for _, f := range files {
		stats := &db.Stats{}
		rec := &dbtest.Recorder{T: t}
		got := dbtest.ReplayCapped(t, f, New(stats).NewDecoder(protocol.Client, rec), rec)
		full := dbtest.Replay(t, f, func(h protocol.Handler) protocol.Decoder {
			return New(&db.Stats{}).NewDecoder(protocol.Client, h)
		})
		dbtest.Compare(t, f, got, full)
		if stats.LostSync.Load() != 0 || rec.Open() != 0 {
			t.Errorf("%s: lost %d, open %d", f, stats.LostSync.Load(), rec.Open())
		}
	}
}
