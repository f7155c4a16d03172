package http1

import (
	"testing"
	"time"

	"github.com/periscope-apm/periscope/correlator/httpspan"
	"github.com/periscope-apm/periscope/correlator/protocol"
	"github.com/periscope-apm/periscope/events"
)

type ended struct {
	method string
	status int
	reason string
}

type rec struct {
	begun []string
	ended []ended
}

func (r *rec) Begin(x protocol.Exchange) {
	r.begun = append(r.begun, x.(*httpspan.Exchange).Req.Method)
}
func (r *rec) End(x protocol.Exchange, _ time.Time, reason string) {
	hx := x.(*httpspan.Exchange)
	e := ended{method: hx.Req.Method, reason: reason}
	if hx.Resp != nil {
		e.status = hx.Resp.StatusCode
	}
	r.ended = append(r.ended, e)
}

func TestDetect(t *testing.T) {
	p := New(nil, nil)
	for _, tc := range []struct {
		first string
		dir   events.Direction
		role  protocol.Role
	}{
		{"GET / HTTP/1.1\r\n", events.Read, protocol.Server},
		{"GET / HTTP/1.1\r\n", events.Write, protocol.Client},
		{"HTTP/1.1 200 OK\r\n", events.Read, protocol.Client}, // attached mid-request
		{"HTTP/1.1 200 OK\r\n", events.Write, protocol.Server},
	} {
		d := p.Detect([]byte(tc.first), tc.dir)
		if d.Verdict != protocol.Yes || d.Role != tc.role {
			t.Errorf("Detect(%q, %v) = %+v, want role %v", tc.first, tc.dir, d, tc.role)
		}
	}
}

func TestDecoder(t *testing.T) {
	sem, err := httpspan.New(httpspan.Config{})
	if err != nil {
		t.Fatal(err)
	}
	type feed struct {
		side protocol.Side
		data string
	}
	req, resp := protocol.Requests, protocol.Responses
	for _, tc := range []struct {
		name  string
		feeds []feed
		eof   bool
		want  []ended
		left  bool
		err   bool
	}{
		{name: "pipelined pairs in order", feeds: []feed{
			{req, "GET /a HTTP/1.1\r\n\r\nHEAD /b HTTP/1.1\r\n\r\n"},
			{resp, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"},
			{resp, "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\n"},
		}, want: []ended{{"GET", 200, ""}, {"HEAD", 404, ""}}},
		{name: "read until close ends at EOF", feeds: []feed{
			{req, "GET / HTTP/1.0\r\n\r\n"},
			{resp, "HTTP/1.0 200 OK\r\n\r\nbody"},
		}, eof: true, want: []ended{{"GET", 200, ""}}},
		{name: "upgrade leaves the protocol and ends the rest", feeds: []feed{
			{req, "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nGET /x HTTP/1.1\r\n\r\n"},
			{resp, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"},
		}, left: true, want: []ended{{"GET", 101, ""}}},
		{name: "declined upgrade goes on", feeds: []feed{
			{req, "GET /ws HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n"},
			{resp, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"},
			{req, "GET /next HTTP/1.1\r\n\r\n"},
			{resp, "HTTP/1.1 204 No Content\r\n\r\n"},
		}, want: []ended{{"GET", 200, ""}, {"GET", 204, ""}}},
		{name: "not HTTP", feeds: []feed{{req, "\x16\x03\x01\x00\xa5binary"}}, err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &rec{}
			d := New(sem, nil).NewDecoder(protocol.Server, r)
			var err error
			for i, f := range tc.feeds {
				err = d.Feed(f.side, protocol.Chunk{Bytes: []byte(f.data), Size: len(f.data), Time: time.Unix(int64(i), 0)})
				if err != nil {
					break
				}
			}
			if tc.eof {
				d.EOF(time.Unix(100, 0))
			}
			if (err != nil) != tc.err {
				t.Fatalf("err = %v, want error %v", err, tc.err)
			}
			if d.Left() != tc.left {
				t.Errorf("Left() = %v, want %v", d.Left(), tc.left)
			}
			if len(r.ended) != len(tc.want) {
				t.Fatalf("ended %+v, want %+v", r.ended, tc.want)
			}
			for i := range tc.want {
				if r.ended[i] != tc.want[i] {
					t.Errorf("exchange %d = %+v, want %+v", i, r.ended[i], tc.want[i])
				}
			}
		})
	}
}

// TestStartsRequest: where a connection's decoding may restart after lost
// bytes (protocol.Restarter).
func TestStartsRequest(t *testing.T) {
	var p Protocol
	for in, want := range map[string]bool{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n":          true,
		"POST /api/v1/items?x=1 HTTP/1.0\r\n":        true,
		"M-SEARCH * HTTP/1.1\r\n":                    true,
		"CONNECT db:5432 HTTP/1.1\r\n":               true,
		"GET / HTTP/1.1":                             false, // cut short
		"GET /not/a/request ":                        false, // a body that looks like one
		"HTTP/1.1 200 OK\r\n":                        false, // a response
		"get / HTTP/1.1\r\n":                         false,
		"GET  HTTP/1.1\r\n":                          false,
		"GET / HTTP/2.0\r\n":                         false,
		"-GET / HTTP/1.1\r\n":                        false,
		"0123456789\r\n":                             false,
		"":                                           false,
		"AVERYVERYVERYLONGMETHODNAME / HTTP/1.1\r\n": false,
	} {
		if got := p.StartsRequest([]byte(in)); got != want {
			t.Errorf("StartsRequest(%q) = %v, want %v", in, got, want)
		}
	}
}
