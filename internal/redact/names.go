package redact

import "strings"

// Redacted replaces every value redacted.
const Redacted = "REDACTED"

// alwaysHeaders are the headers whose values never leave the agent.
var alwaysHeaders = []string{"authorization", "cookie", "set-cookie", "proxy-authorization"}

// AlwaysHeaders returns the names of the headers that are always redacted
// (lower case).
func AlwaysHeaders() []string { return append([]string(nil), alwaysHeaders...) }

// HeaderSet returns the lower-case names of the headers to redact: the
// ones always redacted, and extra.
func HeaderSet(extra []string) map[string]bool {
	set := make(map[string]bool, len(alwaysHeaders)+len(extra))
	for _, h := range alwaysHeaders {
		set[h] = true
	}
	for _, h := range extra {
		if h = strings.ToLower(strings.TrimSpace(h)); h != "" {
			set[h] = true
		}
	}
	return set
}

// Names is a set of sensitive names (see the package documentation for
// how a name matches). The zero value matches nothing.
type Names struct {
	set  map[string]bool
	long []string // normalised names of minSubstring bytes or more
}

// minSubstring is the length from which a sensitive name also matches
// inside a longer word: "password" in DBPASSWORD, not "key" in monkey.
const minSubstring = 5

// maxWords bounds the words of a name tried as runs.
const maxWords = 8

// NewNames returns the set of names, or of defaults when names is empty.
func NewNames(names, defaults []string) Names {
	if len(names) == 0 {
		names = defaults
	}
	n := Names{set: make(map[string]bool, len(names))}
	for _, name := range names {
		k := normalize(name)
		if k == "" || n.set[k] {
			continue
		}
		n.set[k] = true
		if len(k) >= minSubstring {
			n.long = append(n.long, k)
		}
	}
	return n
}

// Match reports whether name is sensitive.
func (n Names) Match(name string) bool {
	if len(n.set) == 0 {
		return false
	}
	norm := normalize(name)
	if norm == "" {
		return false
	}
	if n.set[norm] {
		return true
	}
	for _, l := range n.long {
		if strings.Contains(norm, l) {
			return true
		}
	}
	words := splitWords(name)
	for i := range words {
		run := ""
		for j := i; j < len(words); j++ {
			run += words[j]
			if n.set[run] {
				return true
			}
		}
	}
	return false
}

// normalize lower-cases a name and drops separators.
func normalize(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case isSep(c):
			continue
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		b.WriteByte(c)
	}
	return b.String()
}

func isSep(c byte) bool {
	return c == '-' || c == '_' || c == '.' || c == '[' || c == ']' || c == ' '
}

// splitWords splits a name into at most maxWords lower-case words, at
// separators and where a lower-case letter or digit is followed by an
// upper-case one (keyStorePassword: key, store, password).
func splitWords(s string) []string {
	var words []string
	start := -1
	flush := func(end int) {
		if start >= 0 && end > start && len(words) < maxWords {
			words = append(words, strings.ToLower(s[start:end]))
		}
		start = -1
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isSep(c) {
			flush(i)
			continue
		}
		if start >= 0 && isUpper(c) && (isLower(s[i-1]) || isDigit(s[i-1])) {
			flush(i)
		}
		if start < 0 {
			start = i
		}
	}
	flush(len(s))
	return words
}

func isUpper(c byte) bool { return 'A' <= c && c <= 'Z' }
func isLower(c byte) bool { return 'a' <= c && c <= 'z' }
func isDigit(c byte) bool { return '0' <= c && c <= '9' }
