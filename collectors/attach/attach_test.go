package attach

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf/link"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/periscope-apm/periscope/symbols"
)

// fakeLink is a link that records its closing.
type fakeLink struct {
	link.Link
	closed *atomic.Int32
}

func (f fakeLink) Close() error { f.closed.Add(1); return nil }

func TestSet(t *testing.T) {
	probes := prometheus.NewGauge(prometheus.GaugeOpts{Name: "p"})
	s := NewSet(20*time.Millisecond, probes)
	var closed atomic.Int32
	attaches := 0
	attach := func() ([]link.Link, error) {
		attaches++
		return []link.Link{fakeLink{closed: &closed}, fakeLink{closed: &closed}}, nil
	}
	file := Key{File: symbols.FileID{Dev: 1, Ino: 2}}

	// Two processes share one per-file attachment.
	for _, pid := range []uint32{10, 11} {
		if _, err := s.Use(file, "/lib/libssl.so.3", pid, attach); err != nil {
			t.Fatal(err)
		}
	}
	if attaches != 1 || testutil.ToFloat64(probes) != 2 {
		t.Fatalf("attaches %d probes %v, want 1 and 2", attaches, testutil.ToFloat64(probes))
	}
	if a := s.Attachments(); len(a) != 1 || len(a[0].Users) != 2 {
		t.Fatalf("attachments %+v", a)
	}
	s.Exited(10)
	s.Exited(11)
	if closed.Load() != 0 {
		t.Fatal("detached before the linger time")
	}
	// A new user within the linger time keeps the probes.
	if created, _ := s.Use(file, "/lib/libssl.so.3", 12, attach); created || attaches != 1 {
		t.Fatal("attached again within the linger time")
	}
	s.Exited(12)
	time.Sleep(60 * time.Millisecond)
	if closed.Load() != 2 || testutil.ToFloat64(probes) != 0 || len(s.Attachments()) != 0 {
		t.Fatalf("after linger: closed %d probes %v", closed.Load(), testutil.ToFloat64(probes))
	}

	// A per-process attachment goes with its process at once.
	own := Key{File: file.File, PID: 20}
	if _, err := s.Use(own, "/usr/bin/app", 20, attach); err != nil {
		t.Fatal(err)
	}
	s.Exited(20)
	if len(s.Attachments()) != 0 {
		t.Fatal("per-process attachment kept after its process exited")
	}
	s.closing.Wait() // closed in the background: the caller does not wait
	if closed.Load() != 4 {
		t.Fatalf("per-process probes not detached at exit: closed %d", closed.Load())
	}

	// A failed attach records nothing.
	boom := errors.New("boom")
	if _, err := s.Use(file, "/x", 30, func() ([]link.Link, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Fatalf("err %v", err)
	}
	if len(s.Attachments()) != 0 {
		t.Fatal("a failed attach was recorded")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}
