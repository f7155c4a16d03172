package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// The firstspan mode (-mode firstspan, `MODE=firstspan bash
// test/bench/run.sh`): how soon after exec the requests of a new process are
// traced. Per round and target kind, a fresh copy of the executable (a new
// file: nothing cached) is started while the agent runs, and requested in a
// loop from its first answer, a request every 4 ms; the agent's console
// spans then say which was the first request traced. Reported per kind, p50
// and p99 over the rounds, of: the first answer after exec, the first traced
// request after exec, and how many requests answered later than 50 ms after
// exec have no span. The kinds' order rotates from round to round.

// firstSpanKind is one kind of target.
type firstSpanKind struct {
	name  string
	start func(work string, round int) (*exec.Cmd, string, error) // command, base URL (known after start)
}

// fsResult is one round of one kind.
type fsResult struct {
	firstAnswer, firstTraced time.Duration
	untracedLate, requests   int
}

func runFirstSpanMode(ctx context.Context, o options) error {
	work := filepath.Join(o.work, "firstspan")
	if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	cert, key := filepath.Join(work, "cert.pem"), filepath.Join(work, "key.pem")
	out, err := exec.Command("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
		"-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
		"-keyout", key, "-out", cert).CombinedOutput()
	if err != nil {
		return fmt.Errorf("openssl req (self-signed certificate): %w\n%s", err, out)
	}
	kinds := firstSpanKinds(o, cert, key)
	os.Setenv("PERISCOPE_SYMBOLS_CACHE_DIR", filepath.Join(work, "cache"))
	// Names of their own (firstspan-go-*, node-N): programs that others
	// run on the machine are not selected and do not queue before ours.
	ag, err := startAgent(o.agentCmd(), "firstspan-go-*", work, pidDir(o), 0, "--console=json", "--include-exe", "node-*",
		"--include-exe", "python3*")
	if err != nil {
		return err
	}
	defer ag.stop()
	if err := ag.waitReady(ctx, nil, 30*time.Second); err != nil {
		return err
	}
	results := map[string][]fsResult{}
	for r := 0; r < o.rounds; r++ {
		for i := range kinds {
			k := kinds[(i+r)%len(kinds)]
			res, err := firstSpanRound(ctx, ag, k, work, r)
			if err != nil {
				return fmt.Errorf("%s round %d: %w", k.name, r, err)
			}
			logf("%s round %d: first answer %s, first traced %s, %d of %d requests after 50 ms untraced",
				k.name, r, fmtDur(res.firstAnswer), fmtDur(res.firstTraced), res.untracedLate, res.requests)
			results[k.name] = append(results[k.name], res)
		}
	}
	return writeFirstSpanReport(o, kinds, results)
}

func firstSpanKinds(o options, cert, key string) []firstSpanKind {
	copyOf := func(src, dst string) error {
		b, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o755)
	}
	goKind := func(name string, src string) firstSpanKind {
		return firstSpanKind{name: name, start: func(work string, round int) (*exec.Cmd, string, error) {
			// A copy with bytes appended is another file: analysed anew.
			bin := filepath.Join(work, fmt.Sprintf("firstspan-%s-%d", name, round))
			if err := copyOf(src, bin); err != nil {
				return nil, "", err
			}
			f, err := os.OpenFile(bin, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				return nil, "", err
			}
			fmt.Fprintf(f, "round %d", round)
			f.Close()
			port, err := freePort()
			if err != nil {
				return nil, "", err
			}
			addr := fmt.Sprintf("127.0.0.1:%d", port)
			return exec.Command(bin, "server", addr), "http://" + addr, nil
		}}
	}
	tlsKind := func(name, interp, script string) firstSpanKind {
		return firstSpanKind{name: name, start: func(work string, round int) (*exec.Cmd, string, error) {
			exe := interp
			if strings.HasPrefix(filepath.Base(interp), "node") {
				exe = filepath.Join(work, fmt.Sprintf("node-%d", round)) // a new 100 MB file each round
				if err := copyOf(interp, exe); err != nil {
					return nil, "", err
				}
			}
			return exec.Command(exe, script, cert, key), "", nil
		}}
	}
	e2e := "test/e2e/testdata"
	return []firstSpanKind{
		goKind("go-dwarf", o.goapp),
		goKind("go-stripped", o.goapp+"-stripped"),
		tlsKind("openssl-shared (python)", "/usr/bin/python3", filepath.Join(e2e, "https_server.py")),
		tlsKind("openssl-static (node)", "/usr/bin/node", filepath.Join(e2e, "https_server.js")),
	}
}

