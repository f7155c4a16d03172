package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// stallRing makes one of the agent's ring readers lag behind the others,
// as a starved reader does under load: until ctx is done, it finds the
// agent's thread waiting on the ring buffer map of ringBytes entries (a size
// only that ring has) and stops that thread alone (ptrace) for stop, again
// and again. It returns how many times it stopped it.
func stallRing(ctx context.Context, t *testing.T, pid, ringBytes int, stop time.Duration) int {
	runtime.LockOSThread() // ptrace requests come from the tracing thread
	defer runtime.UnlockOSThread()
	stalls := 0
	for ctx.Err() == nil {
		tid := ringReader(pid, ringBytes)
		if tid == 0 || unix.PtraceSeize(tid) != nil {
			time.Sleep(5 * time.Millisecond)
			continue
		}
		if err := unix.PtraceInterrupt(tid); err == nil {
			var ws unix.WaitStatus
			if _, err := unix.Wait4(tid, &ws, unix.WALL, nil); err == nil {
				stalls++
				select {
				case <-ctx.Done():
				case <-time.After(stop):
				}
			}
		}
		if err := unix.PtraceDetach(tid); err != nil {
			t.Errorf("let agent thread %d go: %v", tid, err)
			return stalls
		}
		time.Sleep(20 * time.Millisecond)
	}
	return stalls
}

// ringReader returns the thread of process pid blocked in epoll on the
// ring buffer map of ringBytes entries, or 0.
func ringReader(pid, ringBytes int) int {
	fdinfo := fmt.Sprintf("/proc/%d/fdinfo", pid)
	fds, err := os.ReadDir(fdinfo)
	if err != nil {
		return 0
	}
	infos := make(map[int]string, len(fds))
	ringFDs := map[int]bool{}
	for _, f := range fds {
		b, err := os.ReadFile(filepath.Join(fdinfo, f.Name()))
		fd, _ := strconv.Atoi(f.Name())
		if err != nil {
			continue
		}
		infos[fd] = string(b)
		if strings.Contains(infos[fd], "map_type:\t27\n") && strings.Contains(infos[fd], fmt.Sprintf("max_entries:\t%d\n", ringBytes)) {
			ringFDs[fd] = true
		}
	}
	epolls := map[int]bool{}
	for fd, info := range infos {
		for line := range strings.Lines(info) {
			if f := strings.Fields(line); len(f) > 1 && f[0] == "tfd:" {
				if n, _ := strconv.Atoi(f[1]); ringFDs[n] {
					epolls[fd] = true
				}
			}
		}
	}
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/syscall", pid, task.Name()))
		f := strings.Fields(string(b))
		if err != nil || len(f) < 2 || !epollWait(f[0]) {
			continue
		}
		if fd, err := strconv.ParseInt(strings.TrimPrefix(f[1], "0x"), 16, 64); err == nil && epolls[int(fd)] {
			tid, _ := strconv.Atoi(task.Name())
			return tid
		}
	}
	return 0
}

// epollWait tells whether a syscall number from /proc/PID/task/TID/syscall
// is an epoll wait.
func epollWait(nr string) bool {
	n, err := strconv.Atoi(nr)
	if err != nil {
		return false
	}
	return n == unix.SYS_EPOLL_PWAIT || n == unix.SYS_EPOLL_PWAIT2 || runtime.GOARCH == "amd64" && n == 232 // epoll_wait
}
