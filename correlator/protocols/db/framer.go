package db

import (
	"errors"
	"fmt"
)

// ErrLostSync is returned when a decoder cannot find the next message
// boundary: bytes were not captured where a header should have been, or a
// header was invalid.
var ErrLostSync = errors.New("lost message boundaries")

// Message is one complete length-prefixed message as a Framer delivers it.
type Message struct {
	Header []byte // the whole header
	Body   []byte // the kept prefix of the body
	Size   int    // the body's length on the wire
	Holes  bool   // bytes of the kept prefix were not captured
}

// Truncated reports whether Body is shorter than the body on the wire.
func (m *Message) Truncated() bool { return len(m.Body) < m.Size || m.Holes }

// Codec tells a Framer how to read a protocol's headers.
type Codec interface {
	// HeaderLen is the length of the next header (it may change between
	// messages: a PostgreSQL startup message has no type byte).
	HeaderLen() int
	// BodyLen returns the length of the body that follows header h.
	BodyLen(h []byte) (int, error)
	// Keep returns how many body bytes of the message with header h the
	// decoder needs; the rest is counted, never copied.
	Keep(h []byte) int
	// Message receives each complete message; m is only valid during the
	// call.
	Message(m *Message) error
}

// Resyncer is a Codec that can find its footing again after bytes were
// lost across message boundaries (a read larger than the capture): at the
// end of a chunk that ends with a message it recognises from its last
// bytes (PostgreSQL's ReadyForQuery, a MySQL result terminator).
type Resyncer interface {
	// Lost is called when message boundaries are lost.
	Lost()
	// Frames reports whether b, a whole read, is a sequence of complete
	// messages: the framer then decodes it and is in step again.
	Frames(b []byte) bool
	// Resync is given the last captured bytes of a chunk that ends a
	// read; it returns true if they end with a message boundary it
	// recognises, after acting on that message.
	Resync(end []byte) bool
}

// Framer cuts one direction of a connection into messages.
type Framer struct {
	codec Codec
	lost  bool // boundaries lost: waiting for a chunk a Resyncer recognises
	hdr   []byte
	body  []byte
	size  int // body length of the current message
	got   int // body bytes seen (kept or not) of the current message
	keep  int
	holes bool
	inMsg bool    // the header is complete
	msg   Message // the message given to the codec (one per framer, not per message)
}

// NewFramer returns a framer that reads with codec.
func NewFramer(c Codec) *Framer { return &Framer{codec: c} }

// Write consumes captured bytes.
func (f *Framer) Write(p []byte) error {
	for len(p) > 0 {
		if !f.inMsg {
			n, err := f.header(p)
			if err != nil {
				return err
			}
			p = p[n:]
			continue
		}
		n := min(len(p), f.size-f.got)
		if room := f.keep - len(f.body); room > 0 && !f.holes {
			f.body = append(f.body, p[:min(n, room)]...)
		}
		f.got += n
		p = p[n:]
		if err := f.done(); err != nil {
			return err
		}
	}
	return f.done()
}

// Skip consumes n bytes that were not captured. They must lie inside a
// message body.
func (f *Framer) Skip(n int) error {
	if n <= 0 {
		return nil
	}
	if !f.inMsg || n > f.size-f.got {
		return fmt.Errorf("%w: %d bytes missing at a message boundary", ErrLostSync, n)
	}
	if len(f.body) < f.keep && f.got < f.keep {
		f.holes = true
	}
	f.got += n
	return f.done()
}

func (f *Framer) header(p []byte) (int, error) {
	want := f.codec.HeaderLen()
	n := min(len(p), want-len(f.hdr))
	f.hdr = append(f.hdr, p[:n]...)
	if len(f.hdr) < want {
		return n, nil
	}
	size, err := f.codec.BodyLen(f.hdr)
	if err != nil {
		return n, fmt.Errorf("%w: %w", ErrLostSync, err)
	}
	f.size, f.got, f.holes, f.inMsg = size, 0, false, true
	f.keep = min(f.codec.Keep(f.hdr), size)
	if cap(f.body) < f.keep {
		f.body = make([]byte, 0, f.keep)
	}
	f.body = f.body[:0]
	return n, nil
}

// done delivers the current message once its body is complete.
func (f *Framer) done() error {
	if !f.inMsg || f.got < f.size {
		return nil
	}
	f.msg = Message{Header: f.hdr, Body: f.body, Size: f.size, Holes: f.holes}
	f.inMsg = false
	err := f.codec.Message(&f.msg)
	f.msg = Message{}
	f.hdr = f.hdr[:0]
	if cap(f.body) > maxKeptBuffer {
		f.body = nil // a large query text: do not hold its buffer
	}
	return err
}

// maxKeptBuffer is the largest body buffer a framer keeps between messages.
const maxKeptBuffer = 4096

// Feed writes a captured chunk: its prefix, the uncaptured middle, its tail.
// When the middle spans message boundaries and the codec is a Resyncer,
// the framer waits for a chunk whose end the codec recognises instead of
// failing.
func Feed(f *Framer, bytes []byte, size int, tail []byte) error {
	if overlap := len(bytes) + len(tail) - max(size, len(bytes)); overlap > 0 {
		tail = tail[min(overlap, len(tail)):] // the tail repeats captured bytes
	}
	gap := max(size-len(bytes)-len(tail), 0)
	if f.lost {
		if gap == 0 && len(tail) == 0 && f.codec.(Resyncer).Frames(bytes) {
			f.reset()
			return f.Write(bytes)
		}
		f.resync(bytes, gap, tail)
		return nil
	}
	if err := f.Write(bytes); err != nil {
		return err
	}
	if err := f.Skip(gap); err != nil {
		r, ok := f.codec.(Resyncer)
		if !ok {
			return err
		}
		f.lost = true
		r.Lost()
		f.resync(nil, 0, tail)
		return nil
	}
	return f.Write(tail)
}

// resync looks at the end of a chunk read while boundaries are lost.
func (f *Framer) resync(bytes []byte, gap int, tail []byte) {
	end := tail
	if len(tail) == 0 && gap == 0 {
		end = bytes
	}
	if len(end) == 0 || !f.codec.(Resyncer).Resync(end) {
		return
	}
	f.reset()
}

func (f *Framer) reset() {
	f.lost, f.inMsg = false, false
	f.hdr, f.body = f.hdr[:0], f.body[:0]
}

// Reset forgets the message in progress: the next bytes start a message
// (a decoder going on after bytes lost between records).
func (f *Framer) Reset() { f.reset() }

// Lost reports whether the framer is waiting to find boundaries again.
func (f *Framer) Lost() bool { return f.lost }
