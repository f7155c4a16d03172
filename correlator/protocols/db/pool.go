package db

import "sync"

// Pool recycles exchanges: a decoder that lets go of an exchange once it
// has ended it complete (popped from its queue, never read again) takes it
// from a Pool, and the correlator puts it back with Recycle after its span
// is exported. It is safe for concurrent use.
type Pool struct{ p sync.Pool }

// Get returns a zeroed exchange that Recycle puts back into p.
func (p *Pool) Get() *Exchange {
	x, _ := p.p.Get().(*Exchange)
	if x == nil {
		x = new(Exchange)
	}
	x.pool = p
	return x
}

// Pooled reports whether x came from a Pool: its decoder has let go of it
// once it ended it complete.
func (x *Exchange) Pooled() bool { return x.pool != nil }

// Recycle puts x back into its Pool (none: it does nothing). Nothing may
// read x afterwards. The strings it referred to (query text, keys) are
// not kept alive by the pool.
func (x *Exchange) Recycle() {
	p := x.pool
	if p == nil {
		return
	}
	*x = Exchange{}
	p.p.Put(x)
}
