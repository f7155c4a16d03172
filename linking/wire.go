package linking

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"go.opentelemetry.io/otel/trace"
)

// StreamFlag marks a Query.Seq that is an HTTP/2 stream ID rather than a
// request ordinal; TCPSeqFlag one that is the TCP sequence number of the
// client's write (and the server's read) in which the request began.
const (
	StreamFlag = 1 << 63
	TCPSeqFlag = 1 << 62
)

// Query asks for the client span of one request. Conn is the connection
// as its client sees it: Local is the client's address (A:p), Remote the
// server's (B:q). Seq is the request's ordinal on the connection, counted
// from 1, or its stream ID | StreamFlag; TCPSeq its TCP key | TCPSeqFlag.
// Either may be 0 (unknown to the asker); with both, the answering agent
// matches by the TCP key first (it is exact whichever requests each agent
// saw), then by the ordinal (which its own agent may not have: it saw the
// connection mid-stream).
type Query struct {
	Local, Remote netip.AddrPort
	Seq           uint64
	TCPSeq        uint64
}

// Answer is the client span of a Query; Found is false when the asked
// agent knows no such request.
type Answer struct {
	Found   bool
	TraceID trace.TraceID
	SpanID  trace.SpanID
}

// Limits of one batch, enforced on both ends.
const (
	// MaxBatch is the most queries one lookup carries.
	MaxBatch = 1024
	// MaxAddresses is the most addresses one agent announces.
	MaxAddresses = 4096
)

const (
	addrPortSize = 16 + 2
	// runHeaderSize is a run of queries' addresses and length.
	runHeaderSize = 2*addrPortSize + 2
	// minQuerySize is the fewest bytes of a query: its two varints.
	minQuerySize = 2
	// usualQuerySize is a query of an ordinal below 2^14 and a TCP key
	// (9 bytes with TCPSeqFlag).
	usualQuerySize = 2 + 9
	answerSize     = 1 + 16 + 8
)

var errShort = errors.New("linking: short message")

// lookupRequest is a batch of queries.
type lookupRequest struct{ Queries []Query }

// lookupResponse holds one answer per query, in order.
type lookupResponse struct{ Answers []Answer }

// addressesRequest asks an agent for the addresses it serves.
type addressesRequest struct{}

// addressesResponse lists the addresses an agent serves.
type addressesResponse struct{ Addrs []netip.Addr }

// A lookup request is its query count, then the queries in runs of one
// connection: the run's client and server addresses once, its length, and
// each query's Seq and TCPSeq as varints (a batch is mostly a few
// keep-alive connections' requests, in turn: a query of an ordinal costs
// a few bytes rather than both addresses again).
func (m *lookupRequest) MarshalBinary() ([]byte, error) {
	if len(m.Queries) > MaxBatch {
		return nil, fmt.Errorf("linking: %d queries in one batch (max %d)", len(m.Queries), MaxBatch)
	}
	runs := 0
	for i, q := range m.Queries {
		if i == 0 || !q.sameConn(m.Queries[i-1]) {
			runs++
		}
	}
	b := make([]byte, 2, 2+runs*runHeaderSize+len(m.Queries)*usualQuerySize)
	binary.BigEndian.PutUint16(b, uint16(len(m.Queries)))
	for qs := m.Queries; len(qs) > 0; {
		n := 1
		for n < len(qs) && qs[n].sameConn(qs[0]) {
			n++
		}
		b = appendAddrPort(b, qs[0].Local)
		b = appendAddrPort(b, qs[0].Remote)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
		for _, q := range qs[:n] {
			b = binary.AppendUvarint(b, q.Seq)
			b = binary.AppendUvarint(b, q.TCPSeq)
		}
		qs = qs[n:]
	}
	return b, nil
}

// sameConn tells whether q and o ask about the same connection: one run
// on the wire (MarshalBinary).
func (q Query) sameConn(o Query) bool { return q.Local == o.Local && q.Remote == o.Remote }

func (m *lookupRequest) UnmarshalBinary(b []byte) error {
	if len(b) < 2 {
		return errShort
	}
	total := int(binary.BigEndian.Uint16(b))
	b = b[2:]
	switch {
	case total > MaxBatch:
		return fmt.Errorf("linking: %d queries (max %d)", total, MaxBatch)
	case len(b) < total*minQuerySize:
		return fmt.Errorf("linking: %d bytes for %d queries", len(b), total)
	}
	// The slice of an earlier message is reused (the caller's pool):
	// every field of every query is set below.
	m.Queries = slices.Grow(m.Queries[:0], total)[:total]
	for i := 0; i < total; {
		if len(b) < runHeaderSize {
			return fmt.Errorf("linking: query %d: %w", i, errShort)
		}
		local, remote := readAddrPort(b), readAddrPort(b[addrPortSize:])
		n := int(binary.BigEndian.Uint16(b[2*addrPortSize:]))
		b = b[runHeaderSize:]
		if n == 0 || n > total-i {
			return fmt.Errorf("linking: query %d: a run of %d of %d queries", i, n, total)
		}
		for _, q := range m.Queries[i : i+n] {
			var err error
			q.Local, q.Remote = local, remote
			if q.Seq, b, err = uvarint(b); err != nil {
				return fmt.Errorf("linking: query %d: seq: %w", i, err)
			}
			if q.TCPSeq, b, err = uvarint(b); err != nil {
				return fmt.Errorf("linking: query %d: TCP seq: %w", i, err)
			}
			m.Queries[i] = q
			i++
		}
	}
	if len(b) != 0 {
		return fmt.Errorf("linking: %d bytes after %d queries", len(b), total)
	}
	return nil
}

