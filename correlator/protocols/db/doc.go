// Package db holds what the database protocols (postgres, mysql, redis)
// share: their exchange type, the span name, attributes and status of the
// OpenTelemetry database conventions, the attributes of the
// db.client.operation.duration histogram, a framer for length-prefixed
// messages that keeps only the prefix a decoder asks for and counts the
// rest, a bounded queue of requests waiting for their responses, and the
// counters of what the decoders had to drop.
//
// Nothing here ever holds a bound parameter, a password or a value: the
// decoders keep only the bytes they name (the command, the key, the query
// text they sanitise) and skip everything else without copying it.
package db
