package symbols

import (
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

func code(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Machine code as Debian 12's libssl.so.3 (OpenSSL 3.0) has it.
const (
	// SSL_read at 0x35430: sub $0x18,%rsp; ...; js; mov %rsp,%rcx;
	// movslq %edx,%rdx; call 0x35290; test; jle
	sslRead = "48 83 ec 18 64 48 8b 04 25 28 00 00 00 48 89 44 24 08 31 c0 85 d2 78 2f 48 89 e1 48 63 d2 e8 3d fe ff ff 85 c0 7e 03"
	// SSL_read_ex at 0x354c0: sub $0x8,%rsp; call 0x35290
	sslReadEx = "48 83 ec 08 e8 c7 fd ff ff"
	// ssl_read_internal at 0x35290: push %r13; push %r12; push %rbp; push %rbx; sub $0x38,%rsp
	readInternal = "41 55 41 54 55 53 48 83 ec 38"
	// SSL_free at 0x3b350: test %rdi,%rdi; je; push %r13
	sslFree = "48 85 ff 0f 84 97 03 00 00 41 55"
)

func TestCheapEntry(t *testing.T) {
	tests := []struct {
		name string
		code string
		want uint64
		err  error
	}{
		{"push first", readInternal, 0, nil},
		{"endbr64 then push", "f3 0f 1e fa 55 48 89 e5", 4, nil},
		{"nop then push", "90 41 56", 0, nil}, // the nop itself is emulated
		{"endbr64, nopl, push", "f3 0f 1e fa 0f 1f 44 00 00 53", 4, nil},
		{"stack adjustment first", sslRead, 0, ErrNoCheapEntry},
		{"mov first", "48 89 f8 c3", 0, ErrNoCheapEntry},
		{"ret first", "c3", 0, ErrNoCheapEntry},
		{"endbr64 then sub", "f3 0f 1e fa 48 83 ec 18", 0, ErrNoCheapEntry},
		{"push from memory is not emulated", "ff 35 00 00 00 00", 0, ErrNoCheapEntry},
		{"direct call first", "e8 00 00 00 00", 0, nil},
		// SSL_free of Debian 12's libssl.so.3 and of node: test %rdi,%rdi; je
		{"test then je", sslFree, 0, ErrNoCheapEntry},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := CheapEntry(code(t, tt.code))
			if !errors.Is(err, tt.err) || (err == nil && got != tt.want) {
				t.Errorf("CheapEntry = %d, %v; want %d, %v", got, err, tt.want, tt.err)
			}
		})
	}
	// An entry probe without a return probe may also skip the flag-only
	// instructions before the first emulated one.
	for _, tt := range []struct {
		code string
		want uint64
		err  error
	}{
		{sslFree, 3, nil},
		{"f3 0f 1e fa 48 83 ff 00 75 02", 8, nil}, // endbr64, cmp, jne
		{readInternal, 0, nil},
		{"48 85 ff 48 89 fb", 0, ErrNoCheapEntry}, // test, then mov
		{sslRead, 0, ErrNoCheapEntry},
	} {
		got, err := CheapEntryOnly(code(t, tt.code))
		if !errors.Is(err, tt.err) || (err == nil && got != tt.want) {
			t.Errorf("CheapEntryOnly(%s) = %d, %v; want %d, %v", tt.code, got, err, tt.want, tt.err)
		}
	}
}

func TestForwardTarget(t *testing.T) {
	tests := []struct {
		name   string
		addr   uint64
		code   string
		target uint64
		ok     bool
	}{
		{"SSL_read_ex forwards", 0x354c0, sslReadEx, 0x35290, true},
		{"endbr64 before the call", 0x1000, "f3 0f 1e fa 48 83 ec 08 e8 00 00 00 00", 0x100d, true},
		{"SSL_read changes rdx and rcx first", 0x35430, sslRead, 0, false},
		{"branch before the call", 0x1000, "85 d2 78 05 e8 00 00 00 00", 0, false},
		{"writes rsi (sil) first", 0x1000, "40 88 fe e8 00 00 00 00", 0, false},
		{"indirect call", 0x1000, "48 83 ec 08 ff d0", 0, false},
		{"returns first", 0x1000, "c3 e8 00 00 00 00", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fn := Func{Name: tt.name, Addr: tt.addr}
			target, ok := ForwardTarget(fn, code(t, tt.code))
			if ok != tt.ok || target != tt.target {
				t.Errorf("ForwardTarget = %#x, %v; want %#x, %v", target, ok, tt.target, tt.ok)
			}
		})
	}
}

func TestCalls(t *testing.T) {
	fn := Func{Name: "SSL_read", Addr: 0x35430}
	if !Calls(fn, code(t, sslRead), 0x35290) {
		t.Error("SSL_read calls ssl_read_internal at 0x35290")
	}
	if Calls(fn, code(t, sslRead), 0x355a0) {
		t.Error("SSL_read does not call 0x355a0")
	}
}
