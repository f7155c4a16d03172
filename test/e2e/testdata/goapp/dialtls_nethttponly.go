//go:build nethttponly

package main

import (
	"log"
	"net/http"
)

// dialTLSItself is left out of the benchmark's build: there the only
// crypto/tls connections are net/http's.
func dialTLSItself(*http.Transport, bool, *int64) {
	log.Fatal("-dial-tls: built with -tags nethttponly, which has no TLS dialer of its own")
}
