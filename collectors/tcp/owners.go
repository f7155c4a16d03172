package tcp

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/periscope-apm/periscope/internal/procnet"
)

// procOwner is a process holding a socket.
type procOwner struct {
	pid  uint32
	comm string
}

// procOwners finds the process holding a socket inode, for sockets the
// kernel side did not see open (they predate the agent). It indexes every
// socket in /proc/*/fd at once, at most once per minInterval, and answers
// from the last index in between. It is used from one goroutine.
type procOwners struct {
	root        string
	minInterval time.Duration
	now         func() time.Time

	lastScan time.Time
	index    map[uint64]procOwner
	// listen caches the listening TCP ports seen from each process's
	// network namespace, until the next scan.
	listen map[uint32]map[uint16]bool
}

func newProcOwners(root string, minInterval time.Duration) *procOwners {
	return &procOwners{root: root, minInterval: minInterval, now: time.Now}
}

// lookup returns the owner of the socket with inode ino.
func (p *procOwners) lookup(ino uint64) (procOwner, bool) {
	if ino == 0 {
		return procOwner{}, false
	}
	if o, ok := p.index[ino]; ok {
		return o, true
	}
	if !p.lastScan.IsZero() && p.now().Sub(p.lastScan) < p.minInterval {
		return procOwner{}, false
	}
	p.scan()
	o, ok := p.index[ino]
	return o, ok
}

// scan rebuilds the index. When several processes hold a socket (inherited
// across fork), the one with the lowest PID wins.
func (p *procOwners) scan() {
	p.lastScan = p.now()
	p.listen = nil
	index := make(map[uint64]procOwner, len(p.index))
	dirs, err := os.ReadDir(p.root)
	if err != nil {
		p.index = index
		return
	}
	var pids []uint32
	for _, d := range dirs {
		if pid, err := strconv.ParseUint(d.Name(), 10, 32); err == nil {
			pids = append(pids, uint32(pid))
		}
	}
	slices.Sort(pids)
	for _, pid := range pids {
		dir := filepath.Join(p.root, strconv.FormatUint(uint64(pid), 10))
		fds, err := os.ReadDir(filepath.Join(dir, "fd"))
		if err != nil {
			continue // gone, or a kernel thread
		}
		comm := ""
		for _, fd := range fds {
			target, err := os.Readlink(filepath.Join(dir, "fd", fd.Name()))
			if err != nil {
				continue
			}
			ino, ok := procnet.SocketInode(target)
			if !ok {
				continue
			}
			if _, seen := index[ino]; seen {
				continue
			}
			if comm == "" {
				b, _ := os.ReadFile(filepath.Join(dir, "comm"))
				comm = strings.TrimSpace(string(b))
			}
			index[ino] = procOwner{pid: pid, comm: comm}
		}
	}
	p.index = index
}

// listening reports whether port is a listening TCP port in the network
// namespace of process pid: then a connection on it was accepted. A table
// that cannot be read or parsed counts with the ports read before.
func (p *procOwners) listening(pid uint32, port uint16) bool {
	ports, ok := p.listen[pid]
	if !ok {
		ports = make(map[uint16]bool)
		_ = procnet.Read(p.root, pid, func(s procnet.Socket) bool {
			if s.State == procnet.Listen {
				ports[s.Local.Port()] = true
			}
			return true
		})
		if p.listen == nil {
			p.listen = make(map[uint32]map[uint16]bool)
		}
		p.listen[pid] = ports
	}
	return ports[port]
}
