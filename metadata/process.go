package metadata

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"go.opentelemetry.io/otel/attribute"

	"github.com/periscope-apm/periscope/internal/ktime"
	"github.com/periscope-apm/periscope/internal/redact"
	"github.com/periscope-apm/periscope/span"
)

// Limits on what is read from /proc and put on a resource.
const (
	maxEnvironBytes    = 1 << 20 // bytes of /proc/PID/environ read
	maxCmdlineBytes    = 64 << 10
	maxArgsBytes       = 1024 // process.command_args only when the args are this small...
	maxArgs            = 32   // ...and this few
	maxResourceAttrs   = 64   // keys taken from OTEL_RESOURCE_ATTRIBUTES
	defaultMaxEntries  = 1 << 16
	unknownServiceName = "unknown_service"
)

// Processes resolves PIDs to process identities (service.name, container
// and resource attributes) from /proc and caches them. An identity is kept
// after the process exits, because its spans may finish later, until
// Forget is called. It is safe for concurrent use.
//
// A PID names one program between two execs, so identities are ordered by
// the kernel's monotonic clock: each is stamped with when it was read (or,
// for Exec, when the exec happened), and an identity read before the last
// exec Executed reported is tentative (span.Process.Tentative) — it is the
// old program's, kept only until something newer is known.
type Processes struct {
	root       string
	hostName   string
	host       []attribute.KeyValue
	maxEntries int
	args       *redact.Args
	omitArgs   bool

	mu    sync.Mutex
	cache map[uint32]*entry
	// execs holds the execs of PIDs without an entry (most execs on a
	// node are of processes nobody asks about), for the reads of /proc
	// that may still be stored for them; cleared when it reaches
	// maxPendingExecs, by when such reads have long been stored.
	execs map[uint32]uint64
	// discovered is how far the execs of the node have been named
	// (Discovery).
	discovered ktime.Progress
}

// maxPendingExecs bounds Processes.execs.
const maxPendingExecs = 8192

// entry is what is known of one PID.
type entry struct {
	proc *span.Process
	read uint64 // CLOCK_MONOTONIC ns proc describes the process at; 0: proc knows nothing (minimal)
	exec uint64 // CLOCK_MONOTONIC ns of the last exec reported; 0: none
}

// ProcessesConfig configures a Processes resolver. The zero value reads
// /proc and names this host.
type ProcessesConfig struct {
	// ProcRoot is where the proc file system is mounted; "" means "/proc".
	ProcRoot string
	// HostName is put on every identity as host.name; "" means the name
	// of this host (os.Hostname).
	HostName string
	// MaxEntries caps the identities cached; 0 means 65536. Past it the
	// identities of processes that no longer exist are dropped first.
	MaxEntries int
	// Args redacts command lines (process.command, process.command_args)
	// before they reach an identity; nil means the default redaction.
	// Every command line the agent exports goes through it: the ones read
	// from /proc and the ones of exec events.
	Args *redact.Args
	// OmitArgs leaves process.command_args out of every identity.
	OmitArgs bool
	// Host are attributes of the host put on every identity after
	// host.name (HostAttributes: host.id, host.arch, os.*).
	Host []attribute.KeyValue
}

// NewProcesses returns a resolver configured by cfg.
func NewProcesses(cfg ProcessesConfig) *Processes {
	if cfg.ProcRoot == "" {
		cfg.ProcRoot = "/proc"
	}
	if cfg.HostName == "" {
		cfg.HostName, _ = os.Hostname()
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = defaultMaxEntries
	}
	if cfg.Args == nil {
		cfg.Args = redact.NewArgs(redact.ArgsConfig{})
	}
	return &Processes{
		root:       cfg.ProcRoot,
		hostName:   cfg.HostName,
		host:       cfg.Host,
		maxEntries: cfg.MaxEntries,
		args:       cfg.Args,
		omitArgs:   cfg.OmitArgs,
		cache:      make(map[uint32]*entry),
		execs:      make(map[uint32]uint64),
	}
}

// Observe resolves a process now and caches its identity, replacing any
// older one (call it when a process is discovered or executes a new
// program). It fails when the process cannot be read.
func (p *Processes) Observe(pid uint32) (*span.Process, error) {
	read := ktime.Now()
	proc, err := p.resolve(pid)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.store(pid, proc, read), nil
}

