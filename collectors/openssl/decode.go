package openssl

// decode hands one ring record to the sink; the OpenSSL programs send only
// the shared records (internal/wire).
func (c *Collector) decode(raw []byte) {
	if _, ok := c.recs.Decode(raw); !ok {
		c.m.Read.WithLabelValues("malformed").Inc()
	}
}
