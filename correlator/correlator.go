package correlator

import (
	"container/list"
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/periscope-apm/periscope/correlator/httpparse"
	"github.com/periscope-apm/periscope/correlator/httpspan"
	"github.com/periscope-apm/periscope/correlator/protocol"
	"github.com/periscope-apm/periscope/correlator/protocols/db"
	"github.com/periscope-apm/periscope/events"
	"github.com/periscope-apm/periscope/internal/beat"
	"github.com/periscope-apm/periscope/internal/ktime"
	"github.com/periscope-apm/periscope/linking"
	"github.com/periscope-apm/periscope/span"
)

// ProcessResolver names the process behind a PID.
// metadata.Processes implements it.
type ProcessResolver interface {
	// Process returns the identity of the process. The correlator calls
	// it when it first sees a PID and again for every span, so that an
	// identity that changes (the process's Kubernetes pod deleted, say)
	// applies to the later spans: it must be cheap, and return the same
	// *span.Process while the identity does not change (exporters cache
	// resources by it). It may return nil: the last identity then stays.
	Process(pid uint32) *span.Process
}

// NameAwaiter is a ProcessResolver that knows when a process's name is
// still on its way (metadata.Processes.Awaiting, which waits on process
// discovery's ktime.Progress): its spans then wait past Config.BindGrace,
// up to maxHold.
type NameAwaiter interface {
	Awaiting(pid uint32) bool
}

// maxHold bounds how long after its end a span waits: for its process's
// name, or for rings that lag (Ring).
const maxHold = 5 * time.Second

// holdTick is how often Run releases held spans whose wait is over.
const holdTick = 20 * time.Millisecond

// awaitingName reports whether the name of a process that has none yet
// may still come.
func (c *Correlator) awaitingName(ps *procState) bool {
	w, ok := c.procs.(NameAwaiter)
	return ok && c.unnamed(ps) && w.Awaiting(ps.pid)
}

// maxPendingPerConn bounds the requests waiting for a response on one
// connection; past it the oldest is ended as evicted.
const maxPendingPerConn = 64

// maxHeldPerConn bounds the finished exchanges of one connection kept
// while they wait (held: for a socket, a name or a peer; recent: client
// spans still pairable). Their wait is a ring's lag (a reader's poll
// interval, more when the agent is starved of CPU) times the connection's
// request rate: a database client's batch or a pipelining client finishes
// thousands of requests in that time. Past it the oldest leaves without
// its peer, counted (periscope_span_waits_cut_total).
const maxHeldPerConn = 4096

// maxHeld bounds the finished exchanges held across all connections: a
// busy server's connections each within maxHeldPerConn still hold their
// request rate times the rings' lag, and an agent short of CPU lags by
// seconds (redis-server under a pipelining client: 50 connections × 4096
// held exchanges, some 120 MB). Past it a connection's oldest held
// exchange, or the finishing one when it holds none, leaves without its
// wait, counted like maxHeldPerConn's.
const maxHeld = 16384

// Correlator turns collector events into spans. It implements events.Sink.
// Its methods may be called from several goroutines (typically the event
// reader and the goroutine running Run).
type Correlator struct {
	cfg   Config
	exp   span.Exporter
	spans span.Pool // span records, back once every exporter is done
	procs ProcessResolver
	log   *slog.Logger
	m     *metrics

	protocols protocol.Registry
	// whole describes the requests seen whole by language probes.
	wholeSem wholeHTTP
	// spent stands for the exchanges recycled after export (recycle):
	// empty, never written.
	spent *httpspan.Exchange

	mu      sync.Mutex
	rng     *rand.ChaCha8
	pids    map[uint32]*procState
	byTuple map[events.Tuple]*conn
	// tuples counts the changes of byTuple and of the connections'
	// tuples: a connection's mirror looked up at another count is looked
	// up again (mirror).
	tuples  uint64
	lru     *list.List // of *conn; front = most recently active
	nconns  int
	holding map[*conn]struct{} // connections with held exchanges
	nheld   int                // their held exchanges, all connections (maxHeld)
	// leaving is an array for the held exchanges that releaseDue lets out.
	leaving []heldExchange
	// caughtAt is the rings' least progress when caught last looked.
	caughtAt uint64
	// lingering are removed connections whose recent or held exchanges
	// may still pair with the other end read late: they stay in byTuple
	// until every ring is read past the time given (see passed).
	lingering map[*conn]time.Time
	// ended are the exits and execs read before every ring was read
	// past them, oldest first (programEnded).
	ended []programEnd
	// clock converts span times to the kernel's, and rings are the
	// progress of the collectors' rings the events come from (Ring).
	clock ktime.Clock
	rings []*ktime.Progress
	// whole are the requests seen whole by language-level probes that
	// have started and not ended, by process and ID (see request.go).
	whole map[wholeKey]*exchange
	// linkQueue[linkHead:] are the server requests asked about, in
	// order, nLinkWaiting of them still waiting for the answer; recent
	// the ended client requests other agents may ask about; byLocal the
	// connections by local address (link.go).
	// freeX are exported exchanges kept for reuse (conn.go: reuse).
	freeX        []*exchange
	linkQueue    []linkWaiter
	linkHead     int
	nLinkWaiting int
	recent       *linking.Recent
	byLocal      map[netip.AddrPort]*conn
}

// procState is what the correlator knows about one process.
type procState struct {
	pid   uint32
	proc  *span.Process
	conns map[uint64]*conn
	// threads are the process's threads that serve requests, by TID
	// (threadState); lastTID and last are the one used last: a server's
	// requests come in runs on one thread (an event loop's), and the
	// lookup is done twice a request.
	threads map[uint32]*threadState
	lastTID uint32
	last    *threadState
	// goroutines maps a Go program's goroutine (the low 32 bits of its
	// runtime.g) to the server request seen whole that it serves: Go runs
	// a goroutine on any thread, so its calls are linked by goroutine.
	goroutines map[uint32]*exchange
}

var _ events.Sink = (*Correlator)(nil)

