// Command gohttps serves and calls HTTPS with net/http alone: no other code
// of it makes a crypto/tls connection, so the gotls collector leaves it to
// gohttp (no probe on crypto/tls).
//
//	gohttps server ADDR CERT KEY     serves GET /item/* (HTTP/1.1 and HTTP/2); prints "listening"
//	gohttps client URL N CA [-h2]    prints "ready", waits for a line on stdin, then makes N
//	                                 GET URL/item/I on one connection (HTTP/2 with -h2, else
//	                                 HTTP/1.1); prints "done N"
package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strconv"
)

func main() {
	if len(os.Args) < 5 {
		log.Fatal("usage: gohttps server ADDR CERT KEY | client URL N CA [-h2]")
	}
	switch os.Args[1] {
	case "server":
		http.HandleFunc("/item/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "item") })
		fmt.Println("listening")
		log.Fatal(http.ListenAndServeTLS(os.Args[2], os.Args[3], os.Args[4], nil))
	case "client":
		n, err := strconv.Atoi(os.Args[3])
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("done", client(os.Args[2], n, os.Args[4], len(os.Args) > 5 && os.Args[5] == "-h2"))
	default:
		log.Fatalf("unknown mode %q", os.Args[1])
	}
}

func client(url string, n int, ca string, h2 bool) int {
	pem, err := os.ReadFile(ca)
	if err != nil {
		log.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	t := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: h2}
	if !h2 {
		t.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	c := &http.Client{Transport: t}
	fmt.Println("ready")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	made := 0
	for i := 0; i < n; i++ {
		resp, err := c.Get(fmt.Sprintf("%s/item/%d", url, i))
		if err != nil {
			log.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || (resp.ProtoMajor == 2) != h2 {
			log.Fatalf("GET: %s %s", resp.Proto, resp.Status)
		}
		made++
	}
	return made
}
