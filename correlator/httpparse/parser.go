package httpparse

import (
	"bytes"
	"fmt"
	"time"
)

type state uint8

const (
	stateStart      state = iota // between messages
	stateStartLine               // reading the start line
	stateHeader                  // reading header lines
	stateBody                    // Content-Length body; remaining bytes left
	stateChunkSize               // reading a chunk-size line
	stateChunkData               // inside chunk data; remaining bytes left
	stateChunkCRLF               // expecting the CRLF after chunk data
	stateTrailer                 // reading the trailer section
	stateChunkLost               // lost sync in a chunked body; looking for its end
	stateUntilClose              // response body delimited by the connection's end
	stateTunnel                  // the stream left HTTP (or waits for a response that decides)
	stateDiscard                 // lost sync: ignore the rest of this call
	stateSeek                    // lost sync: ignore calls until one starts with a start line
	stateClosed                  // EOF was seen
)

// Parser parses one direction of an HTTP/1.x stream. It is not safe for
// concurrent use.
type Parser struct {
	kind    Kind
	maxHead int
	all     bool
	h       Handler
	alloc   Allocator // h, when it provides messages

	state state
	err   error
	now   time.Time // time of the call being parsed

	msg       *Message
	line      []byte // partial line carried over between calls
	headBytes int    // bytes of the current head, chunk line or trailer section
	remaining int64  // bytes left in a Content-Length body or a chunk
	sawCR     bool   // stateChunkCRLF: the CR was seen

	// Framing headers of the message being parsed.
	hasLength   bool
	hasTE       bool
	teChunked   bool
	connUpgrade bool
	upgradeHdr  bool

	seen int // messages whose start line was parsed on this stream

	// What followed the message that made the stream enter the tunnel,
	// in the call that did (see TakeRest).
	rest      []byte
	restChunk Chunk
	hasRest   bool

	// The last values of headers a connection repeats on every message,
	// and of the request target (a keep-alive client often asks for the
	// same one again), reused while they do not change (see reuse).
	lastHost, lastUA, lastCT, lastTarget string

	// Response parsers: methods of the requests awaiting a response, and
	// the 1xx responses skipped for the next final response.
	methods      []string
	interim      int
	interimStart time.Time

	// stateChunkLost: the last bytes of contiguous known data and the
	// offset in it where the current call began (-1 when unknown).
	window    []byte
	callStart int
}

