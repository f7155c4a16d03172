package httpparse

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// recorder is a Handler that keeps everything it is told.
type recorder struct {
	heads []*Message
	msgs  []*Message
}

func (r *recorder) Headers(m *Message) { r.heads = append(r.heads, m) }
func (r *recorder) Message(m *Message) { r.msgs = append(r.msgs, m) }

var t0 = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

func at(i int) time.Time { return t0.Add(time.Duration(i) * time.Millisecond) }

// full returns a fully captured chunk.
func full(s string, i int) Chunk {
	return Chunk{Bytes: []byte(s), Size: len(s), Time: at(i)}
}

// partial returns a chunk of s with only the first capture bytes and the
// last tail bytes captured.
func partial(s string, capture, tail, i int) Chunk {
	c := Chunk{Size: len(s), Time: at(i)}
	c.Bytes = []byte(s[:min(capture, len(s))])
	if tail > 0 {
		c.Tail = []byte(s[max(0, len(s)-tail):])
	}
	return c
}

// summary renders the fields a test compares (times excluded).
func summary(m *Message) string {
	var b strings.Builder
	if m.Kind == Request {
		fmt.Fprintf(&b, "%s %s path=%q query=%q", m.Method, m.Target, m.Path, m.RawQuery)
	} else {
		fmt.Fprintf(&b, "%d", m.StatusCode)
		if m.Interim > 0 {
			fmt.Fprintf(&b, " interim=%d", m.Interim)
		}
	}
	fmt.Fprintf(&b, " v=%s body=%d", m.Version, m.BodySize)
	if m.Host != "" {
		fmt.Fprintf(&b, " host=%s", m.Host)
	}
	if m.ContentLength >= 0 {
		fmt.Fprintf(&b, " cl=%d", m.ContentLength)
	}
	if m.Chunked {
		b.WriteString(" chunked")
	}
	if m.Upgrade {
		b.WriteString(" upgrade")
	}
	if m.Truncated {
		b.WriteString(" truncated")
	}
	if !m.Complete {
		b.WriteString(" INCOMPLETE")
	}
	return b.String()
}

func summaries(ms []*Message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = summary(m)
	}
	return out
}

func run(t *testing.T, kind Kind, methods []string, chunks ...Chunk) (*recorder, *Parser, error) {
	t.Helper()
	r := &recorder{}
	p := New(kind, Options{}, r)
	for _, m := range methods {
		p.ExpectResponse(m)
	}
	var err error
	for _, c := range chunks {
		if err = p.Feed(c); err != nil {
			break
		}
	}
	return r, p, err
}

func checkSummaries(t *testing.T, got []*Message, want []string) {
	t.Helper()
	g := summaries(got)
	if strings.Join(g, "\n") != strings.Join(want, "\n") {
		t.Errorf("messages:\n got: %q\nwant: %q", g, want)
	}
}

const sampleRequests = "GET /users/42?tab=orders&token=s3cr3t HTTP/1.1\r\n" +
	"Host: api.example.com\r\n" +
	"User-Agent: curl/8.0\r\n" +
	"traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n" +
	"tracestate: vendor=value\r\n" +
	"\r\n" +
	"POST /upload HTTP/1.1\r\n" +
	"Host: api.example.com\r\n" +
	"Content-Type: application/json\r\n" +
	"Content-Length: 13\r\n" +
	"Expect: 100-continue\r\n" +
	"\r\n" +
	"{\"a\":\"hello\"}" +
	"POST /stream HTTP/1.0\r\n" +
	"Transfer-Encoding: chunked\r\n" +
	"\r\n" +
	"5\r\nhello\r\n" +
	"6;ext=1\r\n world\r\n" +
	"0\r\n" +
	"X-Checksum: abc\r\n" +
	"\r\n" +
	"HEAD /health HTTP/1.1\r\n\r\n"

var sampleRequestsWant = []string{
	`GET /users/42?tab=orders&token=s3cr3t path="/users/42" query="tab=orders&token=s3cr3t" v=1.1 body=0 host=api.example.com`,
	`POST /upload path="/upload" query="" v=1.1 body=13 host=api.example.com cl=13`,
	`POST /stream path="/stream" query="" v=1.0 body=11 chunked`,
	`HEAD /health path="/health" query="" v=1.1 body=0`,
}

const sampleResponses = "HTTP/1.1 200 OK\r\n" +
	"Content-Type: text/plain\r\n" +
	"Content-Length: 5\r\n" +
	"\r\n" +
	"hello" +
	"HTTP/1.1 100 Continue\r\n\r\n" +
	"HTTP/1.1 201 Created\r\n" +
	"Transfer-Encoding: gzip, chunked\r\n" +
	"\r\n" +
	"a\r\n0123456789\r\n" +
	"3\r\nabc\r\n" +
	"0\r\n\r\n" +
	"HTTP/1.1 204 No Content\r\n" +
	"\r\n" +
	"HTTP/1.1 200 OK\r\n" +
	"Content-Length: 1234\r\n" +
	"\r\n"

