package discovery

import (
	"fmt"
	"path"
	"strings"
)

// Selector chooses processes by executable path. A pattern containing a
// slash is matched (path.Match) against the whole path; one without a slash
// against the base name. With no Include patterns every process is
// included; Exclude wins over Include.
type Selector struct {
	Include []string
	Exclude []string
}

// Validate reports a malformed pattern.
func (s Selector) Validate() error {
	for _, p := range append(append([]string(nil), s.Include...), s.Exclude...) {
		if p == "" {
			return fmt.Errorf("empty executable pattern")
		}
		if _, err := path.Match(p, ""); err != nil {
			return fmt.Errorf("executable pattern %q: %w", p, err)
		}
	}
	return nil
}

// All reports whether the selector selects every process. Then probes are
// attached once per file for everyone; otherwise once per selected process,
// so that processes that are not selected never hit a probe.
func (s Selector) All() bool { return len(s.Include) == 0 && len(s.Exclude) == 0 }

// Match reports whether the process with executable exe is selected.
func (s Selector) Match(exe string) bool {
	if matchAny(s.Exclude, exe) {
		return false
	}
	return len(s.Include) == 0 || matchAny(s.Include, exe)
}

func matchAny(patterns []string, exe string) bool {
	base := path.Base(exe)
	for _, p := range patterns {
		name := exe
		if !strings.Contains(p, "/") {
			name = base
		}
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}
