package linking

import "time"

// Recent remembers the span contexts of client requests that have ended,
// for the lookups that arrive after them (the server's span ends when the
// response is written, the lookup comes later, and the client may have
// closed the connection by then). It holds at most Max entries, each for
// at most TTL; the oldest go first. It is not safe for concurrent use (the
// correlator calls it under its lock).
type Recent struct {
	max  int
	ttl  time.Duration
	m    map[Query]recentEntry
	ring []Query // insertion order; head is the oldest
	head int
	n    int
}

type recentEntry struct {
	ans Answer
	at  time.Time
}

// NewRecent returns an empty table of at most max entries kept ttl.
func NewRecent(size int, ttl time.Duration) *Recent {
	size = max(size, 1)
	return &Recent{max: size, ttl: ttl, m: make(map[Query]recentEntry, min(size, 1024)), ring: make([]Query, size)}
}

// Add remembers the client span of q, seen at now.
func (r *Recent) Add(q Query, a Answer, now time.Time) {
	r.expire(now)
	if _, ok := r.m[q]; ok {
		r.m[q] = recentEntry{a, now}
		return
	}
	if r.n == r.max {
		r.drop()
	}
	r.ring[(r.head+r.n)%r.max] = q
	r.n++
	r.m[q] = recentEntry{a, now}
}

// Get returns the client span of q, if it is remembered.
func (r *Recent) Get(q Query, now time.Time) (Answer, bool) {
	e, ok := r.m[q]
	if !ok || now.Sub(e.at) > r.ttl {
		return Answer{}, false
	}
	return e.ans, true
}

// Len returns the number of entries.
func (r *Recent) Len() int { return len(r.m) }

// expire drops the entries older than the TTL.
func (r *Recent) expire(now time.Time) {
	for r.n > 0 {
		q := r.ring[r.head]
		if e, ok := r.m[q]; ok && now.Sub(e.at) <= r.ttl {
			return
		}
		r.drop()
	}
}

// drop forgets the oldest entry.
func (r *Recent) drop() {
	q := r.ring[r.head]
	delete(r.m, q)
	r.ring[r.head] = Query{}
	r.head = (r.head + 1) % r.max
	r.n--
}
