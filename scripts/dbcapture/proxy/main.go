// Command proxy records the bytes of database connections for the decoders'
// tests: it accepts clients on -listen, connects each to -to, copies bytes
// both ways and writes every read, as it came, to <-out>-<n>.capture (n
// counts connections from 1): one line per read, "C <hex>" for bytes from
// the client, "S <hex>" for bytes from the server. It stops after -idle
// without connections or traffic.
package main

import (
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to accept clients on")
	to := flag.String("to", "", "server address")
	out := flag.String("out", "capture", "output path prefix")
	idle := flag.Duration("idle", 3*time.Second, "stop after this long without traffic")
	flag.Parse()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ln.Addr())
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	var wg sync.WaitGroup
	go func() {
		for time.Since(time.Unix(0, last.Load())) < *idle {
			time.Sleep(100 * time.Millisecond)
		}
		ln.Close()
	}()
	for n := 1; ; n++ {
		c, err := ln.Accept()
		if err != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := relay(c, *to, fmt.Sprintf("%s-%d.capture", *out, n), &last); err != nil {
				log.Print(err)
			}
		}()
	}
	wg.Wait()
}

// relay copies one connection and records it.
func relay(client net.Conn, to, path string, last *atomic.Int64) error {
	defer client.Close()
	server, err := net.Dial("tcp", to)
	if err != nil {
		return err
	}
	defer server.Close()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var mu sync.Mutex
	record := func(tag string, p []byte) {
		mu.Lock()
		defer mu.Unlock()
		last.Store(time.Now().UnixNano())
		fmt.Fprintf(f, "%s %s\n", tag, hex.EncodeToString(p))
	}
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn, tag string) {
		buf := make([]byte, 64<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				record(tag, buf[:n])
				if _, werr := dst.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				if err != io.EOF {
					log.Print(err)
				}
				break
			}
		}
		if tc, ok := dst.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(server, client, "C")
	go pipe(client, server, "S")
	<-done
	<-done
	return nil
}
