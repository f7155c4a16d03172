package redact

import "strings"

// Text redacts the credentials in free text (one command-line argument, a
// shell command given to sh -c, a process title): URL userinfo and query
// values, "Name: value" for sensitive header names, Bearer and Basic
// credentials, NAME=value for sensitive names, and, between words, the
// value after a sensitive flag.
func (a *Args) Text(s string) string {
	s = redactURLs(s)
	s = a.embeddedHeaders(s)
	s = redactSchemes(s)
	s = a.pairs(s)
	if strings.ContainsAny(s, " \t\n") {
		s = a.words(s)
	}
	return s
}

// redactURLs redacts the userinfo and the query and fragment values of
// every scheme://authority URL in s.
func redactURLs(s string) string {
	if !strings.Contains(s, "://") {
		return s
	}
	var b strings.Builder
	for {
		i := strings.Index(s, "://")
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i+3])
		if i == 0 || !isSchemeChar(s[i-1]) {
			s = s[i+3:]
			continue
		}
		end := i + 3
		for end < len(s) && !isTextEnd(s[end]) {
			end++
		}
		b.WriteString(redactURLRest(s[i+3 : end]))
		s = s[end:]
	}
}

// redactURLRest redacts what follows "scheme://".
func redactURLRest(u string) string {
	authEnd := strings.IndexAny(u, "/?#")
	if authEnd < 0 {
		authEnd = len(u)
	}
	if at := strings.LastIndexByte(u[:authEnd], '@'); at >= 0 {
		u = Redacted + u[at:]
		authEnd += len(Redacted) - at
	}
	rest := u[authEnd:]
	var frag string
	if h := strings.IndexByte(rest, '#'); h >= 0 {
		rest, frag = rest[:h], rest[h:]
	}
	if q := strings.IndexByte(rest, '?'); q >= 0 {
		rest = rest[:q+1] + redactValues(rest[q+1:])
	}
	if strings.Contains(frag, "=") {
		frag = "#" + redactValues(frag[1:])
	}
	return u[:authEnd] + rest + frag
}

// redactValues redacts every value of a query ("a=1&b=2" → "a=REDACTED&b=REDACTED");
// a part without a name is redacted whole.
func redactValues(q string) string {
	var b strings.Builder
	start := 0
	for i := 0; i <= len(q); i++ {
		if i < len(q) && q[i] != '&' && q[i] != ';' {
			continue
		}
		part := q[start:i]
		name, value, ok := strings.Cut(part, "=")
		switch {
		case ok && value != "":
			b.WriteString(name + "=" + Redacted)
		case !ok && part != "":
			b.WriteString(Redacted)
		default:
			b.WriteString(part)
		}
		if i < len(q) {
			b.WriteByte(q[i])
		}
		start = i + 1
	}
	return b.String()
}

// embeddedHeaders redacts the value of every "Name: value" in s whose name
// is a sensitive header, up to the next quote, newline or the end.
func (a *Args) embeddedHeaders(s string) string {
	return redactValuesAfter(s, ':', isTokenChar, a.sensitiveHeader, func(v int) (int, int) {
		for v < len(s) && (s[v] == ' ' || s[v] == '\t') {
			v++
		}
		end := v
		for end < len(s) && s[end] != '\'' && s[end] != '"' && s[end] != '\n' {
			end++
		}
		return v, end
	})
}

// authSchemes are the HTTP authentication schemes whose credentials
// follow them in text ("Bearer abc").
var authSchemes = []string{"bearer", "basic", "digest", "negotiate"}

