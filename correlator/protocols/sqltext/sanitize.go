package sqltext

import "strings"

// Sanitize returns q with every literal replaced by "?", IN lists of
// literals collapsed to "IN (?)", comments removed and white space folded.
// Statements are joined with "; ".
func Sanitize(q string, d Dialect) string {
	return strings.Join(Statements(q, d), "; ")
}

// Statements returns the sanitised statements of q, split at top-level
// semicolons; empty statements are left out.
func Statements(q string, d Dialect) []string {
	var out []string
	var b strings.Builder
	b.Grow(len(q))
	space := false
	lastWord := ""
	flush := func() {
		if b.Len() > 0 {
			out = append(out, b.String())
		}
		b.Reset()
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
			if space && b.Len() > 0 {
				b.WriteByte(' ')
			}
			space = false
			if k == kPunct && q[i] == '(' && strings.EqualFold(lastWord, "in") {
				if end, ok := literalList(q, j, d); ok {
					b.WriteString("(?)")
					i, lastWord = end, ""
					continue
				}
			}
			if k == kLiteral {
				b.WriteByte('?')
			} else {
				b.WriteString(q[i:j])
			}
			lastWord = ""
			if k == kWord {
				lastWord = q[i:j]
			}
		}
		i = j
	}
	flush()
	return out
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