// New returns a parser for requests or responses that reports to h.
func New(kind Kind, opts Options, h Handler) *Parser {
	if opts.MaxHeaderBytes <= 0 {
		opts.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	p := &Parser{kind: kind, maxHead: opts.MaxHeaderBytes, all: opts.AllHeaders, h: h}
	p.alloc, _ = h.(Allocator)
	return p
}

// Kind returns what the parser reads.
func (p *Parser) Kind() Kind { return p.kind }

// Err returns the error that stopped the parser, if any.
func (p *Parser) Err() error { return p.err }

// InMessage reports whether a message has started and is not complete.
func (p *Parser) InMessage() bool { return p.msg != nil }

// Tunneled reports whether the stream has left HTTP (after an upgrade) or,
// for a request parser, waits to learn whether an upgrade was accepted.
func (p *Parser) Tunneled() bool { return p.state == stateTunnel }

// ExpectResponse tells a response parser that a request with the given
// method was sent; responses are matched to these in order. The queue is
// bounded: the oldest entries are dropped when it is full.
func (p *Parser) ExpectResponse(method string) {
	if len(p.methods) >= maxPending {
		n := copy(p.methods, p.methods[1:])
		p.methods = p.methods[:n]
	}
	p.methods = append(p.methods, method)
}

// Resume makes a request parser read requests again after a request that
// asked for an upgrade was answered without one.
func (p *Parser) Resume() {
	if p.state == stateTunnel && p.kind == Request {
		p.state = stateStart
	}
}

// Feed parses one call's worth of the stream. Messages completed by it are
// reported to the handler before Feed returns. After an error the parser
// stays broken and returns the same error.
func (p *Parser) Feed(c Chunk) error {
	p.rest, p.hasRest = nil, false
	if p.err != nil {
		return p.err
	}
	if p.state == stateClosed || p.state == stateTunnel {
		return nil
	}
	p.now = c.Time

	prefix := c.Bytes
	size := c.Size
	if size < len(prefix) {
		size = len(prefix)
	}
	rest := size - len(prefix)
	tail := c.Tail
	if len(tail) > rest {
		tail = tail[len(tail)-rest:]
	}
	gap := rest - len(tail)

	if p.state == stateSeek {
		first := prefix
		if len(first) == 0 && gap == 0 {
			first = tail
		}
		if i := bytes.IndexByte(first, '\n'); i >= 0 {
			first = first[:i]
		}
		if len(first) == 0 || !validStartPrefix(p.kind, first[:min(len(first), 64)]) {
			return nil
		}
		p.state = stateStart
	}
	if p.state == stateChunkLost {
		p.callStart = len(p.window)
	}

	if err := p.consume(prefix); err != nil {
		return p.fail(err)
	}
	if p.state == stateTunnel {
		p.keepRest(gap, tail)
		p.endCall()
		return nil
	}
	if gap > 0 {
		p.skip(int64(gap))
	}
	if err := p.consume(tail); err != nil {
		return p.fail(err)
	}
	if p.state == stateTunnel {
		p.keepRest(0, nil)
	}
	p.endCall()
	return nil
}

// keepRest keeps what the call carried after the message that entered the
// tunnel: the unparsed bytes, then gap unknown bytes and tail.
func (p *Parser) keepRest(gap int, tail []byte) {
	p.restChunk = Chunk{Bytes: p.rest, Size: len(p.rest) + gap + len(tail), Tail: tail, Time: p.now}
	p.rest, p.hasRest = nil, true
}

// TakeRest returns, once, the bytes the last Feed carried after the
// message that made the stream leave HTTP (an upgrade): the start of the
// protocol that follows. ok is false when the last Feed did not enter the
// tunnel. The chunk shares the fed chunk's memory.
func (p *Parser) TakeRest() (Chunk, bool) {
	if !p.hasRest {
		return Chunk{}, false
	}
	p.hasRest = false
	return p.restChunk, true
}

// EOF tells the parser that the stream ended at time t (the connection was
// closed). A response whose body runs until the connection's end is
// completed and reported. Any other message in progress is returned,
// incomplete; nil when the stream was between messages.
func (p *Parser) EOF(t time.Time) *Message {
	m := p.msg
	st := p.state
	p.msg = nil
	p.state = stateClosed
	p.line, p.window, p.methods = nil, nil, nil
	if m == nil {
		return nil
	}
	if st == stateUntilClose {
		m.Complete = true
		if m.End.IsZero() {
			m.End = t
		}
		p.h.Message(m)
		return nil
	}
	return m
}

func (p *Parser) fail(err error) error {
	p.err = err
	p.msg = nil
	p.line, p.window, p.methods = nil, nil, nil
	return err
}

// consume parses known bytes b.
func (p *Parser) consume(b []byte) error {
	for len(b) > 0 {
		switch p.state {
		case stateStart:
			// Tolerate empty lines between messages.
			i := 0
			for i < len(b) && (b[i] == '\r' || b[i] == '\n') {
				i++
			}
			b = b[i:]
			if len(b) == 0 {
				return nil
			}
			p.begin()

		case stateStartLine, stateHeader, stateTrailer:
			line, n, ok, err := p.takeLine(b, p.maxHead)
			b = b[n:]
			if err != nil {
				return err
			}
			if !ok {
				// Checking the first bytes is enough to reject non-HTTP
				// early; the whole line is checked when it ends.
				if p.state == stateStartLine && !validStartPrefix(p.kind, p.line[:min(len(p.line), 128)]) {
					return p.startLineError(p.line)
				}
				return nil
			}
			switch p.state {
			case stateStartLine:
				err = p.startLine(line)
			case stateHeader:
				err = p.headerLine(line)
			default:
				err = p.trailerLine(line)
			}
			p.releaseLine()
			if err != nil {
				return err
			}

		case stateBody:
			n := int64(len(b))
			if n > p.remaining {
				n = p.remaining
			}
			b = b[n:]
			p.remaining -= n
			p.msg.BodySize += n
			if p.remaining == 0 {
				p.complete()
			}

		case stateChunkSize:
			line, n, ok, err := p.takeLine(b, maxChunkLineLen)
			b = b[n:]
			if err != nil {
				return err
			}
			if !ok {
				return nil
			}
			size, err := parseChunkSize(line)
			p.releaseLine()
			if err != nil {
				return err
			}
			p.headBytes = 0
			if size == 0 {
				p.state = stateTrailer
			} else {
				p.remaining = size
				p.state = stateChunkData
			}

		case stateChunkData:
			n := int64(len(b))
			if n > p.remaining {
				n = p.remaining
			}
			b = b[n:]
			p.remaining -= n
			p.msg.BodySize += n
			if p.remaining == 0 {
				p.state = stateChunkCRLF
				p.sawCR = false
			}

		case stateChunkCRLF:
			switch {
			case b[0] == '\r' && !p.sawCR:
				p.sawCR = true
			case b[0] == '\n':
				p.state = stateChunkSize
				p.headBytes = 0
			default:
				return fmt.Errorf("httpparse: %w: missing CRLF after chunk data", ErrMalformed)
			}
			b = b[1:]

		case stateChunkLost:
			p.appendWindow(b)
			p.msg.BodySize += int64(len(b))
			p.msg.End = p.now
			return nil

		case stateUntilClose:
			p.msg.BodySize += int64(len(b))
			p.msg.End = p.now
			return nil

		default: // stateTunnel, stateDiscard, stateSeek, stateClosed
			if p.state == stateTunnel {
				p.rest = b
			}
			return nil
		}
	}
	return nil
}

// skip accounts for n bytes of the current call that were not captured.
func (p *Parser) skip(n int64) {
	switch p.state {
	case stateStart:
		// A message starts somewhere in bytes we cannot see.
		p.interim = 0
		p.state = stateDiscard

	case stateStartLine:
		// Not even the start line is known: the message is lost.
		p.msg = nil
		p.interim = 0
		p.releaseLine()
		p.state = stateDiscard

	case stateHeader:
		// Part of the head is missing, and with it possibly the framing:
		// assume the message ends with this call.
		p.releaseLine()
		p.msg.Truncated = true
		_ = p.endHead(true) // a truncated head never fails

	case stateBody:
		if n >= p.remaining {
			p.msg.BodySize += p.remaining
			over := n > p.remaining
			p.remaining = 0
			p.complete()
			if over {
				// The next message started in the gap.
				p.state = stateDiscard
			}
			return
		}
		p.remaining -= n
		p.msg.BodySize += n

	case stateChunkData:
		if n < p.remaining {
			p.remaining -= n
			p.msg.BodySize += n
			return
		}
		if n == p.remaining {
			p.remaining = 0
			p.msg.BodySize += n
			p.state = stateChunkCRLF
			p.sawCR = false
			return
		}
		p.loseChunkSync(n)

	case stateChunkSize, stateChunkCRLF, stateTrailer:
		p.releaseLine()
		p.loseChunkSync(n)

	case stateChunkLost:
		p.loseChunkSync(n)

	case stateUntilClose:
		p.msg.BodySize += n
		p.msg.End = p.now
	}
}

func (p *Parser) loseChunkSync(n int64) {
	p.msg.Truncated = true
	p.msg.BodySize += n
	p.msg.End = p.now
	p.state = stateChunkLost
	p.window = p.window[:0]
	p.callStart = -1
}

// endCall runs when all known bytes of a call have been parsed.
func (p *Parser) endCall() {
	switch p.state {
	case stateChunkLost:
		if endsChunkedBody(p.window, p.callStart) {
			p.window = nil
			p.complete()
		}
	case stateDiscard:
		p.state = stateSeek
	}
}

// begin starts a new message at the current call.
func (p *Parser) begin() {
	if p.alloc != nil {
		p.msg = p.alloc.NewMessage(p.kind)
		*p.msg = Message{Kind: p.kind, ContentLength: -1, Start: p.now, End: p.now}
	} else {
		p.msg = &Message{Kind: p.kind, ContentLength: -1, Start: p.now, End: p.now}
	}
	p.state = stateStartLine
	p.headBytes = 0
	p.hasLength, p.hasTE, p.teChunked, p.connUpgrade, p.upgradeHdr = false, false, false, false, false
}

// takeLine returns the next line of b without its CRLF (or bare LF), joined
// with the partial line kept from earlier calls, and how many bytes of b it
// used. ok is false when b ends before the line does; the bytes are then
// kept. limit caps the bytes counted in headBytes.
func (p *Parser) takeLine(b []byte, limit int) (line []byte, n int, ok bool, err error) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		if p.headBytes+len(b) > limit {
			return nil, len(b), false, p.tooLarge()
		}
		p.headBytes += len(b)
		p.line = append(p.line, b...)
		return nil, len(b), false, nil
	}
	n = i + 1
	if p.headBytes+n > limit {
		return nil, n, false, p.tooLarge()
	}
	p.headBytes += n
	if len(p.line) > 0 {
		p.line = append(p.line, b[:i]...)
		line = p.line
	} else {
		line = b[:i]
	}
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	return line, n, true, nil
}