// redactSchemes redacts the word after an authentication scheme's name.
func redactSchemes(s string) string {
	lower := strings.ToLower(s)
	var b strings.Builder
	done := 0
	for i := 0; i < len(s); i++ {
		if i > 0 && isTokenChar(s[i-1]) {
			continue
		}
		for _, scheme := range authSchemes {
			if !strings.HasPrefix(lower[i:], scheme) {
				continue
			}
			v := i + len(scheme)
			if v >= len(s) || s[v] != ' ' {
				continue
			}
			for v < len(s) && s[v] == ' ' {
				v++
			}
			end := v
			for end < len(s) && !isTextEnd(s[end]) {
				end++
			}
			if end > v && s[v:end] != Redacted {
				b.WriteString(s[done:v] + Redacted)
				done, i = end, end-1
			}
			break
		}
	}
	if done == 0 {
		return s
	}
	b.WriteString(s[done:])
	return b.String()
}

// pairs redacts the value of every NAME=value in s whose name is
// sensitive; a quoted value is redacted up to its closing quote.
func (a *Args) pairs(s string) string {
	return redactValuesAfter(s, '=', isNameChar, a.names.Match, func(v int) (int, int) {
		for v < len(s) && s[v] == '=' {
			v++ // httpie's name==value
		}
		if v < len(s) && (s[v] == '\'' || s[v] == '"') {
			end := strings.IndexByte(s[v+1:], s[v])
			if end < 0 {
				return v + 1, len(s)
			}
			return v + 1, v + 1 + end
		}
		end := v
		for end < len(s) && !isTextEnd(s[end]) && s[end] != '&' && s[end] != ';' && s[end] != ',' {
			end++
		}
		return v, end
	})
}

// redactValuesAfter redacts, for every sep in s right after a name (a run
// of nameChar) that sensitive accepts, the value value(the index after
// sep) bounds.
func redactValuesAfter(s string, sep byte, nameChar func(byte) bool, sensitive func(string) bool, value func(int) (int, int)) string {
	if strings.IndexByte(s, sep) < 0 {
		return s
	}
	var b strings.Builder
	done := 0
	for p := 0; p < len(s); p++ {
		if s[p] != sep {
			continue
		}
		k := p
		for k > done && nameChar(s[k-1]) {
			k--
		}
		if k == p || k > 0 && nameChar(s[k-1]) || !sensitive(s[k:p]) {
			continue
		}
		v, end := value(p + 1)
		if end > v && s[v:end] != Redacted {
			b.WriteString(s[done:v] + Redacted)
			done = end
		}
		p = max(end, p+1) - 1
	}
	if done == 0 {
		return s
	}
	b.WriteString(s[done:])
	return b.String()
}

// words redacts the word after a sensitive flag among the words of s
// ("mysql --password secret" given to sh -c).
func (a *Args) words(s string) string {
	fields := strings.Fields(s)
	if len(fields) < 2 {
		return s
	}
	var b strings.Builder
	rest := s
	secretNext := false
	for _, f := range fields {
		i := strings.Index(rest, f)
		b.WriteString(rest[:i])
		rest = rest[i+len(f):]
		word := strings.Trim(f, `'"`)
		switch {
		case secretNext && !strings.HasPrefix(word, "--") && word != Redacted:
			b.WriteString(strings.Replace(f, word, Redacted, 1))
			secretNext = false
			continue
		case len(word) > 1 && word[0] == '-':
			name, _, hasValue := strings.Cut(strings.TrimLeft(word, "-"), "=")
			secretNext = !hasValue && a.names.Match(name)
		default:
			secretNext = false
		}
		b.WriteString(f)
	}
	b.WriteString(rest)
	return b.String()
}

func isSchemeChar(c byte) bool {
	return isLower(c) || isUpper(c) || isDigit(c) || c == '+' || c == '.' || c == '-'
}

// isTokenChar reports whether c may be part of a header name.
func isTokenChar(c byte) bool {
	return isLower(c) || isUpper(c) || isDigit(c) || c == '-' || c == '_'
}

// isNameChar reports whether c may be part of a NAME in NAME=value.
func isNameChar(c byte) bool {
	return isTokenChar(c) || c == '.'
}

// isTextEnd reports whether c ends a URL or a value in free text.
func isTextEnd(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '"' || c == '\'' || c == '`' || c == '<' || c == '>'
}
