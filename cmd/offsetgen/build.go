package main

import (
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/periscope-apm/periscope/symbols"
)

// result is what one toolchain gave.
type result struct {
	toolchain string
	version   symbols.GoVersion
	offsets   symbols.Offsets // identical on every architecture
}

// measure builds symbols.NetHTTPProgram with toolchain for each
// architecture and reads the offsets from each binary's DWARF.
func measure(work, toolchain string, arches []string) (result, error) {
	want, err := symbols.ParseGoVersion(toolchain)
	if err != nil {
		return result{}, fmt.Errorf("toolchain %s: %w", toolchain, err)
	}
	r := result{toolchain: toolchain, version: want}
	for i, arch := range arches {
		start := time.Now()
		bin, err := build(work, toolchain, arch)
		if err != nil {
			return result{}, err
		}
		o, err := readOffsets(bin, want)
		if err != nil {
			return result{}, err
		}
		log.Printf("%s/%s: built and read in %s", toolchain, arch, time.Since(start).Round(100*time.Millisecond))
		if i == 0 {
			r.offsets = o
			continue
		}
		if o != r.offsets {
			return result{}, fmt.Errorf("%s: offsets differ between %s and %s:\n%s", toolchain, arches[0], arch, diff(r.offsets, o))
		}
	}
	return r, nil
}

func readOffsets(bin string, want symbols.GoVersion) (symbols.Offsets, error) {
	b, err := symbols.GoInfo(bin)
	if err != nil {
		return symbols.Offsets{}, err
	}
	defer b.Close()
	if b.Version != want {
		return symbols.Offsets{}, fmt.Errorf("%s was built by %s, not %s: is GOTOOLCHAIN overridden?", bin, b.GoVersionRaw, want)
	}
	return b.OffsetsDWARF()
}

// build compiles the program with toolchain for linux/arch and returns the
// binary's path.
func build(work, toolchain, arch string) (string, error) {
	dir := filepath.Join(work, toolchain+"-"+arch)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("make build directory: %w", err)
	}
	// The module path has a dot on purpose: with a path like "offsetprobe",
	// go1.19.x fails with `import "": import of unknown directory` and
	// go1.20 with "ambiguous import" against GOROOT/src.
	files := map[string]string{
		"go.mod":  "module periscope.example/offsetprobe\n\ngo 1.18\n",
		"main.go": symbols.NetHTTPProgram,
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return "", fmt.Errorf("write %s: %w", name, err)
		}
	}
	bin := filepath.Join(dir, "prog")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = dir
	cmd.Env = buildEnv(toolchain, arch)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("build with %s for %s: %w\n%s", toolchain, arch, err, out)
	}
	return bin, nil
}

// buildEnv is the environment for `go build` with toolchain. GOTOOLCHAIN
// makes the local go command fetch and run that release. -buildvcs exists
// since Go 1.18, the oldest release built here.
func buildEnv(toolchain, arch string) []string {
	env := []string{
		"GOTOOLCHAIN=" + toolchain,
		"GOOS=linux",
		"GOARCH=" + arch,
		"CGO_ENABLED=0",
		"GOFLAGS=-buildvcs=false",
		"GOWORK=off",
	}
	var keep []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "GOTOOLCHAIN", "GOOS", "GOARCH", "CGO_ENABLED", "GOFLAGS", "GOWORK", "GOROOT":
			continue
		}
		keep = append(keep, kv)
	}
	return append(keep, env...)
}
