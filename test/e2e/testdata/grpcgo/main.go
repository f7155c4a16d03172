// Command grpcgo is the grpc-go program of the end-to-end tests and of the
// gRPC bench: service test.Echo with raw-bytes messages (no generated code),
// as testdata/grpc_server.py defines it, over TLS (-cert/-key, -ca) or
// plaintext (h2c).
//
//	grpcgo -mode server [-cert C -key K] [-http]
//	                                          prints "listening PORT", stops at EOF on stdin (on a
//	                                          line "graceful": GracefulStop, then prints "stopped"); with
//	                                          -http also serves net/http (HTTP/1.1 and h2c, GET
//	                                          /hello) on another port, printed "http PORT"
//	grpcgo -mode client -port P [-ca CA] -n N [-wait]  N Echo, one Get (NOT_FOUND), List (3 answers),
//	                                          Sum (4 requests), Chat (2 each way); prints "done CALLS";
//	                                          with -http-port H, then -http-n GET /hello over
//	                                          HTTP/1.1 and as many over h2c to H: prints "http GETS"
//	grpcgo -mode h2c-server                   serves GET /h2c/* with net/http through
//	                                          golang.org/x/net/http2/h2c (the connection accepted by
//	                                          net/http, hijacked, served by x/net/http2); prints
//	                                          "listening PORT", stops at EOF on stdin
//	grpcgo -mode h2c-client -port P -n N [-wait]
//	                                          N GET /h2c/I over one prior-knowledge h2c connection
//	                                          (x/net/http2.Transport); prints "done GETS"
//	grpcgo -mode load -port P [-ca CA] -conc C -dur D
//	                                          unary Echo calls from C goroutines on one
//	                                          connection for D; prints "calls N"
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// rawCodec passes messages as they are (*[]byte).
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

func unary(f func([]byte) ([]byte, error)) func(any, context.Context, func(any) error, grpc.UnaryServerInterceptor) (any, error) {
	return func(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
		var req []byte
		if err := dec(&req); err != nil {
			return nil, err
		}
		resp, err := f(req)
		if err != nil {
			return nil, err
		}
		return &resp, nil
	}
}

func list(_ any, s grpc.ServerStream) error {
	var req []byte
	if err := s.RecvMsg(&req); err != nil {
		return err
	}
	for i := range 3 {
		m := []byte{byte(i), byte(i), byte(i), byte(i), byte(i), byte(i), byte(i), byte(i)}
		if err := s.SendMsg(&m); err != nil {
			return err
		}
	}
	return nil
}

func sum(_ any, s grpc.ServerStream) error {
	n := 0
	for {
		var m []byte
		err := s.RecvMsg(&m)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		n++
	}
	resp := []byte{byte(n)}
	return s.SendMsg(&resp)
}

func chat(_ any, s grpc.ServerStream) error {
	for {
		var m []byte
		err := s.RecvMsg(&m)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := s.SendMsg(&m); err != nil {
			return err
		}
	}
}

var service = grpc.ServiceDesc{
	ServiceName: "test.Echo",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "Echo", Handler: unary(func(b []byte) ([]byte, error) { return b, nil })},
		{MethodName: "Get", Handler: unary(func([]byte) ([]byte, error) {
			return nil, status.Error(codes.NotFound, "no such key: secret-key-42")
		})},
	},
	Streams: []grpc.StreamDesc{
		{StreamName: "List", ServerStreams: true, Handler: list},
		{StreamName: "Sum", ClientStreams: true, Handler: sum},
		{StreamName: "Chat", ServerStreams: true, ClientStreams: true, Handler: chat},
	},
}

func main() {
	mode := flag.String("mode", "server", "server, client or load")
	cert := flag.String("cert", "", "server certificate (none: plaintext)")
	key := flag.String("key", "", "server key")
	ca := flag.String("ca", "", "CA of the server's certificate (none: plaintext)")
	port := flag.Int("port", 0, "server port (client, load)")
	n := flag.Int("n", 6, "unary Echo calls (client)")
	conc := flag.Int("conc", 16, "concurrent callers (load)")
	dur := flag.Duration("dur", 5*time.Second, "duration (load)")
	wait := flag.Bool("wait", false, `client: print "ready" and wait for a line on stdin before the calls`)
	withHTTP := flag.Bool("http", false, "server: also serve net/http, HTTP/1.1 and h2c")
	httpPort := flag.Int("http-port", 0, "client: the server's net/http port")
	httpN := flag.Int("http-n", 4, "client: GETs over each of HTTP/1.1 and h2c")
	cancelDrain := flag.Bool("cancel-drain", false, "client: then a cancelled call and one across the server's GOAWAY")
	flag.Parse()
	switch *mode {
	case "server":
		if *withHTTP {
			serveHTTP()
		}
		serve(*cert, *key)
	case "client":
		if *wait {
			fmt.Println("ready")
			_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		}
		cc := dial(*port, *ca)
		fmt.Println("done", calls(cc, *n))
		if *cancelDrain {
			cancelAndDrain(cc)
		}
		cc.Close()
		if *httpPort != 0 {
			fmt.Println("http", gets(*httpPort, *httpN))
		}
	case "h2c-server":
		serveH2C()
	case "h2c-client":
		if *wait {
			fmt.Println("ready")
			_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		}
		fmt.Println("done", h2cGets(*port, *n))
	case "load":
		fmt.Println("calls", load(dial(*port, *ca), *conc, *dur))
	default:
		log.Fatalf("unknown mode %q", *mode)
	}
}

