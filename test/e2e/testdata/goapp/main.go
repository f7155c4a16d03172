// Command goapp is the Go program the end-to-end tests trace: an HTTP(S)
// server whose handlers may call a downstream service, and a client. It
// uses only the standard library and builds with Go 1.18 and later.
//
//	goapp server ADDR [-tls-cert CERT -tls-key KEY] [-downstream URL] [-ca CA] [-h2]
//	goapp client URL N [-ca CA] [-h2] [-parallel P] [-path PATH] [-pre K] [-dial-tls]
//	goapp linger DURATION
//
// With -burn the server also spins one goroutine on the CPU for ever.
// linger does nothing for DURATION (a short-lived traced Go process).
//
// HTTP/2 is off unless -h2 is given: then the server offers it over TLS
// (Go's default) and the clients, the downstream one included, use it.
// With -parallel the client sends its N requests from P goroutines over
// one HTTP/2 connection, each to a path of its own (/item/I).
// With -pre the client makes K requests to /hello before it waits to be
// told to start (printing "ready"), so that its keep-alive connection is
// open before the agent; with -dial-tls its transport dials TLS itself
// (Transport.DialTLSContext). It ends printing "dials D", the connections
// it opened.
//
// Built with -tags nethttponly (make bench) it has no TLS dialer of its
// own and refuses -dial-tls: its only crypto/tls connections are net/http's,
// so the agent's gotls collector puts no probe on it (as on any such
// program) and the benchmark measures what gohttp alone costs.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		log.Fatal("usage: goapp server|client ...")
	}
	switch os.Args[1] {
	case "server":
		server(os.Args[2:])
	case "client":
		client(os.Args[2:])
	case "linger":
		d, err := time.ParseDuration(os.Args[2])
		if err != nil {
			log.Fatal(err)
		}
		time.Sleep(d)
	default:
		log.Fatalf("unknown mode %q", os.Args[1])
	}
}

func transport(ca string, h2 bool) *http.Transport {
	t := &http.Transport{
		TLSNextProto:        map[string]func(string, *tls.Conn) http.RoundTripper{},
		MaxIdleConnsPerHost: 64,
	}
	if h2 {
		t.TLSNextProto = nil
		t.ForceAttemptHTTP2 = true
	}
	if ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			log.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		t.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	return t
}

// grow recurses deeply enough to make the goroutine's stack be copied
// several times (~1 MiB).
func grow(n int) int {
	var pad [1024]byte
	pad[n%1024] = byte(n)
	if n == 0 {
		return int(pad[0])
	}
	return grow(n-1) + int(pad[n%1024])
}

// spin keeps one CPU busy.
func spin() {
	x := uint64(1)
	for {
		x = x*6364136223846793005 + 1442695040888963407
		if x == 0 {
			fmt.Println(x)
		}
	}
}

func server(args []string) {
	fs := flag.NewFlagSet("server", flag.ExitOnError)
	certFile := fs.String("tls-cert", "", "")
	keyFile := fs.String("tls-key", "", "")
	downstream := fs.String("downstream", "", "")
	ca := fs.String("ca", "", "")
	h2 := fs.Bool("h2", false, "")
	burn := fs.Bool("burn", false, "")
	addr := args[0]
	fs.Parse(args[1:])
	if *burn {
		go spin()
	}
	down := &http.Client{Transport: transport(*ca, *h2)}

	mux := http.NewServeMux()
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "hello")
	})
	mux.HandleFunc("/status/", func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(r.URL.Path[len("/status/"):])
		w.WriteHeader(code)
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "%d\n", n)
	})
	mux.HandleFunc("/chain", func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequest("GET", *downstream+"/leaf", nil)
		if tp := r.Header.Get("X-Forward-Traceparent"); tp != "" {
			req.Header.Set("Traceparent", tp)
		}
		resp, err := down.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		fmt.Fprintln(w, "chained")
	})
	mux.HandleFunc("/item/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, r.Proto, r.URL.Path)
	})
	mux.HandleFunc("/leaf", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintln(w, "leaf")
	})
	mux.HandleFunc("/torture", func(w http.ResponseWriter, r *http.Request) {
		var wg sync.WaitGroup
		sum := 0
		var mu sync.Mutex
		for i := 0; i < 4; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				v := grow(200 + i)
				mu.Lock()
				sum += v
				mu.Unlock()
			}(i)
		}
		v := grow(1000) // ~1 MiB of stack in the handler's own goroutine
		wg.Wait()
		fmt.Fprintln(w, v+sum)
	})
	srv := &http.Server{Addr: addr, Handler: mux, TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){}}
	if *h2 {
		srv.TLSNextProto = nil
	}
	var err error
	if *certFile != "" {
		err = srv.ListenAndServeTLS(*certFile, *keyFile)
	} else {
		err = srv.ListenAndServe()
	}
	log.Fatal(err)
}

func client(args []string) {
	fs := flag.NewFlagSet("client", flag.ExitOnError)
	ca := fs.String("ca", "", "")
	h2 := fs.Bool("h2", false, "")
	parallel := fs.Int("parallel", 0, "")
	only := fs.String("path", "", "")
	pre := fs.Int("pre", 0, "")
	dialTLS := fs.Bool("dial-tls", false, "")
	url := args[0]
	n, err := strconv.Atoi(args[1])
	if err != nil {
		log.Fatal(err)
	}
	fs.Parse(args[2:])
	t := transport(*ca, *h2)
	var dials int64
	defer func() { fmt.Println("dials", atomic.LoadInt64(&dials)) }()
	var d net.Dialer
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		atomic.AddInt64(&dials, 1)
		return d.DialContext(ctx, network, addr)
	}
	if *dialTLS {
		dialTLSItself(t, *h2, &dials)
	}
	c := &http.Client{Transport: t}
	for i := 0; i < *pre; i++ {
		get(c, url+"/hello")
	}
	if *pre > 0 {
		fmt.Println("ready")
	}
	// Wait to be told to start, so that the agent can attach first.
	if _, err := fmt.Fscanln(os.Stdin); err != nil && err.Error() != "unexpected newline" {
		log.Fatal(err)
	}
	if *parallel > 0 {
		get(c, url+"/item/0") // one connection first, shared by all
		var wg sync.WaitGroup
		next := make(chan int)
		for g := 0; g < *parallel; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					get(c, fmt.Sprintf("%s/item/%d", url, i))
				}
			}()
		}
		for i := 1; i < n; i++ {
			next <- i
		}
		close(next)
		wg.Wait()
		return
	}
	paths := []string{"/hello", "/status/404", "/status/503", "/hello"}
	if *only != "" {
		paths = []string{*only}
	}
	for i := 0; i < n; i++ {
		get(c, url+paths[i%len(paths)])
	}
}

// get fetches url and checks that the protocol is the one asked for.
func get(c *http.Client, url string) {
	resp, err := c.Get(url)
	if err != nil {
		log.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if t := c.Transport.(*http.Transport); t.ForceAttemptHTTP2 && resp.ProtoMajor != 2 {
		log.Fatalf("%s: %s, not HTTP/2", url, resp.Proto)
	}
}
