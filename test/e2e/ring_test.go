package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"math"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/periscope-apm/periscope/internal/ktime"
	"github.com/periscope-apm/periscope/internal/ring"
)

// recordProgram returns a program that writes one 24-byte record into rb,
// stamped as Periscope's programs stamp theirs (bpf_ktime_get_ns first),
// each time it runs, submitted with flags (BPF_RB_NO_WAKEUP: found by the
// reader's timer; BPF_RB_FORCE_WAKEUP: wakes the reader).
func recordProgram(t *testing.T, rb *ebpf.Map, flags int32) *ebpf.Program {
	t.Helper()
	return loadWriter(t, append(asm.Instructions{
		asm.FnKtimeGetNs.Call(),
		asm.StoreMem(asm.RFP, -24, asm.R0, asm.DWord),
		asm.Mov.Imm(asm.R1, 0),
		asm.StoreMem(asm.RFP, -16, asm.R1, asm.DWord),
		asm.StoreMem(asm.RFP, -8, asm.R1, asm.DWord),
	}, outputStack(rb, 24, flags)...))
}

// outputStack ends a program: bpf_ringbuf_output of the size bytes at the
// top of its stack into rb, with flags, then return 0.
func outputStack(rb *ebpf.Map, size int16, flags int32) asm.Instructions {
	return asm.Instructions{
		asm.LoadMapPtr(asm.R1, rb.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -((int32(size) + 7) &^ 7)), // the record starts 8-byte aligned
		asm.Mov.Imm(asm.R3, int32(size)),
		asm.Mov.Imm(asm.R4, flags),
		asm.FnRingbufOutput.Call(),
		asm.Mov.Imm(asm.R0, 0),
		asm.Return(),
	}
}

// loadWriter loads a socket filter program (run by the test with
// prog.Run) that writes into a ring buffer.
func loadWriter(t *testing.T, insns asm.Instructions) *ebpf.Program {
	t.Helper()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SocketFilter, License: "GPL", Instructions: insns})
	if err != nil {
		t.Fatalf("load a ring buffer writer: %v", err)
	}
	t.Cleanup(func() { prog.Close() })
	return prog
}

// bpf_ringbuf_output's flags (include/uapi/linux/bpf.h).
const (
	bpfRBNoWakeup    = 1
	bpfRBForceWakeup = 2
)

// TestRingProgress: a ring's reader reports how far it has handled the
// ring (ktime.Progress, what the correlator holds cross-ring spans on):
// an idle ring advances to the time it was found empty within a few timer
// ticks, a record's time is passed only once the record is handled, and a
// stopped reader holds nobody back.
func TestRingProgress(t *testing.T) {
	rb, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.RingBuf, MaxEntries: 1 << 16})
	if err != nil {
		t.Fatalf("create a ring buffer: %v", err)
	}
	defer rb.Close()
	prog := recordProgram(t, rb, bpfRBNoWakeup)

	const tick = 20 * time.Millisecond
	var p ktime.Progress
	var mu sync.Mutex
	var handled []uint64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- ring.Read(ctx, rb, tick, 0, func(raw []byte) {
			mu.Lock()
			defer mu.Unlock()
			handled = append(handled, binary.NativeEndian.Uint64(raw))
		}, nil, &p)
	}()

	// Idle: the reader finds the ring empty at its next tick.
	waitProgress := func(what string, past uint64) time.Duration {
		t.Helper()
		start := time.Now()
		for p.Load() < past {
			if time.Since(start) > 2*time.Second {
				t.Fatalf("%s: progress %d, still not past %d after 2 s", what, p.Load(), past)
			}
			time.Sleep(time.Millisecond)
		}
		return time.Since(start)
	}
	t.Logf("idle ring passed the time it was looked at after %v", waitProgress("idle ring", ktime.Now()))

	// Records: each is handled before progress passes its time.
	for round := range 3 {
		before := ktime.Now()
		for range 100 {
			if _, err := prog.Run(&ebpf.RunOptions{Data: make([]byte, 14)}); err != nil {
				t.Fatalf("run the ring buffer writer: %v", err)
			}
		}
		after := ktime.Now()
		took := waitProgress("records", after)
		mu.Lock()
		n := len(handled)
		last := handled[n-1]
		mu.Unlock()
		if n != 100*(round+1) || last < before || last > after {
			t.Fatalf("round %d: %d records handled, last at %d; want %d, within [%d, %d]", round, n, last, 100*(round+1), before, after)
		}
		t.Logf("round %d: 100 records handled, progress past them after %v", round, took)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := p.Load(); got != math.MaxUint64 {
		t.Errorf("progress of a stopped reader = %d, want done (%d)", got, uint64(math.MaxUint64))
	}
}

