package redis

import (
	"fmt"
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
	dbtest.CheckCaptures(t, cases, newDecoder)
}

// TestCapturesCapped replays the captures as the sockets collector sees
// them (4096 bytes from the start of each read, 128 from its end): every
// read of these workloads fits, so the exchanges are the same.
func TestCapturesCapped(t *testing.T) {
	dbtest.CheckCapturesCapped(t, newDecoder, nil, 0)
}

func newDecoder(stats *db.Stats, role protocol.Role, h protocol.Handler) protocol.Decoder {
	return New(stats).NewDecoder(role, h)
}
