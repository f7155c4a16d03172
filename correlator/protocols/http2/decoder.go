package http2

import (
	"encoding/binary"
	"strings"
	"time"

	"golang.org/x/net/http2/hpack"

	"github.com/periscope-apm/periscope/correlator/httpparse"
	"github.com/periscope-apm/periscope/correlator/httpspan"
	"github.com/periscope-apm/periscope/correlator/protocol"
	"github.com/periscope-apm/periscope/correlator/protocols/grpc"
)

// Exchange is one stream: an HTTP request and response, or a gRPC call.
// It implements protocol.Exchange.
type Exchange struct {
	httpspan.Exchange
	// GRPC is set when the request or response says application/grpc.
	GRPC bool
	Call grpc.Call
	// HeadersIncomplete is set when a header block of the stream could
	// not be decoded in full.
	HeadersIncomplete bool
	// FramesLost is set when frame boundaries were lost while the stream
	// was open: frames of it (its END_STREAM among them) may have gone
	// by unseen.
	FramesLost bool
}

const (
	// maxFieldLen caps a decoded header field.
	maxFieldLen = 16 << 10
	// initialTableSize is HPACK's default dynamic table size.
	initialTableSize = 4096
)

// stream is the state of one stream.
type stream struct {
	x        *Exchange
	respDone bool // the final response head was seen
	// up is the HTTP/1.1 exchange an upgrade to h2c continues as stream
	// 1: it gets x's response and is the one ended.
	up *httpspan.Exchange
}

// direction is the state of one direction of the connection.
type direction struct {
	d    *decoder
	side protocol.Side
	r    reader
	dec  *hpack.Decoder
	// allowed is the table size the peer allows this direction's encoder.
	allowed uint32
	fields  []hpack.HeaderField
	// block is a header block waiting for its CONTINUATION frames.
	block       []byte
	blockStream uint32
	blockEnd    bool // END_STREAM of the HEADERS frame that opened it
	blockGap    bool
	blockPush   bool
	blockStart  time.Time
	inBlock     bool
	fed         bool // some bytes were fed
}

// decoder decodes both directions of one connection.
type decoder struct {
	p       *Protocol
	h       protocol.Handler
	dirs    [2]direction // by Side-1
	streams map[uint32]*stream
	order   []uint32 // stream IDs in the order they began
}

func newDecoder(p *Protocol, h protocol.Handler) *decoder {
	d := &decoder{p: p, h: h, streams: make(map[uint32]*stream)}
	for i := range d.dirs {
		dir := &d.dirs[i]
		dir.d = d
		dir.side = protocol.Side(i + 1)
		dir.allowed = initialTableSize
		dir.resetTable()
	}
	return d
}

// resetTable starts a direction's HPACK decoding over with an empty
// table: entries inserted from now on are known, older ones are not.
func (dir *direction) resetTable() {
	dir.dec = hpack.NewDecoder(initialTableSize, func(f hpack.HeaderField) { dir.fields = append(dir.fields, f) })
	dir.dec.SetMaxStringLength(maxFieldLen)
	dir.dec.SetAllowedMaxDynamicTableSize(max(dir.allowed, initialTableSize))
}

// Feed implements protocol.Decoder.
func (d *decoder) Feed(side protocol.Side, c protocol.Chunk) error {
	dir := &d.dirs[side-1]
	if !dir.fed {
		dir.fed = true
		if side == protocol.Requests && strings.HasPrefix(string(c.Bytes), Preface[:min(len(Preface), len(c.Bytes))]) && len(c.Bytes) > 0 {
			// The connection's start: both tables are whole.
			dir.r.preface = len(Preface)
		}
	}
	known, tail := c.Bytes, c.Tail
	gap := c.Size - len(known) - len(tail)
	if gap < 0 { // the tail overlaps the prefix
		tail = tail[min(-gap, len(tail)):]
		gap = 0
	}
	if dir.r.lost && !d.resume(dir, &known) {
		// No frame to follow in the prefix: the tail may have one.
		known, gap = nil, 0
	}
	dir.r.write(known, c.Time, dir)
	dir.r.skip(gap, c.Time, dir)
	if dir.r.lost && !d.resume(dir, &tail) {
		return nil
	}
	dir.r.write(tail, c.Time, dir)
	return nil
}

