package symbols

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Toolchains the Go tests build with: the local one and old releases
// fetched by the go command through the module proxy into the module cache
// (once; later runs reuse them). A build that cannot get its toolchain
// fails the test: a Go version that is claimed to be supported is tested.
var testToolchains = []string{"local", "go1.18.10", "go1.20.14", "go1.22.12", "go1.24.13", "go1.26.11", "go1.27.4"}

// buildVariant is one way of building NetHTTPProgram.
type buildVariant struct {
	name  string
	arch  string
	flags []string
	cgo   bool
	env   []string // more variables, such as GOAMD64=v3
	src   string   // the program; NetHTTPProgram if empty
}

var (
	withSymbols = buildVariant{name: "symbols", arch: "amd64"}
	stripped    = buildVariant{name: "stripped", arch: "amd64", flags: []string{"-ldflags=-s -w"}}
)

// builds caches the binaries of one test run: each (toolchain, variant) is
// built once, whichever test asks first.
type builds struct {
	mu   sync.Mutex
	dir  string
	done map[string]string
}

var testBuilds = &builds{done: map[string]string{}}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "symbols-test-")
	if err != nil {
		panic(err)
	}
	testBuilds.dir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// goBuild builds NetHTTPProgram with toolchain ("local" or "go1.X.Y") as
// variant and returns the binary's path.
func goBuild(t *testing.T, toolchain string, v buildVariant) string {
	t.Helper()
	key := toolchain + "-" + v.name
	testBuilds.mu.Lock()
	defer testBuilds.mu.Unlock()
	if bin, ok := testBuilds.done[key]; ok {
		return bin
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build test programs: %v", err)
	}
	dir := filepath.Join(testBuilds.dir, key)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// A module path without a dot breaks go1.19 and go1.20 builds.
	src := v.src
	if src == "" {
		src = NetHTTPProgram
	}
	for name, content := range map[string]string{"go.mod": "module periscope.example/probetarget\n\ngo 1.18\n", "main.go": src} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "prog")
	cmd := exec.Command(goCmd, append(append([]string{"build", "-o", bin}, v.flags...), ".")...)
	cmd.Dir = dir
	cmd.Env = goBuildEnv(toolchain, v)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build with %s (%s): %v\n%s", toolchain, v.name, err, out)
	}
	testBuilds.done[key] = bin
	return bin
}

func goBuildEnv(toolchain string, v buildVariant) []string {
	cgo := "0"
	if v.cgo {
		cgo = "1"
	}
	set := map[string]string{
		"GOTOOLCHAIN": toolchain,
		"GOOS":        "linux",
		"GOARCH":      v.arch,
		"CGO_ENABLED": cgo,
		"GOFLAGS":     "-buildvcs=false",
		"GOWORK":      "off",
	}
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if _, ok := set[name]; ok || name == "GOROOT" {
			continue
		}
		env = append(env, kv)
	}
	for k, v := range set {
		env = append(env, k+"="+v)
	}
	return append(env, v.env...)
}

// localGoVersion is the version of the go command on PATH.
func localGoVersion(t *testing.T) GoVersion {
	t.Helper()
	out, err := exec.Command("go", "env", "GOVERSION").Output()
	if err != nil {
		t.Fatalf("go env GOVERSION: %v", err)
	}
	v, err := ParseGoVersion(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func openGo(t *testing.T, path string) *GoBinary {
	t.Helper()
	b, err := GoInfo(path)
	if err != nil {
		t.Fatalf("GoInfo(%s): %v", path, err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}