// New returns a Correlator that sends finished spans to exp. procs may be
// nil (spans then carry only the PID), log may be nil (no logging) and reg
// may be nil (metrics are kept but not registered).
func New(cfg Config, exp span.Exporter, procs ProcessResolver, log *slog.Logger, reg prometheus.Registerer) (*Correlator, error) {
	if exp == nil {
		return nil, errors.New("correlator: nil exporter")
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.MaxConnections <= 0 {
		cfg.MaxConnections = DefaultMaxConnections
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("correlator: %w", err)
	}
	sem, err := httpspan.New(httpspan.Config{
		CaptureQuery:         cfg.CaptureQuery,
		SensitiveQueryParams: cfg.SensitiveQueryParams,
		CaptureHeaders:       cfg.CaptureHeaders,
		SensitiveHeaders:     cfg.SensitiveHeaders,
		RoutePatterns:        cfg.RoutePatterns,
	})
	if err != nil {
		return nil, fmt.Errorf("correlator: %w", err)
	}
	protocols, err := registry(sem, reg)
	if err != nil {
		return nil, fmt.Errorf("correlator: %w", err)
	}
	var seed [32]byte
	if _, err := crand.Read(seed[:]); err != nil {
		return nil, fmt.Errorf("correlator: seed span ID generator: %w", err)
	}
	c := &Correlator{
		cfg:       cfg,
		exp:       exp,
		procs:     procs,
		log:       log,
		m:         m,
		protocols: protocols,
		wholeSem:  wholeHTTP{sem},
		spent:     httpspan.NewExchange(httpparse.Message{}),
		rng:       rand.NewChaCha8(seed),
		pids:      make(map[uint32]*procState),
		byTuple:   make(map[events.Tuple]*conn),
		tuples:    1,
		lru:       list.New(),
		holding:   make(map[*conn]struct{}),
		lingering: make(map[*conn]time.Time),
		whole:     make(map[wholeKey]*exchange),
		clock:     ktime.NewClock(),
	}
	if cfg.Linker != nil {
		if c.cfg.LinkWait <= 0 {
			c.cfg.LinkWait = DefaultLinkWait
		}
		c.recent = linking.NewRecent(recentClients, recentClientTTL)
		c.byLocal = make(map[netip.AddrPort]*conn)
	}
	return c, nil
}

// Data handles a chunk of application bytes.
func (c *Correlator) Data(d events.Data) {
	if d.Dir != events.Read && d.Dir != events.Write {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()

	cn := c.connFor(d.Conn, d.Time)
	c.touch(cn, d.Time)
	if cn.ignored {
		return
	}
	if !cn.silenceAt.IsZero() && !d.Time.Before(cn.silenceAt) {
		c.supersede(cn) // see silenced
		return
	}
	if d.Dir == events.Write && cn.repeatWrite > 0 {
		if !skipRepeat(&d, &cn.repeatWrite) {
			return
		}
	}
	if !d.HasSeq {
		cn.forget(d.Dir)
	} else if repeat, gap := cn.follow(d); repeat {
		c.m.peeked.Inc()
		return
	} else if gap > 0 && !c.lostBytes(cn, d, gap) {
		return
	}
	if cn.restart != restartNone && !cn.restarts(d) {
		c.m.lostBytes.Add(float64(d.Size)) // not decoded: no span tells of it
		return
	}
	if cn.dec == nil && !cn.start(d.Dir, d.Bytes) {
		return
	}
	cn.tid, cn.goroutine = d.TID, d.Goroutine
	side := protocol.SideOf(cn.info().Role, d.Dir)
	cn.chunkSeq, cn.chunkFree = d.Seq, d.HasSeq && side == protocol.Requests && len(d.Bytes) == d.Size
	err := cn.dec.Feed(side, protocol.Chunk{Bytes: d.Bytes, Size: d.Size, Tail: d.Tail, Time: d.Time})
	cn.chunkFree = false
	switch {
	case err != nil:
		c.giveUp(cn, err, d.Time)
	case cn.dec.Left() && !c.switchProtocol(cn, d.Time):
		// The connection carries another protocol from now on.
		cn.ignored = true
		c.endPending(cn, d.Time, reasonClosed)
	}
}

// switchProtocol moves a connection whose decoder left its protocol for
// another one it decodes (an HTTP/1.1 upgrade to h2c) to that protocol's
// decoder, and reports whether it did.
func (c *Correlator) switchProtocol(cn *conn, t time.Time) bool {
	sw, ok := cn.dec.(protocol.Switcher)
	if !ok {
		return false
	}
	p, dec, rest := sw.Switched()
	if dec == nil {
		return false
	}
	cn.proto, cn.dec = p, dec
	// The request that switched is named by its new stream now: the
	// other end's may pair with it by that (it may have switched first).
	c.linkByTuple(cn)
	for _, r := range rest {
		if err := dec.Feed(r.Side, r.Chunk); err != nil {
			c.giveUp(cn, err, t)
			break
		}
	}
	return true
}

// WriteResult handles a write the TLS library took only part of: the rest
// will be written again and must not be parsed twice.
func (c *Correlator) WriteResult(r events.WriteResult) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cn := c.lookup(r.Conn); cn != nil && r.Requested > r.Accepted {
		cn.repeatWrite += r.Requested - r.Accepted
	}
}

// follow tracks where the bytes of d's direction end (plaintext records,
// which carry their TCP sequence) and reports whether read d only repeats
// bytes of its connection already read, and how many bytes of its
// direction were lost before it.
//
// A repeat is a MSG_PEEK read (curl peeks one byte to see whether an idle
// HTTP/2 connection is alive; the bytes are read again): the sockets
// collector gives it a sequence before its bytes' (the socket's
// copied_seq did not move), so it ends at or before where the last read
// ended. Decoding it would shift every frame boundary after it. A write
// that ends there is the rest of a partial write, parsed already
// (skipRepeat).
//
// A gap is a record that starts past where the last one ended: the
// records between were lost (the ring buffer was full). Every call that
// moves a socket's bytes has its record, with its whole size even when
// its bytes are cut short (Size) or not copied at all (sendfile), so
// nothing else leaves one. A partial write's record claims more than the
// socket took: its rest, written again, overlaps, and a write's end never
// moves back, so no gap follows either.
func (cn *conn) follow(d events.Data) (repeat bool, gap uint32) {
	end := d.Seq + uint32(d.Size)
	last, known := &cn.readEnd, &cn.readEndKnown
	if d.Dir == events.Write {
		last, known = &cn.writeEnd, &cn.writeEndKnown
	}
	if !*known {
		*last, *known = end, true
		return false, 0
	}
	if int32(end-*last) <= 0 {
		return d.Dir == events.Read, 0
	}
	if g := int32(d.Seq - *last); g > 0 {
		gap = uint32(g)
	}
	*last = end
	return false, gap
}

// forget forgets where the bytes of direction dir end: a record without
// its sequence (a TLS library's) moved some.
func (cn *conn) forget(dir events.Direction) {
	if dir == events.Write {
		cn.writeEndKnown = false
	} else {
		cn.readEndKnown = false
	}
}

// lostBytes handles gap bytes lost before record d on a connection (see
// follow, protocol.Restarter) and reports whether d is to be decoded.
func (c *Correlator) lostBytes(cn *conn, d events.Data, gap uint32) bool {
	c.m.gaps.Inc()
	c.m.lostBytes.Add(float64(gap))
	side := protocol.SideOf(cn.info().Role, d.Dir)
	wait := restartAtRequest
	if side == protocol.Requests {
		// The replies of the requests lost (and of those in flight)
		// are still to come: they must not pair with the next request.
		wait = restartAfterReply
	}
	if cn.restart != restartNone {
		cn.restart = max(cn.restart, wait)
		return true
	}
	if cn.dec == nil {
		return true // nothing decoded yet
	}
	if _, ok := cn.proto.(protocol.GapSkipper); ok {
		if err := cn.dec.Feed(side, protocol.Chunk{Size: int(gap), Time: d.Time}); err != nil {
			c.giveUp(cn, err, d.Time)
			return false
		}
		return true
	}
	c.endPending(cn, d.Time, reasonDataLost)
	if _, ok := cn.proto.(protocol.Restarter); !ok {
		cn.dec, cn.ignored = nil, true
		return false
	}
	if r, ok := cn.dec.(protocol.Resetter); ok {
		r.Reset()
	} else {
		cn.dec = nil
	}
	// The requests from here have no ordinal the other end agrees on
	// (requests lost or dropped until the restart); those before keep
	// theirs.
	cn.midStream, cn.nreq = true, 0
	cn.restart, cn.multiplexed = wait, false
	return true
}

// restarts reports whether d, after lost bytes, starts a request the
// connection is decoded again from, by a new decoder when its last one was
// not reset. That is the first request after a reply that followed the
// loss: a client has the replies it waits for before it sends more
// (keep-alive, synchronous clients, batch pipelines), so no reply to a
// request before it is still to come.
//
// Only the first record on the requests side after a reply may restart:
// it starts a call. A later one may be a later record of the same call (a
// large call comes as consecutive records of DATA_CAP bytes), and though
// it starts a request (it starts at a message boundary by chance), the
// requests of the call's earlier records, not decoded, are answered
// first: each of their replies would pair with a later request
// (redis-server under redis-cli --pipe, TestPipelineLostChunks). A call
// that does not start a request waits for the next reply.
func (cn *conn) restarts(d events.Data) bool {
	r := protocol.Server
	if cn.role == roleClient {
		r = protocol.Client
	}
	if protocol.SideOf(r, d.Dir) != protocol.Requests {
		cn.restart = restartAtRequest
		return false
	}
	if cn.restart != restartAtRequest {
		return false
	}
	if !cn.proto.(protocol.Restarter).StartsRequest(d.Bytes) {
		cn.restart = restartAfterReply
		return false
	}
	cn.restart = restartNone
	if cn.dec == nil {
		cn.dec = cn.proto.NewDecoder(r, cn)
	}
	return true
}

// skipRepeat drops from d the bytes that repeat earlier writes and reports
// whether anything new is left.
func skipRepeat(d *events.Data, repeat *int) bool {
	if d.Size <= *repeat {
		*repeat -= d.Size
		return false
	}
	skip := *repeat
	*repeat = 0
	d.Size -= skip
	d.Seq += uint32(skip)
	if skip >= len(d.Bytes) {
		d.Bytes = nil
	} else {
		d.Bytes = d.Bytes[skip:]
	}
	return true
}

// midStream tells whether the connection of bind b, its first, was open
// before the agent saw it: the bind says so (sockets, OpenSSL), or it is
// a Go connection (gotls: no word of its start) that FromStart says was
// not seen from its start.
func (c *Correlator) midStream(b events.Bind) bool {
	if b.Plaintext || b.StartKnown {
		return !b.StreamStart
	}
	return !c.fromStart(b.Conn.PID, b.Tuple, b.Time)
}

// fromStart applies Config.FromStart (without it, every connection was
// seen from its start).
func (c *Correlator) fromStart(pid uint32, tu events.Tuple, first time.Time) bool {
	return c.cfg.FromStart == nil || c.cfg.FromStart(pid, tu, first)
}

// Bind handles the socket and addresses of a connection.
func (c *Correlator) Bind(b events.Bind) {
	c.mu.Lock()
	defer c.mu.Unlock()

	cn := c.lookup(b.Conn)
	if cn != nil && cn.bound && (cn.fd != b.FD || validTuple(cn.tuple) && validTuple(b.Tuple) && cn.tuple != b.Tuple) {
		// A new socket behind a known key: a new connection.
		c.endConn(cn, b.Time, reasonClosed)
		c.remove(cn)
		cn = nil
	}
	if cn == nil {
		cn = c.connFor(b.Conn, b.Time)
	}
	c.touch(cn, b.Time)
	if !cn.bound && c.midStream(b) {
		cn.setMidStream() // its requests have no ordinal (link.go)
	}
	cn.bound = true
	cn.fd = b.FD
	if b.Plaintext {
		cn.plain, cn.scheme = true, "http"
	}
	if c.silenced(cn, b.Tuple) {
		return
	}
	if validTuple(b.Tuple) && b.Tuple != cn.tuple {
		if old, ok := c.byTuple[cn.tuple]; ok && old == cn {
			delete(c.byTuple, cn.tuple)
		}
		c.unindexLocal(cn)
		c.setTuple(cn, b.Tuple)
	}
	// Addresses that arrive after the first request may link it now.
	c.linkByTuple(cn)
	c.startLinks(cn, b.Time)
	c.release(cn)
}

// Close handles the close of a connection's socket.
func (c *Correlator) Close(e events.Close) {
	c.mu.Lock()
	defer c.mu.Unlock()

	cn := c.lookup(e.Conn)
	switch {
	case cn == nil:
	case e.Superseded:
		// The collector has left the connection to one that sees its
		// requests whole (gohttp): what it sent of them is no span.
		c.supersede(cn)
		c.remove(cn)
	default:
		c.endConn(cn, e.Time, reasonClosed)
		c.remove(cn)
	}
}

// Exit handles the exit of a process: its requests in flight end and all
// its state is freed (programEnded).
func (c *Correlator) Exit(e events.Exit) { c.programEnded(e.PID, e.Time) }

// Exec handles an exec: the connections of the process's old program are
// gone as if it had exited (they were its memory's); connections active
// after the exec are the new program's and stay. The process resolver
// learns of the exec separately.
func (c *Correlator) Exec(e events.Exec) { c.programEnded(e.PID, e.Time) }

// programEnd is the end of a process's program: its exit or an exec.
type programEnd struct {
	pid uint32
	t   time.Time
}

// maxEnded bounds the program ends waiting for the rings; past it the
// oldest is applied at once.
const maxEnded = 4096

// programEnded ends the requests in flight of process pid's program, which
// exited or exec'd at t, once every ring has been read past t (Ring), at
// most maxHold after t. Every collector's ring carries the exits and execs
// of the processes it traced, and one ring's marker may be read before
// another ring's last records of the program: a Go client's last call ends
// in gohttp's ring just before the process exits, and gotls's exit marker,
// read first, would end that call without its response (no span) and leave
// its end unmatched.
func (c *Correlator) programEnded(pid uint32, t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.behind(t) && len(c.ended) == 0 {
		c.endProgram(pid, t)
		return
	}
	if len(c.ended) >= maxEnded {
		c.endProgram(c.ended[0].pid, c.ended[0].t)
		c.ended = append(c.ended[:0], c.ended[1:]...)
	}
	c.ended = append(c.ended, programEnd{pid: pid, t: t})
	c.endDue(t)
}

// endDue applies, in order, the program ends every ring has been read past
// or that waited maxHold.
func (c *Correlator) endDue(now time.Time) {
	n := 0
	for n < len(c.ended) && (!c.behind(c.ended[n].t) || now.Sub(c.ended[n].t) >= maxHold) {
		c.endProgram(c.ended[n].pid, c.ended[n].t)
		n++
	}
	if n > 0 {
		rest := copy(c.ended, c.ended[n:])
		clear(c.ended[rest:])
		c.ended = c.ended[:rest]
	}
}

// endProgram ends the requests in flight of a process's program that ended
// at t, and frees their state: the connections last active before t (a
// later one is a new program's, after an exec or the PID's reuse).
func (c *Correlator) endProgram(pid uint32, t time.Time) {
	ps := c.pids[pid]
	if ps == nil {
		return
	}
	for _, cn := range ps.conns {
		if cn.lastActive.After(t) {
			continue
		}
		c.endConn(cn, t, reasonExit)
		c.remove(cn) // frees ps with its last connection
	}
}

// Expire ends the requests of connections idle for longer than the idle
// timeout (error.type "timeout") and drops those connections' state. Call it
// periodically, or use Run.
func (c *Correlator) Expire(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()

	for e := c.lru.Back(); e != nil; {
		cn := e.Value.(*conn)
		if now.Sub(cn.lastActive) < c.cfg.IdleTimeout {
			break
		}
		e = e.Prev()
		c.endConn(cn, now, reasonTimeout)
		c.remove(cn)
	}
}

// Ring returns the progress of one more collector ring the correlator's
// events come from, for its reader to advance (ktime.Progress). The two
// ends of one request on this node, or a Go program's call and the request
// it serves, can travel in two rings and be read in any order: a span that
// waits for such a peer is held until every ring has been read past its
// end (at most maxHold), and an exported client span stays pairable as
// long. Without rings, events come from one source in order, and nothing
// waits for a peer.
//
// Each reader's batch then lets the held spans out that it was the last to
// hold back (caught), instead of Run's next tick: the exchanges it read are
// still in the CPU's caches, and with them their spans' other state.
func (c *Correlator) Ring() *ktime.Progress {
	p := new(ktime.Progress)
	p.OnCaught(c.caught)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rings = append(c.rings, p)
	return p
}

// caught exports the held spans whose wait is over, once a ring reader has
// handled a batch and the rings' least progress has moved since the last
// time (the readers of idle rings catch up at every tick: only the last of
// them finds work). Run's tick does the rest (ReleaseHeld).
func (c *Correlator) caught() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.nheld == 0 {
		return
	}
	least, _ := ktime.Least(c.rings)
	if least == c.caughtAt {
		return
	}
	c.caughtAt = least
	c.releaseAllDue(time.Now())
}