var sampleResponsesMethods = []string{"GET", "POST", "POST", "HEAD"}

var sampleResponsesWant = []string{
	`200 v=1.1 body=5 cl=5`,
	`201 interim=1 v=1.1 body=13 chunked`,
	`204 v=1.1 body=0`,
	`200 v=1.1 body=0 cl=1234`,
}

func TestParserWhole(t *testing.T) {
	r, _, err := run(t, Request, nil, full(sampleRequests, 0))
	if err != nil {
		t.Fatal(err)
	}
	checkSummaries(t, r.msgs, sampleRequestsWant)
	if len(r.heads) != 4 || r.heads[0] != r.msgs[0] {
		t.Errorf("Headers calls: %d, first is the same message: %v", len(r.heads), r.heads[0] == r.msgs[0])
	}
	m := r.msgs[0]
	if p := New(Request, Options{}, nil); p.Kind() != Request {
		t.Errorf("Kind %v", p.Kind())
	}
	if m.UserAgent != "curl/8.0" || m.TraceParent != "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" {
		t.Errorf("selected headers: ua=%q traceparent=%q", m.UserAgent, m.TraceParent)
	}
	if m.TraceState != "vendor=value" {
		t.Errorf("tracestate %q", m.TraceState)
	}
	if r.msgs[1].ContentType != "application/json" {
		t.Errorf("content type %q", r.msgs[1].ContentType)
	}

	r, _, err = run(t, Response, sampleResponsesMethods, full(sampleResponses, 0))
	if err != nil {
		t.Fatal(err)
	}
	checkSummaries(t, r.msgs, sampleResponsesWant)
}

// TestParserEverySplit feeds the sample streams split in two at every byte
// offset, byte by byte, and in three at many offset pairs: the result must
// not depend on how the stream was cut into calls.
func TestParserEverySplit(t *testing.T) {
	for _, tc := range []struct {
		kind    Kind
		stream  string
		methods []string
		want    []string
	}{
		{Request, sampleRequests, nil, sampleRequestsWant},
		{Response, sampleResponses, sampleResponsesMethods, sampleResponsesWant},
	} {
		t.Run(tc.kind.String(), func(t *testing.T) {
			s := tc.stream
			for i := 1; i < len(s); i++ {
				r, _, err := run(t, tc.kind, tc.methods, full(s[:i], 0), full(s[i:], 1))
				if err != nil {
					t.Fatalf("split at %d: %v", i, err)
				}
				checkSummaries(t, r.msgs, tc.want)
				if t.Failed() {
					t.Fatalf("split at %d", i)
				}
			}
			for i := 1; i < len(s); i += 7 {
				for j := i + 1; j < len(s); j += 3 {
					r, _, err := run(t, tc.kind, tc.methods, full(s[:i], 0), full(s[i:j], 1), full(s[j:], 2))
					if err != nil {
						t.Fatalf("split at %d,%d: %v", i, j, err)
					}
					checkSummaries(t, r.msgs, tc.want)
					if t.Failed() {
						t.Fatalf("split at %d,%d", i, j)
					}
				}
			}
			var chunks []Chunk
			for i := range len(s) {
				chunks = append(chunks, full(s[i:i+1], i))
			}
			r, _, err := run(t, tc.kind, tc.methods, chunks...)
			if err != nil {
				t.Fatalf("byte by byte: %v", err)
			}
			checkSummaries(t, r.msgs, tc.want)
		})
	}
}

