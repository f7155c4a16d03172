package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// `benchtool pace` sends GET requests at a fixed rate over keep-alive
// connections and prints what it sent: the load of test/bench/fixed-rate.sh,
// where the agent's CPU per span is compared at the same request rate (the
// agent's per-second costs make its CPU per span follow the rate, so wrk's
// as-fast-as-possible load compares builds only at equal throughput).
//
// Each of -conns connections has its own goroutine on its own schedule
// (rate/conns per second, start times staggered); a request that falls
// behind is sent at once, without skipping, so the count is exact when the
// server keeps up (`late` says how far behind the last one started).
func paceMain(args []string) int {
	fs := flag.NewFlagSet("benchtool pace", flag.ContinueOnError)
	url := fs.String("url", "", "URL to GET (required)")
	rate := fs.Float64("rate", 2000, "requests per second, all connections together")
	conns := fs.Int("conns", 8, "keep-alive connections")
	dur := fs.Duration("duration", 10*time.Second, "how long to send")
	if err := fs.Parse(args); err != nil || *url == "" || *rate <= 0 || *conns <= 0 {
		fmt.Fprintln(os.Stderr, "usage: benchtool pace -url URL [-rate N] [-conns C] [-duration D]")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	r := pace(ctx, *url, *rate, *conns, *dur)
	fmt.Printf("sent=%d ok=%d errors=%d late_ms=%d\n", r.sent.Load(), r.ok.Load(), r.errors.Load(), r.lateMax.Load()/int64(time.Millisecond))
	if r.errors.Load() > 0 {
		return 1
	}
	return 0
}

type paceResult struct {
	sent, ok, errors, lateMax atomic.Int64
}

func pace(ctx context.Context, url string, rate float64, conns int, dur time.Duration) *paceResult {
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{InsecureSkipVerify: true},
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
		ForceAttemptHTTP2:   false,
	}
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	defer tr.CloseIdleConnections()
	every := time.Duration(float64(conns) * float64(time.Second) / rate)
	start := time.Now()
	end := start.Add(dur)
	var r paceResult
	var wg sync.WaitGroup
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := start.Add(every * time.Duration(i) / time.Duration(conns))
			for next.Before(end) && ctx.Err() == nil {
				if d := time.Until(next); d > 0 {
					time.Sleep(d)
				} else if -d > time.Duration(r.lateMax.Load()) {
					r.lateMax.Store(int64(-d))
				}
				r.sent.Add(1)
				if get(client, url) {
					r.ok.Add(1)
				} else {
					r.errors.Add(1)
				}
				next = next.Add(every)
			}
		}()
	}
	wg.Wait()
	return &r
}

func get(c *http.Client, url string) bool {
	resp, err := c.Get(url)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
