package correlator

import (
	"net/netip"
	"time"

	"github.com/periscope-apm/periscope/events"
	"github.com/periscope-apm/periscope/linking"
)

// Cross-node linking (package linking): a server request whose client is
// on another node is looked up as soon as its connection's addresses are
// known, usually within milliseconds, while the request is still being
// served. Until the answer comes (or Config.LinkWait passes), the span of
// the request, and the spans of its descendants on this node, are held:
// they all take the trace the answer names.

// Linker asks other nodes' agents for client spans (linking.Client).
type Linker interface {
	// Remote tells whether addr is another node's.
	Remote(addr netip.Addr) bool
	// Lookup asks for the client span of q, to be answered before
	// deadline. It returns linking.Pending and calls w.LinkDone later,
	// from another goroutine, or returns another result at once and
	// never calls w.
	Lookup(q linking.Query, deadline time.Time, w linking.Waiter) linking.Result
}

// Bounds of the linking state.
const (
	// maxLinkWaiting bounds the server requests waiting for a lookup;
	// past it requests are not looked up (counted as dropped).
	maxLinkWaiting = 16384
	// maxLinkDependents bounds the spans held behind one such request;
	// past it they are exported at once.
	maxLinkDependents = 256
	// recentClients and recentClientTTL bound the ended client requests
	// remembered for lookups that come after them: as many requests as
	// the earlier table held (65,536 keys, two a request), in 3 MiB
	// (linking.Recent; 3.9 MiB before).
	recentClients   = 32768
	recentClientTTL = 30 * time.Second
	// DefaultLinkWait is how long a span waits for a lookup by default.
	DefaultLinkWait = linking.DefaultWait
)

// nextSeq names the request x on its connection: its stream on a
// multiplexed connection, else its ordinal, and its TCP key when it has
// one. A request of a multiplexed connection that names no stream (HTTP/2
// seen whole by the Go probes) gets none (0): the order of concurrent
// streams is not the same at both ends, and it is not looked up. A request
// of a plaintext connection that was open before the agent saw it has no
// ordinal (the two agents would count from different requests): only its
// TCP key names it, and without one it is counted as linking.NoKey.
//
// The TCP key is the sequence number of the call (a read or write of the
// requests' stream, captured whole) during which the request began (its
// head was decoded), when it is the first request to begin in that call.
// Both ends agree on it: a call starting at sequence s begins first the
// first request whose head ends at or after s, if that head ends within
// the call; the same request for the client's write and the server's read
// that start at s, whatever the lengths of the two calls. A request that
// is not the first to begin in its call (pipelined) has none.
func (cn *conn) nextSeq(x *exchange) {
	if id, ok := x.px.Stream(); ok {
		x.seq = id | linking.StreamFlag
		return
	}
	if cn.multiplexed {
		return
	}
	if cn.chunkFree {
		cn.chunkFree = false
		x.tcpSeq = uint64(cn.chunkSeq) | linking.TCPSeqFlag
	}
	if cn.midStream {
		x.noKey = x.tcpSeq == 0
		return
	}
	cn.nreq++
	x.seq = cn.nreq
}

// setMidStream marks cn as open before the agent saw it. A TLS library's
// write is reported at its entry, before the syscall inside it binds the
// connection: the requests numbered before the bind lose their ordinals
// (none is looked up or remembered yet: that needs the bind's addresses).
func (cn *conn) setMidStream() {
	cn.midStream = true
	for _, x := range cn.waiting() {
		if x.seq&linking.StreamFlag == 0 {
			x.seq = 0
			x.noKey = x.tcpSeq == 0
		}
	}
	cn.nreq = 0
}

// key returns the key x is looked up by: its ordinal or stream when it has
// one (both agents saw its connection start), else its TCP key.
func (x *exchange) key() uint64 {
	if x.seq != 0 {
		return x.seq
	}
	return x.tcpSeq
}

