package gohttp

import (
	"fmt"
	"strings"

	"github.com/periscope-apm/periscope/symbols"
)

// mapLayout is enum go_map_layout of bpf/periscope.h: how a binary's Go
// maps are laid out, which decides how the ServeHTTP probe searches
// Request.Header for Traceparent.
type mapLayout int64

const (
	mapNone    mapLayout = 0 // headers are not searched
	mapBuckets mapLayout = 1 // runtime.hmap (Go ≤ 1.23, GOEXPERIMENT=noswissmap)
	mapSwiss   mapLayout = 2 // internal/runtime/maps (Go ≥ 1.24)
)

func (l mapLayout) String() string {
	switch l {
	case mapBuckets:
		return "buckets"
	case mapSwiss:
		return "swiss"
	}
	return "none"
}

// headerMapLayout decides the layout of the binary's maps: swiss tables
// from Go 1.24 unless the binary was built with GOEXPERIMENT=noswissmap
// (its build settings say so), bucket maps before. Every offset the probe
// reads for that layout must be known; the error says which is not.
func headerMapLayout(b *symbols.GoBinary, o symbols.Offsets) (mapLayout, error) {
	swiss := !b.Version.Less(symbols.GoVersion{Major: 1, Minor: 24})
	if b.Build != nil {
		for _, s := range b.Build.Settings {
			if s.Key == "GOEXPERIMENT" && hasExperiment(s.Value, "noswissmap") {
				swiss = false
			}
		}
	}
	layout, fields := mapBuckets, []string{"HmapFlags", "HmapB", "HmapBuckets", "HmapOldbuckets",
		"BucketTophash", "BucketKeys", "BucketValues", "BucketOverflow", "BucketSize"}
	if swiss {
		layout, fields = mapSwiss, []string{"SwissMapDirPtr", "SwissMapDirLen", "SwissTableGroups",
			"SwissGroupsData", "SwissGroupsLengthMask", "SwissGroupCtrl", "SwissGroupSlots", "SwissGroupSize"}
	}
	fields = append(fields, "RequestHeader")
	var missing []string
	for _, f := range fields {
		if o.Get(f) == symbols.Absent {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 {
		return mapNone, fmt.Errorf("%s map layout without offsets for %s", layout, strings.Join(missing, ", "))
	}
	if err := checkMapBlock(layout, o); err != nil {
		return mapNone, err
	}
	return layout, nil
}

// headerLookup is enum header_lookup of bpf/periscope.h: how the search of
// a server request's headers for Traceparent ended.
type headerLookup uint32

const (
	headerNotSearched headerLookup = 0
	headerFound       headerLookup = 1
	headerAbsent      headerLookup = 2
	headerBound       headerLookup = 3 // the map was bigger than the probe searches
	headerFault       headerLookup = 4 // a read of the program's memory failed
)

func (h headerLookup) String() string {
	switch h {
	case headerFound:
		return "found"
	case headerAbsent:
		return "absent"
	case headerBound:
		return "bound"
	case headerFault:
		return "fault"
	}
	return "not_searched"
}

// What bpf/gohttp.bpf.c assumes of a bucket or group: 8 slots, keys that
// are Go strings and values that are []string.
const (
	mapSlots     = 8
	goStringSize = 16
	goSliceSize  = 24
)

// checkMapBlock checks that a bucket or group, as the offsets describe it,
// holds what the probe expects, so that a layout change shows up as a log
// line rather than as wrong reads.
func checkMapBlock(l mapLayout, o symbols.Offsets) error {
	switch l {
	case mapBuckets:
		if o.BucketTophash+mapSlots > o.BucketKeys ||
			o.BucketKeys+mapSlots*goStringSize > o.BucketValues ||
			o.BucketValues+mapSlots*goSliceSize > o.BucketOverflow || o.BucketOverflow+8 > o.BucketSize {
			return fmt.Errorf("unexpected bucket<string,[]string> layout: %+v", bucketFields(o))
		}
	case mapSwiss:
		slot := (o.SwissGroupSize - o.SwissGroupSlots) / mapSlots
		if o.SwissGroupCtrl+8 > o.SwissGroupSlots ||
			slot < goStringSize+goSliceSize || o.SwissGroupSlots+mapSlots*slot != o.SwissGroupSize {
			return fmt.Errorf("unexpected map group layout: ctrl %d, slots %d, size %d",
				o.SwissGroupCtrl, o.SwissGroupSlots, o.SwissGroupSize)
		}
	}
	return nil
}

func bucketFields(o symbols.Offsets) map[string]int64 {
	return map[string]int64{"tophash": o.BucketTophash, "keys": o.BucketKeys, "values": o.BucketValues,
		"overflow": o.BucketOverflow, "size": o.BucketSize}
}

// hasExperiment tells whether a GOEXPERIMENT value (comma-separated) names
// the experiment.
func hasExperiment(list, name string) bool {
	for _, e := range strings.Split(list, ",") {
		if strings.TrimSpace(e) == name {
			return true
		}
	}
	return false
}
