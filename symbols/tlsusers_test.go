package symbols

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// tlsOnlyNetHTTP serves and calls HTTPS with net/http alone.
const tlsOnlyNetHTTP = `package main

import (
	"fmt"
	"net/http"
	"os"
)

func main() {
	if len(os.Args) > 1 {
		resp, err := http.Get(os.Args[1])
		fmt.Println(resp, err)
		return
	}
	fmt.Println(http.ListenAndServeTLS("127.0.0.1:0", "c", "k", nil))
}
`

// tlsDialer dials TLS itself (and serves HTTPS with net/http).
const tlsDialer = `package main

import (
	"crypto/tls"
	"fmt"
	"net/http"
)

func main() {
	c, err := tls.Dial("tcp", "127.0.0.1:1", &tls.Config{})
	fmt.Println(c, err)
	fmt.Println(http.ListenAndServeTLS("127.0.0.1:0", "c", "k", nil))
}
`

// tlsListener accepts TLS connections from a listener of its own.
const tlsListener = `package main

import (
	"crypto/tls"
	"fmt"
	"net"
)

func main() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return
	}
	tl := tls.NewListener(ln, &tls.Config{})
	c, err := tl.Accept()
	fmt.Println(c, err)
}
`

// TestTLSUsers: the functions that can make crypto/tls connections, from
// the code of real builds (with symbols, stripped, position-independent,
// an old toolchain): net/http's alone in a program that only serves and
// calls HTTPS with net/http; the program's own function beside them when
// it dials TLS (tls.Dial) or listens (tls.NewListener, whose listener is
// only used through its itab) itself, or makes a tls.Client (inlined).
func TestTLSUsers(t *testing.T) {
	pie := buildVariant{name: "pie", arch: "amd64", flags: []string{"-buildmode=pie"}}
	for _, tc := range []struct {
		toolchain string
		variant   buildVariant
		src       string
		want      string // a user that must be listed; "" for net/http's only
	}{
		{"local", withSymbols, tlsOnlyNetHTTP, ""},
		{"local", stripped, tlsOnlyNetHTTP, ""},
		{"local", pie, tlsOnlyNetHTTP, ""},
		{"go1.18.10", withSymbols, tlsOnlyNetHTTP, ""},
		{"local", withSymbols, tlsDialer, "main.main"},
		{"local", stripped, tlsDialer, "main.main"},
		{"local", withSymbols, tlsListener, "main.main"},
		{"local", pie, tlsListener, "main.main"},
		{"local", withSymbols, NetHTTPProgram, "main.main"},
	} {
		v := tc.variant
		v.src = tc.src
		name := map[string]string{tlsOnlyNetHTTP: "nethttp", tlsDialer: "dialer", tlsListener: "listener", NetHTTPProgram: "client"}[tc.src]
		v.name += "-tls-" + name
		t.Run(tc.toolchain+"-"+v.name, func(t *testing.T) {
			b := openGo(t, goBuild(t, tc.toolchain, v))
			users, err := b.TLSUsers()
			if err != nil {
				t.Fatal(err)
			}
			var others []string
			for _, u := range users {
				if !strings.HasPrefix(u, "net/http.") {
					others = append(others, u)
				}
			}
			if !slices.Contains(users, "net/http.(*Server).ServeTLS") && tc.src != tlsListener {
				t.Errorf("users %v: no net/http.(*Server).ServeTLS", users)
			}
			switch {
			case tc.want == "" && len(others) > 0:
				t.Errorf("users %v: %v are not net/http's", users, others)
			case tc.want != "" && !slices.Contains(others, tc.want):
				t.Errorf("users %v: no %s", users, tc.want)
			}
		})
	}
	t.Run("arm64", func(t *testing.T) {
		b := openGo(t, goBuild(t, "local", buildVariant{name: "arm64", arch: "arm64"}))
		if _, err := b.TLSUsers(); !errors.Is(err, errors.ErrUnsupported) {
			t.Errorf("arm64: %v, want ErrUnsupported", err)
		}
	})
}

// TestTLSUsersWalk: the walk up the references, on made-up ones.
func TestTLSUsersWalk(t *testing.T) {
	const (
		fm, dial, dialer, accept, other, listen = 0x10, 0x20, 0x30, 0x40, 0x50, 0x60
		itabLoc                                 = 0x9018
	)
	tls := map[uint64]Func{
		fm:     {Name: "crypto/tls.(*Conn).clientHandshake-fm", Addr: fm},
		dial:   {Name: "crypto/tls.dial", Addr: dial},
		dialer: {Name: "crypto/tls.(*Dialer).DialContext", Addr: dialer},
		accept: {Name: tlsListenerAccept, Addr: accept},
		other:  {Name: "crypto/tls.Unused", Addr: other},
		listen: {Name: "crypto/tls.Listen", Addr: listen},
	}
	fn := func(name string, addr uint64) Func { return Func{Name: name, Addr: addr} }
	refs := map[uint64][]Func{
		fm:                      {tls[dial], fn("net/http.(*persistConn).addTLS", 0x100)},
		dial:                    {tls[dialer]},
		dialer:                  {fn("main.dialTLS", 0x200)},
		accept:                  nil,
		itabLoc - itabFunOffset: {fn("net/http.(*Server).ServeTLS", 0x300), tls[listen]},
		listen:                  {fn("main.serve", 0x400)},
	}
	refs[fm] = append(refs[fm], tls[accept])
	data := map[uint64][]uint64{accept: {itabLoc}, other: {0x9100}}
	got, err := tlsUsers(tls, []uint64{fm}, accept, refs, data)
	want := []string{"main.dialTLS", "main.serve", "net/http.(*Server).ServeTLS", "net/http.(*persistConn).addTLS"}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("users %v, %v; want %v", got, err, want)
	}
	// A function value of a crypto/tls function that makes connections,
	// loaded by no code: its user is unknown.
	data[dialer] = []uint64{0x9200}
	got, _ = tlsUsers(tls, []uint64{fm}, accept, refs, data)
	if !slices.Contains(got, "a data reference to crypto/tls.(*Dialer).DialContext") {
		t.Errorf("users %v: the function value of DialContext is not listed", got)
	}
	// The listener's itab loaded by no code: unknown too.
	delete(refs, itabLoc-itabFunOffset)
	got, _ = tlsUsers(tls, []uint64{fm}, accept, refs, data)
	if !slices.Contains(got, "a data reference to "+tlsListenerAccept) {
		t.Errorf("users %v: the unloaded listener itab is not listed", got)
	}
	if _, err := tlsUsers(tls, []uint64{fm}, accept, map[uint64][]Func{}, map[uint64][]uint64{}); err == nil {
		t.Error("no reference to the roots: no error")
	}
}
