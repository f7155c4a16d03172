// Package collectors defines what every probe family has in common. Each
// collector lives in its own package below this one: it loads its eBPF
// objects, attaches them to the files and processes discovery reports, and
// decodes its ring buffer into typed events. Collectors know nothing about
// HTTP; they hand events to the correlator through events.Sink.
package collectors

import (
	"context"
)

// Collector is one probe family, enabled and disabled by name. What only
// some collectors do is a separate interface, checked where it is used:
// following processes (discovery.Observer) and listing what is attached
// (Attacher).
type Collector interface {
	// Name is the collector's name in flags, logs and metric labels.
	Name() string
	// AttachPath says which kernel mechanisms the collector uses.
	AttachPath() string
	// Start loads the collector's programs and starts decoding events; it
	// returns an error naming what the kernel refused.
	Start(ctx context.Context) error
	// Wait returns once the event reader has stopped (after the context
	// given to Start is done) and has handled what the kernel had queued.
	Wait()
	// Close detaches everything and frees the programs.
	Close() error
}

// Attacher is a collector whose probes are attached per file or process.
type Attacher interface {
	// Attachments lists what is attached now.
	Attachments() []Attachment
}

// Attachment is a file the collector has probes on.
type Attachment struct {
	File   string   `json:"file"`
	PID    uint32   `json:"pid,omitempty"` // 0: every process mapping the file
	Probes int      `json:"probes"`
	Users  []uint32 `json:"users"` // processes known to map the file
}

// AttachmentsOf lists what c has attached: none when c attaches nothing per
// file or process.
func AttachmentsOf(c Collector) []Attachment {
	if a, ok := c.(Attacher); ok {
		return a.Attachments()
	}
	return []Attachment{}
}
