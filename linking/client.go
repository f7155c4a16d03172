package linking

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Result is the outcome of a lookup (the result label of
// periscope_link_lookups_total).
type Result uint8

// Results.
const (
	Pending  Result = iota // queued: the callback will tell
	Linked                 // the client span was found
	NotFound               // the owner knows no such request
	NoOwner                // no agent announces the client's address
	Timeout                // no answer within linking.wait
	Refused                // the owner refused the token, or this agent its certificate
	Error                  // the owner could not be asked, or answered garbage
	Dropped                // the queue to the owner was full
	// NoKey: the request has no key both agents would agree on (its
	// plaintext connection was open before this agent saw it start, and
	// no TCP sequence number names it: a pipelined request, a call larger
	// than the capture): it is not looked up, rather than maybe linked to
	// the wrong client span.
	NoKey
)

// Results lists the results a lookup ends with.
var Results = []Result{Linked, NotFound, NoOwner, Timeout, Refused, Error, Dropped, NoKey}

func (r Result) String() string {
	switch r {
	case Pending:
		return "pending"
	case Linked:
		return "linked"
	case NotFound:
		return "not_found"
	case NoOwner:
		return "no_owner"
	case Timeout:
		return "timeout"
	case Refused:
		return "refused"
	case Error:
		return "error"
	case Dropped:
		return "dropped"
	case NoKey:
		return "no_key"
	}
	return fmt.Sprintf("result(%d)", uint8(r))
}

// ClientConfig configures a Client.
type ClientConfig struct {
	// Peers are the other agents, host:port.
	Peers []string
	Token string
	// TLS, when set, is mutual TLS (LoadTLS); else plaintext gRPC.
	TLS *tls.Config
	// Wait bounds a lookup, from Lookup to its callback.
	Wait time.Duration
	// Local lists this node's addresses: their connections are linked on
	// the node, and no peer owns them.
	Local AddressSource
	// Refresh is how often peers are asked for their addresses (a peer
	// that has not answered yet is asked every few seconds).
	Refresh    time.Duration
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Tunables.
const (
	DefaultWait    = 300 * time.Millisecond
	DefaultRefresh = 30 * time.Second
	// queuePerPeer bounds the lookups waiting for one peer.
	queuePerPeer = 8192
	// sendersPerPeer bounds the batches in flight to one peer.
	sendersPerPeer = 2
	// batchDelay is how long a batch waits for more lookups: each batch
	// costs both agents a gRPC call (its transport and the goroutines it
	// wakes, most of linking's cost per span at 5 ms: BenchmarkLinkSides,
	// test/bench/results-linking-sides.md; still about half of it at 20
	// ms), and 50 ms is small against the wait a server span is held for
	// (a batch leaves sendAhead before its earliest deadline if that
	// comes first) and against how long a span waits for its export.
	batchDelay = 50 * time.Millisecond
	// sendAhead is how long before the earliest deadline of its lookups
	// a batch leaves at the latest, rather than after batchDelay: a
	// lookup asked late (the asking agent read its request late, under
	// load) still gets the time the answering agent holds a query for
	// (answerMargin before the deadline) and the answer's way back.
	sendAhead = 2 * answerMargin
	// batchCap is the capacity of a batch's memory (which becomes the
	// queue's when the batch is taken): a full batch and the lookups
	// that come while the filler wakes to take it, so that a queue
	// filling past MaxBatch does not grow (a copy of a batch, 120 KB,
	// into a new array of twice that, once a batch under load).
	batchCap     = MaxBatch + MaxBatch/4
	retryRefresh = 2 * time.Second
)

// Client asks other agents for the client spans of server requests.
type Client struct {
	cfg ClientConfig
	log *slog.Logger
	wg  sync.WaitGroup

	mu     sync.RWMutex
	peers  map[string]*peer
	runCtx context.Context // set by Run: peers added later start at once
	// owners are the peers that announced each address: an address two
	// peers announce (the same private range on two hosts, a shared
	// virtual IP) has no owner rather than a wrong one.
	owners map[netip.Addr][]*peer
	local  map[netip.Addr]bool
	// view is what Remote and Lookup read, for every server request on
	// the asking side and every client span on the answering side: a
	// copy of local and the addresses with one owner, replaced (under
	// mu) when they change, read without a lock.
	view atomic.Pointer[clientView]
}

// clientView is a Client's addresses as its lookups see them.
type clientView struct {
	owner map[netip.Addr]*peer // the addresses one peer announced
	local map[netip.Addr]bool
}

// publish replaces the view after owners or local changed (c.mu held).
func (c *Client) publish() {
	v := &clientView{owner: make(map[netip.Addr]*peer, len(c.owners)), local: c.local}
	for a, ps := range c.owners {
		if len(ps) == 1 {
			v.owner[a] = ps[0]
		}
	}
	c.view.Store(v)
}

// peer is one other agent.
type peer struct {
	addr   string
	conn   *grpc.ClientConn
	addrs  []netip.Addr // what it announced last
	cancel context.CancelFunc

	// queue holds the lookups not yet in a batch, at most queuePerPeer.
	// A Lookup appends under mu and wakes the batch filler only when it
	// opens a batch (the queue was empty) or fills one: a lookup costs a
	// lock and an append, not the wake-up of a goroutine (a channel send
	// to a waiting receiver is one, several µs of the asking agent's CPU
	// per linked span in BenchmarkLinkSides).
	mu     sync.Mutex
	queue  []lookup
	opened time.Time // when the open batch's window began
	first  time.Time // the earliest deadline in the queue
	// idle: the batch filler waits for a kick to open a window (the
	// queue was empty when its last window ended). Otherwise it is
	// timing a window already, which a lookup into an empty queue joins
	// without waking it: under load, a batch costs the filler one
	// wake-up (its window's end), not two.
	idle bool
	kick chan struct{} // capacity 1
}

// lookup is one query waiting for its answer.
type lookup struct {
	q        Query
	deadline time.Time
	w        Waiter
}

// Waiter waits for the answer of a lookup.
type Waiter interface {
	// LinkDone is called once with the answer (Found when r is Linked).
	LinkDone(a Answer, r Result)
}

// Done is the answer of one lookup.
type Done struct {
	W Waiter
	A Answer
	R Result
}

// Settler takes the answers of many lookups in one call (one lock taken
// for a batch rather than one per answer, against a correlator that holds
// it while it decodes). A Waiter that names one (BatchWaiter) is answered
// through it, with the other waiters of its batch that name the same.
type Settler interface {
	LinkDoneAll(ds []Done)
}

// BatchWaiter is a Waiter whose answer its Settler may take.
type BatchWaiter interface {
	Waiter
	LinkSettler() Settler
}

// NewClient returns a client of cfg.Peers; Run runs it.
func NewClient(cfg ClientConfig) (*Client, error) {
	if cfg.Wait <= 0 {
		cfg.Wait = DefaultWait
	}
	if cfg.Refresh <= 0 {
		cfg.Refresh = DefaultRefresh
	}
	if cfg.Local == nil {
		cfg.Local = InterfaceAddresses
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Client{cfg: cfg, log: cfg.Logger, peers: make(map[string]*peer), owners: make(map[netip.Addr][]*peer), local: make(map[netip.Addr]bool)}
	c.publish()
	if err := c.SetPeers(cfg.Peers); err != nil {
		c.Close()
		return nil, err
	}
	c.setLocal(cfg.Local())
	if cfg.Registerer != nil {
		owned := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "periscope_link_peer_addresses",
			Help: "Addresses the other agents (linking.peers) announced, whose requests are looked up there (an address two agents announce counts, and has no owner).",
		}, func() float64 {
			c.mu.RLock()
			defer c.mu.RUnlock()
			return float64(len(c.owners))
		})
		if err := cfg.Registerer.Register(owned); err != nil {
			c.Close()
			return nil, fmt.Errorf("linking: register metrics: %w", err)
		}
	}
	return c, nil
}

// Close closes the connections to the peers.
func (c *Client) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.peers {
		p.conn.Close()
	}
}

