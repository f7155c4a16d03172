// Command readorder is an experiment for issue 15 (one uprobe hit per Go
// HTTP/1 server request instead of two). It attaches readorder.bpf.c to
// one Go server process: uprobes at net/http's serverHandler.ServeHTTP and
// (*response).finishRequest (the two hits of today's path), the read
// syscall, and the tcp_rcv_space_adjust tracepoint, each event with the
// goroutine running it (R14 in a uprobe, the word below the thread's TLS
// base in a tracepoint). Then, per connection, it tells which goroutine
// read the first bytes of each request after the previous one finished,
// whether it is the goroutine that served the request, and how far that
// read was from the request's ServeHTTP.
//
//	readorder -obj readorder.o -bin SERVER -pid PID -for 10s
//
// With -mode two|one|rcv|none it only attaches, for the length of a load run
// that readorder.sh drives, the kernel side of a request reduced to what
// costs: two uprobe hits (today's path), or one uprobe hit and the proposed
// read-side program (rcv_store), or that program alone (for
// test/bench/pingpong.c's server, -bin unused), or nothing; then it prints the programs'
// run counts and time.
package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/periscope-apm/periscope/symbols"
)

const (
	evServe  = 1
	evFinish = 2
	evRead   = 3
	evRcv    = 4
)

type event struct {
	TS   uint64
	G    uint64
	X    uint64
	Ret  int64
	TID  uint32
	Kind uint32
}

func main() {
	obj := flag.String("obj", "readorder.o", "compiled readorder.bpf.c")
	bin := flag.String("bin", "", "the Go server's executable")
	pid := flag.Int("pid", 0, "the Go server's process")
	dur := flag.Duration("for", 10*time.Second, "how long to record")
	mode := flag.String("mode", "trace", "trace, or a cost variant: two, one, rcv, none")
	withStats := flag.Bool("stats", true, "with a cost variant: turn the kernel's BPF statistics on (they cost each run two clock reads)")
	flag.Parse()
	if *mode != "trace" {
		if err := attachOnly(*obj, *bin, *pid, *dur, *mode, *withStats); err != nil {
			log.Fatal(err)
		}
		return
	}
	evs, stats, err := record(*obj, *bin, *pid, *dur)
	if err != nil {
		log.Fatal(err)
	}
	report(os.Stdout, evs, stats)
}

func offsets(bin string) (serve, finish uint64, err error) {
	b, err := symbols.GoInfo(bin)
	if err != nil {
		return 0, 0, err
	}
	defer b.Close()
	const fs, ff = "net/http.serverHandler.ServeHTTP", "net/http.(*response).finishRequest"
	if err := b.FindFuncs(fs, ff); err != nil {
		return 0, 0, err
	}
	at := func(name string) (uint64, error) {
		f, err := b.Func(name)
		if err != nil {
			return 0, err
		}
		return b.EntryProbe(f)
	}
	if serve, err = at(fs); err != nil {
		return 0, 0, err
	}
	finish, err = at(ff)
	return serve, finish, err
}

type progStats struct{ rcvRuns, rcvNs, readRuns, readNs uint64 }

