package symbols

import (
	"encoding/binary"
	"testing"
)

func TestStackCheckBranchAMD64(t *testing.T) {
	tests := []struct {
		name string
		code string
		want uint64
	}{
		{"small frame", "49 3b 66 10 0f 86 8c 00 00 00 55", 4},
		{"small frame, short jump", "49 3b 66 10 76 20 55", 4},
		{"large frame via R12", "4c 8d a4 24 28 fc ff ff 4d 3b 66 10 0f 86 4d 16 00 00", 12},
		{"no stack check", "55 48 89 e5 c3", 0},
		{"argument register written first", "48 89 c3 49 3b 66 10 76 20", 0},
		{"unconditional jump", "eb 10", 0},
		{"vex first", "c5 f8 77 49 3b 66 10 76 20", 0},
	}
	for _, tt := range tests {
		if got := stackCheckBranchAMD64(hexCode(t, tt.code)); got != tt.want {
			t.Errorf("%s: stackCheckBranchAMD64 = %d, want %d", tt.name, got, tt.want)
		}
	}
}

func TestStackCheckBranchARM64(t *testing.T) {
	tests := []struct {
		name string
		code string
		want uint64
	}{
		{"small frame", "90 0b 40 f9 ff 63 30 eb 49 05 00 54 fe 0f 1e f8", 8},
		{"large frame via X17", "90 0b 40 f9 f1 83 0f d1 3f 02 10 eb c9 93 00 54", 12},
		{"no stack check", "fe 0f 1e f8 c0 03 5f d6", 0},
		{"argument register written first", "e0 03 1f aa 90 0b 40 f9 ff 63 30 eb 49 05 00 54", 0},
	}
	for _, tt := range tests {
		if got := stackCheckBranchARM64(hexCode(t, tt.code)); got != tt.want {
			t.Errorf("%s: stackCheckBranchARM64 = %d, want %d", tt.name, got, tt.want)
		}
	}
}

// checkEntryProbe: the collector's functions all check their stack bound,
// so the cheap entry probe is the conditional branch a few bytes in.
func checkEntryProbe(t *testing.T, b *GoBinary, f Func) {
	t.Helper()
	p, err := b.EntryProbe(f)
	if err != nil {
		t.Errorf("EntryProbe(%s): %v", f.Name, err)
		return
	}
	if p == f.Start || p > f.Start+16 {
		t.Errorf("%s: entry probe at +%d, want the stack check's branch", f.Name, p-f.Start)
		return
	}
	code := make([]byte, 4)
	if _, err := b.file.ReadAt(code, int64(p)); err != nil {
		t.Fatal(err)
	}
	switch b.Arch {
	case "amd64":
		// Jcc rel8 (70–7f) or Jcc rel32 (0f 80–8f).
		if !(code[0] >= 0x70 && code[0] <= 0x7f || code[0] == 0x0f && code[1]&0xf0 == 0x80) {
			t.Errorf("%s: % x at the entry probe, want a conditional jump", f.Name, code)
		}
	case "arm64":
		if w := binary.LittleEndian.Uint32(code); w&0xff000010 != 0x54000000 {
			t.Errorf("%s: %#08x at the entry probe, want B.cond", f.Name, w)
		}
	}
}
