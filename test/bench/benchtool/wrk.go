package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// wrkResult is what the benchmark takes from wrk's --latency summary.
type wrkResult struct {
	requests    uint64  // "N requests in"
	seconds     float64 // "in 10.00s"
	rps         float64 // "Requests/sec:"
	p50, p99    time.Duration
	socketErrs  uint64 // connect+read+write+timeout
	non2xx      uint64
	socketsLine string
}

var (
	reRequests = regexp.MustCompile(`^\s*(\d+) requests in ([0-9.]+)(us|ms|s|m|h)\b`)
	reRPS      = regexp.MustCompile(`^Requests/sec:\s+([0-9.]+)`)
	rePct      = regexp.MustCompile(`^\s*(50|99)(?:\.0+)?%\s+([0-9.]+)(us|ms|s|m|h)\s*$`)
	reSockErr  = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	reNon2xx   = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
)

func wrkDuration(num, unit string) (time.Duration, error) {
	v, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, err
	}
	mult := map[string]float64{"us": 1e3, "ms": 1e6, "s": 1e9, "m": 60e9, "h": 3600e9}[unit]
	return time.Duration(v * mult), nil
}

// parseWrk reads wrk's text summary (run with --latency).
func parseWrk(out string) (wrkResult, error) {
	var r wrkResult
	var haveReq, haveRPS, have50, have99, inDist bool
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if strings.Contains(line, "Latency Distribution") {
			inDist = true
			continue
		}
		if m := reRequests.FindStringSubmatch(line); m != nil {
			inDist = false
			n, err := strconv.ParseUint(m[1], 10, 64)
			if err != nil {
				return r, fmt.Errorf("wrk request count %q: %w", m[1], err)
			}
			d, err := wrkDuration(m[2], m[3])
			if err != nil {
				return r, fmt.Errorf("wrk duration %q: %w", m[2], err)
			}
			r.requests, r.seconds, haveReq = n, d.Seconds(), true
			continue
		}
		if inDist {
			if m := rePct.FindStringSubmatch(line); m != nil {
				d, err := wrkDuration(m[2], m[3])
				if err != nil {
					return r, fmt.Errorf("wrk latency %q: %w", line, err)
				}
				if m[1] == "50" {
					r.p50, have50 = d, true
				} else {
					r.p99, have99 = d, true
				}
			}
			continue
		}
		if m := reRPS.FindStringSubmatch(line); m != nil {
			v, err := strconv.ParseFloat(m[1], 64)
			if err != nil {
				return r, fmt.Errorf("wrk Requests/sec %q: %w", m[1], err)
			}
			r.rps, haveRPS = v, true
		}
		if m := reSockErr.FindStringSubmatch(line); m != nil {
			r.socketsLine = strings.TrimSpace(line)
			for _, s := range m[1:] {
				n, _ := strconv.ParseUint(s, 10, 64)
				r.socketErrs += n
			}
		}
		if m := reNon2xx.FindStringSubmatch(line); m != nil {
			r.non2xx, _ = strconv.ParseUint(m[1], 10, 64)
		}
	}
	var missing []string
	for _, c := range []struct {
		ok   bool
		what string
	}{{haveReq, `"N requests in"`}, {haveRPS, `"Requests/sec:"`}, {have50, "the 50% latency"}, {have99, "the 99% latency"}} {
		if !c.ok {
			missing = append(missing, c.what)
		}
	}
	if len(missing) > 0 {
		return r, fmt.Errorf("wrk output lacks %s", strings.Join(missing, ", "))
	}
	return r, nil
}

type wrkConfig struct {
	threads, connections int
	url                  string
	header               string   // an extra request header ("Connection: close"), or ""
	script               string   // a wrk Lua script (-s), or ""
	wrap                 []string // runs wrk through a command (`ip netns exec NS`)
}

func (c wrkConfig) args(d time.Duration) []string {
	args := []string{
		"-t" + strconv.Itoa(c.threads),
		"-c" + strconv.Itoa(c.connections),
		"-d" + strconv.Itoa(int(d.Round(time.Second)/time.Second)) + "s",
	}
	if c.header != "" {
		args = append(args, "-H", c.header)
	}
	if c.script != "" {
		args = append(args, "-s", c.script)
	}
	return append(args, "--latency", c.url)
}

// runWrk runs one wrk round and parses its summary. wrk runs in its own
// process group with a pid file, like nginx and the agent, so that run.sh can
// kill it if we die.
func runWrk(ctx context.Context, c wrkConfig, d time.Duration, pidDir string) (wrkResult, string, error) {
	argv := append(append(slices.Clone(c.wrap), "wrk"), c.args(d)...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.WaitDelay = 5 * time.Second
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Start(); err != nil {
		return wrkResult{}, "", fmt.Errorf("start wrk: %w", err)
	}
	pidFile := filepath.Join(pidDir, "wrk")
	_ = os.WriteFile(pidFile, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644)
	err := cmd.Wait()
	_ = os.Remove(pidFile)
	out := buf.Bytes()
	if ctx.Err() != nil {
		return wrkResult{}, string(out), ctx.Err()
	}
	if err != nil {
		return wrkResult{}, string(out), fmt.Errorf("wrk %s: %w\n%s", strings.Join(c.args(d), " "), err, out)
	}
	r, err := parseWrk(string(out))
	if err != nil {
		return r, string(out), fmt.Errorf("%w\n%s", err, out)
	}
	return r, string(out), nil
}
