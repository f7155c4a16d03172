package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The go mode (-mode go, `make bench MODE=go`, the main one): the Go
// hello-world server of test/e2e/testdata/goapp (net/http, HTTP/2 off) under
// wrk, over HTTPS (crypto/tls; -schemes http,https for both), rounds without
// and with the agent by the A/B engine (abround.go).

// goServer is one `goapp server` process.
type goServer struct {
	bin, url, logPath, pidFile string
	tls                        bool
	cmd                        *exec.Cmd
	exited                     chan struct{}
}

func (s *goServer) scheme() string {
	if s.tls {
		return "HTTPS"
	}
	return "HTTP"
}

func startGoServer(ctx context.Context, bin, work, pidDir, cert, key string) (*goServer, error) {
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("free port: %w", err)
	}
	s := &goServer{bin: bin, tls: cert != "", pidFile: filepath.Join(pidDir, "goapp")}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	args := []string{"server", addr}
	s.url = "http://" + addr + "/hello"
	if s.tls {
		args = append(args, "-tls-cert", cert, "-tls-key", key)
		s.url = "https://" + addr + "/hello"
	}
	s.logPath = filepath.Join(work, "goapp-"+strings.ToLower(s.scheme())+".log")
	log, err := os.Create(s.logPath)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	s.cmd = exec.Command(bin, args...)
	s.cmd.Stdout, s.cmd.Stderr = log, log
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	_ = os.WriteFile(s.pidFile, []byte(strconv.Itoa(s.cmd.Process.Pid)+"\n"), 0o644)
	s.exited = make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(s.exited) }()

	client := insecureClient()
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-s.exited:
			b, _ := os.ReadFile(s.logPath)
			return nil, fmt.Errorf("goapp exited at start (%s)\n%s", s.cmd.ProcessState, b)
		case <-ctx.Done():
			s.stop()
			return nil, ctx.Err()
		default:
		}
		resp, err := client.Get(s.url)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("goapp does not serve %s: %w", s.url, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *goServer) pid() int { return s.cmd.Process.Pid }

func (s *goServer) stop() {
	if s == nil || s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-s.pid(), syscall.SIGKILL)
	<-s.exited
	_ = os.Remove(s.pidFile)
}

func runGoMode(ctx context.Context, o options) error {
	if o.goapp == "" {
		return errors.New("-mode go needs -goapp (run.sh builds test/e2e/testdata/goapp)")
	}
	bin, err := filepath.Abs(o.goapp)
	if err != nil {
		return err
	}
	h, env, closer, err := startAB(o)
	if err != nil {
		return err
	}
	defer closer.Close()
	pidDir := env.pidDir

	cert, key := filepath.Join(o.work, "go-cert.pem"), filepath.Join(o.work, "go-key.pem")
	out, err := exec.Command("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
		"-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
		"-keyout", key, "-out", cert).CombinedOutput()
	if err != nil {
		return fmt.Errorf("openssl req (self-signed certificate): %w\n%s", err, out)
	}
	var results []*abResult
	for _, scheme := range strings.Split(o.schemes, ",") {
		c, k := "", ""
		switch strings.TrimSpace(scheme) {
		case "https":
			c, k = cert, key
		case "http":
		default:
			return fmt.Errorf("-schemes: %q is neither http nor https", scheme)
		}
		srv, err := startGoServer(ctx, bin, o.work, pidDir, c, k)
		if err != nil {
			return err
		}
		logf("goapp %s: pid %d, %s", srv.scheme(), srv.pid(), srv.url)
		t := abTarget{
			name: "goapp " + srv.scheme(),
			exe:  bin,
			wc:   wrkConfig{threads: o.threads, connections: o.connections, url: srv.url},
			pids: func() []int { return []int{srv.pid()} },
		}
		res, err := runAB(ctx, env, t)
		srv.stop()
		if err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
		results = append(results, res)
	}
	h.title = "Go hello-world server (net/http), without and with the agent"
	h.mode = "go"
	h.target = fmt.Sprintf("test/e2e/testdata/goapp (`%s`, CGO_ENABLED=0, `-tags nethttponly`: net/http is its only crypto/tls user), `goapp server 127.0.0.1:PORT [-tls-cert C -tls-key K]`, handler `/hello` (6-byte body), HTTP/1.1 keep-alive (HTTP/2 disabled), HTTPS via crypto/tls with a self-signed RSA-2048 certificate", goVersionOf(bin))
	h.agentSelects = "GOAPP, the full path of the built goapp (wrk is not traced)"
	h.targets = abTargets{throughputPct: 60, appAddedUs: 5, agentUsPerSpan: 3, hwmMiB: 64, completenessPct: 99.9}
	return h.write(results)
}

func goVersionOf(bin string) string {
	out, err := exec.Command("go", "version", bin).Output()
	if err != nil {
		return "go version unknown"
	}
	s := strings.TrimSpace(string(out))
	if i := strings.Index(s, ": "); i >= 0 {
		s = s[i+2:]
	}
	return s
}
