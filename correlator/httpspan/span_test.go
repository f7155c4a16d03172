package httpspan

import "testing"

func TestSplitHostPort(t *testing.T) {
	for _, tc := range []struct {
		in   string
		host string
		port int
	}{
		{"", "", 0},
		{"example.com", "example.com", 0},
		{"example.com:8443", "example.com", 8443},
		{"example.com:", "example.com", 0},
		{"example.com:99999", "example.com", 0},
		{"example.com:x", "example.com", 0},
		{"[::1]:9443", "::1", 9443},
		{"[::1]", "::1", 0},
		{"[::1", "::1", 0},
		{"::1", "::1", 0},
		{"10.0.0.1:80", "10.0.0.1", 80},
	} {
		host, port := splitHostPort(tc.in)
		if host != tc.host || port != tc.port {
			t.Errorf("splitHostPort(%q) = %q, %d; want %q, %d", tc.in, host, port, tc.host, tc.port)
		}
	}
}
