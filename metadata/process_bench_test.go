package metadata

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/shirou/gopsutil/v4/process"
)

// What resolve reads of a process (executable, command line, comm), by
// hand and with gopsutil, on this test process. The figures quoted in
// process.go come from
//
//	go test -run '^$' -bench 'Identity' -benchmem ./metadata
func BenchmarkIdentityRead(b *testing.B) {
	pid := os.Getpid()
	dir := filepath.Join("/proc", strconv.Itoa(pid))
	b.Run("handwritten", func(b *testing.B) {
		for b.Loop() {
			exe, _ := os.Readlink(filepath.Join(dir, "exe"))
			cmd, err := readLimited(filepath.Join(dir, "cmdline"), maxCmdlineBytes)
			comm, err2 := readLimited(filepath.Join(dir, "comm"), 256)
			if exe == "" || err != nil || err2 != nil || len(splitNUL(cmd)) == 0 || strings.TrimSpace(string(comm)) == "" {
				b.Fatal(exe, err, err2)
			}
		}
	})
	b.Run("gopsutil", func(b *testing.B) {
		ctx := context.Background()
		for b.Loop() {
			p, err := process.NewProcessWithContext(ctx, int32(pid))
			if err != nil {
				b.Fatal(err)
			}
			exe, _ := p.ExeWithContext(ctx)
			argv, err := p.CmdlineSliceWithContext(ctx)
			name, err2 := p.NameWithContext(ctx)
			if exe == "" || err != nil || err2 != nil || len(argv) == 0 || name == "" {
				b.Fatal(exe, err, err2)
			}
		}
	})
}
