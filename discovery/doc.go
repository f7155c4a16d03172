// Package discovery keeps the agent's table of processes: an initial scan of
// /proc, then exec, fork and exit events and executable mmaps from eBPF
// tracepoints (no kprobes needed), and a periodic rescan for anything missed.
// Observers (the collectors) learn which selected processes exist and which
// executable files they map, so that probes can be attached to those files.
package discovery
