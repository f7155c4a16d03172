package correlator

import (
	"container/list"
	"iter"
	"slices"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/periscope-apm/periscope/correlator/httpspan"
	"github.com/periscope-apm/periscope/correlator/protocol"
	"github.com/periscope-apm/periscope/correlator/protocols/db"
	"github.com/periscope-apm/periscope/events"
	"github.com/periscope-apm/periscope/linking"
)

// role is the traced process's side of a connection.
type role uint8

const (
	roleUnknown role = iota
	roleServer       // the process read the first bytes: it serves requests
	roleClient       // the process wrote the first bytes: it sends requests
)

// conn is the state of one connection.
type conn struct {
	c    *Correlator
	id   events.ConnID
	ps   *procState
	elem *list.Element

	lastActive time.Time
	since      time.Time // its first event
	// silenceAt: a socket's connection that a TLS library's reports from
	// then on (silenced); its records from then on are dropped.
	silenceAt time.Time
	role      role
	scheme    string // url.scheme; "https" while all data comes from TLS libraries
	// plain connections' bytes are the socket's own (the sockets
	// collector); another collector's report of the same connection
	// wins (see silenced).
	plain bool

	bound    bool
	fd       int32
	tuple    events.Tuple
	peerAddr string // tuple.Remote's address, formatted once
	// mirrorConn is the connection of the mirror image of tuple when
	// Correlator.tuples was mirrorAt (Correlator.mirror).
	mirrorConn *conn
	mirrorAt   uint64

	proto   protocol.Protocol // once detected
	dec     protocol.Decoder
	pending []*exchange // requests waiting for their response, oldest first
	// held are finished exchanges waiting for the connection's socket
	// (Config.BindGrace), a sure name or a peer (finish), oldest first.
	held []heldExchange
	// recent are the client exchanges of a connection to this node whose
	// spans are exported without their server end seen yet, oldest first: the server's bytes may come through another
	// collector's ring and be read later (Correlator.Ring).
	recent []heldExchange
	// unpaired is when the last server request whose span left without
	// its client end began (pair).
	unpaired time.Time
	// ignored connections speak no known protocol, broke it or left it
	// (upgrade): their data is dropped until a Bind changes the socket.
	ignored bool
	// multiplexed connections (HTTP/2) carry concurrent requests whose
	// order says nothing about which is which: they pair by stream.
	multiplexed bool
	tid         uint32 // thread of the data being parsed
	goroutine   uint32 // its Go goroutine (low 32 bits of runtime.g), or 0
	// undecided counts the chunks that no protocol could decide on.
	undecided int
	// repeatWrite counts written bytes still to come that repeat bytes
	// already parsed (see events.WriteResult).
	repeatWrite int
	// readEnd is the TCP sequence number after the last byte read, once
	// readEndKnown (plaintext reads, which carry their sequence): a read
	// whose bytes end at or before it repeats bytes already parsed.
	readEnd      uint32
	readEndKnown bool
	// writeEnd is the same for writes: the sequence number after the
	// last byte written (follow).
	writeEnd      uint32
	writeEndKnown bool
	// restart: bytes were lost; decoding restarts at a request
	// (protocol.Restarter, Correlator.restarts).
	restart restartWait
	// retrans are the recent TCP retransmissions of the connection's
	// socket, oldest first (see retransmit.go).
	retrans []retransmitMark
	// nreq counts the requests begun on the connection (link.go);
	// midStream says the connection was open before it was seen, so that
	// nreq does not count from its first request.
	nreq      uint64
	midStream bool
	// chunkSeq is the TCP sequence number of the request chunk being
	// decoded, free while no request has begun in it yet and it was
	// captured whole (link.go: a request's TCP key).
	chunkSeq  uint32
	chunkFree bool
	// sent are the ended requests of a client connection to another
	// node, kept for lookups while it is open (link.go).
	sent *linking.Sent
}

// restartWait is what a connection waits for to be decoded again after
// bytes were lost.
type restartWait uint8

const (
	restartNone       restartWait = iota
	restartAtRequest              // the next call that starts a request
	restartAfterReply             // a reply, then restartAtRequest
)

// heldExchange is a finished exchange whose span is not built yet.
type heldExchange struct {
	x      *exchange
	end    time.Time
	reason string
}

// waiting returns the exchanges that may still be paired with the other
// end of the connection: the recent ones, the held ones, then the pending
// ones.
func (cn *conn) waiting() []*exchange {
	if len(cn.held) == 0 && len(cn.recent) == 0 {
		return cn.pending
	}
	out := make([]*exchange, 0, len(cn.recent)+len(cn.held)+len(cn.pending))
	for x := range cn.eachWaiting() {
		out = append(out, x)
	}
	return out
}

