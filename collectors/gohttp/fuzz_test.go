package gohttp

import (
	"log/slog"
	"testing"

	"github.com/periscope-apm/periscope/internal/wire"

	"github.com/prometheus/client_golang/prometheus"
)

// FuzzDecode: a record from the Go ring, whatever its bytes, becomes a
// request start or end whose strings fit their fields, or is counted as
// malformed.
func FuzzDecode(f *testing.F) {
	var s gohttpRequestStartEvent
	s.Hdr.Type, s.Hdr.Pid = wire.EventRequestStart, 9
	f.Add(raw(f, &s))
	var e gohttpRequestEndEvent
	e.Hdr.Type, e.Hdr.Pid, e.Status = wire.EventRequestEnd, 9, 200
	e.MethodLen, e.PathLen = 3, 8
	for i, c := range "GET" {
		e.Method[i] = int8(c)
	}
	for i, c := range "/users/1" {
		e.Path[i] = int8(c)
	}
	f.Add(raw(f, &e))
	var p gohttpProcEvent
	for _, typ := range []uint32{wire.EventExec, wire.EventExit, 99} {
		p.Hdr.Type = typ
		f.Add(raw(f, &p))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		sink := &record{}
		c := New(Config{}, sink, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
		c.decode(b)
		for _, end := range sink.ends {
			if len(end.Method) > methodCap || len(end.Path) > pathCap || len(end.Host) > hostCap || len(end.RawQuery) > queryCap {
				t.Fatalf("strings longer than their fields: %+v", end)
			}
		}
	})
}
