package redact

import (
	"strings"
	"testing"
)

// planted are command lines with a secret ({S}) where a credential goes.
var planted = [][]string{
	{"app", "--password={S}"},
	{"app", "--password", "{S}"},
	{"app", "-token", "{S}"},
	{"curl", "-H", "Authorization: Bearer {S}"},
	{"curl", "-H", "Cookie: sid={S}"},
	{"curl", "-H", "X-Api-Key: {S}"},
	{"curl", "https://user:{S}@h/?token={S}"},
	{"curl", "https://h/x?a={S}&b={S}#k={S}"},
	{"env", "DB_PASSWORD={S}"},
	{"mysql", "-p{S}"},
	{"curl", "-u", "user:{S}"},
	{"sh", "-c", "run --secret {S}"},
	{"psql", "host=h password={S}"},
}

// FuzzRedactArgs checks that redaction never panics and that a secret
// planted where a credential goes never comes out, whatever arguments
// surround it.
func FuzzRedactArgs(f *testing.F) {
	f.Add("-v\x00--port=80", "hunter2", uint8(0), "x\x00-H")
	f.Add("-H", "abcDEF", uint8(3), "")
	f.Add("--password\x00--", "S3CRET", uint8(1), "=\x00:")
	f.Add("https://a@b/?c", "tok", uint8(6), "-u\x00-p")
	f.Add("sh -c 'x'", "q", uint8(11), "Bearer")
	a := NewArgs(ArgsConfig{})
	f.Fuzz(func(t *testing.T, before, secret string, form uint8, after string) {
		secret = "PLANTED" + alnum(secret)
		if strings.Contains(before, "PLANTED") || strings.Contains(after, "PLANTED") {
			return
		}
		p := planted[int(form)%len(planted)]
		argv := []string{p[0]}
		argv = append(argv, splitArgs(before)...)
		for _, arg := range p[1:] {
			argv = append(argv, strings.ReplaceAll(arg, "{S}", secret))
		}
		argv = append(argv, splitArgs(after)...)
		out := a.Redact(argv)
		if len(out) != len(argv) {
			t.Fatalf("Redact(%q) = %q: %d arguments, want %d", argv, out, len(out), len(argv))
		}
		for _, arg := range out {
			if strings.Contains(arg, secret) {
				t.Fatalf("Redact(%q) = %q: the secret is still there", argv, out)
			}
		}
		// Free text never panics either.
		_ = a.Text(before + secret + after)
	})
}

func splitArgs(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, "\x00")
}

// alnum keeps the letters and digits of s: a secret made of them.
func alnum(s string) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < 32; i++ {
		if c := s[i]; isLower(c) || isUpper(c) || isDigit(c) {
			b.WriteByte(c)
		}
	}
	return b.String()
}
