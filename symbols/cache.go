package symbols

import (
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
)

// Identity names a file's contents as far as the agent can tell without
// reading them: device, inode, size and modification time, and the build
// IDs its ELF notes carry. Two files with one Identity are taken to hold the
// same code.
type Identity struct {
	Dev     uint64 `json:"dev"`
	Ino     uint64 `json:"ino"`
	Size    int64  `json:"size"`
	MtimeNs int64  `json:"mtime_ns"`
	// BuildID is "gnu:<hex>" and/or "go:<id>", "" for a file with neither.
	BuildID string `json:"build_id,omitempty"`
}

// File is the part of the identity /proc/PID/maps shows.
func (id Identity) File() FileID { return FileID{Dev: id.Dev, Ino: id.Ino} }

// maxNoteBytes bounds what is read of each note segment.
const maxNoteBytes = 4096

// Identify returns the identity of the file at path. The build IDs are read
// from the note segments (a few hundred bytes); a file that is not ELF has
// none.
func Identify(path string) (Identity, error) {
	f, err := os.Open(path)
	if err != nil {
		return Identity{}, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return Identity{}, fmt.Errorf("stat %s: %w", path, err)
	}
	id := Identity{Dev: uint64(st.Dev), Ino: st.Ino, Size: st.Size, MtimeNs: st.Mtim.Nano()}
	if ef, err := elf.NewFile(f); err == nil {
		id.BuildID = buildIDs(ef)
	}
	return id, nil
}

// buildIDs reads the GNU and Go build IDs from the note segments.
func buildIDs(f *elf.File) string {
	var gnu, goID string
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		b := make([]byte, min(p.Filesz, maxNoteBytes))
		if n, _ := p.ReadAt(b, 0); n < len(b) {
			continue
		}
		for len(b) >= 12 {
			namesz, descsz, typ := f.ByteOrder.Uint32(b), f.ByteOrder.Uint32(b[4:]), f.ByteOrder.Uint32(b[8:])
			nameEnd := 12 + align4(uint64(namesz))
			descEnd := nameEnd + align4(uint64(descsz))
			if descEnd > uint64(len(b)) || namesz == 0 {
				break
			}
			name := string(b[12 : 12+namesz-1])
			desc := b[nameEnd : nameEnd+uint64(descsz)]
			switch {
			case name == "GNU" && typ == 3: // NT_GNU_BUILD_ID
				gnu = "gnu:" + hex.EncodeToString(desc)
			case name == "Go" && typ == 4: // the Go linker's build ID note
				goID = "go:" + string(desc)
			}
			b = b[descEnd:]
		}
	}
	switch {
	case gnu != "" && goID != "":
		return gnu + " " + goID
	case gnu != "":
		return gnu
	}
	return goID
}

func align4(n uint64) uint64 { return (n + 3) &^ 3 }

// Cache keeps the results of analysing files by file identity: in memory,
// and in files under a directory when one is given, so that an agent
// restarted on the same node does not analyse its binaries again. A result
// is any JSON-encodable value under a kind that names its schema; the
// agent's version is part of every key, so that a new agent (whose
// analysis or offsets table may differ) never reads an old one's results.
// Unreadable, corrupt or mismatched cache files are ignored and replaced.
// Its methods are safe for concurrent use.
type Cache struct {
	dir     string
	version string

	mu  sync.Mutex
	mem map[string][]byte
}

// maxCacheEntries bounds the results held in memory; past it the oldest
// half is dropped (on disk they stay).
const maxCacheEntries = 4096

// NewCache returns a cache that also stores results under dir ("": memory
// only), creating it (mode 0700) if needed. agentVersion keys every entry.
func NewCache(dir, agentVersion string) (*Cache, error) {
	c := &Cache{dir: dir, version: agentVersion, mem: make(map[string][]byte)}
	if dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("symbol cache directory: %w", err)
		}
	}
	return c, nil
}

// cacheRecord is what a cache file holds: the key spelled out, checked on
// reading, and the result.
type cacheRecord struct {
	Format   int             `json:"format"`
	Kind     string          `json:"kind"`
	Version  string          `json:"agent_version"`
	Identity Identity        `json:"identity"`
	Value    json.RawMessage `json:"value"`
}

const cacheFormat = 1

func (c *Cache) key(kind string, id Identity) string {
	h := sha256.New()
	_ = json.NewEncoder(h).Encode(cacheRecord{Format: cacheFormat, Kind: kind, Version: c.version, Identity: id})
	return hex.EncodeToString(h.Sum(nil))
}

// Get fills v with the result stored for kind and id and reports whether
// there was one.
func (c *Cache) Get(kind string, id Identity, v any) bool {
	if c == nil {
		return false
	}
	k := c.key(kind, id)
	c.mu.Lock()
	raw, ok := c.mem[k]
	c.mu.Unlock()
	if !ok && c.dir != "" {
		raw, ok = c.readFile(k, kind, id)
		if ok {
			c.remember(k, raw)
		}
	}
	return ok && json.Unmarshal(raw, v) == nil
}

// readFile reads a cache file and checks that it is the record asked for.
func (c *Cache) readFile(k, kind string, id Identity) ([]byte, bool) {
	path := filepath.Join(c.dir, k+".json")
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, false
	}
	var r cacheRecord
	if json.Unmarshal(b, &r) != nil || r.Format != cacheFormat || r.Kind != kind || r.Version != c.version ||
		r.Identity != id || len(r.Value) == 0 {
		os.Remove(path) // corrupt or not ours: analyse again and rewrite
		return nil, false
	}
	return r.Value, true
}

// Put stores v as the result for kind and id. A result that cannot be
// written to disk stays in memory; the error says why.
func (c *Cache) Put(kind string, id Identity, v any) error {
	if c == nil {
		return nil
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s result: %w", kind, err)
	}
	k := c.key(kind, id)
	c.remember(k, raw)
	if c.dir == "" {
		return nil
	}
	b, err := json.Marshal(cacheRecord{Format: cacheFormat, Kind: kind, Version: c.version, Identity: id, Value: raw})
	if err != nil {
		return fmt.Errorf("encode %s record: %w", kind, err)
	}
	return writeAtomic(filepath.Join(c.dir, k+".json"), b)
}

func (c *Cache) remember(k string, raw []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.mem) >= maxCacheEntries {
		n := 0
		for key := range c.mem { // map order: an arbitrary half
			delete(c.mem, key)
			if n++; n >= maxCacheEntries/2 {
				break
			}
		}
	}
	c.mem[k] = raw
}

// writeAtomic writes a file under a temporary name and renames it, so that
// a reader never sees half a record.
func writeAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return fmt.Errorf("write cache file: %w", err)
	}
	_, werr := tmp.Write(b)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write cache file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write cache file: %w", err)
	}
	return nil
}

// Same reports whether path is still the file id names: same device,
// inode, size and modification time (a stat, no read). An inode is reused
// once its file is deleted: a cache keyed by device and inode alone would
// give a new file the results of the old one.
func (id Identity) Same(path string) bool {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return false
	}
	return uint64(st.Dev) == id.Dev && st.Ino == id.Ino && st.Size == id.Size && st.Mtim.Nano() == id.MtimeNs
}