// startLink looks up the client of server request x, seen at seen, when it
// is on another node. The request's span waits for the answer (see export)
// for LinkWait from when this agent read it (linkClock), or from seen if
// that is later.
func (c *Correlator) startLink(x *exchange, seen time.Time) {
	cn := x.conn
	if c.cfg.Linker == nil || x.asked || (x.key() == 0 && !x.noKey) || cn.role != roleServer || x.hasRemote || x.parent != nil || x.fixed || !validTuple(cn.tuple) {
		return
	}
	if !c.cfg.Linker.Remote(cn.tuple.Remote.Addr()) {
		return
	}
	x.asked = true
	if x.noKey {
		c.m.countLink(linking.NoKey)
		return
	}
	c.popSettled()
	if c.nLinkWaiting >= maxLinkWaiting || len(c.linkQueue)-c.linkHead >= 4*maxLinkWaiting {
		c.m.countLink(linking.Dropped)
		return
	}
	q := linking.Query{Local: cn.tuple.Remote, Remote: cn.tuple.Local, Seq: x.seq, TCPSeq: x.tcpSeq}
	deadline := later(seen, c.linkClock()).Add(c.cfg.LinkWait)
	r := c.cfg.Linker.Lookup(q, deadline, x)
	if r != linking.Pending {
		c.m.countLink(r)
		return
	}
	x.linkWait, x.linkQueued = true, true
	c.nLinkWaiting++
	c.linkQueue = append(c.linkQueue, linkWaiter{x: x, deadline: deadline})
}

// linkClock is the time by Config.Now.
func (c *Correlator) linkClock() time.Time {
	if c.cfg.Now != nil {
		return c.cfg.Now()
	}
	return time.Now()
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// linkWaiter is a server request waiting for a lookup, in the queue of
// those (in the order asked, which is the order of their deadlines).
type linkWaiter struct {
	x        *exchange
	deadline time.Time
}

// popSettled drops the settled requests at the head of the queue, and
// compacts it when its dead head is most of it.
func (c *Correlator) popSettled() {
	for c.linkHead < len(c.linkQueue) && !c.linkQueue[c.linkHead].x.linkWait {
		c.unqueue(c.linkQueue[c.linkHead].x)
		c.linkQueue[c.linkHead] = linkWaiter{}
		c.linkHead++
	}
	if c.linkHead > 1024 && c.linkHead > len(c.linkQueue)/2 {
		n := copy(c.linkQueue, c.linkQueue[c.linkHead:])
		clear(c.linkQueue[n:])
		c.linkQueue, c.linkHead = c.linkQueue[:n], 0
	}
}

// unqueue records that the queue of lookups no longer holds x, and
// reuses x if nothing else does (reuse).
func (c *Correlator) unqueue(x *exchange) {
	x.linkQueued = false
	if x.exported {
		c.reuse(x)
	}
}

// startLinks looks up the server requests of a connection whose addresses
// have just become known (at seen).
func (c *Correlator) startLinks(cn *conn, seen time.Time) {
	for _, x := range cn.waiting() {
		c.startLink(x, seen)
	}
}

// LinkDone implements linking.Waiter: the answer of x's lookup, from the
// linker's goroutine.
func (x *exchange) LinkDone(a linking.Answer, r linking.Result) {
	c := x.conn.c
	c.mu.Lock()
	defer c.mu.Unlock()
	x.linkDelivered = true
	if !x.linkWait {
		return // given up already (counted as a timeout)
	}
	c.settle(x, a, r)
}

// LinkSettler implements linking.BatchWaiter: the answers of a batch are
// taken under one lock.
func (x *exchange) LinkSettler() linking.Settler { return x.conn.c }

// LinkDoneAll implements linking.Settler: the answers of lookups of this
// correlator's exchanges, from the linker's goroutine.
func (c *Correlator) LinkDoneAll(ds []linking.Done) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, d := range ds {
		x := d.W.(*exchange)
		x.linkDelivered = true
		if x.linkWait {
			c.settle(x, d.A, d.R)
		}
	}
}

