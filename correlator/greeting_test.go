package correlator

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/periscope-apm/periscope/events"
	"github.com/periscope-apm/periscope/span"
)

// MySQL packets of TestMySQLGreetingRingLate.
func myPkt(seq byte, body string) string {
	return string([]byte{byte(len(body)), byte(len(body) >> 8), byte(len(body) >> 16), seq}) + body
}

func myU16(v uint16) string { return string(binary.LittleEndian.AppendUint16(nil, v)) }
func myU32(v uint32) string { return string(binary.LittleEndian.AppendUint32(nil, v)) }

// CLIENT_PROTOCOL_41, SECURE_CONNECTION, PLUGIN_AUTH, PLUGIN_AUTH_LENENC,
// CONNECT_WITH_DB, SSL; pymysql also keeps CLIENT_LONG_PASSWORD (MariaDB's
// CLIENT_MYSQL): it does not say MariaDB.
const myCaps = 1<<9 | 1<<15 | 1<<19 | 1<<21 | 1<<3 | 1<<11

func myGreeting(version string) string {
	return myPkt(0, "\x0a"+version+"\x00"+myU32(7)+"12345678\x00"+myU16(uint16(myCaps&0xffff))+"\x21"+myU16(2)+myU16(uint16(myCaps>>16))+
		"\x15"+strings.Repeat("\x00", 10)+"123456789012\x00mysql_native_password\x00")
}

// TestMySQLGreetingRingLate: a MySQL client over TLS. The greeting that
// says MariaDB and the SSL request went over the socket (the sockets
// collector's ring), the rest inside TLS (the TLS collector's ring), and
// the TLS ring is read first: the TLS connection is bound and its
// statement decoded before the socket's bytes (and, in one case, before
// the socket's connection is even known). The socket's bytes from before
// the TLS connection began are still decoded (its greeting), and the
// statement's span waits for that ring, so that it is named mariadb, not
// the guess mysql.
func TestMySQLGreetingRingLate(t *testing.T) {
	for _, sockFirst := range []bool{false, true} {
		t.Run(fmt.Sprintf("socket bound first %v", sockFirst), func(t *testing.T) {
			h := newHarness(t, graceConfig())
			sockRing, tlsRing := h.c.Ring(), h.c.Ring()
			sock, tls := cid(5, 1), cid(5, 0xa0000)
			const local, remote = "127.0.0.1:40000", "127.0.0.1:3306"
			bindSock := func() {
				h.c.Bind(events.Bind{Conn: sock, FD: 3, Time: at(1), Plaintext: true, StreamStart: true, Tuple: events.Tuple{
					Local: netip.MustParseAddrPort(local), Remote: netip.MustParseAddrPort(remote),
				}})
			}
			if sockFirst {
				bindSock()
			}
			h.bind(tls, 3, 10, local, remote)
			h.write(tls, 5, 11, myPkt(2, myU32(myCaps|1)+myU32(1<<24)+"\x21"+strings.Repeat("\x00", 23)+"planted-user\x00"+
				"\x14"+"planted-auth-response"[:20]+"shop\x00mysql_native_password\x00"))
			h.read(tls, 5, 12, myPkt(3, "\x00\x00\x00"+myU16(2)+myU16(0)))
			h.write(tls, 5, 13, myPkt(0, "\x03SELECT a FROM t WHERE b = 'planted'"))
			h.read(tls, 5, 14, myPkt(1, "\x00\x01\x00"+myU16(2)+myU16(0)))
			h.readTo(tlsRing, 1000)
			h.c.ReleaseHeld(at(1000))
			h.wantSpans(0)

			if !sockFirst {
				bindSock()
			}
			h.read(sock, 5, 2, myGreeting("5.5.5-10.11.6-MariaDB-0+deb12u1"))
			h.write(sock, 5, 3, myPkt(1, myU32(myCaps|1)+myU32(1<<24)+"\x21"+strings.Repeat("\x00", 23)))
			// A record of the socket after the TLS connection began is the
			// TLS collector's to report.
			h.write(sock, 5, 20, myPkt(0, "\x03SELECT 1"))
			h.readTo(sockRing, 1000)
			h.c.ReleaseHeld(at(1000))
			spans := h.wantSpans(1)
			if a := attrs(spans[0]); a["db.system.name"] != "mariadb" || a["db.namespace"] != "shop" || spans[0].Name != "SELECT t" {
				t.Errorf("span %q: %v", spans[0].Name, a)
			}
		})
	}
}

