package main

import (
	"context"
	"fmt"
	"time"
)

// dbAgent is the agent of one round of a database mode (redis, postgres):
// started before the load, it measures the agent's CPU, the SERVER spans
// and the ring drops of the round.
type dbAgent struct {
	a      *agent
	m0     promText
	ticks0 uint64
}

// dbMeasure is what a database round measured of the agent.
type dbMeasure struct {
	spans, drops uint64
	agentCPU     float64 // % of a core
	cpuPerOp     float64 // agent CPU µs per span
}

// startDBAgent starts the agent tracing exe and waits until it has probed
// workers (none: until it is ready).
func startDBAgent(ctx context.Context, o options, exe, pidDir string, n int, workers []int) (*dbAgent, error) {
	a, err := startAgent(o.agentBin, exe, o.work, pidDir, n)
	if err != nil {
		return nil, err
	}
	d := &dbAgent{a: a}
	if err = a.waitReady(ctx, workers, 60*time.Second); err == nil {
		if d.m0, err = a.metrics(); err == nil {
			d.ticks0, err = cpuTicks(a.pid())
		}
	}
	if err != nil {
		_ = a.stop()
		return nil, err
	}
	return d, nil
}

// measure waits until want SERVER spans (or no more) came since the start
// and returns what the round cost over elapsed seconds.
func (d *dbAgent) measure(ctx context.Context, elapsed float64, want uint64) (dbMeasure, error) {
	var m dbMeasure
	ticks1, err := cpuTicks(d.a.pid())
	if err != nil {
		return m, fmt.Errorf("agent CPU (did the agent die?): %w\n%s", err, d.a.logTail())
	}
	cpuSec := float64(ticks1-d.ticks0) / clockTicks
	m.agentCPU = 100 * cpuSec / elapsed
	spans0, _ := d.m0.sum("periscope_spans_total", map[string]string{"kind": "server"})
	m1, err := settleSpans(ctx, d.a, spans0, want)
	if err != nil {
		return m, err
	}
	spans1, _ := m1.sum("periscope_spans_total", map[string]string{"kind": "server"})
	d0, _ := d.m0.sum("periscope_events_dropped_total", nil)
	d1, _ := m1.sum("periscope_events_dropped_total", nil)
	m.spans, m.drops = uint64(spans1-spans0), uint64(d1-d0)
	if m.spans > 0 {
		m.cpuPerOp = 1e6 * cpuSec / float64(m.spans)
	}
	return m, nil
}

// stop stops the agent; nil-safe.
func (d *dbAgent) stop() error {
	if d == nil {
		return nil
	}
	return d.a.stop()
}
