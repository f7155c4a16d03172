package linking

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Answerer answers queries about this node's sockets: the correlator.
type Answerer interface {
	// Answer fills out[i] with the client span of qs[i]; len(out) ==
	// len(qs). asked is when the queries arrived: every request they
	// name was written before then (its bytes had reached the asking
	// node). Answer reports whether the queries not found are final:
	// this node has read everything its collectors recorded up to
	// asked (so any request written by then is known), and none of
	// them waits for a trace that is not settled yet (its own server
	// request waiting for a lookup). Queries not found and not final
	// may be found later.
	Answer(qs []Query, out []Answer, asked time.Time) (final bool)
}

// AddressSource lists the addresses this agent serves (answers for).
type AddressSource func() []netip.Addr

// ServerConfig configures a Server.
type ServerConfig struct {
	// Token is the shared secret every request must carry; empty refuses
	// every request.
	Token string
	// TLS, when set, is mutual TLS (LoadTLS); else plaintext gRPC.
	TLS        *tls.Config
	Answerer   Answerer
	Addresses  AddressSource
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Server answers other agents' lookups.
type Server struct {
	cfg    ServerConfig
	grpc   *grpc.Server
	served *prometheus.CounterVec
	// scratch holds *lookupScratch: a call's queries and answers, kept
	// for the next (a full batch's are ~100 KB, and the queries hold
	// pointers the collector would scan).
	scratch sync.Pool
}

// lookupScratch is the memory of one lookup call.
type lookupScratch struct {
	in  lookupRequest
	out lookupResponse
}

const (
	serviceName = "periscope.linking.v1.Linker"
	tokenHeader = "authorization"
	// holdHeader is how long, in µs from when a lookup call was sent,
	// the answering agent may hold the queries it cannot answer yet: the
	// earliest deadline of the batch, which may be sooner than the
	// call's own (its latest). Without it, the call's deadline.
	holdHeader = "periscope-hold-us"
	// maxMessage bounds a message either way: a full batch and a bit.
	maxMessage = 2 + MaxAddresses*16 + 1024
	// flowWindow is the HTTP/2 flow-control window of the agents'
	// connections, both ends: a fixed window larger than a few full
	// batches turns off gRPC's bandwidth estimation, whose PINGs and
	// WINDOW_UPDATEs added frames (and wake-ups of both agents) to every
	// batch.
	flowWindow = 1 << 20
)

// linkerService is what the service descriptor dispatches to.
type linkerService interface {
	lookup(ctx context.Context, dec func(any) error) (any, error)
	addresses(ctx context.Context, dec func(any) error) (any, error)
}

var serviceDesc = grpc.ServiceDesc{
	ServiceName: serviceName,
	HandlerType: (*linkerService)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "Lookup", Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			return srv.(linkerService).lookup(ctx, dec)
		}},
		{MethodName: "Addresses", Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			return srv.(linkerService).addresses(ctx, dec)
		}},
	},
}

// NewServer returns a server; Serve starts it.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Answerer == nil || cfg.Addresses == nil {
		return nil, errors.New("linking: server needs an answerer and an address source")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	served := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "periscope_link_requests_served_total",
		Help: "Lookup requests from other agents, by result: answered, refused (no or wrong token), bad_request.",
	}, []string{"result"})
	for _, r := range []string{"answered", "refused", "bad_request"} {
		served.WithLabelValues(r)
	}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(served); err != nil {
			return nil, fmt.Errorf("linking: register metrics: %w", err)
		}
	}
	s := &Server{cfg: cfg, served: served}
	opts := []grpc.ServerOption{
		grpc.ForceServerCodec(codec{}),
		grpc.MaxRecvMsgSize(maxMessage),
		grpc.MaxSendMsgSize(maxMessage),
		grpc.MaxConcurrentStreams(16),
		// Batches are served by long-lived goroutines whose stacks have
		// grown already, not a new goroutine per call (a few µs each,
		// stack growth included, measured in the linking bench's profile).
		grpc.NumStreamWorkers(4),
		grpc.ConnectionTimeout(5 * time.Second),
		grpc.InitialWindowSize(flowWindow),
		grpc.InitialConnWindowSize(flowWindow),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: 5 * time.Minute}),
	}
	if cfg.TLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(cfg.TLS)))
	}
	s.grpc = grpc.NewServer(opts...)
	s.grpc.RegisterService(&serviceDesc, s)
	return s, nil
}

// Serve answers on ln until Stop.
func (s *Server) Serve(ln net.Listener) error { return s.grpc.Serve(ln) }

