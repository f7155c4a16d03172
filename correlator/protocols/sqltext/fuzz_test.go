package sqltext

import (
	"strings"
	"testing"
)

// plant writes secret as a literal of the given form, escaped as the
// dialect requires, so that a correct lexer sees exactly one literal.
func plant(secret string, form byte, d Dialect) string {
	quoted := "'" + strings.ReplaceAll(secret, "'", "''") + "'"
	if d == MySQL {
		quoted = "'" + strings.NewReplacer(`\`, `\\`, "'", "''").Replace(secret) + "'"
	}
	switch form % 8 {
	case 0:
		return quoted
	case 1:
		if d == MySQL {
			return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(secret) + `"`
		}
		return "E'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(secret) + "'"
	case 2:
		if d == MySQL || strings.Contains(secret, "$q$") {
			return "X'" + hexOf(secret) + "'"
		}
		return "$q$" + secret + "$q$"
	case 3:
		return digitsOf(secret)
	case 4:
		return "0x" + hexOf(secret)
	case 5:
		return "(" + digitsOf(secret) + ", " + quoted + ")"
	case 6:
		return "ARRAY[" + digitsOf(secret) + "]"
	default:
		return digitsOf(secret) + "." + digitsOf(secret) + "e-7"
	}
}

func hexOf(s string) string {
	const h = "0123456789abcdef"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		b.WriteByte(h[s[i]>>4])
		b.WriteByte(h[s[i]&15])
	}
	return b.String()
}

func digitsOf(s string) string {
	var b strings.Builder
	b.WriteByte('9')
	for i := 0; i < len(s); i++ {
		b.WriteByte('0' + s[i]%10)
	}
	return b.String()
}

// templates hold the literal at %s; they are closed lexically everywhere
// else, so a correct sanitiser must remove the literal whatever surrounds it.
var templates = []string{
	"SELECT * FROM t WHERE a = %s",
	"INSERT INTO t (a, b) VALUES (%s, 1) -- c\n",
	"UPDATE t SET a = %s WHERE id IN (1, %s)",
	"SELECT f(%s)::text, \"id\" FROM t /* x */ WHERE b IN (%s)",
	"SELECT 1; DELETE FROM t WHERE a = %s;",
	"SELECT CASE WHEN a > %s THEN 'x' ELSE 'y' END FROM t",
}

// FuzzSanitizeRemovesLiterals plants a secret as a literal in a query and
// checks that no trace of it survives sanitising.
func FuzzSanitizeRemovesLiterals(f *testing.F) {
	f.Add("hunter2xyz", byte(0), byte(0), false)
	f.Add("it's a \\ secret", byte(1), byte(1), true)
	f.Add("$q$tricky$$", byte(2), byte(2), false)
	f.Add("12345678", byte(3), byte(3), true)
	f.Add("*/ -- '\"`", byte(5), byte(4), false)
	f.Fuzz(func(t *testing.T, secret string, form, tmpl byte, mysql bool) {
		if len(secret) < 6 {
			return
		}
		d := Postgres
		if mysql {
			d = MySQL
		}
		lit := plant(secret, form, d)
		q := strings.ReplaceAll(templates[int(tmpl)%len(templates)], "%s", lit)
		out := Sanitize(q, d)
		for _, needle := range []string{secret, digitsOf(secret), hexOf(secret)} {
			if len(needle) >= 6 && strings.Contains(out, needle) {
				t.Fatalf("secret %q survived: %q -> %q", needle, q, out)
			}
		}
		if len(secret) >= 6 && hasRun(out, secret) {
			t.Fatalf("part of the secret survived: %q -> %q", q, out)
		}
		if again := Sanitize(out, d); again != out {
			t.Fatalf("not idempotent: %q -> %q -> %q", q, out, again)
		}
		checkStatements(t, q, out, d)
	})
}

// hasRun reports whether out holds 6 consecutive alphanumeric bytes of
// secret that the template itself does not contain.
func hasRun(out, secret string) bool {
	for i := 0; i+6 <= len(secret); i++ {
		w := secret[i : i+6]
		if !alnum(w) {
			continue
		}
		if strings.Contains(out, w) && !inTemplates(w) {
			return true
		}
	}
	return false
}

func alnum(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isIdentStart(s[i]) && !isDigit(s[i]) || s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func inTemplates(w string) bool {
	for _, t := range templates {
		if strings.Contains(t, w) {
			return true
		}
	}
	return false
}

// FuzzSanitizeAnything checks that any input sanitises without panicking,
// to text no longer than the input, and to a fixed point; that the
// statements AppendStatements appends are those of Statements, joined by
// Sanitize; and that Describe says what Single and Summary say.
func FuzzSanitizeAnything(f *testing.F) {
	for _, s := range []string{"SELECT 1", "SELECT $a$ $b$ $a$", "x IN (1,", "/* /* */", "E'\\", "`a``b`"} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, q string, mysql bool) {
		d := Postgres
		if mysql {
			d = MySQL
		}
		out := Sanitize(q, d)
		if len(out) > len(q)+len(q)/2+1 {
			t.Fatalf("output grew: %q -> %q", q, out)
		}
		checkStatements(t, q, out, d)
	})
}

// checkStatements checks that the statements of q that AppendStatements
// appends are those of Statements, which Sanitize's out joins, and that
// Describe says of each what Single and Summary say.
func checkStatements(t *testing.T, q, out string, d Dialect) {
	t.Helper()
	stmts := Statements(q, d)
	if got := strings.Join(stmts, "; "); got != out {
		t.Fatalf("Sanitize %q, Statements joined %q", out, got)
	}
	buf, ends := AppendStatements([]byte("kept"), nil, q, d)
	start := len("kept")
	if string(buf[:start]) != "kept" || len(ends) != len(stmts) {
		t.Fatalf("AppendStatements %q %v, Statements %q", buf, ends, stmts)
	}
	for i, end := range ends {
		if string(buf[start:end]) != stmts[i] {
			t.Fatalf("statement %d: %q, want %q", i, buf[start:end], stmts[i])
		}
		start = end
	}
	for _, s := range stmts {
		op, coll := Single(s, d)
		if in := Describe(s, d); in != (Info{Text: s, Operation: op, Collection: coll, Summary: Summary(s, d)}) {
			t.Fatalf("Describe(%q) = %+v, Single %q %q, Summary %q", s, in, op, coll, Summary(s, d))
		}
	}
}
