package kernels

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Kernel is one kernel of kernels.txt, prepared by scripts/kernels.sh.
type Kernel struct {
	Name    string
	Dir     string // vmlinuz, initrd.img, root.img
	Package string // "PACKAGE VERSION"
	Release string // uname -r
}

// Prepare runs scripts/kernels.sh (which builds what is missing from its
// cache, within its own time limits) and returns the kernels of the table.
func Prepare(ctx context.Context, repo string) ([]Kernel, error) {
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(repo, "scripts", "kernels.sh"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("scripts/kernels.sh: %w\n%s", err, tailString(stderr.String(), 8<<10))
	}
	var ks []Kernel
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		name, dir, ok := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		if !ok {
			return nil, fmt.Errorf("scripts/kernels.sh printed %q, want NAME DIR", sc.Text())
		}
		k := Kernel{Name: name, Dir: dir}
		for field, file := range map[*string]string{&k.Package: "package", &k.Release: "release"} {
			b, err := os.ReadFile(filepath.Join(dir, file))
			if err != nil {
				return nil, err
			}
			*field = strings.TrimSpace(string(b))
		}
		ks = append(ks, k)
	}
	if len(ks) == 0 {
		return nil, errors.New("scripts/kernels.sh listed no kernel")
	}
	return ks, nil
}

// Boot is one guest run's outcome.
type Boot struct {
	Result   *Result       // nil when the guest sent none
	Console  string        // what the guest printed on ttyS0
	Duration time.Duration // from qemu's start to its exit
}

// BootGuest boots k under qemu with the test's disk image in (mounted on /mnt/in
// in the guest, whose /mnt/in/init runs as PID 1) and returns what came back.
// The root image is used copy-on-write (-snapshot): the cache stays pristine.
// ctx bounds the whole boot: qemu is killed when it ends.
func BootGuest(ctx context.Context, k Kernel, in, workDir string) (Boot, error) {
	console := filepath.Join(workDir, k.Name+".console.log")
	result := filepath.Join(workDir, k.Name+".result.log")
	args := []string{
		"-nodefaults", "-display", "none", "-no-reboot",
		// Software emulation: the machines here have a /dev/kvm whose
		// qemu dies setting MSRs; TCG is slow but works everywhere.
		// One vCPU: qemu 7.2's multi-threaded TCG (a host thread per
		// vCPU) lets a vCPU run code another vCPU has just rewritten
		// from a stale translation. The kernel rewrites its text when a
		// syscall tracepoint is switched on or off (static keys, int3
		// via text_poke_bp), and with two vCPUs the guests oopsed on an
		// int3 that was no longer in memory (6.12) or hung (6.1) while
		// the agent attached or detached; `echo 1 > .../sys_enter_read/
		// enable` loops next to a syscall-heavy process do the same with
		// no BPF at all. thread=single also avoids it but makes every
		// IPI wait for qemu's round robin (the agent took 76 s to start
		// instead of 28 on the same loaded machine).
		"-accel", "tcg",
		"-machine", "q35", "-cpu", "max", "-smp", "1", "-m", "2048",
		"-kernel", filepath.Join(k.Dir, "vmlinuz"),
		"-initrd", filepath.Join(k.Dir, "initrd.img"),
		"-append", "console=ttyS0 panic=-1 loglevel=4",
		"-drive", "file=" + filepath.Join(k.Dir, "root.img") + ",format=raw,if=virtio,snapshot=on",
		"-drive", "file=" + in + ",format=raw,if=virtio,readonly=on",
		"-serial", "file:" + console,
		"-serial", "file:" + result,
	}
	start := time.Now()
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", args...)
	// qemu must not outlive a test binary that died (go test -timeout).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	err := cmd.Run()
	b := Boot{Duration: time.Since(start)}
	con, _ := os.ReadFile(console)
	b.Console = string(con)
	if ctx.Err() != nil {
		return b, fmt.Errorf("qemu killed after %v: %w", b.Duration.Round(time.Second), ctx.Err())
	}
	if err != nil {
		return b, fmt.Errorf("qemu: %w: %s", err, stderr.String())
	}
	res, err := readResult(result)
	if err != nil {
		return b, err
	}
	b.Result = res
	return b, nil
}

// readResult finds the marked line in the guest's result port output.
func readResult(path string) (*Result, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(string(raw), "\n") {
		_, js, ok := strings.Cut(strings.TrimRight(line, "\r"), ResultMarker)
		if !ok {
			continue
		}
		var r Result
		if err := json.Unmarshal([]byte(js), &r); err != nil {
			return nil, fmt.Errorf("the guest's result: %w", err)
		}
		return &r, nil
	}
	return nil, fmt.Errorf("the guest sent no result (%d bytes on its result port)", len(raw))
}

// MakeDisk writes an ext4 image of the directory dir to path, with room to
// spare.
func MakeDisk(ctx context.Context, dir, path string) error {
	var size int64
	err := filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil {
			size += fi.Size()
		}
		return err
	})
	if err != nil {
		return err
	}
	mib := size*3/2>>20 + 64
	out, err := exec.CommandContext(ctx, "mkfs.ext4", "-q", "-F", "-d", dir, path, fmt.Sprintf("%dM", mib)).CombinedOutput()
	if err != nil {
		return fmt.Errorf("mkfs.ext4 -d %s: %w: %s", dir, err, out)
	}
	return nil
}

func tailString(s string, n int) string {
	if len(s) > n {
		return "...\n" + s[len(s)-n:]
	}
	return s
}
