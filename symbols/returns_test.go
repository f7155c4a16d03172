package symbols

import (
	"bufio"
	"bytes"
	"debug/elf"
	"encoding/hex"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func hexCode(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestReturnsAMD64(t *testing.T) {
	tests := []struct {
		name   string
		code   string
		starts []uint64 // instruction starts the line table knows
		want   []uint64
	}{
		{"ret", "c3", nil, []uint64{0}},
		{"nop, ret", "90 c3", nil, []uint64{1}},
		{"ret imm16", "c2 08 00", nil, []uint64{0}},
		{"two returns", "85 c0 74 01 c3 31 c0 c3", nil, []uint64{4, 7}},
		{"c3 in an immediate", "b8 c3 00 00 00 c3", nil, []uint64{5}},
		{"c3 in a displacement", "48 8b 83 c3 00 00 00 c3", nil, []uint64{7}},
		{"int3 padding", "c3 cc cc cc", nil, []uint64{0}},
		// The disassembler does not know ADOX (f3 4c 0f 38 f6 c3, from
		// crypto/internal/fips140/bigmod): the c3 inside it must not count.
		{"undecodable, then resync", "f3 4c 0f 38 f6 c3 c3", []uint64{6}, []uint64{6}},
		{"undecodable, no resync point", "f3 4c 0f 38 f6 c3 c3", nil, nil},
		{"ret before undecodable", "c3 f3 4c 0f 38 f6 c3 90 c3", []uint64{8}, []uint64{0, 8}},
		{"truncated at the end", "c3 b8 c3", nil, []uint64{0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resync := func(i uint64) (uint64, bool) {
				for _, s := range tt.starts {
					if s > i {
						return s, true
					}
				}
				return 0, false
			}
			got := returnsAMD64(hexCode(t, tt.code), resync)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("returnsAMD64(% s) = %v, want %v", tt.code, got, tt.want)
			}
		})
	}
}

func TestReturnsARM64(t *testing.T) {
	const (
		ret    = "c0 03 5f d6" // RET (X30)
		retX1  = "20 00 5f d6" // RET X1
		nop    = "1f 20 03 d5"
		udf    = "00 00 00 00" // padding between functions
		movRet = "e0 03 1f aa"
	)
	tests := []struct {
		name string
		code string
		want []uint64
	}{
		{"ret", ret, []uint64{0}},
		{"nop, ret", nop + ret, []uint64{4}},
		{"ret x1", retX1, []uint64{0}},
		{"padding skipped", ret + udf + udf + nop + ret, []uint64{0, 16}},
		{"mov, ret", movRet + ret, []uint64{4}},
		{"trailing bytes ignored", ret + "c0 03", []uint64{0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := returnsARM64(hexCode(t, tt.code)); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("returnsARM64(%s) = %v, want %v", tt.code, got, tt.want)
			}
		})
	}
}

// TestReturnsMatchObjdump checks Returns on every function of a real
// binary against GNU objdump, which knows the AVX and ADX instructions of
// Go's assembly that x86asm does not: every reported RET is one objdump
// sees, and a function that decodes fully has all of objdump's RETs.
func TestReturnsMatchObjdump(t *testing.T) {
	objdump, err := exec.LookPath("objdump")
	if err != nil {
		t.Fatalf("GNU objdump (binutils) is needed for this test: %v", err)
	}
	tests := []struct {
		toolchain string
		variant   buildVariant
	}{
		{"local", withSymbols},
		// GOAMD64=v3: compiled Go code uses VEX-encoded BMI instructions.
		{"local", buildVariant{name: "v3", arch: "amd64", env: []string{"GOAMD64=v3"}}},
		{"go1.18.10", withSymbols},
	}
	for _, tt := range tests {
		t.Run(tt.toolchain+"-"+tt.variant.name, func(t *testing.T) {
			b := openGo(t, goBuild(t, tt.toolchain, tt.variant))
			checkReturnsMatchObjdump(t, objdump, b)
		})
	}
}

