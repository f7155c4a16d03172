// Package loader is the sequence every collector goes through: load its
// eBPF objects with the event ring sized and the wake-up threshold set,
// attach its programs, read the ring in a goroutine, wait for the reader to
// drain at shutdown, then detach and free everything in reverse order.
package loader

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/periscope-apm/periscope/internal/ktime"
	"github.com/periscope-apm/periscope/internal/ring"
)

// Ring is a collector's event ring and its reader: every collector's
// Config embeds one. Zero fields take the collector's defaults
// (WithDefaults).
type Ring struct {
	// RingBytes is the size of the event ring buffer (a power of two of
	// pages).
	RingBytes int
	// WakeupBytes wakes the reader only when this much data waits; below
	// it, records are collected every PollInterval. 0 wakes the reader for
	// each record while it is idle.
	WakeupBytes uint64
	// PollInterval is the reader's timer (default DefaultPollInterval).
	PollInterval time.Duration
	// Progress, if set, learns how far the ring has been read
	// (ktime.Progress): the correlator pairs events of one moment that
	// travel in different collectors' rings by it.
	Progress *ktime.Progress
	// Drained, if set, is called after each batch of records the reader
	// handled (ring.Read).
	Drained func()
}

// DefaultPollInterval is the reader's timer unless a Ring sets one.
const DefaultPollInterval = 20 * time.Millisecond

// WithDefaults returns r with the ring's size and wake-up threshold, when
// unset, from a collector's defaults, and the default timer.
func (r Ring) WithDefaults(ringBytes int, wakeupBytes uint64) Ring {
	if r.RingBytes <= 0 {
		r.RingBytes = ringBytes
	}
	if r.WakeupBytes == 0 {
		r.WakeupBytes = wakeupBytes
	}
	if r.PollInterval <= 0 {
		r.PollInterval = DefaultPollInterval
	}
	return r
}

// Load sizes the ring of spec (its map "events" and the variable
// "wakeup_bytes" of bpf/common.bpf.h, when present) and loads spec into
// objs. A verifier rejection keeps its error chain; its log, which the
// error's message abbreviates, is written to log.
func Load(name string, spec *ebpf.CollectionSpec, r Ring, objs any, opts *ebpf.CollectionOptions, log *slog.Logger) error {
	if m := spec.Maps["events"]; m != nil && r.RingBytes > 0 {
		m.MaxEntries = uint32(r.RingBytes)
	}
	if v := spec.Variables["wakeup_bytes"]; v != nil {
		if err := v.Set(r.WakeupBytes); err != nil {
			return fmt.Errorf("set %s wakeup_bytes: %w", name, err)
		}
	}
	if err := spec.LoadAndAssign(objs, opts); err != nil {
		return Verbose(fmt.Errorf("load %s programs: %w", name, err), log)
	}
	return nil
}

// Verbose returns err unchanged, having written the verifier's log to log
// when err holds one.
func Verbose(err error, log *slog.Logger) error {
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		log.Error("verifier rejected a program", "err", err, "verifier_log", fmt.Sprintf("%+v", ve))
	}
	return err
}

// Programs is what a started collector holds: its loaded objects, its
// links and its ring reader. The zero value is ready to use.
type Programs struct {
	objs  []io.Closer
	links []link.Link
	done  chan struct{}
}

// Own makes Close free objs (after the links; the last owned first).
func (p *Programs) Own(objs io.Closer) { p.objs = append(p.objs, objs) }

// Add keeps links to close.
func (p *Programs) Add(links ...link.Link) { p.links = append(p.links, links...) }

// Links is the number of links attached.
func (p *Programs) Links() int { return len(p.links) }

// RawTracepoint attaches prog, a raw tracepoint program, to the raw
// tracepoint name.
func (p *Programs) RawTracepoint(name string, prog *ebpf.Program) error {
	return p.RawTracepointAs(name, prog, false)
}

// RawTracepointAs attaches prog to the raw tracepoint name as the program
// type it was loaded as: tp_btf (typed, its arguments typed pointers; the
// program names its tracepoint) or raw tracepoint.
func (p *Programs) RawTracepointAs(name string, prog *ebpf.Program, typed bool) error {
	var l link.Link
	var err error
	if typed {
		l, err = link.AttachTracing(link.TracingOptions{Program: prog})
	} else {
		l, err = link.AttachRawTracepoint(link.RawTracepointOptions{Name: name, Program: prog})
	}
	if err != nil {
		return fmt.Errorf("attach %s %s: %w", rawKind(typed), name, err)
	}
	p.Add(l)
	return nil
}

func rawKind(typed bool) string {
	if typed {
		return "tp_btf"
	}
	return "raw_tracepoint"
}

// Read reads the ring events in a goroutine until ctx is done, handing
// each record to handle, collecting records every r.PollInterval and
// telling r.Progress how far it has handled the ring (ring.Read).
func (p *Programs) Read(ctx context.Context, events *ebpf.Map, r Ring, handle func([]byte), log *slog.Logger) {
	p.done = make(chan struct{})
	go func() {
		defer close(p.done)
		if err := ring.Read(ctx, events, r.PollInterval, r.WakeupBytes, handle, r.Drained, r.Progress); err != nil {
			log.Error("event reader stopped", "err", err)
		}
	}()
}

// Wait returns once the reader has stopped (after the context given to
// Read is done) and has handled what the kernel had queued.
func (p *Programs) Wait() {
	if p.done != nil {
		<-p.done
	}
}

// Close detaches the links, last attached first, then frees the objects.
func (p *Programs) Close() error {
	var errs []error
	for i := len(p.links) - 1; i >= 0; i-- {
		errs = append(errs, p.links[i].Close())
	}
	p.links = nil
	for i := len(p.objs) - 1; i >= 0; i-- {
		errs = append(errs, p.objs[i].Close())
	}
	p.objs = nil
	return errors.Join(errs...)
}

// ProcessMarkers attaches a collector's process markers (bpf/common.bpf.h:
// mark_exit and mark_exec) to the sched_process_exit and sched_process_exec
// raw tracepoints. The markers travel in the collector's own ring, so that
// they are read in order with its data.
func (p *Programs) ProcessMarkers(exit, exec *ebpf.Program) error {
	if err := p.RawTracepoint("sched_process_exit", exit); err != nil {
		return err
	}
	return p.RawTracepoint("sched_process_exec", exec)
}

// NetHTTPConns names the map of bpf/nethttp.bpf.h: the sockets of Go
// net/http connections, written by the gohttp collector and read by the
// gotls and sockets collectors, which leave those connections to it.
const NetHTTPConns = "nethttp_conns"

// Sharing returns the load options that give a collection the instance m
// of its map name (nil m: the collection makes its own).
func Sharing(name string, m *ebpf.Map) *ebpf.CollectionOptions {
	if m == nil {
		return nil
	}
	return &ebpf.CollectionOptions{MapReplacements: map[string]*ebpf.Map{name: m}}
}
