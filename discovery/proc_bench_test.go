package discovery

import (
	"context"
	"os"
	"testing"

	"github.com/shirou/gopsutil/v4/process"
)

// Hand-written /proc reads against gopsutil's for the same facts, on this
// test process. The figures quoted in proc.go come from
//
//	go test -run '^$' -bench 'Proc' -benchmem ./discovery

func BenchmarkProcPPID(b *testing.B) {
	pid := uint32(os.Getpid())
	dir := procDir("/proc", pid)
	b.Run("handwritten", func(b *testing.B) {
		for b.Loop() {
			if readPPID(dir) == 0 {
				b.Fatal("no parent")
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
			if ppid, err := p.PpidWithContext(ctx); err != nil || ppid == 0 {
				b.Fatal(ppid, err)
			}
		}
	})
}

func BenchmarkProcMaps(b *testing.B) {
	pid := uint32(os.Getpid())
	b.Run("handwritten", func(b *testing.B) {
		for b.Loop() {
			if m, err := readMaps("/proc", pid); err != nil || len(m) == 0 {
				b.Fatal(len(m), err)
			}
		}
	})
	// gopsutil's closest call reads smaps (it has no device and inode,
	// which the table needs): what it would cost even if it did.
	b.Run("gopsutil", func(b *testing.B) {
		ctx := context.Background()
		p, err := process.NewProcessWithContext(ctx, int32(pid))
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if m, err := p.MemoryMapsWithContext(ctx, false); err != nil || len(*m) == 0 {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkProcList(b *testing.B) {
	b.Run("handwritten", func(b *testing.B) {
		for b.Loop() {
			if pids, err := listPIDs("/proc"); err != nil || len(pids) == 0 {
				b.Fatal(err)
			}
		}
	})
	b.Run("gopsutil", func(b *testing.B) {
		ctx := context.Background()
		for b.Loop() {
			if pids, err := process.PidsWithContext(ctx); err != nil || len(pids) == 0 {
				b.Fatal(err)
			}
		}
	})
}
