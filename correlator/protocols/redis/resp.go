package redis

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"

	"github.com/periscope-apm/periscope/correlator/protocols/db"
)

// errProtocol reports bytes that are not RESP.
var errProtocol = errors.New("not RESP")

// Limits that bound a reader's memory whatever the traffic.
const (
	maxDepth   = 32   // nesting of aggregates
	maxLine    = 512  // bytes of a line kept (the rest is counted)
	maxInline  = 4096 // bytes of an inline command kept
	maxBulkLen = 512 << 20
)

// Value is one complete top-level RESP value as a reader reports it. Only
// the first two elements (or the value itself, when it is not an
// aggregate) are kept, cut to the lengths the reader was asked for.
type Value struct {
	Type   byte      // '+', '-', ':', '$', '*', '%', '~', '>', '!', '=', ... or 0 for an inline command
	Head   [2][]byte // the first two elements of an aggregate (scalars only), or the value itself in Head[0]
	Count  int       // elements of a top-level aggregate (pairs of a map count twice)
	Null   bool
	Inline []byte // an inline command line
	Bytes  int64  // the value's bytes on the wire
}

// frame is an aggregate being read.
type frame struct {
	left   int // elements still to come; -1 when streamed (ends with ".")
	count  int
	attr   bool // an attribute map: not a value of its parent
	stream bool // a streamed string: ";n" chunks until ";0"
}

// reader decodes one direction of RESP.
type reader struct {
	keep     [2]int // bytes kept of the first two elements
	inline   bool   // the request side: a line that is not RESP is an inline command
	onValue  func(v *Value) error
	line     []byte
	lineLong bool
	bulkLeft int // bytes of a bulk body (with its CRLF) still to come
	bulkKeep int
	bulkTo   *[]byte
	stack    []frame
	v        *Value   // the value being read: one of vals
	done     *Value   // the value handed to onValue: the other one
	vals     [2]Value // not a new one per value
	started  bool     // bytes of the current top-level value were seen
}

func newReader(keep [2]int, inline bool, onValue func(*Value) error) *reader {
	r := &reader{keep: keep, inline: inline, onValue: onValue, line: make([]byte, 0, 64)}
	r.v, r.done = &r.vals[0], &r.vals[1]
	return r
}

// write consumes captured bytes.
func (r *reader) write(p []byte) error {
	for len(p) > 0 {
		r.started = true
		if r.bulkLeft > 0 {
			n := min(len(p), r.bulkLeft)
			r.take(p[:min(n, max(r.bulkLeft-2, 0))]) // not the CRLF
			r.bulkLeft -= n
			r.v.Bytes += int64(n)
			p = p[n:]
			if r.bulkLeft == 0 {
				if err := r.scalarDone(); err != nil {
					return err
				}
			}
			continue
		}
		i := bytes.IndexByte(p, '\n')
		seg := p
		if i >= 0 {
			seg = p[:i+1]
		}
		r.v.Bytes += int64(len(seg))
		limit := maxLine
		if r.inline && len(r.stack) == 0 {
			limit = maxInline
		}
		if room := limit - len(r.line); room > 0 {
			r.line = appendBounded(r.line, seg[:min(len(seg), room)], limit)
		}
		if len(r.line) >= limit {
			r.lineLong = true
		}
		p = p[len(seg):]
		if i >= 0 {
			if err := r.lineDone(); err != nil {
				return err
			}
		}
	}
	return nil
}

// skip consumes n uncaptured bytes: only possible inside a bulk body.
func (r *reader) skip(n int) error {
	if n <= 0 {
		return nil
	}
	if n > r.bulkLeft-2 {
		return fmt.Errorf("%w: %d bytes missing outside a bulk string", db.ErrLostSync, n)
	}
	r.bulkLeft -= n
	r.v.Bytes += int64(n)
	r.bulkTo = nil // keep no bytes after a hole
	return nil
}

