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
	"strings"
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
	// len(qs).
	Answer(qs []Query, out []Answer)
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
}

const (
	serviceName = "periscope.linking.v1.Linker"
	tokenHeader = "authorization"
	// maxMessage bounds a message either way: a full batch and a bit.
	maxMessage = 2 + MaxAddresses*16 + 1024
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
	if err := s.authorized(ctx); err != nil {
		return nil, err
	}
	in := new(lookupRequest)
	if err := dec(in); err != nil {
		s.served.WithLabelValues("bad_request").Inc()
		return nil, err
	}
	out := &lookupResponse{Answers: make([]Answer, len(in.Queries))}
	s.answer(ctx, in.Queries, out.Answers)
	s.served.WithLabelValues("answered").Inc()
	return out, nil
}

// Answering waits a little for requests not found at once: the asking
// agent may have seen the request arrive before this agent read its own
// record of the write, and a request whose trace waits for a lookup of its
// own is not settled yet. The wait is short: the whole batch waits with
// its stragglers, and a request that is not known after it (evicted, or
// never seen) would hold every later batch up too.
const (
	answerPoll     = 5 * time.Millisecond
	maxAnswerDelay = 50 * time.Millisecond
	answerMargin   = 20 * time.Millisecond
)

// answer fills out, asking again for what is not found until the request's
// deadline is near.
func (s *Server) answer(ctx context.Context, qs []Query, out []Answer) {
	deadline := time.Now().Add(maxAnswerDelay)
	if d, ok := ctx.Deadline(); ok && d.Add(-answerMargin).Before(deadline) {
		deadline = d.Add(-answerMargin)
	}
	s.cfg.Answerer.Answer(qs, out)
	idx := make([]int, 0, len(qs))
	var again []Query
	var got []Answer
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
		select {
		case <-ctx.Done():
			return
		case <-time.After(answerPoll):
		}
		got = append(got[:0], make([]Answer, len(again))...)
		s.cfg.Answerer.Answer(again, got)
		for j, i := range idx {
			out[i] = got[j]
		}
	}
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
