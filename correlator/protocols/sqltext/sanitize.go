package sqltext

import "strings"

// Sanitize returns q with every literal replaced by "?", IN lists of
// literals collapsed to "IN (?)", comments removed and white space folded.
// Statements are joined with "; ".
func Sanitize(q string, d Dialect) string {
	return string(appendStatements(make([]byte, 0, len(q)), nil, q, d, "; "))
}

// Statements returns the sanitised statements of q, split at top-level
// semicolons; empty statements are left out.
func Statements(q string, d Dialect) []string {
	buf, ends := AppendStatements(make([]byte, 0, len(q)), nil, q, d)
	if len(ends) == 0 {
		return nil
	}
	all, start := string(buf), 0
	out := make([]string, 0, len(ends))
	for _, end := range ends {
		out = append(out, all[start:end])
		start = end
	}
	return out
}

// AppendStatements appends the sanitised statements of q to dst, one after
// the other, and the offset in dst where each ends to ends: the
// statements of Statements without a string made for each (a decoder
// reuses dst and ends, and looks the statements up in a Cache).
func AppendStatements(dst []byte, ends []int, q string, d Dialect) ([]byte, []int) {
	dst = appendStatements(dst, &ends, q, d, "")
	return dst, ends
}

// appendStatements appends the sanitised statements of q to dst, sep
// between them, and their ends to *ends when ends is not nil.
func appendStatements(dst []byte, ends *[]int, q string, d Dialect, sep string) []byte {
	stmt, n := len(dst), 0 // where the current statement starts; statements so far
	space := false
	lastWord := ""
	flush := func() {
		if len(dst) > stmt {
			n++
			if ends != nil {
				*ends = append(*ends, len(dst))
			}
		}
		stmt = len(dst)
		space, lastWord = false, ""
	}
	for i := 0; i < len(q); {
		k, j := next(q, i, d)
		switch {
		case k == kSpace || k == kComment:
			space = true
		case k == kPunct && q[i] == ';':
			flush()
		default:
			if len(dst) == stmt && n > 0 && sep != "" {
				dst = append(dst, sep...)
				stmt = len(dst)
			}
			if space && len(dst) > stmt {
				dst = append(dst, ' ')
			}
			space = false
			if k == kPunct && q[i] == '(' && strings.EqualFold(lastWord, "in") {
				if end, ok := literalList(q, j, d); ok {
					dst = append(dst, "(?)"...)
					i, lastWord = end, ""
					continue
				}
			}
			if k == kLiteral {
				dst = append(dst, '?')
			} else {
				dst = append(dst, q[i:j]...)
			}
			lastWord = ""
			if k == kWord {
				lastWord = q[i:j]
			}
		}
		i = j
	}
	flush()
	return dst
}

// literalList reports whether the list that starts after the "(" at i holds
// only literals, "?" placeholders, signs and commas up to its ")", and
// returns the offset after that ")".
func literalList(q string, i int, d Dialect) (int, bool) {
	items := 0
	for i < len(q) {
		k, j := next(q, i, d)
		switch {
		case k == kSpace || k == kComment:
		case k == kLiteral, k == kParam && q[i] == '?':
			items++
		case k == kPunct && (q[i] == ',' || q[i] == '-' || q[i] == '+'):
		case k == kPunct && q[i] == ')':
			return j, items > 0
		default:
			return 0, false
		}
		i = j
	}
	return 0, false
}
