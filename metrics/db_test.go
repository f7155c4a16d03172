package metrics

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/periscope-apm/periscope/span"
)

// dbSpan is a span as the database decoders describe one: with the query
// text and summary, which must never become labels.
func dbSpan(p *span.Process, kind span.Kind, op, table, code string, d time.Duration) *span.Span {
	start := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	attrs := []attribute.KeyValue{
		attribute.String("db.system.name", "postgresql"),
		attribute.String("db.namespace", "shop"),
		attribute.String("db.operation.name", op),
		attribute.String("db.collection.name", table),
		attribute.String("db.query.summary", op+" "+table),
		attribute.String("db.query.text", op+" * FROM "+table+" WHERE id = ?"),
		attribute.String("server.address", "10.0.0.5"),
		attribute.Int("server.port", 5432),
		attribute.String("network.peer.address", "10.0.0.5"),
	}
	if code != "" {
		attrs = append(attrs, attribute.String("db.response.status_code", code), attribute.String("error.type", code))
	}
	return &span.Span{Kind: kind, Name: op + " " + table, Start: start, End: start.Add(d), Process: p, Attributes: attrs}
}

// TestDBDurations: database spans record into db.client.operation.duration
// (client) and periscope.db.server.operation.duration (a traced server),
// with the conventions' buckets, labelled by bounded attributes only.
func TestDBDurations(t *testing.T) {
	h, _, reg := newTestHTTP(t, 100)
	h.Export(dbSpan(curl, span.Client, "SELECT", "users", "", 3*time.Millisecond))
	h.Export(dbSpan(curl, span.Client, "SELECT", "users", "", 700*time.Microsecond))
	h.Export(dbSpan(curl, span.Client, "INSERT", "users", "23505", 20*time.Millisecond))
	h.Export(dbSpan(nginx, span.Server, "SELECT", "users", "", 2*time.Millisecond))

	if n := testutil.CollectAndCount(h, DBClientDurationPromName); n != 2 {
		t.Errorf("%d client series, want 2 (SELECT, INSERT 23505)", n)
	}
	if n := testutil.CollectAndCount(h, DBServerDurationPromName); n != 1 {
		t.Errorf("%d server series, want 1", n)
	}
	if n := testutil.CollectAndCount(h, ServerDurationPromName, ClientDurationPromName, RPCServerDurationPromName, RPCClientDurationPromName); n != 0 {
		t.Errorf("%d HTTP/RPC series from database spans", n)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"db_system_name": "postgresql", "db_namespace": "shop", "db_operation_name": "SELECT",
		"db_collection_name": "users", "server_address": "10.0.0.5", "server_port": "5432", "service_name": "curl",
	}
	var selects int
	for _, m := range promFamily(t, fams, DBClientDurationPromName).Metric {
		labels := map[string]string{}
		for _, l := range m.Label {
			labels[l.GetName()] = l.GetValue()
		}
		for _, banned := range []string{"db_query_text", "db_query_summary", "network_peer_address"} {
			if _, ok := labels[banned]; ok {
				t.Errorf("label %s on %v", banned, labels)
			}
		}
		if labels["db_operation_name"] != "SELECT" {
			if labels["db_response_status_code"] != "23505" || labels["error_type"] != "23505" {
				t.Errorf("failed INSERT series %v", labels)
			}
			continue
		}
		selects++
		for k, v := range want {
			if labels[k] != v {
				t.Errorf("SELECT series %s=%q, want %q (%v)", k, labels[k], v, labels)
			}
		}
		hist := m.Histogram
		if hist.GetSampleCount() != 2 || len(hist.Bucket) != len(DBDurationBuckets) {
			t.Fatalf("SELECT series count %d buckets %d", hist.GetSampleCount(), len(hist.Bucket))
		}
		// 0.7 ms falls in le=0.001, 3 ms in le=0.005.
		if b := hist.Bucket[0]; b.GetUpperBound() != 0.001 || b.GetCumulativeCount() != 1 {
			t.Errorf("first bucket le=%v count %d, want le=0.001 count 1", b.GetUpperBound(), b.GetCumulativeCount())
		}
		if b := hist.Bucket[1]; b.GetCumulativeCount() != 2 {
			t.Errorf("le=%v count %d, want 2", b.GetUpperBound(), b.GetCumulativeCount())
		}
	}
	if selects != 1 {
		t.Errorf("%d SELECT series, want 1", selects)
	}
	for _, m := range promFamily(t, fams, DBServerDurationPromName).Metric {
		for _, l := range m.Label {
			if l.GetName() == "server_address" || l.GetName() == "server_port" {
				t.Errorf("server series has %s", l.GetName())
			}
		}
	}

	rms := h.ResourceMetrics(instrumentation.Scope{Name: "test"}, false)
	names := map[string]bool{}
	for _, rm := range rms {
		for _, m := range rm.ScopeMetrics[0].Metrics {
			names[m.Name] = true
			if m.Unit != "s" {
				t.Errorf("%s unit %q", m.Name, m.Unit)
			}
			for _, p := range m.Data.(metricdata.Histogram[float64]).DataPoints {
				if len(p.Bounds) != len(DBDurationBuckets) || p.Bounds[0] != 0.001 {
					t.Errorf("%s bounds %v", m.Name, p.Bounds)
				}
				if v, _ := p.Attributes.Value("db.system.name"); v.AsString() != "postgresql" {
					t.Errorf("%s point without db.system.name: %v", m.Name, p.Attributes.ToSlice())
				}
				if p.Attributes.HasValue("db.query.text") || p.Attributes.HasValue("db.query.summary") {
					t.Errorf("%s point labelled by query: %v", m.Name, p.Attributes.ToSlice())
				}
			}
		}
	}
	if !names[DBClientDurationName] || !names[DBServerDurationName] || len(names) != 2 {
		t.Errorf("OTLP metrics %v", names)
	}
}

// TestDBOverflow: past the series cap, database series fold into one whose
// db.collection.name is _overflow, without server.address.
func TestDBOverflow(t *testing.T) {
	h, _, _ := newTestHTTP(t, 2)
	for _, table := range []string{"a", "b", "c", "d"} {
		h.Export(dbSpan(curl, span.Client, "SELECT", table, "", time.Millisecond))
	}
	if n := testutil.CollectAndCount(h, DBClientDurationPromName); n != 3 {
		t.Errorf("%d series, want 3 (a, b, _overflow)", n)
	}
	rms := h.ResourceMetrics(instrumentation.Scope{Name: "test"}, false)
	var overflow uint64
	for _, rm := range rms {
		for _, m := range rm.ScopeMetrics[0].Metrics {
			for _, p := range m.Data.(metricdata.Histogram[float64]).DataPoints {
				if v, _ := p.Attributes.Value("db.collection.name"); v.AsString() == OverflowRoute {
					overflow += p.Count
					if p.Attributes.HasValue("server.address") {
						t.Errorf("overflow series keeps server.address")
					}
				}
			}
		}
	}
	if overflow != 2 {
		t.Errorf("overflow count %d, want 2", overflow)
	}
}
