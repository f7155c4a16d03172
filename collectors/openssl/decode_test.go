package openssl

import (
	"testing"
	"unsafe"

	"github.com/periscope-apm/periscope/internal/wire"
)

// The generated mirror of struct tuple must be what internal/wire decodes.
func TestTupleLayout(t *testing.T) {
	if got := unsafe.Sizeof(opensslBindEvent{}.Tuple); got != wire.TupleSize {
		t.Fatalf("sizeof(struct tuple) = %d, internal/wire decodes %d", got, wire.TupleSize)
	}
}
