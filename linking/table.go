package linking

import (
	"encoding/binary"
	"math/rand/v2"
	"time"
)

// Recent remembers the span contexts of client requests that have ended,
// for the lookups that arrive after them (the server's span ends when the
// response is written, the lookup comes later, and the client may have
// closed the connection by then). It holds at most its size in entries
// (rounded up to a power of two), each for at most its TTL.
//
// An Add runs for every client span to another node, whether or not that
// node ever asks, in an agent whose other work (and the other processes
// of a busy node) has evicted the table from the caches and the TLB since
// the last Add: what an Add costs is the cache lines it touches, not its
// instructions (two Adds of the earlier set-associative table touched six
// lines at random, ~1 µs per span in a profile of the answering agent
// under load). So a request is one entry of one cache line, holding both
// its keys (its ordinal or stream, and its TCP key), written in order
// into a log (the next line after the previous request's, of whatever
// connection); and an index of one cache line per bucket finds it by
// either key: a bucket holds eight slots of a log position and a
// fingerprint. An ordinal's bucket is its connection's hash plus the
// ordinal (a keep-alive connection's requests walk the index in order,
// and never share a bucket until they wrap it), a TCP key's a hash of all
// of it. An Add touches the log's next line, its ordinal's bucket and its
// TCP key's bucket; a lookup a bucket and the entry it points to.
//
// An entry leaves when the log wraps (after size newer entries), or its
// slot is taken when recentWays newer keys fell into its bucket, which
// for an index of twice the keys the log holds is rare (the lookup is
// then not found, never answered wrongly: a slot's entry is compared
// whole). Entries hold no pointers, so that a full table costs the
// garbage collector nothing to scan. It is not safe for concurrent use
// (the correlator calls it under its lock).
type Recent struct {
	ttl  int64
	seed [2]uint64
	log  []recentEntry
	next uint32 // the log position the next Add takes (from 1: 0 is an empty slot)
	// index are the buckets, mask its length - 1.
	index []recentBucket
	mask  uint64
	// free are Sents of closed connections, for NewSent; sents counts
	// those open.
	free  []*Sent
	sents int
	// bypass is the Sent of every connection whose own was bypassed
	// (AddTo): it holds nothing.
	bypass Sent
}

// recentWays is the number of slots in a bucket (one cache line).
const recentWays = 8

// recentBucket is one bucket of the index: log positions (0: empty) and
// fingerprints of the keys they were added under.
type recentBucket struct {
	pos [recentWays]uint32
	fp  [recentWays]uint32
}

// recentEntry is one request, 64 bytes: its connection's client address
// (the server's is left out: a ClusterIP Service's DNAT rewrites it on
// the way, and the client's address and port name its connection; the
// same local port used at once towards two servers, both at request k,
// would collide: the later wins), its keys, when it was added (unix ns),
// and its span.
type recentEntry struct {
	addr  [16]byte
	seq   uint64 // Query.Seq (0: none)
	at    int64
	trace [16]byte
	span  [8]byte
	tcp   uint32 // Query.TCPSeq without its flag, when flags&hasTCP
	port  uint16
	flags uint8
}

const (
	entryFound = 1 << iota // Answer.Found
	entryTCP               // tcp holds a TCP key
)

// NewRecent returns an empty table of at least size entries kept ttl.
func NewRecent(size int, ttl time.Duration) *Recent {
	n := recentWays
	for n < size {
		n *= 2
	}
	// Two keys an entry, in buckets of recentWays: an index of twice
	// that fills slowly enough that a bucket rarely overflows.
	buckets := 2 * 2 * n / recentWays
	return &Recent{ttl: int64(ttl), seed: [2]uint64{rand.Uint64(), rand.Uint64()}, log: make([]recentEntry, n),
		next: 1, index: make([]recentBucket, buckets), mask: uint64(buckets - 1)}
}

// mix is a 64-bit finalizer (splitmix64's).
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// connHash hashes a client address and port.
func (r *Recent) connHash(addr *[16]byte, port uint16) uint64 {
	hi, lo := binary.BigEndian.Uint64(addr[:8]), binary.BigEndian.Uint64(addr[8:])
	return mix(mix(hi^r.seed[0]) ^ lo ^ uint64(port)<<13 ^ r.seed[1])
}

// bucket returns key's bucket and fingerprint on the connection of hash
// h: an ordinal or stream's bucket is h plus the key, a TCP key's a hash
// of both.
func (r *Recent) bucket(h, key uint64) (*recentBucket, uint32) {
	if key&TCPSeqFlag != 0 {
		k := mix(h ^ key)
		return &r.index[k&r.mask], uint32(k >> 32)
	}
	return &r.index[(h+key)&r.mask], uint32(h>>32) ^ uint32(key>>32) ^ uint32(key)>>13
}

// live tells whether log position pos is still in the log.
func (r *Recent) live(pos uint32) bool {
	return pos != 0 && r.next-pos <= uint32(len(r.log))
}

func (r *Recent) entry(pos uint32) *recentEntry {
	return &r.log[pos&uint32(len(r.log)-1)]
}

// has tells whether e is of the connection addr:port and has key.
func (e *recentEntry) has(addr *[16]byte, port uint16, key uint64) bool {
	if e.addr != *addr || e.port != port {
		return false
	}
	return e.seq == key || e.flags&entryTCP != 0 && key == TCPSeqFlag|uint64(e.tcp)
}

