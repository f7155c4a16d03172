package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	otlpexporter "github.com/periscope-apm/periscope/exporters/otlp"
	"github.com/periscope-apm/periscope/test/e2e/harness"
	"github.com/periscope-apm/periscope/test/otlpreceiver"
)

// TestFaultOTLPOutage: the OTLP receiver goes away for 10 s while nginx
// serves curl at 100 requests/s, then comes back on the same address while
// the traffic goes on. The agent traces only nginx and curl (other spans
// of a busy machine would fill the queue). Spans arrive again soon after its return (the
// delay is logged; the bound is generous: it catches the old multi-second
// reconnect backoff, not jitter), and once the traffic stops every span
// built is accounted for: exported (and received by one of the two
// receivers), or dropped and counted. The queue holds the outage's spans,
// so only the batches waiting for the backend when their export timed
// out are lost.
func TestFaultOTLPOutage(t *testing.T) {
	ngx := harness.StartNginx(t, harness.NginxOptions{Workers: 1})
	e := startAgent(t, "--include-exe", ngx.Exe, "--include-exe", "curl")
	e.instrumented(t, ngx.WorkerPIDs...)
	traffic := func(phase string, n int) *proc {
		return e.curlWhenProbed(t, fmt.Sprintf("%s/index.html?phase=%s&n=[1-%d]", ngx.URL, phase, n),
			"-sS", "--fail-with-body", "--rate", "100/s", "--cacert", ngx.CAFile, "-o", "/dev/null")
	}
	worker := int64(ngx.WorkerPIDs[0])
	ours := func(s otlpreceiver.Span) bool { return s.Resource["process.pid"] == worker }
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	traffic("before", 100).mustSucceed(time.Minute)
	if _, err := e.recv.WaitForSpans(ctx, 1, ours); err != nil {
		t.Fatalf("nginx spans before the outage: %v%s", err, e.losses(t))
	}

	addr, httpAddr := e.recv.Addr(), e.recv.HTTPAddr()
	e.recv.Stop()
	traffic("outage", 1000).mustSucceed(time.Minute) // 10 s
	after := traffic("after", 300)
	back := time.Now()
	r2 := otlpreceiver.StartOn(t, addr, httpAddr)
	if _, err := r2.WaitForSpans(ctx, 1, ours); err != nil {
		t.Fatalf("no span reached the receiver after it came back: %v%s", err, e.losses(t))
	}
	delay := time.Since(back)
	t.Logf("spans arrived again %v after the receiver came back", delay.Round(time.Millisecond))
	if delay > 5*time.Second {
		t.Errorf("exports resumed %v after the receiver came back", delay)
	}
	after.mustSucceed(time.Minute)

	// Once the backlog is sent,
	// every span built is exported, dropped and counted, queued (the
	// batch being filled, sent within a second) or in flight, up to the
	// spans still on their way to the exporter (at most a batch).
	otlp := map[string]string{"exporter": "otlp"}
	var built, exported, full, failed, queued, inFlight float64
	for deadline := time.Now().Add(30 * time.Second); ; {
		fams := e.agent.MetricFamilies(t)
		sum := func(name string, labels map[string]string) float64 {
			v, err := harness.SumMetric(fams, name, labels)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
		built = sum("periscope_spans_total", nil)
		exported = sum("periscope_spans_exported_total", otlp)
		full = sum("periscope_spans_dropped_total", map[string]string{"exporter": "otlp", "reason": "queue_full"})
		failed = sum("periscope_spans_dropped_total", map[string]string{"exporter": "otlp", "reason": "export_failed"})
		queued = sum("periscope_exporter_queue_length", otlp)
		inFlight = sum("periscope_exporter_spans_in_flight", otlp)
		inBatch := built - exported - full - failed - queued - inFlight
		if queued == 0 && inFlight == 0 && inBatch >= 0 && inBatch <= otlpexporter.DefaultBatchSize {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("spans built %v, otlp exported %v, dropped queue_full %v, export_failed %v, queued %v, in flight %v: %v unaccounted",
				built, exported, full, failed, queued, inFlight, inBatch)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("spans built %v: exported %v, dropped queue_full %v, export_failed %v, in the batch being filled %v",
		built, exported, full, failed, built-exported-full-failed)
	// The receivers got exactly what the exporter counts as exported.
	time.Sleep(200 * time.Millisecond)
	exported = e.agent.Metric(t, "periscope_spans_exported_total", otlp)
	all := append(e.recv.Spans(), r2.Spans()...)
	received, distinct := len(all), distinctSpanIDs(all)
	// An export that timed out or lost its connection after the
	// receiver took it is counted as failed although it arrived: the
	// receivers got what was exported, plus at most what failed, each
	// span once.
	if float64(received) < exported || float64(received) > exported+failed || distinct != received {
		t.Errorf("the receivers got %d spans (%d distinct); the exporter counts %v exported and %v failed",
			received, distinct, exported, failed)
	}
	nginx := 0
	for _, s := range all {
		if ours(s) {
			nginx++
		}
	}
	t.Logf("nginx spans received: %d of 1400 requests%s", nginx, e.losses(t))
	if nginx > 1400 {
		t.Errorf("received %d nginx spans for 1400 requests", nginx)
	}
	// 2000 spans in 10 s fit in the queue: none dropped for a full
	// queue, and only a batch timing out while it waited for the
	// backend (at most one per export timeout, 10 s) is lost.
	if full != 0 || failed > 2*512 {
		t.Errorf("dropped %v spans for a full queue and %v in failed exports, want 0 and at most 2 batches", full, failed)
	}
}
