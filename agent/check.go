package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"text/tabwriter"

	"github.com/periscope-apm/periscope/collectors/attach"
	"github.com/periscope-apm/periscope/collectors/syscalls"
	"github.com/periscope-apm/periscope/collectors/tcp"
	"github.com/periscope-apm/periscope/discovery"
	"github.com/periscope-apm/periscope/internal/kernel"
	"github.com/periscope-apm/periscope/symbols"
)

// Report is what `periscope check` prints.
type Report struct {
	Features kernel.Features
	// Paths says, per collector, which attach path it will use here, or
	// why it cannot run.
	Paths []CollectorPath
}

// CollectorPath is one collector's plan on this kernel.
type CollectorPath struct {
	Collector string
	OK        bool
	Path      string
}

// Check probes the kernel and decides each collector's attach path.
func Check() Report {
	fs := kernel.Probe()
	r := Report{Features: fs}
	need := func(names ...string) (bool, string) {
		var missing []string
		for _, n := range names {
			if !fs.Has(n) {
				missing = append(missing, n)
			}
		}
		if len(missing) > 0 {
			return false, "unavailable: needs " + strings.Join(missing, ", ")
		}
		return true, ""
	}
	ok, why := need(kernel.BTF, kernel.RingBuf, kernel.RawTracepoint, kernel.SyscallTracepoint)
	r.Paths = append(r.Paths, CollectorPath{"discovery", ok, pick(ok, why, discovery.AttachPath)})
	ok, why = need(kernel.BTF, kernel.RingBuf, kernel.Uprobe, kernel.RawTracepoint, kernel.SyscallTracepoint)
	r.Paths = append(r.Paths, CollectorPath{"openssl", ok, pick(ok, why,
		"uprobe+uretprobe on SSL_read/SSL_write(_ex) or the internal function they share, uprobes on SSL_free and SSL_do_handshake (emulated instructions), as "+
			multiLinks(fs)+", once per file; SSL*->socket via the agent's raw syscall pair")})
	ok, why = need(kernel.BTF, kernel.RingBuf, kernel.Uprobe, kernel.RawTracepoint)
	r.Paths = append(r.Paths, CollectorPath{"gohttp", ok, pick(ok, why,
		"uprobes on the stack-check branch of net/http ServeHTTP, finishRequest, HTTP/2 handlerDone, "+
			"persistConn.roundTrip and HTTP/2 ClientConn.roundTrip (+ their RETs), as "+
			multiLinks(fs)+"; HTTP/1.x and HTTP/2, Go "+strings.Join(symbols.SupportedGoVersions(), ", ")+" (amd64, arm64)")})
	ok, why = need(kernel.BTF, kernel.RingBuf, kernel.Uprobe, kernel.RawTracepoint, kernel.SyscallTracepoint)
	r.Paths = append(r.Paths, CollectorPath{"gotls", ok, pick(ok, why,
		"uprobes on the stack-check branch of crypto/tls (*Conn).Write and Read and on Read's CALL runtime.memmove, as "+
			multiLinks(fs)+"; *tls.Conn->socket via struct offsets; net/http's connections left to gohttp")})
	ok, why = need(kernel.BTF, kernel.RingBuf, kernel.SyscallTracepoint)
	kind := syscalls.Kind(syscalls.Typed())
	r.Paths = append(r.Paths, CollectorPath{"sockets", ok, pick(ok, why,
		kind+" raw_syscalls:sys_enter/sys_exit, the agent's one syscall program pair, dispatching on the syscall number "+
			"(read/write/readv/writev/recvfrom/sendto/recvmsg/sendmsg/recvmmsg/sendmmsg/sendfile + close, dup, socket, accept); "+
			"TCP sockets classified in the kernel, plaintext HTTP/1.x and HTTP/2 copied")})
	ok, why = need(kernel.BTF, kernel.RingBuf, kernel.SyscallTracepoint)
	r.Paths = append(r.Paths, CollectorPath{"syscalls", ok, pick(ok, why,
		kind+" raw_syscalls:sys_enter/sys_exit: the only syscall hook of the agent, for every collector "+
			"(the sockets collector's programs, or a pair of its own when plaintext is off): no syscalls:sys_* tracepoint")})
	r.Paths = append(r.Paths, tcpPath(need(kernel.BTF, kernel.RingBuf)))
	return r
}

// tcpPath decides the TCP collector's hook the way the collector does: by
// loading and attaching its programs in its default order.
func tcpPath(ok bool, why string) CollectorPath {
	if !ok {
		return CollectorPath{tcp.Name, false, why}
	}
	hook, failed := tcp.Probe(slog.Default())
	if hook == "" {
		return CollectorPath{tcp.Name, false, "unavailable: " + errors.Join(failed...).Error()}
	}
	return CollectorPath{tcp.Name, true, hook.Describe() + "; owners from raw tracepoint sock:inet_sock_set_state + accept(4) in the agent's raw syscall pair, /proc"}
}

// multiLinks names the kind of uprobe links the collectors will use.
func multiLinks(fs kernel.Features) string {
	return attach.LinksName(fs.Has(kernel.UprobeMultiLink))
}

func pick(ok bool, why, path string) string {
	if ok {
		return path
	}
	return why
}

// String renders the report as two tables.
func (r Report) String() string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KERNEL FEATURE\tSTATUS\tDETAIL")
	for _, f := range r.Features {
		status := "ok"
		if !f.OK {
			status = "no"
			if f.Required {
				status = "MISSING"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", f.Name, status, oneLine(f.Detail))
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "COLLECTOR\tSTATUS\tATTACH PATH")
	for _, p := range r.Paths {
		status := "ok"
		if !p.OK {
			status = "off"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", p.Collector, status, p.Path)
	}
	tw.Flush()
	return b.String()
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 110 {
		s = s[:107] + "..."
	}
	return s
}