func (p *Parser) tooLarge() error {
	switch {
	case p.state == stateStartLine && p.seen == 0:
		return fmt.Errorf("httpparse: %w: start line longer than %d bytes", ErrNotHTTP, p.maxHead)
	case p.state == stateChunkSize:
		return fmt.Errorf("httpparse: %w: chunk-size line longer than %d bytes", ErrMalformed, maxChunkLineLen)
	}
	return fmt.Errorf("httpparse: %w (over %d bytes)", ErrHeaderTooLarge, p.maxHead)
}

func (p *Parser) releaseLine() {
	if cap(p.line) > keepLineCap {
		p.line = nil
	} else {
		p.line = p.line[:0]
	}
}

func (p *Parser) startLineError(line []byte) error {
	kind := ErrMalformed
	if p.seen == 0 {
		kind = ErrNotHTTP
	}
	// Never put the bytes themselves in the error: they may be secrets.
	first := -1
	if len(line) > 0 {
		first = int(line[0])
	}
	return fmt.Errorf("httpparse: %w: invalid %s line (%d bytes, first byte %#x)", kind, p.kind, len(line), first)
}

func (p *Parser) startLine(line []byte) error {
	var err error
	if p.kind == Request {
		err = p.requestLine(line)
	} else {
		err = p.statusLine(line)
	}
	if err != nil {
		return err
	}
	p.seen++
	p.state = stateHeader
	return nil
}

