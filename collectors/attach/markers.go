package attach

import (
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// ProcessMarkers attaches a collector's process markers (bpf/common.bpf.h:
// mark_exit and mark_exec) to the sched_process_exit and sched_process_exec
// raw tracepoints. The markers travel in the collector's own ring, so that
// they are read in order with its data.
func ProcessMarkers(exit, exec *ebpf.Program) ([]link.Link, error) {
	var links []link.Link
	for _, tp := range []struct {
		name string
		prog *ebpf.Program
	}{
		{"sched_process_exit", exit},
		{"sched_process_exec", exec},
	} {
		l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: tp.name, Program: tp.prog})
		if err != nil {
			closeAll(links)
			return nil, fmt.Errorf("attach raw_tracepoint %s: %w", tp.name, err)
		}
		links = append(links, l)
	}
	return links, nil
}
