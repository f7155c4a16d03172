package httpspan

import (
	"fmt"
	"strings"
)

// idPlaceholder replaces path segments that look like identifiers.
const idPlaceholder = "{id}"

// Route returns a low-cardinality template of a URL path for http.route and
// span names: path segments that look like identifiers (numbers, UUIDs,
// hashes, long tokens, e-mail addresses, dates and versions) become {id},
// so that /users/123/orders/9f8e7a6b5c4d3e2f1a0b becomes
// /users/{id}/orders/{id}. Paths that are empty or do not start with "/"
// give "/". A path without identifiers is returned as is.
func Route(path string) string {
	var buf [256]byte
	r, changed := appendRoute(buf[:0], path)
	if !changed {
		return path
	}
	return string(r)
}

// appendRoute appends the route of path (see Route) to dst when it differs
// from path; changed false means the route is path itself ("/" for a path
// that is empty or does not start with "/" is appended).
func appendRoute(dst []byte, path string) (route []byte, changed bool) {
	if path == "" || path[0] != '/' {
		return append(dst, '/'), true
	}
	// First pass: find whether anything needs to change.
	forSegments(path, func(seg string) bool {
		changed = isIDSegment(seg)
		return !changed
	})
	if !changed {
		return dst, false
	}
	forSegments(path, func(seg string) bool {
		dst = append(dst, '/')
		if isIDSegment(seg) {
			dst = append(dst, idPlaceholder...)
		} else {
			dst = append(dst, seg...)
		}
		return true
	})
	return dst, true
}

// Router turns URL paths into routes: the first configured pattern that
// matches, else the identifier heuristic of Route. The zero value has no
// patterns. It is safe for concurrent use once built.
type Router struct {
	patterns []routePattern
}

// routePattern is a compiled route template.
type routePattern struct {
	template string
	segs     []string // "" matches any one segment
	rest     bool     // a trailing "*" matches one or more segments
}

// NewRouter compiles route templates such as "/users/{id}/orders/{order}"
// (a {name} segment matches any one non-empty path segment) and
// "/static/*" (a final "*" matches one or more segments). Templates are
// tried in order; a trailing slash of a path is ignored.
func NewRouter(templates []string) (*Router, error) {
	r := &Router{}
	for i, t := range templates {
		if t == "" || t[0] != '/' {
			return nil, fmt.Errorf("route pattern %d: %q does not start with /", i, t)
		}
		p := routePattern{template: t}
		trimmed := strings.TrimSuffix(t[1:], "/")
		if trimmed == "" {
			r.patterns = append(r.patterns, p)
			continue
		}
		parts := strings.Split(trimmed, "/")
		for j, seg := range parts {
			switch {
			case seg == "":
				return nil, fmt.Errorf("route pattern %q: empty segment", t)
			case seg == "*" && j == len(parts)-1:
				p.rest = true
			case seg == "*", len(seg) > 2 && seg[0] == '{' && seg[len(seg)-1] == '}':
				p.segs = append(p.segs, "")
			case strings.ContainsAny(seg, "{}*"):
				return nil, fmt.Errorf("route pattern %q: segment %q mixes a wildcard with text", t, seg)
			default:
				p.segs = append(p.segs, seg)
			}
		}
		r.patterns = append(r.patterns, p)
	}
	return r, nil
}

// Route returns the template of the first pattern matching path, else
// Route(path). A nil Router only applies the heuristic.
func (r *Router) Route(path string) string {
	if t, ok := r.match(path); ok {
		return t
	}
	return Route(path)
}

// match returns the template of the first pattern matching path.
func (r *Router) match(path string) (string, bool) {
	if r != nil && path != "" && path[0] == '/' {
		for i := range r.patterns {
			if r.patterns[i].match(path) {
				return r.patterns[i].template, true
			}
		}
	}
	return "", false
}

// match reports whether path (which starts with "/") matches the pattern.
func (p *routePattern) match(path string) bool {
	rest := strings.TrimSuffix(path[1:], "/")
	for _, want := range p.segs {
		if rest == "" {
			return false
		}
		seg, after, _ := strings.Cut(rest, "/")
		if seg == "" || want != "" && want != seg {
			return false
		}
		rest = after
	}
	if p.rest {
		return rest != ""
	}
	return rest == ""
}

// forSegments calls f with each segment of path (which starts with "/")
// until f returns false.
func forSegments(path string, f func(string) bool) {
	rest := path[1:]
	for {
		i := strings.IndexByte(rest, '/')
		if i < 0 {
			f(rest)
			return
		}
		if !f(rest[:i]) {
			return
		}
		rest = rest[i+1:]
	}
}

// isIDSegment reports whether a path segment looks like an identifier
// rather than a fixed part of a route.
func isIDSegment(s string) bool {
	if s == "" {
		return false
	}
	if len(s) >= 40 {
		// Nothing this long is a fixed route word.
		return true
	}
	var digits, hexLetters, letters, other int
	tokenChars := true // [A-Za-z0-9._~=+-]
	numeric := true    // digits and separators only
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case '0' <= c && c <= '9':
			digits++
		case 'a' <= c && c <= 'f', 'A' <= c && c <= 'F':
			hexLetters++
			letters++
			numeric = false
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
			letters++
			numeric = false
		case c == '-' || c == '.' || c == '_' || c == ':':
			other++
		case c == '~' || c == '=' || c == '+':
			other++
			numeric = false
		case c == '@':
			return len(s) >= 3
		default:
			tokenChars = false
			numeric = false
		}
	}
	switch {
	case digits == len(s):
		return true // 123
	case numeric && digits > 0:
		return true // 2024-01-02, 1.2.3, 12:30
	case isUUID(s):
		return true
	case digits+hexLetters == len(s) && len(s) >= 16:
		return true // hashes, ObjectIDs
	case digits+hexLetters == len(s) && len(s) >= 8 && digits > 0 && hexLetters > 0:
		return true // short hashes: 9f8e7a6b
	case tokenChars && len(s) >= 16 && digits > 0 && letters > 0:
		return true // base64url tokens, ULIDs, slugs with numbers
	case tokenChars && other == 0 && len(s) >= 6 && letters > 0 && digits*10 >= len(s)*3:
		return true // abc123, user42
	}
	return false
}

// isUUID reports whether s has the 8-4-4-4-12 hex form.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if c != '-' {
				return false
			}
			continue
		}
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}