// Run sends the lookups and refreshes the owners of addresses until ctx is
// done.
func (c *Client) Run(ctx context.Context) {
	c.mu.Lock()
	c.runCtx = ctx
	for _, p := range c.peers {
		c.startPeer(p)
	}
	c.mu.Unlock()
	<-ctx.Done()
	c.wg.Wait()
}

// SetPeers makes addrs (host:port) the peers: new ones are asked for their
// addresses, those no longer listed are forgotten with what they owned
// (their lookups in flight time out).
func (c *Client) SetPeers(addrs []string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	keep := make(map[string]bool, len(addrs))
	for _, a := range addrs {
		keep[a] = true
		if c.peers[a] != nil {
			continue
		}
		creds := insecure.NewCredentials()
		if c.cfg.TLS != nil {
			creds = credentials.NewTLS(c.cfg.TLS)
		}
		conn, err := grpc.NewClient(a,
			grpc.WithTransportCredentials(creds),
			grpc.WithDefaultCallOptions(grpc.ForceCodec(codec{}), grpc.MaxCallRecvMsgSize(maxMessage)),
			grpc.WithInitialWindowSize(flowWindow), grpc.WithInitialConnWindowSize(flowWindow))
		if err != nil {
			return fmt.Errorf("linking: peer %s: %w", a, err)
		}
		p := &peer{addr: a, conn: conn, idle: true, kick: make(chan struct{}, 1)}
		c.peers[a] = p
		if c.runCtx != nil {
			c.startPeer(p)
		}
	}
	for a, p := range c.peers {
		if keep[a] {
			continue
		}
		if p.cancel != nil {
			p.cancel()
		}
		p.conn.Close()
		c.disown(p)
		delete(c.peers, a)
	}
	c.publish()
	return nil
}

