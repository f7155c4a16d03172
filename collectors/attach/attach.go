// Package attach keeps the probes a collector has attached to files: once
// per file for every process, or once per file and selected process, with
// the processes known to use each, detaching a file's probes a while after
// its last user exits (so that short-lived processes started in a loop are
// not missed while probes are attached again).
package attach

import (
	"errors"
	"os"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/cilium/ebpf/link"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/periscope-apm/periscope/collectors"
	"github.com/periscope-apm/periscope/discovery"
	"github.com/periscope-apm/periscope/symbols"
)

// Key names one attachment: a file, for every process (PID 0) or for one.
type Key struct {
	File symbols.FileID
	PID  uint32
}

type entry struct {
	path   string
	links  []link.Link
	users  map[uint32]bool
	linger *time.Timer
}

// Set is the attachments of one collector. Its methods are safe for
// concurrent use.
type Set struct {
	linger time.Duration
	probes prometheus.Gauge

	closing sync.WaitGroup // links of exited processes being closed

	mu       sync.Mutex
	attached map[Key]*entry
	byPID    map[uint32][]Key
}

// NewSet returns an empty set. probes counts the attached links.
func NewSet(linger time.Duration, probes prometheus.Gauge) *Set {
	return &Set{linger: linger, probes: probes, attached: make(map[Key]*entry), byPID: make(map[uint32][]Key)}
}

// Use records that process pid uses the file of key, reached at path. When
// the key has no probes yet, attach is called (under the set's lock) to
// create them; its error is returned and nothing is recorded. It reports
// whether it attached.
func (s *Set) Use(key Key, path string, pid uint32, attach func() ([]link.Link, error)) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.attached[key]
	created := false
	if e == nil {
		links, err := attach()
		if err != nil {
			return false, err
		}
		e = &entry{path: path, links: links, users: make(map[uint32]bool)}
		s.attached[key] = e
		s.probes.Add(float64(len(links)))
		created = true
	}
	if e.linger != nil {
		e.linger.Stop()
		e.linger = nil
	}
	if !e.users[pid] {
		e.users[pid] = true
		s.byPID[pid] = append(s.byPID[pid], key)
	}
	return created, nil
}

// Has tells whether the file of key has probes.
func (s *Set) Has(key Key) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.attached[key] != nil
}

// Exited forgets process pid: a per-process attachment is detached at
// once, a per-file one after the linger time once it has no users left.
func (s *Set) Exited(pid uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, key := range s.byPID[pid] {
		e := s.attached[key]
		if e == nil {
			continue
		}
		delete(e.users, pid)
		if len(e.users) > 0 {
			continue
		}
		if key.PID != 0 {
			// The process is gone: its probes can never fire. Closing
			// them waits for RCU grace periods (tens to hundreds of ms
			// on a busy machine), which must not hold up the caller:
			// the discovery of the next process, whose probes wait.
			links := s.forgetLocked(key, e)
			s.closing.Add(1)
			go func() {
				defer s.closing.Done()
				closeAll(links)
			}()
			continue
		}
		k := key
		e.linger = time.AfterFunc(s.linger, func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if cur := s.attached[k]; cur == e && len(e.users) == 0 {
				s.detachLocked(k, e)
			}
		})
	}
	delete(s.byPID, pid)
}

// Close detaches everything, and waits for the detaches of exited
// processes still in progress.
func (s *Set) Close() error {
	s.mu.Lock()
	var links []link.Link
	for key, e := range s.attached {
		links = append(links, s.forgetLocked(key, e)...)
	}
	s.mu.Unlock()
	err := closeAll(links)
	s.closing.Wait()
	return err
}

func (s *Set) detachLocked(key Key, e *entry) error {
	return closeAll(s.forgetLocked(key, e))
}

// forgetLocked removes an entry and returns its links to close.
func (s *Set) forgetLocked(key Key, e *entry) []link.Link {
	if e.linger != nil {
		e.linger.Stop()
	}
	s.probes.Sub(float64(len(e.links)))
	delete(s.attached, key)
	return e.links
}

// closeParallel bounds the links closed at once.
const closeParallel = 64

// closeAll closes links concurrently: closing a uprobe waits for an RCU
// grace period in the kernel (tens of milliseconds on a busy VM), so
// hundreds of probes closed one after the other delay the agent's exit by
// seconds, while closed together their waits overlap.
func closeAll(links []link.Link) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		sem  = make(chan struct{}, closeParallel)
	)
	for _, l := range links {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := l.Close(); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Attachments lists what is attached, by file and PID.
func (s *Set) Attachments() []collectors.Attachment {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]collectors.Attachment, 0, len(s.attached))
	for key, e := range s.attached {
		users := make([]uint32, 0, len(e.users))
		for pid := range e.users {
			users = append(users, pid)
		}
		sort.Slice(users, func(i, j int) bool { return users[i] < users[j] })
		out = append(out, collectors.Attachment{File: e.path, PID: key.PID, Probes: len(e.links), Users: users})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].File != out[j].File {
			return out[i].File < out[j].File
		}
		return out[i].PID < out[j].PID
	})
	return out
}

// Gone reports whether err, from attaching key for process p, says that
// the process has exited already: there is nothing to probe through it
// (the next process that maps the file attaches it). A file that vanished
// is the process's going when the attachment was its own or when the
// process no longer runs.
func Gone(err error, key Key, p discovery.Process) bool {
	return errors.Is(err, syscall.ESRCH) || errors.Is(err, os.ErrNotExist) && (key.PID != 0 || !p.Alive())
}