func (r *reader) take(p []byte) {
	if r.bulkTo == nil {
		return
	}
	if room := r.bulkKeep - len(*r.bulkTo); room > 0 {
		*r.bulkTo = append(*r.bulkTo, p[:min(len(p), room)]...)
	}
}

// lineDone handles a complete line (with its LF, maybe its CR).
func (r *reader) lineDone() error {
	// The LF, then a CR, off by hand: bytes.TrimSuffix compares through
	// bytes.Equal, a call per line that cost 13% of the decoder.
	line := r.line
	if n := len(line); n > 0 && line[n-1] == '\n' {
		line = line[:n-1]
	}
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	long := r.lineLong
	r.line, r.lineLong = r.line[:0], false
	if len(line) == 0 {
		if len(r.stack) == 0 && r.inline {
			r.started, *r.v = false, Value{}
			return nil // an empty inline line is ignored, as the server does
		}
		return fmt.Errorf("%w: empty line", errProtocol)
	}
	if len(r.stack) == 0 && r.inline && line[0] != '*' {
		// Servers read any request line that is not an array as an
		// inline command.
		r.v.Type, r.v.Inline = 0, line
		return r.valueDone()
	}
	if len(r.stack) > 0 && r.stack[len(r.stack)-1].stream {
		return r.chunk(line)
	}
	return r.header(line[0], line[1:], long)
}

// header starts a value from its type byte and the rest of its line.
func (r *reader) header(t byte, rest []byte, long bool) error {
	switch t {
	case '+', '-', ':', '_', '#', ',', '(':
		if long && t != '+' && t != '-' {
			return fmt.Errorf("%w: line too long", errProtocol)
		}
		r.setScalar(t, rest)
		return r.scalarDone()
	case '$', '!', '=':
		return r.bulk(t, rest)
	case '*', '%', '~', '>', '|':
		return r.aggregate(t, rest)
	case '.':
		return r.streamEnd()
	}
	return fmt.Errorf("%w: type %q", errProtocol, t)
}

// atoi is strconv.Atoi of p; the lengths of every value (a few plain
// digits) without its general path.
func atoi(p []byte) (int, error) {
	if len(p) == 0 || len(p) > 9 {
		return strconv.Atoi(string(p))
	}
	n := 0
	for _, c := range p {
		if c < '0' || c > '9' {
			return strconv.Atoi(string(p))
		}
		n = n*10 + int(c-'0')
	}
	return n, nil
}

func (r *reader) bulk(t byte, rest []byte) error {
	if string(rest) == "?" && t == '$' {
		return r.push(frame{left: -1, stream: true}, t)
	}
	n, err := atoi(rest)
	if err != nil || n < -1 || n > maxBulkLen {
		return fmt.Errorf("%w: bulk length %q", errProtocol, rest)
	}
	r.setScalar(t, nil)
	if n == -1 {
		r.v.Null = r.v.Null || len(r.stack) == 0
		return r.scalarDone()
	}
	r.bulkLeft = n + 2
	return nil
}

// setScalar records the start of a scalar and where its bytes are kept.
func (r *reader) setScalar(t byte, line []byte) {
	r.bulkTo, r.bulkKeep = nil, 0
	idx := -1
	switch {
	case len(r.stack) == 0:
		r.v.Type, idx = t, 0
	case len(r.stack) == 1 && !r.stack[0].attr && r.stack[0].count < 2:
		idx = r.stack[0].count
	}
	if idx < 0 || r.inAttr() {
		return
	}
	keep := r.keep[idx]
	if len(r.stack) == 0 && (t == '-' || t == '!') {
		keep = maxLine // errors: the prefix word
	}
	r.bulkTo, r.bulkKeep = &r.v.Head[idx], keep
	r.v.Head[idx] = r.v.Head[idx][:0]
	r.take(line)
}

func (r *reader) inAttr() bool {
	for _, f := range r.stack {
		if f.attr {
			return true
		}
	}
	return false
}

