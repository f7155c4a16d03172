package symbols

import (
	"encoding/binary"
	"os"
	"testing"
)

// TestCallSites: in every supported toolchain's build (with symbols,
// stripped, arm64), crypto/tls.(*Conn).Read copies the decrypted record
// with exactly one direct call of runtime.memmove, and net/http's client
// calls the TLS handshake directly (in a closure of addTLS): the sites the
// gotls collector probes. Each reported site holds a direct call (CALL rel32 / BL) whose
// target is the function asked for.
func TestCallSites(t *testing.T) {
	type build struct {
		toolchain string
		variant   buildVariant
	}
	var builds []build
	for _, tc := range testToolchains {
		builds = append(builds, build{tc, withSymbols}, build{tc, stripped})
	}
	builds = append(builds, build{"local", buildVariant{name: "arm64", arch: "arm64"}})
	for _, bd := range builds {
		t.Run(bd.toolchain+"-"+bd.variant.name, func(t *testing.T) {
			b := openGo(t, goBuild(t, bd.toolchain, bd.variant))
			read := mustFunc(t, b, "crypto/tls.(*Conn).Read")
			memmove := mustFunc(t, b, "runtime.memmove")
			sites, err := b.CallSites(read, memmove.Addr)
			if err != nil || len(sites) != 1 {
				t.Fatalf("calls of memmove in Read: %v, %v; want one", sites, err)
			}
			checkCallAt(t, b, read, sites[0], memmove.Addr)

			var targets []uint64
			for _, name := range []string{"crypto/tls.(*Conn).HandshakeContext", "crypto/tls.(*Conn).handshakeContext"} {
				if f, err := b.Func(name); err == nil {
					targets = append(targets, f.Addr)
				}
			}
			var hs []uint64
			for _, name := range []string{"net/http.(*persistConn).addTLS", "net/http.(*persistConn).addTLS.func1",
				"net/http.(*persistConn).addTLS.func2", "net/http.(*persistConn).addTLS.func3"} {
				if f, err := b.Func(name); err == nil {
					calls, err := b.CallSites(f, targets...)
					if err != nil {
						t.Fatal(err)
					}
					hs = append(hs, calls...)
				}
			}
			if len(hs) != 1 {
				t.Fatalf("calls of the handshake in addTLS: %v, want one", hs)
			}
			none, err := b.CallSites(read)
			if err != nil || len(none) != 0 {
				t.Errorf("calls of nothing: %v, %v", none, err)
			}
		})
	}
}

func mustFunc(t *testing.T, b *GoBinary, name string) Func {
	t.Helper()
	f, err := b.Func(name)
	if err != nil {
		t.Fatalf("Func(%s): %v", name, err)
	}
	return f
}

// checkCallAt checks that the instruction at file offset off (in f) is a
// direct call of target.
func checkCallAt(t *testing.T, b *GoBinary, f Func, off, target uint64) {
	t.Helper()
	data, err := os.ReadFile(b.Path)
	if err != nil {
		t.Fatal(err)
	}
	pc := f.Addr + off - f.Start
	switch b.Arch {
	case "amd64":
		if data[off] != 0xe8 {
			t.Fatalf("%#x: % x, not CALL rel32", pc, data[off:off+5])
		}
		rel := int32(binary.LittleEndian.Uint32(data[off+1:]))
		if got := uint64(int64(pc) + 5 + int64(rel)); got != target {
			t.Errorf("%#x: calls %#x, want %#x", pc, got, target)
		}
	case "arm64":
		w := binary.LittleEndian.Uint32(data[off:])
		if w>>26 != 0x25 {
			t.Fatalf("%#x: %#08x, not BL", pc, w)
		}
		imm := int64(int32(w<<6)>>6) * 4
		if got := uint64(int64(pc) + imm); got != target {
			t.Errorf("%#x: calls %#x, want %#x", pc, got, target)
		}
	}
}
