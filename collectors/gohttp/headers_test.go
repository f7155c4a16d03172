package gohttp

import (
	"reflect"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/periscope-apm/periscope/symbols"
)

func TestHeaderMapLayout(t *testing.T) {
	table := func(v symbols.GoVersion) symbols.Offsets {
		o, err := symbols.TableOffsets(v)
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	go122, go124, go126 := symbols.GoVersion{Major: 1, Minor: 22, Patch: 12}, symbols.GoVersion{Major: 1, Minor: 24, Patch: 13}, symbols.GoVersion{Major: 1, Minor: 26}
	noswiss := &debug.BuildInfo{Settings: []debug.BuildSetting{{Key: "GOEXPERIMENT", Value: "aliastypeparams,noswissmap"}}}
	// A Go 1.24 binary built with noswissmap and DWARF: bucket offsets
	// from its DWARF, swiss ones filled in from the table.
	mixed := table(go124)
	b122 := table(go122)
	for _, f := range []string{"HmapFlags", "HmapB", "HmapBuckets", "HmapOldbuckets", "BucketTophash", "BucketKeys", "BucketValues", "BucketOverflow", "BucketSize"} {
		setOffset(&mixed, f, b122.Get(f))
	}
	badGroup := table(go126)
	badGroup.SwissGroupSize = 200 // slots of 24 bytes cannot hold a string and a []string
	noHeader := table(go122)
	noHeader.RequestHeader = symbols.Absent

	tests := []struct {
		name    string
		version symbols.GoVersion
		build   *debug.BuildInfo
		offsets symbols.Offsets
		want    mapLayout
		err     string
	}{
		{"go1.22 buckets", go122, nil, table(go122), mapBuckets, ""},
		{"go1.24 swiss", go124, nil, table(go124), mapSwiss, ""},
		{"go1.26 swiss", go126, &debug.BuildInfo{}, table(go126), mapSwiss, ""},
		{"go1.24 noswissmap from the table alone", go124, noswiss, table(go124), mapNone, "HmapFlags"},
		{"go1.24 noswissmap with DWARF", go124, noswiss, mixed, mapBuckets, ""},
		{"unexpected group", go126, nil, badGroup, mapNone, "unexpected map group layout"},
		{"no Request.Header", go122, nil, noHeader, mapNone, "RequestHeader"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := &symbols.GoBinary{Version: tc.version, Build: tc.build}
			got, err := headerMapLayout(b, tc.offsets)
			if got != tc.want {
				t.Errorf("layout %v, want %v (err %v)", got, tc.want, err)
			}
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("err %v, want one containing %q", err, tc.err)
			}
		})
	}
}

// setOffset sets an Offsets field by name.
func setOffset(o *symbols.Offsets, name string, v int64) {
	reflect.ValueOf(o).Elem().FieldByName(name).SetInt(v)
}
