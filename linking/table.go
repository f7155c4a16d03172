package linking

import (
	"encoding/binary"
	"hash/maphash"
	"time"
)

// Recent remembers the span contexts of client requests that have ended,
// for the lookups that arrive after them (the server's span ends when the
// response is written, the lookup comes later, and the client may have
// closed the connection by then). It holds at most its size in entries,
// each for at most its TTL; the oldest go first. Keys and entries hold no
// pointers, so that a full table costs the garbage collector nothing to
// scan. It is not safe for concurrent use (the correlator calls it under
// its lock).
type Recent struct {
	ttl  time.Duration
	seed maphash.Seed
	m    map[uint64]uint32 // key's hash → index in ring (the entry has the key)
	ring []recentEntry     // insertion order; head is the oldest
	head int
	n    int
}

// queryKey is a Query's client address and Seq in fixed bytes. The
// server's address is left out: a ClusterIP Service's DNAT rewrites it on
// the way, and the client's address and port name its connection (the
// same local port used at once towards two servers, both at request k,
// would collide: the later wins).
type queryKey [addrPortSize + 8]byte

func keyOf(q Query) queryKey {
	var k queryKey
	b := appendAddrPort(k[:0], q.Local)
	binary.BigEndian.AppendUint64(b, q.Seq)
	return k
}

type recentEntry struct {
	k   queryKey
	ans Answer
	at  int64 // unix nanoseconds
}

// NewRecent returns an empty table of at most size entries kept ttl.
func NewRecent(size int, ttl time.Duration) *Recent {
	size = max(size, 1)
	return &Recent{ttl: ttl, seed: maphash.MakeSeed(), m: make(map[uint64]uint32, min(size, 1024)), ring: make([]recentEntry, size)}
}

// Add remembers the client span of q, seen at now.
func (r *Recent) Add(q Query, a Answer, now time.Time) {
	at := now.UnixNano()
	r.expire(at)
	k := keyOf(q)
	h := maphash.Bytes(r.seed, k[:])
	if i, ok := r.m[h]; ok && r.ring[i].k == k {
		r.ring[i].ans, r.ring[i].at = a, at
		return
	}
	if r.n == len(r.ring) {
		r.drop()
	}
	i := (r.head + r.n) % len(r.ring)
	r.ring[i] = recentEntry{k: k, ans: a, at: at}
	r.n++
	r.m[h] = uint32(i) // a colliding older entry is forgotten
}

// Get returns the client span of q, if it is remembered.
func (r *Recent) Get(q Query, now time.Time) (Answer, bool) {
	k := keyOf(q)
	i, ok := r.m[maphash.Bytes(r.seed, k[:])]
	if !ok || r.ring[i].k != k || now.UnixNano()-r.ring[i].at > int64(r.ttl) {
		return Answer{}, false
	}
	return r.ring[i].ans, true
}

// Len returns the number of entries.
func (r *Recent) Len() int { return len(r.m) }

// expire drops the entries older than the TTL.
func (r *Recent) expire(now int64) {
	for r.n > 0 && now-r.ring[r.head].at > int64(r.ttl) {
		r.drop()
	}
}

// drop forgets the oldest entry.
func (r *Recent) drop() {
	e := &r.ring[r.head]
	h := maphash.Bytes(r.seed, e.k[:])
	if i, ok := r.m[h]; ok && int(i) == r.head {
		delete(r.m, h)
	}
	r.head = (r.head + 1) % len(r.ring)
	r.n--
}
