package main

import (
	"fmt"
	"io"
	"sort"
	"time"
)

// firstRead is the first read that returned bytes on a connection since
// its previous request finished (or since it was first seen).
type firstRead struct {
	g  uint64
	ts uint64
}

type connState struct {
	first    *firstRead
	finished bool // a request finished on it: the next one is not its first
}

// tally counts, for the requests that began (ServeHTTP) on connections whose
// serving goroutine is known, who read their first bytes after the
// previous request finished.
type tally struct {
	counts
	delays []time.Duration // ServeHTTP - that read, sameG or otherG, not first of conn
}

type counts struct {
	requests, unknownConn        int
	sameG, otherG, noRead        int
	firstOfConn                  int
	reads, readsWithRcv, rcvSeen int
	rcvSameG                     int
}

func analyse(evs []event) tally {
	sort.Slice(evs, func(i, j int) bool { return evs[i].TS < evs[j].TS })
	var t tally
	servingFD := map[uint64]uint64{} // goroutine -> fd it last read
	conns := map[uint64]*connState{}
	lastRcv := map[uint32]event{} // per thread, the last rcv not yet paired with a read
	state := func(fd uint64) *connState {
		c := conns[fd]
		if c == nil {
			c = &connState{}
			conns[fd] = c
		}
		return c
	}
	for _, e := range evs {
		switch e.Kind {
		case evRcv:
			t.rcvSeen++
			lastRcv[e.TID] = e
		case evRead:
			t.reads++
			if r, ok := lastRcv[e.TID]; ok {
				t.readsWithRcv++
				if r.G == e.G {
					t.rcvSameG++
				}
				delete(lastRcv, e.TID)
			}
			servingFDUpdate(servingFD, e)
			c := state(e.X)
			if c.first == nil {
				c.first = &firstRead{g: e.G, ts: e.TS}
			}
		case evServe:
			t.requests++
			fd, ok := servingFD[e.G]
			if !ok {
				t.unknownConn++
				continue
			}
			c := state(fd)
			switch {
			case c.first == nil:
				t.noRead++
			case !c.finished:
				t.firstOfConn++
			case c.first.g == e.G:
				t.sameG++
				t.delays = append(t.delays, time.Duration(e.TS-c.first.ts))
			default:
				t.otherG++
				t.delays = append(t.delays, time.Duration(e.TS-c.first.ts))
			}
		case evFinish:
			if fd, ok := servingFD[e.G]; ok {
				c := state(fd)
				c.first = nil
				c.finished = true
			}
		}
	}
	return t
}

// servingFDUpdate notes that goroutine e.G read descriptor e.X. A
// background reader's goroutine is noted too; it never runs ServeHTTP.
func servingFDUpdate(m map[uint64]uint64, e event) { m[e.G] = e.X }

func pct(n, of int) float64 {
	if of == 0 {
		return 0
	}
	return 100 * float64(n) / float64(of)
}

func report(w io.Writer, evs []event, st progStats) {
	t := analyse(evs)
	fmt.Fprintf(w, "events %d\n", len(evs))
	fmt.Fprintf(w, "ServeHTTP %d (serving goroutine's connection unknown: %d)\n", t.requests, t.unknownConn)
	fmt.Fprintf(w, "  first request of its connection: %d\n", t.firstOfConn)
	known := t.sameG + t.otherG + t.noRead
	fmt.Fprintf(w, "  later requests %d: first bytes after the previous finish read by the serving goroutine %d (%.2f%%), by another goroutine %d (%.2f%%), no read after the previous finish %d (%.2f%%)\n",
		known, t.sameG, pct(t.sameG, known), t.otherG, pct(t.otherG, known), t.noRead, pct(t.noRead, known))
	if len(t.delays) > 0 {
		sort.Slice(t.delays, func(i, j int) bool { return t.delays[i] < t.delays[j] })
		q := func(p float64) time.Duration { return t.delays[int(p*float64(len(t.delays)-1))] }
		fmt.Fprintf(w, "  ServeHTTP minus that read: p50 %v p90 %v p99 %v max %v\n", q(0.5), q(0.9), q(0.99), q(1))
	}
	fmt.Fprintf(w, "reads with bytes %d, preceded on their thread by tcp_rcv_space_adjust %d (%.2f%%, same goroutine %d); tcp_rcv_space_adjust runs in the process %d\n",
		t.reads, t.readsWithRcv, pct(t.readsWithRcv, t.reads), t.rcvSameG, t.rcvSeen)
	if st.rcvRuns > 0 {
		fmt.Fprintf(w, "tcp_rcv_space_adjust program: %d runs (all processes), %.0f ns per run inside BPF\n", st.rcvRuns, float64(st.rcvNs)/float64(st.rcvRuns))
	}
	if st.readRuns > 0 {
		fmt.Fprintf(w, "sys_exit program: %d runs, %.0f ns per run inside BPF\n", st.readRuns, float64(st.readNs)/float64(st.readRuns))
	}
}