// uvarint reads one varint off b.
func uvarint(b []byte) (uint64, []byte, error) {
	v, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, nil, errors.New("bad varint")
	}
	return v, b[n:], nil
}

func (m *lookupResponse) MarshalBinary() ([]byte, error) {
	if len(m.Answers) > MaxBatch {
		return nil, fmt.Errorf("linking: %d answers in one batch (max %d)", len(m.Answers), MaxBatch)
	}
	b := make([]byte, 2+len(m.Answers)*answerSize)
	binary.BigEndian.PutUint16(b, uint16(len(m.Answers)))
	for i, r := 0, b[2:]; i < len(m.Answers); i, r = i+1, r[answerSize:] {
		a := &m.Answers[i]
		if a.Found {
			r[0] = 1 // else 0, as made
		}
		copy(r[1:17], a.TraceID[:])
		copy(r[17:answerSize], a.SpanID[:])
	}
	return b, nil
}

func (m *lookupResponse) UnmarshalBinary(b []byte) error {
	n, b, err := count(b, answerSize, MaxBatch)
	if err != nil {
		return err
	}
	m.Answers = slices.Grow(m.Answers[:0], n)[:n]
	for i := range m.Answers {
		a := &m.Answers[i]
		*a = Answer{}
		switch b[0] {
		case 0:
		case 1:
			a.Found = true
		default:
			return fmt.Errorf("linking: answer %d: bad found byte %#x", i, b[0])
		}
		copy(a.TraceID[:], b[1:17])
		copy(a.SpanID[:], b[17:25])
		if a.Found && (!a.TraceID.IsValid() || !a.SpanID.IsValid()) {
			return fmt.Errorf("linking: answer %d: invalid span context", i)
		}
		b = b[answerSize:]
	}
	return nil
}

// encoded is a message encoded already (a lookup's answers, whose slice
// the server reuses once they are encoded).
type encoded []byte

func (m encoded) MarshalBinary() ([]byte, error) { return m, nil }

func (m *addressesRequest) MarshalBinary() ([]byte, error) { return []byte{}, nil }

func (m *addressesRequest) UnmarshalBinary(b []byte) error {
	if len(b) != 0 {
		return errors.New("linking: addresses request is not empty")
	}
	return nil
}

func (m *addressesResponse) MarshalBinary() ([]byte, error) {
	if len(m.Addrs) > MaxAddresses {
		return nil, fmt.Errorf("linking: %d addresses (max %d)", len(m.Addrs), MaxAddresses)
	}
	b := make([]byte, 2, 2+len(m.Addrs)*16)
	binary.BigEndian.PutUint16(b, uint16(len(m.Addrs)))
	for _, a := range m.Addrs {
		a16 := a.As16()
		b = append(b, a16[:]...)
	}
	return b, nil
}

func (m *addressesResponse) UnmarshalBinary(b []byte) error {
	n, b, err := count(b, 16, MaxAddresses)
	if err != nil {
		return err
	}
	m.Addrs = make([]netip.Addr, n)
	for i := range m.Addrs {
		m.Addrs[i] = netip.AddrFrom16([16]byte(b[:16])).Unmap()
		b = b[16:]
	}
	return nil
}

// count reads a record count and checks that exactly that many records of
// size follow.
func count(b []byte, size, max int) (int, []byte, error) {
	if len(b) < 2 {
		return 0, nil, errShort
	}
	n := int(binary.BigEndian.Uint16(b))
	b = b[2:]
	switch {
	case n > max:
		return 0, nil, fmt.Errorf("linking: %d records (max %d)", n, max)
	case len(b) != n*size:
		return 0, nil, fmt.Errorf("linking: %d bytes for %d records of %d", len(b), n, size)
	}
	return n, b, nil
}

func appendAddrPort(b []byte, ap netip.AddrPort) []byte {
	a := ap.Addr().As16()
	b = append(b, a[:]...)
	return binary.BigEndian.AppendUint16(b, ap.Port())
}

func readAddrPort(b []byte) netip.AddrPort {
	a := netip.AddrFrom16([16]byte(b[:16])).Unmap()
	return netip.AddrPortFrom(a, binary.BigEndian.Uint16(b[16:18]))
}
