package sockets

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"reflect"
	"testing"

	"github.com/periscope-apm/periscope/internal/ktime"
	"github.com/periscope-apm/periscope/internal/wire"
)

// step is one thing that happens to a hold: a record read from the ring
// (rec), a verdict from discovery (decide), a fork record, an expiry tick.
type step struct {
	op       string // "data", "exec", "exit", "fork", "decide", "decideExec", "expire", "gone"
	ts       uint64 // record time, verdict time, or now
	pid, arg uint32 // arg: the parent of a fork
	selected bool
}

func data(ts uint64, pid uint32) step { return step{op: "data", ts: ts, pid: pid} }
func exec(ts uint64, pid uint32) step { return step{op: "exec", ts: ts, pid: pid} }
func exit(ts uint64, pid uint32) step { return step{op: "exit", ts: ts, pid: pid} }
func fork(ts uint64, child, parent uint32) step {
	return step{op: "fork", ts: ts, pid: child, arg: parent}
}
func decide(pid uint32, selected bool, at uint64) step {
	return step{op: "decide", ts: at, pid: pid, selected: selected}
}

// decideExec is discovery's verdict on an exec, with the time of its record
// of it (stamped before the ring's marker of the same exec).
func decideExec(pid uint32, selected bool, at uint64) step {
	return step{op: "decideExec", ts: at, pid: pid, selected: selected}
}
func expire(now uint64) step           { return step{op: "expire", ts: now} }
func gone(pid uint32, now uint64) step { return step{op: "gone", ts: now, pid: pid} }

