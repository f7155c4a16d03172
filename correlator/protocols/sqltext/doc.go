// Package sqltext makes SQL text safe and small enough to export.
//
// Sanitize replaces every literal of a query — strings (standard, E'...' escape
// strings, dollar-quoted bodies, MySQL double-quoted and backslash-escaped
// strings), numbers, hexadecimal and bit strings, booleans, and the elements
// of ARRAY[...] — by the placeholder "?", collapses "IN (?, ?, ...)" to
// "IN (?)", removes comments (they can carry anything, including secrets and
// trace context) and folds runs of white space into one space. Placeholders
// the client wrote ($1, ?, :name, %s) are kept. A literal that is cut off by
// the end of the captured text is replaced like a complete one, so a
// truncated capture never exports the beginning of a secret.
//
// Statements splits the sanitised text at top-level semicolons, so that the
// decoders can pair each result of a multi-statement query with its
// statement. Summary builds the low-cardinality db.query.summary of the
// OpenTelemetry database conventions: the operations and their targets in
// the order they appear ("SELECT users", "INSERT orders SELECT carts").
package sqltext
