package symbols

import (
	"errors"
	"runtime/debug"
	"testing"
)

// TestOffsetsTable checks the generated table: every minor release from Go
// 1.18 to the newest, each with every required field.
func TestOffsetsTable(t *testing.T) {
	table := OffsetsTable()
	if len(table) == 0 {
		t.Fatal("the offsets table is empty: run 'make offsets'")
	}
	got := SupportedGoVersions()
	newest := table[len(table)-1].From
	var want []string
	for m := 18; m <= newest.Minor; m++ {
		want = append(want, GoVersion{1, m, 0}.MinorString())
	}
	if len(got) != len(want) {
		t.Fatalf("table covers %v, want every minor release %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("table covers %v, want %v", got, want)
		}
	}
	for _, e := range table {
		if len(e.Toolchains) == 0 || len(e.Arches) < 2 {
			t.Errorf("%v: read from toolchains %v on %v; want at least one, on amd64 and arm64", e.From, e.Toolchains, e.Arches)
		}
		for _, f := range OffsetFields() {
			v := e.Offsets.Get(f.Name)
			if v == Absent && !f.Optional || v < Absent {
				t.Errorf("%v: %s.%s = %d", e.From, f.Struct, f.Field, v)
			}
		}
	}
}

func TestTableOffsets(t *testing.T) {
	row := func(v GoVersion) Offsets {
		var found Offsets
		for _, e := range OffsetsTable() {
			if e.From == v {
				found = e.Offsets
			}
		}
		if found == (Offsets{}) {
			t.Fatalf("no table row from %v", v)
		}
		return found
	}
	go1260, go12611 := row(GoVersion{1, 26, 0}), row(GoVersion{1, 26, 11})
	tests := []struct {
		v    GoVersion
		want Offsets
		err  error
	}{
		{GoVersion{1, 26, 0}, go1260, nil},
		{GoVersion{1, 26, 8}, go1260, nil},
		{GoVersion{1, 26, 10}, go1260, nil},
		{GoVersion{1, 26, 11}, go12611, nil},
		{GoVersion{1, 26, 15}, go12611, nil}, // later patches keep the last layout
		{GoVersion{1, 19, 0}, row(GoVersion{1, 19, 0}), nil},
		{GoVersion{1, 17, 13}, Offsets{}, ErrNoOffsets},
		{GoVersion{1, 99, 0}, Offsets{}, ErrNoOffsets},
		{GoVersion{2, 0, 0}, Offsets{}, ErrNoOffsets},
	}
	for _, tt := range tests {
		got, err := TableOffsets(tt.v)
		if !errors.Is(err, tt.err) || got != tt.want {
			t.Errorf("TableOffsets(%v) = %v; want error %v", tt.v, err, tt.err)
		}
	}
	if go1260.ResponseStatus == go12611.ResponseStatus {
		t.Errorf("response.status: same offset in go1.26.0 and go1.26.11; the table should tell them apart")
	}
}

// TestOffsetsServerOnly: a server that makes no client calls has no
// persistConn in its DWARF. Its DWARF still gives the server's offsets, and
// Offsets fills the rest from the table.
func TestOffsetsServerOnly(t *testing.T) {
	const server = `package main

import "net/http"

func main() {
	http.ListenAndServe("127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
}
`
	b := openGo(t, goBuild(t, "local", buildVariant{name: "server-only", arch: "amd64", src: server}))
	d, err := b.OffsetsDWARF()
	if err != nil {
		t.Fatalf("OffsetsDWARF: %v", err)
	}
	table, err := TableOffsets(b.Version)
	if err != nil {
		t.Fatal(err)
	}
	if d.PersistConnConn != Absent {
		t.Errorf("persistConn.conn = %d from the DWARF of a server-only program; want Absent", d.PersistConnConn)
	}
	if d.ResponseStatus != table.ResponseStatus || d.RequestMethod != table.RequestMethod {
		t.Errorf("server fields from DWARF differ from the table:\n%s", offsetsDiff(d, table))
	}
	o, err := b.Offsets()
	if err != nil || o != table {
		t.Errorf("Offsets = %v, differing from the table:\n%s", err, offsetsDiff(o, table))
	}
}

