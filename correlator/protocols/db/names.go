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
}

type serverNames struct {
	addr, hostport string
	names          map[string]string // db.operation.name → span name
}

func newNameCache() *nameCache {
	return &nameCache{servers: map[netip.AddrPort]*serverNames{}}
}

// server returns the address of server and "address:port" ("" when the
// server is not known).
func (c *nameCache) server(server netip.AddrPort) (addr, hostport string) {
	if !server.IsValid() {
		return "", ""
	}
	if c == nil {
		return server.Addr().Unmap().String(), hostPort(server)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	sn := c.lookup(server)
	return sn.addr, sn.hostport
}

// lookup returns the names of server, made when missing; c.mu is held.
func (c *nameCache) lookup(server netip.AddrPort) *serverNames {
	sn := c.servers[server]
	if sn == nil {
		if len(c.servers) >= maxCachedServers {
			clear(c.servers)
		}
		sn = &serverNames{addr: server.Addr().Unmap().String(), hostport: hostPort(server), names: map[string]string{}}
		c.servers[server] = sn
	}
	return sn
}

// name returns x.Name(server), kept when it is made of the operation and
// the server (the names that would otherwise be built per span).
func (c *nameCache) name(x *Exchange, server netip.AddrPort, hostport string) string {
	if c == nil || x.Summary != "" || x.Collection != "" || x.Procedure != "" || x.System != Redis && x.Namespace != "" ||
		x.Operation == "" || !server.IsValid() {
		return x.name(server, hostport)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	sn := c.lookup(server)
	if n, ok := sn.names[x.Operation]; ok {
		return n
	}
	if len(sn.names) >= maxCachedNames {
		clear(sn.names)
	}
	n := x.name(server, hostport)
	sn.names[x.Operation] = n
	return n
}
