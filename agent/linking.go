package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/periscope-apm/periscope/config"
	"github.com/periscope-apm/periscope/correlator"
	"github.com/periscope-apm/periscope/linking"
)

// linker is this agent's side of cross-node linking: the client of the
// other agents (given to the correlator) and the server answering them
// (started once the correlator exists).
type linker struct {
	cfg    config.Linking
	token  string
	client *linking.Client
	log    *slog.Logger
	reg    prometheus.Registerer
	ln     net.Listener
}

// newLinker reads the token and listens; it returns nil when linking is
// off.
func newLinker(cfg config.Linking, log *slog.Logger, reg prometheus.Registerer) (*linker, error) {
	if !cfg.Enabled() {
		return nil, nil
	}
	if cfg.TokenFile == "" {
		return nil, &UsageError{errors.New("linking.token_file: required with linking.listen or linking.peers (agents answer only agents)")}
	}
	b, err := os.ReadFile(cfg.TokenFile)
	if err != nil {
		return nil, &UsageError{fmt.Errorf("linking.token_file: %w", err)}
	}
	token := strings.TrimSpace(string(b))
	if token == "" {
		return nil, &UsageError{fmt.Errorf("linking.token_file: %s is empty", cfg.TokenFile)}
	}
	l := &linker{cfg: cfg, token: token, log: log, reg: reg}
	if len(cfg.Peers) > 0 {
		l.client, err = linking.NewClient(linking.ClientConfig{Peers: cfg.Peers, Token: token, Wait: cfg.Wait, Logger: log, Registerer: reg})
		if err != nil {
			return nil, &UsageError{fmt.Errorf("linking.peers: %w", err)}
		}
	}
	if cfg.Listen != "" {
		if l.ln, err = net.Listen("tcp", cfg.Listen); err != nil {
			l.close()
			return nil, &UsageError{fmt.Errorf("linking.listen: %w", err)}
		}
	}
	return l, nil
}

// correlatorLinker returns what the correlator looks up with (nil without
// peers).
func (l *linker) correlatorLinker() correlator.Linker {
	if l == nil || l.client == nil {
		return nil
	}
	return l.client
}

// start runs the client and serves the answers of ans until ctx is done;
// stop waits for both.
func (l *linker) start(ctx context.Context, ans linking.Answerer) (stop func(), err error) {
	if l == nil {
		return func() {}, nil
	}
	done := make(chan struct{}, 2)
	n := 0
	var srv *linking.Server
	if l.ln != nil {
		srv, err = linking.NewServer(linking.ServerConfig{Token: l.token, Answerer: ans, Addresses: linking.InterfaceAddresses, Logger: l.log, Registerer: l.reg})
		if err != nil {
			l.close()
			return nil, err
		}
		n++
		go func() {
			defer func() { done <- struct{}{} }()
			if err := srv.Serve(l.ln); err != nil && !errors.Is(err, net.ErrClosed) {
				l.log.Error("linking server", "err", err)
			}
		}()
		l.log.Info("answering other agents' lookups", "addr", l.ln.Addr().String())
	}
	cctx, cancel := context.WithCancel(ctx)
	if l.client != nil {
		n++
		go func() {
			defer func() { done <- struct{}{} }()
			l.client.Run(cctx)
		}()
		l.log.Info("linking spans across nodes", "peers", len(l.cfg.Peers), "wait", l.cfg.Wait)
	}
	return func() {
		cancel()
		if srv != nil {
			srv.Stop()
		}
		for range n {
			<-done
		}
		l.close()
	}, nil
}

func (l *linker) close() {
	if l.client != nil {
		l.client.Close()
	}
	if l.ln != nil {
		l.ln.Close()
	}
}