// resume looks for frames the decoder can follow in *b after frame
// boundaries were lost, and cuts *b to start there.
func (d *decoder) resume(dir *direction, b *[]byte) bool {
	o := findFrames(*b, d.streams)
	if o < 0 {
		return false
	}
	dir.r.resume()
	*b = (*b)[o:]
	return true
}

// EOF implements protocol.Decoder: streams still open stay in flight (the
// correlator ends them as closed).
func (d *decoder) EOF(time.Time) {}

// Left implements protocol.Decoder.
func (d *decoder) Left() bool { return false }

// lost implements frameSink: a header block in progress is lost, and with
// it the table's state.
func (dir *direction) lost() {
	dir.d.p.stats.framesLost.Inc()
	// DATA of the streams in flight may have gone by unseen.
	for _, st := range dir.d.streams {
		x := st.x
		x.FramesLost = true
		msg, counter := x.Req, &x.Call.Requests
		if dir.side == protocol.Responses {
			msg, counter = x.Resp, &x.Call.Responses
		}
		counter.Skip(-1)
		if msg != nil {
			msg.BodySize = -1
		}
	}
	if dir.inBlock {
		dir.inBlock = false
		dir.headers(dir.blockStream, nil, true, dir.blockEnd, dir.blockPush, dir.blockStart, dir.blockStart)
	}
	dir.resetTable()
}

// data implements frameSink.
func (dir *direction) data(fh frameHeader, b []byte, n int) {
	st := dir.d.streams[fh.stream]
	if st == nil {
		return
	}
	x := st.x
	msg, counter := x.Req, &x.Call.Requests
	if dir.side == protocol.Responses {
		msg, counter = x.Resp, &x.Call.Responses
		if msg == nil {
			return
		}
	}
	if msg.BodySize >= 0 {
		msg.BodySize += int64(n)
	}
	if b == nil {
		counter.Skip(n)
	} else {
		counter.Write(b)
	}
}

// dataEnd implements frameSink.
func (dir *direction) dataEnd(fh frameHeader, t time.Time) {
	if fh.flags&flagEndStream != 0 {
		dir.endStream(fh.stream, t)
	}
}

// frame implements frameSink.
func (dir *direction) frame(fh frameHeader, p []byte, gap bool, start, end time.Time) {
	if dir.inBlock && fh.typ != frameContinuation {
		// A header block cut short: a protocol error; the table is
		// unknown from here on.
		dir.lost()
	}
	switch fh.typ {
	case frameHeaders, framePushPromise:
		dir.openBlock(fh, p, gap, start, end)
	case frameContinuation:
		if !dir.inBlock || fh.stream != dir.blockStream {
			dir.lost()
			return
		}
		dir.blockGap = dir.blockGap || gap
		if len(dir.block)+len(p) > maxBlock {
			dir.blockGap = true
		} else if !gap {
			dir.block = append(dir.block, p...)
		}
		if fh.flags&flagEndHeaders != 0 {
			dir.closeBlock(end)
		}
	case frameRSTStream:
		code, known := uint32(0), len(p) >= 4 && !gap
		if known {
			code = binary.BigEndian.Uint32(p)
		}
		dir.d.reset(fh.stream, code, known, end)
	case frameGoAway:
		if len(p) >= 4 {
			dir.d.goAway(dir.side, binary.BigEndian.Uint32(p)&0x7fffffff, end)
		}
	case frameSettings:
		if fh.flags&flagAck == 0 && !gap {
			dir.settings(p)
		}
	}
}

// openBlock starts the header block of a HEADERS or PUSH_PROMISE frame.
func (dir *direction) openBlock(fh frameHeader, p []byte, gap bool, start, end time.Time) {
	block, ok := blockOf(fh, p)
	dir.inBlock = true
	dir.blockStream = fh.stream
	dir.blockEnd = fh.flags&flagEndStream != 0
	dir.blockPush = fh.typ == framePushPromise
	dir.blockStart = start
	dir.blockGap = gap || !ok
	dir.block = append(trim(dir.block), block...)
	if fh.flags&flagEndHeaders != 0 {
		dir.closeBlock(end)
	}
}

// blockOf strips padding, priority and the promised stream from a HEADERS
// or PUSH_PROMISE payload.
func blockOf(fh frameHeader, p []byte) ([]byte, bool) {
	pad := 0
	if fh.flags&flagPadded != 0 {
		if len(p) < 1 {
			return nil, false
		}
		pad = int(p[0])
		p = p[1:]
	}
	skip := 0
	switch {
	case fh.typ == framePushPromise:
		skip = 4
	case fh.flags&flagPriority != 0:
		skip = 5
	}
	if len(p) < skip+pad {
		return nil, false
	}
	return p[skip : len(p)-pad], true
}