// Peers returns the number of peers.
func (c *Client) Peers() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.peers)
}

// startPeer starts p's senders and address refresh (c.mu held).
func (c *Client) startPeer(p *peer) {
	ctx, cancel := context.WithCancel(c.runCtx)
	p.cancel = cancel
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.send(ctx, p)
	}()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.refresh(ctx, p)
	}()
}

// Owned tells whether a peer has announced addr.
func (c *Client) Owned(addr netip.Addr) bool {
	return c.view.Load().owner[addr.Unmap()] != nil
}

// Remote tells whether addr is another node's: a server request from it
// needs a lookup.
func (c *Client) Remote(addr netip.Addr) bool {
	addr = addr.Unmap()
	if addr.IsLoopback() || !addr.IsValid() {
		return false
	}
	return !c.view.Load().local[addr]
}

// Lookup asks the owner of q.Local for the client span of q, to be
// answered before deadline (zero: Wait from now; never more than Wait
// from when its batch goes): the owner holds a query it cannot answer yet
// until then, not past it. It returns Pending when the query is on its
// way: w.LinkDone is then called once, from another goroutine, by about
// the latest deadline of the lookups sent with it (Wait from when the
// batch went at most): an answer may come after this lookup's own
// deadline, and a waiter that has given up by then ignores it. Otherwise
// it returns the result at once (NoOwner, Dropped) and never calls w.
func (c *Client) Lookup(q Query, deadline time.Time, w Waiter) Result {
	p := c.view.Load().owner[q.Local.Addr().Unmap()]
	if p == nil {
		return NoOwner
	}
	if deadline.IsZero() {
		deadline = time.Now().Add(c.cfg.Wait)
	}
	return p.enqueue(lookup{q: q, deadline: deadline, w: w})
}

// enqueue adds l to p's queue, waking the batch filler when l opens a
// window (the filler was idle), fills a batch, or makes it due earlier (a
// deadline near). Only a lookup that opens a window reads the clock (ask
// bounds the deadlines by Wait when the batch goes).
func (p *peer) enqueue(l lookup) Result {
	p.mu.Lock()
	n := len(p.queue)
	if n >= queuePerPeer {
		p.mu.Unlock()
		return Dropped
	}
	open, sooner := false, false
	switch {
	case n == 0 && p.idle:
		open, p.idle = true, false
		p.opened, p.first = time.Now(), l.deadline
	case n == 0 || l.deadline.Before(p.first):
		// l joins the window the filler times already (an empty
		// queue's first is the last batch's), or is due sooner.
		sooner = l.deadline.Add(-sendAhead).Before(p.dueLocked())
		p.first = l.deadline
	}
	p.queue = append(p.queue, l)
	p.mu.Unlock()
	if open || n+1 == MaxBatch || sooner {
		select {
		case p.kick <- struct{}{}:
		default:
		}
	}
	return Pending
}