func checkReturnsMatchObjdump(t *testing.T, objdump string, b *GoBinary) {
	out, err := exec.Command(objdump, "-d", "--no-show-raw-insn", "-j", ".text", b.Path).Output()
	if err != nil {
		t.Fatalf("objdump: %v", err)
	}
	rets := map[uint64]bool{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		// "  4578c4:\tret" or "  4578c4:\tret    $0x8"
		addr, inst, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":\t")
		if !ok || !strings.HasPrefix(inst, "ret") {
			continue
		}
		a, err := strconv.ParseUint(addr, 16, 64)
		if err == nil {
			rets[a] = true
		}
	}
	funcs, err := b.symbolFuncs()
	if err != nil {
		t.Fatal(err)
	}
	text := b.elf.Section(".text")
	total, partial := 0, 0
	for _, f := range funcs {
		if f.Size == 0 || f.Addr < text.Addr || f.Addr >= text.Addr+text.Size {
			continue
		}
		f, err := b.finishFunc(f)
		if err != nil {
			t.Fatal(err)
		}
		got, err := b.Returns(f)
		if err != nil {
			t.Fatalf("Returns(%s): %v", f.Name, err)
		}
		want := 0
		for a := f.Addr; a < f.Addr+f.Size; a++ {
			if rets[a] {
				want++
			}
		}
		for _, off := range got {
			if a := off - f.Start + f.Addr; !rets[a] {
				t.Errorf("%s: RET reported at %#x, objdump has none there", f.Name, a)
			}
		}
		total++
		if len(got) != want {
			if decodesFully(t, b, f) {
				t.Errorf("%s: %d RETs, objdump sees %d", f.Name, len(got), want)
			}
			partial++
		}
	}
	t.Logf("%d functions checked; %d with instructions x86asm does not know miss some RETs", total, partial)
	if total < 1000 {
		t.Errorf("only %d functions checked", total)
	}
}

func decodesFully(t *testing.T, b *GoBinary, f Func) bool {
	code, err := b.readAt(f.Addr, f.Size)
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	returnsAMD64(code, func(uint64) (uint64, bool) { stopped = true; return 0, false })
	return !stopped
}

// TestArm64 checks Func and Returns on the program cross-compiled for
// arm64, with symbols and stripped: each RET found is a RET word.
func TestArm64(t *testing.T) {
	full := openGo(t, goBuild(t, "local", buildVariant{name: "arm64", arch: "arm64"}))
	strip := openGo(t, goBuild(t, "local", buildVariant{name: "arm64-stripped", arch: "arm64", flags: []string{"-ldflags=-s -w"}}))
	for _, b := range []*GoBinary{full, strip} {
		if b.Arch != "arm64" || b.elf.Machine != elf.EM_AARCH64 {
			t.Fatalf("%s: Arch %q", b.Path, b.Arch)
		}
	}
	checkPclntabMatchesSymbols(t, full)
	for _, name := range collectorFuncs {
		f, err := full.Func(name)
		if err != nil {
			t.Fatalf("Func(%s): %v", name, err)
		}
		s, err := strip.Func(name)
		if err != nil {
			t.Fatalf("Func(%s) stripped: %v", name, err)
		}
		if f.Addr != s.Addr || f.Start != s.Start {
			t.Errorf("%s: %#x/%#x with symbols, %#x/%#x stripped", name, f.Addr, f.Start, s.Addr, s.Start)
		}
		checkEntryProbe(t, full, f)
		checkEntryProbe(t, strip, s)
		rf, err := full.Returns(f)
		if err != nil {
			t.Fatal(err)
		}
		rs, err := strip.Returns(s)
		if err != nil {
			t.Fatal(err)
		}
		if len(rf) != len(rs) || name != "runtime.goexit1" && len(rf) == 0 {
			t.Errorf("%s: %d RETs with symbols, %d stripped", name, len(rf), len(rs))
		}
		ret := []byte{0xc0, 0x03, 0x5f, 0xd6} // RET (X30)
		checkBytesAt(t, full.Path, rf, ret)
		checkBytesAt(t, strip.Path, rs, ret)
	}
	o, err := strip.Offsets()
	if err != nil {
		t.Fatal(err)
	}
	if d, err := full.OffsetsDWARF(); err != nil || d != o {
		t.Errorf("arm64: DWARF offsets %v differ from the table's:\n%s", err, offsetsDiff(d, o))
	}
}