// TestOffsetFieldsTags: struct names may contain commas (the linker's
// bucket<string,[]string>), and "#size" stands for a struct's size.
func TestOffsetFieldsTags(t *testing.T) {
	want := map[string]OffsetField{
		"RequestMethod":  {Name: "RequestMethod", Struct: "net/http.Request", Field: "Method"},
		"RequestPattern": {Name: "RequestPattern", Struct: "net/http.Request", Field: "Pattern", Optional: true},
		"BucketKeys":     {Name: "BucketKeys", Struct: "bucket<string,[]string>", Field: "keys", Optional: true},
		"BucketSize":     {Name: "BucketSize", Struct: "bucket<string,[]string>", Field: SizeField, Optional: true},
		"SwissGroupSize": {Name: "SwissGroupSize", Struct: "noalg.map.group[string][]string", Field: SizeField, Optional: true},
	}
	for _, f := range OffsetFields() {
		if w, ok := want[f.Name]; ok {
			if f != w {
				t.Errorf("%s: %+v, want %+v", f.Name, f, w)
			}
			delete(want, f.Name)
		}
	}
	for name := range want {
		t.Errorf("no field %s", name)
	}
}

// TestOffsetsTableMaps: every row has the offsets of one map layout for
// Request.Header, bucket maps before Go 1.24 and swiss tables from it.
func TestOffsetsTableMaps(t *testing.T) {
	for _, e := range OffsetsTable() {
		swiss := !e.From.Less(GoVersion{Major: 1, Minor: 24})
		hasBuckets := e.Offsets.BucketSize > 0 && e.Offsets.HmapBuckets != Absent
		hasSwiss := e.Offsets.SwissGroupSize > 0 && e.Offsets.SwissMapDirPtr != Absent
		if hasSwiss != swiss || hasBuckets == swiss {
			t.Errorf("%v: bucket offsets %v, swiss offsets %v", e.From, hasBuckets, hasSwiss)
		}
	}
}

// TestAllFound: the search for struct offsets ends once every struct and
// one of the two map layouts are found.
func TestAllFound(t *testing.T) {
	want := map[string]map[string]int64{
		"net/http.Request": {}, "runtime.hmap": {}, "bucket<string,[]string>": {},
		"internal/runtime/maps.Map": {}, "internal/runtime/maps.table": {},
		"internal/runtime/maps.groupsReference": {}, "noalg.map.group[string][]string": {},
	}
	set := func(names ...string) map[string]bool {
		m := map[string]bool{}
		for _, n := range names {
			m[n] = true
		}
		return m
	}
	tests := []struct {
		name string
		done map[string]bool
		want bool
	}{
		{"nothing", set(), false},
		{"bucket layout", set("net/http.Request", "runtime.hmap", "bucket<string,[]string>"), true},
		{"bucket layout in part", set("net/http.Request", "runtime.hmap"), false},
		{"swiss layout", set("net/http.Request", "internal/runtime/maps.Map", "internal/runtime/maps.table",
			"internal/runtime/maps.groupsReference", "noalg.map.group[string][]string"), true},
		{"a layout but not the rest", set("runtime.hmap", "bucket<string,[]string>"), false},
	}
	for _, tc := range tests {
		if got := allFound(want, tc.done); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	if !allFound(map[string]map[string]int64{"net/http.Request": {}}, set("net/http.Request")) {
		t.Error("no map structs wanted: found when every wanted struct is")
	}
}

// TestTableVouches: the table answers for the releases it was made from,
// not for newer patches, development builds or experiments, which read
// DWARF when they have it.
func TestTableVouches(t *testing.T) {
	exp := &debug.BuildInfo{Settings: []debug.BuildSetting{{Key: "GOEXPERIMENT", Value: "noswissmap"}}}
	for _, tt := range []struct {
		raw  string
		bi   *debug.BuildInfo
		want bool
	}{
		{"go1.26.8", nil, true},
		{"go1.26.11", nil, true},
		{"go1.18.10", nil, true},
		{"go1.26.99", nil, false}, // newer than any 1.26 the table was made from
		{"go1.99.0", nil, false},
		{"devel go1.27-abcdef", nil, false},
		{"go1.24.0 X:boringcrypto", nil, false},
		{"go1.24.13", exp, false},
	} {
		v, err := ParseGoVersion(tt.raw)
		if err != nil {
			t.Fatal(err)
		}
		if got := tableVouches(v, tt.raw, tt.bi); got != tt.want {
			t.Errorf("%q: %v, want %v", tt.raw, got, tt.want)
		}
	}
}
