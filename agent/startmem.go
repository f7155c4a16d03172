package agent

import "runtime/debug"

// startGCPercent is the garbage collector's target while the agent starts:
// loading the BPF objects (the kernel's BTF, relocations, verifier logs)
// makes tens of MiB of garbage in a few seconds, and at the default target
// (GOGC=100) the heap grew to twice what was live before a collection, a
// peak that stayed the agent's highest resident memory (VmHWM) under load
// (test/bench/results-e2e-cpu.md).
const startGCPercent = 25

// lowGCDuringStart lowers the collector's target for the start (unless
// GOGC asks for less, or for none) and returns what restores it, handing
// the start's freed pages back to the system.
func lowGCDuringStart() (restore func()) {
	prev := debug.SetGCPercent(startGCPercent)
	if prev < startGCPercent { // GOGC=off is -1
		debug.SetGCPercent(prev)
		return func() {}
	}
	return func() {
		debug.SetGCPercent(prev)
		debug.FreeOSMemory()
	}
}
