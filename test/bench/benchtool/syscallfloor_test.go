package main

import (
	"strings"
	"testing"
)

// TestFloorTable: each configuration is compared with the baseline of its
// own rotation, and its share is of the same rotation's pair.
func TestFloorTable(t *testing.T) {
	cfgs := []floorConfig{{name: "base"}, {name: "pair"}, {name: "one"}}
	rs := []floorRotation{
		{ns: map[string]float64{"base": 1000, "pair": 1200, "one": 1150}},
		{ns: map[string]float64{"base": 2000, "pair": 2100, "one": 2100}},
		{ns: map[string]float64{"base": 1500, "pair": 1700, "one": 1600}},
	}
	got := floorTable(cfgs, rs)
	for _, want := range []string{
		"| base | 1500 | — | — |",
		// pair: +200, +100, +200
		"| pair | 1700 | +200 [+100, +200] | 100% |",
		// one: +150 (75%), +100 (100%), +100 (50%); quartiles by floor rank
		"| one | 1600 | +100 [+100, +100] | 75% |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in\n%s", want, got)
		}
	}
}

func TestQuantile(t *testing.T) {
	for _, c := range []struct {
		v    []float64
		q    float64
		want float64
	}{
		{nil, 0.5, 0},
		{[]float64{3, 1, 2}, 0, 1},
		{[]float64{3, 1, 2}, 0.5, 2},
		{[]float64{3, 1, 2}, 1, 3},
		{[]float64{4, 1, 3, 2}, 0.25, 1},
		{[]float64{4, 1, 3, 2}, 0.75, 3},
	} {
		if got := quantile(c.v, c.q); got != c.want {
			t.Errorf("quantile(%v, %v) = %v, want %v", c.v, c.q, got, c.want)
		}
	}
}
