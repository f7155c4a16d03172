package db

import (
	"net/netip"
	"sync"
)

// Bounds of a nameCache: past them it starts afresh.
const (
	maxCachedServers = 256
	maxCachedNames   = 256
)

// nameCache keeps the strings that every span of a server repeats: its
// address, "address:port", and span names made of an operation and that
// target ("GET 127.0.0.1:6379"). Without it each span formats them anew.
// A nil cache formats every time.
type nameCache struct {
	mu      sync.Mutex
	servers map[netip.AddrPort]*serverNames
	// last is the server looked up last: a connection's spans come in
	// runs, and comparing it costs less than hashing an address.
	last *serverNames
}

type serverNames struct {
	server         netip.AddrPort
	addr, hostport string
	names          map[string]string // db.operation.name → span name
}

func newNameCache() *nameCache {
	return &nameCache{servers: map[netip.AddrPort]*serverNames{}}
}

// describe returns the address of server, "address:port" ("" when the
// server is not known) and x.Name(server), kept when it is made of the
// operation and the server (the names that would otherwise be built per
// span): one lookup per span.
func (c *nameCache) describe(x *Exchange, server netip.AddrPort) (addr, hostport, name string) {
	if !server.IsValid() {
		return "", "", x.name(server, "")
	}
	if c == nil {
		hostport = hostPort(server)
		return server.Addr().Unmap().String(), hostport, x.name(server, hostport)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	sn := c.lookup(server)
	if x.Summary != "" || x.Collection != "" || x.Procedure != "" || x.System != Redis && x.Namespace != "" || x.Operation == "" {
		return sn.addr, sn.hostport, x.name(server, sn.hostport)
	}
	if n, ok := sn.names[x.Operation]; ok {
		return sn.addr, sn.hostport, n
	}
	if len(sn.names) >= maxCachedNames {
		clear(sn.names)
	}
	n := x.name(server, sn.hostport)
	sn.names[x.Operation] = n
	return sn.addr, sn.hostport, n
}

// lookup returns the names of server, made when missing; c.mu is held.
func (c *nameCache) lookup(server netip.AddrPort) *serverNames {
	if sn := c.last; sn != nil && sn.server == server {
		return sn
	}
	sn := c.servers[server]
	if sn == nil {
		if len(c.servers) >= maxCachedServers {
			clear(c.servers)
		}
		sn = &serverNames{server: server, addr: server.Addr().Unmap().String(), hostport: hostPort(server), names: map[string]string{}}
		c.servers[server] = sn
	}
	c.last = sn
	return sn
}