// closeBlock decodes a complete header block.
func (dir *direction) closeBlock(end time.Time) {
	dir.inBlock = false
	if cap(dir.fields) > 64 {
		dir.fields = nil
	}
	dir.fields = dir.fields[:0]
	incomplete := dir.blockGap
	if incomplete {
		dir.resetTable()
	} else {
		if len(dir.block) > 0 && dir.block[0] == 0x20 {
			// A dynamic table size update to 0: the encoder emptied
			// its table, ours holds exactly what it holds from here.
			dir.d.p.stats.resyncs.Inc()
		}
		_, err := dir.dec.Write(dir.block)
		if err == nil {
			err = dir.dec.Close()
		}
		if err != nil {
			incomplete = true
			dir.resetTable()
		}
	}
	dir.headers(dir.blockStream, dir.fields, incomplete, dir.blockEnd, dir.blockPush, dir.blockStart, end)
}

// settings applies SETTINGS_HEADER_TABLE_SIZE: the table the sender's
// decoder allows the other direction's encoder.
func (dir *direction) settings(p []byte) {
	for ; len(p) >= 6; p = p[6:] {
		if binary.BigEndian.Uint16(p) == 0x1 {
			other := &dir.d.dirs[2-dir.side]
			other.allowed = binary.BigEndian.Uint32(p[2:])
			other.dec.SetAllowedMaxDynamicTableSize(max(other.allowed, initialTableSize))
		}
	}
}

// headers handles a decoded header block (fields nil: lost).
func (dir *direction) headers(id uint32, fields []hpack.HeaderField, incomplete, endStream, push bool, start, end time.Time) {
	if push {
		return // promised streams are not requests the client made
	}
	d := dir.d
	if dir.side == protocol.Requests {
		if st := d.streams[id]; st != nil {
			st.x.HeadersIncomplete = st.x.HeadersIncomplete || incomplete // trailers
			return
		}
		if id%2 == 0 {
			return
		}
		d.begin(id, fields, incomplete, start)
		return
	}
	st := d.streams[id]
	if st == nil {
		return // a response to a request not seen (the agent started later)
	}
	x := st.x
	x.HeadersIncomplete = x.HeadersIncomplete || incomplete
	if !st.respDone {
		status, final := responseStatus(fields)
		if !final && !incomplete {
			return // 1xx
		}
		st.respDone = true
		x.Resp = d.response(fields, status, start)
	}
	d.trailers(x, fields) // a trailers-only response has them in its head
	if endStream {
		dir.endStream(id, end)
	}
}

// responseStatus returns :status and whether it is a final status.
func responseStatus(fields []hpack.HeaderField) (int, bool) {
	for _, f := range fields {
		if f.Name == ":status" {
			n := parseStatus(f.Value)
			return n, n >= 200 || n == 0
		}
	}
	return 0, true
}

func parseStatus(s string) int {
	if len(s) != 3 {
		return 0
	}
	n := 0
	for i := 0; i < 3; i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0
		}
		n = n*10 + int(s[i]-'0')
	}
	return n
}

// begin starts the exchange of a new stream.
func (d *decoder) begin(id uint32, fields []hpack.HeaderField, incomplete bool, start time.Time) {
	if len(d.streams) >= protocol.MaxStreams {
		d.evictOldest(start)
	}
	req := &httpparse.Message{Kind: httpparse.Request, Version: "2", Start: start, ContentLength: -1, HeadersComplete: true}
	x := &Exchange{HeadersIncomplete: incomplete}
	x.Req, x.StreamID = req, id
	capture := d.p.sem.CaptureHeaders()
	for _, f := range fields {
		switch f.Name {
		case ":method":
			req.Method = f.Value
		case ":path":
			req.Target = f.Value
			req.Path, req.RawQuery, _ = strings.Cut(f.Value, "?")
			x.Call.Path = req.Path
		case ":authority":
			req.Host = f.Value
		case "host":
			if req.Host == "" {
				req.Host = f.Value
			}
		case "content-type":
			req.ContentType = f.Value
			x.GRPC = x.GRPC || grpc.IsGRPC(f.Value)
		case "user-agent":
			req.UserAgent = f.Value
		case "grpc-timeout":
			x.Call.Timeout, _ = grpc.ParseTimeout(f.Value)
		case "traceparent":
			req.TraceParent = f.Value
		case "tracestate":
			req.TraceState = f.Value
		}
		if capture && !strings.HasPrefix(f.Name, ":") {
			req.Headers = append(req.Headers, httpparse.Header{Name: f.Name, Value: f.Value})
		}
	}
	x.PathUnknown = req.Target == ""
	d.streams[id] = &stream{x: x}
	d.order = append(d.order, id)
	d.h.Begin(x)
}

