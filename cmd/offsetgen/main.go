// Command offsetgen writes symbols/offsets_table.go: the struct field
// offsets the Go collector needs, for each supported Go release, read from
// the DWARF of a program (symbols.NetHTTPProgram) built with that release's
// toolchain for amd64 and arm64. `make offsets` runs it.
//
// Toolchains are fetched by the go command (GOTOOLCHAIN=go1.X.Y) through the
// module proxy into the module cache, once. Each minor release is built at
// its first and last available patch, so that a field that moved within a
// minor release shows up as a second row; the first row of a minor release
// applies from its .0 release.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"strings"
)

// defaultToolchains: the first and the last patch release of every minor
// release from Go 1.18 on that the module proxy serves (go1.19 and go1.19.1
// are not there; go1.19.2 is the first 1.19 it has), and around a layout
// change within a minor release, the releases on both sides of it:
// net/http.response changed in go1.26.11 (reqBody became *body, ecReader
// was added), so go1.26.10 is built too.
const defaultToolchains = "go1.18,go1.18.10,go1.19.2,go1.19.13,go1.20,go1.20.14,go1.21.0,go1.21.13," +
	"go1.22.0,go1.22.12,go1.23.0,go1.23.12,go1.24.0,go1.24.13,go1.25.0,go1.25.14," +
	"go1.26.0,go1.26.10,go1.26.11,go1.27.0,go1.27.4"

func main() {
	out := flag.String("out", "symbols/offsets_table.go", "file to write")
	toolchains := flag.String("toolchains", defaultToolchains, "comma-separated Go releases to build with")
	arches := flag.String("arches", "amd64,arm64", "comma-separated GOARCH values; offsets must agree on all")
	work := flag.String("work", "", "directory for the builds (default: a temporary one, removed at the end)")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("offsetgen: ")
	if err := run(*out, split(*toolchains), split(*arches), *work); err != nil {
		log.Fatal(err)
	}
}

func split(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func run(out string, toolchains, arches []string, work string) error {
	if len(toolchains) == 0 || len(arches) == 0 {
		return fmt.Errorf("need at least one toolchain and one architecture")
	}
	if work == "" {
		dir, err := os.MkdirTemp("", "offsetgen-")
		if err != nil {
			return fmt.Errorf("make work directory: %w", err)
		}
		defer os.RemoveAll(dir)
		work = dir
	}
	var results []result
	for _, tc := range toolchains {
		r, err := measure(work, tc, arches)
		if err != nil {
			return err
		}
		results = append(results, r)
	}
	entries, warnings := makeTable(results, arches)
	for _, w := range warnings {
		log.Print("warning: ", w)
	}
	src, err := render(entries)
	if err != nil {
		return err
	}
	if err := os.WriteFile(out, src, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	log.Printf("wrote %s: %d rows for Go %s", out, len(entries), minors(entries))
	return nil
}
