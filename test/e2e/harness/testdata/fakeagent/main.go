// Command fakeagent stands in for the periscope binary in the harness's own tests:
// it serves /status and /metrics like the agent does and exits on SIGINT.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("metrics-addr", "127.0.0.1:0", "address of /status and /metrics")
	pids := flag.String("pids", "", "comma-separated PIDs reported as instrumented")
	readyAfter := flag.Duration("ready-after", 300*time.Millisecond, "report ready after this long")
	exitCode := flag.Int("exit-code", 0, "exit code on SIGINT")
	ignoreINT := flag.Bool("ignore-sigint", false, "do not exit on SIGINT")
	flag.Parse()

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT)

	start := time.Now()
	type proc struct {
		PID        int      `json:"pid"`
		Exe        string   `json:"exe"`
		Collectors []string `json:"collectors"`
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/status", func(w http.ResponseWriter, r *http.Request) {
		ready := time.Since(start) >= *readyAfter
		procs := []proc{}
		if ready && *pids != "" {
			for _, s := range strings.Split(*pids, ",") {
				pid, _ := strconv.Atoi(s)
				exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
				procs = append(procs, proc{PID: pid, Exe: exe, Collectors: []string{"fake"}})
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"ready": ready, "processes": procs})
	})
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprint(w, `# HELP fake_requests_total Requests.
# TYPE fake_requests_total counter
fake_requests_total{method="GET",status="200"} 7
fake_requests_total{method="GET",status="404"} 2
fake_requests_total{method="POST",status="200"} 1
# TYPE fake_up gauge
fake_up 1
# TYPE fake_duration_seconds histogram
fake_duration_seconds_bucket{method="GET",le="0.1"} 3
fake_duration_seconds_bucket{method="GET",le="1"} 8
fake_duration_seconds_bucket{method="GET",le="+Inf"} 9
fake_duration_seconds_sum{method="GET"} 4.5
fake_duration_seconds_count{method="GET"} 9
`)
	})
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	go func() { _ = http.Serve(l, mux) }()
	fmt.Fprintf(os.Stderr, "fakeagent: serving on %s\n", l.Addr())
	for range sig {
		if *ignoreINT {
			fmt.Fprintln(os.Stderr, "fakeagent: ignoring SIGINT")
			continue
		}
		break
	}
	fmt.Fprintln(os.Stderr, "fakeagent: exiting")
	os.Exit(*exitCode)
}
