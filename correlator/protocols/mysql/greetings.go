package mysql

import (
	"net/netip"
	"sync"

	"github.com/periscope-apm/periscope/correlator/protocol"
	"github.com/periscope-apm/periscope/correlator/protocols/db"
	"github.com/periscope-apm/periscope/span"
)

// maxGreetings bounds the greetings remembered for connections that move
// to TLS.
const maxGreetings = 1024

// pair names a TCP connection by its ends, the same from either side.
type pair struct{ client, server netip.AddrPort }

func pairOf(c protocol.Conn) (pair, bool) {
	p := pair{client: c.Client(), server: c.ServerAddr()}
	return p, p.client.IsValid() && p.server.IsValid()
}

// greetings remembers which system greeted the connections that asked for
// TLS: their socket's decoder saw the greeting and left at the SSL
// request; the decoder of their TLS plaintext starts after it and asks
// here, by the connection's ends, when its spans are described. Oldest
// first out past maxGreetings.
type greetings struct {
	mu     sync.Mutex
	system map[pair]string
	order  []pair
}

func newGreetings() *greetings { return &greetings{system: map[pair]string{}} }

// put remembers the system that greeted the connection c.
func (g *greetings) put(c protocol.Conn, system string) {
	p, ok := pairOf(c)
	if !ok {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, known := g.system[p]; !known {
		if len(g.order) >= maxGreetings {
			delete(g.system, g.order[0])
			g.order = append(g.order[:0], g.order[1:]...)
		}
		g.order = append(g.order, p)
	}
	g.system[p] = system
}

// get returns the system that greeted the connection c, if remembered.
func (g *greetings) get(c protocol.Conn) (string, bool) {
	p, ok := pairOf(c)
	if !ok {
		return "", false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	s, ok := g.system[p]
	return s, ok
}

// Describe implements protocol.Protocol: an exchange decoded from inside
// TLS takes its system from the greeting its connection's socket carried,
// when that was seen.
func (p *Protocol) Describe(px protocol.Exchange, c protocol.Conn, reason string, s *span.Span) {
	if x := px.(*db.Exchange); x.SystemUnsure {
		if system, ok := p.greetings.get(c); ok {
			x.System = system
		}
		x.SystemUnsure = false
	}
	p.Spans.Describe(px, c, reason, s)
}
