package span

import (
	"sync"
	"testing"

	"go.opentelemetry.io/otel/attribute"
)

// A pooled span goes back to the pool only after its last holder releases
// it, zeroed, keeping its attribute array.
func TestPoolReferences(t *testing.T) {
	var p Pool
	s := p.Get()
	s.Name = "GET /"
	s.Attributes = append(s.Attributes, attribute.String("url.path", "/secret"))
	s.Hold() // an exporter's queue
	s.Release()
	if s.Name != "GET /" || len(s.Attributes) != 1 {
		t.Fatal("span reset while an exporter still holds it")
	}
	s.Release()
	if s.Name != "" || len(s.Attributes) != 0 || cap(s.Attributes) == 0 {
		t.Fatalf("released span not reset for reuse: %q, %d attributes, cap %d", s.Name, len(s.Attributes), cap(s.Attributes))
	}
	if kv := s.Attributes[:1][0]; kv.Key != "" {
		t.Errorf("pool keeps attribute %v alive", kv)
	}
	defer func() {
		if recover() == nil {
			t.Error("a release without a reference did not panic")
		}
	}()
	s.Release()
}

// Spans not from a pool ignore Hold and Release.
func TestUnpooled(t *testing.T) {
	s := &Span{Name: "x"}
	s.Hold()
	s.Release()
	s.Release()
	if s.Name != "x" {
		t.Fatal("an unpooled span was reset")
	}
}

// Holders on other goroutines (run with -race).
func TestPoolConcurrent(t *testing.T) {
	var p Pool
	var wg sync.WaitGroup
	for range 1000 {
		s := p.Get()
		s.Name = "n"
		s.Attributes = append(s.Attributes, attribute.Int("i", 1))
		for range 2 {
			s.Hold()
			wg.Add(1)
			go func() {
				defer wg.Done()
				if s.Name != "n" || len(s.Attributes) != 1 {
					t.Error("span reused while held")
				}
				s.Release()
			}()
		}
		s.Release()
	}
	wg.Wait()
}
