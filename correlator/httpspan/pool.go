package httpspan

import "sync"

// exchangePool recycles exchanges: an HTTP/1 exchange (its request and its
// response, ~640 bytes) is the largest allocation a span makes, and the
// garbage collector's work grows with the bytes allocated per span.
type exchangePool struct{ p sync.Pool }

// GetExchange returns an empty exchange, recycled when one was put back:
// its Req and Resp are nil, its storage to be filled (ReqStorage,
// RespStorage, or NewExchange's form: set Req to ReqStorage).
func (h *Semantics) GetExchange() *Exchange {
	if x, _ := h.exchanges.p.Get().(*Exchange); x != nil {
		return x
	}
	return &Exchange{}
}

// Recycle puts back an exchange that nothing reads or writes any more:
// not its decoder, not its parsers, not its span (which copied what it
// needs), not its connection. It is cleared: the pool keeps no request's
// strings alive.
func (h *Semantics) Recycle(x *Exchange) {
	*x = Exchange{}
	h.exchanges.p.Put(x)
}