// response makes the response message of a stream's first final headers.
func (d *decoder) response(fields []hpack.HeaderField, status int, start time.Time) *httpparse.Message {
	resp := &httpparse.Message{Kind: httpparse.Response, Version: "2", StatusCode: status, Start: start, ContentLength: -1, HeadersComplete: true}
	capture := d.p.sem.CaptureHeaders()
	for _, f := range fields {
		if f.Name == "content-type" {
			resp.ContentType = f.Value
		}
		if capture && !strings.HasPrefix(f.Name, ":") && !strings.HasPrefix(f.Name, "grpc-") {
			resp.Headers = append(resp.Headers, httpparse.Header{Name: f.Name, Value: f.Value})
		}
	}
	return resp
}

// trailers reads grpc-status from a response block.
func (d *decoder) trailers(x *Exchange, fields []hpack.HeaderField) {
	for _, f := range fields {
		if f.Name == "grpc-status" {
			x.Call.Status = f.Value
			x.GRPC = true
		}
	}
}

// noteGRPCResponse makes the exchange a gRPC call when its response says
// application/grpc (the request's content-type may not have been decoded).
func (x *Exchange) noteGRPCResponse() {
	if x.Resp != nil && grpc.IsGRPC(x.Resp.ContentType) {
		x.GRPC = true
	}
}

// endStream ends a stream whose server side sent END_STREAM.
func (dir *direction) endStream(id uint32, t time.Time) {
	if dir.side != protocol.Responses {
		return // the request is complete; the exchange goes on
	}
	d := dir.d
	st := d.streams[id]
	if st == nil {
		return
	}
	st.x.noteGRPCResponse()
	d.end(id, t, "")
}

// reset ends a stream reset by either end. A gRPC call without a status
// gets the one gRPC's HTTP/2 mapping gives its RST_STREAM's error code
// (CANCEL: CANCELLED, DEADLINE_EXCEEDED once its grpc-timeout ran out),
// what both ends' libraries report; a code with no mapping, or any other
// stream, ends as reset.
func (d *decoder) reset(id, code uint32, known bool, t time.Time) {
	st := d.streams[id]
	if st == nil {
		return
	}
	x := st.x
	x.noteGRPCResponse()
	if x.GRPC && x.Call.Status == "" && known && st.up == nil {
		if status, ok := grpc.ResetStatus(code); ok {
			x.Call.Status = x.Call.DeadlineStatus(status, t.Sub(x.Req.Start))
			d.end(id, t, "")
			return
		}
	}
	d.end(id, t, protocol.ReasonReset)
}

// goAway ends the streams a GOAWAY says were not processed: those the
// receiver opened above the last stream ID.
func (d *decoder) goAway(from protocol.Side, last uint32, t time.Time) {
	for _, id := range append([]uint32(nil), d.order...) {
		// Client-initiated streams are odd; a GOAWAY from the server
		// covers them.
		if from == protocol.Responses && id > last {
			d.end(id, t, protocol.ReasonReset)
		}
	}
}

func (d *decoder) evictOldest(t time.Time) {
	if len(d.order) > 0 {
		d.end(d.order[0], t, protocol.ReasonEvicted)
	}
}

// end ends a stream's exchange and forgets the stream.
func (d *decoder) end(id uint32, t time.Time, reason string) {
	st := d.streams[id]
	if st == nil {
		return
	}
	delete(d.streams, id)
	var px protocol.Exchange = st.x
	if st.up != nil {
		st.up.Resp = st.x.Resp
		px = st.up
	}
	for i, o := range d.order {
		if o == id {
			d.order = append(d.order[:i], d.order[i+1:]...)
			break
		}
	}
	// A frame's time is its first byte's, in its own direction's
	// calls: a response frame begun in a call captured before the
	// request's (the two directions' records are not ordered with each
	// other) would end the exchange before it began.
	if s := px.Start(); t.Before(s) {
		t = s
	}
	d.h.End(px, t, reason)
}