// take moves the oldest lookups of the queue, at most MaxBatch, into
// batch (empty), and returns it with whether the next batch's window is
// open (the filler times it without waiting for a kick): it opens when a
// batch is taken, and closes when it ends with no lookup in it. A queue
// that fits in a batch becomes the batch, and batch's memory the queue:
// no lookup is copied (a copy of their waiters' pointers, with write
// barriers while the garbage collector runs).
func (p *peer) take(batch []lookup) ([]lookup, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.queue) == 0 {
		// The window ended empty: the next lookup opens one.
		p.idle, p.opened = true, time.Time{}
		return batch, false
	}
	if len(p.queue) <= MaxBatch {
		batch, p.queue = p.queue, batch[:0]
		// The next batch's window begins now: a lookup that comes
		// in it joins it without waking the filler.
		p.opened = time.Now()
		return batch, true
	}
	// The queue's first MaxBatch become the batch, the rest goes to
	// batch's memory (a few lookups: those that came while the filler
	// woke).
	q := p.queue
	p.queue = append(batch[:0], q[MaxBatch:]...)
	clear(q[MaxBatch:]) // their waiters, now in the queue
	batch = q[:MaxBatch]
	// What is left (the queue filled past a batch) is in the next
	// window, opened now: sent at once, it would be a call for the few
	// lookups that came while this batch was taken (a call of 1 query
	// after each full one, measured), and a full rest goes at once
	// anyway.
	p.opened = time.Now()
	p.first = p.queue[0].deadline
	for _, l := range p.queue[1:] {
		if l.deadline.Before(p.first) {
			p.first = l.deadline
		}
	}
	return batch, true
}

// due returns when the open batch should go (zero: at once).
func (p *peer) due() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dueLocked()
}

// dueLocked is due, p.mu held: batchDelay after the batch opened, or
// sendAhead before its earliest deadline if that comes first.
func (p *peer) dueLocked() time.Time {
	if len(p.queue) >= MaxBatch || p.opened.IsZero() {
		return time.Time{}
	}
	due := p.opened.Add(batchDelay)
	if len(p.queue) == 0 {
		return due // first is the last batch's
	}
	if early := p.first.Add(-sendAhead); early.Before(due) {
		return early
	}
	return due
}

