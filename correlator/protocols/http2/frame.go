package http2

import (
	"encoding/binary"
	"time"
)

// Frame types (RFC 9113 §6).
const (
	frameData         = 0x0
	frameHeaders      = 0x1
	framePriority     = 0x2
	frameRSTStream    = 0x3
	frameSettings     = 0x4
	framePushPromise  = 0x5
	framePing         = 0x6
	frameGoAway       = 0x7
	frameWindowUpdate = 0x8
	frameContinuation = 0x9
)

// Frame flags.
const (
	flagEndStream  = 0x1
	flagAck        = 0x1
	flagEndHeaders = 0x4
	flagPadded     = 0x8
	flagPriority   = 0x20
)

const (
	frameHeaderLen = 9
	// Preface is the client connection preface.
	Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
	// maxBlock caps a header block kept for decoding; a larger one is
	// lost (counted as incomplete headers).
	maxBlock = 64 << 10
	// maxPlausibleLen is the longest frame the heuristics accept when
	// looking for frames without the connection's start: the default
	// SETTINGS_MAX_FRAME_SIZE, which most peers keep.
	maxPlausibleLen = 1 << 14
)

type frameHeader struct {
	length uint32
	typ    uint8
	flags  uint8
	stream uint32
}

func parseFrameHeader(b []byte) frameHeader {
	return frameHeader{
		length: uint32(b[0])<<16 | uint32(b[1])<<8 | uint32(b[2]),
		typ:    b[3],
		flags:  b[4],
		stream: binary.BigEndian.Uint32(b[5:9]) & 0x7fffffff,
	}
}

// plausible tells whether b may start with an HTTP/2 frame: a frame
// header of a known type, of a sane length, on the stream its type
// belongs to, and the frames that follow within b look as sane.
func plausible(b []byte) bool {
	if len(b) < frameHeaderLen {
		return false
	}
	for n := 0; len(b) >= frameHeaderLen && n < 4; n++ {
		fh := parseFrameHeader(b)
		if b[5]&0x80 != 0 || !plausibleFrame(fh) {
			return false
		}
		if uint32(len(b)-frameHeaderLen) <= fh.length {
			break
		}
		b = b[frameHeaderLen+fh.length:]
	}
	return true
}

func plausibleFrame(fh frameHeader) bool {
	if fh.length > maxPlausibleLen {
		return false
	}
	switch fh.typ {
	case frameData, frameHeaders, framePriority, frameRSTStream, framePushPromise, frameContinuation:
		return fh.stream != 0
	case frameSettings:
		return fh.stream == 0 && fh.length%6 == 0
	case framePing:
		return fh.stream == 0 && fh.length == 8
	case frameGoAway:
		return fh.stream == 0 && fh.length >= 8
	case frameWindowUpdate:
		return fh.length == 4
	}
	return false
}

// reader splits one direction's bytes into frames. Payloads of the frames
// the decoder reads are buffered; DATA payloads are handed over as they
// come.
type reader struct {
	preface int // preface bytes still to skip
	hdr     [frameHeaderLen]byte
	nhdr    int
	lost    bool // frame boundaries unknown

	fh      frameHeader
	start   time.Time // time of the current frame's first byte
	remain  uint32    // payload bytes still to come
	payload []byte    // buffered payload (non-DATA frames)
	gap     bool      // part of the buffered payload was unknown
	pos     uint32    // DATA: payload bytes seen
	pad     uint32    // DATA: padding length
}

// frameSink receives what a reader finds.
type frameSink interface {
	// frame is called with each complete frame but DATA; gap says part
	// of the payload was not captured.
	frame(fh frameHeader, payload []byte, gap bool, start, end time.Time)
	// data is called with the body bytes of a DATA frame (b nil: n
	// unknown bytes), and dataEnd when the frame is over.
	data(fh frameHeader, b []byte, n int)
	dataEnd(fh frameHeader, t time.Time)
	// lost is called when frame boundaries are lost.
	lost()
}

