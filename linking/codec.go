package linking

import (
	"encoding"
	"fmt"
)

// codecName is the gRPC content subtype of the agents' messages.
const codecName = "periscope-link-v1"

// codec encodes this package's messages in their fixed-size binary form
// (no protobuf: a few records of addresses and IDs).
type codec struct{}

type message interface {
	encoding.BinaryMarshaler
	encoding.BinaryUnmarshaler
}

func (codec) Marshal(v any) ([]byte, error) {
	m, ok := v.(message)
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
