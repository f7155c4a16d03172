package gotls

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/periscope-apm/periscope/symbols"
)

// build compiles the Go program src with the local toolchain.
func build(t *testing.T, src string, flags ...string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range map[string]string{"go.mod": "module periscope.example/gotls\n\ngo 1.18\n", "main.go": src} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "prog")
	cmd := exec.Command("go", append(append([]string{"build", "-o", bin}, flags...), ".")...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false", "GOTOOLCHAIN=local")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func progs(sites []site) []string {
	var p []string
	for _, s := range sites {
		p = append(p, s.Prog)
	}
	slices.Sort(p)
	return p
}

// TestInspect: a Go program with crypto/tls and net/http gets the three
// TLS probes, plus the two that mark net/http's connections when they are
// left to gohttp; with symbols and stripped alike. A Go program without
// crypto/tls and a file that is not Go are not probed, for reasons the
// cache keeps.
func TestInspect(t *testing.T) {
	tlsAndHTTP := build(t, symbols.NetHTTPProgram)
	strippedBin := build(t, symbols.NetHTTPProgram, "-ldflags=-s -w")
	for _, bin := range []string{tlsAndHTTP, strippedBin} {
		pl := inspect(bin, true)
		if pl.err != nil {
			t.Fatalf("%s: %v", bin, pl.err)
		}
		want := []string{progNetHTTP, progServe, progRead, progReadCopy, progWrite}
		if got := progs(pl.sites); !slices.Equal(got, want) {
			t.Errorf("%s: probes %v, want %v", bin, got, want)
		}
		if pl.offsets.TLSConnConn == symbols.Absent || pl.offsets.ConnRWC == symbols.Absent {
			t.Errorf("%s: offsets %+v", bin, pl.offsets)
		}
		alone := inspect(bin, false)
		if got, want := progs(alone.sites), []string{progRead, progReadCopy, progWrite}; alone.err != nil || !slices.Equal(got, want) {
			t.Errorf("%s without gohttp: probes %v (%v), want %v", bin, got, alone.err, want)
		}
	}

	noTLS := build(t, "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hi\") }\n")
	pl := inspect(noTLS, true)
	if !errors.Is(pl.err, errNoTLS) {
		t.Errorf("program without crypto/tls: %v, want errNoTLS", pl.err)
	}
	if a, ok := cacheable(pl); !ok || a.Skip != "no_tls" || !errors.Is(a.plan().err, errNoTLS) {
		t.Errorf("cached as %+v, %v", a, ok)
	}
	notGo := inspect("/bin/sh", true)
	if !errors.Is(notGo.err, symbols.ErrNotGo) {
		t.Errorf("/bin/sh: %v, want ErrNotGo", notGo.err)
	}
}