// TestMySQLGreetingAfterBind: what mariadbd's first TCP connection over
// TLS gave. The server's TLS plaintext (a HandshakeResponse that keeps
// CLIENT_MYSQL, then a statement) is decoded before its SSL*'s socket is
// known, and before the socket's ring brings the greeting that says
// MariaDB; then the Bind comes, and the client's end of the connection on
// the same node (which pairs the two). Neither may let the server's span
// out before the greeting is read: it would be named by a guess, mysql.
func TestMySQLGreetingAfterBind(t *testing.T) {
	for _, peer := range []bool{false, true} {
		t.Run(fmt.Sprintf("client end traced %v", peer), func(t *testing.T) {
			h := newHarness(t, graceConfig())
			sockRing, tlsRing := h.c.Ring(), h.c.Ring()
			sock, tls, cli := cid(5, 1), cid(5, 0xa0000), cid(6, 0xb0000)
			const server, client = "127.0.0.1:3306", "127.0.0.1:40000"
			resp := myPkt(2, myU32(myCaps|1)+myU32(1<<24)+"\x21"+strings.Repeat("\x00", 23)+"planted-user\x00"+
				"\x14"+"planted-auth-response"[:20]+"shop\x00mysql_native_password\x00")
			query := myPkt(0, "\x03SELECT a FROM t WHERE b = 'planted'")
			h.read(tls, 5, 11, resp)
			h.write(tls, 5, 12, myPkt(3, "\x00\x00\x00"+myU16(2)+myU16(0)))
			h.read(tls, 5, 13, query)
			h.write(tls, 5, 14, myPkt(1, "\x00\x01\x00"+myU16(2)+myU16(0)))
			if peer {
				h.write(cli, 6, 11, resp)
				h.read(cli, 6, 12, myPkt(3, "\x00\x00\x00"+myU16(2)+myU16(0)))
				h.write(cli, 6, 13, query)
				h.read(cli, 6, 14, myPkt(1, "\x00\x01\x00"+myU16(2)+myU16(0)))
			}
			h.readTo(tlsRing, 20)
			h.c.ReleaseHeld(at(20))
			h.bind(tls, 3, 10, server, client)
			if peer {
				h.bind(cli, 7, 10, client, server)
			}
			h.readTo(tlsRing, 1000)
			h.c.ReleaseHeld(at(1000))
			for _, s := range h.exp.spans {
				if s.Kind == span.Server {
					t.Fatalf("server span %q out before the greeting: %v", s.Name, attrs(s))
				}
			}

			h.c.Bind(events.Bind{Conn: sock, FD: 3, Time: at(1), Plaintext: true, StreamStart: true, Tuple: events.Tuple{
				Local: netip.MustParseAddrPort(server), Remote: netip.MustParseAddrPort(client),
			}})
			h.write(sock, 5, 2, myGreeting("5.5.5-10.11.6-MariaDB-0+deb12u1"))
			h.read(sock, 5, 3, myPkt(1, myU32(myCaps|1)+myU32(1<<24)+"\x21"+strings.Repeat("\x00", 23)))
			h.readTo(sockRing, 1000)
			h.c.ReleaseHeld(at(1000))
			n := 0
			for _, s := range h.exp.spans {
				if s.Kind != span.Server {
					continue
				}
				n++
				if a := attrs(s); a["db.system.name"] != "mariadb" || s.Name != "SELECT t" {
					t.Errorf("server span %q: %v", s.Name, a)
				}
			}
			if n != 1 {
				t.Errorf("%d server spans, want 1", n)
			}
		})
	}
}
