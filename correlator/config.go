package correlator

import (
	"time"

	"github.com/periscope-apm/periscope/correlator/httpspan"
	"github.com/periscope-apm/periscope/events"
)

// Config tunes a Correlator. Start from DefaultConfig.
type Config struct {
	// IdleTimeout ends requests that saw no activity on their connection
	// for this long (error.type "timeout"), and drops the state of
	// connections idle for this long.
	IdleTimeout time.Duration
	// MaxConnections caps the connections tracked; past it the least
	// recently active connection is evicted.
	MaxConnections int

	// CaptureQuery exports query strings (url.query, url.full), with the
	// values of SensitiveQueryParams replaced by REDACTED.
	CaptureQuery bool
	// SensitiveQueryParams names the query parameters whose values are
	// redacted. Names match case-insensitively, ignoring '-', '_' and '.',
	// and also as a word of a longer name (X-Amz-Signature matches
	// "signature"). Empty means the defaults: token, access_token,
	// password, passwd, secret, api_key, apikey, key, signature, sig, code,
	// auth, session.
	SensitiveQueryParams []string

	// CaptureHeaders exports request and response headers as
	// http.request.header.<name> / http.response.header.<name>.
	CaptureHeaders bool
	// SensitiveHeaders names headers whose values are redacted, in
	// addition to Authorization, Cookie, Set-Cookie and
	// Proxy-Authorization, which are always redacted.
	SensitiveHeaders []string

	// RoutePatterns are route templates tried before the identifier
	// heuristic for http.route and span names (see NewRouter).
	RoutePatterns []string

	// BindGrace is how long the span of a finished request waits for the
	// socket of its connection when the collector has not named it yet.
	// A TLS library that writes into a memory BIO (node) makes no socket
	// syscall inside SSL_read or SSL_write, so its socket is known only
	// from the syscall right after its first SSL_write: just after the
	// response that ends a server's first request on a connection.
	// Waiting gives that span the peer's addresses and its link to the
	// client span. 0 exports at once; DefaultBindGrace suits the agent.
	BindGrace time.Duration

	// Linker looks up the client spans of server requests from other
	// nodes (nil: no cross-node linking), and LinkWait bounds how long a
	// span waits for the answer (0: DefaultLinkWait).
	Linker   Linker
	LinkWait time.Duration
	// Now is the agent's clock (nil: time.Now). A lookup's wait counts
	// from when the correlator read the request, by this clock, not from
	// the request's own time: an agent that reads its ring late still
	// gives the lookup its whole LinkWait. ExpireLinks is given times of
	// the same clock.
	Now func() time.Time
	// FromStart tells whether a connection of a language-level probe
	// (Go: gohttp's whole requests, gotls's plaintext), which reports
	// nothing of how the connection began, was seen from its start: the
	// connection of process pid with addresses tu, its first request
	// seen at first (internal/preopen). One that was not has no request
	// ordinal (cross-node linking). Nil: every such connection was.
	FromStart func(pid uint32, tu events.Tuple, first time.Time) bool
}

// Defaults.
const (
	DefaultIdleTimeout    = 2 * time.Minute
	DefaultMaxConnections = 65536
	DefaultBindGrace      = 250 * time.Millisecond
)

// DefaultConfig returns the default configuration: no query strings, no
// headers.
func DefaultConfig() Config {
	return Config{
		IdleTimeout:          DefaultIdleTimeout,
		MaxConnections:       DefaultMaxConnections,
		SensitiveQueryParams: append([]string(nil), httpspan.DefaultSensitiveQueryParams...),
	}
}
