package linking

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

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
	querySize    = 2*addrPortSize + 8 + 8
	answerSize   = 1 + 16 + 8
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

func (m *lookupRequest) MarshalBinary() ([]byte, error) {
	if len(m.Queries) > MaxBatch {
		return nil, fmt.Errorf("linking: %d queries in one batch (max %d)", len(m.Queries), MaxBatch)
	}
	b := make([]byte, 2, 2+len(m.Queries)*querySize)
	binary.BigEndian.PutUint16(b, uint16(len(m.Queries)))
	for _, q := range m.Queries {
		b = appendAddrPort(b, q.Local)
		b = appendAddrPort(b, q.Remote)
		b = binary.BigEndian.AppendUint64(b, q.Seq)
		b = binary.BigEndian.AppendUint64(b, q.TCPSeq)
	}
	return b, nil
}

func (m *lookupRequest) UnmarshalBinary(b []byte) error {
	n, b, err := count(b, querySize, MaxBatch)
	if err != nil {
		return err
	}
	m.Queries = make([]Query, n)
	for i := range m.Queries {
		q := &m.Queries[i]
		q.Local = readAddrPort(b[0:])
		q.Remote = readAddrPort(b[addrPortSize:])
		q.Seq = binary.BigEndian.Uint64(b[2*addrPortSize:])
		q.TCPSeq = binary.BigEndian.Uint64(b[2*addrPortSize+8:])
		b = b[querySize:]
	}
	return nil
}

func (m *lookupResponse) MarshalBinary() ([]byte, error) {
	if len(m.Answers) > MaxBatch {
		return nil, fmt.Errorf("linking: %d answers in one batch (max %d)", len(m.Answers), MaxBatch)
	}
	b := make([]byte, 2, 2+len(m.Answers)*answerSize)
	binary.BigEndian.PutUint16(b, uint16(len(m.Answers)))
	for _, a := range m.Answers {
		found := byte(0)
		if a.Found {
			found = 1
		}
		b = append(b, found)
		b = append(b, a.TraceID[:]...)
		b = append(b, a.SpanID[:]...)
	}
	return b, nil
}

func (m *lookupResponse) UnmarshalBinary(b []byte) error {
	n, b, err := count(b, answerSize, MaxBatch)
	if err != nil {
		return err
	}
	m.Answers = make([]Answer, n)
	for i := range m.Answers {
		a := &m.Answers[i]
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
