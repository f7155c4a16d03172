// Package procnet reads the kernel's tables of TCP sockets,
// /proc/PID/net/tcp and tcp6 (the sockets of PID's network namespace),
// and the links of /proc/PID/fd that name sockets. The kernel writes
// those tables; a row it did not write as documented (a truncated or
// foreign file) is an error naming its line, never a panic or a row
// half read.
package procnet

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Socket is one row of a table.
type Socket struct {
	Local, Remote netip.AddrPort
	// State is the TCP state (include/net/tcp_states.h): Listen, ...
	State uint8
	Inode uint64
}

// Listen is a listening socket's State.
const Listen = 0x0A

// Read calls yield with each socket of the TCP tables of process pid's
// network namespace (under procRoot, /proc) until it returns false. A
// missing tcp6 table (IPv6 off) has no rows.
func Read(procRoot string, pid uint32, yield func(Socket) bool) error {
	dir := filepath.Join(procRoot, strconv.FormatUint(uint64(pid), 10), "net")
	for _, f := range [...]string{"tcp", "tcp6"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			if f == "tcp6" && errors.Is(err, os.ErrNotExist) {
				continue
			}
			return fmt.Errorf("read %s table of %d: %w", f, pid, err)
		}
		more := true
		if err := Parse(b, func(s Socket) bool { more = yield(s); return more }); err != nil {
			return fmt.Errorf("%s table of %d: %w", f, pid, err)
		}
		if !more {
			return nil
		}
	}
	return nil
}

// Parse calls yield with each row of a table (the header line skipped)
// until it returns false, and returns the first malformed row's error.
func Parse(table []byte, yield func(Socket) bool) error {
	for n := 0; len(table) > 0; n++ {
		line, rest, _ := bytes.Cut(table, []byte("\n"))
		table = rest
		if n == 0 || len(bytes.TrimSpace(line)) == 0 {
			continue // the header, or the end
		}
		s, err := parseRow(string(line))
		if err != nil {
			return fmt.Errorf("line %d: %w", n+1, err)
		}
		if !yield(s) {
			return nil
		}
	}
	return nil
}

// parseRow reads "sl local remote st tx:rx tr:when retrnsmt uid timeout
// inode ...".
func parseRow(line string) (Socket, error) {
	f := strings.Fields(line)
	if len(f) < 10 {
		return Socket{}, fmt.Errorf("%d fields, want at least 10", len(f))
	}
	var s Socket
	var err error
	if s.Local, err = Addr(f[1]); err != nil {
		return Socket{}, err
	}
	if s.Remote, err = Addr(f[2]); err != nil {
		return Socket{}, err
	}
	st, err := strconv.ParseUint(f[3], 16, 8)
	if err != nil {
		return Socket{}, fmt.Errorf("bad state %q", f[3])
	}
	s.State = uint8(st)
	if s.Inode, err = strconv.ParseUint(f[9], 10, 64); err != nil {
		return Socket{}, fmt.Errorf("bad inode %q", f[9])
	}
	return s, nil
}

// Addr decodes an address of a table: "0100007F:1F90", the address as
// 32-bit words in host order, the port in hex. An IPv4-mapped IPv6
// address is its IPv4 address.
func Addr(s string) (netip.AddrPort, error) {
	hexAddr, hexPort, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	port, err := strconv.ParseUint(hexPort, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("bad port in %q", s)
	}
	raw, err := hex.DecodeString(hexAddr)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	// Each 32-bit word was printed from its host-order value.
	var b [16]byte
	for i := 0; i < len(raw); i += 4 {
		binary.BigEndian.PutUint32(b[i:], binary.NativeEndian.Uint32(raw[i:]))
	}
	var a netip.Addr
	if len(raw) == 4 {
		a = netip.AddrFrom4([4]byte(b[:4]))
	} else {
		a = netip.AddrFrom16(b).Unmap()
	}
	return netip.AddrPortFrom(a, uint16(port)), nil
}

// SocketInode parses the target of a /proc/PID/fd link to a socket,
// "socket:[12345]".
func SocketInode(target string) (uint64, bool) {
	rest, ok := strings.CutPrefix(target, "socket:[")
	if !ok {
		return 0, false
	}
	rest, ok = strings.CutSuffix(rest, "]")
	if !ok {
		return 0, false
	}
	ino, err := strconv.ParseUint(rest, 10, 64)
	if err != nil {
		return 0, false
	}
	return ino, true
}