// holdRecord builds a ring record: the header, then a proc_event's ppid
// and fd (what a fork record carries; other records' bodies do not
// matter to the hold).
func holdRecord(t *testing.T, typ uint32, ts uint64, pid, ppid uint32) []byte {
	var b bytes.Buffer
	for _, f := range []any{ts, typ, pid, pid, uint32(0), ppid, int32(-1)} {
		if err := binary.Write(&b, binary.NativeEndian, f); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

// TestHold: records of a process are handed on at once when its program is
// decided selected, dropped when it is decided not selected, held in order
// while it is undecided (the ring's progress limited to the oldest held),
// and a hold that runs out of time or room drops what it held as
// undecided.
func TestHold(t *testing.T) {
	const age = 1000
	for _, tc := range []struct {
		name  string
		steps []step
		// want: the records handed on ("type pid ts"), the drops by
		// reason, the ring progress limit at the end.
		want    []string
		dropped map[string]int
		limit   uint64
	}{
		{"selected before its records",
			[]step{decide(1, true, 5), data(10, 1), data(11, 1), exit(12, 1)},
			[]string{"data 1 10", "data 1 11", "exit 1 12"}, nil, 0},
		{"not selected: data dropped, exit handed on",
			[]step{decide(1, false, 5), data(10, 1), exit(12, 1)},
			[]string{"exit 1 12"}, map[string]int{"unselected": 1}, 0},
		{"undecided: held, limit at the oldest",
			[]step{data(10, 1), data(11, 1), data(15, 2)},
			nil, nil, 10},
		{"undecided then selected: handed on in order",
			[]step{data(10, 1), exit(11, 1), decide(1, true, 9)},
			[]string{"data 1 10", "exit 1 11"}, nil, 0},
		{"undecided then not selected",
			[]step{data(10, 1), data(11, 2), decide(1, false, 20)},
			nil, map[string]int{"unselected": 1}, 11},
		{"a verdict on an older program does not judge the exec'd one",
			[]step{decide(1, true, 5), data(10, 1), exec(100, 1), data(110, 1), decideExec(1, false, 99)},
			[]string{"data 1 10", "exec 1 100"}, map[string]int{"unselected": 1}, 0},
		{"exec verdict read before the exec record (slack)",
			[]step{decide(1, false, 5), decideExec(1, true, 98), data(50, 1), exec(100, 1), data(110, 1)},
			[]string{"exec 1 100", "data 1 110"}, map[string]int{"unselected": 1}, 0},
		{"records after an undecided one wait for it",
			[]step{data(10, 1), exec(100, 1), decideExec(1, true, 99), data(110, 1)},
			nil, nil, 10},
		{"old program decided later: both settle in order",
			[]step{data(10, 1), exec(100, 1), data(110, 1), decideExec(1, true, 99), decide(1, false, 50)},
			[]string{"exec 1 100", "data 1 110"}, map[string]int{"unselected": 1}, 0},
		{"markers need no verdict: an exec starts the next program",
			[]step{exec(100, 1), data(110, 1), exit(120, 1), decideExec(1, true, 99)},
			[]string{"exec 1 100", "data 1 110", "exit 1 120"}, nil, 0},
		{"fork of a selected parent inherits",
			[]step{decide(1, true, 5), fork(20, 2, 1), data(30, 2)},
			[]string{"data 2 30"}, nil, 0},
		{"fork of an undecided parent waits for its own verdict",
			[]step{fork(20, 2, 1), data(30, 2), decide(2, true, 25)},
			[]string{"data 2 30"}, nil, 0},
		{"fork of an undecided parent inherits its verdict when it comes",
			[]step{fork(20, 2, 1), data(30, 2), decide(1, true, 10)},
			[]string{"data 2 30"}, nil, 0},
		{"an orphan's orphan inherits too",
			[]step{fork(20, 2, 1), fork(25, 3, 2), data(30, 3), decide(1, true, 10)},
			[]string{"data 3 30"}, nil, 0},
		{"an orphan inherits the verdict on the program it was forked from",
			[]step{fork(20, 2, 1), data(30, 2), exec(100, 1), decideExec(1, true, 99), decide(1, false, 50)},
			[]string{"exec 1 100"}, map[string]int{"unselected": 1}, 0},
		{"fork forgets an earlier process of the same ID",
			[]step{decide(2, true, 5), decide(1, false, 5), fork(20, 2, 1), data(30, 2)},
			nil, map[string]int{"unselected": 1}, 0},
		{"a verdict read before the fork record stays",
			[]step{decide(2, true, 25), fork(20, 2, 9), data(30, 2)},
			[]string{"data 2 30"}, nil, 0},
		{"expired: dropped as undecided, and so is what follows",
			[]step{data(10, 1), exit(12, 1), expire(10 + age + 1)},
			[]string{"exit 1 12"}, map[string]int{"undecided": 1}, 0},
		{"records read after discovery saw the exit are still judged",
			[]step{decide(1, true, 5), gone(1, 20), expire(20 + age), data(10, 1)},
			[]string{"data 1 10"}, nil, 0},
		{"a verdict on a gone process is forgotten after maxAge",
			[]step{decide(1, true, 5), gone(1, 20), expire(20 + age + 1), data(10, 1)},
			nil, nil, 10},
		{"a verdict after discovery's exit (an exec) keeps the process",
			[]step{decide(1, false, 5), exec(10, 1), gone(1, 11), decide(1, true, 12), expire(11 + age + 1), data(2000, 1)},
			[]string{"exec 1 10", "data 1 2000"}, nil, 0},
		{"an exec's verdict judges the program its marker started, read after it",
			[]step{exec(100, 1), data(110, 1), decideExec(1, true, 99)},
			[]string{"exec 1 100", "data 1 110"}, nil, 0},
		{"an exec's verdict judges that exec's program, not the next one's",
			[]step{exec(100, 1), exec(5000, 1), data(5010, 1), decideExec(1, true, 99), decideExec(1, false, 4999)},
			[]string{"exec 1 100", "exec 1 5000"}, map[string]int{"unselected": 1}, 0},
		{"an exec's verdict read before its marker waits for it",
			[]step{decide(1, true, 5), decideExec(1, false, 99), data(50, 1), exec(100, 1), data(110, 1), exec(200, 1), data(210, 1)},
			[]string{"data 1 50", "exec 1 100", "exec 1 200"}, map[string]int{"unselected": 1}, 210},
		{"not expired yet",
			[]step{data(10, 1), expire(10 + age)},
			nil, nil, 10},
		{"a real verdict after expiry replaces it",
			[]step{data(10, 1), expire(10 + age + 1), data(2000, 1), decide(1, true, 1500), data(2100, 1)},
			[]string{"data 1 2100"}, map[string]int{"undecided": 2}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			dropped := map[string]int{}
			var limit ktime.Progress
			limit.Advance(1 << 40)
			h := newHold(func(raw []byte) {
				hd, _ := wire.ReadHeader(raw)
				got = append(got, fmt.Sprintf("%s %d %d", kinds[hd.Type], hd.PID, hd.TS))
			}, func(reason string) { dropped[reason]++ }, &limit)
			h.maxAge = age
			for _, s := range tc.steps {
				switch s.op {
				case "decide":
					h.decide(s.pid, s.selected, s.ts)
				case "decideExec":
					h.decideExec(s.pid, s.selected, s.ts)
				case "expire":
					h.expire(s.ts)
				case "gone":
					h.gone(s.pid, s.ts)
				default:
					typ := map[string]uint32{"data": wire.EventData, "exec": wire.EventExec, "exit": wire.EventExit, "fork": wire.EventFork}[s.op]
					raw := holdRecord(t, typ, s.ts, s.pid, s.arg)
					hd, _ := wire.ReadHeader(raw)
					h.record(hd, raw)
				}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("handed on %q, want %q", got, tc.want)
			}
			if tc.dropped == nil {
				tc.dropped = map[string]int{}
			}
			if !reflect.DeepEqual(dropped, tc.dropped) {
				t.Errorf("dropped %v, want %v", dropped, tc.dropped)
			}
			want := tc.limit
			if want == 0 {
				want = 1 << 40
			}
			if l := limit.Load(); l != want {
				t.Errorf("ring progress %d, want %d", l, want)
			}
		})
	}
}

var kinds = map[uint32]string{wire.EventData: "data", wire.EventExec: "exec", wire.EventExit: "exit"}

// TestHoldBytes: past maxBytes held, the process with the oldest held
// record is given up on, and the limit moves to the next oldest.
func TestHoldBytes(t *testing.T) {
	var limit ktime.Progress
	limit.Advance(1 << 40)
	dropped := 0
	h := newHold(func([]byte) { t.Error("a record handed on") }, func(string) { dropped++ }, &limit)
	rec := holdRecord(t, wire.EventData, 10, 1, 0)
	h.maxBytes = 2 * len(rec)
	for i, pid := range []uint32{1, 2, 3} {
		raw := holdRecord(t, wire.EventData, uint64(10+i), pid, 0)
		hd, _ := wire.ReadHeader(raw)
		h.record(hd, raw)
	}
	if dropped != 1 || h.bytes != 2*len(rec) || limit.Load() != 11 {
		t.Errorf("dropped %d, held %d bytes, limit %d; want 1, %d, 11", dropped, h.bytes, limit.Load(), 2*len(rec))
	}
}

// TestHoldExecBeforeMarkers: an exec from before the collector's exec
// marker was attached has no marker in the ring; its verdict judges the
// program the ring sees running then, instead of waiting for a marker that
// never comes.
func TestHoldExecBeforeMarkers(t *testing.T) {
	var got []string
	var limit ktime.Progress
	h := newHold(func(raw []byte) {
		hd, _ := wire.ReadHeader(raw)
		got = append(got, fmt.Sprintf("%s %d %d", kinds[hd.Type], hd.PID, hd.TS))
	}, func(string) { t.Error("a record dropped") }, &limit)
	h.markersFrom = 50
	raw := holdRecord(t, wire.EventData, 60, 1, 0)
	hd, _ := wire.ReadHeader(raw)
	h.record(hd, raw)
	h.decideExec(1, true, 40)
	if want := []string{"data 1 60"}; !reflect.DeepEqual(got, want) {
		t.Errorf("handed on %q, want %q", got, want)
	}
}
