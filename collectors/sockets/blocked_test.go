package sockets

import (
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

func TestParseSyscall(t *testing.T) {
	line := func(nr int, rest string) []byte { return []byte(strconv.Itoa(nr) + " " + rest) }
	for _, tc := range []struct {
		name string
		line []byte
		want socketsCall
		ok   bool
	}{
		{"read", line(syscall.SYS_READ, "0x5 0x7ffd1000 0x2000 0x0 0x0 0x0 0x7ffd0f00 0x7f00123\n"),
			socketsCall{Buf: 0x7ffd1000, Count: 0x2000, Fd: 5, Kind: uint8(socketsCallKindCALL_BUF), Dir: 1, Found: 1, Nr: syscall.SYS_READ}, true},
		{"recvfrom", line(syscall.SYS_RECVFROM, "0x7 0x55aa 0x10000 0x0 0x0 0x0 0x1 0x2"),
			socketsCall{Buf: 0x55aa, Count: 0x10000, Fd: 7, Kind: uint8(socketsCallKindCALL_BUF), Dir: 1, Found: 1, Nr: syscall.SYS_RECVFROM}, true},
		{"readv", line(syscall.SYS_READV, "0x3 0x1000 0x2 0x0 0x0 0x0 0x1 0x2"),
			socketsCall{Buf: 0x1000, Count: 2, Fd: 3, Kind: uint8(socketsCallKindCALL_IOV), Dir: 1, Found: 1, Nr: syscall.SYS_READV}, true},
		{"recvmsg", line(syscall.SYS_RECVMSG, "0x4 0x2000 0x0 0x0 0x0 0x0 0x1 0x2"),
			socketsCall{Buf: 0x2000, Fd: 4, Kind: uint8(socketsCallKindCALL_MSG), Dir: 1, Found: 1, Nr: syscall.SYS_RECVMSG}, true},
		{"running", []byte("running\n"), socketsCall{}, false},
		{"not blocked", []byte("-1 0x7ffd 0x7f00\n"), socketsCall{}, false},
		{"another syscall", line(syscall.SYS_WRITE, "0x5 0x1 0x2 0x0 0x0 0x0 0x1 0x2"), socketsCall{}, false},
		{"fd out of range", line(syscall.SYS_READ, "0xffffffffffffffff 0x1 0x2 0x0 0x0 0x0 0x1 0x2"), socketsCall{}, false},
		{"bad hex", line(syscall.SYS_READ, "0x5 0xzz 0x2 0x0 0x0 0x0 0x1 0x2"), socketsCall{}, false},
		{"short", line(syscall.SYS_READ, "0x5 0x1"), socketsCall{}, false},
		{"empty", nil, socketsCall{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := parseSyscall(tc.line)
			if ok != tc.ok || got != tc.want {
				t.Errorf("parseSyscall(%q) = %+v, %v; want %+v, %v", tc.line, got, ok, tc.want, tc.ok)
			}
		})
	}
}

// TestBlockedReads lists, from a fake /proc, only the threads blocked in a
// read of a socket, and never the agent's own.
func TestBlockedReads(t *testing.T) {
	root := t.TempDir()
	thread := func(pid, tid, fd string, syscallLine, fdLink string) {
		dir := filepath.Join(root, pid, "task", tid)
		if err := os.MkdirAll(filepath.Join(dir, "fd"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "syscall"), []byte(syscallLine), 0o644); err != nil {
			t.Fatal(err)
		}
		if fdLink != "" {
			if err := os.Symlink(fdLink, filepath.Join(dir, "fd", fd)); err != nil {
				t.Fatal(err)
			}
		}
	}
	read := strconv.Itoa(syscall.SYS_READ)
	thread("10", "10", "3", read+" 0x3 0x1000 0x100 0x0 0x0 0x0 0x1 0x2\n", "socket:[123]")
	thread("10", "11", "4", read+" 0x4 0x1000 0x100 0x0 0x0 0x0 0x1 0x2\n", "pipe:[9]")
	thread("10", "12", "3", "running\n", "")
	thread("20", "20", "3", read+" 0x3 0x1000 0x100 0x0 0x0 0x0 0x1 0x2\n", "socket:[124]")
	got := blockedReads(root, 20)
	if len(got) != 1 || got[0].pid != 10 || got[0].tid != 10 || got[0].call.Fd != 3 {
		t.Errorf("blockedReads = %+v, want thread 10/10 on fd 3 only", got)
	}
}

func FuzzParseSyscall(f *testing.F) {
	f.Add([]byte(strconv.Itoa(syscall.SYS_READ) + " 0x5 0x7ffd1000 0x2000 0x0 0x0 0x0 0x7ffd0f00 0x7f00123\n"))
	f.Add([]byte("running\n"))
	f.Add([]byte("-1 0x1 0x2\n"))
	f.Fuzz(func(t *testing.T, line []byte) {
		c, ok := parseSyscall(line)
		if !ok {
			return
		}
		if _, known := readCalls[c.Nr]; !known || c.Found != 1 || c.Fd < 0 {
			t.Errorf("parseSyscall(%q) = %+v", line, c)
		}
	})
}