// send fills p's batches, one goroutine per peer, and hands each to one of
// sendersPerPeer callers: a batch holds every lookup of its window
// (batchDelay from the lookup that opened it, or, while lookups keep
// coming, from when the previous batch was taken), or MaxBatch, and while
// every caller waits for an answer the queue grows into the next batch.
func (c *Client) send(ctx context.Context, p *peer) {
	full := make(chan []lookup)
	free := make(chan []lookup, sendersPerPeer+1)
	for range sendersPerPeer + 1 {
		free <- make([]lookup, 0, batchCap)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(full)
	for range sendersPerPeer {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sc := new(askScratch)
			for batch := range full {
				c.ask(ctx, p, batch, sc)
				clear(batch) // the waiters
				if cap(batch) > batchCap {
					// A queue that grew past its slack
					// (take): its memory is not kept.
					batch = make([]lookup, 0, batchCap)
				}
				free <- batch[:0]
			}
		}()
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	more := false
	for {
		if !more {
			select {
			case <-ctx.Done():
				return
			case <-p.kick:
			}
		}
		if !c.waitDue(ctx, p, timer) {
			return
		}
		var batch []lookup
		select {
		case <-ctx.Done():
			return
		case batch = <-free:
		}
		batch, more = p.take(batch)
		if len(batch) == 0 {
			free <- batch
			continue
		}
		select {
		case <-ctx.Done():
			return
		case full <- batch:
		}
	}
}

// waitDue waits until p's open batch is due (its delay passed, or it is
// full), and reports false when ctx is done first.
func (c *Client) waitDue(ctx context.Context, p *peer, timer *time.Timer) bool {
	for {
		due := p.due()
		wait := time.Until(due)
		if due.IsZero() || wait <= 0 {
			return true
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return false
		case <-p.kick: // full, or a new batch opened after a stale kick
			timer.Stop()
		case <-timer.C:
		}
	}
}

// ask sends one batch and calls back every lookup in it.
//
// The call may last until the latest deadline of its lookups, and the
// answering agent holds the queries it cannot answer yet until the
// earliest (holdHeader): a lookup whose deadline is near (asked late,
// under load) neither makes the others wait past theirs nor fails the
// whole call when its answer comes late. Its answer, if late, is still
// handed over: its waiter has given up by then, or takes it.
func (c *Client) ask(ctx context.Context, p *peer, batch []lookup, sc *askScratch) {
	now := time.Now()
	live := batch[:0]
	var first, last time.Time
	latest := now.Add(c.cfg.Wait) // the most a call may take
	var late []Done
	defer func() { settle(late) }()
	for _, l := range batch {
		if !now.Before(l.deadline) {
			late = append(late, Done{W: l.w, R: Timeout})
			continue
		}
		if first.IsZero() || l.deadline.Before(first) {
			first = l.deadline
		}
		if l.deadline.After(last) {
			last = l.deadline
		}
		live = append(live, l)
	}
	if len(live) == 0 {
		return
	}
	if last.After(latest) {
		last = latest
	}
	if first.After(latest) {
		first = latest
	}
	sc.groupByConn(live)
	req, resp := &sc.req, &sc.resp
	rctx, cancel := context.WithDeadline(c.authorize(ctx, first.Sub(now)), last)
	defer cancel()
	resp.Answers = resp.Answers[:0]
	err := p.conn.Invoke(rctx, "/"+serviceName+"/Lookup", req, resp)
	if err == nil && len(resp.Answers) != len(live) {
		err = fmt.Errorf("linking: %d answers to %d queries", len(resp.Answers), len(live))
	}
	ds := slices.Grow(sc.ds[:0], len(live))[:len(live)]
	defer func() { clear(ds); sc.ds = ds[:0] }() // the waiters
	if err != nil {
		r := resultOf(err)
		c.log.Debug("link lookup failed", "peer", p.addr, "queries", len(live), "result", r.String(), "err", err)
		for i, l := range live {
			ds[i] = Done{W: l.w, R: r}
		}
		settle(ds)
		return
	}
	for i, l := range live {
		if a := resp.Answers[sc.at[i]]; a.Found {
			ds[i] = Done{W: l.w, A: a, R: Linked}
		} else {
			ds[i] = Done{W: l.w, R: NotFound}
		}
	}
	settle(ds)
}

// askScratch is the memory of one sender's calls, kept for its next (a
// full batch's queries and answers are ~140 KB).
type askScratch struct {
	req  lookupRequest
	resp lookupResponse
	ds   []Done
	// groupByConn's: each connection's group, each lookup's group then
	// where its query went, and the groups' sizes then ends.
	groups map[connKey]int32
	at     []int32
	ends   []int32
}

// connKey names a connection of a query.
type connKey struct{ local, remote netip.AddrPort }

// groupByConn puts the queries of live into sc.req with those of each
// connection together, in the order of the connections' first queries,
// each connection's in the order asked: one run a connection on the wire,
// and one look-up of the connection on the answering side, where a batch
// in the order the requests were read (many keep-alive connections'
// requests in turn) is a run a query, each with both addresses. sc.at[i]
// is where live[i]'s query went: the answers are handed over in the order
// asked, which is the order the correlator read the requests and holds
// them in memory (settled in the connections' order, each held request
// would be further from the last one settled).
func (sc *askScratch) groupByConn(live []lookup) {
	if sc.groups == nil {
		sc.groups = make(map[connKey]int32)
	}
	clear(sc.groups)
	sc.at, sc.ends = slices.Grow(sc.at[:0], len(live))[:len(live)], sc.ends[:0]
	prev, g := connKey{}, int32(-1)
	for i, l := range live {
		k := connKey{l.q.Local, l.q.Remote}
		if i == 0 || k != prev {
			var ok bool
			if g, ok = sc.groups[k]; !ok {
				g = int32(len(sc.ends))
				sc.groups[k] = g
				sc.ends = append(sc.ends, 0)
			}
			prev = k
		}
		sc.at[i] = g
		sc.ends[g]++
	}
	// A counting sort: ends[g] becomes where group g starts, then
	// where its next query goes.
	n := int32(0)
	for g, size := range sc.ends {
		sc.ends[g], n = n, n+size
	}
	qs := slices.Grow(sc.req.Queries[:0], len(live))[:len(live)]
	for i, l := range live {
		g := sc.at[i]
		sc.at[i] = sc.ends[g]
		qs[sc.ends[g]] = l.q
		sc.ends[g]++
	}
	sc.req.Queries = qs
}

// settle hands the answers to their waiters: through their Settler, in one
// call per run of waiters sharing it, else one by one.
func settle(ds []Done) {
	for len(ds) > 0 {
		bw, ok := ds[0].W.(BatchWaiter)
		if !ok {
			ds[0].W.LinkDone(ds[0].A, ds[0].R)
			ds = ds[1:]
			continue
		}
		s, n := bw.LinkSettler(), 1
		for n < len(ds) {
			o, ok := ds[n].W.(BatchWaiter)
			if !ok || o.LinkSettler() != s {
				break
			}
			n++
		}
		s.LinkDoneAll(ds[:n])
		ds = ds[n:]
	}
}

// authorize adds the token to ctx, and hold (when positive: how long the
// answering agent may hold queries it cannot answer yet).
func (c *Client) authorize(ctx context.Context, hold time.Duration) context.Context {
	if hold > 0 {
		return metadata.AppendToOutgoingContext(ctx, tokenHeader, "Bearer "+c.cfg.Token,
			holdHeader, strconv.FormatInt(hold.Microseconds(), 10))
	}
	return metadata.AppendToOutgoingContext(ctx, tokenHeader, "Bearer "+c.cfg.Token)
}

// resultOf classifies a failed call.
func resultOf(err error) Result {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return Timeout
	}
	switch status.Code(err) {
	case codes.Unauthenticated, codes.PermissionDenied:
		return Refused
	case codes.DeadlineExceeded:
		return Timeout
	case codes.Unavailable:
		// Mutual TLS: this agent refused a certificate of another CA.
		// Any other failed handshake (a peer answering garbage, a
		// connection closed in the middle) is an error.
		if strings.Contains(status.Convert(err).Message(), untrustedPeer) {
			return Refused
		}
	}
	return Error
}

