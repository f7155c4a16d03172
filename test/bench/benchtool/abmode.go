package main

import (
	"context"
	"fmt"
	"os"
	"strings"
)

// Pieces shared by the modes that compare two configurations of the agent
// (tcpmode.go, metricsmode.go): the same nginx, the same wrk load, the agent
// started per round with one config file or the other.

// writeAgentConfigs writes one agent config file per configuration.
func writeAgentConfigs(files map[bool]string, body func(on bool) string) error {
	for on, path := range files {
		if err := os.WriteFile(path, []byte(body(on)), 0o644); err != nil {
			return fmt.Errorf("agent config: %w", err)
		}
	}
	return nil
}

// startBenchNginx sets up and starts the benchmark's nginx; the caller stops
// it (stop is safe on a half-started nginx).
func startBenchNginx(ctx context.Context, o options, pidDir string) (*nginx, error) {
	ng := &nginx{}
	if err := ng.setup(o.work, o.workers); err != nil {
		return ng, fmt.Errorf("nginx setup: %w", err)
	}
	if err := ng.start(ctx, pidDir); err != nil {
		return ng, err
	}
	logf("nginx %s: master %d, workers %v, %s, %s", ng.version, ng.masterPID(), ng.workerPIDs(), ng.url(), ng.tlsInfo())
	return ng, nil
}

// warmUp runs wrk once for o.warmup, unmeasured.
func warmUp(ctx context.Context, o options, wc wrkConfig, pidDir string) error {
	if o.warmup <= 0 {
		return nil
	}
	logf("warm-up: wrk %s", strings.Join(wc.args(o.warmup), " "))
	if _, _, err := runWrk(ctx, wc, o.warmup, pidDir); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	return nil
}

// spreadPct is the run-to-run noise of v: half its range, in % of its median
// (0 when the median is 0).
func spreadPct(v []float64) float64 {
	lo, hi := minMax(v)
	if m := median(v); m > 0 {
		return 50 * (hi - lo) / m
	}
	return 0
}