// settle ends the wait of x with result r and exports what waited for it.
func (c *Correlator) settle(x *exchange, a linking.Answer, r linking.Result) {
	x.linkWait = false
	c.nLinkWaiting--
	if r == linking.Linked && !x.hasRemote && x.parent == nil && !x.fixed {
		x.hasRemote, x.remoteTrace, x.remoteSpan = true, a.TraceID, a.SpanID
	} else if r == linking.Linked {
		r = linking.NotFound // linked on this node meanwhile, or fixed
	}
	c.m.countLink(r)
	if x.selfHeld {
		x.selfHeld = false
		c.export(x, x.heldEnd, x.heldReason)
	}
	deps := x.dependents
	x.dependents = nil
	for _, h := range deps {
		c.export(h.x, h.end, h.reason)
	}
}

// expireLinks gives up the lookups that took longer than the wait.
func (c *Correlator) expireLinks(now time.Time) {
	for ; c.linkHead < len(c.linkQueue); c.linkHead++ {
		w := c.linkQueue[c.linkHead]
		if w.x.linkWait && now.Before(w.deadline) {
			break
		}
		c.linkQueue[c.linkHead] = linkWaiter{}
		c.unqueue(w.x)
		if w.x.linkWait {
			c.settle(w.x, linking.Answer{}, linking.Timeout)
		}
	}
	c.popSettled()
}

// flushLinks gives up every lookup (at shutdown).
func (c *Correlator) flushLinks() {
	for _, w := range c.linkQueue[c.linkHead:] {
		c.unqueue(w.x)
		if w.x.linkWait {
			c.settle(w.x, linking.Answer{}, linking.Timeout)
		}
	}
	clear(c.linkQueue)
	c.linkQueue, c.linkHead = c.linkQueue[:0], 0
}

// linkRoot returns the exchange waiting for a lookup that x's trace
// depends on (x itself, or a local ancestor), or nil.
func linkRoot(x *exchange) *exchange {
	for d := 0; x != nil && d < maxParentDepth; d++ {
		if x.linkWait {
			return x
		}
		if x.hasRemote {
			return nil
		}
		x = x.parent
	}
	return nil
}

// holdForLink holds the span of x until the lookup its trace depends on
// ends, and reports whether it did.
func (c *Correlator) holdForLink(x *exchange, end time.Time, reason string) bool {
	r := linkRoot(x)
	if r == x && !x.selfHeld {
		// The usual case: the request's own span, kept without
		// allocating.
		x.selfHeld, x.heldEnd, x.heldReason = true, end, reason
		return true
	}
	if r == nil || len(r.dependents) >= maxLinkDependents {
		return false
	}
	r.dependents = append(r.dependents, heldExchange{x: x, end: end, reason: reason})
	return true
}

// indexLocal records cn under its local address (see answer). A
// connection it displaces can no longer be found by its local address:
// its remembered requests go to the table (closeSent).
func (c *Correlator) indexLocal(cn *conn) {
	if c.byLocal != nil && validTuple(cn.tuple) {
		if old := c.byLocal[cn.tuple.Local]; old != nil && old != cn {
			c.closeSent(old)
		}
		c.byLocal[cn.tuple.Local] = cn
	}
}

// unindexLocal undoes indexLocal, when cn is removed or changes its
// addresses: its remembered requests go to the table.
func (c *Correlator) unindexLocal(cn *conn) {
	c.closeSent(cn)
	if c.byLocal != nil && validTuple(cn.tuple) && c.byLocal[cn.tuple.Local] == cn {
		delete(c.byLocal, cn.tuple.Local)
	}
}

// closeSent moves the requests cn remembers for lookups (conn.sent) into
// the table of recent client requests, where a lookup finds them without
// the connection.
func (c *Correlator) closeSent(cn *conn) {
	if cn.sent != nil {
		c.recent.Close(cn.sent)
		cn.sent = nil
	}
}

