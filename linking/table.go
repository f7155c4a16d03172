package linking

import (
	"encoding/binary"
	"hash/maphash"
	"time"
)

// Recent remembers the span contexts of client requests that have ended,
// for the lookups that arrive after them (the server's span ends when the
// response is written, the lookup comes later, and the client may have
// closed the connection by then). It holds at most its size in entries
// (rounded up to a power of two), each for at most its TTL. It is a
// set-associative table: a key picks a set of recentWays entries, and a
// new entry takes the place of the set's oldest (or expired) one. An Add
// is one hash and one set, without a map or an eviction queue: it runs for
// every client span to another node, whether or not that node ever asks.
//
// A set holds its entries with their times and fingerprints, in one block
// of memory, and the ordinals of one connection fall in consecutive sets
// (its address's hash plus the ordinal): the requests of a keep-alive
// connection, added and asked for in order, walk the table's memory in
// order rather than a cache line and a page each at random (the cache and
// TLB misses were most of an Add or a Get). A connection's ordinals never
// share a set until they wrap the table, and the entries of a set are
// still the keys of distinct connections, whose addresses hash at random:
// a set fills no sooner than with every key hashed. TCP keys are hashed
// whole.
//
// An entry leaves before its TTL only when recentWays newer keys fell into
// its set, which for a table much larger than the entries added in a
// lookup's delay is rare (and the lookup is then not found, never answered
// wrongly). Entries hold no pointers, so that a full table costs the
// garbage collector nothing to scan. It is not safe for concurrent use
// (the correlator calls it under its lock).
type Recent struct {
	ttl  int64
	seed maphash.Seed
	sets []recentSet
	mask uint64 // len(sets) - 1
	last int64  // the latest time added: times added increase strictly
}

// recentWays is the number of entries in a set: with a table of 65,536
// entries, the keys added within 4,096 adds of one fall in its set about
// half a time on average, and eight of them almost never.
const recentWays = 8

// recentSet is one set: when each entry was added (0: empty) and a
// fingerprint of its key, looked at first, then the entries.
type recentSet struct {
	at [recentWays]int64 // unix nanoseconds
	fp [recentWays]uint32
	e  [recentWays]recentEntry
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
}

// NewRecent returns an empty table of at least size entries kept ttl.
func NewRecent(size int, ttl time.Duration) *Recent {
	sets := 1
	for sets*recentWays < size {
		sets *= 2
	}
	return &Recent{ttl: int64(ttl), seed: maphash.MakeSeed(), sets: make([]recentSet, sets), mask: uint64(sets - 1)}
}

// find returns k's set and fingerprint: an ordinal or stream's set is its
// connection's hash plus the ordinal, a TCP key's the hash of all of it.
func (r *Recent) find(k *queryKey, seq uint64) (*recentSet, uint32) {
	if seq&TCPSeqFlag != 0 {
		h := maphash.Bytes(r.seed, k[:])
		return &r.sets[h&r.mask], uint32(h >> 32)
	}
	// The connection's address and the flag bits of seq.
	h := maphash.Bytes(r.seed, k[:addrPortSize+1])
	return &r.sets[(h+seq)&r.mask], uint32(h>>32) ^ uint32(seq>>13)
}

// Add remembers the client span of q, seen at now.
func (r *Recent) Add(q Query, a Answer, now time.Time) {
	// Strictly increasing times (by a nanosecond at most per Add) order
	// the entries added at one clock reading.
	at := max(now.UnixNano(), r.last+1)
	r.last = at
	k := keyOf(q)
	set, fp := r.find(&k, q.Seq)
	victim := 0
	for i := range recentWays {
		if set.at[i] != 0 && set.fp[i] == fp && set.e[i].k == k {
			victim = i
			break
		}
		if set.at[i] < set.at[victim] {
			victim = i // the oldest (an empty entry is the oldest; an expired one older than any other)
		}
	}
	set.at[victim], set.fp[victim] = at, fp
	set.e[victim] = recentEntry{k: k, ans: a}
}

// Get returns the client span of q, if it is remembered.
func (r *Recent) Get(q Query, now time.Time) (Answer, bool) {
	k := keyOf(q)
	set, fp := r.find(&k, q.Seq)
	for i := range recentWays {
		if set.at[i] != 0 && set.fp[i] == fp && now.UnixNano()-set.at[i] <= r.ttl && set.e[i].k == k {
			return set.e[i].ans, true
		}
	}
	return Answer{}, false
}

// Len returns the number of entries not expired at now.
func (r *Recent) Len(now time.Time) int {
	n := 0
	for _, s := range r.sets {
		for _, at := range s.at {
			if at != 0 && now.UnixNano()-at <= r.ttl {
				n++
			}
		}
	}
	return n
}

// Cap returns the most entries the table holds.
func (r *Recent) Cap() int { return len(r.sets) * recentWays }
