package linking

import (
	"encoding"
	"fmt"
)

// codecName is the gRPC content subtype of the agents' messages.
//
// v2: a query carries both of a request's keys (Query.TCPSeq). v3: the
// queries of one connection in runs, their keys as varints. Agents of two
// versions do not understand each other (a rolling upgrade leaves the
// lookups between them counted as errors until it is done).
const codecName = "periscope-link-v3"

// codec encodes this package's messages in their fixed-size binary form
// (no protobuf: a few records of addresses and IDs).
type codec struct{}

type message interface {
	encoding.BinaryMarshaler
	encoding.BinaryUnmarshaler
}

func (codec) Marshal(v any) ([]byte, error) {
	m, ok := v.(encoding.BinaryMarshaler)
	if !ok {
		return nil, fmt.Errorf("linking: cannot encode %T", v)
	}
	return m.MarshalBinary()
}

func (codec) Unmarshal(data []byte, v any) error {
	m, ok := v.(message)
	if !ok {
		return fmt.Errorf("linking: cannot decode into %T", v)
	}
	return m.UnmarshalBinary(data)
}

func (codec) Name() string { return codecName }
