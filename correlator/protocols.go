package correlator

import (
	"github.com/periscope-apm/periscope/correlator/httpspan"
	"github.com/periscope-apm/periscope/correlator/protocol"
	"github.com/periscope-apm/periscope/correlator/protocols/http1"
)

// registry is the protocols detected on byte streams, in the order they are
// tried. HTTP/1.x claims anything, so it comes last. A new protocol is one
// package under protocols/ and one line here.
func registry(sem *httpspan.Semantics) protocol.Registry {
	return protocol.Registry{
		http1.New(sem),
	}
}