func record(obj, bin string, pid int, dur time.Duration) ([]event, progStats, error) {
	var st progStats
	serveOff, finishOff, err := offsets(bin)
	if err != nil {
		return nil, st, fmt.Errorf("offsets: %w", err)
	}
	spec, err := ebpf.LoadCollectionSpec(obj)
	if err != nil {
		return nil, st, fmt.Errorf("spec: %w", err)
	}
	if err := spec.Variables["target"].Set(uint32(pid)); err != nil {
		return nil, st, fmt.Errorf("target: %w", err)
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		return nil, st, fmt.Errorf("load: %w", err)
	}
	defer coll.Close()
	ex, err := link.OpenExecutable(bin)
	if err != nil {
		return nil, st, err
	}
	var links []link.Link
	defer func() {
		for _, l := range links {
			l.Close()
		}
	}()
	for _, u := range []struct {
		prog string
		off  uint64
	}{{"serve", serveOff}, {"finish", finishOff}} {
		l, err := ex.Uprobe("", coll.Programs[u.prog], &link.UprobeOptions{Address: u.off, PID: pid})
		if err != nil {
			return nil, st, fmt.Errorf("uprobe %s: %w", u.prog, err)
		}
		links = append(links, l)
	}
	for _, t := range []struct{ name, prog string }{
		{"sys_enter", "read_enter"}, {"sys_exit", "read_exit"}, {"tcp_rcv_space_adjust", "rcv"},
	} {
		l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: t.name, Program: coll.Programs[t.prog]})
		if err != nil {
			return nil, st, fmt.Errorf("tracepoint %s: %w", t.name, err)
		}
		links = append(links, l)
	}
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		return nil, st, fmt.Errorf("bpf stats: %w", err)
	}
	defer stats.Close()
	rd, err := ringbuf.NewReader(coll.Maps["events"])
	if err != nil {
		return nil, st, err
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()
	ctx, cancel2 := context.WithTimeout(ctx, dur)
	defer cancel2()
	go func() { <-ctx.Done(); rd.Close() }()
	var evs []event
	for {
		r, err := rd.Read()
		if errors.Is(err, ringbuf.ErrClosed) {
			break
		}
		if err != nil {
			return nil, st, err
		}
		var e event
		if err := binary.Read(bytes.NewReader(r.RawSample), binary.LittleEndian, &e); err != nil {
			return nil, st, err
		}
		evs = append(evs, e)
	}
	for name, dst := range map[string][2]*uint64{"rcv": {&st.rcvRuns, &st.rcvNs}, "read_exit": {&st.readRuns, &st.readNs}} {
		ps, err := coll.Programs[name].Stats()
		if err != nil {
			return nil, st, fmt.Errorf("stats %s: %w", name, err)
		}
		*dst[0], *dst[1] = ps.RunCount, uint64(ps.Runtime)
	}
	return evs, st, nil
}

// attachOnly attaches the programs of cost variant mode for dur, then
// prints their run counts and time inside BPF.
func attachOnly(obj, bin string, pid int, dur time.Duration, mode string, withStats bool) error {
	var serveOff, finishOff uint64
	if mode == "two" || mode == "one" {
		var err error
		if serveOff, finishOff, err = offsets(bin); err != nil {
			return fmt.Errorf("offsets: %w", err)
		}
	}
	spec, err := ebpf.LoadCollectionSpec(obj)
	if err != nil {
		return fmt.Errorf("spec: %w", err)
	}
	if err := spec.Variables["target"].Set(uint32(pid)); err != nil {
		return fmt.Errorf("target: %w", err)
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	defer coll.Close()
	if withStats {
		stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
		if err != nil {
			return fmt.Errorf("bpf stats: %w", err)
		}
		defer stats.Close()
	}
	var progs []string
	var links []link.Link
	defer func() {
		for _, l := range links {
			l.Close()
		}
	}()
	uprobe := func(prog string, off uint64) error {
		ex, err := link.OpenExecutable(bin)
		if err != nil {
			return err
		}
		l, err := ex.Uprobe("", coll.Programs[prog], &link.UprobeOptions{Address: off, PID: pid})
		if err != nil {
			return fmt.Errorf("uprobe %s: %w", prog, err)
		}
		links = append(links, l)
		progs = append(progs, prog)
		return nil
	}
	switch mode {
	case "two":
		if err := uprobe("serve_hit", serveOff); err != nil {
			return err
		}
		if err := uprobe("finish_hit", finishOff); err != nil {
			return err
		}
	case "one":
		if err := uprobe("finish_hit", finishOff); err != nil {
			return err
		}
		l, err := link.AttachTracing(link.TracingOptions{Program: coll.Programs["rcv_store"]})
		if err != nil {
			return fmt.Errorf("tp_btf: %w", err)
		}
		links = append(links, l)
		progs = append(progs, "rcv_store")
	case "rcv":
		l, err := link.AttachTracing(link.TracingOptions{Program: coll.Programs["rcv_store"]})
		if err != nil {
			return fmt.Errorf("tp_btf: %w", err)
		}
		links = append(links, l)
		progs = append(progs, "rcv_store")
	case "none":
	default:
		return fmt.Errorf("unknown mode %q", mode)
	}
	fmt.Println("attached", mode)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	select {
	case <-ctx.Done():
	case <-time.After(dur):
	}
	for _, p := range progs {
		ps, err := coll.Programs[p].Stats()
		if err != nil {
			return fmt.Errorf("stats %s: %w", p, err)
		}
		per := 0.0
		if ps.RunCount > 0 {
			per = float64(ps.Runtime.Nanoseconds()) / float64(ps.RunCount)
		}
		fmt.Printf("prog %s runs %d ns/run %.0f\n", p, ps.RunCount, per)
	}
	return nil
}