// fresh tells whether e holds the request key of the connection
// addr:port, not older than the TTL at now (unix ns).
func (r *Recent) fresh(e *recentEntry, addr *[16]byte, port uint16, key uint64, now int64) bool {
	return e.at != 0 && e.has(addr, port, key) && now-e.at <= r.ttl
}

// tcpKey returns the TCP key of q as an entry holds it, if it has one.
func tcpKey(q Query) (uint32, bool) {
	if q.TCPSeq&TCPSeqFlag == 0 || q.TCPSeq&^(TCPSeqFlag|0xffffffff) != 0 {
		return 0, false // none (or not one the correlator makes)
	}
	return uint32(q.TCPSeq), true
}

// Add remembers the client span of q, seen at now, under both its keys:
// q.Seq (an ordinal, a stream, or a TCP key) and q.TCPSeq, each when not
// 0. A request added again with the same keys replaces its entry.
func (r *Recent) Add(q Query, a Answer, now time.Time) {
	if e, ok := newEntry(q, a, now); ok {
		r.put(&e)
	}
}

// newEntry returns the entry of q's span, if q has a key.
func newEntry(q Query, a Answer, now time.Time) (recentEntry, bool) {
	tcp, hasTCP := tcpKey(q)
	if q.Seq == 0 && !hasTCP {
		return recentEntry{}, false
	}
	flags := uint8(0)
	if a.Found {
		flags |= entryFound
	}
	if hasTCP {
		flags |= entryTCP
	}
	return recentEntry{addr: q.Local.Addr().As16(), seq: q.Seq, at: now.UnixNano(), trace: a.TraceID, span: a.SpanID,
		tcp: tcp, port: q.Local.Port(), flags: flags}, true
}

// first returns the key e is indexed by first: its ordinal or stream,
// else its TCP key.
func (e *recentEntry) first() uint64 {
	if e.seq != 0 {
		return e.seq
	}
	return TCPSeqFlag | uint64(e.tcp)
}

// same tells whether e and o are one request (its connection and keys).
func (e *recentEntry) same(o *recentEntry) bool {
	return e.addr == o.addr && e.port == o.port && e.seq == o.seq && e.flags&entryTCP == o.flags&entryTCP && e.tcp == o.tcp
}

// put adds a copy of e to the log and the index, in place of its
// request's entry if that is there already.
func (r *Recent) put(e *recentEntry) {
	h := r.connHash(&e.addr, e.port)
	first := e.first()
	b, fp := r.bucket(h, first)
	for i := range recentWays {
		if b.fp[i] == fp && r.live(b.pos[i]) {
			if old := r.entry(b.pos[i]); old.same(e) {
				*old = *e // the same request again: replaced in place
				return
			}
		}
	}
	pos := r.next
	r.next++
	if r.next == 0 {
		r.next = 1
	}
	*r.entry(pos) = *e
	r.insert(b, fp, pos)
	if e.seq != 0 && e.flags&entryTCP != 0 {
		tb, tfp := r.bucket(h, TCPSeqFlag|uint64(e.tcp))
		r.insert(tb, tfp, pos)
	}
}

// insert puts pos in b, in place of an empty or dead slot, else of the
// oldest.
func (r *Recent) insert(b *recentBucket, fp, pos uint32) {
	victim, age := 0, uint32(0)
	for i := range recentWays {
		if !r.live(b.pos[i]) {
			victim = i
			break
		}
		if a := r.next - b.pos[i]; a > age {
			victim, age = i, a
		}
	}
	b.pos[victim], b.fp[victim] = pos, fp
}

// Get returns the client span of q, if it is remembered: by its TCP key
// first (q.TCPSeq, exact whichever requests each agent saw), then by q.Seq.
func (r *Recent) Get(q Query, now time.Time) (Answer, bool) {
	addr, port := q.Local.Addr().As16(), q.Local.Port()
	h := r.connHash(&addr, port)
	for _, key := range [2]uint64{q.TCPSeq, q.Seq} {
		if key == 0 {
			continue
		}
		if e := r.find(h, &addr, port, key, now.UnixNano()); e != nil {
			return e.answer(), true
		}
	}
	return Answer{}, false
}

// find returns the newest live entry of the connection addr:port (hash h)
// with key, not older than the TTL at now (unix ns).
func (r *Recent) find(h uint64, addr *[16]byte, port uint16, key uint64, now int64) *recentEntry {
	b, fp := r.bucket(h, key)
	var found *recentEntry
	age := uint32(0)
	for i := range recentWays {
		pos := b.pos[i]
		if b.fp[i] != fp || !r.live(pos) || found != nil && r.next-pos >= age {
			continue
		}
		if e := r.entry(pos); r.fresh(e, addr, port, key, now) {
			found, age = e, r.next-pos
		}
	}
	return found
}

// Len returns the number of entries not expired at now.
func (r *Recent) Len(now time.Time) int {
	n := 0
	for i := range r.log {
		if at := r.log[i].at; at != 0 && now.UnixNano()-at <= r.ttl {
			n++
		}
	}
	return n
}

// Cap returns the most entries the table holds.
func (r *Recent) Cap() int { return len(r.log) }
