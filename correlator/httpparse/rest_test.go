package httpparse

import (
	"fmt"
	"testing"
)

// TestTakeRest: the call that makes a stream leave HTTP (an upgrading
// request, a 101 or a 2xx to CONNECT) gives back what it carried after the
// message, known bytes, unknown middle and tail, for the protocol that
// follows; other calls give nothing. An Upgrade header listing h2c and the
// HTTP2-Settings header are kept on the message.
func TestTakeRest(t *testing.T) {
	const h2cReq = "GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: foo, H2C\r\nHTTP2-Settings: AAMAAABk\r\n\r\n"
	const sw = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
	for _, tc := range []struct {
		name    string
		kind    Kind
		methods []string
		chunks  []Chunk
		// rest per chunk: "" none, else bytes|size|tail
		rest []string
		// the first message's UpgradeH2C and HTTP2Settings
		h2c string
	}{
		{"101 alone", Response, []string{"GET"}, []Chunk{full("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 0), full(sw, 1)}, []string{"", "|0|"}, "false "},
		{"101 and frames", Response, []string{"GET"}, []Chunk{full(sw+"\x00\x00\x00\x04\x00\x00\x00\x00\x00", 0)}, []string{"\x00\x00\x00\x04\x00\x00\x00\x00\x00|9|"}, "true "},
		{"101 and frames captured in part", Response, []string{"GET"}, []Chunk{partial(sw+"0123456789abcdefghij", len(sw)+4, 5, 0)}, []string{"0123|20|fghij"}, "true "},
		{"101 in the tail", Response, []string{"GET"}, []Chunk{partial("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789"+sw+"xyz", 40, len(sw)+13, 0)}, []string{"xyz|3|"}, "false "},
		{"upgrading request", Request, nil, []Chunk{full(h2cReq+"PRI", 0), full("more", 1)}, []string{"PRI|3|", ""}, "true AAMAAABk"},
		{"Upgrade without Connection: upgrade", Request, nil, []Chunk{full("GET / HTTP/1.1\r\nUpgrade: h2c\r\n\r\nGET /b HTTP/1.1\r\n\r\n", 0)}, []string{""}, "true "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &recorder{}
			p := New(tc.kind, Options{}, r)
			for _, m := range tc.methods {
				p.ExpectResponse(m)
			}
			for i, c := range tc.chunks {
				if err := p.Feed(c); err != nil {
					t.Fatal(err)
				}
				got := ""
				if rest, ok := p.TakeRest(); ok {
					got = fmt.Sprintf("%s|%d|%s", rest.Bytes, rest.Size, rest.Tail)
				}
				if got != tc.rest[i] {
					t.Errorf("chunk %d: rest %q, want %q", i, got, tc.rest[i])
				}
				if _, ok := p.TakeRest(); ok {
					t.Errorf("chunk %d: the rest taken twice", i)
				}
			}
			m := r.heads[0]
			if got := fmt.Sprintf("%v %s", m.UpgradeH2C, m.HTTP2Settings); got != tc.h2c {
				t.Errorf("UpgradeH2C and HTTP2Settings %q, want %q", got, tc.h2c)
			}
		})
	}
}
