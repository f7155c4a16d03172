// Package harness holds the helpers of Periscope's end-to-end tests: real targets
// (nginx with TLS), a real OTLP backend (Jaeger v2), the agent binary itself, and
// checks of their prerequisites.
//
// Every prerequisite that is missing (not root, a tool not installed) fails the test
// with a message that says how to fix it; nothing is skipped. Tools come from
// scripts/deps.sh (Debian packages) and scripts/tools.sh (tools built from the Go
// module proxy into a cache outside the repository).
package harness

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// RequireRoot fails the test unless it runs as root (eBPF and uprobes need it).
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("this test must run as root (euid is %d): run `sudo make test`", os.Geteuid())
	}
}

// LookTool returns the absolute path of the executable name, looked up in PATH and
// then in the sbin directories (nginx lives in /usr/sbin, which a non-login PATH may
// lack). It fails the test when the tool is missing.
func LookTool(t testing.TB, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			return abs
		}
		return p
	}
	for _, dir := range []string{"/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/local/bin", "/usr/bin", "/bin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	t.Fatalf("required tool %q not found in PATH (%s) nor in the sbin directories: run `make deps` (scripts/deps.sh) to install the test dependencies",
		name, os.Getenv("PATH"))
	return ""
}

// RepoRoot returns the repository root: the first directory at or above the working
// directory that holds a go.mod. Tests run in their package directory, so this finds
// the module root.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := repoRoot()
	if err != nil {
		t.Fatalf("%v", err)
	}
	return dir
}

func repoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("getwd: %w", err)
	}
	for dir := wd; ; {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod found at or above %s", wd)
		}
		dir = parent
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("FreePort: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitTCP waits until addr accepts TCP connections, the context ends, or exited
// (when not nil) is closed because the process that should listen has died.
func waitTCP(ctx context.Context, addr string, exited <-chan struct{}) error {
	for {
		d := net.Dialer{Timeout: 500 * time.Millisecond}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s does not accept connections: %w (last error: %v)", addr, ctx.Err(), err)
		case <-exited:
			return errors.New("process exited before " + addr + " accepted connections")
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// tail returns the last max bytes of the file at path, for error messages.
func tail(path string, max int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	if len(b) > max {
		b = append([]byte("...\n"), b[len(b)-max:]...)
	}
	return strings.TrimRight(string(b), "\n")
}

// dumpOnFailure registers a cleanup that copies the named files into the test log
// when the test has failed.
func dumpOnFailure(t testing.TB, what string, files ...string) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, f := range files {
			t.Logf("---- %s: %s ----\n%s", what, f, tail(f, 64<<10))
		}
	})
}

// ChildPIDs returns the PIDs of the direct children of pid.
func ChildPIDs(pid int) []int { return childPIDs(pid) }

// childPIDs returns the PIDs of the direct children of pid, read from
// /proc/PID/task/*/children.
func childPIDs(pid int) []int {
	var out []int
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, s := range strings.Fields(string(b)) {
			var c int
			if _, err := fmt.Sscanf(s, "%d", &c); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}

// processAlive reports whether pid exists and is not a zombie.
func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return false
	}
	return s[i+2] != 'Z' && s[i+2] != 'X'
}

// ListeningAddrs returns the TCP addresses ("127.0.0.1:4317", "[::]:16686") on
// which process pid has listening sockets, read from /proc.
func ListeningAddrs(pid int) ([]string, error) {
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return nil, err
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	var out []string
	for _, f := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		if err != nil {
			return nil, err
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fields := strings.Fields(line)
			// sl local rem st tx:rx tr:when retrnsmt uid timeout inode
			if len(fields) < 10 || fields[3] != "0A" || !inodes[fields[9]] {
				continue
			}
			addr, err := decodeProcAddr(fields[1])
			if err != nil {
				return nil, err
			}
			out = append(out, addr)
		}
	}
	return out, nil
}

// decodeProcAddr decodes "0100007F:10E1" (/proc/net/tcp: the address as host-order
// 32-bit words in hex) into "127.0.0.1:4321".
func decodeProcAddr(s string) (string, error) {
	hexIP, hexPort, ok := strings.Cut(s, ":")
	if !ok {
		return "", fmt.Errorf("bad /proc/net/tcp address %q", s)
	}
	raw, err := hex.DecodeString(hexIP)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return "", fmt.Errorf("bad /proc/net/tcp address %q", s)
	}
	port, err := strconv.ParseUint(hexPort, 16, 16)
	if err != nil {
		return "", fmt.Errorf("bad /proc/net/tcp port %q", s)
	}
	ip := make(net.IP, len(raw))
	for i := 0; i < len(raw); i += 4 { // each 32-bit word is little-endian
		ip[i], ip[i+1], ip[i+2], ip[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
	}
	if v4 := ip.To4(); v4 != nil && len(raw) == 16 && !ip.IsUnspecified() {
		ip = v4
	}
	return net.JoinHostPort(ip.String(), strconv.Itoa(int(port))), nil
}

// CopyExe copies the executable src (a path, or a name looked up in PATH)
// into a fresh temporary directory as name, so that a test can have the
// agent trace exactly its own copy (--include-exe name) and not the same
// program run by anything else on the machine. It returns the copy's path.
func CopyExe(t testing.TB, src, name string) string {
	t.Helper()
	return CopyExeTo(t, src, t.TempDir(), name)
}

// CopyExeTo is CopyExe into dir, which must not hold name yet (several
// copies in one directory can be selected together with --include-exe
// DIR/*).
func CopyExeTo(t testing.TB, src, dir, name string) string {
	t.Helper()
	if !strings.ContainsRune(src, '/') {
		src = LookTool(t, src)
	}
	real, err := filepath.EvalSymlinks(src)
	if err != nil {
		t.Fatalf("CopyExe: %v", err)
	}
	in, err := os.Open(real)
	if err != nil {
		t.Fatalf("CopyExe: %v", err)
	}
	defer in.Close()
	dst := filepath.Join(dir, name)
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatalf("CopyExe: %v", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		t.Fatalf("CopyExe: copy %s: %v", real, err)
	}
	if err := out.Close(); err != nil {
		t.Fatalf("CopyExe: %v", err)
	}
	return dst
}