// behind reports whether a ring has not been read past t yet: an event of
// t's moment or before may still come from it.
func (c *Correlator) behind(t time.Time) bool {
	least, ok := ktime.Least(c.rings)
	return ok && least < c.clock.Mono(t)
}

// passed reports whether every ring has been read past t; without rings,
// whether now is past t.
func (c *Correlator) passed(t, now time.Time) bool {
	if len(c.rings) == 0 {
		return !now.Before(t)
	}
	return !c.behind(t)
}

// Run calls Expire every few seconds, and ReleaseHeld every holdTick (the
// spans held, Config.BindGrace, and the program ends waiting for the
// rings, programEnded), until ctx is done. Its ticks fall on the grid of
// the ring readers' timers (beat): one wake-up of the agent serves both.
func (c *Correlator) Run(ctx context.Context) error {
	interval := min(5*time.Second, max(c.cfg.IdleTimeout/4, 10*time.Millisecond))
	t := beat.NewTicker(interval)
	defer t.Stop()
	tick := holdTick
	if c.cfg.BindGrace > 0 {
		tick = min(c.cfg.BindGrace/2, holdTick)
	}
	ht := beat.NewTicker(tick)
	defer ht.Stop()
	var links <-chan time.Time
	var lt *beat.Ticker
	if c.cfg.Linker != nil {
		lt = beat.NewTicker(max(c.cfg.LinkWait/4, 5*time.Millisecond))
		defer lt.Stop()
		links = lt.C
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case now := <-t.C:
			c.Expire(now)
			t.Rearm()
		case now := <-ht.C:
			c.ReleaseHeld(now)
			ht.Rearm()
		case now := <-links:
			c.ExpireLinks(now)
			lt.Rearm()
		}
	}
}