// eachWaiting yields what waiting returns, in its order, without building
// the list.
func (cn *conn) eachWaiting() iter.Seq[*exchange] {
	return func(yield func(*exchange) bool) {
		for _, h := range cn.recent {
			if !yield(h.x) {
				return
			}
		}
		for _, h := range cn.held {
			if !yield(h.x) {
				return
			}
		}
		for _, x := range cn.pending {
			if !yield(x) {
				return
			}
		}
	}
}

// keepRecent keeps client exchange x, exported at end without its server
// end, for pairing while a ring may still bring that; paired ones and
// those all rings have been read past leave.
func (cn *conn) keepRecent(x *exchange, end time.Time) {
	kept := cn.recent[:0]
	for _, h := range cn.recent {
		if h.x.peer == nil && cn.c.behind(h.end) {
			kept = append(kept, h)
		}
	}
	clear(cn.recent[len(kept):])
	if len(kept) >= maxHeldPerConn {
		kept = append(kept[:0], kept[1:]...)
		cn.c.m.waitsCut.Inc()
	}
	cn.recent = append(kept, heldExchange{x: x, end: end})
}

// exchange is one request and its response.
type exchange struct {
	conn  *conn
	proto protocol.Protocol
	px    protocol.Exchange // the protocol's own record
	start time.Time
	tid   uint32
	// goroutine is the goroutine (low 32 bits of its runtime.g) of a Go
	// server request seen whole, or of a Go program's client call; 0
	// otherwise.
	goroutine uint32
	ended     time.Time      // when it finished
	waiting   []heldExchange // children whose export waits for this one (export)

	spanID  trace.SpanID
	traceID trace.TraceID // own trace, when there is no parent; set lazily

	// The parent: either a remote span from traceparent, or an exchange
	// traced here (same thread, or the client end of the connection).
	hasRemote   bool
	remoteTrace trace.TraceID
	remoteSpan  trace.SpanID
	parent      *exchange

	peer  *exchange // the exchange at the other end of the connection
	whole wholeKey  // set for requests seen whole (request.go)
	// onThread: a server exchange counted in flight on its thread.
	onThread bool
	fixed    bool // the trace ID was used: the exchange may not be re-parented
	done     bool
	// recycle: px is an HTTP/1 exchange its decoder has let go of, put
	// back in its pool once the span is exported (export).
	recycle bool
	// adopted: another exchange has taken this one as its parent, and
	// reads it until its own span is built: it is never reused (reuse).
	adopted bool
	// byGoroutine: procState.goroutines holds it, a server request seen
	// whole, for the calls its goroutine makes (serveOn, goParent).
	byGoroutine bool

	// Cross-node linking (link.go): seq names the request on its
	// connection; asked says it was looked up, linkWait that the answer
	// is awaited, and dependents are the spans held until it comes.
	seq      uint64
	tcpSeq   uint64 // its key by TCP sequence, | linking.TCPSeqFlag, or 0 (link.go)
	asked    bool
	noKey    bool // no key: the connection was open before it was seen (link.go)
	linkWait bool
	// linkQueued: it is in the correlator's queue of lookups (linkQueue);
	// linkDelivered: the linker has handed it back (LinkDone) and holds
	// it no more; exported: its span has left (export) and no connection
	// keeps it. An asked exchange is reused only with all three settled
	// (reuse, unqueue).
	linkQueued    bool
	linkDelivered bool
	exported      bool
	dependents    []heldExchange
	// selfHeld: the exchange's own span waits (with its end and reason).
	selfHeld   bool
	heldEnd    time.Time
	heldReason string
}

// adopt makes p x's parent.
func (x *exchange) adopt(p *exchange) {
	x.parent = p
	p.adopted = true
}

// maxFreeExchanges bounds the exported exchanges kept for reuse (reuse):
// as many as may be held. A loopback server's spans are held until the
// rings are read past them (awaitsPeer), up to maxHeld, and leave together;
// with fewer kept, most of the next round's requests allocated their
// exchange (redis-server under redis-benchmark -P16 held some 10,000 and
// allocated half the agent's bytes there). At most some 5 MB stay.
const maxFreeExchanges = maxHeld

// newExchange returns an exchange to fill: one exported and let go of
// (reuse), else a new one.
func (c *Correlator) newExchange() *exchange {
	if n := len(c.freeX); n > 0 {
		x := c.freeX[n-1]
		c.freeX[n-1] = nil
		c.freeX = c.freeX[:n-1]
		return x
	}
	return new(exchange)
}

