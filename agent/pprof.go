package agent

import (
	"net/http"
	"net/http/pprof"
)

// newMux is the metrics server's handler: /metrics, /status and, with
// withPprof (config key pprof, off by default), Go's runtime profiles under
// /debug/pprof/.
func newMux(metrics, status http.Handler, withPprof bool) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/metrics", metrics)
	mux.Handle("/status", status)
	if withPprof {
		// Importing net/http/pprof also registers these on
		// http.DefaultServeMux, which the agent never serves.
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}
