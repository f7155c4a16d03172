package db

import (
	"net/netip"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/periscope-apm/periscope/correlator/protocol"
	"github.com/periscope-apm/periscope/span"
)

// Systems (db.system.name).
const (
	PostgreSQL = "postgresql"
	MySQL      = "mysql"
	MariaDB    = "mariadb"
	Redis      = "redis"
)

// ClientDuration is the histogram of the database conventions that every
// client exchange records into (seconds), with Buckets.
const ClientDuration = "db.client.operation.duration"

// Buckets are the bucket boundaries the conventions advise for
// db.client.operation.duration.
var Buckets = []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10}

// Exchange is one database operation: a request and its response. All text
// in it is safe to export: query text is sanitised or parameterised, Redis
// arguments other than the key are never kept.
type Exchange struct {
	Begun      time.Time
	System     string // db.system.name
	Namespace  string // db.namespace
	Operation  string // db.operation.name, when the protocol names it
	Collection string // db.collection.name, when the protocol names it
	Summary    string // db.query.summary
	Query      string // db.query.text, sanitised
	Procedure  string // db.stored_procedure.name
	StatusCode string // db.response.status_code
	ErrorType  string // error.type, set when the operation failed
	BatchSize  int    // db.operation.batch.size (0: not a batch)
	Rows       int64  // rows (or elements) returned, counted without buffering
	Bytes      int64  // response bytes
	// SystemUnsure says System is a guess (a MySQL connection decoded from
	// inside TLS, its greeting not seen): the protocol's Describe may know
	// better.
	SystemUnsure bool

	pool *Pool // the pool Recycle puts it back into, nil when none
}

var _ protocol.Exchange = (*Exchange)(nil)

// Start implements protocol.Exchange.
func (x *Exchange) Start() time.Time { return x.Begun }

// TraceParent implements protocol.Exchange: database protocols carry none.
func (x *Exchange) TraceParent() string { return "" }

// Stream implements protocol.Exchange: responses pair with requests in order.
func (x *Exchange) Stream() (uint64, bool) { return 0, false }

// Failed reports whether the operation ended with an error.
func (x *Exchange) Failed() bool { return x.ErrorType != "" }

// Name returns the span name of the conventions: the query summary, else
// "{db.operation.name} {target}", else the target, else the system. Redis
// spans never use the namespace (a number) as the target.
func (x *Exchange) Name(server netip.AddrPort) string {
	return x.name(server, hostPort(server))
}

// name is Name with the server's "address:port" given.
func (x *Exchange) name(server netip.AddrPort, hostport string) string {
	if x.Summary != "" {
		return x.Summary
	}
	target := x.Collection
	if target == "" {
		target = x.Procedure
	}
	if target == "" && x.System != Redis {
		target = x.Namespace
	}
	if target == "" && server.IsValid() {
		target = hostport
	}
	switch {
	case x.Operation != "" && target != "":
		return x.Operation + " " + target
	case x.Operation != "":
		return x.Operation
	case target != "":
		return target
	}
	return x.System
}

func hostPort(server netip.AddrPort) string {
	if !server.IsValid() {
		return ""
	}
	return server.Addr().Unmap().String() + ":" + strconv.Itoa(int(server.Port()))
}

// Describe sets the span name, attributes and status of x on s, appending
// to the span's own attribute array.
func Describe(x *Exchange, c protocol.Conn, reason string, s *span.Span) {
	describe(x, c, reason, s, nil)
}

func describe(x *Exchange, c protocol.Conn, reason string, s *span.Span, cache *nameCache) {
	server := c.ServerAddr()
	addr, _, name := cache.describe(x, server)
	s.Name = name
	attrs := append(s.Attributes, attribute.String("db.system.name", x.System))
	attrs = appendCommon(attrs, x, server, addr)
	if x.Query != "" {
		attrs = append(attrs, attribute.String("db.query.text", x.Query))
	}
	if x.Procedure != "" {
		attrs = append(attrs, attribute.String("db.stored_procedure.name", x.Procedure))
	}
	if x.BatchSize > 1 {
		attrs = append(attrs, attribute.Int("db.operation.batch.size", x.BatchSize))
	}
	if c.Bound && c.Remote.IsValid() && c.Role == protocol.Client {
		peer := addr
		if c.Remote != server {
			peer = c.Remote.Addr().Unmap().String()
		}
		attrs = append(attrs,
			attribute.String("network.peer.address", peer),
			attribute.Int("network.peer.port", int(c.Remote.Port())))
	}
	s.Attributes = attrs
	if x.Failed() && reason == "" {
		s.Status = span.Error
		s.StatusMsg = x.ErrorType
	}
}

// MetricAttributes returns the attributes of x on the
// db.client.operation.duration histogram: low-cardinality ones only, never
// the query text.
func MetricAttributes(x *Exchange, c protocol.Conn) []attribute.KeyValue {
	attrs := make([]attribute.KeyValue, 0, 9)
	attrs = append(attrs, attribute.String("db.system.name", x.System))
	server := c.ServerAddr()
	addr := ""
	if server.IsValid() {
		addr = server.Addr().Unmap().String()
	}
	return appendCommon(attrs, x, server, addr)
}

// appendCommon appends the attributes spans and the histogram share.
func appendCommon(attrs []attribute.KeyValue, x *Exchange, server netip.AddrPort, addr string) []attribute.KeyValue {
	for _, kv := range [...]struct{ k, v string }{
		{"db.namespace", x.Namespace},
		{"db.operation.name", x.Operation},
		{"db.collection.name", x.Collection},
		{"db.query.summary", x.Summary},
		{"db.response.status_code", x.StatusCode},
		{"error.type", x.ErrorType},
	} {
		if kv.v != "" {
			attrs = append(attrs, attribute.String(kv.k, kv.v))
		}
	}
	if server.IsValid() {
		attrs = append(attrs,
			attribute.String("server.address", addr),
			attribute.Int("server.port", int(server.Port())))
	}
	return attrs
}