// TestRingWakeup: the reader waits in Go's poller, and a wake-up from the
// kernel (BPF_RB_FORCE_WAKEUP, what Periscope's programs send once
// wakeup_bytes wait) reaches it at once rather than at its next timer tick;
// a stop ends a wait at once too.
func TestRingWakeup(t *testing.T) {
	rb, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.RingBuf, MaxEntries: 1 << 16})
	if err != nil {
		t.Fatalf("create a ring buffer: %v", err)
	}
	defer rb.Close()
	wake := recordProgram(t, rb, bpfRBForceWakeup)
	const tick = time.Hour // only a wake-up can end a wait
	got := make(chan uint64, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- ring.Read(ctx, rb, tick, 1, func(raw []byte) { got <- binary.NativeEndian.Uint64(raw) }, nil, nil)
	}()
	for i := range 5 {
		time.Sleep(20 * time.Millisecond) // the reader is waiting
		if _, err := wake.Run(&ebpf.RunOptions{Data: make([]byte, 14)}); err != nil {
			t.Fatalf("run the ring buffer writer: %v", err)
		}
		select {
		case <-got:
		case <-time.After(5 * time.Second):
			t.Fatalf("record %d not handled 5 s after a wake-up", i)
		}
	}
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the reader did not stop within 5 s of its context's end")
	}
	t.Logf("stopped %v after the cancel", time.Since(start))
}

// wrapProgram writes a 44-byte record (ktime at bytes 0 and 36, zeros
// between) into rb each time it runs, after reserving and discarding one of
// 16 bytes: on a one-page ring, records then wrap at every place, and the
// reader must skip the discarded ones.
func wrapProgram(t *testing.T, rb *ebpf.Map) *ebpf.Program {
	t.Helper()
	insns := asm.Instructions{
		asm.LoadMapPtr(asm.R1, rb.FD()),
		asm.Mov.Imm(asm.R2, 16),
		asm.Mov.Imm(asm.R3, 0),
		asm.FnRingbufReserve.Call(),
		asm.JEq.Imm(asm.R0, 0, "write"),
		asm.Mov.Reg(asm.R1, asm.R0),
		asm.Mov.Imm(asm.R2, bpfRBNoWakeup),
		asm.FnRingbufDiscard.Call(),
		asm.FnKtimeGetNs.Call().WithSymbol("write"),
		asm.Mov.Imm(asm.R1, 0),
	}
	for off := int16(-40); off <= -16; off += 8 {
		insns = append(insns, asm.StoreMem(asm.RFP, off, asm.R1, asm.DWord))
	}
	insns = append(insns,
		asm.StoreMem(asm.RFP, -48, asm.R0, asm.DWord),
		asm.StoreMem(asm.RFP, -12, asm.R0, asm.Word), // bytes 36-43: 4-byte aligned
		asm.Mov.Reg(asm.R1, asm.R0),
		asm.RSh.Imm(asm.R1, 32),
		asm.StoreMem(asm.RFP, -8, asm.R1, asm.Word),
	)
	return loadWriter(t, append(insns, outputStack(rb, 44, bpfRBNoWakeup)...))
}

// TestRingWrap: the reader maps a ring's data pages once, so a record that
// wraps past the end is read in two pieces: every record arrives whole and
// in order, discarded ones are skipped, for 2,000 records through a
// one-page ring; after each batch the reader calls drained, so that the
// last call has seen every record.
func TestRingWrap(t *testing.T) {
	rb, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.RingBuf, MaxEntries: uint32(os.Getpagesize())})
	if err != nil {
		t.Fatalf("create a ring buffer: %v", err)
	}
	defer rb.Close()
	prog := wrapProgram(t, rb)
	var mu sync.Mutex
	var got [][]byte
	batches, atLastBatch := 0, 0
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- ring.Read(ctx, rb, time.Millisecond, 0, func(raw []byte) {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, bytes.Clone(raw))
		}, func() {
			mu.Lock()
			defer mu.Unlock()
			if len(got) > atLastBatch {
				batches, atLastBatch = batches+1, len(got)
			}
		}, nil)
	}()
	const n = 2000
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(got) }
	for i := range n {
		// 16+8 and 48+8 bytes a run: wait for room (a full ring drops).
		for i-count() >= 40 {
			time.Sleep(100 * time.Microsecond)
		}
		if _, err := prog.Run(&ebpf.RunOptions{Data: make([]byte, 14)}); err != nil {
			t.Fatalf("run the ring buffer writer: %v", err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for count() < n && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("%d records handled, want %d", len(got), n)
	}
	if atLastBatch != n || batches == 0 {
		t.Fatalf("the last end of a batch came after %d of %d records (%d batches)", atLastBatch, n, batches)
	}
	var last uint64
	for i, r := range got {
		first, end := binary.NativeEndian.Uint64(r), binary.NativeEndian.Uint64(r[36:])
		if len(r) != 44 || first != end || first < last || !bytes.Equal(r[8:36], make([]byte, 28)) {
			t.Fatalf("record %d = %x: want 44 bytes, the same stamp at 0 and 36 (not before %d), zeros between", i, r, last)
		}
		last = first
	}
}
