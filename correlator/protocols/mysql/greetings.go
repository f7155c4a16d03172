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
// here, by the connection's ends, when its spans are described — else by
// the server's address: a server greets every connection alike, and the
// socket's bytes (another ring) may be read after the TLS plaintext of the
// same connection, but not after that of a later one. Oldest first out
// past maxGreetings.
type greetings struct {
	mu       sync.Mutex
	system   map[pair]string
	order    []pair
	byServer map[netip.AddrPort]string
	last     string // the system of the last greeting seen on the node
}

func newGreetings() *greetings {
	return &greetings{system: map[pair]string{}, byServer: map[netip.AddrPort]string{}}
}

// put remembers the system that greeted the connection c.
func (g *greetings) put(c protocol.Conn, system string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.last = system
	p, ok := pairOf(c)
	if !ok {
		return
	}
	if _, known := g.system[p]; !known {
		if len(g.order) >= maxGreetings {
			delete(g.system, g.order[0])
			g.order = append(g.order[:0], g.order[1:]...)
		}
		g.order = append(g.order, p)
	}
	g.system[p] = system
	if _, known := g.byServer[p.server]; !known && len(g.byServer) >= maxGreetings {
		clear(g.byServer)
	}
	g.byServer[p.server] = system
}

// get returns the system that greeted the connection c, if remembered,
// else the one that greeted the server's other connections.
func (g *greetings) get(c protocol.Conn) (string, bool) {
	p, ok := pairOf(c)
	if !ok {
		return "", false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if s, ok := g.system[p]; ok {
		return s, true
	}
	s, ok := g.byServer[p.server]
	return s, ok
}

// lastSystem returns the system of the last greeting seen, "" before any.
func (g *greetings) lastSystem() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.last
}

// AwaitsGreeting implements protocol.GreetingWaiter: an exchange whose
// system is a guess (decoded from inside TLS) waits while its connection is
// not bound (its ends unknown), or no greeting of its connection or of its
// server has been read yet.
func (p *Protocol) AwaitsGreeting(px protocol.Exchange, c protocol.Conn) bool {
	if x, ok := px.(*db.Exchange); !ok || !x.SystemUnsure {
		return false
	}
	_, known := p.greetings.get(c)
	return !known
}

// Describe implements protocol.Protocol: an exchange decoded from inside
// TLS takes its system from the greeting its connection's socket carried,
// else from the greetings of its server's other connections, else (when
// its client's capabilities did not say MariaDB) from the last greeting
// seen on the node: the socket's record of the greeting may be read after
// the plaintext (another ring), or not bound to the connection's ends yet.
func (p *Protocol) Describe(px protocol.Exchange, c protocol.Conn, reason string, s *span.Span) {
	if x := px.(*db.Exchange); x.SystemUnsure {
		if system, ok := p.greetings.get(c); ok {
			x.System = system
		} else if last := p.greetings.lastSystem(); last != "" && x.System == db.MySQL {
			// A client that keeps CLIENT_MYSQL says nothing: the node's
			// last greeting is the better guess.
			x.System = last
		}
		x.SystemUnsure = false
	}
	p.Spans.Describe(px, c, reason, s)
}
