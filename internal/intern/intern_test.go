package intern

import (
	"strings"
	"testing"
	"unsafe"
)

func TestBytes(t *testing.T) {
	tab := New(2, 8)
	a := tab.Bytes([]byte("/users"))
	b := tab.Bytes([]byte("/users"))
	if a != "/users" || unsafe.StringData(a) != unsafe.StringData(b) {
		t.Fatalf("the same bytes gave two copies: %q %q", a, b)
	}
	if got := testing.AllocsPerRun(100, func() { tab.Bytes([]byte("/users")) }); got != 0 {
		t.Errorf("a kept string costs %v allocations, want 0", got)
	}
	if tab.Bytes(nil) != "" {
		t.Error("empty bytes should give the empty string")
	}

	long := strings.Repeat("x", 9)
	if got := tab.Bytes([]byte(long)); got != long {
		t.Errorf("long string = %q", got)
	}
	if _, kept := tab.strings[long]; kept {
		t.Error("a string over maxLen was kept")
	}

	// Past max the table starts over: it never holds more than max.
	for _, s := range []string{"/a", "/b", "/c", "/d"} {
		if got := tab.Bytes([]byte(s)); got != s {
			t.Errorf("Bytes(%q) = %q", s, got)
		}
		if len(tab.strings) > 2 {
			t.Fatalf("table holds %d strings, max 2", len(tab.strings))
		}
	}
}

// The returned string must not alias the caller's bytes, which the ring
// reuses.
func TestBytesCopies(t *testing.T) {
	tab := New(4, 64)
	b := []byte("/orders")
	s := tab.Bytes(b)
	copy(b, "XXXXXXX")
	if s != "/orders" || tab.Bytes([]byte("/orders")) != "/orders" {
		t.Fatalf("string changed with its source bytes: %q", s)
	}
}