func TestParserTimes(t *testing.T) {
	r, _, err := run(t, Response, []string{"GET"},
		full("HTTP/1.1 200 OK\r\nContent-", 1),
		full("Length: 10\r\n\r\n01234", 2),
		full("56789", 3))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.msgs) != 1 {
		t.Fatalf("got %d messages", len(r.msgs))
	}
	m := r.msgs[0]
	if !m.Start.Equal(at(1)) || !m.End.Equal(at(3)) {
		t.Errorf("start %v end %v, want %v %v", m.Start, m.End, at(1), at(3))
	}

	// The start of a response preceded by 100 Continue is the interim's.
	r, _, err = run(t, Response, []string{"POST"},
		full("HTTP/1.1 100 Continue\r\n\r\n", 1),
		full("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 5))
	if err != nil || len(r.msgs) != 1 {
		t.Fatalf("err %v, %d messages", err, len(r.msgs))
	}
	if m := r.msgs[0]; !m.Start.Equal(at(1)) || !m.End.Equal(at(5)) || m.Interim != 1 {
		t.Errorf("start %v end %v interim %d", m.Start, m.End, m.Interim)
	}
}

func TestParserCases(t *testing.T) {
	const mib = 1 << 20
	bigHead := "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 1048576\r\n\r\n"
	bigBody := strings.Repeat("x", mib)
	chunkedHead := "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
	// 64 chunks of 16 KiB: with a small capture, chunk-size lines fall
	// into uncaptured bytes and the parser loses sync.
	bigChunk := strings.Repeat(fmt.Sprintf("4000\r\n%s\r\n", strings.Repeat("y", 16<<10)), 64)

	tests := []struct {
		name    string
		kind    Kind
		methods []string
		chunks  []Chunk
		want    []string
		err     error
	}{
		{
			name:   "pipelined requests in one call",
			kind:   Request,
			chunks: []Chunk{full("GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n\r\n", 0)},
			want: []string{
				`GET /a path="/a" query="" v=1.1 body=0`,
				`GET /b path="/b" query="" v=1.1 body=0`,
				`GET /c path="/c" query="" v=1.1 body=0`,
			},
		},
		{
			name:    "pipelined responses in one call",
			kind:    Response,
			methods: []string{"GET", "GET"},
			chunks:  []Chunk{full("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", 0)},
			want:    []string{`200 v=1.1 body=2 cl=2`, `404 v=1.1 body=0 cl=0`},
		},
		{
			name:    "1 MiB body counted with a 64-byte capture",
			kind:    Response,
			methods: []string{"GET"},
			chunks: []Chunk{
				partial(bigHead+bigBody, 128, 0, 0),
				full("HTTP/1.1 204 No Content\r\n\r\n", 1),
			},
			want: []string{`200 v=1.1 body=1048576 cl=1048576`, `204 v=1.1 body=0`},
		},
		{
			name:    "1 MiB body over many small captured writes",
			kind:    Response,
			methods: []string{"GET", "GET"},
			chunks: func() []Chunk {
				cs := []Chunk{full(bigHead, 0)}
				for i := 0; i < mib; i += 16 << 10 {
					cs = append(cs, partial(bigBody[i:i+16<<10], 32, 0, 1))
				}
				return append(cs, full("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz", 2))
			}(),
			want: []string{`200 v=1.1 body=1048576 cl=1048576`, `200 v=1.1 body=1 cl=1`},
		},
		{
			name:    "body ends exactly in the gap, next message in the tail",
			kind:    Response,
			methods: []string{"GET", "GET"},
			chunks: []Chunk{
				partial(bigHead+bigBody+"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 100, 38, 0),
			},
			want: []string{`200 v=1.1 body=1048576 cl=1048576`, `200 v=1.1 body=0 cl=0`},
		},
		{
			name:    "next message starts in the gap: resync at the next start line",
			kind:    Response,
			methods: []string{"GET", "GET", "GET"},
			chunks: []Chunk{
				partial(bigHead+bigBody+"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbody", 100, 10, 0),
				full("more body bytes", 1),
				full("HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n", 2),
			},
			want: []string{`200 v=1.1 body=1048576 cl=1048576`, `503 v=1.1 body=0 cl=0`},
		},
		{
			name:    "chunked across calls, fully captured",
			kind:    Response,
			methods: []string{"GET"},
			chunks: []Chunk{
				full(chunkedHead+"4\r", 0), full("\nabcd\r\n1", 1), full("0\r\n0123456789abcdef", 2),
				full("\r\n0\r", 3), full("\n\r\n", 4),
			},
			want: []string{`200 v=1.1 body=20 chunked`},
		},
		{
			name:    "chunked: lost sync, terminator at the end of the tail",
			kind:    Response,
			methods: []string{"GET", "GET"},
			chunks: []Chunk{
				full(chunkedHead, 0),
				partial(bigChunk+"0\r\n\r\n", 64, 32, 1),
				full("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 2),
			},
			want: []string{
				fmt.Sprintf(`200 v=1.1 body=%d chunked truncated`, len(bigChunk)+5-len("4000\r\n")),
				`200 v=1.1 body=0 cl=0`,
			},
		},
		{
			name:    "chunked: lost sync, terminator with trailers in the tail",
			kind:    Response,
			methods: []string{"GET"},
			chunks: []Chunk{
				partial(chunkedHead+bigChunk+"0\r\nGrpc-Status: 0\r\nX-Sum: 1\r\n\r\n", 70, 100, 1),
			},
			want: []string{fmt.Sprintf(`200 v=1.1 body=%d chunked truncated`, len(bigChunk)+len("0\r\nGrpc-Status: 0\r\nX-Sum: 1\r\n\r\n")-len("4000\r\n"))},
		},
		{
			name:    "chunked: lost sync, terminator in its own call",
			kind:    Response,
			methods: []string{"GET"},
			chunks: []Chunk{
				full(chunkedHead, 0),
				partial(bigChunk, 64, 0, 1),
				partial(bigChunk, 64, 16, 2),
				full("0\r\n\r\n", 3),
			},
			want: []string{fmt.Sprintf(`200 v=1.1 body=%d chunked truncated`, 2*len(bigChunk)+5-len("4000\r\n"))},
		},
		{
			name:    "chunked: lost sync, terminator split across captured calls",
			kind:    Response,
			methods: []string{"GET"},
			chunks: []Chunk{
				full(chunkedHead, 0),
				partial(bigChunk, 64, 0, 1),
				full("\r\n0\r", 2),
				full("\n\r\n", 3),
			},
			want: []string{fmt.Sprintf(`200 v=1.1 body=%d chunked truncated`, len(bigChunk)+7-len("4000\r\n"))},
		},
		{
			name:    "chunked: a zero inside data is not the end",
			kind:    Response,
			methods: []string{"GET"},
			chunks: []Chunk{
				full(chunkedHead, 0),
				partial(bigChunk, 64, 0, 1),
				full("data 0\r\n\r\n", 2),
			},
			want: nil,
		},
		{
			name:    "HEAD response has no body",
			kind:    Response,
			methods: []string{"HEAD", "GET"},
			chunks:  []Chunk{full("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx", 0)},
			want:    []string{`200 v=1.1 body=0 cl=100`, `200 v=1.1 body=1 cl=1`},
		},
		{
			name:    "HEAD response with chunked header has no body",
			kind:    Response,
			methods: []string{"HEAD"},
			chunks:  []Chunk{full("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 0)},
			want:    []string{`200 v=1.1 body=0`},
		},
		{
			name:    "interim responses are skipped",
			kind:    Response,
			methods: []string{"POST"},
			chunks: []Chunk{
				full("HTTP/1.1 100 Continue\r\n\r\n", 0),
				full("HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n", 1),
				full("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 2),
			},
			want: []string{`200 interim=2 v=1.1 body=0 cl=0`},
		},
		{
			name:    "204 and 304 have no body",
			kind:    Response,
			methods: []string{"DELETE", "GET", "GET"},
			chunks: []Chunk{full("HTTP/1.1 204 No Content\r\n\r\n"+
				"HTTP/1.1 304 Not Modified\r\nContent-Length: 500\r\n\r\n"+
				"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 0)},
			want: []string{`204 v=1.1 body=0`, `304 v=1.1 body=0 cl=500`, `200 v=1.1 body=0 cl=0`},
		},
		{
			name:    "101 switches protocols: later bytes are ignored",
			kind:    Response,
			methods: []string{"GET"},
			chunks: []Chunk{
				full("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x05hello", 0),
				full("\x82\x7e\x00\x10binary", 1),
			},
			want: []string{`101 v=1.1 body=0 upgrade`},
		},
		{
			name:    "CONNECT tunnel",
			kind:    Response,
			methods: []string{"CONNECT"},
			chunks:  []Chunk{full("HTTP/1.1 200 Connection established\r\n\r\n\x16\x03\x01\x02\x00", 0)},
			want:    []string{`200 v=1.1 body=0 upgrade`},
		},
		{
			name:   "request parser pauses after an upgrade request",
			kind:   Request,
			chunks: []Chunk{full("GET /ws HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x85junk", 0)},
			want:   []string{`GET /ws path="/ws" query="" v=1.1 body=0 upgrade`},
		},
		{
			name:   "LF-only line ends",
			kind:   Request,
			chunks: []Chunk{full("GET /lf HTTP/1.1\nHost: h\n\nGET /lf2 HTTP/1.1\n\n", 0)},
			want:   []string{`GET /lf path="/lf" query="" v=1.1 body=0 host=h`, `GET /lf2 path="/lf2" query="" v=1.1 body=0`},
		},
		{
			name:   "empty lines between requests",
			kind:   Request,
			chunks: []Chunk{full("\r\nGET / HTTP/1.1\r\n\r\n\r\n", 0), full("\r\nGET /x HTTP/1.1\r\n\r\n", 1)},
			want:   []string{`GET / path="/" query="" v=1.1 body=0`, `GET /x path="/x" query="" v=1.1 body=0`},
		},
		{
			name:   "absolute-form and asterisk targets",
			kind:   Request,
			chunks: []Chunk{full("GET https://example.com:8443/a/b?c=d HTTP/1.1\r\n\r\nOPTIONS * HTTP/1.1\r\n\r\nGET http://example.com HTTP/1.1\r\n\r\nCONNECT example.com:443 HTTP/1.1\r\n\r\n", 0)},
			want: []string{
				`GET https://example.com:8443/a/b?c=d path="/a/b" query="c=d" v=1.1 body=0`,
				`OPTIONS * path="*" query="" v=1.1 body=0`,
				`GET http://example.com path="/" query="" v=1.1 body=0`,
				`CONNECT example.com:443 path="" query="" v=1.1 body=0 upgrade`,
			},
		},
		{
			name:   "request head larger than the capture: message ends with the call",
			kind:   Request,
			chunks: []Chunk{partial("GET /big HTTP/1.1\r\nHost: h\r\nCookie: "+strings.Repeat("c", 5000)+"\r\n\r\n", 40, 20, 0), full("GET /next HTTP/1.1\r\n\r\n", 1)},
			want:   []string{`GET /big path="/big" query="" v=1.1 body=0 host=h truncated`, `GET /next path="/next" query="" v=1.1 body=0`},
		},
		{
			name:   "start line not captured: message lost, next call resyncs",
			kind:   Request,
			chunks: []Chunk{{Size: 500, Time: at(0)}, full("POST /x HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", 1)},
			want:   []string{`POST /x path="/x" query="" v=1.1 body=3 cl=3`},
		},
		{
			name:   "tail overlapping the captured prefix",
			kind:   Request,
			chunks: []Chunk{{Bytes: []byte("GET /o HTTP/1.1\r\n\r\n"), Size: 19, Tail: []byte("1.1\r\n\r\n"), Time: at(0)}},
			want:   []string{`GET /o path="/o" query="" v=1.1 body=0`},
		},
		{
			name:   "request with chunked body and Content-Length: chunked wins",
			kind:   Request,
			chunks: []Chunk{full("PUT /p HTTP/1.1\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 0)},
			want:   []string{`PUT /p path="/p" query="" v=1.1 body=3 cl=100 chunked`},
		},
		{
			name:   "identical repeated Content-Length",
			kind:   Request,
			chunks: []Chunk{full("PUT /p HTTP/1.1\r\nContent-Length: 2, 2\r\nContent-Length: 2\r\n\r\nab", 0)},
			want:   []string{`PUT /p path="/p" query="" v=1.1 body=2 cl=2`},
		},
		{
			name:   "unknown method and HTTP/1.0",
			kind:   Request,
			chunks: []Chunk{full("PROPFIND /dav HTTP/1.0\r\n\r\n", 0)},
			want:   []string{`PROPFIND /dav path="/dav" query="" v=1.0 body=0`},
		},
		{
			name:   "status line without reason phrase",
			kind:   Response,
			chunks: []Chunk{full("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", 0)},
			want:   []string{`200 v=1.1 body=0 cl=0`},
		},

		{
			name:   "Size smaller than the captured bytes is corrected",
			kind:   Request,
			chunks: []Chunk{{Bytes: []byte("GET /s HTTP/1.1\r\n\r\n"), Size: 3, Time: at(0)}},
			want:   []string{`GET /s path="/s" query="" v=1.1 body=0`},
		},
		{
			name:    "chunked: gaps inside chunk data keep sync",
			kind:    Response,
			methods: []string{"GET"},
			chunks: []Chunk{
				full(chunkedHead, 0),
				partial("400\r\n"+strings.Repeat("d", 1024)+"\r\n", 100, 10, 1), // gap inside the data
				partial("200\r\n"+strings.Repeat("e", 512), 50, 0, 2),           // gap ends exactly with the data
				full("\r\n0\r\n\r\n", 3),
			},
			want: []string{`200 v=1.1 body=1536 chunked`},
		},
		{
			name:    "chunked: gap in a chunk-size line loses sync",
			kind:    Response,
			methods: []string{"GET"},
			chunks: []Chunk{
				full(chunkedHead+"5\r\nhello\r\n", 0),
				partial("10000\r\n"+strings.Repeat("f", 65536)+"\r\n0\r\n\r\n", 2, 20, 1),
			},
			want: []string{`200 v=1.1 body=65553 chunked truncated`},
		},
		{
			name:    "response Transfer-Encoding without chunked: until close",
			kind:    Response,
			methods: []string{"GET"},
			chunks:  []Chunk{full("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nabc", 0)},
			want:    nil, // completes at EOF
		},
		{
			name:    "interim response head not captured",
			kind:    Response,
			methods: []string{"POST"},
			chunks: []Chunk{
				partial("HTTP/1.1 100 Continue\r\nX-Pad: "+strings.Repeat("p", 300)+"\r\n\r\n", 40, 0, 0),
				full("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 1),
			},
			want: []string{`200 interim=1 v=1.1 body=0 cl=0`},
		},
		{
			name:    "response head not captured: status kept, message ends with the call",
			kind:    Response,
			methods: []string{"GET", "GET"},
			chunks: []Chunk{
				partial("HTTP/1.1 500 Oops\r\nContent-Length: 100000\r\nX: y\r\n\r\n"+strings.Repeat("z", 100000), 30, 0, 0),
				full("more body", 1),
				full("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 2),
			},
			want: []string{`500 v=1.1 body=0 truncated`, `200 v=1.1 body=0 cl=0`},
		},
		{
			name:   "obsolete line folding is ignored",
			kind:   Request,
			chunks: []Chunk{full("GET / HTTP/1.1\r\nX-Long: a\r\n  continued\r\nHost: h\r\n\r\n", 0)},
			want:   []string{`GET / path="/" query="" v=1.1 body=0 host=h`},
		},
		{
			name:   "a long header line releases its buffer",
			kind:   Request,
			chunks: []Chunk{full("GET / HTTP/1.1\r\nX: "+strings.Repeat("v", 5000), 0), full("\r\n\r\n", 1)},
			want:   []string{`GET / path="/" query="" v=1.1 body=0`},
		},

		// Errors.
		{name: "TLS record", kind: Request, chunks: []Chunk{full("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 0)}, err: ErrNotHTTP},
		{name: "SSH banner", kind: Request, chunks: []Chunk{full("SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n", 0)}, err: ErrNotHTTP},
		{name: "HTTP/2 preface", kind: Request, chunks: []Chunk{full("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 0)}, err: ErrNotHTTP},
		{name: "HTTP/2 preface split", kind: Request, chunks: []Chunk{full("PRI * HTTP/2", 0)}, err: ErrNotHTTP},
		{name: "binary without newline is rejected early", kind: Response, chunks: []Chunk{full("\x00\x00\x12\x04\x00\x00\x00\x00", 0)}, err: ErrNotHTTP},
		{name: "SMTP greeting on a client", kind: Response, chunks: []Chunk{full("220 mail.example.com ESMTP\r\n", 0)}, err: ErrNotHTTP},
		{name: "JSON", kind: Request, chunks: []Chunk{full(`{"jsonrpc":"2.0"}`+"\n", 0)}, err: ErrNotHTTP},
		{name: "method too long", kind: Request, chunks: []Chunk{full(strings.Repeat("A", 40), 0)}, err: ErrNotHTTP},
		{name: "status code not digits", kind: Response, chunks: []Chunk{full("HTTP/1.1 2x0 OK\r\n", 0)}, err: ErrNotHTTP},
		{name: "header without colon", kind: Request, chunks: []Chunk{full("GET / HTTP/1.1\r\nHost example.com\r\n\r\n", 0)}, err: ErrMalformed},
		{name: "space in header name", kind: Request, chunks: []Chunk{full("GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", 0)}, err: ErrMalformed},
		{name: "bad Content-Length", kind: Request, chunks: []Chunk{full("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 0)}, err: ErrMalformed},
		{name: "conflicting Content-Length", kind: Response, chunks: []Chunk{full("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 0)}, err: ErrMalformed},
		{name: "bad chunk size", kind: Response, chunks: []Chunk{full("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 0)}, err: ErrMalformed},
		{name: "missing CRLF after chunk", kind: Response, chunks: []Chunk{full("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n", 0)}, err: ErrMalformed},
		{name: "request TE not chunked", kind: Request, chunks: []Chunk{full("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 0)}, err: ErrMalformed},
		{name: "garbage after a valid message", kind: Request, chunks: []Chunk{full("GET / HTTP/1.1\r\n\r\n", 0), full("\x16\x03\x01", 1)}, want: []string{`GET / path="/" query="" v=1.1 body=0`}, err: ErrMalformed},
		{name: "start line too long", kind: Request, chunks: []Chunk{full("GET /"+strings.Repeat("a", 20000), 0)}, err: ErrNotHTTP},
		{name: "chunk-size line too long", kind: Response, chunks: []Chunk{full(chunkedHead+"1;"+strings.Repeat("e", 2000)+"\r\n", 0)}, err: ErrMalformed},
		{name: "header too large", kind: Request, chunks: []Chunk{full("GET / HTTP/1.1\r\nX: "+strings.Repeat("a", 20000), 0)}, err: ErrHeaderTooLarge},
		{name: "header too large over many calls", kind: Request, chunks: func() []Chunk {
			cs := []Chunk{full("GET / HTTP/1.1\r\n", 0)}
			for range 3000 {
				cs = append(cs, full("X-A: b\r\n", 1))
			}
			return cs
		}(), err: ErrHeaderTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, _, err := run(t, tc.kind, tc.methods, tc.chunks...)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("error %v, want %v", err, tc.err)
				}
			} else if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			checkSummaries(t, r.msgs, tc.want)
		})
	}
}

func TestParserStickyError(t *testing.T) {
	r := &recorder{}
	p := New(Request, Options{}, r)
	err := p.Feed(full("\x16\x03", 0))
	if !errors.Is(err, ErrNotHTTP) {
		t.Fatalf("err %v", err)
	}
	if err2 := p.Feed(full("GET / HTTP/1.1\r\n\r\n", 1)); err2 != err {
		t.Errorf("second Feed: %v, want the first error", err2)
	}
	if p.Err() != err || len(r.msgs) != 0 {
		t.Errorf("Err %v, %d messages", p.Err(), len(r.msgs))
	}
	if strings.Contains(err.Error(), "\x16") {
		t.Errorf("error quotes input bytes: %q", err)
	}
}

func TestParserResume(t *testing.T) {
	r := &recorder{}
	p := New(Request, Options{}, r)
	if err := p.Feed(full("GET /ws HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n", 0)); err != nil {
		t.Fatal(err)
	}
	if !p.Tunneled() {
		t.Fatal("not paused after an upgrade request")
	}
	p.Resume() // the server declined
	if err := p.Feed(full("GET /next HTTP/1.1\r\n\r\n", 1)); err != nil {
		t.Fatal(err)
	}
	checkSummaries(t, r.msgs, []string{`GET /ws path="/ws" query="" v=1.1 body=0 upgrade`, `GET /next path="/next" query="" v=1.1 body=0`})
}

func TestParserEOF(t *testing.T) {
	// Body until close.
	r := &recorder{}
	p := New(Response, Options{}, r)
	p.ExpectResponse("GET")
	if err := p.Feed(full("HTTP/1.0 200 OK\r\n\r\nsome", 1)); err != nil {
		t.Fatal(err)
	}
	if err := p.Feed(partial(strings.Repeat("b", 10000), 10, 0, 2)); err != nil {
		t.Fatal(err)
	}
	if len(r.msgs) != 0 || !p.InMessage() {
		t.Fatalf("completed before EOF")
	}
	if m := p.EOF(at(9)); m != nil {
		t.Fatalf("EOF returned a partial message for a read-until-close body")
	}
	checkSummaries(t, r.msgs, []string{`200 v=1.0 body=10004`})
	if !r.msgs[0].End.Equal(at(2)) {
		t.Errorf("end %v, want the last byte's time %v", r.msgs[0].End, at(2))
	}

	// Mid-body.
	r = &recorder{}
	p = New(Response, Options{}, r)
	if err := p.Feed(full("HTTP/1.1 502 Bad Gateway\r\nContent-Length: 10\r\n\r\nabc", 1)); err != nil {
		t.Fatal(err)
	}
	m := p.EOF(at(3))
	if m == nil || m.Complete || m.StatusCode != 502 || !m.HeadersComplete || m.BodySize != 3 {
		t.Fatalf("partial %+v", m)
	}
	if len(r.msgs) != 0 || len(r.heads) != 1 {
		t.Errorf("%d messages, %d heads", len(r.msgs), len(r.heads))
	}
	if err := p.Feed(full("HTTP/1.1 200 OK\r\n\r\n", 4)); err != nil || len(r.heads) != 1 {
		t.Errorf("Feed after EOF parsed: err %v", err)
	}

	// Between messages.
	p = New(Request, Options{}, &recorder{})
	if err := p.Feed(full("GET / HTTP/1.1\r\n\r\n", 1)); err != nil {
		t.Fatal(err)
	}
	if m := p.EOF(at(2)); m != nil {
		t.Errorf("EOF between messages returned %+v", m)
	}
}

func TestParserAllHeaders(t *testing.T) {
	r := &recorder{}
	p := New(Request, Options{AllHeaders: true}, r)
	in := "GET / HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer x\r\nAccept: a\r\nAccept: b\r\n\r\n"
	if err := p.Feed(full(in, 0)); err != nil {
		t.Fatal(err)
	}
	want := []Header{{"Host", "h"}, {"Authorization", "Bearer x"}, {"Accept", "a"}, {"Accept", "b"}}
	if got := r.msgs[0].Headers; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("headers %v, want %v", got, want)
	}

	// Without the option no header list is kept.
	r = &recorder{}
	p = New(Request, Options{}, r)
	if err := p.Feed(full(in, 0)); err != nil {
		t.Fatal(err)
	}
	if r.msgs[0].Headers != nil {
		t.Errorf("headers kept without AllHeaders")
	}
}

// TestParserMemoryBound checks that a stream of header bytes without a line
// end, or lost chunked data, never grows the parser's buffers past the caps.
func TestParserMemoryBound(t *testing.T) {
	p := New(Response, Options{MaxHeaderBytes: 4096}, &recorder{})
	p.ExpectResponse("GET")
	if err := p.Feed(full("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 0)); err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		if err := p.Feed(partial(strings.Repeat("z", 100000), 1000, 1000, i)); err != nil {
			t.Fatal(err)
		}
		if cap(p.window) > 2*windowSize || cap(p.line) > 2*4096 {
			t.Fatalf("buffers grew: window %d line %d", cap(p.window), cap(p.line))
		}
	}
	for range 1000 {
		p.ExpectResponse("GET")
	}
	if len(p.methods) > maxPending {
		t.Errorf("method queue grew to %d", len(p.methods))
	}
}

func TestValidStartPrefix(t *testing.T) {
	for _, tc := range []struct {
		kind Kind
		in   string
		want bool
	}{
		{Request, "G", true},
		{Request, "GET", true},
		{Request, "GET ", true},
		{Request, "GET /a", true},
		{Request, "GET /a ", true},
		{Request, "GET /a HT", true},
		{Request, "GET /a HTTP/1.1\r", true},
		{Request, "GET /a HTTP/1.1x", false},
		{Request, "GET /a HTTX", false},
		{Request, "GET  /a", false},
		{Request, " GET", false},
		{Request, "\x16", false},
		{Response, "H", true},
		{Response, "HTTP/1.1 2", true},
		{Response, "HTTP/1.1 200 OK\r", true},
		{Response, "HTTP/1.1 200\r", true},
		{Response, "HTTP/2 200", false},
		{Response, "HTTP/1.1 20a", false},
		{Response, "HTTP/1.1 200 O\x01", false},
	} {
		if got := validStartPrefix(tc.kind, []byte(tc.in)); got != tc.want {
			t.Errorf("validStartPrefix(%v, %q) = %v, want %v", tc.kind, tc.in, got, tc.want)
		}
	}
}

func TestEndsChunkedBody(t *testing.T) {
	for _, tc := range []struct {
		in        string
		callStart int
		want      bool
	}{
		{"abc\r\n0\r\n\r\n", -1, true},
		{"0\r\n\r\n", 0, true},
		{"0\r\n\r\n", -1, false},
		{"abc\r\n0;x=1\r\n\r\n", -1, true},
		{"abc\r\n0\r\nA: b\r\nC: d\r\n\r\n", -1, true},
		{"abc\r\n0\r\nnot a trailer\r\n\r\n", -1, false},
		{"ab0\r\n\r\n", -1, false},
		{"abc\n0\n\n", -1, true},
		{"abc\r\n0\r\n", -1, false},
		{"\r\n", -1, false},
		{"abc\r\n10\r\n\r\n", -1, false},
	} {
		if got := endsChunkedBody([]byte(tc.in), tc.callStart); got != tc.want {
			t.Errorf("endsChunkedBody(%q, %d) = %v, want %v", tc.in, tc.callStart, got, tc.want)
		}
	}
}

func TestSplitTarget(t *testing.T) {
	for _, tc := range []struct{ in, path, query string }{
		{"/", "/", ""},
		{"/a?b=c", "/a", "b=c"},
		{"/a?b=c#frag", "/a", "b=c"},
		{"/a#frag", "/a", ""},
		{"*", "*", ""},
		{"http://h:80", "/", ""},
		{"http://h:80?x", "/", "x"},
		{"https://h/p/q?r", "/p/q", "r"},
		{"h:443", "", ""},
	} {
		p, q := splitTarget(tc.in)
		if p != tc.path || q != tc.query {
			t.Errorf("splitTarget(%q) = %q, %q; want %q, %q", tc.in, p, q, tc.path, tc.query)
		}
	}
}

func BenchmarkParserRequest(b *testing.B) {
	in := []byte("GET /api/v1/users/42 HTTP/1.1\r\nHost: api.example.com\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
	p := New(Request, Options{}, &discard{})
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if err := p.Feed(Chunk{Bytes: in, Size: len(in), Time: t0}); err != nil {
			b.Fatal(err)
		}
	}
}

type discard struct{}

func (discard) Headers(*Message) {}
func (discard) Message(*Message) {}

// trimOWS and its halves agree with bytes.Trim and friends on " \t".
func TestTrimOWS(t *testing.T) {
	for _, s := range []string{"", " ", "\t \t", "a", " a", "a\t", " \ta b\t ", "\ta\r\n", "\u00a0x "} {
		b := []byte(s)
		if got, want := trimOWS(b), bytes.Trim(b, " \t"); !bytes.Equal(got, want) {
			t.Errorf("trimOWS(%q) = %q, want %q", s, got, want)
		}
		if got, want := trimOWSLeft(b), bytes.TrimLeft(b, " \t"); !bytes.Equal(got, want) {
			t.Errorf("trimOWSLeft(%q) = %q, want %q", s, got, want)
		}
		if got, want := trimOWSRight(b), bytes.TrimRight(b, " \t"); !bytes.Equal(got, want) {
			t.Errorf("trimOWSRight(%q) = %q, want %q", s, got, want)
		}
	}
}
