// Package console writes finished spans to an io.Writer, one line per span:
// either a human-readable, column-aligned line or a JSON object (JSON lines).
//
// It is the agent's embedded default exporter. Writing happens on a
// goroutine fed by a bounded queue, so a slow terminal or a full pipe never
// blocks the pipeline: when the queue is full, spans are dropped and counted.
package console
