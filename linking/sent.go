package linking

import "time"

// Sent remembers the last ended client requests of one open connection to
// another node, for the lookups that come while it is open: the usual
// case (a lookup comes within the asking agent's batch delay of the
// request, a few requests later on a keep-alive connection). It spares
// those requests the table's index (Recent): its buckets are at random in
// a megabyte, a cache miss or two for each of a request's keys when it is
// added and again when it is asked, where a connection's Sent is a
// kilobyte of its own, whose slot for a request is one cache line found
// by its ordinal. A request asked and found is not put in the table when
// it leaves its slot (no agent asks twice for a request it found); the
// others (never asked yet: a lookup may still come) are, and so is
// everything left when the connection closes (Recent.Close). A Sent
// whose requests mostly leave it unasked is bypassed (evict). The
// correlator keeps one per connection, under its lock.
type Sent struct {
	// n counts the requests with only a TCP key, which take the slots
	// in turn (the others take their ordinal's).
	n uint16
	// evicted counts the requests that left their slot not asked yet,
	// hits those found in it, since the last check (see evict).
	evicted, hits uint16
	// tcp are the low bits of the slots' TCP keys (a hint: e holds
	// them), one cache line with the counters, scanned for a TCP key.
	tcp [sentSlots]uint16
	e   [sentSlots]recentEntry
}

// sentSlots is the number of requests a Sent holds: with its header, a
// line, 1,920 bytes. An ordinal's slot is the ordinal modulo it: an odd
// number, so that HTTP/2 streams, all odd, take every slot. A lookup
// comes within the asking agent's batch (at most its 50 ms delay, or
// 1,024 lookups: ~45 ms at 23,000 requests/s), ~20 requests later on
// each of 50 keep-alive connections at that rate (MODE=linking). A
// connection faster than that, or one whose requests are never asked
// (to a node without an agent), is found out by evict and bypasses its
// Sent.
const sentSlots = 29

// sentWindow is how many requests leave a Sent unasked before it is
// checked: one found in it for each of them keeps it in use, else it is
// bypassed (its connection's requests go to the table directly, as they
// would without it, not through it too).
const sentWindow = 64

// maxSents bounds the Sents of open connections (8 MiB): past it, the
// requests of further connections go to the table directly.
const maxSents = 4096

// entryAsked marks an entry of a Sent whose request was asked and found.
const entryAsked = 1 << 2

// slot returns the slot of an ordinal or stream.
func slot(seq uint64) int { return int(seq % sentSlots) }

// NewSent returns an empty Sent for a connection, one of those closed
// before when there are, or nil when maxSents are open.
func (r *Recent) NewSent() *Sent {
	if r.sents >= maxSents {
		return nil
	}
	r.sents++
	if n := len(r.free); n > 0 {
		s := r.free[n-1]
		r.free = r.free[:n-1]
		return s
	}
	return new(Sent)
}

// maxFreeSent bounds the Sents kept for reuse.
const maxFreeSent = 256

// Close puts the requests s still holds that may be asked into the table,
// and keeps s for NewSent: its connection is gone.
func (r *Recent) Close(s *Sent) {
	if s == &r.bypass {
		return
	}
	for i := range s.e {
		if e := &s.e[i]; r.keep(e) {
			r.put(e)
		}
	}
	*s = Sent{}
	r.sents--
	if len(r.free) < maxFreeSent {
		r.free = append(r.free, s)
	}
}

// keep tells whether an entry of a Sent may still be asked for: it holds
// a request not found by a lookup yet (one older than the TTL is not
// found in the table either).
func (r *Recent) keep(e *recentEntry) bool {
	return e.at != 0 && e.flags&entryAsked == 0
}

// AddTo remembers the client span of q (Add) in s, its connection's: in
// its ordinal's slot, or in turn when it has only a TCP key. The request
// that held the slot goes to the table, unless it was asked and found. A
// request added again with the same keys replaces its entry. It returns
// the Sent the connection keeps: s, or once s is bypassed (evict) the
// table's one bypassed Sent (s is reused for another connection).
func (r *Recent) AddTo(s *Sent, q Query, a Answer, now time.Time) *Sent {
	e, ok := newEntry(q, a, now)
	if !ok {
		return s
	}
	if s == &r.bypass {
		r.put(&e)
		return s
	}
	i := -1
	if e.seq != 0 {
		i = slot(e.seq)
	} else {
		for j, tcp := range s.tcp {
			if tcp == uint16(e.tcp) && s.e[j].same(&e) {
				i = j
				break
			}
		}
		if i < 0 {
			i = int(s.n % sentSlots)
			s.n++
		}
	}
	if old := &s.e[i]; r.keep(old) && !old.same(&e) {
		r.put(old)
		if r.evict(s) {
			r.put(&e)
			r.Close(s)
			return &r.bypass
		}
	}
	s.e[i], s.tcp[i] = e, uint16(e.tcp)
	return s
}

// evict counts a request that left s unasked, and reports whether s is to
// be bypassed from now on: sentWindow of them left it while fewer were
// found in it.
func (r *Recent) evict(s *Sent) bool {
	if s.evicted++; s.evicted < sentWindow {
		return false
	}
	if s.hits >= sentWindow {
		s.evicted, s.hits = 0, 0
		return false
	}
	return true
}

// GetFrom returns the client span of q (Get), from s, the open connection
// q names (nil: none), or the table. As Get, by the TCP key first: a
// request of s whose ordinal's slot holds that key too is found in that
// one cache line; else s's TCP keys, the table's, then the ordinal in s
// and in the table.
func (r *Recent) GetFrom(s *Sent, q Query, now time.Time) (Answer, bool) {
	if s == nil || s == &r.bypass {
		return r.Get(q, now)
	}
	addr, port := q.Local.Addr().As16(), q.Local.Port()
	tcp, hasTCP := tcpKey(q)
	at := now.UnixNano()
	var bySeq *recentEntry
	if q.Seq != 0 {
		if e := &s.e[slot(q.Seq)]; r.fresh(e, &addr, port, q.Seq, at) {
			if !hasTCP || e.flags&entryTCP != 0 && e.tcp == tcp {
				return s.found(e), true
			}
			bySeq = e
		}
	}
	if hasTCP {
		for j, t := range s.tcp {
			if e := &s.e[j]; t == uint16(tcp) && r.fresh(e, &addr, port, q.TCPSeq, at) {
				return s.found(e), true
			}
		}
		if e := r.find(r.connHash(&addr, port), &addr, port, q.TCPSeq, at); e != nil {
			return e.answer(), true
		}
	}
	if bySeq != nil {
		return s.found(bySeq), true
	}
	if q.Seq != 0 {
		if e := r.find(r.connHash(&addr, port), &addr, port, q.Seq, at); e != nil {
			return e.answer(), true
		}
	}
	return Answer{}, false
}

// found returns the answer of e, marking it asked when it is final.
func (s *Sent) found(e *recentEntry) Answer {
	if e.flags&entryFound != 0 {
		e.flags |= entryAsked
		if s.hits < sentWindow {
			s.hits++
		}
	}
	return e.answer()
}

func (e *recentEntry) answer() Answer {
	return Answer{Found: e.flags&entryFound != 0, TraceID: e.trace, SpanID: e.span}
}