// ReleaseHeld exports the held spans whose wait is over (finish, waits),
// and forgets the removed connections no late peer can pair with any more.
func (c *Correlator) ReleaseHeld(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.endDue(now)
	c.releaseAllDue(now)
	for cn, until := range c.lingering {
		if c.passed(until, now) || now.Sub(until) >= maxHold {
			delete(c.lingering, cn)
			if c.byTuple[cn.tuple] == cn {
				delete(c.byTuple, cn.tuple)
				c.tuples++
			}
		}
	}
}

// ExpireLinks exports, unlinked, the spans whose lookup took longer than
// Config.LinkWait. Run calls it.
func (c *Correlator) ExpireLinks(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expireLinks(now)
}

// releaseAllDue exports the held spans of every connection whose wait is
// over (releaseDue).
func (c *Correlator) releaseAllDue(now time.Time) {
	for cn := range c.holding {
		c.releaseDue(cn, now)
	}
}

// releaseDue exports the held spans of cn whose wait is over (the oldest
// ones), and keeps the others.
func (c *Correlator) releaseDue(cn *conn, now time.Time) {
	var grace time.Duration
	if !cn.bound || c.unnamed(cn.ps) {
		grace = c.cfg.BindGrace
	}
	naming := c.awaitingName(cn.ps)
	n := 0
	for n < len(cn.held) && c.due(cn.held[n].end, now, grace, naming) {
		n++
	}
	switch n {
	case 0:
	case len(cn.held):
		c.releaseHeld(cn, true)
	default:
		// The due ones leave through c.leaving (taken, so that an
		// export that came back here would not share it), the others
		// move to the front of cn.held's array: no allocation.
		due := append(c.leaving[:0], cn.held[:n]...)
		c.leaving = nil
		kept := copy(cn.held, cn.held[n:])
		clear(cn.held[kept:])
		cn.held = cn.held[:kept]
		c.nheld -= n
		for _, h := range due {
			c.export(h.x, h.end, h.reason)
		}
		c.leaving = keepHeld(due)
	}
}

// due reports whether a span held since end may leave; it waits at most
// maxHold: for its connection's socket, while a Bind may still come (grace
// is Config.BindGrace then, counted in the rings' time: a lagging ring
// delays the Bind too); for a sure name, while naming (the process resolver
// expects one); for a peer, until every ring is read past end.
func (c *Correlator) due(end, now time.Time, grace time.Duration, naming bool) bool {
	return now.Sub(end) >= maxHold || !naming && c.passed(end.Add(grace), now)
}

