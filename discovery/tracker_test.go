package discovery

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/periscope-apm/periscope/internal/wire"
)

// recorder is an Observer that logs what it is told.
type recorder struct{ calls []string }

func (r *recorder) ProcessUpdated(p Process, added []Mapping) {
	var names []string
	for _, m := range added {
		names = append(names, filepath.Base(m.Path))
	}
	r.calls = append(r.calls, fmt.Sprintf("updated %d %s [%s]", p.PID, filepath.Base(p.Exe), strings.Join(names, " ")))
}

func (r *recorder) ProcessExited(pid uint32, _ time.Time) {
	r.calls = append(r.calls, fmt.Sprintf("exited %d", pid))
}

// fakeProc writes /proc/PID/{exe,maps,stat} under root: exe names the
// program, maps its text and that of libs, each "path inode".
func fakeProc(t *testing.T, root string, pid int, exe string, maps ...string) {
	t.Helper()
	dir := filepath.Join(root, fmt.Sprint(pid))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	_ = os.Remove(filepath.Join(dir, "exe"))
	if err := os.Symlink(exe, filepath.Join(dir, "exe")); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for i, m := range maps {
		path, ino, _ := strings.Cut(m, " ")
		fmt.Fprintf(&b, "7f00%04x0000-7f00%04x1000 r-xp 00000000 fd:01 %s %s\n", i, i, ino, path)
	}
	if err := os.WriteFile(filepath.Join(dir, "maps"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(fmt.Sprintf("%d (x) S 1 0 0", pid)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestReexec: an exec reports an exit and a new process, unless the table
// already holds the new program (the fork was read after the exec), when
// it reports only the new mappings: collectors keep the probes they have.
func TestReexec(t *testing.T) {
	for _, tc := range []struct {
		name      string
		before    []string // exe, then maps, as read at the fork
		after     []string // as read at the exec event
		wantCalls []string
	}{
		{
			name:   "fork read before exec",
			before: []string{"/usr/bin/parent", "/usr/bin/parent 10"},
			after:  []string{"/usr/bin/curl", "/usr/bin/curl 20", "/usr/lib/libssl.so.3 30"},
			wantCalls: []string{
				"updated 42 parent [parent]",
				"exited 42",
				"updated 42 curl [curl libssl.so.3]",
			},
		},
		{
			name:   "fork read after exec",
			before: []string{"/usr/bin/curl", "/usr/bin/curl 20"},
			after:  []string{"/usr/bin/curl", "/usr/bin/curl 20", "/usr/lib/libssl.so.3 30"},
			wantCalls: []string{
				"updated 42 curl [curl]",
				"updated 42 curl [libssl.so.3]",
			},
		},
		{
			name:   "same path, new file (upgraded binary)",
			before: []string{"/usr/bin/app", "/usr/bin/app 20"},
			after:  []string{"/usr/bin/app", "/usr/bin/app 21"},
			wantCalls: []string{
				"updated 42 app [app]",
				"exited 42",
				"updated 42 app [app]",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			tr := New(Config{ProcRoot: root}, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
			rec := &recorder{}
			tr.Subscribe(rec)
			fakeProc(t, root, 42, tc.before[0], tc.before[1:]...)
			tr.update(42)
			fakeProc(t, root, 42, tc.after[0], tc.after[1:]...)
			tr.reexec(42)
			if got := strings.Join(rec.calls, "\n"); got != strings.Join(tc.wantCalls, "\n") {
				t.Errorf("calls:\n%s\nwant:\n%s", got, strings.Join(tc.wantCalls, "\n"))
			}
		})
	}
}

// TestSweepKeepsProcessesBornDuringScan: a rescan lists /proc, then reads
// every process; a process started in between is not listed but its
// events add it to the table meanwhile. Only processes that are really
// gone are reported as exited (a live one would lose its probes).
func TestSweepKeepsProcessesBornDuringScan(t *testing.T) {
	root := t.TempDir()
	tr := New(Config{ProcRoot: root}, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	rec := &recorder{}
	tr.Subscribe(rec)
	fakeProc(t, root, 1, "/sbin/init", "/sbin/init 1")
	fakeProc(t, root, 7, "/usr/bin/born", "/usr/bin/born 7")
	fakeProc(t, root, 8, "/usr/bin/dead", "/usr/bin/dead 8")
	for _, pid := range []uint32{1, 7, 8} {
		tr.update(pid)
	}
	if err := os.RemoveAll(filepath.Join(root, "8")); err != nil {
		t.Fatal(err)
	}
	rec.calls = nil
	tr.sweep(map[uint32]bool{1: true}) // listed before 7 was born
	if got := strings.Join(rec.calls, "\n"); got != "exited 8" {
		t.Errorf("calls:\n%s\nwant only: exited 8", got)
	}
	var pids []uint32
	for _, p := range tr.Processes() {
		pids = append(pids, p.PID)
	}
	if fmt.Sprint(pids) != "[1 7]" {
		t.Errorf("table %v, want [1 7]", pids)
	}
}

// probeState is an Observer that keeps what a per-process collector would
// have attached: probes on a process from the update that shows it running
// the traced program until its exit. Attaching takes a while.
type probeState struct {
	mu       sync.Mutex
	attached map[uint32]bool
}

func (s *probeState) ProcessUpdated(p Process, added []Mapping) {
	for _, m := range added {
		if m.Path == p.Exe && filepath.Base(p.Exe) == "traced" {
			time.Sleep(100 * time.Microsecond) // the attach
			s.mu.Lock()
			s.attached[p.PID] = true
			s.mu.Unlock()
		}
	}
}

func (s *probeState) ProcessExited(pid uint32, _ time.Time) {
	time.Sleep(100 * time.Microsecond) // the detach
	s.mu.Lock()
	s.attached[pid] = false
	s.mu.Unlock()
}

// TestExecRacingRescan: the exec event of a process whose fork was read
// before its exec (the table holds its parent's program) is handled while
// a rescan reads the process. Whatever the interleaving, the process ends
// up once in the table as its new program, with its probes: the exec's
// "exit" of the old program must not detach the probes the rescan has just
// attached for the new one (a Go client lost its spans so).
func TestExecRacingRescan(t *testing.T) {
	for i := 0; i < 300; i++ {
		root := t.TempDir()
		tr := New(Config{ProcRoot: root}, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
		st := &probeState{attached: make(map[uint32]bool)}
		tr.Subscribe(st)
		fakeProc(t, root, 42, "/usr/bin/parent", "/usr/bin/parent 10")
		tr.update(42) // the fork, read before the exec
		fakeProc(t, root, 42, "/usr/bin/traced", "/usr/bin/traced 20")
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); tr.reexec(42) }() // the exec event
		go func() { defer wg.Done(); tr.update(42) }() // the rescan
		wg.Wait()
		procs := tr.Processes()
		if len(procs) != 1 || filepath.Base(procs[0].Exe) != "traced" {
			t.Fatalf("iteration %d: table %+v, want the traced program", i, procs)
		}
		if !st.attached[42] {
			t.Fatalf("iteration %d: the running traced process has no probes (the exec's exit of its parent's program came after the rescan attached them)", i)
		}
	}
}

// listing is an Observer that records whether the process it is told
// about is already listed by the tracker (Processes) while it attaches.
type listing struct {
	tr     *Tracker
	listed []bool
}

func (l *listing) ProcessUpdated(p Process, _ []Mapping) {
	seen := false
	for _, q := range l.tr.Processes() {
		seen = seen || q.PID == p.PID
	}
	l.listed = append(l.listed, seen)
}

func (l *listing) ProcessExited(uint32, time.Time) {}

// TestListedAfterObservers: a new process is listed (the agent's /status)
// only once every observer has handled it, so that whoever waits for it to
// be listed finds all its probes attached, not only the first collector's.
func TestListedAfterObservers(t *testing.T) {
	root := t.TempDir()
	tr := New(Config{ProcRoot: root}, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	first, second := &listing{tr: tr}, &listing{tr: tr}
	tr.Subscribe(first)
	tr.Subscribe(second)
	fakeProc(t, root, 42, "/usr/bin/app", "/usr/bin/app 20")
	tr.update(42)
	if fmt.Sprint(first.listed, second.listed) != "[false] [false]" {
		t.Errorf("listed while observers attach: first %v, second %v", first.listed, second.listed)
	}
	if ps := tr.Processes(); len(ps) != 1 || ps[0].PID != 42 {
		t.Errorf("after the observers: %+v, want pid 42", ps)
	}
}

// TestStaleBatch: the forks and executable mappings of one batch of ring
// records cost one read of /proc per process, after the batch, which sees
// every mapping the batch announced; an exec or exit later in the batch
// makes the read moot (/proc shows the new program, or nothing).
func TestStaleBatch(t *testing.T) {
	root := t.TempDir()
	tr := New(Config{ProcRoot: root}, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	rec := &recorder{}
	tr.Subscribe(rec)
	event := func(typ, pid uint32) {
		var p processProcEvent
		p.Hdr.Type, p.Hdr.Pid = typ, pid
		tr.handle(rawRecord(t, &p))
	}
	fakeProc(t, root, 42, "/usr/bin/app", "/usr/bin/app 20")
	fakeProc(t, root, 43, "/usr/bin/other", "/usr/bin/other 30")
	event(wire.EventFork, 42)
	event(wire.EventMmap, 43)
	fakeProc(t, root, 42, "/usr/bin/app", "/usr/bin/app 20", "/lib/libc.so 21")
	event(wire.EventMmap, 42)
	fakeProc(t, root, 42, "/usr/bin/app", "/usr/bin/app 20", "/lib/libc.so 21", "/lib/libssl.so 22")
	event(wire.EventMmap, 42)
	if len(rec.calls) != 0 {
		t.Fatalf("read before the batch ended: %q", rec.calls)
	}
	tr.updateStale()
	fakeProc(t, root, 42, "/usr/bin/app", "/usr/bin/app 20", "/lib/libc.so 21", "/lib/libssl.so 22", "/lib/libz.so 23")
	event(wire.EventMmap, 42)
	event(wire.EventFork, 43)
	event(wire.EventExit, 42)
	tr.updateStale()
	want := []string{
		"updated 42 app [app libc.so libssl.so]",
		"updated 43 other [other]",
		"exited 42",
	}
	if fmt.Sprint(rec.calls) != fmt.Sprint(want) {
		t.Errorf("observers told %q, want %q", rec.calls, want)
	}
}