// write reads known bytes.
func (r *reader) write(b []byte, t time.Time, s frameSink) {
	for len(b) > 0 && !r.lost {
		if r.preface > 0 {
			k := min(r.preface, len(b))
			r.preface -= k
			b = b[k:]
			continue
		}
		if r.nhdr < frameHeaderLen {
			if r.nhdr == 0 {
				r.start = t
			}
			k := copy(r.hdr[r.nhdr:], b)
			r.nhdr += k
			b = b[k:]
			if r.nhdr == frameHeaderLen {
				r.begin(t, s)
			}
			continue
		}
		k := min(uint32(len(b)), r.remain)
		r.payloadBytes(b[:k], int(k), s)
		r.remain -= k
		b = b[k:]
		if r.remain == 0 {
			r.end(t, s)
		}
	}
}

// skip passes over n unknown bytes.
func (r *reader) skip(n int, t time.Time, s frameSink) {
	for n > 0 && !r.lost {
		if r.preface > 0 || r.nhdr < frameHeaderLen {
			r.lose(s)
			return
		}
		k := min(uint32(n), r.remain)
		r.payloadBytes(nil, int(k), s)
		r.remain -= k
		n -= int(k)
		if r.remain == 0 {
			r.end(t, s)
		}
	}
}

func (r *reader) lose(s frameSink) {
	r.lost = true
	r.nhdr = 0
	r.payload = r.payload[:0]
	s.lost()
}

// resume reads again from a frame boundary found after a loss.
func (r *reader) resume() {
	r.lost = false
	r.nhdr = 0
}

func (r *reader) begin(t time.Time, s frameSink) {
	r.fh = parseFrameHeader(r.hdr[:])
	r.remain = r.fh.length
	r.payload = trim(r.payload)
	r.gap = false
	r.pos, r.pad = 0, 0
	if r.remain == 0 {
		r.end(t, s)
	}
}

// payloadBytes takes n payload bytes, b (nil when unknown).
func (r *reader) payloadBytes(b []byte, n int, s frameSink) {
	if r.fh.typ != frameData {
		switch {
		case b == nil:
			r.gap = true
		case len(r.payload)+len(b) > maxBlock:
			r.gap = true
		default:
			r.payload = append(r.payload, b...)
		}
		return
	}
	// DATA: [pad length] body [padding]
	padded := r.fh.flags&flagPadded != 0
	for n > 0 {
		if padded && r.pos == 0 {
			if b != nil {
				r.pad = uint32(b[0])
				b = b[1:]
			}
			r.pos++
			n--
			continue
		}
		bodyEnd := r.fh.length - r.pad
		if r.pos >= bodyEnd {
			return // padding
		}
		k := min(uint32(n), bodyEnd-r.pos)
		if b != nil {
			s.data(r.fh, b[:k], int(k))
			b = b[k:]
		} else {
			s.data(r.fh, nil, int(k))
		}
		r.pos += k
		n -= int(k)
	}
}

func (r *reader) end(t time.Time, s frameSink) {
	r.nhdr = 0
	if r.fh.typ == frameData {
		s.dataEnd(r.fh, t)
		return
	}
	s.frame(r.fh, r.payload, r.gap, r.start, t)
}

// keepCap is the largest buffer a connection keeps between frames; a
// larger one (a big header block) is released after use.
const keepCap = 4 << 10

// trim empties a buffer, releasing it when it grew past keepCap.
func trim(b []byte) []byte {
	if cap(b) > keepCap {
		return nil
	}
	return b[:0]
}

// findFrames returns the first offset in b where a run of frames starts
// that the decoder can follow, or -1. Each frame header in the run is
// plausible and names a stream in flight (stream 0 for connection frames);
// the run ends with b, or with a frame whose payload goes on past b. The
// stream check makes payload bytes that merely look like a frame header
// (zeros, say) very unlikely to pass.
func findFrames[V any](b []byte, open map[uint32]V) int {
	for o := 0; o+frameHeaderLen <= len(b); o++ {
		if framesAt(b[o:], open) {
			return o
		}
	}
	return -1
}

func framesAt[V any](b []byte, open map[uint32]V) bool {
	for len(b) >= frameHeaderLen {
		fh := parseFrameHeader(b)
		if b[5]&0x80 != 0 || !plausibleFrame(fh) {
			return false
		}
		if _, ok := open[fh.stream]; fh.stream != 0 && !ok {
			return false
		}
		if uint32(len(b)-frameHeaderLen) <= fh.length {
			return true // the payload ends with b or goes on past it
		}
		b = b[frameHeaderLen+fh.length:]
	}
	return len(b) == 0
}
