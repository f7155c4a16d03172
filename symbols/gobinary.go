package symbols

import (
	"debug/buildinfo"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"sync"
)

// ErrNotGo is returned (wrapped) by GoInfo for a file that is not a Go
// executable: a C program, a shared library, a script, random bytes.
var ErrNotGo = errors.New("not a Go executable")

// GoBinary describes a Go executable and answers the questions the Go
// collector asks about it: where functions are (Func), where they return
// (Returns), and where struct fields lie (Offsets). It keeps the file open
// until Close. Its methods are safe for concurrent use.
type GoBinary struct {
	Path string
	// Version is the Go toolchain that built the binary; GoVersionRaw is
	// its exact spelling in the binary ("go1.22.12", "devel go1.27-…").
	Version      GoVersion
	GoVersionRaw string
	// Build is the build information the binary carries: main module
	// (Build.Main.Path, .Version), dependencies (Build.Deps), settings.
	Build *debug.BuildInfo
	// Arch is the GOARCH of the code: "amd64", "arm64", or for other
	// machines the ELF machine name (Func works there, Returns does not).
	Arch string
	// HasDWARF tells whether the binary has debug information (not built
	// with -ldflags=-w); Offsets reads field offsets from it when it does.
	HasDWARF bool
	// Stripped tells whether the binary has no symbol table (-ldflags=-s);
	// functions are then found through .gopclntab.
	Stripped bool

	file *os.File
	elf  *elf.File

	symMu    sync.Mutex
	symFound map[string][]Func // normalized name → matching symbols, once scanned

	pclnOnce sync.Once
	pcln     *pclnFuncs
	pclnErr  error

	rawOnce   sync.Once
	raw       *pclnTable
	rawErr    error
	pclnFound map[string][]Func // normalized name → pclntab functions, once walked

	relOnce sync.Once
	rels    map[uint64]uint64 // address → addend of R_*_RELATIVE relocations
	relErr  error
}

// GoInfo opens the executable at path and reads what it is. It returns an
// error wrapping ErrNotGo for any file that is not a Go ELF executable, and
// other errors when the file cannot be read. The caller must Close the result.
func GoInfo(path string) (*GoBinary, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	b, err := newGoBinary(path, f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return b, nil
}

func newGoBinary(path string, f *os.File) (*GoBinary, error) {
	ef, err := elf.NewFile(f)
	if err != nil {
		var fe *elf.FormatError
		if errors.As(err, &fe) {
			return nil, fmt.Errorf("%s is not an ELF file (%w): %w", path, err, ErrNotGo)
		}
		return nil, fmt.Errorf("read ELF header of %s: %w (%w)", path, err, ErrMalformed)
	}
	bi, err := buildinfo.Read(f)
	if err != nil {
		// On a readable ELF file, debug/buildinfo fails only when the
		// file carries no Go build information.
		return nil, fmt.Errorf("%s has no Go build information (%v): %w", path, err, ErrNotGo)
	}
	v, err := ParseGoVersion(bi.GoVersion)
	if err != nil {
		return nil, fmt.Errorf("Go version of %s: %w", path, err)
	}
	return &GoBinary{
		Path:         path,
		Version:      v,
		GoVersionRaw: bi.GoVersion,
		Build:        bi,
		Arch:         goArch(ef.Machine),
		HasDWARF:     ef.Section(".debug_info") != nil || ef.Section(".zdebug_info") != nil,
		Stripped:     ef.SectionByType(elf.SHT_SYMTAB) == nil,
		file:         f,
		elf:          ef,
	}, nil
}

// Close releases the file.
func (b *GoBinary) Close() error {
	if err := b.file.Close(); err != nil {
		return fmt.Errorf("close %s: %w", b.Path, err)
	}
	return nil
}

// Dependency returns the module the binary uses for module path (its
// replacement, if replaced), and whether the binary depends on it at all.
func (b *GoBinary) Dependency(path string) (debug.Module, bool) {
	for _, m := range b.Build.Deps {
		if m.Path != path {
			continue
		}
		if m.Replace != nil {
			return *m.Replace, true
		}
		return *m, true
	}
	return debug.Module{}, false
}

func goArch(m elf.Machine) string {
	switch m {
	case elf.EM_X86_64:
		return "amd64"
	case elf.EM_AARCH64:
		return "arm64"
	}
	return m.String()
}
