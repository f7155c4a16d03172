// Package tracefs makes sure the kernel's tracing filesystem is mounted:
// attaching to a tracepoint needs its ID from tracefs, and some hosts (and
// containers with a fresh /sys) do not mount it.
package tracefs

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Dirs are the places the kernel's tracing directory is found.
var dirs = []string{"/sys/kernel/tracing", "/sys/kernel/debug/tracing"}

// Path returns the mounted tracing directory, or "".
func Path() string {
	for _, d := range dirs {
		if _, err := os.Stat(d + "/events"); err == nil {
			return d
		}
	}
	return ""
}

// Ensure returns the tracing directory, mounting tracefs at
// /sys/kernel/tracing if nothing is mounted yet. mounted reports whether it
// had to mount it.
func Ensure() (dir string, mounted bool, err error) {
	if d := Path(); d != "" {
		return d, false, nil
	}
	if err := unix.Mount("nodev", dirs[0], "tracefs", 0, ""); err != nil {
		if errors.Is(err, unix.EPERM) {
			return "", false, fmt.Errorf("mount tracefs at %s: %w (mount it on the host, or grant CAP_SYS_ADMIN)", dirs[0], err)
		}
		return "", false, fmt.Errorf("mount tracefs at %s: %w", dirs[0], err)
	}
	if Path() == "" {
		return "", true, fmt.Errorf("tracefs mounted at %s but has no events directory", dirs[0])
	}
	return dirs[0], true, nil
}