// Exec records that pid executed the program at path with argv at
// CLOCK_MONOTONIC time at, as the kernel reported it, replacing any older
// identity. It reads nothing from /proc: Observe does, when the process is
// still there to be read; this is what names a process that exits first (a
// curl living 10 ms), for the spans that finish after it. Its service.name
// is the executable's name, and it has no container: both need /proc.
func (p *Processes) Exec(pid uint32, path string, argv []string, at uint64) {
	name := filepath.Base(path)
	if path == "" {
		if len(argv) == 0 {
			return
		}
		name = filepath.Base(argv[0])
	}
	if !filepath.IsAbs(path) {
		path = ""
	}
	proc := &span.Process{PID: pid, ServiceName: name, Attributes: p.processAttrs(pid, name, path, argv)}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.store(pid, proc, at)
}

// ReadAfterExec makes sure that the identity of pid, which executed a new
// program at CLOCK_MONOTONIC time at (its exec event, Exec), was read from
// /proc after that exec: unless the cached one was, the process is read
// again now (Observe; a process already gone keeps what it has). Call it
// once discovery has handled the exec. Exec's identity has no environment,
// so no OTEL_SERVICE_NAME; a read begun before the exec saw the old
// program, or the new one half set up (the kernel maps the new executable
// before it lays out the new environment: no OTEL_SERVICE_NAME either).
// Nothing else reads the process again: discovery reports it again only
// when it maps new files, which a static program exec'ing the executable
// it ran, or one a half-set-up read already showed, does not; and the
// collectors' exec markers (Executed) only make an identity read before
// them tentative when some collector's ring carries them, in time.
func (p *Processes) ReadAfterExec(pid uint32, at uint64) {
	p.mu.Lock()
	e := p.cache[pid]
	fresh := e != nil && e.read > at // Exec's own identity is stamped at
	p.mu.Unlock()
	if !fresh {
		_, _ = p.Observe(pid)
	}
}

// Executed records that pid executed a new program at CLOCK_MONOTONIC time
// at. Call it at the exec's place in the stream of the process's events
// (a collector's ring), so that the spans after it do not get the old
// program's name: an identity read before at becomes tentative until the
// process is read again or Exec names the new program.
func (p *Processes) Executed(pid uint32, at uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e := p.cache[pid]
	if e == nil {
		if len(p.execs) >= maxPendingExecs {
			clear(p.execs)
		}
		p.execs[pid] = max(p.execs[pid], at)
		return
	}
	if at <= e.exec {
		return
	}
	e.exec = at
	if e.read < at && !e.proc.Tentative {
		e.proc = tentative(e.proc)
	}
}

// Discovery is the progress of process discovery, which reports the execs
// of the node (Exec for the selected programs): it reads its events in a
// ring of its own, which may lag behind the collectors' rings.
func (p *Processes) Discovery() *ktime.Progress { return &p.discovered }

// Awaiting reports whether the name of pid may still come: a collector
// reported an exec of it (Executed) that discovery has not reached yet
// (Discovery), and nothing read since names it. The span of a process
// that lived a few milliseconds waits for that, rather than leave
// unnamed.
func (p *Processes) Awaiting(pid uint32) bool {
	p.mu.Lock()
	at := p.execs[pid]
	if e := p.cache[pid]; e != nil {
		at = e.exec
		if e.read >= at && e.proc.ServiceName != unknownServiceName {
			at = 0
		}
	}
	p.mu.Unlock()
	return at != 0 && p.discovered.Load() < at
}

// Process returns the identity of a process: the cached one, or one
// resolved now. It never returns nil: a process that cannot be read gets an
// identity with only its PID (which is cached too). A tentative identity is
// read again, and replaced when the process can be read; while it cannot,
// the tentative one is returned.
func (p *Processes) Process(pid uint32) *span.Process {
	p.mu.Lock()
	var cached *span.Process
	if e := p.cache[pid]; e != nil {
		cached = e.proc
	}
	p.mu.Unlock()
	if cached != nil && !cached.Tentative {
		return cached
	}
	read := ktime.Now()
	proc, err := p.resolve(pid)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err == nil {
		return p.store(pid, proc, read)
	}
	if e := p.cache[pid]; e != nil {
		return e.proc // gone: the last identity stays
	}
	return p.store(pid, p.minimal(pid), 0)
}

