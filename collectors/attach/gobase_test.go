package attach

import (
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/cilium/ebpf/link"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/periscope-apm/periscope/collectors"
	"github.com/periscope-apm/periscope/discovery"
	"github.com/periscope-apm/periscope/symbols"
)

type testPlan struct {
	GoPlan
	name string
}

var errSkip = errors.New("not for this collector")

// TestGoCollector: each executable is planned once, whatever processes
// run it; planned ones get slots in order, attach once per file, and
// every process is reported (created only for the first); a file past the
// slots, or whose plan fails, is counted as a failure unless the failure
// is expected; unselected processes and other mappings are left alone.
func TestGoCollector(t *testing.T) {
	analysed := map[string]int{}
	var attaches []uint32
	failed := prometheus.NewCounter(prometheus.CounterOpts{Name: "failed"})
	m := &collectors.Metrics{Failed: failed, Probes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "probes"})}
	g := NewGoCollector(slog.New(slog.NewTextHandler(io.Discard, nil)), false, 0, m, 2, GoHooks[*testPlan]{
		Analyse: func(path string) *testPlan {
			analysed[path]++
			pl := &testPlan{name: path}
			switch path {
			case "/skip":
				pl.Err = errSkip
			case "/broken":
				pl.Err = errors.New("broken")
			}
			return pl
		},
		Load:     func(*testPlan) error { return nil },
		Expected: func(err error) bool { return errors.Is(err, errSkip) },
		Attach: func(_ string, _ uint32, pl *testPlan) ([]link.Link, error) {
			attaches = append(attaches, pl.Index)
			return nil, nil
		},
	})
	var got []Attached[*testPlan]
	update := func(pid uint32, path string, ino uint64, selected bool) {
		p := discovery.Process{PID: pid, Exe: path, Selected: selected}
		g.Update(p, []discovery.Mapping{{Path: "/lib/other.so", File: symbols.FileID{Ino: 99}}, {Path: path, File: symbols.FileID{Ino: ino}}},
			func(a Attached[*testPlan]) { got = append(got, a) })
	}
	update(1, "/a", 1, true)
	update(2, "/a", 1, true)
	update(3, "/b", 2, false) // not selected
	update(4, "/skip", 3, true)
	update(5, "/broken", 4, true)
	update(6, "/b", 2, true)
	update(7, "/c", 5, true) // past the two slots
	update(8, "/c", 5, true)
	if want := map[string]int{"/a": 1, "/skip": 1, "/broken": 1, "/b": 1, "/c": 1}; len(analysed) != len(want) {
		t.Errorf("analysed %v, want %v", analysed, want)
	} else {
		for k, v := range want {
			if analysed[k] != v {
				t.Errorf("analysed %v, want %v", analysed, want)
			}
		}
	}
	if len(attaches) != 2 || attaches[0] != 0 || attaches[1] != 1 {
		t.Errorf("attached slots %v, want [0 1]", attaches)
	}
	if len(got) != 3 || got[0].Process.PID != 1 || !got[0].Created || got[1].Process.PID != 2 || got[1].Created ||
		got[2].Process.PID != 6 || got[2].Plan.name != "/b" || !got[2].Created {
		t.Errorf("reported %+v", got)
	}
	if v := testutil.ToFloat64(failed); v != 2 { // /broken, /c
		t.Errorf("failures %v, want 2", v)
	}
	if len(g.Attachments()) != 2 {
		t.Errorf("attachments %v, want 2", g.Attachments())
	}
}
