package ring

import (
	"fmt"
	"os"
	"sync/atomic"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// The BPF ring buffer's layout (kernel/bpf/ringbuf.c): a consumer page
// (writable by user space: the consumer position), a producer page (the
// producer position), then the data pages. Every record starts 8-byte
// aligned with an 8-byte header: its length, with the busy and discard
// bits, and a page offset that only the kernel uses.
const (
	ringHeaderBytes = 8
	ringBusyBit     = 1 << 31
	ringDiscardBit  = 1 << 30
)

// consumer reads a BPF ring buffer's records straight from its mapped
// pages: no system call per read. The kernel maps the data pages twice in a
// row so that a record which wraps can be read in place; consumer maps them
// once (every mapped page is resident, and counted in the agent's RSS) and
// copies the rare record that wraps instead.
type consumer struct {
	consPage, prodPage []byte
	cons, prod         *uint64
	data               []byte
	mask               uint64
	wrapped            []byte // a wrapping record, copied
}

func newConsumer(m *ebpf.Map) (*consumer, error) {
	size := int(m.MaxEntries())
	page := os.Getpagesize()
	if size <= 0 || size&(size-1) != 0 {
		return nil, fmt.Errorf("ring buffer %s: size %d is not a power of two", m, size)
	}
	consPage, err := unix.Mmap(m.FD(), 0, page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("map the consumer page of %s: %w", m, err)
	}
	prodPage, err := unix.Mmap(m.FD(), int64(page), page+size, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		_ = unix.Munmap(consPage)
		return nil, fmt.Errorf("map the data pages of %s: %w", m, err)
	}
	return &consumer{
		consPage: consPage,
		prodPage: prodPage,
		cons:     (*uint64)(unsafe.Pointer(&consPage[0])),
		prod:     (*uint64)(unsafe.Pointer(&prodPage[0])),
		data:     prodPage[page:],
		mask:     uint64(size - 1),
	}, nil
}

// AvailableBytes is what the producer has reserved and the consumer not yet
// read (records still being written included).
func (c *consumer) AvailableBytes() int {
	return int(atomic.LoadUint64(c.prod) - atomic.LoadUint64(c.cons))
}

// drain hands every record submitted, in order, to handle and frees its
// space; it stops at the first record still being written. The slice is
// only valid during the call.
func (c *consumer) drain(handle func([]byte)) {
	cons := atomic.LoadUint64(c.cons)
	prod := atomic.LoadUint64(c.prod)
	for cons < prod {
		hdr := atomic.LoadUint32((*uint32)(unsafe.Pointer(&c.data[cons&c.mask])))
		if hdr&ringBusyBit != 0 {
			break
		}
		size := uint64(hdr &^ (ringBusyBit | ringDiscardBit))
		if hdr&ringDiscardBit == 0 {
			handle(c.record(cons+ringHeaderBytes, size))
		}
		cons += (ringHeaderBytes + size + 7) &^ 7
		// Frees the record's space for the producer at once (what the
		// kernel's wake-up decision reads, too).
		atomic.StoreUint64(c.cons, cons)
		prod = max(prod, atomic.LoadUint64(c.prod))
	}
}

// record is the size bytes at position pos, copied when they wrap.
func (c *consumer) record(pos, size uint64) []byte {
	start := pos & c.mask
	if start+size <= uint64(len(c.data)) {
		return c.data[start : start+size : start+size]
	}
	c.wrapped = append(c.wrapped[:0], c.data[start:]...)
	c.wrapped = append(c.wrapped, c.data[:size-(uint64(len(c.data))-start)]...)
	return c.wrapped
}

func (c *consumer) close() {
	_ = unix.Munmap(c.prodPage)
	_ = unix.Munmap(c.consPage)
}
