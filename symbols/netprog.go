package symbols

// NetHTTPProgram is the source of a small Go program (Go ≥ 1.18) that links
// every function and struct the Go collector uses: an HTTP server and
// client over plain TCP and crypto/tls. cmd/offsetgen builds it with each
// supported toolchain to read struct offsets from its DWARF, and the tests
// build it to check Func, Returns and Offsets. Run, it serves one request to
// itself and prints "GET /ping 200".
const NetHTTPProgram = `package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
)

func main() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		fmt.Fprintf(w, "%s %s", r.Method, r.URL.Path)
	})}
	if len(os.Args) > 2 && os.Args[1] == "tls" {
		// Never taken: links the TLS server.
		go srv.ServeTLS(ln, os.Args[2], os.Args[2])
		c := tls.Client(nil, &tls.Config{})
		c.Write(nil)
		c.Read(nil)
	} else {
		go srv.Serve(ln)
	}
	resp, err := http.Get("http://" + ln.Addr().String() + "/ping")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Printf("%s %d\n", body, resp.StatusCode)
}
`
