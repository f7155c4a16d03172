package httpparse

import (
	"bytes"
	"fmt"
	"strings"
)

// endsChunkedBody reports whether w ends with the last chunk of a chunked
// body ("0" line, optional trailer fields, empty line). The "0" line must
// follow a line end or start the current call (callStart) so that a
// stray "0" inside data is not taken for the end.
func endsChunkedBody(w []byte, callStart int) bool {
	n := len(w)
	if n < 3 || w[n-1] != '\n' {
		return false
	}
	n--
	if n > 0 && w[n-1] == '\r' {
		n--
	}
	// w[:n] must end with the line end of the "0" line or of a trailer.
	for lines := 0; lines < 64; lines++ {
		if n == 0 || w[n-1] != '\n' {
			return false
		}
		end := n - 1
		lineEnd := end
		if lineEnd > 0 && w[lineEnd-1] == '\r' {
			lineEnd--
		}
		start := bytes.LastIndexByte(w[:end], '\n') + 1
		line := w[start:lineEnd]
		if isLastChunkLine(line) {
			return start > 0 || start == callStart
		}
		if start == 0 || bytes.IndexByte(line, ':') <= 0 {
			return false
		}
		n = start
	}
	return false
}

func isLastChunkLine(line []byte) bool {
	i := 0
	for i < len(line) && line[i] == '0' {
		i++
	}
	if i == 0 {
		return false
	}
	rest := trimOWSLeft(line[i:])
	return len(rest) == 0 || rest[0] == ';'
}

func parseChunkSize(line []byte) (int64, error) {
	var n int64
	digits := 0
	i := 0
	for ; i < len(line); i++ {
		v := Unhex(line[i])
		if v < 0 {
			break
		}
		if digits++; digits > 15 {
			return 0, fmt.Errorf("httpparse: %w: chunk size too large", ErrMalformed)
		}
		n = n<<4 | int64(v)
	}
	rest := trimOWSLeft(line[i:])
	if digits == 0 || len(rest) > 0 && rest[0] != ';' {
		return 0, fmt.Errorf("httpparse: %w: invalid chunk-size line", ErrMalformed)
	}
	return n, nil
}

func parseContentLength(v []byte) (int64, bool) {
	// A list of identical values ("5, 5") is tolerated.
	var n int64 = -1
	for len(v) > 0 {
		var item []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			item, v = v[:i], v[i+1:]
		} else {
			item, v = v, nil
		}
		item = trimOWS(item)
		if len(item) == 0 || len(item) > 18 {
			return 0, false
		}
		var x int64
		for _, c := range item {
			if !isDigit(c) {
				return 0, false
			}
			x = x*10 + int64(c-'0')
		}
		if n >= 0 && x != n {
			return 0, false
		}
		n = x
	}
	return n, n >= 0
}

func parseVersion(v []byte) (string, bool) {
	if len(v) != 8 || string(v[:7]) != "HTTP/1." || !isDigit(v[7]) {
		return "", false
	}
	switch v[7] {
	case '1':
		return "1.1", true
	case '0':
		return "1.0", true
	}
	return "1." + string(v[7:]), true
}

// splitTarget returns the path and raw query of a request-target.
func splitTarget(t string) (path, query string) {
	if t == "*" {
		return t, ""
	}
	if t != "" && t[0] != '/' {
		// absolute-form (scheme://authority/path) or authority-form.
		i := strings.Index(t, "://")
		if i < 0 {
			return "", ""
		}
		t = t[i+3:]
		j := 0
		for j < len(t) && t[j] != '/' && t[j] != '?' {
			j++
		}
		t = t[j:]
		if t == "" || t[0] == '?' {
			t = "/" + t
		}
	}
	for i := 0; i < len(t); i++ {
		switch t[i] {
		case '?':
			q := t[i+1:]
			for j := 0; j < len(q); j++ {
				if q[j] == '#' {
					q = q[:j]
					break
				}
			}
			return t[:i], q
		case '#':
			return t[:i], ""
		}
	}
	return t, ""
}

// validStartPrefix reports whether b could be the beginning of a start
// line. It lets the parser reject non-HTTP bytes without waiting for a line
// end.
func validStartPrefix(kind Kind, b []byte) bool {
	const v = "HTTP/1."
	if kind == Response {
		if len(b) <= len(v) {
			return string(b) == v[:len(b)]
		}
		if string(b[:len(v)]) != v || !isDigit(b[7]) {
			return false
		}
		if len(b) > 8 && b[8] != ' ' {
			return false
		}
		for i := 9; i < len(b) && i < 12; i++ {
			if !isDigit(b[i]) {
				return false
			}
		}
		if len(b) > 12 && b[12] != ' ' && b[12] != '\r' {
			return false
		}
		for i := 13; i < len(b); i++ {
			if c := b[i]; c < ' ' && c != '\t' && !(c == '\r' && i == len(b)-1) || c == 0x7f {
				return false
			}
		}
		return true
	}
	i := 0
	for i < len(b) && isTchar(b[i]) {
		i++
	}
	if i > maxMethodLen {
		return false
	}
	if i == len(b) {
		return true
	}
	if i == 0 || b[i] != ' ' {
		return false
	}
	i++
	j := i
	for i < len(b) && b[i] > ' ' && b[i] != 0x7f {
		i++
	}
	if i == len(b) {
		return true
	}
	if i == j || b[i] != ' ' {
		return false
	}
	rest := b[i+1:]
	if len(rest) <= len(v) {
		return string(rest) == v[:len(rest)]
	}
	if string(rest[:len(v)]) != v || !isDigit(rest[7]) {
		return false
	}
	rest = rest[8:]
	return len(rest) == 0 || len(rest) == 1 && rest[0] == '\r'
}

func internMethod(b []byte) string {
	switch string(b) {
	case "GET":
		return "GET"
	case "POST":
		return "POST"
	case "PUT":
		return "PUT"
	case "DELETE":
		return "DELETE"
	case "HEAD":
		return "HEAD"
	case "OPTIONS":
		return "OPTIONS"
	case "PATCH":
		return "PATCH"
	case "CONNECT":
		return "CONNECT"
	case "TRACE":
		return "TRACE"
	}
	return string(b)
}

// hasToken reports whether the comma-separated list v contains tok
// (case-insensitive).
func hasToken(v []byte, tok string) bool {
	for len(v) > 0 {
		var item []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			item, v = v[:i], v[i+1:]
		} else {
			item, v = v, nil
		}
		if equalFold(trimOWS(item), tok) {
			return true
		}
	}
	return false
}

// lastToken returns the last element of a comma-separated list, without
// parameters.
func lastToken(v []byte) []byte {
	if i := bytes.LastIndexByte(v, ','); i >= 0 {
		v = v[i+1:]
	}
	if i := bytes.IndexByte(v, ';'); i >= 0 {
		v = v[:i]
	}
	return trimOWS(v)
}

// equalFold compares ASCII b with lower-case s, ignoring case.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// Unhex returns the value of a hex digit of either case, -1 for another byte.
func Unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// isTchar reports whether c may appear in a token (RFC 9110 §5.6.2).
func isTchar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// trimOWS trims optional whitespace (spaces and tabs) from both ends of b,
// as bytes.Trim(b, " \t") without building a cutset per call.
func trimOWS(b []byte) []byte { return trimOWSRight(trimOWSLeft(b)) }

func trimOWSLeft(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	return b
}

func trimOWSRight(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}