// Flush exports every held span at once (at shutdown).
func (c *Correlator) Flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.ended {
		c.endProgram(e.pid, e.t)
	}
	c.ended = nil
	c.flushLinks()
	for cn := range c.holding {
		c.releaseHeld(cn, true)
	}
}

// Connections returns the number of connections tracked.
func (c *Correlator) Connections() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nconns
}

// lookup returns the state of a connection, or nil.
func (c *Correlator) lookup(id events.ConnID) *conn {
	if ps := c.pids[id.PID]; ps != nil {
		return ps.conns[id.Key]
	}
	return nil
}

// connFor returns the state of a connection, creating it (and evicting the
// least recently active connection when at the cap).
func (c *Correlator) connFor(id events.ConnID, now time.Time) *conn {
	ps := c.pids[id.PID]
	if ps != nil {
		if cn := ps.conns[id.Key]; cn != nil {
			return cn
		}
	}
	for c.nconns >= c.cfg.MaxConnections && c.lru.Len() > 0 {
		old := c.lru.Back().Value.(*conn)
		c.endConn(old, now, reasonEvicted)
		c.remove(old)
	}
	if ps = c.pids[id.PID]; ps == nil {
		ps = &procState{
			pid:        id.PID,
			proc:       c.resolve(id.PID),
			conns:      make(map[uint64]*conn),
			threads:    make(map[uint32]*threadState),
			goroutines: make(map[uint32]*exchange),
		}
		c.pids[id.PID] = ps
	}
	cn := &conn{c: c, id: id, ps: ps, scheme: "https", lastActive: now, since: now}
	cn.elem = c.lru.PushFront(cn)
	ps.conns[id.Key] = cn
	c.nconns++
	c.m.tracked.Set(float64(c.nconns))
	return cn
}

func (c *Correlator) resolve(pid uint32) *span.Process {
	if c.procs != nil {
		if p := c.procs.Process(pid); p != nil {
			return p
		}
	}
	return &span.Process{
		PID:         pid,
		ServiceName: unknownService,
		Attributes:  []attribute.KeyValue{attribute.Int64("process.pid", int64(pid))},
	}
}

// unknownService is the service.name of a process whose identity is not
// known (OpenTelemetry's default).
const unknownService = "unknown_service"

// unnamed tells whether a process has no sure name yet: none, or a
// tentative one (span.Process.Tentative: read before an exec whose new
// program discovery has not named yet). Only a process that
// had no sure name when last seen asks the resolver again: a name, once
// sure, stays (processOf keeps the last identity), so finished exchanges
// of named processes do not pay a second lookup besides the span's own.
func (c *Correlator) unnamed(ps *procState) bool {
	return unsure(ps.proc) && unsure(c.processOf(ps))
}

func unsure(p *span.Process) bool { return p.ServiceName == unknownService || p.Tentative }

// processOf returns the identity of a connection's process for a span
// finishing now: the resolver's current one (see ProcessResolver).
func (c *Correlator) processOf(ps *procState) *span.Process {
	if c.procs != nil {
		if p := c.procs.Process(ps.pid); p != nil {
			ps.proc = p
		}
	}
	return ps.proc
}

func (c *Correlator) touch(cn *conn, t time.Time) {
	if t.After(cn.lastActive) {
		cn.lastActive = t
	}
	c.lru.MoveToFront(cn.elem)
}

// remove forgets a connection whose requests have been ended.
func (c *Correlator) remove(cn *conn) {
	if !c.awaitsPeers(cn) {
		c.release(cn)
	}
	ps := cn.ps
	if ps.conns[cn.id.Key] != cn {
		return
	}
	delete(ps.conns, cn.id.Key)
	if len(ps.conns) == 0 {
		delete(c.pids, ps.pid)
	}
	if validTuple(cn.tuple) && c.byTuple[cn.tuple] == cn {
		if len(cn.recent) > 0 || len(cn.held) > 0 {
			c.lingering[cn] = cn.lastActive
		} else {
			delete(c.byTuple, cn.tuple)
			c.tuples++
		}
	}
	c.unindexLocal(cn)
	c.lru.Remove(cn.elem)
	c.nconns--
	c.m.tracked.Set(float64(c.nconns))
	cn.dec = nil
}

// endConn ends everything in flight on a connection that is going away. A
// response delimited by the connection's end completes normally; other
// requests without a complete response end with error.type reason.
func (c *Correlator) endConn(cn *conn, t time.Time, reason string) {
	if !cn.ignored && cn.dec != nil {
		cn.dec.EOF(t) // may complete a response delimited by the close
	}
	c.endPending(cn, t, reason)
}

// endPending ends the requests of a connection that wait for a response.
func (c *Correlator) endPending(cn *conn, t time.Time, reason string) {
	pending := cn.pending
	cn.pending = nil
	for _, x := range pending {
		c.finish(x, t, reason)
	}
}

// giveUp stops parsing a connection after a parse error.
func (c *Correlator) giveUp(cn *conn, err error, t time.Time) {
	if errors.Is(err, protocol.ErrNotProtocol) {
		c.m.notHTTP.Inc()
		c.log.Debug("connection does not speak its protocol, ignoring it", "conn", cn.id, "protocol", cn.proto.Name(), "error", err)
	} else {
		c.m.parseErrors.Inc()
		c.log.Debug("parse error, ignoring the connection", "conn", cn.id, "protocol", cn.proto.Name(), "error", err)
	}
	cn.ignored = true
	cn.dec = nil
	c.endPending(cn, t, reasonParseError)
}

// finish ends an exchange and exports its span, or holds it while the
// connection's socket is not known (Config.BindGrace). reason is empty for
// a complete exchange.
func (c *Correlator) finish(x *exchange, end time.Time, reason string) {
	x.done, x.ended = true, end
	c.goParent(x)
	if x.whole != (wholeKey{}) {
		delete(c.whole, x.whole)
		c.forgetGoroutines(x.conn.ps)
		if x.px.(*httpspan.Exchange).Resp == nil && reason != reasonRequestErr {
			// A request seen whole whose end never came: an HTTP/2
			// stream or a hijacked connection (websocket), whose end
			// the probes do not see. Not an error of the application:
			// no span, only a count.
			c.m.noEnd.Inc()
			c.exportWaiting(x)
			return
		}
	}
	c.leaveThread(x)
	cn := x.conn
	// Held too: the span of a process that has no sure name yet. The
	// process exited before /proc could be read, or was last read before
	// an exec, and the exec event that names it travels in discovery's
	// ring, which may be read after this one. And a Go program's call
	// whose goroutine's request may not have been read yet (goParent),
	// and a server request whose client's may not be (awaitsPeer).
	if c.cfg.BindGrace > 0 && (!cn.bound || c.unnamed(cn.ps) || c.awaitsPeerAt(x, end)) {
		if len(cn.held) >= maxHeldPerConn || c.nheld >= maxHeld {
			c.m.waitsCut.Inc()
			if len(cn.held) == 0 {
				c.export(x, end, reason)
				return
			}
			h := cn.held[0]
			cn.held = cn.held[1:]
			c.nheld--
			c.export(h.x, h.end, h.reason)
		}
		cn.held = append(cn.held, heldExchange{x: x, end: end, reason: reason})
		c.nheld++
		c.holding[cn] = struct{}{}
		return
	}
	c.export(x, end, reason)
}