// refresh asks p for the addresses it serves, every Refresh (every few
// seconds until it answers).
func (c *Client) refresh(ctx context.Context, p *peer) {
	for {
		next := c.cfg.Refresh
		if err := c.refreshOnce(ctx, p); err != nil {
			c.log.Debug("ask a linking peer for its addresses", "peer", p.addr, "err", err)
			next = min(retryRefresh, c.cfg.Refresh)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(next):
		}
	}
}

func (c *Client) refreshOnce(ctx context.Context, p *peer) error {
	c.setLocal(c.cfg.Local())
	rctx, cancel := context.WithTimeout(c.authorize(ctx, 0), 5*time.Second)
	defer cancel()
	resp := new(addressesResponse)
	if err := p.conn.Invoke(rctx, "/"+serviceName+"/Addresses", &addressesRequest{}, resp); err != nil {
		return err
	}
	c.setOwner(p, resp.Addrs)
	return nil
}

// setOwner makes p the owner of addrs (and of no other address). An address
// of this node stays this node's.
func (c *Client) setOwner(p *peer, addrs []netip.Addr) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.peers[p.addr] != p {
		return // removed meanwhile
	}
	c.disown(p)
	for _, a := range addrs {
		a = a.Unmap()
		if !a.IsValid() || a.IsLoopback() || c.local[a] {
			continue
		}
		if slices.Contains(c.owners[a], p) {
			continue
		}
		c.owners[a] = append(c.owners[a], p)
		p.addrs = append(p.addrs, a)
	}
	c.publish()
}

// disown forgets what p owned (c.mu held).
func (c *Client) disown(p *peer) {
	for _, a := range p.addrs {
		rest := slices.DeleteFunc(c.owners[a], func(o *peer) bool { return o == p })
		if len(rest) == 0 {
			delete(c.owners, a)
		} else {
			c.owners[a] = rest
		}
	}
	p.addrs = p.addrs[:0]
}

func (c *Client) setLocal(addrs []netip.Addr) {
	m := make(map[netip.Addr]bool, len(addrs))
	for _, a := range addrs {
		m[a.Unmap()] = true
	}
	c.mu.Lock()
	c.local = m
	c.publish()
	c.mu.Unlock()
}
