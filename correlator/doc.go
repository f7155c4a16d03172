// Package correlator turns the events of the collectors into spans.
//
// A Correlator keeps state per connection: the protocol spoken on it and
// the role of the traced process, both detected from the first bytes and
// their direction (package protocol; one package per protocol under
// protocols/, registered in protocols.go), the protocol's decoder, and the
// exchanges in flight. When an exchange completes, when the connection
// closes or the process exits, or when a request has waited too long, it
// builds a span.Span, whose name and attributes the protocol sets per its
// OpenTelemetry semantic conventions, and hands it to a span.Exporter.
//
// Spans are linked without any help from the application: an incoming
// traceparent header makes the remote span the parent of a server span; a
// client request sent by a thread that is serving a request becomes the
// child of that server span; and a server span whose connection is the
// mirror image of a client connection of another traced process on the same
// node becomes the child of that client span.
//
// Query strings and headers are not exported unless the Config asks for
// them, and the values of credentials (Authorization, Cookie, sensitive query
// parameters) never leave the agent.
package correlator
