package main

import "testing"

// TestAnalyse: the first read with bytes after a connection's previous
// finish, by the serving goroutine or another, or none (pipelined bytes
// read with an earlier request).
func TestAnalyse(t *testing.T) {
	const fd, serving, other = 7, 0x100, 0x200
	rd := func(ts, g uint64) event { return event{TS: ts, G: g, X: fd, Kind: evRead, Ret: 10} }
	serve := func(ts uint64) event { return event{TS: ts, G: serving, Kind: evServe} }
	finish := func(ts uint64) event { return event{TS: ts, G: serving, Kind: evFinish} }
	tests := []struct {
		name string
		evs  []event
		want counts
	}{
		{"first request of a connection", []event{rd(1, serving), serve(2)}, counts{requests: 1, firstOfConn: 1}},
		{"next read by the serving goroutine", []event{rd(1, serving), serve(2), finish(3), rd(4, serving), serve(6)},
			counts{requests: 2, firstOfConn: 1, sameG: 1}},
		{"next read by the background reader", []event{rd(1, serving), serve(2), finish(3), rd(4, other), rd(5, serving), serve(6)},
			counts{requests: 2, firstOfConn: 1, otherG: 1}},
		{"pipelined: no read after the finish", []event{rd(1, serving), serve(2), rd(3, other), finish(4), serve(6)},
			counts{requests: 2, firstOfConn: 1, noRead: 1}},
		{"serving goroutine never read", []event{serve(2)}, counts{requests: 1, unknownConn: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := analyse(tc.evs).counts
			got.reads = 0
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}
