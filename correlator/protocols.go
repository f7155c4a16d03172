package correlator

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/periscope-apm/periscope/correlator/httpspan"
	"github.com/periscope-apm/periscope/correlator/protocol"
	"github.com/periscope-apm/periscope/correlator/protocols/db"
	"github.com/periscope-apm/periscope/correlator/protocols/http1"
	"github.com/periscope-apm/periscope/correlator/protocols/http2"
	"github.com/periscope-apm/periscope/correlator/protocols/mysql"
	"github.com/periscope-apm/periscope/correlator/protocols/postgres"
	"github.com/periscope-apm/periscope/correlator/protocols/redis"
)

// registry is the protocols detected on byte streams, in the order they are
// tried. HTTP/1.x claims anything, so it comes last. A new protocol is one
// package under protocols/ and one line here.
func registry(sem *httpspan.Semantics, reg prometheus.Registerer) (protocol.Registry, error) {
	var stats [3]*db.Stats
	for i, system := range []string{db.PostgreSQL, db.MySQL, db.Redis} {
		s, err := db.NewStats(reg, system)
		if err != nil {
			return nil, err
		}
		stats[i] = s
	}
	h2, err := http2.New(sem, reg)
	if err != nil {
		return nil, err
	}
	return protocol.Registry{
		postgres.New(stats[0]),
		mysql.New(stats[1]),
		redis.New(stats[2]),
		h2,
		http1.New(sem, h2),
	}, nil
}
