// Package intern keeps one copy of strings that repeat (request paths,
// hosts, routes), so that turning the same bytes into a string again costs
// no allocation.
package intern

// Table is a bounded set of strings. It is not safe for concurrent use.
type Table struct {
	max     int
	maxLen  int
	strings map[string]string
}

// New returns a table of at most max strings, each at most maxLen bytes
// long; longer ones are copied, not kept. Past max the table starts over,
// so that a stream of ever-new strings cannot grow it.
func New(max, maxLen int) *Table {
	return &Table{max: max, maxLen: maxLen}
}

// Bytes returns b as a string, the kept copy when there is one.
func (t *Table) Bytes(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if s, ok := t.strings[string(b)]; ok { // no allocation for the lookup
		return s
	}
	s := string(b)
	if len(b) <= t.maxLen {
		t.keep(s)
	}
	return s
}

func (t *Table) keep(s string) {
	if t.strings == nil || len(t.strings) >= t.max {
		t.strings = make(map[string]string, min(t.max, 64))
	}
	t.strings[s] = s
}