func serve(cert, key string) {
	opts := []grpc.ServerOption{grpc.ForceServerCodec(rawCodec{})}
	if cert != "" {
		creds, err := credentials.NewServerTLSFromFile(cert, key)
		if err != nil {
			log.Fatal(err)
		}
		opts = append(opts, grpc.Creds(creds))
	}
	s := grpc.NewServer(opts...)
	s.RegisterService(&service, struct{}{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		if err := s.Serve(ln); err != nil {
			log.Fatal(err)
		}
	}()
	fmt.Println("listening", ln.Addr().(*net.TCPAddr).Port)
	if line, _ := bufio.NewReader(os.Stdin).ReadString('\n'); line == "graceful\n" {
		// GOAWAY to every client, then wait for the calls in flight.
		s.GracefulStop()
		fmt.Println("stopped")
		return
	}
	s.Stop()
}

// serveHTTP serves GET /hello with net/http, over HTTP/1.1 and h2c (HTTP/2
// with prior knowledge), on a port of its own.
func serveHTTP() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "hello")
	}), Protocols: new(http.Protocols)}
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	go func() { log.Fatal(srv.Serve(ln)) }()
	fmt.Println("http", ln.Addr().(*net.TCPAddr).Port)
}

// gets makes n GET /hello over HTTP/1.1 then n over h2c, each set on one
// connection, and returns how many succeeded; a failure is fatal.
func gets(port, n int) int {
	made := 0
	for _, h2c := range []bool{false, true} {
		t := &http.Transport{Protocols: new(http.Protocols)}
		t.Protocols.SetHTTP1(!h2c)
		t.Protocols.SetUnencryptedHTTP2(h2c)
		c := &http.Client{Transport: t}
		for range n {
			resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/hello", port))
			if err != nil {
				log.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || resp.ProtoMajor != map[bool]int{false: 1, true: 2}[h2c] {
				log.Fatalf("GET /hello: %s %s", resp.Proto, resp.Status)
			}
			made++
		}
		t.CloseIdleConnections()
	}
	return made
}

// serveH2C serves GET /h2c/* over h2c the way golang.org/x/net/http2/h2c
// does it: net/http's HTTP/1 server reads the preface as a PRI request (or
// an HTTP/1.1 request with "Upgrade: h2c", answered 101) and the h2c
// handler hijacks the connection for x/net/http2's server.
func serveH2C() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A request that upgraded to h2c is stream 1 of the HTTP/2
		// connection, but x/net/http2 hands it over as it came: HTTP/1.1.
		if r.ProtoMajor != 2 && r.Header.Get("HTTP2-Settings") == "" {
			http.Error(w, "not HTTP/2", http.StatusHTTPVersionNotSupported)
			return
		}
		fmt.Fprint(w, "hello")
	})
	srv := &http.Server{Handler: h2c.NewHandler(h, &http2.Server{})}
	go func() { log.Fatal(srv.Serve(ln)) }()
	fmt.Println("listening", ln.Addr().(*net.TCPAddr).Port)
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
}

// h2cGets makes n GET /h2c/I over one prior-knowledge h2c connection of
// x/net/http2's client and returns how many succeeded; a failure is fatal.
func h2cGets(port, n int) int {
	t := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
	c := &http.Client{Transport: t}
	made := 0
	for i := range n {
		resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/h2c/%d", port, i))
		if err != nil {
			log.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
			log.Fatalf("GET /h2c/%d: %s %s", i, resp.Proto, resp.Status)
		}
		made++
	}
	t.CloseIdleConnections()
	return made
}

