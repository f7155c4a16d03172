package mysql

// frames reports whether b is a whole number of packets (the first with
// sequence id first when first >= 0).
func frames(b []byte, first int) bool {
	for i := 0; len(b) > 0; i++ {
		if len(b) < 4 || i == 0 && first >= 0 && int(b[3]) != first {
			return false
		}
		n := int(b[0]) | int(b[1])<<8 | int(b[2])<<16
		if n+4 > len(b) {
			return false
		}
		b = b[n+4:]
	}
	return true
}

// Lost implements db.Resyncer.
func (c *codec) Lost() { c.d.stats.LostSync.Add(1) }

// Frames implements db.Resyncer: a whole read of packets puts the framer
// in step again; from the client it must start a command.
func (c *codec) Frames(b []byte) bool {
	if c.requests {
		return c.d.phase == phCommand && frames(b, 0)
	}
	return c.d.phase == phCommand && c.d.rs == rsFirst && frames(b, -1)
}

// Resync implements db.Resyncer: a response read that ends with a result
// terminator (EOF or OK) or an ERR packet, after no more results, ends the
// command at the head of the queue with the rows counted before the loss.
func (c *codec) Resync(end []byte) bool {
	if c.requests || c.d.phase != phCommand {
		return false
	}
	for n := 5; n+4 <= len(end) && n < 1024; n++ {
		h := end[len(end)-n-4:]
		if int(h[0])|int(h[1])<<8|int(h[2])<<16 != n {
			continue
		}
		p := packet{seq: h[3], body: h[4:], size: n}
		switch {
		case p.first() == 0xff:
			c.resynced(errCode(p.body), 0)
		case p.first() == 0xfe || p.first() == 0x00 && n >= 7:
			status := okStatus(p)
			if status&serverMoreResults != 0 {
				continue
			}
			c.resynced("", status)
		default:
			continue
		}
		return true
	}
	return false
}

func (c *codec) resynced(code string, status uint16) {
	c.cont, c.lastCont = false, false
	e, _ := c.d.queue.Peek()
	c.d.rs = rsFirst
	if e != nil && e.kind == kResult {
		e.stmts = nil // the results of the statements in between were lost
	}
	c.d.finish(e, code, status)
}
