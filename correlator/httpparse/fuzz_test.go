package httpparse

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
)

// checker is a Handler that checks what every message must satisfy.
type checker struct {
	t     *testing.T
	heads int
	msgs  []*Message
}

func (c *checker) Headers(m *Message) {
	c.heads++
	if m.Complete {
		c.t.Fatalf("Headers called on a complete message")
	}
}

func (c *checker) Message(m *Message) {
	if !m.Complete {
		c.t.Fatalf("Message called on an incomplete message")
	}
	if m.BodySize < 0 || m.End.Before(m.Start) || len(m.Headers) > maxHeaders {
		c.t.Fatalf("bad message: body %d start %v end %v headers %d", m.BodySize, m.Start, m.End, len(m.Headers))
	}
	if m.Kind == Request && m.Method == "" || m.Kind == Response && m.StatusCode < 100 {
		c.t.Fatalf("message without a start line: %+v", m)
	}
	c.msgs = append(c.msgs, m)
}

// chunksOf cuts data into calls chosen by rng. When gaps is set, some calls
// are only partly captured (a prefix and maybe a tail).
func chunksOf(data []byte, rng *rand.Rand, gaps bool) []Chunk {
	var cs []Chunk
	for i := 0; len(data) > 0; i++ {
		n := 1 + rng.IntN(len(data))
		if rng.IntN(4) == 0 {
			n = min(len(data), 1+rng.IntN(8))
		}
		call := data[:n]
		data = data[n:]
		c := Chunk{Bytes: call, Size: n, Time: at(i)}
		if gaps && rng.IntN(3) == 0 {
			c.Bytes = call[:rng.IntN(n+1)]
			if rng.IntN(2) == 0 {
				c.Tail = call[n-rng.IntN(n+1):]
			}
			if rng.IntN(16) == 0 {
				c.Size = rng.IntN(n + 1) // a confused collector
			}
		}
		cs = append(cs, c)
	}
	return cs
}

func feedAll(t *testing.T, kind Kind, opts Options, methods []string, chunks []Chunk) (*checker, error) {
	c := &checker{t: t}
	p := New(kind, opts, c)
	for _, m := range methods {
		p.ExpectResponse(m)
	}
	var err error
	for _, ch := range chunks {
		if err = p.Feed(ch); err != nil {
			if !errors.Is(err, ErrNotHTTP) && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrHeaderTooLarge) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			break
		}
		if cap(p.line) > 2*(opts.MaxHeaderBytes+maxChunkLineLen) ||
			cap(p.window) > windowSize || len(p.methods) > maxPending {
			t.Fatalf("buffers grew: line %d window %d methods %d", cap(p.line), cap(p.window), len(p.methods))
		}
	}
	if m := p.EOF(at(1 << 20)); m != nil && m.Complete {
		t.Fatalf("EOF returned a complete message")
	}
	return c, err
}

func FuzzParser(f *testing.F) {
	f.Add([]byte(sampleRequests), uint64(1), false)
	f.Add([]byte(sampleResponses), uint64(2), true)
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nA: b\r\n\r\n"), uint64(3), true)
	f.Add([]byte("GET / HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x00"), uint64(4), false)
	f.Add([]byte("\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"), uint64(5), false)

	f.Fuzz(func(t *testing.T, data []byte, seed uint64, response bool) {
		kind := Request
		if response {
			kind = Response
		}
		rng := rand.New(rand.NewPCG(seed, seed>>32|1))
		var methods []string
		for range rng.IntN(6) {
			methods = append(methods, []string{"GET", "HEAD", "POST", "CONNECT"}[rng.IntN(4)])
		}
		opts := Options{MaxHeaderBytes: 64 + rng.IntN(DefaultMaxHeaderBytes), AllHeaders: rng.IntN(2) == 0}

		// Arbitrary calls, with gaps: nothing may panic or grow.
		feedAll(t, kind, opts, methods, chunksOf(data, rng, true))

		// Fully captured: the messages must not depend on how the stream
		// was cut into calls.
		whole, errWhole := feedAll(t, kind, opts, methods, []Chunk{{Bytes: data, Size: len(data), Time: at(0)}})
		split, errSplit := feedAll(t, kind, opts, methods, chunksOf(data, rng, false))
		if (errWhole == nil) != (errSplit == nil) {
			t.Fatalf("whole: %v, split: %v", errWhole, errSplit)
		}
		if w, s := summaries(whole.msgs), summaries(split.msgs); !slices.Equal(w, s) {
			t.Fatalf("whole: %q\nsplit: %q", w, s)
		}
	})
}