func (p *Parser) requestLine(line []byte) error {
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 || sp1 > maxMethodLen {
		return p.startLineError(line)
	}
	rest := line[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 <= 0 {
		return p.startLineError(line)
	}
	method, target, version := line[:sp1], rest[:sp2], rest[sp2+1:]
	for _, c := range method {
		if !isTchar(c) {
			return p.startLineError(line)
		}
	}
	for _, c := range target {
		if c <= ' ' || c == 0x7f {
			return p.startLineError(line)
		}
	}
	v, ok := parseVersion(version)
	if !ok {
		return p.startLineError(line)
	}
	m := p.msg
	m.Method = internMethod(method)
	m.Target = reuse(&p.lastTarget, target)
	m.Path, m.RawQuery = splitTarget(m.Target)
	m.Version = v
	return nil
}

func (p *Parser) statusLine(line []byte) error {
	if len(line) < 12 {
		return p.startLineError(line)
	}
	v, ok := parseVersion(line[:8])
	if !ok || line[8] != ' ' {
		return p.startLineError(line)
	}
	code := 0
	for _, c := range line[9:12] {
		if !isDigit(c) {
			return p.startLineError(line)
		}
		code = code*10 + int(c-'0')
	}
	if code < 100 || (len(line) > 12 && line[12] != ' ') {
		return p.startLineError(line)
	}
	for _, c := range line[12:] {
		if c < ' ' && c != '\t' || c == 0x7f {
			return p.startLineError(line)
		}
	}
	p.msg.Version = v
	p.msg.StatusCode = code
	return nil
}

// reuse returns value as a string: the one in *last when they are equal,
// so that a header repeated on every message of a connection costs no
// allocation; else a new one, kept in *last.
func reuse(last *string, value []byte) string {
	if string(value) != *last {
		*last = string(value)
	}
	return *last
}

func (p *Parser) headerLine(line []byte) error {
	if len(line) == 0 {
		return p.endHead(false)
	}
	if line[0] == ' ' || line[0] == '\t' {
		// Obsolete line folding: the continuation is ignored.
		return nil
	}
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		return fmt.Errorf("httpparse: %w: header line without a field name", ErrMalformed)
	}
	name := trimOWSRight(line[:colon])
	for _, c := range name {
		if !isTchar(c) {
			return fmt.Errorf("httpparse: %w: invalid header field name", ErrMalformed)
		}
	}
	if len(name) == 0 {
		return fmt.Errorf("httpparse: %w: empty header field name", ErrMalformed)
	}
	value := trimOWS(line[colon+1:])
	m := p.msg
	switch len(name) {
	case 4:
		if equalFold(name, "host") {
			m.Host = reuse(&p.lastHost, value)
		}
	case 7:
		if equalFold(name, "upgrade") {
			p.upgradeHdr = true
			m.UpgradeH2C = m.UpgradeH2C || hasToken(value, "h2c")
		}
	case 10:
		switch {
		case equalFold(name, "user-agent"):
			m.UserAgent = reuse(&p.lastUA, value)
		case equalFold(name, "tracestate"):
			m.TraceState = string(value)
		case equalFold(name, "connection"):
			if hasToken(value, "upgrade") {
				p.connUpgrade = true
			}
		}
	case 11:
		if equalFold(name, "traceparent") {
			m.TraceParent = string(value)
		}
	case 12:
		if equalFold(name, "content-type") {
			m.ContentType = reuse(&p.lastCT, value)
		}
	case 14:
		if equalFold(name, "http2-settings") {
			m.HTTP2Settings = string(value)
		}
		if equalFold(name, "content-length") {
			n, ok := parseContentLength(value)
			if !ok || (p.hasLength && n != m.ContentLength) {
				return fmt.Errorf("httpparse: %w: invalid Content-Length", ErrMalformed)
			}
			p.hasLength = true
			m.ContentLength = n
		}
	case 17:
		if equalFold(name, "transfer-encoding") {
			p.hasTE = true
			if last := lastToken(value); len(last) > 0 {
				p.teChunked = equalFold(last, "chunked")
			}
		}
	}
	if p.all && len(m.Headers) < maxHeaders {
		m.Headers = append(m.Headers, Header{Name: string(name), Value: string(value)})
	}
	return nil
}