// Forget drops the identity of a process (call it once the spans of an
// exited process are done, so that a new process with the same PID is
// resolved afresh).
func (p *Processes) Forget(pid uint32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.cache, pid)
	delete(p.execs, pid)
}

// store caches an identity describing the process at time read, unless a
// newer one is cached, and returns the identity cached; p.mu is held.
func (p *Processes) store(pid uint32, proc *span.Process, read uint64) *span.Process {
	e := p.cache[pid]
	if e == nil {
		e = &entry{exec: p.execs[pid]}
		delete(p.execs, pid)
		p.insert(pid, e)
	}
	if e.proc != nil && read < e.read {
		return e.proc // read before what is cached: older
	}
	if read < e.exec {
		proc.Tentative = true
	}
	e.proc, e.read = proc, read
	return proc
}

// insert adds an entry; p.mu is held. When the cache is full, the entries
// of processes that no longer exist are dropped first.
func (p *Processes) insert(pid uint32, e *entry) {
	if len(p.cache) >= p.maxEntries {
		for old := range p.cache {
			if _, err := os.Stat(filepath.Join(p.root, strconv.FormatUint(uint64(old), 10))); errors.Is(err, os.ErrNotExist) {
				delete(p.cache, old)
			}
		}
		for old := range p.cache {
			if len(p.cache) < p.maxEntries {
				break
			}
			delete(p.cache, old)
		}
	}
	p.cache[pid] = e
}

// tentative returns a copy of proc marked tentative.
func tentative(proc *span.Process) *span.Process {
	t := *proc
	t.Tentative = true
	return &t
}

func (p *Processes) minimal(pid uint32) *span.Process {
	attrs := []attribute.KeyValue{attribute.Int64("process.pid", int64(pid))}
	if p.hostName != "" {
		attrs = append(attrs, attribute.String("host.name", p.hostName))
	}
	attrs = append(attrs, p.host...)
	return &span.Process{PID: pid, ServiceName: unknownServiceName, Attributes: attrs}
}

// resolve reads a process's identity from /proc. It runs for every exec
// of a selected program. It reads by hand what gopsutil's process package
// could: for the executable, command line and comm gopsutil is about as
// fast (BenchmarkIdentityRead: 71–113 µs by hand, 96–159 µs with gopsutil
// on a busy 2-core VM), but it reads the command line whole where this
// stops at maxCmdlineBytes, and its Environ keeps every variable (secrets)
// where parseEnviron keeps two; the cgroup it does not read at all.
func (p *Processes) resolve(pid uint32) (*span.Process, error) {
	dir := filepath.Join(p.root, strconv.FormatUint(uint64(pid), 10))
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("resolve process %d: %w", pid, err)
	}

	exe, _ := os.Readlink(filepath.Join(dir, "exe"))
	exe = strings.TrimSuffix(exe, " (deleted)")
	var argv []string
	if b, err := readLimited(filepath.Join(dir, "cmdline"), maxCmdlineBytes); err == nil {
		argv = splitNUL(b)
	}
	comm := ""
	if b, err := readLimited(filepath.Join(dir, "comm"), 256); err == nil {
		comm = strings.TrimSpace(string(b))
	}
	var env environ
	if b, err := readLimited(filepath.Join(dir, "environ"), maxEnvironBytes); err == nil {
		env = parseEnviron(b)
	}
	// The container is read now, while the process runs: the cgroup file
	// disappears with it.
	var ctr Container
	if f, err := os.Open(filepath.Join(dir, "cgroup")); err == nil {
		ctr, _ = ParseCgroup(f) // a partial read still names what it read
		f.Close()
	}

	exeName := ""
	switch {
	case exe != "":
		exeName = filepath.Base(exe)
	case comm != "":
		exeName = comm
	case len(argv) > 0:
		exeName = filepath.Base(argv[0])
	}

	resAttrs := parseResourceAttributes(env.resourceAttributes)
	service := strings.TrimSpace(env.serviceName)
	if service == "" {
		service = resAttrs["service.name"]
	}
	if service == "" {
		service = exeName
	}
	if service == "" {
		service = unknownServiceName
	}

	attrs := p.processAttrs(pid, exeName, exe, argv)
	if ctr.ID != "" {
		attrs = append(attrs, attribute.String("container.id", ctr.ID))
	}
	// The application's own resource attributes, except those this
	// resolver knows better.
	keys := make([]string, 0, len(resAttrs))
	for k := range resAttrs {
		if k == "container.id" && ctr.ID != "" {
			continue
		}
		if k != "service.name" && k != "host.name" && !strings.HasPrefix(k, "process.") && !p.hasHostKey(k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		attrs = append(attrs, attribute.String(k, resAttrs[k]))
	}
	return &span.Process{
		PID:         pid,
		ServiceName: service,
		ContainerID: ctr.ID,
		PodUID:      ctr.PodUID,
		Attributes:  attrs,
	}, nil
}

