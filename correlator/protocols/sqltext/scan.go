package sqltext

import "strings"

// Dialect selects the lexical rules that differ between servers.
type Dialect uint8

const (
	// Postgres: "..." is an identifier, '...' doubles quotes (standard
	// conforming strings), E'...' takes backslash escapes, $tag$...$tag$ is
	// a string, $1 is a parameter, block comments nest.
	Postgres Dialect = iota
	// MySQL (and MariaDB): '...' and "..." are strings with backslash
	// escapes, `...` is an identifier, # starts a comment.
	MySQL
)

// kind is the class of a token.
type kind uint8

const (
	kSpace   kind = iota // white space
	kComment             // -- ..., # ..., /* ... */
	kLiteral             // string, number, boolean, hex or bit string
	kWord                // keyword or identifier
	kIdent               // quoted identifier
	kParam               // $1, ?, :name
	kPunct               // any other single byte
)

// next returns the kind and the end offset of the token that starts at i
// (i < len(s)).
func next(s string, i int, d Dialect) (kind, int) {
	c := s[i]
	switch {
	case isSpace(c):
		j := i + 1
		for j < len(s) && isSpace(s[j]) {
			j++
		}
		return kSpace, j
	case c == '-' && at(s, i+1) == '-', c == '#' && d == MySQL:
		return kComment, lineEnd(s, i)
	case c == '/' && at(s, i+1) == '*':
		return kComment, blockEnd(s, i, d == Postgres)
	case c == '\'':
		return kLiteral, quoteEnd(s, i, '\'', d == MySQL)
	case c == '"':
		if d == MySQL {
			return kLiteral, quoteEnd(s, i, '"', true)
		}
		return kIdent, quoteEnd(s, i, '"', false)
	case c == '`' && d == MySQL:
		return kIdent, quoteEnd(s, i, '`', false)
	case isDigit(c), c == '.' && isDigit(at(s, i+1)):
		return kLiteral, numberEnd(s, i)
	case c == '$' && d == Postgres:
		return dollar(s, i)
	case c == '?':
		return kParam, i + 1
	case c == ':' && isIdentStart(at(s, i+1)) && (i == 0 || s[i-1] != ':'):
		return kParam, wordEnd(s, i+1)
	case isIdentStart(c):
		return word(s, i, d)
	}
	return kPunct, i + 1
}

// word scans an identifier or keyword, and the string literals that start
// with a prefix letter (E'.', B'.', X'.', N'.', U&'.', _charset'.').
func word(s string, i int, d Dialect) (kind, int) {
	j := wordEnd(s, i)
	w := s[i:j]
	switch {
	case at(s, j) == '\'' && isStringPrefix(w, d):
		escapes := d == MySQL || strings.EqualFold(w, "e")
		return kLiteral, quoteEnd(s, j, '\'', escapes)
	case d == Postgres && strings.EqualFold(w, "u") && at(s, j) == '&' && at(s, j+1) == '\'':
		return kLiteral, quoteEnd(s, j+1, '\'', false)
	case strings.EqualFold(w, "true"), strings.EqualFold(w, "false"):
		return kLiteral, j
	}
	return kWord, j
}

func isStringPrefix(w string, d Dialect) bool {
	switch strings.ToLower(w) {
	case "e", "b", "x", "n":
		return true
	}
	// MySQL character set introducers: _utf8mb4'...'.
	return d == MySQL && w[0] == '_'
}

// dollar scans $1 (a parameter), $tag$...$tag$ and $$...$$ (strings).
func dollar(s string, i int) (kind, int) {
	j := i + 1
	if isDigit(at(s, j)) {
		for j < len(s) && isDigit(s[j]) {
			j++
		}
		return kParam, j
	}
	for j < len(s) && isIdentStart(s[j]) || j > i+1 && isDigit(at(s, j)) {
		j++
	}
	if at(s, j) != '$' {
		return kPunct, i + 1
	}
	tag := s[i : j+1]
	if k := strings.Index(s[j+1:], tag); k >= 0 {
		return kLiteral, j + 1 + k + len(tag)
	}
	return kLiteral, len(s) // cut off: the rest is the string
}

// quoteEnd returns the end of a quoted token opened at s[i] == q. A doubled
// quote stays inside; with escapes, so does a backslash-escaped byte. An
// unterminated token runs to the end of s.
func quoteEnd(s string, i int, q byte, escapes bool) int {
	for j := i + 1; j < len(s); j++ {
		switch s[j] {
		case '\\':
			if escapes {
				j++
			}
		case q:
			if at(s, j+1) != q {
				return j + 1
			}
			j++
		}
	}
	return len(s)
}

func numberEnd(s string, i int) int {
	j := i
	if s[j] == '0' && (at(s, j+1)|0x20 == 'x' || at(s, j+1)|0x20 == 'b' || at(s, j+1)|0x20 == 'o') {
		j += 2
	}
	for j < len(s) {
		c := s[j]
		switch {
		case isDigit(c), c == '.', c == '_', isIdentStart(c):
			j++
		case (c == '+' || c == '-') && j > i && s[j-1]|0x20 == 'e' && s[i] != '0':
			j++ // exponent sign
		default:
			return j
		}
	}
	return j
}

func lineEnd(s string, i int) int {
	if k := strings.IndexByte(s[i:], '\n'); k >= 0 {
		return i + k + 1
	}
	return len(s)
}

func blockEnd(s string, i int, nested bool) int {
	depth := 0
	for j := i; j+1 < len(s); j++ {
		switch {
		case s[j] == '/' && s[j+1] == '*':
			if depth == 0 || nested {
				depth++
			}
			j++
		case s[j] == '*' && s[j+1] == '/':
			depth--
			j++
			if depth == 0 {
				return j + 1
			}
		}
	}
	return len(s)
}

func wordEnd(s string, i int) int {
	j := i
	for j < len(s) && (isIdentStart(s[j]) || isDigit(s[j]) || s[j] == '$') {
		j++
	}
	return j
}

func at(s string, i int) byte {
	if i < len(s) {
		return s[i]
	}
	return 0
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isIdentStart(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c >= 0x80
}