// rememberClient keeps the span context of an ended client request for
// the lookups that arrive after it: in its connection's Sent while the
// connection is open (and indexed: its Sent goes to the table when it is
// not), else in the table. An Answer not Found marks a request whose
// span is held until its trace is settled: a lookup of it is not final
// yet (answer); its export replaces the mark.
func (c *Correlator) rememberClient(x *exchange, a linking.Answer, end time.Time) {
	cn := x.conn
	if c.recent == nil || cn.role != roleClient || !validTuple(cn.tuple) || x.key() == 0 || !c.cfg.Linker.Remote(cn.tuple.Remote.Addr()) {
		return // only another node's agent may ask
	}
	q := linking.Query{Local: cn.tuple.Local, Remote: cn.tuple.Remote, Seq: x.seq, TCPSeq: x.tcpSeq}
	if cn.sent == nil {
		if c.byLocal[cn.tuple.Local] != cn {
			// Not found by its address (removed, or displaced): a
			// Sent of its own would never be asked.
			c.recent.Add(q, a, end)
			return
		}
		if cn.sent = c.recent.NewSent(); cn.sent == nil {
			c.recent.Add(q, a, end) // too many open
			return
		}
	}
	cn.sent = c.recent.AddTo(cn.sent, q, a, end)
}

// Answer implements linking.Answerer: the client spans of requests on this
// node's sockets. A request not found is final once every collector's
// ring has been read past asked (the request, written before the query
// came, would be known by then); a request whose trace is not settled
// yet (its own server request waits for a lookup) is not found yet, and
// not final: the server asks again.
func (c *Correlator) Answer(qs []linking.Query, out []linking.Answer, asked time.Time) bool {
	return c.answerAt(qs, out, asked, c.linkClock())
}

func (c *Correlator) answerAt(qs []linking.Query, out []linking.Answer, asked, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	final := c.passed(asked, now)
	// A batch holds runs of one connection's queries: its conn is looked
	// up once a run.
	var cn *conn
	for i, q := range qs {
		if i == 0 || q.Local != qs[i-1].Local || q.Remote != qs[i-1].Remote {
			cn = c.clientConn(q)
		}
		var unsettled bool
		out[i], unsettled = c.answer(q, cn, now)
		final = final && !unsettled
	}
	return final
}

// clientConn returns the connection q names, if any: a client
// connection's waiting requests are matched (answer), and any connection's
// remembered ones (conn.sent: each request's own address is checked).
func (c *Correlator) clientConn(q linking.Query) *conn {
	cn := c.byTuple[events.Tuple{Local: q.Local, Remote: q.Remote}]
	if cn == nil {
		// The destination may have been rewritten on the way (a
		// ClusterIP Service's DNAT): the client's own address and
		// port name its connection alone.
		cn = c.byLocal[q.Local]
	}
	return cn
}

// answer returns the client span of q, whose connection is cn (nil:
// none); unsettled when the request is known but its trace is not yet.
func (c *Correlator) answer(q linking.Query, cn *conn, now time.Time) (a linking.Answer, unsettled bool) {
	var sent *linking.Sent
	if cn != nil {
		if cn.role == roleClient && !cn.ignored {
			if x := cn.match(q); x != nil {
				if linkRoot(x) != nil {
					return linking.Answer{}, true
				}
				return linking.Answer{Found: true, TraceID: c.traceOf(x, 0), SpanID: x.spanID}, false
			}
		}
		sent = cn.sent
	}
	if c.recent != nil {
		if a, ok := c.recent.GetFrom(sent, q, now); ok {
			return a, !a.Found
		}
	}
	return linking.Answer{}, false
}

// match returns the request of cn (in cn.waiting's order, without building
// that list: it runs for every query) that q names: by its TCP key first,
// else by its ordinal or stream.
func (cn *conn) match(q linking.Query) *exchange {
	var bySeq *exchange
	for x := range cn.eachWaiting() {
		if q.TCPSeq != 0 && x.tcpSeq == q.TCPSeq {
			return x
		}
		if q.Seq != 0 && x.seq == q.Seq && bySeq == nil {
			bySeq = x
		}
	}
	return bySeq
}
