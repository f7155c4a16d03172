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
	// buf and ends are the statements being looked up (AppendStatements),
	// reused.
	buf  []byte
	ends []int
}

// NewCache returns an empty cache for statements of dialect d.
func NewCache(d Dialect) *Cache { return &Cache{d: d, infos: map[string]*Info{}} }

// maxScratch is the largest sanitising buffer a Cache keeps between
// queries.
const maxScratch = 16 << 10

// Statements sanitises query text q and appends the Info of each of its
// statements, cut to limit bytes, to infos.
func (c *Cache) Statements(infos []*Info, q string, limit int) []*Info {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sanitize(q)
	start := 0
	for _, end := range c.ends {
		infos = append(infos, c.info(c.buf[start:min(end, start+limit)]))
		start = end
	}
	return infos
}

// Joined returns the Info of query text q sanitised whole (Sanitize: its
// statements joined by "; "), cut to limit bytes.
func (c *Cache) Joined(q string, limit int) *Info {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropLongBuf()
	c.buf = appendStatements(c.buf[:0], nil, q, c.d, "; ")
	return c.info(c.buf[:min(len(c.buf), limit)])
}

// sanitize puts the sanitised statements of q in c.buf and c.ends.
func (c *Cache) sanitize(q string) {
	c.dropLongBuf()
	c.buf, c.ends = AppendStatements(c.buf[:0], c.ends[:0], q, c.d)
}

// dropLongBuf lets go of a long text's buffer rather than hold it.
func (c *Cache) dropLongBuf() {
	if cap(c.buf) > maxScratch {
		c.buf = nil
	}
}

// Info returns the Info of the sanitised statement stmt (which it does not
// keep: its text is copied when it is new). The Info is shared: callers
// must not change it.
func (c *Cache) Info(stmt []byte) *Info {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.info(stmt)
}

// info is Info with c.mu held.
func (c *Cache) info(stmt []byte) *Info {
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