// reuse keeps exchange x, whose span has just been exported, for a later
// request, when nothing may read it any more: no other exchange points at
// it (a child's parent, a peer, a waiting child or dependent), no table
// or list holds it (a goroutine's request seen whole, a thread in flight,
// a lookup asked, a connection's recent client exchanges) and it is done
// (Correlator.whole holds requests seen whole until then). A request's
// exchange was the agent's one allocation per span. A request looked up
// on another node is reused once the linker has handed it back and the
// queue of lookups has let go of it (unqueue calls reuse again then); a
// Go server request once its goroutine serves another (unGo).
func (c *Correlator) reuse(x *exchange) {
	if !x.done || x.byGoroutine || x.adopted || x.peer != nil || x.asked && (!x.linkDelivered || x.linkQueued) || x.linkWait || x.selfHeld ||
		x.onThread || len(x.waiting) > 0 || len(x.dependents) > 0 || len(c.freeX) >= maxFreeExchanges {
		return
	}
	*x = exchange{}
	c.freeX = append(c.freeX, x)
}

// maxUndecided bounds the chunks dropped while a protocol may still claim
// a connection found after its start.
const maxUndecided = 64

// start detects the protocol and the role from the first data and
// creates the decoder. It reports false when no protocol has decided yet.
func (cn *conn) start(dir events.Direction, first []byte) bool {
	p, d := cn.c.protocols.Detect(first, dir)
	switch {
	case d.Verdict == protocol.Undecided && cn.undecided < maxUndecided:
		cn.undecided++
		return false
	case p == nil:
		cn.c.m.notHTTP.Inc()
		cn.ignored = true
		return false
	}
	cn.proto = p
	cn.role = roleServer
	if d.Role == protocol.Client {
		cn.role = roleClient
	}
	cn.dec = p.NewDecoder(d.Role, cn)
	return true
}

// info is what the protocols know of the connection.
func (cn *conn) info() protocol.Conn {
	r := protocol.Server
	if cn.role == roleClient {
		r = protocol.Client
	}
	return protocol.Conn{Role: r, Scheme: cn.scheme, Bound: cn.bound, Local: cn.tuple.Local, Remote: cn.tuple.Remote, PeerAddr: cn.peerAddr}
}

// Info implements protocol.ConnInfo.
func (cn *conn) Info() protocol.Conn { return cn.info() }

// Begin implements protocol.Handler.
func (cn *conn) Begin(px protocol.Exchange) {
	c := cn.c
	x := c.newExchange()
	*x = exchange{conn: cn, proto: cn.proto, px: px, start: px.Start(), tid: cn.tid, spanID: c.newSpanID()}
	if _, ok := px.Stream(); ok {
		cn.multiplexed = true
	}
	cn.nextSeq(x)
	limit := maxPendingPerConn
	if cn.multiplexed {
		limit = protocol.MaxStreams
	}
	if len(cn.pending) >= limit {
		old := cn.pending[0]
		cn.pending = cn.pending[1:]
		c.finish(old, x.start, reasonEvicted)
	}
	cn.pending = append(cn.pending, x)

	switch cn.role {
	case roleServer:
		if tid, sid, ok := parseTraceParent(px.TraceParent()); ok {
			x.hasRemote, x.remoteTrace, x.remoteSpan = true, tid, sid
		}
		cn.ps.enterThread(x)
	case roleClient:
		if p := cn.ps.threadParent(x.tid); p != nil {
			x.adopt(p)
		} else {
			x.goroutine = cn.goroutine // linked when it ends (goParent)
		}
	}
	c.linkByTuple(cn)
	c.startLink(x, x.start)
}

// End implements protocol.Handler.
func (cn *conn) End(px protocol.Exchange, end time.Time, reason string) {
	for i, x := range cn.pending {
		if x.px != px {
			continue
		}
		// The array stays for the connection's next requests.
		cn.pending = slices.Delete(cn.pending, i, i+1)
		x.recycle = reason == "" && letGo(px)
		cn.c.finish(x, end, reason)
		return
	}
}

// letGo reports whether an exchange that ended complete is left to the
// correlator alone: an HTTP/1 exchange (no stream: HTTP/2's keep theirs)
// whose request and response were both parsed to their end, so that
// neither parser writes into its storage any more; a database exchange
// from a pool (its decoder popped it from its queue before ending it).
func letGo(px protocol.Exchange) bool {
	switch x := px.(type) {
	case *httpspan.Exchange:
		return x.StreamID == 0 && x.Req != nil && x.Req.Complete && x.Resp != nil && x.Resp.Complete
	case *db.Exchange:
		return x.Pooled()
	}
	return false
}