// hasHostKey reports whether key is one of the host attributes the
// resolver puts on every identity.
func (p *Processes) hasHostKey(key string) bool {
	for _, a := range p.host {
		if string(a.Key) == key {
			return true
		}
	}
	return false
}

// processAttrs returns the process.*, host.name and host attributes of a
// process, its command line redacted; empty values are left out.
func (p *Processes) processAttrs(pid uint32, exeName, exePath string, argv []string) []attribute.KeyValue {
	attrs := []attribute.KeyValue{attribute.Int64("process.pid", int64(pid))}
	if exeName != "" {
		attrs = append(attrs, attribute.String("process.executable.name", exeName))
	}
	if exePath != "" {
		attrs = append(attrs, attribute.String("process.executable.path", exePath))
	}
	if len(argv) > 0 {
		if p.omitArgs || !smallArgs(argv) {
			argv = argv[:1]
		}
		argv = p.args.Redact(argv)
		attrs = append(attrs, attribute.String("process.command", argv[0]))
		if len(argv) > 1 {
			attrs = append(attrs, attribute.StringSlice("process.command_args", argv[1:]))
		}
	}
	if p.hostName != "" {
		attrs = append(attrs, attribute.String("host.name", p.hostName))
	}
	return append(attrs, p.host...)
}

func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, limit))
}

func splitNUL(b []byte) []string {
	b = bytes.TrimRight(b, "\x00")
	if len(b) == 0 {
		return nil
	}
	parts := bytes.Split(b, []byte{0})
	out := make([]string, len(parts))
	for i, p := range parts {
		out[i] = string(p)
	}
	return out
}

// environ holds the variables the resolver reads. Nothing else from the
// environment is kept: it holds secrets.
type environ struct {
	serviceName        string
	resourceAttributes string
}

func parseEnviron(b []byte) environ {
	var env environ
	for len(b) > 0 {
		var kv []byte
		if i := bytes.IndexByte(b, 0); i >= 0 {
			kv, b = b[:i], b[i+1:]
		} else {
			kv, b = b, nil
		}
		k, v, ok := bytes.Cut(kv, []byte{'='})
		if !ok {
			continue
		}
		switch string(k) {
		case "OTEL_SERVICE_NAME":
			env.serviceName = string(v)
		case "OTEL_RESOURCE_ATTRIBUTES":
			env.resourceAttributes = string(v)
		}
	}
	return env
}

// parseResourceAttributes parses OTEL_RESOURCE_ATTRIBUTES: comma-separated
// key=value pairs with percent-encoded values. Invalid pairs are skipped.
func parseResourceAttributes(s string) map[string]string {
	out := make(map[string]string)
	for pair := range strings.SplitSeq(s, ",") {
		if len(out) >= maxResourceAttrs {
			break
		}
		k, v, ok := strings.Cut(pair, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" {
			continue
		}
		dv, err := percentDecode(v)
		if err != nil {
			continue
		}
		out[k] = dv
	}
	return out
}

func percentDecode(s string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", errors.New("truncated % escape")
		}
		v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
		if err != nil {
			return "", fmt.Errorf("bad %% escape: %w", err)
		}
		b.WriteByte(byte(v))
		i += 2
	}
	return b.String(), nil
}

// smallArgs reports whether the arguments after argv[0] are few and short
// enough for process.command_args.
func smallArgs(argv []string) bool {
	args := argv[1:]
	if len(args) > maxArgs {
		return false
	}
	n := 0
	for _, a := range args {
		n += len(a)
	}
	return n <= maxArgsBytes
}
