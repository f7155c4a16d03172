package correlator

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/periscope-apm/periscope/correlator/httpspan"
	"github.com/periscope-apm/periscope/correlator/protocol"
	"github.com/periscope-apm/periscope/correlator/protocols/http1"
	"github.com/periscope-apm/periscope/correlator/protocols/http2"
)

// registry is the protocols detected on byte streams, in the order they are
// tried. HTTP/1.x claims anything, so it comes last. A new protocol is one
// package under protocols/ and one line here.
func registry(sem *httpspan.Semantics, reg prometheus.Registerer) (protocol.Registry, error) {
	h2, err := http2.New(sem, reg)
	if err != nil {
		return nil, err
	}
	return protocol.Registry{
		h2,
		http1.New(sem),
	}, nil
}
