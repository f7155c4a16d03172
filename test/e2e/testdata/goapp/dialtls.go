//go:build !nethttponly

package main

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"sync/atomic"
)

// dialTLSItself makes t dial TLS itself (Transport.DialTLSContext),
// counting its dials in *dials: a crypto/tls user other than net/http's
// own dials, for which the gotls collector keeps its probes.
func dialTLSItself(t *http.Transport, h2 bool, dials *int64) {
	cfg := &tls.Config{}
	if t.TLSClientConfig != nil {
		cfg = t.TLSClientConfig.Clone()
	}
	cfg.NextProtos = []string{"http/1.1"}
	if h2 {
		cfg.NextProtos = []string{"h2", "http/1.1"}
	}
	t.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		atomic.AddInt64(dials, 1)
		c := cfg.Clone()
		c.ServerName, _, _ = net.SplitHostPort(addr)
		td := tls.Dialer{Config: c}
		return td.DialContext(ctx, network, addr)
	}
}