// firstSpanRound starts one target and measures it.
func firstSpanRound(ctx context.Context, ag *agent, k firstSpanKind, work string, round int) (fsResult, error) {
	cmd, base, err := k.start(work, round)
	if err != nil {
		return fsResult{}, err
	}
	stdout, _ := cmd.StdoutPipe()
	stdin, _ := cmd.StdinPipe()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return fsResult{}, err
	}
	defer func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		if strings.HasPrefix(filepath.Base(cmd.Path), "node-") || strings.HasPrefix(filepath.Base(cmd.Path), "firstspan-") {
			os.Remove(cmd.Path)
		}
	}()
	lines := bufio.NewScanner(stdout)
	if base == "" { // python and node print their port; python waits for a line first
		for lines.Scan() {
			l := lines.Text()
			if l == "started" {
				io.WriteString(stdin, "go\n")
			}
			if p, ok := strings.CutPrefix(l, "listening "); ok {
				base = "https://127.0.0.1:" + strings.TrimSpace(p)
				break
			}
		}
		if base == "" {
			return fsResult{}, fmt.Errorf("%s did not say where it listens", cmd.Path)
		}
	}
	go io.Copy(io.Discard, stdout)
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, MaxIdleConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 2 * time.Second}
	type req struct {
		path  string
		after time.Duration
	}
	var reqs []req
	var started time.Time
	for i := 0; ctx.Err() == nil; i++ {
		if !started.IsZero() && time.Since(started) > 1500*time.Millisecond || time.Since(t0) > 30*time.Second {
			break
		}
		p := fmt.Sprintf("/items/%d", i)
		if strings.HasPrefix(k.name, "go-") {
			p = fmt.Sprintf("/item/%d", i)
		}
		resp, err := client.Get(base + p)
		if err != nil {
			time.Sleep(2 * time.Millisecond)
			continue
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if started.IsZero() {
			started = time.Now()
		}
		reqs = append(reqs, req{p, time.Since(t0)})
		time.Sleep(4 * time.Millisecond)
	}
	if len(reqs) == 0 {
		return fsResult{}, fmt.Errorf("%s answered nothing", cmd.Path)
	}
	time.Sleep(2 * time.Second) // spans reach the console
	traced, err := consoleSpanPaths(ag.logPath, cmd.Process.Pid)
	if err != nil {
		return fsResult{}, err
	}
	res := fsResult{firstAnswer: reqs[0].after, firstTraced: -1, requests: len(reqs)}
	for _, r := range reqs {
		if traced[r.path] && res.firstTraced < 0 {
			res.firstTraced = r.after
		}
		if !traced[r.path] && r.after > 50*time.Millisecond {
			res.untracedLate++
		}
	}
	return res, nil
}

// consoleSpanPaths reads the agent's JSON console lines: the url.path of
// every SERVER span of pid.
func consoleSpanPaths(logPath string, pid int) (map[string]bool, error) {
	f, err := os.Open(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 1<<16), 1<<20)
	for sc.Scan() {
		var s struct {
			Kind       string         `json:"kind"`
			Attributes map[string]any `json:"attributes"`
			Resource   map[string]any `json:"resource"`
		}
		if !strings.HasPrefix(sc.Text(), "{") || json.Unmarshal(sc.Bytes(), &s) != nil {
			continue
		}
		if p, _ := s.Resource["process.pid"].(float64); int(p) != pid || s.Kind != "SERVER" {
			continue
		}
		if path, ok := s.Attributes["url.path"].(string); ok {
			out[path] = true
		}
	}
	return out, sc.Err()
}

// percentile of durations (nearest rank); a negative value (never traced)
// sorts last.
func percentile(v []time.Duration, p float64) time.Duration {
	s := append([]time.Duration(nil), v...)
	sort.Slice(s, func(i, j int) bool {
		if (s[i] < 0) != (s[j] < 0) {
			return s[j] < 0
		}
		return s[i] < s[j]
	})
	i := int(p*float64(len(s))+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}

func writeFirstSpanReport(o options, kinds []firstSpanKind, results map[string][]fsResult) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# Time to first span (`MODE=firstspan`)\n\nCommit %s, %s, %d rounds per kind (kinds rotated per round), "+
		"load average at the end %s. Each round starts a new copy of the executable (nothing cached; python's libssl "+
		"is analysed in its first round only) while the agent runs with `--include-exe`, and requests it every 4 ms "+
		"from its first answer for 1.5 s.\n\n", o.commit, time.Now().UTC().Format("2006-01-02 15:04 MST"), o.rounds, loadAvg())
	b.WriteString("| target | first answer after exec p50 / p99 | first traced request after exec p50 / p99 | requests answered > 50 ms after exec without span (all rounds) |\n|---|---|---|---|\n")
	for _, k := range kinds {
		rs := results[k.name]
		var ans, tr []time.Duration
		untraced, total := 0, 0
		for _, r := range rs {
			ans = append(ans, r.firstAnswer)
			tr = append(tr, r.firstTraced)
			untraced += r.untracedLate
			total += r.requests
		}
		fmtD := func(d time.Duration) string {
			if d < 0 {
				return "never"
			}
			return fmtDur(d)
		}
		fmt.Fprintf(&b, "| %s | %s / %s | %s / %s | %d of %d |\n", k.name, fmtD(percentile(ans, .5)), fmtD(percentile(ans, .99)),
			fmtD(percentile(tr, .5)), fmtD(percentile(tr, .99)), untraced, total)
	}
	fmt.Print(b.String())
	return os.WriteFile(o.out, []byte(b.String()), 0o644)
}