// exportWaiting exports the children that waited for x (export).
func (c *Correlator) exportWaiting(x *exchange) {
	waiting := x.waiting
	x.waiting = nil
	for _, w := range waiting {
		c.export(w.x, w.end, w.reason)
	}
}

// unsettled returns the nearest ancestor of x, ended at end, whose own
// parent is not settled yet (goWaits, peerMayCome), or nil.
func (c *Correlator) unsettled(x *exchange, end time.Time) *exchange {
	p := x.parent
	for depth := 0; p != nil && !p.fixed && depth < maxParentDepth; depth++ {
		if goWaits(p) || c.peerMayCome(p, end) {
			return p
		}
		p = p.parent
	}
	return nil
}

// maxWaitingChildren bounds the children that wait for a server request's
// client (peerMayCome): past it, they go without waiting.
const maxWaitingChildren = 64

// peerMayCome reports whether server request p, parent of a child that
// ended at end, may still be paired with its client: it waits for one
// (awaitsPeer), a ring has not been read past end yet, and not too many
// children wait already.
func (c *Correlator) peerMayCome(p *exchange, end time.Time) bool {
	return awaitsPeer(p) && c.behind(end) && len(p.waiting) < maxWaitingChildren
}

// goWaits reports whether x is a Go program's client call that has no
// parent yet: it and its children wait (finish, export) for the request
// of its goroutine to be read.
func goWaits(x *exchange) bool {
	return x.goroutine != 0 && x.parent == nil && x.whole == (wholeKey{}) && x.conn.role == roleClient
}

// goParent links a Go program's client call x, when it ends, to the server
// request its goroutine served at the time: the request's start and the
// call's travel in different rings, so the request may have been read
// after the call began. The request must have started before the call and
// not ended before it.
func (c *Correlator) goParent(x *exchange) {
	if !goWaits(x) {
		return
	}
	p := x.conn.ps.goroutines[x.goroutine]
	if p != nil && !p.start.After(x.start) && (!p.done || !p.ended.Before(x.start)) {
		x.adopt(p)
	}
}

// maxGoroutines bounds the goroutines a process keeps: past it, those
// whose request has ended are forgotten.
const maxGoroutines = 4096

// serveOn records that server request x, seen whole, is the one its
// goroutine serves; the goroutine's request before it is let go of.
func (c *Correlator) serveOn(ps *procState, x *exchange) {
	if old := ps.goroutines[x.goroutine]; old != nil {
		c.unGo(old)
	}
	ps.goroutines[x.goroutine] = x
	x.byGoroutine = true
}

// unGo records that ps.goroutines no longer holds x, and reuses x if
// nothing else does (reuse).
func (c *Correlator) unGo(x *exchange) {
	x.byGoroutine = false
	if x.exported {
		c.reuse(x)
	}
}

// forgetGoroutines drops the ended requests of ps.goroutines when it is
// full. An ended request stays until then, or until its goroutine serves
// another (serveOn), so that a call read after it ended still finds it
// (goParent).
func (c *Correlator) forgetGoroutines(ps *procState) {
	if len(ps.goroutines) < maxGoroutines {
		return
	}
	for g, p := range ps.goroutines {
		if p.done {
			delete(ps.goroutines, g)
			c.unGo(p)
		}
	}
}

// awaitsPeerAt reports whether exchange x, ended at end, waits for a peer
// from a ring not read past end yet (Ring): a Go program's call for the
// request of its goroutine (goWaits), a server stream for its client
// (awaitsPeer), an exchange described from another ring's bytes
// (awaitsRings).
func (c *Correlator) awaitsPeerAt(x *exchange, end time.Time) bool {
	return (goWaits(x) || awaitsPeer(x) || awaitsRings(x)) && c.behind(end)
}

// awaitsRings reports whether x's span is described from what another
// ring may still bring: its connection's greeting
// (protocol.GreetingWaiter).
func awaitsRings(x *exchange) bool {
	w, ok := x.proto.(protocol.GreetingWaiter)
	return ok && w.AwaitsGreeting(x.px, x.conn.info())
}

// ringHeld reports whether held exchange h must stay held until every ring
// is read past its end, whatever else (a Bind, a peer) lets its
// connection's other spans out: it awaits a greeting another ring brings.
func (c *Correlator) ringHeld(h heldExchange) bool {
	return awaitsRings(h.x) && c.behind(h.end)
}

// awaitsPeers reports whether a held exchange of cn waits for a peer: the
// connection, removed, then lingers until it is paired or the wait is over.
func (c *Correlator) awaitsPeers(cn *conn) bool {
	for _, h := range cn.held {
		if c.awaitsPeerAt(h.x, h.end) {
			return true
		}
	}
	return false
}

// awaitsPeer reports whether server exchange x, finished without a
// parent, may still get one from the client end of its connection traced
// on this node: a peer on the same host whose bytes come through another
// collector's ring (node's OpenSSL calling a Go server over crypto/tls) can
// be read after the server's. Its span is held until every ring is read
// past its end (Ring), or until linkByTuple pairs it: while the rings keep
// up, that is the next reader's tick, so the spans of an HTTP/1 server
// whose clients are not traced (nginx under wrk on loopback) wait a few
// milliseconds. The client's side of the same race is conn.recent.
func awaitsPeer(x *exchange) bool {
	cn := x.conn
	return cn.role == roleServer && x.peer == nil && x.parent == nil && !x.hasRemote && sameHost(cn.tuple)
}

// sameHost reports whether both ends of a connection are on this host.
func sameHost(t events.Tuple) bool {
	if !validTuple(t) {
		return false
	}
	remote := t.Remote.Addr().Unmap()
	return remote.IsLoopback() || remote == t.Local.Addr().Unmap()
}

// releasePeered exports the held spans of server connection sv that have
// found their client end.
func (c *Correlator) releasePeered(sv *conn) {
	if len(sv.held) == 0 || c.unnamed(sv.ps) || !sv.bound {
		return
	}
	kept := sv.held[:0]
	for _, h := range sv.held {
		if h.x.peer != nil && !c.ringHeld(h) {
			c.export(h.x, h.end, h.reason)
		} else {
			kept = append(kept, h)
		}
	}
	clear(sv.held[len(kept):])
	c.nheld -= len(sv.held) - len(kept)
	sv.held = kept
	if len(kept) == 0 {
		delete(c.holding, sv)
	}
}

// threadState is what a thread is serving: busy counts the server
// exchanges in flight on it, x is the last one begun. An event loop (node,
// nginx, asyncio) serves several at once, and a client request made then
// has no parent rather than a guessed one.
type threadState struct {
	x    *exchange
	busy int
}