func (r *reader) aggregate(t byte, rest []byte) error {
	if string(rest) == "?" {
		return r.push(frame{left: -1, attr: t == '|'}, t)
	}
	n, err := atoi(rest)
	if err != nil || n < -1 || n > maxBulkLen {
		return fmt.Errorf("%w: aggregate length %q", errProtocol, rest)
	}
	if n == -1 {
		r.setScalar(t, nil)
		r.v.Null = r.v.Null || len(r.stack) == 0
		return r.scalarDone()
	}
	if t == '%' || t == '|' {
		n *= 2
	}
	return r.push(frame{left: n, attr: t == '|'}, t)
}

func (r *reader) push(f frame, t byte) error {
	if len(r.stack) >= maxDepth {
		return fmt.Errorf("%w: nested deeper than %d", errProtocol, maxDepth)
	}
	if len(r.stack) == 0 && !f.attr {
		r.v.Type = t
	}
	r.stack = append(r.stack, f)
	if f.left == 0 {
		return r.frameDone()
	}
	return nil
}

// chunk handles a line inside a streamed string: ";n" then n bytes.
func (r *reader) chunk(line []byte) error {
	if line[0] != ';' {
		return fmt.Errorf("%w: %q in a streamed string", errProtocol, line[0])
	}
	n, err := atoi(line[1:])
	if err != nil || n < 0 || n > maxBulkLen {
		return fmt.Errorf("%w: chunk length %q", errProtocol, line[1:])
	}
	if n == 0 {
		return r.frameDone()
	}
	r.bulkTo = nil
	r.bulkLeft = n + 2
	r.stack[len(r.stack)-1].left = -2 // inside a chunk: its end is not a value
	return nil
}

func (r *reader) streamEnd() error {
	if len(r.stack) == 0 || r.stack[len(r.stack)-1].left != -1 || r.stack[len(r.stack)-1].stream {
		return fmt.Errorf("%w: unexpected end of stream", errProtocol)
	}
	return r.frameDone()
}

// scalarDone ends a scalar (or a streamed-string chunk).
func (r *reader) scalarDone() error {
	r.bulkTo = nil
	if n := len(r.stack); n > 0 && r.stack[n-1].left == -2 {
		r.stack[n-1].left = -1 // a chunk of a streamed string ended
		return nil
	}
	return r.elementDone()
}

// elementDone counts a complete value into its parent.
func (r *reader) elementDone() error {
	if len(r.stack) == 0 {
		return r.valueDone()
	}
	f := &r.stack[len(r.stack)-1]
	f.count++
	if f.left > 0 {
		f.left--
		if f.left == 0 {
			return r.frameDone()
		}
	}
	return nil
}

func (r *reader) frameDone() error {
	f := r.stack[len(r.stack)-1]
	r.stack = r.stack[:len(r.stack)-1]
	if len(r.stack) == 0 {
		if f.attr {
			return nil // attributes precede the value they describe
		}
		r.v.Count = f.count
		return r.valueDone()
	}
	if f.attr {
		return nil
	}
	return r.elementDone()
}

// valueDone hands the complete value to onValue, valid until the next
// value completes, and starts the next one in the other value's buffers.
func (r *reader) valueDone() error {
	r.v, r.done = r.done, r.v
	// Field by field, reslicing in place: a whole Value stored (or the
	// two swapped) costs a write barrier per pointer while GC runs.
	v := r.v
	v.Type, v.Count, v.Null, v.Bytes = 0, 0, false, 0
	v.Head[0], v.Head[1] = v.Head[0][:0], v.Head[1][:0]
	if v.Inline != nil {
		v.Inline = nil
	}
	r.started = false
	return r.onValue(r.done)
}

// appendBounded appends add to line, growing it to at most limit bytes of
// capacity: append's own growth could overshoot the bound a reader keeps.
func appendBounded(line, add []byte, limit int) []byte {
	if need := len(line) + len(add); need > cap(line) {
		grown := make([]byte, len(line), min(limit, max(need, 2*cap(line))))
		copy(grown, line)
		line = grown
	}
	return append(line, add...)
}
