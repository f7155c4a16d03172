package symbols

import (
	"fmt"
	"sort"
	"strings"
)

// OffsetsEntry is one row of the embedded offsets table: the offsets of
// Go releases from From up to (not including) the next row's From, or up
// to the end of From's minor release.
type OffsetsEntry struct {
	From GoVersion
	// Toolchains are the releases whose DWARF the row was read from, on
	// every architecture in Arches (the offsets agreed on all of them).
	Toolchains []string
	Arches     []string
	Offsets    Offsets
}

// OffsetsTable returns the table embedded in Periscope
// (offsets_table.go, written by cmd/offsetgen), sorted by From.
func OffsetsTable() []OffsetsEntry {
	t := offsetsTable()
	sort.Slice(t, func(i, j int) bool { return t[i].From.Less(t[j].From) })
	return t
}

// SupportedGoVersions lists the minor releases the table covers: "1.18", …
func SupportedGoVersions() []string {
	var out []string
	for _, e := range OffsetsTable() {
		m := e.From.MinorString()
		if len(out) == 0 || out[len(out)-1] != m {
			out = append(out, m)
		}
	}
	return out
}

// TableOffsets returns the offsets the embedded table holds for Go release
// v: the last row of v's minor release whose From is not after v. Releases
// of a minor release the table does not cover get an error wrapping
// ErrNoOffsets: struct layouts change between minor releases, so offsets
// are never guessed.
func TableOffsets(v GoVersion) (Offsets, error) {
	var found *OffsetsEntry
	t := OffsetsTable()
	for i := range t {
		e := &t[i]
		if e.From.Major == v.Major && e.From.Minor == v.Minor && !v.Less(e.From) {
			found = e
		}
	}
	if found == nil {
		return Offsets{}, fmt.Errorf("%s (the table covers Go %s; rebuild the program without -w to keep DWARF): %w",
			v, strings.Join(SupportedGoVersions(), ", "), ErrNoOffsets)
	}
	return found.Offsets, nil
}
