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
// left to gohttp; with symbols and stripped alike. One whose only TLS
// connections are net/http's gets none when gohttp takes them, the three
// TLS probes when not. A Go program without
// crypto/tls and a file that is not Go are not probed, for reasons the
// cache keeps.
func TestInspect(t *testing.T) {
	tlsAndHTTP := build(t, symbols.NetHTTPProgram)
	strippedBin := build(t, symbols.NetHTTPProgram, "-ldflags=-s -w")
	for _, bin := range []string{tlsAndHTTP, strippedBin} {
		pl := inspect(bin, true)
		if pl.Err != nil {
			t.Fatalf("%s: %v", bin, pl.Err)
		}
		want := []string{progNetHTTP, progServe, progRead, progReadCopy, progWrite}
		if got := progs(pl.sites); !slices.Equal(got, want) {
			t.Errorf("%s: probes %v, want %v", bin, got, want)
		}
		if pl.offsets.TLSConnConn == symbols.Absent || pl.offsets.ConnRWC == symbols.Absent {
			t.Errorf("%s: offsets %+v", bin, pl.offsets)
		}
		alone := inspect(bin, false)
		if got, want := progs(alone.sites), []string{progRead, progReadCopy, progWrite}; alone.Err != nil || !slices.Equal(got, want) {
			t.Errorf("%s without gohttp: probes %v (%v), want %v", bin, got, alone.Err, want)
		}
	}

	// net/http makes the only TLS connections: left to gohttp whole,
	// probed when gohttp is not.
	onlyHTTP := build(t, "package main\n\nimport \"net/http\"\n\nfunc main() {\n\thttp.Get(\"https://127.0.0.1:1\")\n\thttp.ListenAndServeTLS(\":0\", \"c\", \"k\", nil)\n}\n")
	if pl := inspect(onlyHTTP, true); !errors.Is(pl.Err, errNetHTTPOnly) {
		t.Errorf("net/http alone: %v, want errNetHTTPOnly", pl.Err)
	} else if a, ok := cacheable(pl); !ok || a.Skip != "nethttp_only" || !errors.Is(a.plan().Err, errNetHTTPOnly) {
		t.Errorf("net/http alone cached as %+v, %v", a, ok)
	}
	if pl := inspect(onlyHTTP, false); pl.Err != nil || len(pl.sites) != 3 {
		t.Errorf("net/http alone without gohttp: %v, probes %v; want the three TLS probes", pl.Err, progs(pl.sites))
	}

	noTLS := build(t, "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hi\") }\n")
	pl := inspect(noTLS, true)
	if !errors.Is(pl.Err, errNoTLS) {
		t.Errorf("program without crypto/tls: %v, want errNoTLS", pl.Err)
	}
	if a, ok := cacheable(pl); !ok || a.Skip != "no_tls" || !errors.Is(a.plan().Err, errNoTLS) {
		t.Errorf("cached as %+v, %v", a, ok)
	}
	notGo := inspect("/bin/sh", true)
	if !errors.Is(notGo.Err, symbols.ErrNotGo) {
		t.Errorf("/bin/sh: %v, want ErrNotGo", notGo.Err)
	}
}
