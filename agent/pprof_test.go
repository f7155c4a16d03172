package agent

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestMuxPprofOnlyWhenEnabled(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) })
	for _, tc := range []struct {
		pprof bool
		path  string
		code  int
		body  string
	}{
		{false, "/debug/pprof/", http.StatusNotFound, ""},
		{false, "/debug/pprof/profile?seconds=1", http.StatusNotFound, ""},
		{false, "/metrics", http.StatusOK, "ok"},
		{true, "/debug/pprof/", http.StatusOK, "goroutine"},
		{true, "/debug/pprof/cmdline", http.StatusOK, ""},
		{true, "/status", http.StatusOK, "ok"},
	} {
		rec := httptest.NewRecorder()
		newMux(ok, ok, tc.pprof).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tc.path, nil))
		if rec.Code != tc.code || !strings.Contains(rec.Body.String(), tc.body) {
			t.Errorf("pprof=%v GET %s: %d %.80q, want %d containing %q", tc.pprof, tc.path, rec.Code, rec.Body.String(), tc.code, tc.body)
		}
	}
}