// Stop stops the server.
func (s *Server) Stop() { s.grpc.Stop() }

// authorized checks the request's token before anything is decoded.
func (s *Server) authorized(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	got := ""
	if v := md.Get(tokenHeader); len(v) == 1 {
		got, _ = strings.CutPrefix(v[0], "Bearer ")
	}
	if s.cfg.Token == "" || subtle.ConstantTimeCompare([]byte(got), []byte(s.cfg.Token)) != 1 {
		s.served.WithLabelValues("refused").Inc()
		return status.Error(codes.Unauthenticated, "linking: bad token")
	}
	return nil
}

func (s *Server) lookup(ctx context.Context, dec func(any) error) (any, error) {
	asked := time.Now()
	if err := s.authorized(ctx); err != nil {
		return nil, err
	}
	sc, _ := s.scratch.Get().(*lookupScratch)
	if sc == nil {
		sc = new(lookupScratch)
	}
	defer s.scratch.Put(sc)
	if err := dec(&sc.in); err != nil {
		s.served.WithLabelValues("bad_request").Inc()
		return nil, err
	}
	out := &sc.out
	out.Answers = slices.Grow(out.Answers[:0], len(sc.in.Queries))[:len(sc.in.Queries)]
	clear(out.Answers)
	s.answer(ctx, sc.in.Queries, out.Answers, asked)
	b, err := out.MarshalBinary()
	if err != nil {
		return nil, err
	}
	s.served.WithLabelValues("answered").Inc()
	return encoded(b), nil
}

// Answering waits for requests not found at once until their absence is
// final (Answerer.Answer): the asking agent may have seen the request
// arrive before this agent read its own record of the write (a ring
// reader lagging under load), and a request whose trace waits for a
// lookup of its own is not settled yet. It never waits past the asking
// agent's deadline (less answerMargin for the answer to travel back): a
// late answer is worth nothing. A request this node never saw (an
// untraced client) is final as soon as the rings have been read past the
// batch's arrival, one reader's tick.
const (
	answerPoll   = 5 * time.Millisecond
	answerMargin = 20 * time.Millisecond
	// maxAnswerDelay bounds the wait of a batch whose caller set no
	// deadline.
	maxAnswerDelay = time.Second
)

// answer fills out, asking again for what is not found until that is
// final or the request's deadline is near. asked is when the batch
// arrived.
func (s *Server) answer(ctx context.Context, qs []Query, out []Answer, asked time.Time) {
	deadline := holdUntil(ctx, asked)
	if s.cfg.Answerer.Answer(qs, out, asked) {
		return
	}
	idx := make([]int, 0, len(qs))
	var again []Query
	var got []Answer
	t := time.NewTimer(answerPoll)
	defer t.Stop()
	for time.Now().Add(answerPoll).Before(deadline) {
		idx, again = idx[:0], again[:0]
		for i, a := range out {
			if !a.Found {
				idx = append(idx, i)
				again = append(again, qs[i])
			}
		}
		if len(idx) == 0 {
			return
		}
		t.Reset(answerPoll)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		got = append(got[:0], make([]Answer, len(again))...)
		final := s.cfg.Answerer.Answer(again, got, asked)
		for j, i := range idx {
			out[i] = got[j]
		}
		if final {
			return
		}
	}
}

// holdUntil returns until when a batch that arrived at asked may be held:
// answerMargin before the asker's hold (holdHeader) or, without one, its
// call's deadline; never past maxAnswerDelay.
func holdUntil(ctx context.Context, asked time.Time) time.Time {
	deadline := asked.Add(maxAnswerDelay)
	if d, ok := ctx.Deadline(); ok && d.Add(-answerMargin).Before(deadline) {
		deadline = d.Add(-answerMargin)
	}
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(holdHeader); len(v) == 1 {
		if us, err := strconv.ParseUint(v[0], 10, 32); err == nil {
			if d := asked.Add(time.Duration(us)*time.Microsecond - answerMargin); d.Before(deadline) {
				deadline = d
			}
		}
	}
	return deadline
}

func (s *Server) addresses(ctx context.Context, dec func(any) error) (any, error) {
	if err := s.authorized(ctx); err != nil {
		return nil, err
	}
	if err := dec(new(addressesRequest)); err != nil {
		s.served.WithLabelValues("bad_request").Inc()
		return nil, err
	}
	addrs := s.cfg.Addresses()
	if len(addrs) > MaxAddresses {
		addrs = addrs[:MaxAddresses]
	}
	return &addressesResponse{Addrs: addrs}, nil
}
