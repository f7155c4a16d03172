package symbols

import (
	"fmt"
	"strconv"
	"strings"
)

// GoVersion is a Go release: 1.22.12 is {1, 22, 12}. Pre-releases
// (go1.26rc1) and development builds (devel go1.27-abcdef) have Patch 0.
type GoVersion struct {
	Major, Minor, Patch int
}

// ParseGoVersion reads the version a Go binary records, as debug/buildinfo
// reports it: "go1.22.12", "go1.20", "go1.26rc1", "devel go1.27-3a6b9c1 Tue…",
// "go1.24.0 X:boringcrypto".
func ParseGoVersion(s string) (GoVersion, error) {
	v := strings.TrimSpace(s)
	v = strings.TrimPrefix(v, "devel ")
	if !strings.HasPrefix(v, "go") {
		return GoVersion{}, fmt.Errorf("parse Go version %q: no go prefix", s)
	}
	v = v[2:]
	// Keep the leading run of digits and dots: drops "rc1", "-abcdef", " X:…".
	end := 0
	for end < len(v) && (v[end] == '.' || v[end] >= '0' && v[end] <= '9') {
		end++
	}
	parts := strings.Split(strings.TrimSuffix(v[:end], "."), ".")
	if len(parts) < 2 || len(parts) > 3 {
		return GoVersion{}, fmt.Errorf("parse Go version %q: want go<major>.<minor>[.<patch>]", s)
	}
	var n [3]int
	for i, p := range parts {
		x, err := strconv.Atoi(p)
		if err != nil {
			return GoVersion{}, fmt.Errorf("parse Go version %q: %w", s, err)
		}
		n[i] = x
	}
	return GoVersion{Major: n[0], Minor: n[1], Patch: n[2]}, nil
}

// String is the release's name as the toolchain spells it: go1.22.12.
func (v GoVersion) String() string {
	return fmt.Sprintf("go%d.%d.%d", v.Major, v.Minor, v.Patch)
}

// MinorString is the minor release: 1.22.
func (v GoVersion) MinorString() string {
	return fmt.Sprintf("%d.%d", v.Major, v.Minor)
}

// Less orders releases.
func (v GoVersion) Less(w GoVersion) bool {
	if v.Major != w.Major {
		return v.Major < w.Major
	}
	if v.Minor != w.Minor {
		return v.Minor < w.Minor
	}
	return v.Patch < w.Patch
}
