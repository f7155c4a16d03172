package agent

import (
	"encoding/json"
	"net/http"
	"sync/atomic"

	"github.com/periscope-apm/periscope/collectors"
	"github.com/periscope-apm/periscope/discovery"
)

// status serves GET /status: whether the agent is ready, which processes it
// follows and which collectors have probes on them.
type status struct {
	ready      atomic.Bool
	tracker    *discovery.Tracker
	collectors []collectors.Collector
	syscalls   string // the attach path of the agent's syscall programs
}

func (s *status) setReady() { s.ready.Store(true) }

type statusProcess struct {
	PID        uint32   `json:"pid"`
	Exe        string   `json:"exe"`
	Collectors []string `json:"collectors"`
}

type statusCollector struct {
	Name        string                  `json:"name"`
	AttachPath  string                  `json:"attach_path"`
	Attachments []collectors.Attachment `json:"attachments"`
}

type statusDoc struct {
	Ready      bool              `json:"ready"`
	Processes  []statusProcess   `json:"processes"`
	Collectors []statusCollector `json:"collectors"`
	// Syscalls says which programs hook syscalls, for which collectors.
	Syscalls string `json:"syscalls"`
}

func (s *status) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	doc := statusDoc{Ready: s.ready.Load(), Processes: []statusProcess{}, Collectors: []statusCollector{}, Syscalls: s.syscalls}
	instrumented := make(map[uint32][]string)
	for _, c := range s.collectors {
		atts := collectors.AttachmentsOf(c)
		doc.Collectors = append(doc.Collectors, statusCollector{Name: c.Name(), AttachPath: c.AttachPath(), Attachments: atts})
		for _, a := range atts {
			for _, pid := range a.Users {
				instrumented[pid] = appendOnce(instrumented[pid], c.Name())
			}
		}
	}
	for _, p := range s.tracker.Processes() {
		if cols := instrumented[p.PID]; len(cols) > 0 {
			doc.Processes = append(doc.Processes, statusProcess{PID: p.PID, Exe: p.Exe, Collectors: cols})
		}
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(doc)
}

func appendOnce(s []string, v string) []string {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}