// maxIdleThreads bounds the threads kept serving nothing: past it, they
// are forgotten (a thread per connection or per request comes and goes).
const maxIdleThreads = 256

// thread returns the state of thread tid; a new one when create is set,
// else nil if it has none.
func (ps *procState) thread(tid uint32, create bool) *threadState {
	if ps.last != nil && ps.lastTID == tid {
		return ps.last
	}
	t := ps.threads[tid]
	if t == nil {
		if !create {
			return nil
		}
		if len(ps.threads) >= maxIdleThreads {
			ps.forgetIdleThreads()
		}
		t = &threadState{}
		ps.threads[tid] = t
	}
	ps.lastTID, ps.last = tid, t
	return t
}

// forgetIdleThreads drops the threads serving nothing.
func (ps *procState) forgetIdleThreads() {
	for tid, t := range ps.threads {
		if t.busy <= 0 {
			delete(ps.threads, tid)
		}
	}
	ps.last = nil
}

// enterThread records that server exchange x is in flight on its thread.
func (ps *procState) enterThread(x *exchange) {
	t := ps.thread(x.tid, true)
	t.x = x
	t.busy++
	x.onThread = true
}

// leaveThread records that server exchange x is no longer in flight.
func (c *Correlator) leaveThread(x *exchange) {
	if !x.onThread {
		return
	}
	x.onThread = false
	t := x.conn.ps.thread(x.tid, false)
	if t == nil {
		return
	}
	if t.x == x {
		t.x = nil
	}
	t.busy--
}

// threadParent returns the server exchange a client request made on
// thread tid is part of: the one in flight there, if it is the only one.
func (ps *procState) threadParent(tid uint32) *exchange {
	if t := ps.thread(tid, false); t != nil && t.x != nil && !t.x.done && t.busy == 1 {
		return t.x
	}
	return nil
}

// release exports the held spans of a connection.
func (c *Correlator) release(cn *conn) { c.releaseHeld(cn, false) }

// releaseHeld exports the held spans of a connection; unless forced (the
// grace is over), not while its process has no name: the name may still
// come (see finish), and not those that await a greeting another ring is
// still behind on (ringHeld: they stay held, releaseDue lets them out).
func (c *Correlator) releaseHeld(cn *conn, force bool) {
	if len(cn.held) == 0 || !force && c.unnamed(cn.ps) {
		return
	}
	held := cn.held
	cn.held = nil
	c.nheld -= len(held)
	delete(c.holding, cn)
	for _, h := range held {
		if !force && c.ringHeld(h) {
			cn.held = append(cn.held, h)
			c.nheld++
			continue
		}
		c.export(h.x, h.end, h.reason)
	}
	if len(cn.held) > 0 {
		c.holding[cn] = struct{}{}
	} else {
		cn.held = keepHeld(held)
	}
}

// maxKeptHeld bounds the array of held exchanges a connection keeps once
// they have left: a server on loopback holds every span until the rings are
// read past it (awaitsPeer), and growing a new array at each round of holds
// cost an allocation every few spans; a burst's larger array goes.
const maxKeptHeld = 256

// keepHeld returns held emptied for the next holds, or nil when it is too
// large to keep.
func keepHeld(held []heldExchange) []heldExchange {
	if cap(held) > maxKeptHeld {
		return nil
	}
	clear(held) // no exchange stays reachable from it
	return held[:0]
}

// export builds and exports the span of a finished exchange, unless its
// trace waits for a lookup (link.go).
func (c *Correlator) export(x *exchange, end time.Time, reason string) {
	c.goParent(x)
	if c.holdForLink(x, end, reason) {
		c.rememberClient(x, linking.Answer{}, end) // known, trace not settled (answer)
		return
	}
	if p := c.unsettled(x, end); p != nil {
		c.rememberClient(x, linking.Answer{}, end)
		// The child (a database's SERVER span) of a Go program's call
		// that may not know its own parent yet (goParent), or a
		// descendant (a proxy's upstream call, its server end) of a
		// server request whose client a ring may still bring
		// (awaitsPeer): its trace is that ancestor's, settled when the
		// ancestor is exported. Exporting it now would fix the
		// ancestor's trace, and the client could no longer become the
		// ancestor's parent (link).
		p.waiting = append(p.waiting, heldExchange{x: x, end: end, reason: reason})
		return
	}
	if x.peer == nil && x.conn.role == roleServer {
		x.conn.unpaired = x.start
	}
	s := c.buildSpan(x, end, reason)
	if c.recent != nil {
		c.rememberClient(x, linking.Answer{Found: true, TraceID: s.TraceID, SpanID: s.SpanID}, end)
	}
	addRetransmits(s, x.conn)
	if s.Kind == span.Server {
		c.m.spansServer.Inc()
	} else {
		c.m.spansClient.Inc()
	}
	if reason != "" {
		c.m.incomplete[reason].Inc()
	}
	c.exp.Export(s)
	s.Release() // the exporters that keep it hold it
	kept := false
	if cn := x.conn; c.cfg.BindGrace > 0 && cn.role == roleClient && x.peer == nil && sameHost(cn.tuple) && c.behind(end) {
		cn.keepRecent(x, end)
		kept = true
	}
	c.recycle(x)
	c.exportWaiting(x)
	if !kept {
		x.exported = true
		c.reuse(x)
	}
}

// recycle puts back x's HTTP/1 or database exchange once its span is
// exported, when nothing else holds it (exchange.recycle). x itself may
// live on (a parent, a peer, a client kept for linking): its px becomes
// c.spent, an empty exchange with no stream, which is all that is asked of
// an ended one.
func (c *Correlator) recycle(x *exchange) {
	if !x.recycle {
		return
	}
	x.recycle = false
	switch px := x.px.(type) {
	case *httpspan.Exchange:
		c.wholeSem.sem.Recycle(px)
	case *db.Exchange:
		px.Recycle()
	}
	x.px = c.spent
}

// silenced settles which collector speaks for a connection two of them
// report (one request, one span), before cn takes tuple: a language's
// whole requests (gohttp) win over a TLS library's plaintext, which wins
// over the socket's bytes (ciphertext, or the same requests again). The
// losing connection is ignored and its unfinished exchanges are dropped
// without spans. It reports whether cn lost. The other collectors leave
// net/http's connections alone in the kernel already; this is what catches
// the moments their filters miss (a Go program seen before the gohttp
// collector probed it, the HTTP/2 preface gotls copies before gohttp's
// first request on a connection Transport.DialTLSContext dialled). Their
// rings are read in any order: whichever comes first, the same one wins.
func (c *Correlator) silenced(cn *conn, tuple events.Tuple) bool {
	if !validTuple(tuple) {
		return false
	}
	other := c.byTuple[tuple]
	if other == nil || other == cn || other.ps != cn.ps || other.source() == cn.source() {
		return false
	}
	loser := other
	if cn.source() < other.source() {
		loser = cn
	}
	winner := cn
	if loser == cn {
		winner = other
	}
	if loser.plain && winner.source() == 1 {
		// The socket of a TLS library's connection, whichever ring was
		// read first: its own bytes from before the TLS connection began
		// (a database's greeting and TLS request, which name the system)
		// are still decoded, the rest is the TLS collector's (Data).
		if loser.silenceAt.IsZero() || winner.since.Before(loser.silenceAt) {
			loser.silenceAt = winner.since
		}
		c.tuples++
		if loser == cn {
			cn.tuple, cn.peerAddr = tuple, tuple.Remote.Addr().Unmap().String()
			return true
		}
		delete(c.byTuple, tuple)
		return false
	}
	c.supersede(loser)
	if loser == other {
		delete(c.byTuple, tuple)
		c.tuples++
	}
	return loser == cn
}

