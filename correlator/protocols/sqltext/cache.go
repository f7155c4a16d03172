package sqltext

import "sync"

// Bounds of a Cache: past either, it starts afresh.
const (
	maxCached      = 1024
	maxCachedBytes = 256 << 10 // statement text held
)

// Cache keeps the Info of the sanitised statements seen, so that a
// statement run again (the same query with other literals, a prepared
// statement executed again) is read once, not once per span, and its
// spans share one copy of its strings. It is safe for concurrent use.
type Cache struct {
	d     Dialect
	mu    sync.Mutex
	infos map[string]*Info
	bytes int
}

// NewCache returns an empty cache for statements of dialect d.
func NewCache(d Dialect) *Cache { return &Cache{d: d, infos: map[string]*Info{}} }

// Info returns the Info of the sanitised statement stmt (which it does not
// keep: its text is copied when it is new). The Info is shared: callers
// must not change it.
func (c *Cache) Info(stmt []byte) *Info {
	c.mu.Lock()
	defer c.mu.Unlock()
	if in, ok := c.infos[string(stmt)]; ok {
		return in
	}
	if len(c.infos) >= maxCached || c.bytes+len(stmt) > maxCachedBytes {
		clear(c.infos)
		c.bytes = 0
	}
	in := Describe(string(stmt), c.d)
	c.infos[in.Text] = &in
	c.bytes += len(stmt)
	return &in
}