func (p *Parser) trailerLine(line []byte) error {
	if len(line) == 0 {
		p.complete()
	}
	return nil
}

// endHead decides how the body of the message is framed. truncated means
// that part of the head was not captured: the message is then taken to end
// with the current call.
func (p *Parser) endHead(truncated bool) error {
	m := p.msg
	m.HeadersComplete = !truncated
	p.headBytes = 0

	if p.kind == Response {
		if m.StatusCode < 200 && m.StatusCode != 101 {
			// Interim response: wait for the final one.
			if p.interim == 0 {
				p.interimStart = m.Start
			}
			p.interim++
			p.msg = nil
			p.state = stateStart
			if truncated {
				p.state = stateDiscard
			}
			return nil
		}
		if p.interim > 0 {
			m.Interim = p.interim
			m.Start = p.interimStart
			p.interim = 0
		}
		method := ""
		if len(p.methods) > 0 {
			method = p.methods[0]
			n := copy(p.methods, p.methods[1:])
			p.methods = p.methods[:n]
		}
		p.h.Headers(m)
		switch {
		case m.StatusCode == 101 || method == "CONNECT" && m.StatusCode < 300:
			m.Upgrade = true
			p.complete()
			p.state = stateTunnel
		case truncated:
			p.complete()
			p.state = stateDiscard
		case method == "HEAD" || m.StatusCode == 204 || m.StatusCode == 304:
			p.complete()
		case p.hasTE:
			m.Chunked = p.teChunked
			if p.teChunked {
				p.state = stateChunkSize
			} else {
				p.state = stateUntilClose
			}
		case p.hasLength:
			p.startBody(m.ContentLength)
		default:
			p.state = stateUntilClose
		}
		return nil
	}

	if !truncated && p.hasTE && !p.teChunked {
		// A request body must end with the chunked coding; anything
		// else cannot be framed (servers answer 400 and close).
		return fmt.Errorf("httpparse: %w: request Transfer-Encoding is not chunked", ErrMalformed)
	}
	m.Upgrade = m.Method == "CONNECT" || p.connUpgrade && p.upgradeHdr
	p.h.Headers(m)
	switch {
	case truncated:
		p.complete()
		p.state = stateDiscard
	case p.hasTE:
		m.Chunked = true
		p.state = stateChunkSize
	case p.hasLength:
		p.startBody(m.ContentLength)
	default:
		p.complete()
	}
	return nil
}

func (p *Parser) startBody(n int64) {
	if n == 0 {
		p.complete()
		return
	}
	p.remaining = n
	p.state = stateBody
}

// complete finishes the current message at the current call.
func (p *Parser) complete() {
	m := p.msg
	p.msg = nil
	p.state = stateStart
	if m.Upgrade && p.kind == Request {
		// Wait for the response: Resume is called if it declines.
		p.state = stateTunnel
	}
	p.headBytes = 0
	m.Complete = true
	m.End = p.now
	p.h.Message(m)
}

// appendWindow keeps the last windowSize bytes of contiguous known data in a
// buffer that never grows past windowSize.
func (p *Parser) appendWindow(b []byte) {
	if cap(p.window) < windowSize {
		w := make([]byte, len(p.window), windowSize)
		copy(w, p.window)
		p.window = w
	}
	if drop := len(p.window) + len(b) - windowSize; drop > 0 {
		if drop >= len(p.window) {
			b = b[drop-len(p.window):]
			p.window = p.window[:0]
		} else {
			n := copy(p.window, p.window[drop:])
			p.window = p.window[:n]
		}
		if p.callStart >= 0 {
			p.callStart -= drop
			if p.callStart < 0 {
				p.callStart = -1
			}
		}
	}
	p.window = append(p.window, b...)
}
