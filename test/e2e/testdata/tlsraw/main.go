// Command tlsraw speaks HTTP/1.1 by hand over crypto/tls, without net/http
// (so that only the gotls collector sees it), for the end-to-end tests of
// the Go TLS collector across Go releases (Go >= 1.18).
//
//	tlsraw server CERT KEY           prints "listening PORT"; answers every request "200 ok"
//	tlsraw client PORT CA N          waits for a line on stdin, then N requests on one connection;
//	                                 prints "done N"
package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
)

func main() {
	if len(os.Args) < 2 {
		fail("usage: tlsraw server CERT KEY | client PORT CA N")
	}
	switch os.Args[1] {
	case "server":
		server(os.Args[2], os.Args[3])
	case "client":
		n, _ := strconv.Atoi(os.Args[4])
		client(os.Args[2], os.Args[3], n)
	default:
		fail("unknown mode " + os.Args[1])
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, msg)
	os.Exit(1)
}

func server(certFile, keyFile string) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		fail(err.Error())
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		fail(err.Error())
	}
	fmt.Println("listening", ln.Addr().(*net.TCPAddr).Port)
	for {
		c, err := ln.Accept()
		if err != nil {
			fail(err.Error())
		}
		go serve(c)
	}
}

// serve answers each request (a head without a body) on c.
func serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		status := "200 OK"
		if strings.Contains(line, "/missing") {
			status = "404 Not Found"
		}
		for {
			h, err := r.ReadString('\n')
			if err != nil {
				return
			}
			if h == "\r\n" {
				break
			}
		}
		if _, err := io.WriteString(c, "HTTP/1.1 "+status+"\r\nContent-Length: 2\r\n\r\nok"); err != nil {
			return
		}
	}
}

func client(port, caFile string, n int) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		fail(err.Error())
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	bufio.NewReader(os.Stdin).ReadString('\n')
	c, err := tls.Dial("tcp", "127.0.0.1:"+port, &tls.Config{RootCAs: roots, ServerName: "localhost"})
	if err != nil {
		fail(err.Error())
	}
	r := bufio.NewReader(c)
	for i := 0; i < n; i++ {
		path := "/item/" + strconv.Itoa(i)
		if i%4 == 3 {
			path = "/missing"
		}
		if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: localhost\r\n\r\n"); err != nil {
			fail(err.Error())
		}
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				fail(err.Error())
			}
			if line == "\r\n" {
				break
			}
		}
		body := make([]byte, 2)
		if _, err := io.ReadFull(r, body); err != nil {
			fail(err.Error())
		}
	}
	c.Close()
	fmt.Println("done", n)
}
