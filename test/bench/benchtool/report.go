package main

import (
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"time"
)

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func minMax(v []float64) (float64, float64) {
	if len(v) == 0 {
		return 0, 0
	}
	lo, hi := v[0], v[0]
	for _, x := range v[1:] {
		lo, hi = min(lo, x), max(hi, x)
	}
	return lo, hi
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%.0f µs", float64(d)/1e3)
	}
}

// fmtInt writes n with thousands separators.
func fmtInt(n uint64) string {
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func fmtUs(x float64) string {
	switch {
	case x < 0.1:
		return fmt.Sprintf("%.4f", x)
	case x < 10:
		return fmt.Sprintf("%.2f", x)
	default:
		return fmt.Sprintf("%.1f", x)
	}
}

// table is rows of cells; the first row is the header.
type table [][]string

func (t table) text() string {
	t = t.plain()
	widths := make([]int, 0)
	for _, row := range t {
		for i, c := range row {
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], len([]rune(c)))
		}
	}
	var b strings.Builder
	for ri, row := range t {
		for i, c := range row {
			pad := widths[i] - len([]rune(c))
			if i > 0 {
				b.WriteString("  ")
			}
			b.WriteString(c)
			if i < len(row)-1 {
				b.WriteString(strings.Repeat(" ", pad))
			}
		}
		b.WriteByte('\n')
		if ri == 0 {
			total := 0
			for _, w := range widths[:len(widths)-1] {
				total += w + 2
			}
			total += len([]rune(row[len(row)-1]))
			b.WriteString(strings.Repeat("-", total) + "\n")
		}
	}
	return b.String()
}

// plain drops the markdown: backticks.
func (t table) plain() table {
	out := make(table, len(t))
	for i, row := range t {
		out[i] = make([]string, len(row))
		for j, c := range row {
			out[i][j] = strings.ReplaceAll(c, "`", "")
		}
	}
	return out
}

func (t table) markdown() string {
	var b strings.Builder
	for ri, row := range t {
		cells := make([]string, len(row))
		for i, c := range row {
			// Leading spaces mark a sub-row; markdown would swallow them.
			if trimmed := strings.TrimLeft(c, " "); trimmed != c {
				c = "&emsp;" + trimmed
			}
			cells[i] = strings.ReplaceAll(c, "|", `\|`) // a cell's own | would end it
		}
		b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
		if ri == 0 {
			seps := make([]string, len(row))
			for i := range seps {
				seps[i] = "---"
				if i > 0 {
					seps[i] = "--:"
				}
			}
			b.WriteString("| " + strings.Join(seps, " | ") + " |\n")
		}
	}
	return b.String()
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none found by name"
	}
	return strings.Join(s, ", ")
}

func readFirst(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func cpuModel() string {
	for _, line := range strings.Split(readFirst("/proc/cpuinfo"), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func hypervisor() string {
	for _, line := range strings.Split(readFirst("/proc/cpuinfo"), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "flags" {
			if strings.Contains(" "+v+" ", " hypervisor ") {
				return " (virtual machine: hypervisor CPU flag)"
			}
			return ""
		}
	}
	return ""
}

func memTotal() string {
	v, err := parseStatusKiB([]byte(readFirst("/proc/meminfo")), "MemTotal")
	if err != nil {
		return "unknown"
	}
	return fmt.Sprintf("%.1f GiB", float64(v)/(1<<20))
}

func wrkVersion() string {
	out, _ := exec.Command("wrk", "--version").CombinedOutput()
	f := strings.Fields(string(out))
	if len(f) >= 2 {
		return f[1]
	}
	return "?"
}