func dial(port int, ca string) *grpc.ClientConn {
	creds := insecure.NewCredentials()
	if ca != "" {
		var err error
		if creds, err = credentials.NewClientTLSFromFile(ca, "localhost"); err != nil {
			log.Fatal(err)
		}
	}
	cc, err := grpc.NewClient(fmt.Sprintf("127.0.0.1:%d", port), grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
	if err != nil {
		log.Fatal(err)
	}
	return cc
}

// calls makes grpc_client.py's calls and returns how many it made.
func calls(cc *grpc.ClientConn, n int) int {
	ctx := context.Background()
	made := 0
	for i := range n {
		req, resp := []byte(fmt.Sprintf("hello %d", i)), []byte(nil)
		if err := cc.Invoke(ctx, "/test.Echo/Echo", &req, &resp); err != nil || string(resp) != string(req) {
			log.Fatalf("Echo: %v %q", err, resp)
		}
		made++
	}
	req, resp := []byte("secret-key-42"), []byte(nil)
	if err := cc.Invoke(ctx, "/test.Echo/Get", &req, &resp); status.Code(err) != codes.NotFound {
		log.Fatalf("Get: %v", err)
	}
	made++
	if got := stream(ctx, cc, "List", 1, true, false); got != 3 {
		log.Fatalf("List: %d answers", got)
	}
	made++
	if got := stream(ctx, cc, "Sum", 4, false, true); got != 1 {
		log.Fatalf("Sum: %d answers", got)
	}
	made++
	if got := stream(ctx, cc, "Chat", 2, true, true); got != 2 {
		log.Fatalf("Chat: %d answers", got)
	}
	made++
	return made
}

// cancelAndDrain makes a Chat it cancels after one answer (grpc-go sends
// RST_STREAM CANCEL) and one whose 300 ms deadline passes, and prints
// "cancelled"; then a Chat that, after one
// answer, prints "inflight", waits until the server's GOAWAY takes the
// channel out of READY, and ends with a second message each way:
// "drained".
func cancelAndDrain(cc *grpc.ClientConn) {
	desc := &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}
	ctx, cancel := context.WithCancel(context.Background())
	s, err := cc.NewStream(ctx, desc, "/test.Echo/Chat")
	if err != nil {
		log.Fatal(err)
	}
	echo(s, "first")
	cancel()
	var m []byte
	if err := s.RecvMsg(&m); status.Code(err) != codes.Canceled {
		log.Fatalf("cancelled Chat: %v", err)
	}
	// A Chat whose deadline passes while it waits for an answer: the
	// client resets it (CANCEL), the server gives up too.
	dctx, dcancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer dcancel()
	if s, err = cc.NewStream(dctx, desc, "/test.Echo/Chat"); err != nil {
		log.Fatal(err)
	}
	if err := s.RecvMsg(&m); status.Code(err) != codes.DeadlineExceeded {
		log.Fatalf("Chat past its deadline: %v", err)
	}
	fmt.Println("cancelled")
	if s, err = cc.NewStream(context.Background(), desc, "/test.Echo/Chat"); err != nil {
		log.Fatal(err)
	}
	echo(s, "before GOAWAY")
	fmt.Println("inflight")
	wait, stop := context.WithTimeout(context.Background(), 30*time.Second)
	defer stop()
	if !cc.WaitForStateChange(wait, connectivity.Ready) {
		log.Fatal("no GOAWAY from the server within 30 s")
	}
	echo(s, "after GOAWAY")
	if err := s.CloseSend(); err != nil {
		log.Fatal(err)
	}
	if err := s.RecvMsg(&m); !errors.Is(err, io.EOF) {
		log.Fatalf("draining Chat: %v", err)
	}
	fmt.Println("drained")
}

// echo sends msg on a Chat stream and waits for its echo.
func echo(s grpc.ClientStream, msg string) {
	m := []byte(msg)
	if err := s.SendMsg(&m); err != nil {
		log.Fatal(err)
	}
	var r []byte
	if err := s.RecvMsg(&r); err != nil || string(r) != msg {
		log.Fatalf("Chat echo: %v %q", err, r)
	}
}

// stream sends sends messages on a new stream of method, closes its side
// and returns how many answers came.
func stream(ctx context.Context, cc *grpc.ClientConn, method string, sends int, serverStreams, clientStreams bool) int {
	s, err := cc.NewStream(ctx, &grpc.StreamDesc{ServerStreams: serverStreams, ClientStreams: clientStreams}, "/test.Echo/"+method)
	if err != nil {
		log.Fatal(err)
	}
	for i := range sends {
		m := []byte{'a' + byte(i)}
		if err := s.SendMsg(&m); err != nil {
			log.Fatal(err)
		}
	}
	if err := s.CloseSend(); err != nil {
		log.Fatal(err)
	}
	got := 0
	for {
		var m []byte
		err := s.RecvMsg(&m)
		if errors.Is(err, io.EOF) {
			return got
		}
		if err != nil {
			log.Fatalf("%s: %v", method, err)
		}
		got++
	}
}

// load makes unary Echo calls from conc goroutines for d and returns how
// many succeeded; a failed call is fatal.
func load(cc *grpc.ClientConn, conc int, d time.Duration) int64 {
	var n atomic.Int64
	var wg sync.WaitGroup
	end := time.Now().Add(d)
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := []byte("ping")
			for time.Now().Before(end) {
				var resp []byte
				if err := cc.Invoke(context.Background(), "/test.Echo/Echo", &req, &resp); err != nil {
					log.Fatalf("Echo: %v", err)
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	cc.Close()
	return n.Load()
}