// source ranks the collectors that may report one connection (silenced):
// whole requests, then a TLS library's plaintext, then the socket's bytes.
func (cn *conn) source() int {
	switch {
	case cn.id.Key&(wholeFDKey|wholeReqKey) != 0:
		return 2
	case !cn.plain:
		return 1
	}
	return 0
}

// supersede ignores a connection that another collector reports, dropping
// its unfinished exchanges without spans. Its finished ones still waiting
// (held: for a peer's ring, a name) keep waiting and leave as spans: they
// ended before the other collector saw the connection (gohttp learns it at
// the start of a request, before that request's response is written), so
// they are no one else's.
func (c *Correlator) supersede(loser *conn) {
	c.m.superseded.Inc()
	loser.ignored = true
	loser.dec = nil
	for _, x := range loser.pending {
		x.done = true
		c.leaveThread(x)
		c.exportWaiting(x) // its children do not wait for a span that will not come
	}
	loser.pending = nil
}

// linkByTuple links the server requests of a connection with the client
// requests of its mirror connection (the other end, traced on this node).
func (c *Correlator) linkByTuple(cn *conn) {
	if !validTuple(cn.tuple) || cn.role == roleUnknown || cn.ignored {
		return
	}
	other := c.mirror(cn)
	if other == nil || other == cn || other.ignored {
		return
	}
	switch {
	case cn.role == roleServer && other.role == roleClient:
		pair(other, cn)
		c.releasePeered(cn)
	case cn.role == roleClient && other.role == roleServer:
		pair(cn, other)
		c.releasePeered(other)
	}
}

// setTuple gives cn its addresses: byTuple and byLocal find it by them,
// and mirrors looked up before are looked up again (tuples).
func (c *Correlator) setTuple(cn *conn, t events.Tuple) {
	cn.tuple = t
	cn.peerAddr = t.Remote.Addr().Unmap().String()
	c.byTuple[t] = cn
	c.tuples++
	c.indexLocal(cn)
}

// mirror returns the connection byTuple holds under the mirror image of
// cn's tuple, looked up again only when a tuple changed since it last was
// (tuples): linkByTuple asks for every request.
func (c *Correlator) mirror(cn *conn) *conn {
	if cn.mirrorAt != c.tuples {
		cn.mirrorConn = c.byTuple[events.Tuple{Local: cn.tuple.Remote, Remote: cn.tuple.Local}]
		cn.mirrorAt = c.tuples
	}
	return cn.mirrorConn
}

// pair matches, in order, the server requests on sv that are not yet
// matched with the client requests on cl that are not yet matched. A
// matched server request without a parent becomes the client request's
// child.
func pair(cl, sv *conn) {
	if cl.multiplexed || sv.multiplexed {
		pairMultiplexed(cl, sv)
		return
	}
	ci := 0
	cxs := cl.waiting()
	for _, sx := range sv.waiting() {
		if sx.peer != nil {
			continue
		}
		// Skipped too: a client request written before the server read
		// a request whose span left unpaired (at the end of its wait):
		// it is that one, or an earlier one.
		for ci < len(cxs) && (cxs[ci].peer != nil || !cxs[ci].start.After(sv.unpaired)) {
			ci++
		}
		if ci == len(cxs) {
			return
		}
		cx := cxs[ci]
		if cx.start.After(sx.start) {
			// The client wrote this request after the server read
			// sx: they are not the same request.
			continue
		}
		ci++
		link(cx, sx)
	}
}

// pairMultiplexed pairs the requests of an HTTP/2 connection, whose
// streams interleave so that their order pairs nothing. Exchanges that
// name their stream (decoded from the bytes) pair exactly by it. Others
// (requests seen whole by language probes) pair only when a server request
// and a client request that started before it are the only unmatched ones
// on their ends. Concurrent requests stay unmatched (their server spans
// start traces of their own, unless a traceparent header says otherwise)
// rather than risk a wrong parent.
func pairMultiplexed(cl, sv *conn) {
	if pairStreams(cl, sv) {
		return
	}
	cx, nc := soleUnmatched(cl)
	sx, ns := soleUnmatched(sv)
	if nc != 1 || ns != 1 || cx.start.After(sx.start) {
		return
	}
	link(cx, sx)
}

// pairStreams links the unmatched exchanges of cl and sv that carry the
// same stream, and reports whether the exchanges name streams at all.
func pairStreams(cl, sv *conn) bool {
	named := false
	cxs := cl.waiting()
	for _, sx := range sv.waiting() {
		id, ok := sx.px.Stream()
		if !ok {
			continue
		}
		named = true
		if sx.peer != nil {
			continue
		}
		for _, cx := range cxs {
			if cid, ok := cx.px.Stream(); ok && cid == id && cx.peer == nil {
				link(cx, sx)
				break
			}
		}
	}
	return named
}

// soleUnmatched returns the number of unmatched exchanges waiting on cn,
// and the last of them; the recent ones, kept for pairing by stream only,
// do not count.
func soleUnmatched(cn *conn) (*exchange, int) {
	var last *exchange
	n := 0
	for _, x := range cn.waiting()[len(cn.recent):] {
		if x.peer == nil {
			last, n = x, n+1
		}
	}
	return last, n
}

// link makes cx and sx the two ends of one request; sx becomes cx's child
// unless it has a parent already.
func link(cx, sx *exchange) {
	cx.peer, sx.peer = sx, cx
	if !sx.hasRemote && sx.parent == nil && !sx.fixed {
		sx.adopt(cx)
	}
}

func (c *Correlator) newSpanID() trace.SpanID {
	var id trace.SpanID
	for !id.IsValid() {
		putUint64(id[:], c.rng.Uint64())
	}
	return id
}

func (c *Correlator) newTraceID() trace.TraceID {
	var id trace.TraceID
	for !id.IsValid() {
		putUint64(id[:8], c.rng.Uint64())
		putUint64(id[8:], c.rng.Uint64())
	}
	return id
}

func putUint64(b []byte, v uint64) {
	for i := range 8 {
		b[i] = byte(v >> (8 * i))
	}
}

func validTuple(t events.Tuple) bool { return t.Local.IsValid() && t.Remote.IsValid() }
